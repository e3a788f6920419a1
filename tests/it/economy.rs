//! Request economy (issue 17): the storage requests each command makes, counted by the S3
//! server (so that requests opendal makes on its own, such as paged listings, are seen), and
//! the bound on an unchanged nightly snapshot of a repository of 30 snapshots.

use std::path::Path;
use std::sync::Arc;

use airback::NoProgress;
use airback::repo::{CacheChoice, Repository};
use airback::{BackupOptions, backup_base};
use airback_fake::{FakeAirtable, FakeOptions, LargeParams, Preset};
use serde_json::{Map, Value, json};

use crate::cli::airback_with;
use crate::support::{self, s3::S3Server};

/// Requests by the kind a storage service bills them as: `LIST`, `HEAD`, `GET`, `PUT`
/// (uploads, multipart parts and their start and end included) and `DELETE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds {
    pub list: u64,
    pub head: u64,
    pub get: u64,
    pub put: u64,
    pub delete: u64,
}

impl Kinds {
    /// Classifies the S3 server's log lines (`<operation> <uri>`) by operation.
    pub fn of(log: &[String]) -> Kinds {
        let mut k = Kinds::default();
        for line in log {
            let op = line.split(' ').next().unwrap_or("");
            let counter = if op.starts_with("List") {
                &mut k.list
            } else if op.starts_with("Head") {
                &mut k.head
            } else if op.starts_with("Get") {
                &mut k.get
            } else if op.starts_with("Delete") {
                &mut k.delete
            } else {
                &mut k.put
            };
            *counter += 1;
        }
        k
    }

    pub fn total(&self) -> u64 {
        self.list + self.head + self.get + self.put + self.delete
    }

    /// The same figures from a command's `storage_requests` in `--json`.
    pub fn from_json(v: &Value) -> Kinds {
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
        Kinds {
            list: n("LIST"),
            head: n("HEAD"),
            get: n("GET"),
            put: n("PUT"),
            delete: n("DELETE"),
        }
    }
}

impl std::fmt::Display for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "| {} | {} | {} | {} | {} | {} |",
            self.list,
            self.head,
            self.get,
            self.put,
            self.delete,
            self.total()
        )
    }
}

/// A table of 300 records (three pages) and 12 attachments.
fn base_options() -> FakeOptions {
    FakeOptions {
        large: LargeParams {
            bases: 1,
            tables: 1,
            records_per_table: 300,
            attachments: 12,
            min_attachment_bytes: 20_000,
            max_attachment_bytes: 150_000,
            size_skew: 1.0,
        },
        ..FakeOptions::unlimited(Preset::Large)
    }
}

/// An S3 repository, a base and the binary's cache.
struct Setup {
    s3: S3Server,
    fake: FakeAirtable,
    base: String,
    location: String,
    cache: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let s3 = S3Server::start().await;
        let fake = FakeAirtable::start(base_options()).await.unwrap();
        let base = fake.bases()[0].id.clone();
        let dir = tempfile::tempdir().unwrap();
        let location = s3.location("economy");
        Setup {
            cache: dir.path().join("cache"),
            s3,
            fake,
            base,
            location,
            dir,
        }
    }

    /// Runs the binary with the repository and the cache; returns its parsed `--json` output
    /// (one document per line) and the server's count of the requests it made.
    async fn run(&self, args: &[&str]) -> (Vec<Value>, Kinds, Vec<String>) {
        self.run_at(&self.location, &self.cache, args).await
    }

    async fn run_at(
        &self,
        location: &str,
        cache: &Path,
        args: &[&str],
    ) -> (Vec<Value>, Kinds, Vec<String>) {
        let mark = self.s3.requests().len();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--repo", location, "--json"]);
        let (code, out, err) = airback_with(&self.fake, cache, &all).await;
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        let log = self.s3.requests()[mark..].to_vec();
        let docs = out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (docs, Kinds::of(&log), log)
    }

    /// `n` snapshots of the base taken by the library through the binary's cache (fast: an
    /// unpaced client), as earlier nights would have.
    async fn history(&self, n: usize) {
        self.history_at(&self.location, &self.cache, n).await;
    }

    /// [`Setup::history`] in the repository at `location` with the cache `cache`.
    async fn history_at(&self, location: &str, cache: &Path, n: usize) {
        let backend = support::open_backend(location);
        let repo = Repository::open(
            backend,
            CacheChoice::Dir(cache.to_path_buf()),
            support::password(),
        )
        .await
        .unwrap();
        let client_options = airback::ClientOptions::default()
            .with_url(&self.fake.url())
            .unpaced();
        let client = airback::Client::new(
            airback::Token::new(self.fake.token()).unwrap(),
            client_options,
        )
        .unwrap();
        for _ in 0..n {
            repo.adopt_unindexed_packs().await.unwrap();
            backup_base(
                &repo,
                &client,
                &BackupOptions::new(&self.base),
                Arc::new(NoProgress),
            )
            .await
            .unwrap();
        }
    }

    /// Changes `share` of the records' notes.
    fn change(&self, share: f64, seed: u64) {
        let schema = self.fake.schema_json(&self.base);
        let table = &schema["tables"][0];
        let table_id = table["id"].as_str().unwrap();
        let notes = support::field_id(table, "Notes");
        let records = self.fake.records_json(&self.base, table_id);
        let mut rng = fastrand::Rng::with_seed(seed);
        let count = ((records.len() as f64 * share).ceil() as usize).max(1);
        for record in rng.choose_multiple(records.iter(), count) {
            let mut fields = Map::new();
            fields.insert(
                notes.clone(),
                json!(format!("changed {seed}: {}", rng.u64(..))),
            );
            self.fake
                .update_record_fields(&self.base, table_id, record["id"].as_str().unwrap(), fields)
                .unwrap();
        }
    }
}

