//! Ctrl-C (SIGINT) and SIGTERM sent to the binary in the middle of `snapshot`, `restore`,
//! `export` and `check`: exit code 130, no lock left in `locks/`, nothing left in the
//! repository's `tmp/` or in the process's temporary folder, nothing under an export's
//! destination name, and the same command completes afterwards. Each signal is sent only once
//! the command is visibly at work (a pack uploaded, records created, an export file growing,
//! packs being read). Also the two library pieces the command line relies on: a dropped lock
//! guard and a cancelled write.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use airback_fake::{FakeAirtable, FakeOptions, Preset, Route};
use futures::StreamExt;
use serde_json::Value;

use crate::restore::compare_bases;
use crate::support::files_below;

/// A test's folders: the repository, the cache, the child's `TMPDIR` and an export folder.
struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let dirs = Dirs {
            root: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir(dirs.tmp()).unwrap();
        std::fs::create_dir(dirs.exports()).unwrap();
        dirs
    }
    fn repo(&self) -> PathBuf {
        self.root.path().join("repo")
    }
    fn repo_str(&self) -> String {
        self.repo().to_str().unwrap().to_owned()
    }
    fn tmp(&self) -> PathBuf {
        self.root.path().join("tmp")
    }
    fn exports(&self) -> PathBuf {
        self.root.path().join("exports")
    }

    /// The binary with `args`, against `fake`, with this test's cache and `TMPDIR`.
    fn command(&self, fake: &FakeAirtable, args: &[&str]) -> tokio::process::Command {
        let mut command = crate::support::command(env!("CARGO_BIN_EXE_airback"));
        command
            .args(args)
            .env("AIRBACK_CACHE_DIR", self.root.path().join("cache"))
            .env("TMPDIR", self.tmp())
            .env("AIRTABLE_API_URL", fake.url())
            .env("AIRTABLE_CONTENT_URL", fake.url())
            .env("AIRTABLE_TOKEN", fake.token())
            .env_remove("AIRBACK_REPO")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs the binary to the end: (exit code, stdout, stderr).
    async fn run(&self, fake: &FakeAirtable, args: &[&str]) -> (i32, String, String) {
        let out = self.command(fake, args).output().await.unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// What an interrupted command must not leave: a lock, a temporary object in the
    /// repository, a temporary file of the process (record spill, verifier spill).
    fn assert_clean(&self, what: &str) {
        let locks = files_below(&self.repo().join("locks"));
        assert!(locks.is_empty(), "{what}: a lock was left: {locks:?}");
        let temp = files_below(&self.repo().join("tmp"));
        assert!(
            temp.is_empty(),
            "{what}: the repository's tmp/ holds {temp:?}"
        );
        let left: Vec<_> = std::fs::read_dir(self.tmp())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{what}: TMPDIR holds {left:?}");
    }
}

/// Starts `command`, waits until `started` says the work is under way, sends `signal` and
/// returns the command's stderr once it has ended with exit code 130.
async fn interrupt(
    mut command: tokio::process::Command,
    signal: &str,
    what: &str,
    mut started: impl FnMut(u32) -> bool,
) -> String {
    let mut child = command.spawn().unwrap();
    let pid = child.id().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !started(pid) {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "{what}: the command ended ({status}) before the signal:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "{what}: never got under way");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what}: still running a minute after {signal}"))
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{what}: exit status after {signal}: {}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("interrupted"), "{what}: {stderr}");
    stderr
}

