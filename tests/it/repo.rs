//! The repository engine: backend conformance (fs, memory, a real S3 server), init and check
//! through the CLI, round trips, deduplication, crash safety at each step of the write order,
//! and damage detection.

use std::path::Path;

use airback::backend::{Backend, BackendError};
use airback::check::{CheckOptions, check};
use airback::id::{BlobId, SnapshotId};
use airback::repo::BlobKind;
use airback::repo::{BlobWriter, CacheChoice, Repository};
use airback::repo::{Node, NodeKind, Tree};
use proptest::prelude::*;

use crate::support::s3::S3Server;
use crate::support::{
    airback, commit, files_below, json_lines, new_repo, open_backend, random_bytes, small_options,
};

// ---------------------------------------------------------------------------------------------
// Backend conformance: the same contract on every service.

pub(crate) async fn conformance(backend: Backend) {
    backend.write("a/b/one", b"hello".to_vec()).await.unwrap();
    let big = random_bytes(3 * 1024 * 1024 + 17, 1);
    backend.write("a/b/two", big.clone()).await.unwrap();
    backend.write("a/three", b"x".to_vec()).await.unwrap();

    assert_eq!(backend.read("a/b/one").await.unwrap(), b"hello");
    assert_eq!(backend.read("a/b/two").await.unwrap(), big);
    assert_eq!(backend.read_range("a/b/one", 1..4).await.unwrap(), b"ell");
    assert_eq!(
        backend
            .read_range("a/b/two", 1_000_000..1_000_100)
            .await
            .unwrap(),
        &big[1_000_000..1_000_100]
    );
    assert_eq!(backend.size("a/b/one").await.unwrap(), Some(5));
    assert_eq!(backend.size("a/missing").await.unwrap(), None);
    assert!(matches!(
        backend.read("a/missing").await,
        Err(BackendError::NotFound { .. })
    ));

    let listed: Vec<(String, u64)> = backend
        .list("a/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.size))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("b/one".to_string(), 5),
            ("b/two".to_string(), big.len() as u64),
            ("three".to_string(), 1)
        ]
    );
    assert!(backend.list("nothing-here/").await.unwrap().is_empty());

    backend.delete("a/three").await.unwrap();
    assert_eq!(backend.size("a/three").await.unwrap(), None);
    backend.delete("a/three").await.unwrap(); // deleting a missing object is fine

    // A streamed write (restore stages attachments so), in pieces of any size.
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> =
        [&big[..10], &big[10..70_000], &big[70_000..]]
            .into_iter()
            .map(|piece| Ok(bytes::Bytes::copy_from_slice(piece)))
            .collect();
    backend
        .write_stream("c/streamed", futures::stream::iter(pieces))
        .await
        .unwrap();
    assert_eq!(backend.read("c/streamed").await.unwrap(), big);
    backend.delete("c/streamed").await.unwrap();
}

#[tokio::test]
async fn backend_conformance_fs() {
    let dir = tempfile::tempdir().unwrap();
    conformance(open_backend(dir.path().to_str().unwrap())).await;
    // Atomic writes leave no temporary files behind.
    let left: Vec<String> = files_below(dir.path())
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(left, ["a/b/one", "a/b/two"]);
}

