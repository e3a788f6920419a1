//! `airback forget` end to end: keep rules from flags and from a config, groups by base, partial
//! snapshots, the refusals (no rule, a rule that would empty a base), and what stays readable.
//! The keep rules themselves are tested against restic's tables in `src/retention.rs`.

use std::path::Path;

use airback::repo::{CacheChoice, Repository, Snapshot};
use airback_fake::{FakeAirtable, FakeOptions, Preset};
use serde_json::{Value, json};

use crate::cli::airback_with;
use crate::support::{self, contents};

const OTHER_BASE: &str = "appBBBBBBBBBBBBBB";

/// Opens the repository the way the tests made it.
async fn open(location: &str) -> Repository {
    let backend = support::open_backend(location);
    Repository::open(backend, CacheChoice::Memory, support::password())
        .await
        .unwrap()
}

/// A repository made by the library (format 1 or 2 as the test pass says) holding one real
/// snapshot of the demo base, taken by the binary.
struct History {
    fake: FakeAirtable,
    base: String,
    dir: tempfile::TempDir,
    location: String,
    real: Snapshot,
}

impl History {
    async fn new() -> History {
        let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
            .await
            .unwrap();
        let base = fake.bases()[0].id.clone();
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("repo").to_str().unwrap().to_owned();
        support::new_repo(&location, &support::init_options()).await;
        let (code, _, err) = airback_with(
            &fake,
            dir.path(),
            &["snapshot", "--repo", &location, "--base", &base],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let repo = open(&location).await;
        let ids = repo.list_snapshots().await.unwrap();
        let real = repo.load_snapshot(&ids[0]).await.unwrap();
        History {
            fake,
            base,
            dir,
            location,
            real,
        }
    }

    fn repo(&self) -> &str {
        &self.location
    }

    async fn open(&self) -> Repository {
        open(&self.location).await
    }

    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        airback_with(&self.fake, self.dir.path(), args).await
    }

    /// Saves a copy of the real snapshot's manifest with another time, base, tags or
    /// partial flag (it shares the real snapshot's tree, so it exports like it).
    async fn add(&self, time: &str, base: &str, tags: &[&str], partial: bool) {
        let mut s = self.real.clone();
        s.time = time.to_owned();
        s.source = json!({"kind": "airtable-base", "base_id": base, "base_name": "copy"});
        s.tags = tags.iter().map(|t| t.to_string()).collect();
        s.partial = partial;
        self.open().await.save_snapshot(&s).await.unwrap();
    }