/// Bytes the process `pid` has read so far (`rchar` in /proc/PID/io).
fn bytes_read(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("rchar: "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The size of a file, or of every file below a folder.
fn size_of(path: &Path) -> u64 {
    if path.is_dir() {
        files_below(path)
            .iter()
            .map(|f| std::fs::metadata(path.join(f)).map_or(0, |m| m.len()))
            .sum()
    } else {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_snapshot_leaves_no_lock_or_temporary_file_and_the_next_one_completes() {
    // Paced at 5 requests/s: listing 6,000 records takes 12 s, while packs of 1 MiB fill
    // with attachments from the start.
    let mut options = FakeOptions {
        preset: Preset::Large,
        ..FakeOptions::default()
    };
    options.large = "tables=2,records=3000,attachments=120,min=20000,max=2000000"
        .parse()
        .unwrap();
    let fake = FakeAirtable::start(options).await.unwrap();
    let base = fake.bases()[0].id.clone();
    let d = Dirs::new();
    let repo = d.repo_str();
    let (code, _, err) = d
        .run(&fake, &["init", "--repo", &repo, "--pack-size-mib", "1"])
        .await;
    assert_eq!(code, 0, "{err}");

    let snapshot = ["snapshot", "--repo", &repo, "--base", &base, "--quiet"];
    let data = d.repo().join("data");
    let stderr = interrupt(d.command(&fake, &snapshot), "-INT", "snapshot", |_| {
        !files_below(&data).is_empty()
    })
    .await;
    assert!(stderr.contains("no snapshot was saved"), "{stderr}");
    d.assert_clean("snapshot");

    let (code, out, err) = d
        .run(&fake, &["check", "--repo", &repo, "--read-data"])
        .await;
    assert_eq!(code, 0, "check after the interrupted snapshot:\n{out}{err}");
    let (code, out, err) = d
        .run(
            &fake,
            &["snapshot", "--repo", &repo, "--base", &base, "--json"],
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["records"], 6000);
    assert_eq!(summary["attachments"], 120);
    let (code, out, err) = d
        .run(&fake, &["check", "--repo", &repo, "--read-data"])
        .await;
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_restore_resumes_without_duplicates() {
    let mut options = FakeOptions {
        preset: Preset::Large,
        ..FakeOptions::default()
    };
    options.large = "tables=2,records=200,attachments=24,min=2000,max=200000"
        .parse()
        .unwrap();
    let fake = FakeAirtable::start(options).await.unwrap();
    let base = fake.bases()[0].id.clone();
    let d = Dirs::new();
    let repo = d.repo_str();
    assert_eq!(d.run(&fake, &["init", "--repo", &repo]).await.0, 0);
    let (code, _, err) = d
        .run(
            &fake,
            &["snapshot", "--repo", &repo, "--base", &base, "--quiet"],
        )
        .await;
    assert_eq!(code, 0, "{err}");

    let workspace = fake.workspace_id();
    let restore = [
        "restore",
        "latest",
        "--repo",
        &repo,
        "--workspace",
        &workspace,
        "--name",
        "Interrupted and resumed",
    ];
    // Signalled in the records pass, a few batches in (at 5 requests/s, ~40 batches to go).
    let mut args = restore.to_vec();
    args.push("--quiet");
    let stderr = interrupt(d.command(&fake, &args), "-INT", "restore", |_| {
        // Records are created by upserts (PATCH), keyed on their original id.
        let counters = fake.counters();
        counters.requests(Route::CreateRecords) + counters.requests(Route::UpdateRecords) >= 3
    })
    .await;
    assert!(stderr.contains("run the same command again"), "{stderr}");
    d.assert_clean("restore");

    let mut args = restore.to_vec();
    args.push("--json");
    let (code, out, err) = d.run(&fake, &args).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        report["records_resumed"].as_u64().unwrap() > 0,
        "the interrupted run had created records: {report}"
    );
    let named: Vec<_> = fake
        .bases()
        .into_iter()
        .filter(|b| b.name == "Interrupted and resumed")
        .collect();
    assert_eq!(named.len(), 1, "one base was created");
    let target = report["base_id"].as_str().unwrap();
    assert_eq!(target, named[0].id);
    let c = compare_bases(&fake, &base, target, true);
    assert!(c.differences.is_empty(), "{:#?}", c.differences);
    assert_eq!(c.writable_cells, c.writable_equal);
    assert!(c.links > 0 && c.links == c.links_equal, "{c:?}");
    assert!(c.files >= 20 && c.files == c.files_equal, "{c:?}");
    assert_eq!(report["fidelity"]["duplicates"], 0);
    assert_eq!(report["fidelity"]["missing"], 0);
}

/// `export` (a tar file with SIGINT, a folder with SIGTERM) and `check --read-data` on a
/// repository of about 90 MB, signalled once a fifth of it has been written or read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_export_or_check_leaves_nothing_behind() {
    let mut options = FakeOptions::unlimited(Preset::Large);
    options.large = "tables=2,records=1000,attachments=40,min=2000000,max=4000000"
        .parse()
        .unwrap();
    let fake = FakeAirtable::start(options).await.unwrap();
    let base = fake.bases()[0].id.clone();
    let d = Dirs::new();
    let repo = d.repo_str();
    assert_eq!(d.run(&fake, &["init", "--repo", &repo]).await.0, 0);
    let (code, _, err) = d
        .run(
            &fake,
            &["snapshot", "--repo", &repo, "--base", &base, "--quiet"],
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let exports = d.exports();
    let written = |prefix: &str| {
        std::fs::read_dir(&exports)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .map(|p| size_of(&p))
            .sum::<u64>()
    };

    for (signal, format, name) in [("-INT", "tar", "out.tar"), ("-TERM", "dir", "out")] {
        let output = exports.join(name);
        let output = output.to_str().unwrap();
        let export = [
            "export", "latest", "--repo", &repo, "-f", format, "-o", output, "--quiet",
        ];
        let what = format!("export as {format} ({signal})");
        let temporary = format!(".{name}.");
        let stderr = interrupt(d.command(&fake, &export), signal, &what, |_| {
            written(&temporary) > 20_000_000
        })
        .await;
        assert!(stderr.contains("nothing was written"), "{stderr}");
        let left: Vec<_> = std::fs::read_dir(&exports).unwrap().collect();
        assert!(left.is_empty(), "{what}: left {left:?}");
        d.assert_clean(&what);
    }

    let check = ["check", "--repo", &repo, "--read-data"];
    let stderr = interrupt(d.command(&fake, &check), "-INT", "check", |pid| {
        bytes_read(pid) > 20_000_000
    })
    .await;
    assert!(stderr.contains("the check did not finish"), "{stderr}");
    d.assert_clean("check");

    // Nothing the interruptions did is in the way.
    let (code, out, err) = d.run(&fake, &check).await;
    assert_eq!(code, 0, "{out}{err}");
    let output = exports.join("out.tar");
    let (code, _, err) = d
        .run(
            &fake,
            &[
                "export",
                "latest",
                "--repo",
                &repo,
                "-o",
                output.to_str().unwrap(),
            ],
        )
        .await;
    assert_eq!(code, 0, "{err}");
}

/// An export of records only (no attachment whose size would betray a cut-short read),
/// signalled while it writes the tables: the reads it still had to do end early as the
/// process stops, and what it wrote must still not be moved into place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_interrupted_while_writing_tables_moves_nothing_into_place() {
    use airback::airtable::{Client, ClientOptions, Token};
    let mut options = FakeOptions::unlimited(Preset::Large);
    options.large = "tables=2,records=10000,attachments=0".parse().unwrap();
    let fake = FakeAirtable::start(options).await.unwrap();
    let d = Dirs::new();
    let repo = crate::support::new_repo(&d.repo_str(), &crate::support::init_options()).await;
    // Taken in-process, unpaced: the binary would take 45 s at 5 requests/s.
    let client = Client::new(
        Token::new(fake.token()).unwrap(),
        ClientOptions::default().with_url(&fake.url()).unpaced(),
    )
    .unwrap();
    let base = fake.bases()[0].id.clone();
    airback::backup::backup_base(
        &repo,
        &client,
        &airback::backup::BackupOptions::new(&base),
        std::sync::Arc::new(airback::progress::NoProgress),
    )
    .await
    .unwrap();

    let exports = d.exports();
    let output = exports.join("records");
    let repo = d.repo_str();
    let export = [
        "export",
        "latest",
        "--repo",
        &repo,
        "-f",
        "dir",
        "-o",
        output.to_str().unwrap(),
        "--quiet",
    ];
    let stderr = interrupt(d.command(&fake, &export), "-INT", "export", |_| {
        std::fs::read_dir(&exports)
            .unwrap()
            .map(|e| size_of(&e.unwrap().path()))
            .sum::<u64>()
            > 2_000_000
    })
    .await;
    assert!(stderr.contains("nothing was written"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&exports).unwrap().collect();
    assert!(left.is_empty(), "left {left:?}");
    d.assert_clean("export of records");
}

/// A lock guard dropped without `release` (the command holding it was cancelled) removes
/// its lock file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_lock_guard_removes_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo");
    let repo =
        crate::support::new_repo(location.to_str().unwrap(), &crate::support::init_options()).await;
    let guard = repo.lock(false, "check").await.unwrap();
    assert_eq!(files_below(&location.join("locks")).len(), 1);
    drop(guard);
    airback::internals::dropped_locks_removed().await;
    assert!(files_below(&location.join("locks")).is_empty());

    // Cancelled while taking the lock (its second look for other locks): removed too.
    let taking = repo.lock(true, "repair");
    let cancelled = tokio::time::timeout(Duration::from_millis(100), taking).await;
    assert!(
        cancelled.is_err(),
        "the lock waits 200 ms before its second look"
    );
    airback::internals::dropped_locks_removed().await;
    assert!(files_below(&location.join("locks")).is_empty());
}

/// A write to a local folder cancelled before it finished leaves no temporary file in
/// `tmp/` (opendal's file system service does not remove it on drop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_write_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let backend = crate::support::open_backend(dir.path().to_str().unwrap());
    let first = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(vec![
        7u8;
        100_000
    ]))]);
    let chunks = first.chain(futures::stream::pending());
    let tmp = dir.path().join("tmp");
    {
        let write = backend.write_stream("data/ab/abcdef", chunks);
        tokio::pin!(write);
        let deadline = Instant::now() + Duration::from_secs(30);
        while files_below(&tmp).is_empty() {
            assert!(Instant::now() < deadline, "the write never began");
            let step = tokio::time::timeout(Duration::from_millis(10), &mut write).await;
            assert!(
                step.is_err(),
                "the write cannot finish: its stream never ends"
            );
        }
    } // the write is dropped here, mid-way
    assert_eq!(files_below(&tmp), Vec::<PathBuf>::new());
    assert!(!dir.path().join("data/ab/abcdef").exists());
}
