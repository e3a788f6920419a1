//! The `airback` binary end to end: `demo`, `snapshot` with `--json` and with a config file,
//! `snapshots`, `show`, exit codes, and a snapshot killed at random moments.

use std::time::Duration;

use airback_fake::{FakeAirtable, FakeOptions, Preset};
use serde_json::Value;

use crate::support::airback;

/// Runs the binary against a fake Airtable: `AIRTABLE_API_URL` and `AIRTABLE_TOKEN` set.
pub(crate) async fn airback_with(
    fake: &FakeAirtable,
    cache: &std::path::Path,
    args: &[&str],
) -> (i32, String, String) {
    let out = crate::support::command(env!("CARGO_BIN_EXE_airback"))
        .args(args)
        .env("AIRBACK_CACHE_DIR", cache)
        .env("AIRTABLE_API_URL", fake.url())
        .env("AIRTABLE_CONTENT_URL", fake.url())
        .env("AIRTABLE_TOKEN", fake.token())
        .env_remove("AIRBACK_REPO")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(feature = "fake")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_in_one_command() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("demo");
    let (code, out, err) = airback(dir.path(), &["demo", "--dir", repo.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Second snapshot") && out.contains("no errors"),
        "{out}"
    );
    // The demo's repository is encrypted with a generated password, kept next to it.
    let password = dir.path().join("demo.password");
    let args = [
        "snapshots",
        "--repo",
        repo.to_str().unwrap(),
        "--password-file",
        password.to_str().unwrap(),
    ];
    let (code, out, _) = airback(dir.path(), &args).await;
    assert_eq!(code, 0);
    assert!(out.contains("2 snapshots"), "{out}");
}

/// With `--json`, the demo printed its steps as text and then the JSON, so its standard
/// output was not one JSON document. It prints exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_with_json_prints_one_json_document() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = airback(dir.path(), &["demo", "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let result: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {out}"));
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    for key in ["first", "second", "check_errors", "restore", "export"] {
        assert!(result.get(key).is_some(), "--json lacks `{key}`: {result}");
    }
}