#[tokio::test]
async fn backend_conformance_memory() {
    conformance(open_backend("memory://")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_s3() {
    let server = S3Server::start().await;
    conformance(open_backend(&server.location("conformance"))).await;
}

// ---------------------------------------------------------------------------------------------
// init and check through the CLI (acceptance 1).

async fn init_and_check(location: &str, cache: &Path) {
    let (code, out, err) = airback(cache, &["init", "--repo", location]).await;
    assert_eq!(code, 0, "init failed: {out}{err}");
    assert!(out.contains("created airback repository"), "{out}");
    assert!(
        !out.contains(crate::support::s3::SECRET_KEY),
        "a secret leaked into the output: {out}"
    );

    let (code, out, err) = airback(cache, &["check", "--repo", location, "--read-data"]).await;
    assert_eq!(code, 0, "check failed: {out}{err}");
    assert!(out.contains("no errors were found"), "{out}");

    let (code, out, err) = airback(cache, &["init", "--repo", location]).await;
    assert_eq!(code, 1, "a second init must fail: {out}{err}");
    assert!(err.contains("a repository already exists"), "{err}");
    assert!(
        !err.contains("airbacktestsecret"),
        "a secret leaked into an error: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_then_check_on_a_local_path() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    init_and_check(repo.to_str().unwrap(), &dir.path().join("cache")).await;
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("config")).unwrap()).unwrap();
    // `airback init` encrypts (format 2): the binary always gets the tests' password.
    assert_eq!(config["version"], 2);
    assert_eq!(config["format"], "airback-repository");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_then_check_on_s3() {
    let server = S3Server::start().await;
    let cache = tempfile::tempdir().unwrap();
    init_and_check(&server.location("nightly"), cache.path()).await;
}

/// What an `s3://` location's query leaves out comes from `BackendOptions::s3` (the command
/// line fills it from the `AWS_*` variables); what the query gives wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_defaults_fill_in_what_the_location_leaves_out() {
    use crate::support::s3::{ACCESS_KEY, SECRET_KEY};
    use airback::backend::{BackendOptions, S3Defaults};

    let server = S3Server::start().await;
    let defaults = BackendOptions {
        s3: S3Defaults {
            endpoint: Some(server.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            session_token: None,
        },
        ..BackendOptions::default()
    };
    let bare = format!("s3://{}/defaults", server.bucket);
    let backend = Backend::open(&bare, &defaults).unwrap();
    backend.write("probe", b"filled in".to_vec()).await.unwrap();
    assert_eq!(backend.read("probe").await.unwrap(), b"filled in");

    let wrong = BackendOptions {
        s3: S3Defaults {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("eu-west-3".into()),
            access_key_id: Some("WRONG".into()),
            secret_access_key: Some("WRONGSECRET".into()),
            session_token: None,
        },
        retries: 0,
        ..BackendOptions::default()
    };
    let backend = Backend::open(&server.location("defaults"), &wrong).unwrap();
    assert_eq!(backend.read("probe").await.unwrap(), b"filled in");
    let shown = format!("{wrong:?}");
    assert!(!shown.contains("WRONGSECRET"), "a secret in Debug: {shown}");
}

/// The command line reads the `AWS_*` variables for an `s3://` location without a query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_variables_fill_in_an_s3_location_on_the_command_line() {
    use crate::support::s3::{ACCESS_KEY, SECRET_KEY};

    let server = S3Server::start().await;
    let cache = tempfile::tempdir().unwrap();
    let location = format!("s3://{}/from-env", server.bucket);
    for args in [vec!["init"], vec!["check"]] {
        let out = crate::support::command(env!("CARGO_BIN_EXE_airback"))
            .args(&args)
            .args(["--repo", &location])
            .env("AIRBACK_CACHE_DIR", cache.path())
            .env_remove("AIRBACK_REPO")
            .env("AWS_ENDPOINT_URL", &server.endpoint)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env_remove("AWS_REGION")
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .await
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}{stderr}");
        assert!(!stdout.contains(SECRET_KEY) && !stderr.contains(SECRET_KEY));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_without_a_repository_exit_10() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("nothing");
    let (code, _, err) =
        airback(dir.path(), &["check", "--repo", location.to_str().unwrap()]).await;
    assert_eq!(code, 10, "{err}");
    assert!(
        err.contains("no airback repository") && err.contains("airback init"),
        "{err}"
    );
    let (code, _, err) = airback(dir.path(), &["check"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("--repo") && err.contains("AIRBACK_REPO"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Round trips and deduplication (acceptance 2).

async fn read_all(repo: &Repository, ids: &[BlobId]) -> Vec<u8> {
    let mut out = Vec::new();
    for id in ids {
        out.extend(repo.read_blob(id).await.unwrap());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_bytes_stored_read_back_identical(len in 0usize..400_000, seed in any::<u64>(), meta in any::<bool>(), text in any::<bool>()) {
        let data = if text { json_lines(len / 200, seed) } else { random_bytes(len, seed) };
        let kind = if meta { BlobKind::Meta } else { BlobKind::Data };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let repo = new_repo("memory://", &small_options()).await;
            let writer = repo.writer();
            let ids = writer.save_bytes(kind, data.clone()).await.unwrap();
            let stats = writer.flush().await.unwrap();
            assert_eq!(read_all(&repo, &ids).await, data);

            // The same content again: no new blob, in this writer or a fresh one.
            let again = writer.save_bytes(kind, data.clone()).await.unwrap();
            assert_eq!(again, ids);
            assert_eq!(writer.flush().await.unwrap().blobs_new, stats.blobs_new);
            let fresh = repo.writer();
            fresh.save_bytes(kind, data.clone()).await.unwrap();
            let fresh_stats = fresh.flush().await.unwrap();
            assert_eq!(fresh_stats.blobs_new, 0);
            assert_eq!(fresh_stats.packs_written, 0);
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_a_file_in_pieces_gives_the_same_blobs() {
    let repo = new_repo("memory://", &small_options()).await;
    let data = random_bytes(2_000_000, 9);
    let writer = repo.writer();
    let whole = writer
        .save_bytes(BlobKind::Data, data.clone())
        .await
        .unwrap();
    let mut saver = writer.file(BlobKind::Data);
    for piece in data.chunks(77_777) {
        saver.push(piece).await.unwrap();
    }
    let (streamed, size) = saver.finish().await.unwrap();
    assert_eq!(size, data.len() as u64);
    assert_eq!(streamed, whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insertion_in_the_middle_reuses_most_chunks() {
    // Default (production) chunker sizes on table-like JSON lines.
    let repo = new_repo("memory://", &crate::support::init_options()).await;
    let data = json_lines(20_000, 3);
    let writer = repo.writer();
    let before = writer
        .save_bytes(BlobKind::Meta, data.clone())
        .await
        .unwrap();
    let first = writer.flush().await.unwrap();

    let middle = data.len() / 2;
    let mut changed = data[..middle].to_vec();
    changed.extend_from_slice(b"{\"id\":\"recINSERTED0000001\",\"fields\":{}}\n");
    changed.extend_from_slice(&data[middle..]);
    let after = writer.save_bytes(BlobKind::Meta, changed).await.unwrap();
    let second = writer.flush().await.unwrap();

    let new_blobs = second.blobs_new - first.blobs_new;
    let new_bytes = second.bytes_new_raw - first.bytes_new_raw;
    let reused = after.iter().filter(|id| before.contains(id)).count();
    assert!(before.len() > 100, "{} chunks", before.len());
    assert!(
        new_blobs <= 3,
        "{new_blobs} new chunks for one inserted line"
    );
    assert!(
        reused * 100 >= after.len() * 97,
        "only {reused} of {} chunks reused",
        after.len()
    );
    // A small multiple of the change, not megabytes.
    assert!(new_bytes <= 3 * 32 * 1024, "{new_bytes} new bytes");
}

// ---------------------------------------------------------------------------------------------
// Snapshots and check.

/// Saves files (name, kind, bytes) under a root tree with one subdirectory, then a snapshot.
async fn save_snapshot(
    repo: &Repository,
    writer: &BlobWriter,
    files: &[(&str, BlobKind, Vec<u8>)],
) -> SnapshotId {
    let tree = build_tree(writer, files).await;
    writer.flush().await.unwrap();
    commit(repo, tree).await
}

async fn build_tree(writer: &BlobWriter, files: &[(&str, BlobKind, Vec<u8>)]) -> BlobId {
    let mut nodes = Vec::new();
    for (name, kind, bytes) in files {
        let content = writer.save_bytes(*kind, bytes.clone()).await.unwrap();
        nodes.push(Node {
            name: name.to_string(),
            kind: NodeKind::File {
                size: bytes.len() as u64,
                blob_kind: *kind,
                content,
            },
            meta: serde_json::Value::Null,
        });
    }
    let sub = Tree::new(nodes.split_off(nodes.len() / 2));
    let sub_id = writer
        .save_blob(BlobKind::Meta, serde_json::to_vec(&sub).unwrap())
        .await
        .unwrap();
    nodes.push(Node {
        name: "sub".into(),
        kind: NodeKind::Dir { subtree: sub_id },
        meta: serde_json::Value::Null,
    });
    writer
        .save_blob(
            BlobKind::Meta,
            serde_json::to_vec(&Tree::new(nodes)).unwrap(),
        )
        .await
        .unwrap()
}

fn sample_files(seed: u64) -> Vec<(&'static str, BlobKind, Vec<u8>)> {
    vec![
        ("a.jsonl", BlobKind::Meta, json_lines(3000, seed)),
        ("b.bin", BlobKind::Data, random_bytes(1_500_000, seed)),
        ("c.bin", BlobKind::Data, random_bytes(300_000, seed + 1)),
        ("d.jsonl", BlobKind::Meta, json_lines(500, seed + 2)),
    ]
}

async fn check_ok(repo: &Repository, read_data: bool) -> airback::check::CheckReport {
    let report = check(
        repo,
        &CheckOptions {
            read_data,
            subset: None,
        },
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "check found errors: {:#?}", report.errors);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_round_trips_and_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path().to_str().unwrap(), &small_options()).await;
    let writer = repo.writer();
    let files = sample_files(1);
    let id = save_snapshot(&repo, &writer, &files).await;
    let report = check_ok(&repo, true).await;
    assert_eq!(report.snapshots, 1);
    assert!(report.packs >= 2, "data and metadata go to separate packs");
    assert_eq!(report.packs_read, report.packs);

    let snapshot = repo.load_snapshot(&id).await.unwrap();
    let root = repo.load_tree(&snapshot.tree).await.unwrap();
    let mut found = 0;
    for node in &root.nodes {
        if let NodeKind::File { content, .. } = &node.kind {
            let original = &files.iter().find(|f| f.0 == node.name).unwrap().2;
            assert_eq!(&read_all(&repo, content).await, original);
            found += 1;
        }
    }
    assert_eq!(found, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_blob_is_reported_by_check() {
    let repo = new_repo("memory://", &small_options()).await;
    let writer = repo.writer();
    // A tree that names a blob nobody stored.
    let ghost = BlobId::of(b"never stored");
    let tree = Tree::new(vec![Node {
        name: "ghost".into(),
        kind: NodeKind::File {
            size: 12,
            blob_kind: BlobKind::Data,
            content: vec![ghost],
        },
        meta: serde_json::Value::Null,
    }]);
    let tree_id = writer
        .save_blob(BlobKind::Meta, serde_json::to_vec(&tree).unwrap())
        .await
        .unwrap();
    writer.flush().await.unwrap();
    commit(&repo, tree_id).await;
    let report = check(&repo, &CheckOptions::default()).await.unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.errors[0].contains(&ghost.to_hex()) && report.errors[0].contains("`/ghost`"));
}

/// Acceptance 3: stop the write at each step of the write order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_at_any_step_leaves_a_valid_repository_and_is_resumed() {
    #[derive(Debug, Clone, Copy)]
    enum Stop {
        AfterPacks,
        AfterIndex,
        BeforeManifest,
    }
    for stop in [Stop::AfterPacks, Stop::AfterIndex, Stop::BeforeManifest] {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().to_str().unwrap().to_string();
        let cache = dir.path().join("cache");
        let backend = open_backend(&location);
        Repository::init(&backend, &small_options()).await.unwrap();
        let files = sample_files(7);
        {
            let repo = Repository::open(
                open_backend(&location),
                CacheChoice::Dir(cache.clone()),
                crate::support::password(),
            )
            .await
            .unwrap();
            let writer = repo.writer();
            let tree = build_tree(&writer, &files).await;
            match stop {
                Stop::AfterPacks => writer.finish_packs().await.unwrap(),
                Stop::AfterIndex => {
                    writer.flush().await.unwrap();
                }
                Stop::BeforeManifest => {
                    writer.flush().await.unwrap();
                    let _ = tree; // the snapshot is never written
                }
            }
            // The process "dies" here: the writer is dropped without a snapshot.
        }
        let packs_before = files_below(&dir.path().join("data"));
        assert!(!packs_before.is_empty(), "{stop:?}: packs were uploaded");

        let repo = Repository::open(
            open_backend(&location),
            CacheChoice::Dir(cache.clone()),
            crate::support::password(),
        )
        .await
        .unwrap();
        let report = check(
            &repo,
            &CheckOptions {
                read_data: true,
                subset: None,
            },
        )
        .await
        .unwrap();
        assert!(report.is_ok(), "{stop:?}: {:?}", report.errors);
        assert_eq!(report.snapshots, 0);

        // The next run: adopts what was uploaded, uploads no pack again, commits.
        repo.adopt_unindexed_packs().await.unwrap();
        let writer = repo.writer();
        let id = save_snapshot(&repo, &writer, &files).await;
        let stats = writer.stats();
        assert_eq!(stats.blobs_new, 0, "{stop:?}: blobs were uploaded again");
        assert_eq!(
            stats.packs_written, 0,
            "{stop:?}: packs were uploaded again"
        );
        assert_eq!(files_below(&dir.path().join("data")), packs_before);
        let report = check_ok(&repo, true).await;
        assert_eq!(report.snapshots, 1);
        assert!(repo.load_snapshot(&id).await.is_ok());
    }
}

/// Acceptance 4: a flipped byte anywhere in a pack is reported, naming the pack and the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_any_pack_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo");
    let location = location.to_str().unwrap();
    let repo = new_repo(location, &small_options()).await;
    let writer = repo.writer();
    save_snapshot(&repo, &writer, &sample_files(3)).await;
    check_ok(&repo, true).await;

    let index = {
        let mut all = Vec::new();
        for id in repo.list_index_files().await.unwrap() {
            all.extend(repo.load_index_file(&id).await.unwrap().packs);
        }
        all
    };
    let mut rng = fastrand::Rng::with_seed(5);
    for pack in &index {
        let path = Path::new(location).join(airback::internals::pack_path(&pack.id));
        let original = std::fs::read(&path).unwrap();
        // A few random positions inside blobs, plus the first and last byte of the pack.
        let mut positions: Vec<usize> = (0..4).map(|_| rng.usize(..original.len())).collect();
        positions.extend([0, original.len() - 1]);
        for pos in positions {
            let mut damaged = original.clone();
            damaged[pos] ^= 0x01;
            std::fs::write(&path, &damaged).unwrap();
            let report = check(
                &repo,
                &CheckOptions {
                    read_data: true,
                    subset: None,
                },
            )
            .await
            .unwrap();
            assert!(
                !report.is_ok(),
                "flip at {pos} of pack {} went unnoticed",
                pack.id
            );
            assert!(
                report.errors.iter().any(|e| e.contains(&pack.id.to_hex())),
                "the pack is not named: {:?}",
                report.errors
            );
            if let Some(blob) = pack
                .blobs
                .iter()
                .find(|b| (b.offset as usize..(b.offset + b.length) as usize).contains(&pos))
            {
                assert!(
                    report.errors.iter().any(|e| e.contains(&blob.id.to_hex())),
                    "blob {} at {pos} is not named: {:?}",
                    blob.id,
                    report.errors
                );
            }
        }
        std::fs::write(&path, &original).unwrap();
    }
    check_ok(&repo, true).await;

    // Through the CLI: a non-zero exit.
    let pack = &index[0];
    let path = Path::new(location).join(airback::internals::pack_path(&pack.id));
    let mut damaged = std::fs::read(&path).unwrap();
    let mid = (pack.blobs[0].offset + pack.blobs[0].length / 2) as usize;
    damaged[mid] ^= 0x80;
    std::fs::write(&path, &damaged).unwrap();
    let (code, out, _) = airback(
        &dir.path().join("cache"),
        &["check", "--repo", location, "--read-data"],
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        out.contains(&pack.id.to_hex()) && out.contains(&pack.blobs[0].id.to_hex()),
        "{out}"
    );
    // Without --read-data the damage inside a blob is not visible, and check says so honestly.
    let (code, _, _) = airback(&dir.path().join("cache"), &["check", "--repo", location]).await;
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_data_subsets_cover_every_pack_once() {
    let repo = new_repo("memory://", &small_options()).await;
    let writer = repo.writer();
    save_snapshot(&repo, &writer, &sample_files(11)).await;
    let total = check_ok(&repo, false).await.packs;
    let mut read = 0;
    for n in 1..=3 {
        let report = check(
            &repo,
            &CheckOptions {
                read_data: true,
                subset: Some(airback::check::Subset { n, m: 3 }),
            },
        )
        .await
        .unwrap();
        assert!(report.is_ok());
        read += report.packs_read;
    }
    assert_eq!(read, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_notices_writes_from_another_machine_and_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo");
    let location = location.to_str().unwrap();
    let backend = open_backend(location);
    Repository::init(&backend, &small_options()).await.unwrap();
    let cache_a = dir.path().join("cache-a");
    let cache_b = dir.path().join("cache-b");
    let data = random_bytes(500_000, 1);

    let repo_a = Repository::open(
        open_backend(location),
        CacheChoice::Dir(cache_a.clone()),
        crate::support::password(),
    )
    .await
    .unwrap();
    let w = repo_a.writer();
    w.save_bytes(BlobKind::Data, data.clone()).await.unwrap();
    w.flush().await.unwrap();

    // Machine B, with its own cache, sees A's blobs: nothing is uploaded again.
    let repo_b = Repository::open(
        open_backend(location),
        CacheChoice::Dir(cache_b.clone()),
        crate::support::password(),
    )
    .await
    .unwrap();
    let w = repo_b.writer();
    w.save_bytes(BlobKind::Data, data.clone()).await.unwrap();
    assert_eq!(w.flush().await.unwrap().blobs_new, 0);

    // Deleting A's cache costs only time.
    std::fs::remove_dir_all(&cache_a).unwrap();
    let repo_a = Repository::open(
        open_backend(location),
        CacheChoice::Dir(cache_a),
        crate::support::password(),
    )
    .await
    .unwrap();
    let w = repo_a.writer();
    let ids = w.save_bytes(BlobKind::Data, data.clone()).await.unwrap();
    assert_eq!(w.flush().await.unwrap().blobs_new, 0);
    assert_eq!(read_all(&repo_a, &ids).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_conflict_and_stale_locks_are_ignored() {
    // The crashed process's lock below is written by hand in format 1's plain form.
    let repo = new_repo("memory://", &crate::support::format1(small_options())).await;
    let shared = repo.lock(false, "check").await.unwrap();
    let other_shared = repo.lock(false, "check").await.unwrap();
    let err = repo.lock(true, "prune").await.unwrap_err();
    assert!(
        err.to_string().contains("locked by `airback check`"),
        "{err}"
    );
    shared.release().await.unwrap();
    other_shared.release().await.unwrap();
    let exclusive = repo.lock(true, "prune").await.unwrap();
    assert!(repo.lock(false, "check").await.is_err());
    exclusive.release().await.unwrap();

    // A lock left by a crashed process (dead pid on this host) does not block.
    let dead = airback::internals::LockInfo {
        time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        hostname: airback::internals::hostname(),
        pid: u32::MAX - 1,
        exclusive: true,
        operation: "prune".into(),
        writer: false,
    };
    repo.backend()
        .write("locks/crashed", serde_json::to_vec(&dead).unwrap())
        .await
        .unwrap();
    let guard = repo.lock(true, "prune").await.unwrap();
    guard.release().await.unwrap();
    assert!(repo.backend().list("locks/").await.unwrap().is_empty());
}

/// Two backups at once into one repository: both commit, overlapping content is stored at
/// most twice (once per writer that raced for it), and `check` accepts the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_snapshots_at_once_are_safe() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo");
    let location = location.to_str().unwrap().to_string();
    let backend = open_backend(&location);
    Repository::init(&backend, &small_options()).await.unwrap();
    let shared = random_bytes(800_000, 77);
    let run = |seed: u64| {
        let location = location.clone();
        let shared = shared.clone();
        let cache = dir.path().join(format!("cache-{seed}"));
        async move {
            let repo = Repository::open(
                open_backend(&location),
                CacheChoice::Dir(cache),
                crate::support::password(),
            )
            .await
            .unwrap();
            let writer = repo.writer();
            let mut files = sample_files(seed);
            files.push(("shared.bin", BlobKind::Data, shared));
            let id = save_snapshot(&repo, &writer, &files).await;
            (id, files)
        }
    };
    let ((id_a, files_a), (id_b, files_b)) = tokio::join!(run(100), run(200));
    assert_ne!(id_a, id_b);

    let repo = Repository::open(
        open_backend(&location),
        CacheChoice::Memory,
        crate::support::password(),
    )
    .await
    .unwrap();
    let report = check_ok(&repo, true).await;
    assert_eq!(report.snapshots, 2);
    for (id, files) in [(id_a, files_a), (id_b, files_b)] {
        let snapshot = repo.load_snapshot(&id).await.unwrap();
        let root = repo.load_tree(&snapshot.tree).await.unwrap();
        for node in &root.nodes {
            if let NodeKind::File { content, .. } = &node.kind {
                let original = &files.iter().find(|f| f.0 == node.name).unwrap().2;
                assert_eq!(&read_all(&repo, content).await, original, "{}", node.name);
            }
        }
    }
}
