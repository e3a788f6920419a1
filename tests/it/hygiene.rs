//! Output and error hygiene of the `airback` binary (issue 10, defect 8 and "weaknesses"): a
//! closed standard output, colour codes, backtraces and repeated warnings on standard error,
//! storage errors that say what airback was doing, plural agreement, damaged snapshots named
//! as such, no signed attachment URLs kept, and `restore --to-base` into the snapshot's own
//! base refused. Each test failed on the code before its fix.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use airback::airtable::{Client, ClientOptions, Token};
use airback::backup::{BackupOptions, backup_base};
use airback::id::SnapshotId;
use airback::progress::NoProgress;
use airback::repo::BlobKind;
use airback::repo::Repository;
use airback::repo::{Snapshot, Tree};
use airback_fake::{FakeAirtable, FakeOptions, Preset};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{new_repo, small_options};

const BIN: &str = env!("CARGO_BIN_EXE_airback");

/// Runs the binary with `args` and `env`, a cache in `cache`; returns (code, stdout, stderr).
async fn run(cache: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = crate::support::command(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("AIRBACK_CACHE_DIR", cache)
        .env_remove("AIRBACK_REPO")
        .env_remove("AIRBACK_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the airback binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Saves `count` snapshots of an empty tree, a minute apart.
async fn empty_snapshots(repo: &Repository, count: usize) -> Vec<SnapshotId> {
    let w = repo.writer();
    let tree = w
        .save_blob(
            BlobKind::Meta,
            serde_json::to_vec(&Tree::new(vec![])).unwrap(),
        )
        .await
        .unwrap();
    w.flush().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..count {
        let snapshot = Snapshot {
            version: 1,
            time: format!(
                "2026-11-{:02}T{:02}:{:02}:00Z",
                1 + i / 1440,
                i / 60 % 24,
                i % 60
            ),
            hostname: "test".into(),
            program: "airback test".into(),
            tree,
            source: serde_json::json!({"kind": "test", "base_name": format!("base {i}")}),
            tags: vec![format!("tag-{i}")],
            partial: false,
            problems: vec![],
            summary: Value::Null,
            rewritten: None,
            copy_of: None,
        };
        ids.push(repo.save_snapshot(&snapshot).await.unwrap());
    }
    ids
}

/// Defect 8: `airback snapshots | head -n 1` panicked ("failed printing to stdout: Broken
/// pipe", exit 101). A closed standard output ends any command quietly, with exit code 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo");
    let location = location.to_str().unwrap();
    let repo = new_repo(location, &small_options()).await;
    // More lines than a pipe holds, so that some write finds the reader gone even if the
    // first ones were made before it left.
    empty_snapshots(&repo, 1000).await;
    let cache = dir.path().join("cache");
    for args in [
        vec!["snapshots"],
        vec!["snapshots", "--json"],
        vec!["show", "latest"],
        vec!["check"],
    ] {
        for round in 0..3 {
            let mut child = crate::support::std_command(BIN)
                .args(&args)
                .args(["--repo", location])
                .env("AIRBACK_CACHE_DIR", &cache)
                .env_remove("AIRBACK_REPO")
                .env_remove("AIRBACK_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // The reader goes away before anything is written.
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{args:?} (round {round}): {err}"
            );
            assert!(err.is_empty(), "{args:?} (round {round}) wrote: {err}");
        }
    }
}

/// An S3 endpoint that answers every request with 500, which storage retries.
async fn always_500() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "<Error><Code>InternalError</Code><Message>try again</Message></Error>";
                let response = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    endpoint
}

/// The exit code and standard error of `airback snapshots` on an S3 repository whose every
/// request fails (and is retried), with `RUST_BACKTRACE=1` and standard error a pipe. Run
/// once, for the tests below.
async fn failing_storage() -> &'static (i32, String) {
    static RUN: tokio::sync::OnceCell<(i32, String)> = tokio::sync::OnceCell::const_new();
    RUN.get_or_init(|| async {
        let endpoint = always_500().await;
        let cache = tempfile::tempdir().unwrap();
        let location = format!(
            "s3://bucket/prefix?endpoint={endpoint}&region=us-east-1&access_key_id=AKIDTEST&\
             secret_access_key=SECRETTEST"
        );
        let (code, _, err) = run(
            cache.path(),
            &["snapshots", "--repo", &location],
            &[("RUST_BACKTRACE", "1")],
        )
        .await;
        eprintln!("airback snapshots on failing storage: exit {code}, stderr:\n{err}");
        (code, err)
    })
    .await
}

/// Colour codes only on a terminal: standard error here is a pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_has_no_colour_codes_when_it_is_not_a_terminal() {
    let (code, err) = failing_storage().await;
    assert_ne!(*code, 0);
    assert!(err.contains("WARN"), "no warning was printed: {err}");
    assert!(!err.contains("\x1b["), "colour codes: {err:?}");
}