    /// `snapshots --json`: (time, base) of each, oldest first.
    async fn listed(&self) -> Vec<(String, String)> {
        let (code, out, err) = self
            .run(&["snapshots", "--repo", self.repo(), "--json"])
            .await;
        assert_eq!(code, 0, "{err}");
        let list: Value = serde_json::from_str(out.trim()).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["time"].as_str().unwrap().to_owned(),
                    s["base_id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// The (time, action, reasons) of one group of a `forget --json` document, newest first.
fn verdicts(doc: &Value, base: &str) -> Vec<(String, String, Vec<String>)> {
    let group = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["base_id"] == base)
        .unwrap_or_else(|| panic!("no group for {base} in {doc}"));
    group["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["time"].as_str().unwrap().to_owned(),
                s["action"].as_str().unwrap().to_owned(),
                s["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// Days 1 to 10 of November at 03:00, a second one on the 10th at 15:00, and a partial one on
/// the 11th, for the demo base; three days for another base.
async fn november(h: &History) {
    for day in 1..=10 {
        h.add(&format!("2026-11-{day:02}T03:00:00Z"), &h.base, &[], false)
            .await;
    }
    h.add("2026-11-10T15:00:00Z", &h.base, &[], false).await;
    h.add("2026-11-11T03:00:00Z", &h.base, &[], true).await;
    for day in 20..=22 {
        h.add(
            &format!("2026-11-{day}T03:00:00Z"),
            OTHER_BASE,
            &["audit"],
            false,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_keeps_what_the_rules_say_per_base_and_the_rest_stays_readable() {
    let h = History::new().await;
    november(&h).await;
    let before = h.listed().await;
    assert_eq!(before.len(), 16);
    let files_before = contents(Path::new(h.repo()));

    // --dry-run, one base: the real snapshot (today) is the newest daily; the partial one of
    // the 11th is older than it and never counts as a day; the 10th keeps its later snapshot.
    let (code, out, err) = h
        .run(&[
            "forget",
            "--repo",
            h.repo(),
            "--keep-daily",
            "3",
            "--base",
            &h.base,
            "--dry-run",
            "--json",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["removed"], 0);
    assert_eq!(doc["time_zone"], "UTC");
    assert_eq!(
        doc["groups"].as_array().unwrap().len(),
        1,
        "--base limits: {doc}"
    );
    let group = verdicts(&doc, &h.base);
    let kept: Vec<&str> = group
        .iter()
        .filter(|(_, a, _)| a == "keep")
        .map(|(t, _, _)| t.as_str())
        .collect();
    assert_eq!(
        kept,
        [
            h.real.time.as_str(),
            "2026-11-10T15:00:00Z",
            "2026-11-09T03:00:00Z"
        ],
        "{doc}"
    );
    for (_, action, reasons) in &group {
        if action == "keep" {
            assert_eq!(reasons, &["daily snapshot"]);
        } else {
            assert!(reasons.is_empty(), "{reasons:?}");
        }
    }
    assert_eq!(group.len(), 13);
    assert_eq!(
        contents(Path::new(h.repo())).keys().collect::<Vec<_>>(),
        files_before.keys().collect::<Vec<_>>(),
        "--dry-run removed something"
    );

    // For real, every base: the other base's three days are all kept.
    let (code, out, err) = h
        .run(&["forget", "--repo", h.repo(), "--keep-daily", "3", "--json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(doc["removed"], 10, "{doc}");
    assert!(
        verdicts(&doc, OTHER_BASE)
            .iter()
            .all(|(_, a, _)| a == "keep")
    );
    let after = h.listed().await;
    let mut expected: Vec<(String, String)> = before
        .iter()
        .filter(|(t, b)| {
            b == OTHER_BASE
                || [
                    h.real.time.as_str(),
                    "2026-11-10T15:00:00Z",
                    "2026-11-09T03:00:00Z",
                ]
                .contains(&t.as_str())
        })
        .cloned()
        .collect();
    expected.sort();
    let mut after_sorted = after.clone();
    after_sorted.sort();
    assert_eq!(after_sorted, expected);

    // What is left checks clean and exports whole.
    let (code, _, err) = h.run(&["check", "--repo", h.repo(), "--read-data"]).await;
    assert_eq!(code, 0, "{err}");
    let out_dir = h.dir.path().join("export");
    let (code, out, err) = h
        .run(&[
            "export",
            "latest",
            "--base",
            &h.base,
            "--repo",
            h.repo(),
            "-f",
            "dir",
            "-o",
            out_dir.to_str().unwrap(),
            "--json",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    let export: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(export["records"], h.real.summary["records"], "{export}");

    // Text output names each snapshot's verdict and the rule.
    let (code, out, err) = h
        .run(&[
            "forget",
            "--repo",
            h.repo(),
            "--keep-last",
            "1",
            "--dry-run",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("keep 1 of 3 snapshots (keep 1 latest snapshots; periods in UTC)")
            && out.contains("last snapshot")
            && out.contains("would remove 4 snapshots"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_refuses_without_a_rule_and_when_a_base_would_keep_nothing() {
    let h = History::new().await;
    november(&h).await;
    let files_before = contents(Path::new(h.repo()));

    let (code, _, err) = h.run(&["forget", "--repo", h.repo()]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("forget needs a rule"), "{err}");

    // Only the other base's snapshots carry the tag: the demo base would lose everything.
    let (code, _, err) = h
        .run(&["forget", "--repo", h.repo(), "--keep-tag", "audit"])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("base {}", h.base)) && err.contains("nothing was removed"),
        "{err}"
    );

    let (code, _, err) = h
        .run(&["forget", "--repo", h.repo(), "--keep-within", "2w"])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("2w"), "{err}");
    let (code, _, err) = h
        .run(&["forget", "--repo", h.repo(), "--keep-last", "0"])
        .await;
    assert_eq!(code, 2, "{err}");

    assert_eq!(
        contents(Path::new(h.repo())),
        files_before,
        "a refusal changed the repository"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_retention_applies_per_base_and_after_each_nightly_snapshot() {
    let h = History::new().await;
    november(&h).await;
    let config = h.dir.path().join("airback.yaml");
    // The demo base has its own rule; every other group follows the top-level one. After
    // each snapshot, forget runs for the bases just backed up (only the demo base).
    std::fs::write(
        &config,
        format!(
            "repository: {}\nbases:\n  - id: {}\n    attachments: false\n    retention:\n      keep_last: 2\nretention:\n  keep_last: 1\n  after_snapshot: true\n  prune: true\n",
            h.repo(),
            h.base
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let (code, out, err) = h.run(&["snapshot", "--config", config, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    let retention = &lines[1]["retention"];
    assert_eq!(retention["applied"], true, "{out}");
    assert_eq!(retention["report"]["groups"].as_array().unwrap().len(), 1);
    // `prune: true`: prune ran after forget, with the snapshot's writer lock already gone.
    assert_eq!(
        retention["report"]["prune"]["deletion"]["rule"], "no-writers",
        "{out}"
    );
    let listed = h.listed().await;
    assert_eq!(
        listed.iter().filter(|(_, b)| *b == h.base).count(),
        2,
        "{listed:?}"
    );
    assert_eq!(listed.iter().filter(|(_, b)| b == OTHER_BASE).count(), 3);

    // `forget --config` applies every group's rule: the other base keeps 1.
    let (code, _, err) = h.run(&["forget", "--config", config]).await;
    assert_eq!(code, 0, "{err}");
    let listed = h.listed().await;
    assert_eq!(listed.iter().filter(|(_, b)| *b == h.base).count(), 2);
    assert_eq!(listed.iter().filter(|(_, b)| b == OTHER_BASE).count(), 1);
    // Flags replace the config's rules for the run, and say so.
    let (code, _, err) = h
        .run(&["forget", "--config", config, "--keep-last", "1"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("replace the config's retention"), "{err}");
    assert_eq!(h.listed().await.len(), 2);
}
