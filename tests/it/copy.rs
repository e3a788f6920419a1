//! `airback copy` (issue #13, acceptance 6): every snapshot of a local repository copied into
//! an S3 repository (the in-process server) with another password; the copy passes `check
//! --read-data` and exports exactly like the original; a second copy transfers no blob, and
//! neither does one whose target cache was deleted. Format 1 → 1 (the same ids), 1 → 2 and
//! 2 → 2 (ids rewritten). A wrong target password writes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airback::backend::{Backend, BackendOptions};
use airback::backup::{BackupOptions, backup_base};
use airback::crypto::{KdfParams, KeyMeta, Password};
use airback::id::SnapshotId;
use airback::progress::NoProgress;
use airback::repo::{CacheChoice, CopyOf, InitEncryption, InitOptions, Repository};
use airback_fake::{FakeAirtable, FakeOptions, LargeParams, Preset};
use serde_json::{Map, Value, json};

use crate::support::s3::S3Server;
use crate::support::{self, TEST_PASSWORD, airback};

/// The target's password: not the source's.
const TARGET_PASSWORD: &str = "another password for the copy";

/// A table of 1,500 records (enough text for a zstd dictionary) and 12 attachments.
fn base_options() -> FakeOptions {
    FakeOptions {
        large: LargeParams {
            bases: 1,
            tables: 1,
            records_per_table: 1500,
            attachments: 12,
            min_attachment_bytes: 20_000,
            max_attachment_bytes: 150_000,
            size_skew: 1.0,
        },
        ..FakeOptions::unlimited(Preset::Large)
    }
}

/// A source format: 2 (encrypted with the tests' password, whatever the test pass says) or 1.
fn source_options(encrypted: bool) -> InitOptions {
    let encryption = if encrypted {
        InitEncryption::Password {
            password: Arc::new(Password::new(TEST_PASSWORD.as_bytes().into())),
            kdf: KdfParams::FOR_TESTS,
            meta: KeyMeta {
                hostname: "test-host".into(),
                username: "tester".into(),
                created: "2026-12-05T00:00:00Z".into(),
            },
        }
    } else {
        InitEncryption::None
    };
    InitOptions {
        encryption,
        ..InitOptions::default()
    }
}

/// A local source repository made by the library, a fake base, an S3 server for the target
/// and the binary's cache folder.
struct Setup {
    fake: FakeAirtable,
    base: String,
    source: Repository,
    source_location: String,
    client: airback::Client,
    s3: S3Server,
    target_location: String,
    target_password_file: PathBuf,
    /// The binary's cache folder (`AIRBACK_CACHE_DIR`).
    cache: PathBuf,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(source_encrypted: bool) -> Setup {
        let fake = FakeAirtable::start(base_options()).await.unwrap();
        let base = fake.bases()[0].id.clone();
        let dir = tempfile::tempdir().unwrap();
        let source_location = dir.path().join("source").to_str().unwrap().to_owned();
        let backend = support::open_backend(&source_location);
        Repository::init(&backend, &source_options(source_encrypted))
            .await
            .unwrap();
        let password = Password::new(TEST_PASSWORD.as_bytes().into());
        let source = Repository::open(
            backend,
            CacheChoice::Dir(dir.path().join("library-cache")),
            source_encrypted.then_some(&password),
        )
        .await
        .unwrap();
        let mut client_options = airback::ClientOptions::default().with_url(&fake.url());
        client_options.retry_base_delay = std::time::Duration::from_millis(20);
        let client =
            airback::Client::new(airback::Token::new(fake.token()).unwrap(), client_options)
                .unwrap();
        let s3 = S3Server::start().await;
        let target_location = s3.location("copy");
        let target_password_file = dir.path().join("target-password");
        std::fs::write(&target_password_file, format!("{TARGET_PASSWORD}\n")).unwrap();
        Setup {
            fake,
            base,
            source,
            source_location,
            client,
            s3,
            target_location,
            target_password_file,
            cache: dir.path().join("cache"),
            dir,
        }
    }

    /// Takes a snapshot of the base with the library.
    async fn snapshot(&self) -> SnapshotId {
        self.source.adopt_unindexed_packs().await.unwrap();
        backup_base(
            &self.source,
            &self.client,
            &BackupOptions::new(&self.base),
            Arc::new(NoProgress),
        )
        .await
        .unwrap()
        .snapshot_id
    }