/// With `RUST_BACKTRACE=1`, each retry of a storage request printed the error's backtrace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_storage_error_prints_no_backtrace() {
    let (code, err) = failing_storage().await;
    assert_ne!(*code, 0);
    for marker in ["Backtrace", "backtrace", "rust_begin_unwind", "at /rustc/"] {
        assert!(!err.contains(marker), "`{marker}` in: {err}");
    }
}

/// A storage error says what airback was doing, and with which object, before the storage
/// library's own message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_error_says_what_airback_was_doing() {
    let (code, err) = failing_storage().await;
    assert_ne!(*code, 0);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(
        line.starts_with("error: cannot read `config` from s3://bucket/prefix?")
            && line.contains("InternalError"),
        "{line}"
    );
    assert!(!err.contains("SECRETTEST"), "{err}");
}

/// The same warning repeated (a retry after each failure) is printed once, with its count
/// at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_warning_is_printed_once_with_a_count() {
    let (code, err) = failing_storage().await;
    assert_ne!(*code, 0);
    let retries: Vec<&str> = err.lines().filter(|l| l.contains("retrying")).collect();
    assert_eq!(retries.len(), 2, "{err}");
    assert!(!retries[0].contains("repeated"), "{err}");
    let count = retries[1]
        .rsplit_once("(repeated ")
        .and_then(|(_, n)| n.strip_suffix(" times)"))
        .and_then(|n| n.parse::<u32>().ok());
    assert!(count.is_some_and(|n| n >= 2), "{err}");
}

/// A repository with one readable snapshot and one whose file is damaged; returns the
/// folder, the location and the damaged snapshot's id.
async fn damaged_repo() -> (tempfile::TempDir, String, SnapshotId) {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo").to_str().unwrap().to_owned();
    let repo = new_repo(&location, &small_options()).await;
    let ids = empty_snapshots(&repo, 2).await;
    let path = dir.path().join("repo/snapshots").join(ids[1].to_hex());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    (dir, location, ids[1])
}