/// The bound of issue 17: an unchanged nightly snapshot of a base in an S3 repository of 30
/// snapshots makes at most 5 PUTs and 20 requests in all, as the server counts them, and its
/// `--json` reports what the server counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_nightly_snapshot_of_a_30_snapshot_s3_repository_makes_few_requests() {
    let s = Setup::new().await;
    let (docs, counted, _) = s.run(&["init"]).await;
    assert_eq!(Kinds::from_json(&docs[0]["storage_requests"]), counted);
    s.history(29).await;
    // The 30th through the binary, as every night.
    s.run(&["snapshot", "--base", &s.base]).await;
    let (docs, counted, log) = s.run(&["snapshot", "--base", &s.base]).await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["outcome"], "ok", "{docs:?}");
    // `--json` says what the server counted, but the lock's removal after the result.
    let reported = Kinds::from_json(&docs[0]["storage_requests"]);
    assert_eq!(
        Kinds {
            delete: reported.delete + 1,
            ..reported
        },
        counted,
        "{docs:?}\n{log:#?}"
    );
    assert_eq!(docs[0]["attachments_downloaded"], 0, "{docs:?}");
    assert_eq!(docs[0]["attachments_reused"], 12, "{docs:?}");
    eprintln!("unchanged nightly: {counted}\n{}", log.join("\n"));
    let lists = |dir: &str| {
        log.iter()
            .filter(|r| r.starts_with("List") && r.ends_with(&format!("prefix=economy/{dir}/")))
            .count()
    };
    // `snapshots/` is not listed; `index/` once, after the writer lock (a prune's marks must
    // be seen: docs/FORMAT.md, "Deletion", rules 1 and 4); `data/` once, since the repository
    // has fewer packs than a page holds (see `snapshot_runs_list_the_packs_when_due`).
    assert_eq!(
        (lists("data"), lists("snapshots"), lists("index")),
        (1, 0, 1),
        "{log:#?}"
    );
    assert!(
        counted.put <= 5 && counted.total() <= 20,
        "an unchanged nightly made {} PUTs and {} requests in all (LIST {}, HEAD {}, GET {}, \
         DELETE {}):\n{}",
        counted.put,
        counted.total(),
        counted.list,
        counted.head,
        counted.get,
        counted.delete,
        log.join("\n")
    );
    // Commands that remove their lock before the result report every request.
    for args in [
        &["check"][..],
        &["forget", "--keep-last", "100", "--dry-run"],
    ] {
        let (docs, counted, log) = s.run(args).await;
        assert_eq!(
            Kinds::from_json(&docs[0]["storage_requests"]),
            counted,
            "{args:?}: {docs:?}\n{log:#?}"
        );
    }
}

