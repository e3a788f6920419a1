//! `airback prune` and `forget --prune`: the space comes back, what is kept stays whole, a
//! prune killed at any moment leaves a valid repository, and a snapshot running beside prune
//! loses nothing.

use std::path::Path;
use std::sync::Arc;

use airback::backup::{BackupOptions, BackupSummary, backup_base};
use airback::progress::NoProgress;
use airback::repo::Repository;
use airback_fake::{FakeAirtable, FakeOptions, LargeParams, Preset};
use serde_json::{Map, Value, json};

use crate::support::{self, FakeSetup, airback};

/// A base of 3 tables × 300 records and 45 attachments of 50–400 KB.
fn base_options() -> FakeOptions {
    FakeOptions {
        large: LargeParams {
            bases: 1,
            tables: 3,
            records_per_table: 300,
            attachments: 45,
            min_attachment_bytes: 50_000,
            max_attachment_bytes: 400_000,
            size_skew: 1.0,
        },
        ..FakeOptions::unlimited(Preset::Large)
    }
}

/// Table ids with the ids of their `Notes` and `Files` fields.
fn tables(fake: &FakeAirtable, base: &str) -> Vec<(String, String, String)> {
    let schema = fake.schema_json(base);
    schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                support::field_id(t, "Notes"),
                support::field_id(t, "Files"),
            )
        })
        .collect()
}

/// Changes the base as a day of work would, seeded by `run`: about 3 % of the records get new
/// notes; every third run two attachments are added and one removed; every fifth run an
/// attachment removed earlier comes back.
fn mutate(fake: &FakeAirtable, base: &str, run: u64, removed: &mut Vec<Vec<u8>>) {
    let mut rng = fastrand::Rng::with_seed(run);
    for (table, notes, files) in tables(fake, base) {
        let records = fake.records_json(base, &table);
        for record in &records {
            if rng.f64() < 0.03 {
                let mut fields = Map::new();
                fields.insert(notes.clone(), json!(format!("run {run}: {}", rng.u64(..))));
                fake.update_record_fields(base, &table, record["id"].as_str().unwrap(), fields)
                    .unwrap();
            }
        }
        if run.is_multiple_of(3) {
            for i in 0..2 {
                let record = &records[rng.usize(..records.len())];
                let size = rng.usize(50_000..400_000);
                fake.add_attachment(
                    base,
                    &table,
                    record["id"].as_str().unwrap(),
                    &files,
                    &format!("run{run}-{i}.bin"),
                    support::random_bytes(size, run * 100 + i),
                )
                .unwrap();
            }
            // One attachment goes (the first of the first record that has one).
            if let Some(record) = records.iter().find(|r| {
                r["fields"][&files]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            }) {
                let attachments = record["fields"][&files].as_array().unwrap();
                let gone = attachments[0]["id"].as_str().unwrap();
                if let Some(bytes) = fake.attachment_content(gone) {
                    removed.push(bytes);
                }
                let kept: Vec<Value> = attachments[1..]
                    .iter()
                    .map(|a| json!({"id": a["id"]}))
                    .collect();
                let mut fields = Map::new();
                fields.insert(files.clone(), Value::Array(kept));
                fake.update_record_fields(base, &table, record["id"].as_str().unwrap(), fields)
                    .unwrap();
            }
        }
        if run.is_multiple_of(5)
            && let Some(bytes) = removed.pop()
        {
            let record = &records[rng.usize(..records.len())];
            fake.add_attachment(
                base,
                &table,
                record["id"].as_str().unwrap(),
                &files,
                "back.bin",
                bytes,
            )
            .unwrap();
        }
    }
}

async fn backup(repo: &Repository, s: &FakeSetup) -> BackupSummary {
    repo.adopt_unindexed_packs().await.unwrap();
    backup_base(
        repo,
        &s.client,
        &BackupOptions::new(&s.base),
        Arc::new(NoProgress),
    )
    .await
    .unwrap()
}

/// Every object of a local repository but its locks, in bytes.
fn repo_size(dir: &Path) -> u64 {
    support::files_below(dir)
        .iter()
        .filter(|p| !p.starts_with("locks"))
        .map(|p| std::fs::metadata(dir.join(p)).unwrap().len())
        .sum()
}