/// Built without the `fake` feature (`cargo test --no-default-features --test it not_built_in`),
/// `demo` and `fake-airtable` still parse and are listed, but say the demo is not built into the
/// binary and exit 1.
#[cfg(not(feature = "fake"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_fake_feature_the_demo_says_it_is_not_built_in() {
    let dir = tempfile::tempdir().unwrap();
    let commands: [&[&str]; 4] = [
        &["demo"],
        &["demo", "--dir", "somewhere"],
        &["--json", "demo"],
        &["fake-airtable", "--preset", "zoo", "--faults", "503=0.1"],
    ];
    for args in commands {
        let (code, out, err) = airback(dir.path(), args).await;
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(
            err.contains("the demo is not built into this binary")
                && err.contains("rebuild it with the default features"),
            "{args:?}: {err}"
        );
    }
    let (code, out, _) = airback(dir.path(), &["--help"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("demo") && out.contains("not built into this binary"),
        "{out}"
    );
    let (code, _, err) = airback(dir.path(), &["demo", "--no-such-flag"]).await;
    assert_eq!(code, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_json_snapshots_and_show() {
    let fake = FakeAirtable::start(FakeOptions::default()).await.unwrap();
    let base = fake.bases()[0].id.clone();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let (code, _, err) = airback_with(&fake, dir.path(), &["init", "--repo", repo]).await;
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = airback_with(
        &fake,
        dir.path(),
        &["snapshot", "--repo", repo, "--base", &base, "--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    for key in [
        "snapshot_id",
        "base_id",
        "tables",
        "records",
        "attachments",
        "attachments_downloaded",
        "bytes_added",
        "api_requests",
        "duration_secs",
    ] {
        assert!(
            summary.get(key).is_some(),
            "--json lacks `{key}`: {summary}"
        );
    }
    assert_eq!(summary["base_id"], base);
    assert_eq!(summary["rate_limited"], 0);
    assert!(
        !out.contains(&fake.token()) && !err.contains(&fake.token()),
        "the token leaked"
    );

    // A second run right after the first, on the same base: a new process cannot know what
    // the last one sent, and must still draw no 429 from a strict server.
    let (code, out, err) = airback_with(
        &fake,
        dir.path(),
        &["snapshot", "--repo", repo, "--base", &base, "--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let again: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(again["rate_limited"], 0, "{again}");
    assert_eq!(fake.counters().rate_limited, 0);

    let (code, out, _) =
        airback_with(&fake, dir.path(), &["snapshots", "--repo", repo, "--json"]).await;
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["records"], summary["records"]);
    assert_eq!(list[0]["partial"], false);

    let id = again["snapshot_id"].as_str().unwrap();
    let (code, out, _) = airback_with(&fake, dir.path(), &["show", &id[..6], "--repo", repo]).await;
    assert_eq!(code, 0);
    assert!(out.contains(id) && out.contains("records"), "{out}");
    let (code, _, err) =
        airback_with(&fake, dir.path(), &["show", "ffffffffff", "--repo", repo]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no snapshot matches"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_drives_the_snapshot_and_bad_keys_name_their_line() {
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let base = fake.bases()[0].id.clone();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let config = dir.path().join("airback.yaml");
    std::fs::write(
        &config,
        format!(
            "repository: {}\nbases:\n  - id: {base}\n    attachments: false\n",
            repo.display()
        ),
    )
    .unwrap();
    let (code, _, err) = airback_with(
        &fake,
        dir.path(),
        &["init", "--repo", repo.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = airback_with(
        &fake,
        dir.path(),
        &["snapshot", "--config", config.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["attachments_downloaded"], 0, "attachments: false");

    std::fs::write(
        &config,
        format!("bases:\n  - id: {base}\n    attachmentz: false\n"),
    )
    .unwrap();
    let (code, _, err) = airback_with(
        &fake,
        dir.path(),
        &["snapshot", "--config", config.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("attachmentz") && err.contains("line 3"),
        "{err}"
    );
}

/// SIGKILL at random moments of a snapshot, then `check` and a new snapshot: the repository is
/// valid every time, the last snapshot is complete, and packs already uploaded are adopted,
/// not uploaded again (no blob is stored in two packs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_killed_at_random_moments_resumes() {
    let mut options = FakeOptions::unlimited(Preset::Large);
    options.large = "tables=2,records=3000,attachments=120,min=20000,max=2000000"
        .parse()
        .unwrap();
    let fake = FakeAirtable::start(options).await.unwrap();
    let base = fake.bases()[0].id.clone();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap().to_string();
    assert_eq!(
        airback_with(&fake, dir.path(), &["init", "--repo", &repo])
            .await
            .0,
        0
    );
    let mut rng = fastrand::Rng::with_seed(2026);
    for round in 0..3 {
        let mut child = crate::support::command(env!("CARGO_BIN_EXE_airback"))
            .args(["snapshot", "--repo", &repo, "--base", &base, "--quiet"])
            .env("AIRBACK_CACHE_DIR", dir.path())
            .env("AIRTABLE_API_URL", fake.url())
            .env("AIRTABLE_CONTENT_URL", fake.url())
            .env("AIRTABLE_TOKEN", fake.token())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.u64(50..900))).await;
        child.start_kill().unwrap(); // SIGKILL
        let _ = child.wait().await;
        let (code, out, err) = airback_with(
            &fake,
            dir.path(),
            &["check", "--repo", &repo, "--read-data"],
        )
        .await;
        assert_eq!(
            code, 0,
            "round {round}: check failed after a kill:\n{out}{err}"
        );
    }
    let (code, out, err) = airback_with(
        &fake,
        dir.path(),
        &["snapshot", "--repo", &repo, "--base", &base, "--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["records"], 6000);
    assert_eq!(summary["attachments"].as_u64().unwrap() as usize, 120);

    // No blob stored twice: what earlier, killed runs uploaded was reused.
    let backend = airback::backend::Backend::open(&repo, &Default::default()).unwrap();
    let repository = airback::repo::Repository::open(
        backend,
        airback::repo::CacheChoice::Memory,
        crate::support::password(),
    )
    .await
    .unwrap();
    let report = airback::check::check(
        &repository,
        &airback::check::CheckOptions {
            read_data: true,
            subset: None,
        },
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
    let packs_per_blob = count_packs_per_blob(&repository).await;
    assert!(
        packs_per_blob.values().all(|&n| n == 1),
        "a blob was uploaded again"
    );
}

async fn count_packs_per_blob(
    repo: &airback::repo::Repository,
) -> std::collections::HashMap<airback::id::BlobId, usize> {
    let mut packs_of: std::collections::HashMap<
        airback::id::BlobId,
        std::collections::HashSet<airback::id::PackId>,
    > = Default::default();
    for id in repo.list_index_files().await.unwrap() {
        for pack in repo.load_index_file(&id).await.unwrap().packs {
            for blob in pack.blobs {
                packs_of.entry(blob.id).or_default().insert(pack.id);
            }
        }
    }
    packs_of.into_iter().map(|(k, v)| (k, v.len())).collect()
}

/// Attachments that cannot be downloaded: the snapshot is saved anyway, the exit code is 3,
/// and each missing attachment is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_snapshot_exits_3_and_names_what_is_missing() {
    let mut options = FakeOptions::unlimited(Preset::Demo);
    options.faults = "missing=0.5,seed=3".parse().unwrap();
    let fake = FakeAirtable::start(options).await.unwrap();
    let base = fake.bases()[0].id.clone();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    assert_eq!(
        airback_with(&fake, dir.path(), &["init", "--repo", repo])
            .await
            .0,
        0
    );
    let (code, out, err) = airback_with(
        &fake,
        dir.path(),
        &["snapshot", "--repo", repo, "--base", &base],
    )
    .await;
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("is partial") && err.contains("attachment att"),
        "{err}"
    );
    let (code, out, _) = airback_with(&fake, dir.path(), &["snapshots", "--repo", repo]).await;
    assert_eq!(code, 0);
    assert!(out.contains("(partial)"), "{out}");
}

/// The names of the first two tables of `base` and the name of the first table's first field.
fn demo_names(fake: &FakeAirtable, base: &str) -> (String, String, String) {
    let schema = fake.schema_json(base);
    let tables = schema["tables"].as_array().unwrap();
    let name = |v: &Value| v["name"].as_str().unwrap().to_string();
    (
        name(&tables[0]),
        name(&tables[1]),
        name(&tables[0]["fields"][0]),
    )
}

/// Runs `airback snapshot --config <config>` with `config_text` written to it, plus `extra`.
async fn snapshot_with_config(
    fake: &FakeAirtable,
    dir: &std::path::Path,
    config_text: &str,
    extra: &[&str],
) -> (i32, String, String) {
    let config = dir.join("airback.yaml");
    std::fs::write(&config, config_text).unwrap();
    let mut args = vec!["snapshot", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    airback_with(fake, dir, &args).await
}

/// Issue #10, defect 3: a `tables.include` entry that matches no table (a typo, or a table
/// renamed in Airtable) is a warning even with `--quiet`, exit 3, and a partial snapshot that
/// names the entry; marked `optional: true` it is silent and the run exits 0. A misspelled
/// `exclude_fields` entry is a warning and exit 3 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_or_field_filter_that_matches_nothing_warns_and_exits_3() {
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let base = fake.bases()[0].id.clone();
    let (table, other, field) = demo_names(&fake, &base);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    assert_eq!(
        airback_with(&fake, dir.path(), &["init", "--repo", repo])
            .await
            .0,
        0
    );
    let head = format!("repository: {repo}\nattachments: false\nbases:\n  - id: {base}\n");

    // A misspelled include: nothing of the table is backed up, and the run says so.
    let typo = format!("{table}zz");
    let (code, out, err) = snapshot_with_config(
        &fake,
        dir.path(),
        &format!("{head}    tables:\n      include: [\"{typo}\"]\n"),
        &["--quiet"],
    )
    .await;
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("warning") && err.contains(&typo) && err.contains("tables.include"),
        "{err}"
    );
    let (code, out, _) = airback_with(&fake, dir.path(), &["snapshots", "--repo", repo]).await;
    assert_eq!(code, 0);
    assert!(out.contains("(partial)"), "{out}");
    let (code, out, _) = airback_with(
        &fake,
        dir.path(),
        &["show", "latest", "--repo", repo, "--json"],
    )
    .await;
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(shown["snapshot"]["partial"], true, "{shown}");
    let problems = shown["snapshot"]["problems"].to_string();
    assert!(problems.contains(&typo), "{problems}");

    // The same entry marked optional (next to a real table), and an optional excluded field
    // that is not there: no warning, exit 0.
    let (code, out, err) = snapshot_with_config(
        &fake,
        dir.path(),
        &format!(
            "{head}    tables:\n      include: [\"{other}\", {{table: \"{typo}\", optional: true}}]\n    exclude_fields:\n      - {{table: \"{other}\", field: Gonezz, optional: true}}\n"
        ),
        &["--quiet"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains(&typo) && !err.contains("warning"), "{err}");

    // A misspelled exclude and a misspelled excluded field: warnings, exit 3, and the JSON
    // summary lists them.
    let (code, out, err) = snapshot_with_config(
        &fake,
        dir.path(),
        &format!(
            "{head}    tables:\n      exclude: [Archivez]\n    exclude_fields: [\"{table}.{field}zz\"]\n"
        ),
        &["--quiet", "--json"],
    )
    .await;
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("Archivez") && err.contains(&format!("{field}zz")),
        "{err}"
    );
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    let warnings = summary["warnings"].to_string();
    assert!(
        warnings.contains("Archivez") && warnings.contains(&format!("{field}zz")),
        "{summary}"
    );
    assert_eq!(summary["partial"], true, "{summary}");
    assert_eq!(summary["outcome"], "partial", "{summary}");
}

/// Issue #10, defect 6: an unknown base listed before a good one does not stop the run: the
/// good base is backed up, the output names both outcomes, and the exit code is 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_base_does_not_stop_the_others() {
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let base = fake.bases()[0].id.clone();
    let unknown = "appUnknownBase000";
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    assert_eq!(
        airback_with(&fake, dir.path(), &["init", "--repo", repo])
            .await
            .0,
        0
    );

    // From a config file, as text.
    let (code, out, err) = snapshot_with_config(
        &fake,
        dir.path(),
        &format!(
            "repository: {repo}\nattachments: false\nbases:\n  - id: {unknown}\n  - id: {base}\n"
        ),
        &[],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("of base {base}")), "{out}");
    assert!(err.contains(unknown) && err.contains("failed"), "{err}");
    let (code, out, _) =
        airback_with(&fake, dir.path(), &["snapshots", "--repo", repo, "--json"]).await;
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["base_id"], base.as_str());

    // With repeated --base, as JSON: one object per base, in order, each with its outcome.
    let (code, out, err) = airback_with(
        &fake,
        dir.path(),
        &[
            "snapshot",
            "--repo",
            repo,
            "--no-attachments",
            "--base",
            unknown,
            "--base",
            &base,
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    let objects: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 2, "{out}");
    assert_eq!(objects[0]["base_id"], unknown, "{out}");
    assert_eq!(objects[0]["outcome"], "failed", "{out}");
    assert!(
        objects[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains(unknown)),
        "{out}"
    );
    assert_eq!(objects[1]["base_id"], base.as_str(), "{out}");
    assert_eq!(objects[1]["outcome"], "ok", "{out}");
    assert!(objects[1]["snapshot_id"].is_string(), "{out}");
}

/// Several bases are backed up at once (default 10, `--base-concurrency N`), each base's
/// requests counted apart, each line printed when its base finishes; with 1 they run one after
/// another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_bases_are_backed_up_at_once_and_counted_apart() {
    let mut options = FakeOptions {
        preset: Preset::Large,
        ..FakeOptions::default()
    };
    options.large = "bases=3,tables=1,records=150,attachments=0"
        .parse()
        .unwrap();
    let fake = FakeAirtable::start(options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let (code, out, err) = airback_with(&fake, dir.path(), &["init", "--repo", repo]).await;
    assert_eq!(code, 0, "{out}{err}");
    // The spans of the three snapshots: (start, end) in seconds since the epoch.
    let run = |concurrency: &'static str| {
        let fake = &fake;
        let dir = dir.path().to_owned();
        async move {
            let before = fake.counters().api_requests();
            let (code, out, err) = airback_with(
                fake,
                &dir,
                &[
                    "snapshot",
                    "--all-bases",
                    "--base-concurrency",
                    concurrency,
                    "--json",
                    "--repo",
                    repo,
                ],
            )
            .await;
            assert_eq!(code, 0, "{out}{err}");
            let results: Vec<Value> = out
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            assert_eq!(results.len(), 3, "{out}");
            // Each base: its schema and 2 pages; the run lists the bases once, which gives
            // every base its name. Counted apart, the parts add up to the whole.
            for r in &results {
                assert_eq!(r["api_requests"], 3, "{r:#}");
                assert!(
                    r["base_name"].as_str().unwrap().starts_with("Large base"),
                    "{r:#}"
                );
            }
            assert_eq!(fake.counters().api_requests() - before, 3 * 3 + 1);
            let (code, out, err) =
                airback_with(fake, &dir, &["snapshots", "--json", "--repo", repo]).await;
            assert_eq!(code, 0, "{out}{err}");
            let listed: Value = serde_json::from_str(out.trim()).unwrap();
            let spans: Vec<(f64, f64)> = results
                .iter()
                .map(|r| {
                    let id = r["snapshot_id"].as_str().unwrap();
                    let snapshot = listed
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|s| s["id"] == id)
                        .unwrap_or_else(|| panic!("{id} listed: {listed:#}"));
                    let start = humantime::parse_rfc3339(snapshot["time"].as_str().unwrap())
                        .unwrap()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs_f64();
                    (start, start + r["duration_secs"].as_f64().unwrap())
                })
                .collect();
            spans
        }
    };
    let overlaps = |spans: &[(f64, f64)]| {
        spans
            .iter()
            .enumerate()
            // More than 10 ms in common: start times are written to the millisecond.
            .any(|(i, a)| {
                spans
                    .iter()
                    .skip(i + 1)
                    .any(|b| a.0 + 0.01 < b.1 && b.0 + 0.01 < a.1)
            })
    };
    let together = run("10").await;
    assert!(
        overlaps(&together),
        "the bases ran one after another: {together:?}"
    );
    let one_by_one = run("1").await;
    assert!(
        !overlaps(&one_by_one),
        "the bases overlapped: {one_by_one:?}"
    );
}

/// Three `airback snapshot` processes, each with its own cache (as on three hosts), back up
/// three bases into one S3 repository at the same time: every index entry and blob survives
/// (`check --read-data` is clean from a fresh cache) and each snapshot exports completely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_snapshot_different_bases_into_one_s3_repository_at_once() {
    let s3 = crate::support::s3::S3Server::start().await;
    let location = s3.location("shared");
    let mut options = FakeOptions::unlimited(Preset::Large);
    options.large = "bases=3,tables=2,records=250,attachments=8,min=2000,max=60000"
        .parse()
        .unwrap();
    let fake = FakeAirtable::start(options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = |name: &str| dir.path().join(name);
    let (code, out, err) =
        airback_with(&fake, &cache("init"), &["init", "--repo", &location]).await;
    assert_eq!(code, 0, "{out}{err}");
    let bases: Vec<String> = fake.bases().into_iter().map(|b| b.id).collect();
    assert_eq!(bases.len(), 3);
    let runs = bases.iter().enumerate().map(|(i, base)| {
        let fake = &fake;
        let location = &location;
        let cache = cache(&format!("host{i}"));
        async move {
            airback_with(
                fake,
                &cache,
                &["snapshot", "--base", base, "--json", "--repo", location],
            )
            .await
        }
    });
    let results = futures::future::join_all(runs).await;
    let mut snapshots = Vec::new();
    for (code, out, err) in results {
        assert_eq!(code, 0, "{out}{err}");
        let summary: Value = serde_json::from_str(out.trim()).unwrap();
        snapshots.push(summary);
    }
    let (code, out, err) = airback_with(
        &fake,
        &cache("checker"),
        &["check", "--read-data", "--repo", &location],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("warning"), "{err}");
    for summary in &snapshots {
        let id = summary["snapshot_id"].as_str().unwrap();
        let tar = dir.path().join(format!("{id}.tar"));
        let (code, out, err) = airback_with(
            &fake,
            &cache("checker"),
            &[
                "export",
                id,
                "-o",
                tar.to_str().unwrap(),
                "--json",
                "--repo",
                &location,
            ],
        )
        .await;
        assert_eq!(code, 0, "{out}{err}");
        let export: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(export["records"], summary["records"], "{export:#}");
        assert_eq!(export["records"], 500);
        assert_eq!(export["attachments"], summary["attachments"], "{export:#}");
        assert_eq!(export["missing_attachments"], 0, "{export:#}");
    }
}