/// The listing of `data/` (adoption of leftover packs, lost packs noticed) is made by every
/// snapshot run while it is one page; beyond, by the first run from a cache, after a run that
/// did not finish, and a week after the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_runs_list_the_packs_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo").to_str().unwrap().to_owned();
    let backend = support::open_backend(&location);
    Repository::init(&backend, &support::init_options())
        .await
        .unwrap();
    let repo = Repository::open(
        backend,
        CacheChoice::Dir(dir.path().join("cache")),
        support::password(),
    )
    .await
    .unwrap();
    let lists = async || {
        let before = repo.backend().requests().list;
        let listed = repo.adopt_unindexed_packs_if_due(0).await.unwrap();
        let made = repo.backend().requests().list - before;
        assert_eq!(made, u64::from(listed.is_some()), "{listed:?}");
        listed.is_some()
    };
    // A snapshot, so that the index knows a pack (more than the `0` passed above).
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let client = airback::Client::new(
        airback::Token::new(fake.token()).unwrap(),
        airback::ClientOptions::default()
            .with_url(&fake.url())
            .unpaced(),
    )
    .unwrap();
    let base = fake.bases()[0].id.clone();
    backup_base(
        &repo,
        &client,
        &BackupOptions::new(&base),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert!(lists().await, "a new cache lists the packs");
    assert!(
        lists().await,
        "a run that did not finish is followed by a listing"
    );
    repo.snapshot_run_finished();
    assert!(!lists().await, "a finished run with a fresh listing is not");
    repo.snapshot_run_finished();
    let old = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() - airback::repo::PACK_LISTING_INTERVAL,
    )
    .to_string();
    repo.cache().set_value("packs-listed", &old).unwrap();
    assert!(
        lists().await,
        "a week after the last listing, the packs are listed again"
    );
    repo.snapshot_run_finished();
    assert!(
        repo.adopt_unindexed_packs_if_due(airback::repo::PACKS_LISTED_EVERY_RUN)
            .await
            .unwrap()
            .is_some(),
        "a repository of fewer packs than a page holds is listed by every run"
    );
}

/// The table of docs/BENCHMARKS.md, "Request economy": the requests each command makes on S3
/// (counted by the server) and on a local folder (counted by airback, `storage_requests` in
/// `--json`), for a base of 300 records and 12 attachments in a repository of 30 snapshots.
/// `cargo test --test it request_economy_table -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints the table of docs/BENCHMARKS.md"]
async fn request_economy_table() {
    let s = Setup::new().await;
    let local = s.dir.path().join("local").to_str().unwrap().to_owned();
    let local_cache = s.dir.path().join("local-cache");
    let mut rows: Vec<(String, Kinds, Kinds)> = Vec::new();
    // Runs `args` on both repositories: the server's count on S3, the `--json` one locally
    // (the last document's, plus the lock's removal where the result precedes it).
    async fn both(
        s: &Setup,
        local: &str,
        local_cache: &Path,
        args: &[&str],
        lock_after: bool,
    ) -> (Kinds, Kinds, Vec<Value>) {
        let (_, on_s3, _) = s.run(args).await;
        let (docs, _, _) = s.run_at(local, local_cache, args).await;
        let mut on_disk = Kinds::from_json(&docs.last().unwrap()["storage_requests"]);
        on_disk.delete += u64::from(lock_after);
        (on_s3, on_disk, docs)
    }
    let (a, b, _) = both(&s, &local, &local_cache, &["init"], false).await;
    rows.push(("init".into(), a, b));
    let snapshot = ["snapshot", "--base", s.base.as_str()];
    let (a, b, _) = both(&s, &local, &local_cache, &snapshot, true).await;
    rows.push(("first snapshot".into(), a, b));
    // 28 more nights, then one through the binary: 30 snapshots.
    s.history(28).await;
    s.history_at(&local, &local_cache, 28).await;
    both(&s, &local, &local_cache, &snapshot, true).await;
    let (a, b, _) = both(&s, &local, &local_cache, &snapshot, true).await;
    rows.push(("unchanged nightly (31st snapshot)".into(), a, b));
    s.change(0.01, 1);
    let (a, b, _) = both(&s, &local, &local_cache, &snapshot, true).await;
    rows.push(("1 % of records changed".into(), a, b));
    let (a, b, _) = both(&s, &local, &local_cache, &["check"], false).await;
    rows.push(("check".into(), a, b));
    let (a, b, _) = both(&s, &local, &local_cache, &["check", "--read-data"], false).await;
    rows.push(("check --read-data".into(), a, b));
    let out = s.dir.path().join("export-s3");
    let out_local = s.dir.path().join("export-local");
    let (_, a, _) = s
        .run(&["export", "latest", "-f", "dir", "-o", out.to_str().unwrap()])
        .await;
    let (docs, _, _) = s
        .run_at(
            &local,
            &local_cache,
            &[
                "export",
                "latest",
                "-f",
                "dir",
                "-o",
                out_local.to_str().unwrap(),
            ],
        )
        .await;
    rows.push((
        "export (folder)".into(),
        a,
        Kinds::from_json(&docs[0]["storage_requests"]),
    ));
    let workspace = s.fake.workspace_id();
    let restore = ["restore", "latest", "--workspace", workspace.as_str()];
    let (a, b, _) = both(&s, &local, &local_cache, &restore, true).await;
    rows.push(("restore (new base)".into(), a, b));
    println!(
        "| command | S3: LIST | HEAD | GET | PUT | DELETE | all | local folder: LIST | HEAD | GET | PUT | DELETE | all |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (what, a, b) in rows {
        let b = b.to_string();
        println!("| {what} {a} {}", b.trim_start_matches("| "));
    }
}