/// Exporting a damaged snapshot said that no snapshot matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_a_damaged_snapshot_says_it_is_damaged() {
    let (dir, location, damaged) = damaged_repo().await;
    let cache = dir.path().join("cache");
    let target = dir.path().join("x.tar");
    let hex = damaged.to_hex();
    for spec in [&hex[..8], &hex[..]] {
        let args = [
            "export",
            spec,
            "--repo",
            &location,
            "-o",
            target.to_str().unwrap(),
        ];
        let (code, _, err) = run(&cache, &args, &[]).await;
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!("snapshot {hex} is damaged")) && !err.contains("no snapshot"),
            "{err}"
        );
        assert!(!target.exists());
    }
    // `latest` when the only snapshot left cannot be read.
    std::fs::remove_file(
        dir.path().join("repo/snapshots").join(
            std::fs::read_dir(dir.path().join("repo/snapshots"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .find(|name| *name != hex)
                .unwrap(),
        ),
    )
    .unwrap();
    let args = [
        "export",
        "latest",
        "--repo",
        &location,
        "-o",
        target.to_str().unwrap(),
    ];
    let (code, _, err) = run(&cache, &args, &[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no readable snapshot matches `latest`; 1 snapshot is damaged"),
        "{err}"
    );
}

/// "check found 1 errors", "checked 1 snapshots".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_of_one_are_singular() {
    let (dir, location, _) = damaged_repo().await;
    let (code, out, err) = run(
        &dir.path().join("cache"),
        &["check", "--repo", &location],
        &[],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("error: check found 1 error\n"), "{err}");
    assert!(out.contains("checked 1 snapshot,"), "{out}");
    let (code, out, _) = run(
        &dir.path().join("cache"),
        &["snapshots", "--repo", &location],
        &[],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.ends_with("\n1 snapshot\n"), "{out}");
}

/// Runs the binary against the fake Airtable.
async fn run_with_fake(fake: &FakeAirtable, cache: &Path, args: &[&str]) -> (i32, String, String) {
    let url = fake.url();
    let token = fake.token();
    let env = [
        ("AIRTABLE_API_URL", url.as_str()),
        ("AIRTABLE_CONTENT_URL", url.as_str()),
        ("AIRTABLE_TOKEN", token.as_str()),
    ];
    run(cache, args, &env).await
}

/// A demo base whose attachments half fail to download, backed up once (partial).
async fn partial_snapshot() -> (
    FakeAirtable,
    tempfile::TempDir,
    String,
    Repository,
    SnapshotId,
) {
    let mut options = FakeOptions::unlimited(Preset::Demo);
    options.faults = "missing=0.5,seed=3".parse().unwrap();
    let fake = FakeAirtable::start(options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo").to_str().unwrap().to_owned();
    let repo = new_repo(&location, &small_options()).await;
    let client = Client::new(
        Token::new(fake.token()).unwrap(),
        ClientOptions::default().with_url(&fake.url()),
    )
    .unwrap();
    let options = BackupOptions::new(fake.bases()[0].id.clone());
    let summary = backup_base(&repo, &client, &options, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(summary.partial && !summary.problems.is_empty());
    (fake, dir, location, repo, summary.snapshot_id)
}

/// Whether `text` holds an attachment URL of the fake (they carry their signature in the
/// path) or a signature of one.
fn has_attachment_url(text: &str, signatures: &[String]) -> bool {
    text.contains("/attachments/") || signatures.iter().any(|s| text.contains(s.as_str()))
}

/// The signatures (last path segment) of the attachment URLs the fake hands out now.
fn signatures(fake: &FakeAirtable) -> Vec<String> {
    fn collect(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(url) = map.get("url").and_then(Value::as_str) {
                    out.push(url.rsplit('/').next().unwrap().to_owned());
                }
                map.values().for_each(|v| collect(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let base = fake.bases()[0].id.clone();
    let mut out = Vec::new();
    for table in fake.schema_json(&base)["tables"].as_array().unwrap() {
        for record in fake.records_json(&base, table["id"].as_str().unwrap()) {
            collect(&record, &mut out);
        }
    }
    out.retain(|s| s.len() >= 16);
    assert!(!out.is_empty());
    out
}

/// A partial snapshot's `problems`, and an export's `manifest.json`, kept the signed URLs of
/// the attachments that failed: they name them by id and filename instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_signed_attachment_url_is_kept_in_problems_or_manifests() {
    let (fake, dir, location, repo, id) = partial_snapshot().await;
    let signatures = signatures(&fake);
    let snapshot = repo.load_snapshot(&id).await.unwrap();
    for problem in &snapshot.problems {
        assert!(!has_attachment_url(problem, &signatures), "{problem}");
        assert!(
            problem.starts_with("attachment att") && problem.contains("(`"),
            "{problem}"
        );
    }
    // A snapshot of an earlier version, with a URL in its problems: its export leaves it out.
    let mut old = snapshot.clone();
    old.problems.push(format!(
        "attachment attX (`x.png`) of record recX in table tblX: downloading `{}/attachments/1/2/attX/full/{}` failed (HTTP 404)",
        fake.url(),
        signatures[0]
    ));
    old.time = "2030-01-01T00:00:00Z".into();
    let old_id = repo.save_snapshot(&old).await.unwrap();
    let cache = dir.path().join("cache");
    for (snapshot, name) in [(id, "new"), (old_id, "old")] {
        let out = dir.path().join(name);
        let args = [
            "export",
            &snapshot.to_hex(),
            "--repo",
            &location,
            "--format",
            "dir",
            "-o",
        ];
        let mut args = args.to_vec();
        args.push(out.to_str().unwrap());
        let (code, _, err) = run_with_fake(&fake, &cache, &args).await;
        assert_eq!(code, 0, "{err}");
        let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
        assert!(
            !has_attachment_url(&manifest, &signatures),
            "{name}: {manifest}"
        );
        let parsed: Value = serde_json::from_str(&manifest).unwrap();
        assert!(
            !parsed["snapshot"]["problems"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
    // `show` prints them without URLs too.
    let (code, out, _) = run_with_fake(
        &fake,
        &cache,
        &["show", &old_id.to_hex(), "--repo", &location],
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        out.contains("attX") && !has_attachment_url(&out, &signatures),
        "{out}"
    );
}

/// `restore --to-base` naming the snapshot's own base planned "(restored)" copies of every
/// table inside the live base without a word: refused (usage), pointing at what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_into_the_snapshots_own_base_is_refused() {
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let base = fake.bases()[0].id.clone();
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo").to_str().unwrap().to_owned();
    let repo = new_repo(&location, &small_options()).await;
    let client = Client::new(
        Token::new(fake.token()).unwrap(),
        ClientOptions::default().with_url(&fake.url()),
    )
    .unwrap();
    let summary = backup_base(
        &repo,
        &client,
        &BackupOptions::new(&base),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    let tables_before = fake.schema_json(&base)["tables"].as_array().unwrap().len();
    let cache = dir.path().join("cache");
    let id = summary.snapshot_id.to_hex();
    for extra in [vec!["--dry-run"], vec![]] {
        let mut args = vec!["restore", &id, "--to-base", &base, "--repo", &location];
        args.extend(extra.iter().copied());
        let (code, out, err) = run_with_fake(&fake, &cache, &args).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!("{base} is the base this snapshot was taken from"))
                && err.contains("--workspace")
                && err.contains("--in-place"),
            "{err}"
        );
    }
    assert_eq!(
        fake.schema_json(&base)["tables"].as_array().unwrap().len(),
        tables_before
    );
}