    /// Creates the S3 target with the binary, encrypted with [`TARGET_PASSWORD`] or not;
    /// returns its repository id.
    async fn init_target(&self, encrypted: bool) -> String {
        let pw = self.target_password_file.to_str().unwrap();
        let mut args = vec!["init", "--repo", &self.target_location, "--json"];
        if encrypted {
            args.extend(["--password-file", pw]);
        } else {
            args.push("--insecure-no-password");
        }
        let (code, out, err) = airback(&self.cache, &args).await;
        assert_eq!(code, 0, "init: {err}");
        let created: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(created["encrypted"], encrypted);
        created["repository_id"].as_str().unwrap().to_owned()
    }

    /// Runs the binary against the target (its password from the file).
    async fn on_target(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = args.to_vec();
        all.extend([
            "--repo",
            &self.target_location,
            "--password-file",
            self.target_password_file.to_str().unwrap(),
        ]);
        airback(&self.cache, &all).await
    }

    /// `airback copy` of every snapshot into the target, `--json`; returns its summary.
    async fn copy(&self) -> Value {
        let (code, out, err) = airback(
            &self.cache,
            &[
                "copy",
                "--repo",
                &self.source_location,
                "--to-repo",
                &self.target_location,
                "--to-password-file",
                self.target_password_file.to_str().unwrap(),
                "--json",
            ],
        )
        .await;
        assert_eq!(code, 0, "copy: {out}{err}");
        serde_json::from_str(out.trim()).unwrap()
    }

    /// The target opened by the library.
    async fn target(&self, encrypted: bool) -> Repository {
        let backend = Backend::open(&self.target_location, &BackendOptions::default()).unwrap();
        let password = Password::new(TARGET_PASSWORD.as_bytes().into());
        Repository::open(backend, CacheChoice::Memory, encrypted.then_some(&password))
            .await
            .unwrap()
    }

    /// Exports snapshot `id` of the repository at `location` (source or target) as a folder.
    async fn export(&self, location: &str, id: &str) -> PathBuf {
        let out = self.dir.path().join(format!("export-{id}"));
        let mut args = vec![
            "export",
            id,
            "--repo",
            location,
            "-f",
            "dir",
            "-o",
            out.to_str().unwrap(),
        ];
        if location == self.target_location {
            args.extend([
                "--password-file",
                self.target_password_file.to_str().unwrap(),
            ]);
        }
        let (code, _, err) = airback(&self.cache, &args).await;
        assert_eq!(code, 0, "export {id}: {err}");
        out
    }

    /// Changes the base a little: new notes on some records, one attachment more.
    fn mutate(&self, run: u64) {
        let schema = self.fake.schema_json(&self.base);
        let table = &schema["tables"][0];
        let table_id = table["id"].as_str().unwrap();
        let field = |name: &str| crate::support::field_id(table, name);
        let (notes, files) = (field("Notes"), field("Files"));
        let records = self.fake.records_json(&self.base, table_id);
        let mut rng = fastrand::Rng::with_seed(run);
        for record in &records {
            if rng.f64() < 0.05 {
                let mut fields = Map::new();
                fields.insert(notes.clone(), json!(format!("run {run}: {}", rng.u64(..))));
                self.fake
                    .update_record_fields(
                        &self.base,
                        table_id,
                        record["id"].as_str().unwrap(),
                        fields,
                    )
                    .unwrap();
            }
        }
        let record = &records[rng.usize(..records.len())];
        self.fake
            .add_attachment(
                &self.base,
                table_id,
                record["id"].as_str().unwrap(),
                &files,
                &format!("run{run}.bin"),
                support::random_bytes(60_000, run),
            )
            .unwrap();
    }

    /// The target's requests to S3 after the first `from` of the server's log that write.
    fn writes_since(&self, from: usize) -> Vec<String> {
        self.s3.requests()[from..]
            .iter()
            .filter(|r| r.starts_with("PutObject") || r.starts_with("DeleteObject"))
            .cloned()
            .collect()
    }
}

/// Asserts that two export folders hold the same files with the same bytes; `manifest.json`
/// differs only in the snapshot's id.
fn assert_same_export(original: &Path, copy: &Path) {
    let (a, b) = (support::contents(original), support::contents(copy));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same files"
    );
    assert!(
        a.keys().any(|p| p.starts_with("attachments")),
        "the export has attachments"
    );
    for (path, bytes) in &a {
        if path == Path::new("manifest.json") {
            let mut x: Value = serde_json::from_slice(bytes).unwrap();
            let mut y: Value = serde_json::from_slice(&b[path]).unwrap();
            x["snapshot"]["id"] = Value::Null;
            y["snapshot"]["id"] = Value::Null;
            assert_eq!(x, y, "manifest.json");
        } else {
            assert!(bytes == &b[path], "{} differs", path.display());
        }
    }
}