/// Exports snapshot `id` as a folder; returns the export's JSON summary.
async fn export(dir: &Path, repo: &str, id: &str) -> Value {
    support::export_to_dir(
        &dir.join("cache"),
        repo,
        id,
        &dir.join(format!("export-{id}")),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_snapshots_then_forget_keep_last_3_prune_come_within_a_tenth_of_a_fresh_repository()
{
    let s = FakeSetup::start(base_options()).await;
    let a = s.dir.path().join("repo");
    let b = s.dir.path().join("fresh");
    let fresh = support::new_repo(b.to_str().unwrap(), &support::init_options()).await;
    let mut removed = Vec::new();
    let mut last = Vec::new();
    for run in 1..=30 {
        mutate(&s.fake, &s.base, run, &mut removed);
        let summary = backup(&s.repo, &s).await;
        if run > 27 {
            backup(&fresh, &s).await;
            last.push(summary);
        }
    }
    let a_loc = a.to_str().unwrap();
    let size_before = repo_size(&a);
    let (code, out, err) = airback(
        s.dir.path(),
        &[
            "forget",
            "--repo",
            a_loc,
            "--keep-last",
            "3",
            "--prune",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(doc["removed"], 27, "{doc}");
    let prune = &doc["prune"];
    assert_eq!(prune["deletion"]["rule"], "no-writers", "{prune}");
    assert_eq!(prune["packs"]["pending_deletion"], 0, "{prune}");
    assert!(prune["packs"]["delete"].as_u64().unwrap() > 0, "{prune}");
    for kind in ["LIST", "GET", "PUT", "DELETE"] {
        assert!(
            prune["requests"][kind].as_u64().unwrap() > 0,
            "{kind}: {prune}"
        );
    }

    let (size_a, size_b) = (repo_size(&a), repo_size(&b));
    println!(
        "before prune {size_before} bytes; after {size_a}; a fresh repository of the same 3 \
         snapshots {size_b} ({:.3}x)",
        size_a as f64 / size_b as f64
    );
    assert!(
        size_a as f64 <= 1.10 * size_b as f64,
        "{size_a} > 1.10 x {size_b}"
    );
    assert!(size_a < size_before);

    let (code, out, err) = airback(s.dir.path(), &["check", "--repo", a_loc, "--read-data"]).await;
    assert_eq!(code, 0, "check after prune: {out}{err}");
    for summary in &last {
        let id = summary.snapshot_id.to_string();
        let exported = export(s.dir.path(), a_loc, &id).await;
        assert_eq!(exported["records"], summary.records, "{exported}");
        assert_eq!(exported["attachments"], summary.attachments, "{exported}");
        assert_eq!(exported["missing_attachments"], 0, "{exported}");
    }
    // A second prune finds nothing to do.
    let (code, out, err) = airback(s.dir.path(), &["prune", "--repo", a_loc, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let again: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(again["packs"]["repack"], 0, "{again}");
    assert_eq!(again["packs"]["mark"], 0, "{again}");
    assert_eq!(again["index_files"]["written"], 0, "{again}");
}

/// The ids of the snapshots in `repo`, oldest first, from `snapshots --json`, with the
/// records and attachments each says it holds.
async fn listed(dir: &Path, repo: &str) -> Vec<(String, u64, u64)> {
    let (code, out, err) = airback(dir, &["snapshots", "--repo", repo, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["records"].as_u64().unwrap(),
                s["attachments"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `check` exits 0 and every snapshot exports whole.
async fn assert_sound(dir: &Path, repo: &str, read_data: bool, when: &str) {
    let mut args = vec!["check", "--repo", repo];
    if read_data {
        args.push("--read-data");
    }
    let (code, out, err) = airback(dir, &args).await;
    assert_eq!(code, 0, "{when}: check failed:\n{out}{err}");
    for (id, records, attachments) in listed(dir, repo).await {
        let exported = export(dir, repo, &id).await;
        assert_eq!(exported["records"], records, "{when}: {exported}");
        assert_eq!(exported["attachments"], attachments, "{when}: {exported}");
        assert_eq!(exported["missing_attachments"], 0, "{when}: {exported}");
        std::fs::remove_dir_all(dir.join(format!("export-{id}"))).unwrap();
    }
}

/// A history of 10 snapshots of a changing base, of which `forget` keeps the last 2.
async fn history_to_prune() -> FakeSetup {
    let s = FakeSetup::start(base_options()).await;
    let mut removed = Vec::new();
    for run in 1..=10 {
        mutate(&s.fake, &s.base, run, &mut removed);
        backup(&s.repo, &s).await;
    }
    let repo = s.dir.path().join("repo");
    let (code, _, err) = airback(
        s.dir.path(),
        &[
            "forget",
            "--repo",
            repo.to_str().unwrap(),
            "--keep-last",
            "2",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    s
}

/// Copies a local repository (the test's yardstick for how long a prune takes).
fn copy_dir(from: &Path, to: &Path) {
    for rel in support::files_below(from) {
        let target = to.join(&rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&rel), target).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_killed_at_three_random_moments_leaves_a_sound_repository_that_the_next_prune_finishes()
 {
    let s = history_to_prune().await;
    let dir = s.dir.path();
    let repo = dir.join("repo");
    let repo_loc = repo.to_str().unwrap();
    // How long a whole prune takes here, measured on a copy.
    let yardstick = dir.join("yardstick");
    copy_dir(&repo, &yardstick);
    let started = std::time::Instant::now();
    let (code, out, err) = airback(
        &dir.join("yardstick-cache"),
        &["prune", "--repo", yardstick.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let took = started.elapsed();
    let full: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(full["packs"]["delete"].as_u64().unwrap() > 0, "{full}");
    println!("a whole prune takes {took:?} here: {full}");

    let unreferenced = |out: &str| -> u64 {
        let report: Value = serde_json::from_str(out.trim()).unwrap();
        report["unreferenced_packs"].as_u64().unwrap()
    };

    let mut rng = fastrand::Rng::with_seed(13);
    for round in 0..3 {
        let at = took.mul_f64(rng.f64());
        let mut child = support::command(env!("CARGO_BIN_EXE_airback"))
            .args(["prune", "--repo", repo_loc, "--quiet"])
            .env("AIRBACK_CACHE_DIR", dir)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        tokio::time::sleep(at).await;
        child.start_kill().unwrap(); // SIGKILL
        let status = child.wait().await.unwrap();
        println!("round {round}: killed after {at:?} ({status})");
        assert_sound(dir, repo_loc, false, &format!("after kill {round}")).await;
    }
    let (code, out, err) = airback(dir, &["prune", "--repo", repo_loc, "--json"]).await;
    assert_eq!(code, 0, "the prune after the kills: {err}");
    let last: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(last["packs"]["pending_deletion"], 0, "{last}");
    assert_sound(dir, repo_loc, true, "after the last prune").await;
    let (code, out, err) = airback(dir, &["check", "--repo", repo_loc, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(unreferenced(&out), 0, "{out}");
    // It freed what the uninterrupted prune freed, give or take the packs a killed repack
    // wrote twice.
    let (a, b) = (repo_size(&repo), repo_size(&yardstick));
    println!("after kills and a final prune: {a} bytes; after one prune: {b}");
    assert!(a as f64 <= 1.10 * b as f64, "{a} > 1.10 x {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_running_beside_prune_in_ten_interleavings_lose_nothing() {
    let mut options = base_options();
    // Airtable's own pace, so that a snapshot lasts long enough to race with a prune.
    options.rate_limit = Some(5);
    let s = FakeSetup::start(options).await;
    let dir = s.dir.path();
    let repo_loc = dir.join("repo").to_str().unwrap().to_owned();
    let (table, notes, files) = tables(&s.fake, &s.base).remove(0);
    let records = s.fake.records_json(&s.base, &table);
    // Each round adds an attachment to this record and drops the one the round before added,
    // so that forgetting the previous snapshot leaves a pack nothing uses.
    let holder = records[0]["id"].as_str().unwrap().to_owned();
    let swap_attachment = |round: u64| {
        let mut fields = Map::new();
        fields.insert(files.clone(), json!([]));
        s.fake
            .update_record_fields(&s.base, &table, &holder, fields)
            .unwrap();
        s.fake
            .add_attachment(
                &s.base,
                &table,
                &holder,
                &files,
                &format!("round-{round}.bin"),
                support::random_bytes(300_000, 1000 + round),
            )
            .unwrap();
    };
    // Two states the base alternates between, so that each snapshot can reuse blobs that
    // only a forgotten snapshot holds: the garbage prune wants to remove.
    let flip = |state: u64| {
        for record in records.iter().take(60) {
            let mut fields = Map::new();
            fields.insert(notes.clone(), json!(format!("state {state}")));
            s.fake
                .update_record_fields(&s.base, &table, record["id"].as_str().unwrap(), fields)
                .unwrap();
        }
    };
    for state in 0..2 {
        flip(state);
        backup(&s.repo, &s).await;
    }
    let (mut deferred, mut deleted) = (0, 0);
    for seed in 0..10u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        flip(seed % 2);
        swap_attachment(seed);
        let (code, _, err) =
            airback(dir, &["forget", "--repo", &repo_loc, "--keep-last", "1"]).await;
        assert_eq!(code, 0, "seed {seed}: {err}");
        if seed == 1 {
            // The pack of the attachment that only the forgotten snapshot held: `check`
            // names it as information (exit 0).
            let (code, out, err) = airback(dir, &["check", "--repo", &repo_loc, "--json"]).await;
            assert_eq!(code, 0, "{err}");
            let report: Value = serde_json::from_str(out.trim()).unwrap();
            assert!(
                report["unreferenced_packs"].as_u64().unwrap() > 0,
                "{report}"
            );
            assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
        }
        // From before the snapshot takes its lock to after it saved (about 1.5 s in this
        // process, 2.5 s as a child): some prunes meet the writer, some do not.
        let delay = std::time::Duration::from_millis(rng.u64(0..3000));
        let prune_json: Value = if seed % 2 == 0 {
            // A separate `airback snapshot` process, and prune in this one.
            let child = support::command(env!("CARGO_BIN_EXE_airback"))
                .args([
                    "snapshot", "--repo", &repo_loc, "--base", &s.base, "--quiet",
                ])
                .env("AIRBACK_CACHE_DIR", dir.join(format!("child-cache-{seed}")))
                .env("AIRTABLE_API_URL", s.fake.url())
                .env("AIRTABLE_CONTENT_URL", s.fake.url())
                .env("AIRTABLE_TOKEN", s.fake.token())
                .kill_on_drop(true)
                .output();
            let pruning = async {
                tokio::time::sleep(delay).await;
                let exclusive = s.repo.lock_exclusive("prune").await.unwrap();
                let options = airback::PruneOptions {
                    max_unused: airback::prune::MaxUnused::Percent(0.0),
                    ..airback::PruneOptions::default()
                };
                let summary = airback::prune(&exclusive, &options).await.unwrap();
                exclusive.release().await.unwrap();
                serde_json::to_value(summary).unwrap()
            };
            let (out, summary) = tokio::join!(child, pruning);
            let out = out.unwrap();
            assert!(
                out.status.success(),
                "seed {seed}: the snapshot failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            summary
        } else {
            // A snapshot in this process under its writer lock, and `airback prune` apart.
            let snapshot = async {
                let lock = s.repo.lock_writer("snapshot").await.unwrap();
                let summary = backup(&s.repo, &s).await;
                lock.release().await.unwrap();
                summary
            };
            let pruning = async {
                tokio::time::sleep(delay).await;
                airback(
                    dir,
                    &["prune", "--repo", &repo_loc, "--max-unused", "0", "--json"],
                )
                .await
            };
            let (_, (code, out, err)) = tokio::join!(snapshot, pruning);
            assert_eq!(code, 0, "seed {seed}: prune failed: {err}");
            serde_json::from_str(out.trim()).unwrap()
        };
        let pending = prune_json["packs"]["pending_deletion"].as_u64().unwrap();
        let gone = prune_json["packs"]["delete"].as_u64().unwrap();
        println!(
            "seed {seed}: prune after {delay:?}: rule {}, {gone} deleted, {pending} pending",
            prune_json["deletion"]["rule"]
        );
        deferred += u64::from(pending > 0);
        deleted += u64::from(gone > 0);
        assert_sound(dir, &repo_loc, seed % 5 == 4, &format!("seed {seed}")).await;
    }
    // A last prune with nothing running deletes whatever was deferred.
    let (code, out, err) = airback(dir, &["prune", "--repo", &repo_loc, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let last: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(last["packs"]["pending_deletion"], 0, "{last}");
    deleted += u64::from(last["packs"]["delete"].as_u64().unwrap() > 0);
    assert_sound(dir, &repo_loc, true, "after the last prune").await;
    assert!(deferred > 0, "no prune met a running snapshot");
    assert!(deleted > 0, "no prune deleted anything");
}