/// PUTs to S3 made by the target, from a copy's JSON summary.
fn puts(summary: &Value) -> u64 {
    summary["requests"]["target"]["PUT"].as_u64().unwrap()
}

/// The acceptance scenario for one pair of formats.
async fn copies_and_second_copies_transfer_nothing(source_encrypted: bool, target_encrypted: bool) {
    let s = Setup::new(source_encrypted).await;
    let mut ids = Vec::new();
    for run in 1..=3 {
        s.mutate(run);
        ids.push(s.snapshot().await);
    }
    assert!(
        s.source.dictionaries().for_encoding().is_some(),
        "the source compresses table text with a dictionary, which the copy must not need"
    );
    let target_id = s.init_target(target_encrypted).await;

    // 1. Everything is copied, oldest first.
    let first = s.copy().await;
    assert_eq!(first["snapshots"], json!({"copied": 3, "skipped": 0}));
    assert!(first["blobs"]["copied"].as_u64().unwrap() > 0, "{first}");
    let list = first["list"].as_array().unwrap();
    let copied: Vec<(String, String)> = list
        .iter()
        .map(|e| {
            assert_eq!(e["action"], "copied");
            (
                e["source"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let sources: Vec<String> = copied.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(
        sources,
        ids.iter().map(SnapshotId::to_hex).collect::<Vec<_>>(),
        "oldest first"
    );

    // 2. The copy is sound and exports exactly like the original.
    let (code, out, err) = s.on_target(&["check", "--read-data"]).await;
    assert_eq!(code, 0, "check --read-data of the copy: {out}{err}");
    for (original, copy) in &copied {
        let a = s.export(&s.source_location, original).await;
        let b = s.export(&s.target_location, copy).await;
        assert_same_export(&a, &b);
    }

    // The manifests say what they are copies of; format 1 → 1 keeps every id.
    let target = s.target(target_encrypted).await;
    for (original, copy) in &copied {
        let a = s
            .source
            .load_snapshot(&original.parse().unwrap())
            .await
            .unwrap();
        let b = target.load_snapshot(&copy.parse().unwrap()).await.unwrap();
        assert_eq!(
            b.copy_of,
            Some(CopyOf {
                repository: s.source.id(),
                snapshot: original.parse().unwrap(),
            })
        );
        assert_eq!(
            (&a.time, &a.source, &a.summary),
            (&b.time, &b.source, &b.summary)
        );
        if !source_encrypted && !target_encrypted {
            assert_eq!(a.tree, b.tree, "format 1 → 1: the same ids");
        } else {
            assert_ne!(a.tree, b.tree, "another key, other ids");
        }
    }

    // 3. A second copy transfers nothing and reads no tree: the only PUT is its lock.
    let mark = s.s3.requests().len();
    let second = s.copy().await;
    assert_eq!(second["snapshots"], json!({"copied": 0, "skipped": 3}));
    assert_eq!(
        second["blobs"],
        json!({"copied": 0, "present": 0, "read": 0})
    );
    assert_eq!(puts(&second), 1, "only the lock: {second}");
    let writes = s.writes_since(mark);
    assert!(
        writes.iter().all(|w| w.contains("/copy/locks/")),
        "{writes:#?}"
    );

    // 4. Without the target's cache: still nothing.
    let target_cache = s.cache.join(&target_id);
    assert!(target_cache.is_dir(), "{}", target_cache.display());
    std::fs::remove_dir_all(&target_cache).unwrap();
    let third = s.copy().await;
    assert_eq!(third["blobs"]["copied"], 0, "{third}");
    assert_eq!(puts(&third), 1, "{third}");

    // 5. A new snapshot of the unchanged base shares every blob with the last one. Without
    // the target's cache its blobs must be read to learn their target ids (format 2), and
    // none is uploaded: the only PUTs are the lock and the manifest.
    let fourth_id = s.snapshot().await;
    std::fs::remove_dir_all(&target_cache).unwrap();
    let mark = s.s3.requests().len();
    let fourth = s.copy().await;
    assert_eq!(fourth["snapshots"], json!({"copied": 1, "skipped": 3}));
    assert_eq!(fourth["blobs"]["copied"], 0, "{fourth}");
    assert_eq!(puts(&fourth), 2, "lock and manifest: {fourth}");
    let writes = s.writes_since(mark);
    assert!(
        writes
            .iter()
            .all(|w| w.contains("/copy/locks/") || w.contains("/copy/snapshots/")),
        "{writes:#?}"
    );
    let read_without_cache = fourth["blobs"]["read"].as_u64().unwrap();

    // 6. And with the cache, which now maps every blob: only the trees are read.
    s.snapshot().await;
    let fifth = s.copy().await;
    assert_eq!(fifth["snapshots"], json!({"copied": 1, "skipped": 4}));
    assert_eq!(fifth["blobs"]["copied"], 0, "{fifth}");
    let read_with_cache = fifth["blobs"]["read"].as_u64().unwrap();
    let trees = count_trees(&s.source, &fourth_id).await;
    assert_eq!(read_with_cache, trees, "only the trees: {fifth}");
    if target_encrypted || source_encrypted {
        assert!(read_without_cache > trees, "{fourth}");
    } else {
        assert_eq!(
            read_without_cache, trees,
            "format 1 → 1 needs no read for ids"
        );
    }
    let (code, out, err) = s.on_target(&["check", "--read-data"]).await;
    assert_eq!(code, 0, "check --read-data at the end: {out}{err}");
}

/// The trees below snapshot `id`'s root, the root included.
async fn count_trees(repo: &Repository, id: &SnapshotId) -> u64 {
    let mut stack = vec![repo.load_snapshot(id).await.unwrap().tree];
    let mut count = 0;
    while let Some(tree) = stack.pop() {
        count += 1;
        for node in repo.load_tree(&tree).await.unwrap().nodes {
            if let airback::repo::NodeKind::Dir { subtree } = node.kind {
                stack.push(subtree);
            }
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_2_to_format_2_with_another_password() {
    copies_and_second_copies_transfer_nothing(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_1_to_format_2() {
    copies_and_second_copies_transfer_nothing(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_1_to_format_1_keeps_the_ids() {
    copies_and_second_copies_transfer_nothing(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_target_password_exits_12_and_writes_nothing() {
    let s = Setup::new(true).await;
    s.snapshot().await;
    s.init_target(true).await;
    let wrong = s.dir.path().join("wrong-password");
    std::fs::write(&wrong, "not the target's password\n").unwrap();
    let mark = s.s3.requests().len();
    let (code, out, err) = airback(
        &s.cache,
        &[
            "copy",
            "--repo",
            &s.source_location,
            "--to-repo",
            &s.target_location,
            "--to-password-file",
            wrong.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 12, "{out}{err}");
    assert!(
        err.contains("`--to-password-file`") && err.contains("target repository"),
        "{err}"
    );
    assert!(!err.contains("not the target's password"), "{err}");
    assert_eq!(s.writes_since(mark), Vec::<String>::new());
    // The source's password (AIRBACK_PASSWORD) is never tried on the target.
    let (code, _, err) = airback(
        &s.cache,
        &[
            "copy",
            "--repo",
            &s.source_location,
            "--to-repo",
            &s.target_location,
        ],
    )
    .await;
    assert_eq!(code, 12, "{err}");
    assert!(err.contains("AIRBACK_TO_PASSWORD_FILE"), "{err}");
    assert_eq!(s.writes_since(mark), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_target_exits_10_and_says_to_create_it() {
    let s = Setup::new(false).await;
    s.snapshot().await;
    let missing = s.dir.path().join("no-such-repo");
    let (code, out, err) = airback(
        &s.cache,
        &[
            "copy",
            "--repo",
            &s.source_location,
            "--to-repo",
            missing.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        err.contains("target repository") && err.contains("airback init"),
        "{err}"
    );
}

/// A tree the target holds does not prove it holds what is below it (a prune may have freed a
/// forgotten snapshot's content and kept a tree that shared a pack with used blobs): `copy`
/// still goes through every subtree. A dry run first says the same and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_the_target_holds_without_its_content_is_copied_whole() {
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let location = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let source = support::new_repo(&location("source"), &source_options(false)).await;
    let target = support::new_repo(&location("target"), &source_options(false)).await;
    let client = airback::Client::new(
        airback::Token::new(fake.token()).unwrap(),
        airback::ClientOptions::default().with_url(&fake.url()),
    )
    .unwrap();
    let base = fake.bases()[0].id.clone();
    let id = backup_base(
        &source,
        &client,
        &BackupOptions::new(&base),
        Arc::new(NoProgress),
    )
    .await
    .unwrap()
    .snapshot_id;
    // The root tree alone (format 1 → 1: the same id in both).
    let root = source.load_snapshot(&id).await.unwrap().tree;
    let writer = target.writer();
    let stored = writer
        .save_blob(
            airback::repo::BlobKind::Meta,
            source.read_blob(&root).await.unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(stored, root);
    writer.flush().await.unwrap();

    let dry = airback::copy(
        &source,
        &target,
        &[id],
        &airback::CopyOptions { dry_run: true },
    )
    .await
    .unwrap();
    assert_eq!((dry.snapshots.copied, dry.list[0].target), (1, None));
    assert_eq!(dry.requests.target.put, 0, "{dry:?}");
    assert!(target.list_snapshots().await.unwrap().is_empty());

    let summary = airback::copy(&source, &target, &[id], &airback::CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(summary.snapshots.copied, 1);
    assert_eq!(summary.blobs.present, 1, "the root tree: {summary:?}");
    assert_eq!(summary.blobs.copied, dry.blobs.copied, "{summary:?}");
    assert!(summary.blobs.copied > 1, "{summary:?}");
    let report = airback::check(
        &target,
        &airback::CheckOptions {
            read_data: true,
            ..airback::CheckOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
    assert_eq!(report.snapshots, 1);
}

/// The config's `copies:`: after `snapshot --config`, each second repository receives the
/// run's bases' snapshots it lacks, with the password its entry names. A copy that fails says
/// the snapshot is saved and exits 1, the other copies still run, and the next night catches
/// up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_copies_receive_each_nightly_snapshot_and_catch_up() {
    use crate::cli::airback_with;
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let base = fake.bases()[0].id.clone();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (main, offsite, plain) = (path("main"), path("offsite"), path("plain"));
    let offsite_password = dir.path().join("offsite-password");
    std::fs::write(&offsite_password, TARGET_PASSWORD).unwrap();
    let config = dir.path().join("airback.yaml");
    std::fs::write(
        &config,
        format!(
            "repository: {main}\nbases:\n  - id: {base}\ncopies:\n  - repository: {offsite}\n    \
             password_file: {}\n  - repository: {plain}\n    bases: [{base}]\n",
            offsite_password.display()
        ),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let run = |args: &'static [&'static str]| {
        let (fake, cache, config) = (&fake, &cache, &config);
        async move {
            let mut all = args.to_vec();
            all.extend(["--config", config.to_str().unwrap()]);
            airback_with(fake, cache, &all).await
        }
    };
    let (code, _, err) = run(&["init"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = airback(
        &cache,
        &["init", "--repo", &plain, "--insecure-no-password"],
    )
    .await;
    assert_eq!(code, 0, "{err}");

    // Night 1: the offsite repository does not exist yet.
    let (code, out, err) = run(&["snapshot", "--json"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "snapshots are saved in the main repository; the copy to {offsite} failed"
        )) && err.contains("the next run copies them"),
        "{err}"
    );
    let reports: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let copies: Vec<&Value> = reports.iter().filter_map(|r| r.get("copy")).collect();
    assert_eq!(copies.len(), 2, "{out}");
    assert_eq!(copies[0]["copied"], false);
    assert_eq!(copies[1]["copied"], true);
    assert_eq!(copies[1]["summary"]["snapshots"]["copied"], 1);

    // Night 2, with the offsite repository created: it catches up.
    let pw = offsite_password.to_str().unwrap();
    let (code, _, err) =
        airback(&cache, &["init", "--repo", &offsite, "--password-file", pw]).await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&["snapshot"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("copy to "), "{out}");
    assert_eq!(snapshot_count(&cache, &main, None).await, 2);
    assert_eq!(
        snapshot_count(&cache, &offsite, Some(pw)).await,
        2,
        "caught up"
    );
    assert_eq!(snapshot_count(&cache, &plain, None).await, 2);

    // `airback copy` into a repository the config lists reads its entry's password.
    let (code, out, err) = airback_with(
        &fake,
        &cache,
        &[
            "copy",
            "--to-repo",
            &offsite,
            "--config",
            config.to_str().unwrap(),
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["snapshots"], json!({"copied": 0, "skipped": 2}));
}

/// How many snapshots `airback snapshots` lists in the repository at `location`.
async fn snapshot_count(cache: &Path, location: &str, password: Option<&str>) -> usize {
    let mut args = vec!["snapshots", "--repo", location, "--json"];
    if let Some(pw) = password {
        args.extend(["--password-file", pw]);
    }
    let (code, out, err) = airback(cache, &args).await;
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(out.trim()).unwrap();
    listed.as_array().unwrap().len()
}
