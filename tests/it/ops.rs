//! Operating a repository on a bad day (issue #10): a read-only repository read with
//! `--no-lock` (defect 7), a damaged or unwritable cache (defect 9), locks from a host whose
//! clock is ahead, `tmp/` leftovers, and the permissions of what airback creates.

use std::path::Path;

use std::time::{Duration, SystemTime};

use airback::backend::{Backend, BackendOptions, TMP_LEFTOVER_AGE};
use airback::internals::LockInfo;
use airback::repo::{CacheChoice, RepoError, Repository};
use airback_fake::{FakeAirtable, FakeOptions, Preset};

use crate::support::s3::S3Server;

/// Runs the binary against a fake Airtable with a private cache dir, under the usual umask 022;
/// (code, stdout, stderr).
async fn run(fake: &FakeAirtable, cache: &Path, args: &[&str]) -> (i32, String, String) {
    let out = crate::support::command("sh")
        .args([
            "-c",
            "umask 022 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_airback"),
        ])
        .args(args)
        .env("AIRBACK_CACHE_DIR", cache)
        .env("AIRTABLE_API_URL", fake.url())
        .env("AIRTABLE_CONTENT_URL", fake.url())
        .env("AIRTABLE_TOKEN", fake.token())
        .env_remove("AIRBACK_REPO")
        .env_remove("AIRBACK_LOG")
        .output()
        .await
        .expect("the airback binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fake Airtable and a repository at `location` holding one snapshot of its first base.
async fn repo_with_a_snapshot(location: &str, cache: &Path) -> FakeAirtable {
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let base = fake.bases()[0].id.clone();
    let (code, out, err) = run(&fake, cache, &["init", "--repo", location]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(
        &fake,
        cache,
        &["snapshot", "--repo", location, "--base", &base],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    fake
}

// ---------------------------------------------------------------------------------------------
// Defect 7: a read-only repository can be read.

/// Reading commands on a repository that refuses writes: without `--no-lock` the lock cannot be
/// written and the message says what to do; with it, check and export work.
async fn read_only_checks(fake: &FakeAirtable, location: &str, dir: &Path) {
    let cache = dir.join("cache");
    let (code, out, err) = run(fake, &cache, &["check", "--repo", location]).await;
    assert_eq!(code, 1, "check must fail without --no-lock: {out}{err}");
    assert!(
        err.contains("--no-lock") && err.contains("read-only"),
        "the message must point at --no-lock: {err}"
    );
    for args in [
        &["check", "--no-lock"][..],
        &["check", "--read-data", "--no-lock"],
        &["snapshots", "--no-lock"],
        &["snapshots"],
        &["show", "latest", "--no-lock"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--repo", location]);
        let (code, out, err) = run(fake, &cache, &args).await;
        assert_eq!(code, 0, "airback {args:?}: {out}{err}");
    }
    let tar = dir.join("out.tar");
    let (code, out, err) = run(
        fake,
        &cache,
        &[
            "export",
            "latest",
            "-o",
            tar.to_str().unwrap(),
            "--no-lock",
            "--repo",
            location,
        ],
    )
    .await;
    assert_eq!(code, 0, "export --no-lock: {out}{err}");
    assert!(std::fs::metadata(&tar).unwrap().len() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_s3_repository_is_read_with_no_lock() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let location = s3.location("ro");
    let fake = repo_with_a_snapshot(&location, &dir.path().join("cache")).await;
    s3.set_read_only(true);
    read_only_checks(&fake, &location, dir.path()).await;
}

/// The same on a local folder mounted read-only (a bind mount in a private mount namespace, so
/// that it refuses writes to root too). Skipped where mount namespaces are not allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_local_repository_is_read_with_no_lock() {
    let probe = std::process::Command::new("unshare")
        .args(["-m", "--", "mount", "-t", "tmpfs", "none", "/mnt"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: `unshare -m` with mount is not allowed here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let fake = repo_with_a_snapshot(repo, &dir.path().join("cache")).await;
    // Each command runs in its own namespace where `repo` is a read-only bind mount of itself.
    let wrapper = dir.path().join("ro-airback");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec unshare -m -- sh -c 'mount --bind \"$0\" \"$0\" || exit 98; \
             mount -o remount,bind,ro \"$0\" \"$0\" || exit 98; \
             if touch \"$0/probe\" 2>/dev/null; then exit 99; fi; exec \"$@\"' {repo} {} \"$@\"\n",
            env!("CARGO_BIN_EXE_airback")
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let ro = |args: Vec<&str>| {
        let wrapper = wrapper.clone();
        let fake_url = fake.url();
        let token = fake.token();
        let cache = cache.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            let out = crate::support::command(&wrapper)
                .args(&args)
                .env("AIRBACK_CACHE_DIR", &cache)
                .env("AIRTABLE_API_URL", &fake_url)
                .env("AIRTABLE_TOKEN", token)
                .env_remove("AIRBACK_LOG")
                .output()
                .await
                .unwrap();
            let code = out.status.code();
            assert!(
                code != Some(98) && code != Some(99),
                "no read-only bind mount"
            );
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (code, out, err) = ro(vec!["check", "--repo", repo]).await;
    assert_eq!(code, 1, "check must fail without --no-lock: {out}{err}");
    assert!(err.contains("--no-lock"), "{err}");
    let (code, out, err) = ro(vec!["check", "--read-data", "--no-lock", "--repo", repo]).await;
    assert_eq!(code, 0, "{out}{err}");
    let tar = dir.path().join("out.tar");
    let (code, out, err) = ro(vec![
        "export",
        "latest",
        "-o",
        tar.to_str().unwrap(),
        "--no-lock",
        "--repo",
        repo,
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(std::fs::metadata(&tar).unwrap().len() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_write_refuse_no_lock() {
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let cache = dir.path().join("cache");
    for args in [
        &["init", "--no-lock", "--repo", repo][..],
        &[
            "snapshot",
            "--no-lock",
            "--base",
            "appXXXXXXXXXXXXXX",
            "--repo",
            repo,
        ],
    ] {
        let (code, _, err) = run(&fake, &cache, args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("--no-lock is for commands that only read"),
            "{err}"
        );
    }
    assert!(!Path::new(repo).exists(), "nothing was created");
}

// ---------------------------------------------------------------------------------------------
// Defect 9: the cache heals itself.

fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    crate::support::files_below(dir)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == name))
        .map(|p| dir.join(p))
}

fn lines_naming<'a>(text: &'a str, what: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(what)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_cache_is_moved_aside_and_rebuilt_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let cache = dir.path().join("cache");
    let fake = repo_with_a_snapshot(repo, &cache).await;
    let file = find_file(&cache, "cache.sqlite").expect("the cache file exists");
    let len = std::fs::metadata(&file).unwrap().len().max(8192) as usize;
    std::fs::write(&file, crate::support::random_bytes(len, 9)).unwrap();
    let shown = file.to_str().unwrap();

    let (code, out, err) = run(&fake, &cache, &["snapshots", "--repo", repo]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 snapshot"), "{out}");
    let warnings = lines_naming(&err, shown);
    assert_eq!(warnings.len(), 1, "one warning naming the file: {err}");
    assert!(warnings[0].contains("damaged"), "{err}");
    let broken: Vec<_> = crate::support::files_below(&cache)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("cache.sqlite.broken-"))
        .collect();
    assert_eq!(broken.len(), 1, "moved aside: {broken:?}");

    // Rebuilt: the next runs, the nightly snapshot included, say nothing about it.
    let base = fake.bases()[0].id.clone();
    for args in [
        &["snapshots", "--repo", repo][..],
        &["snapshot", "--base", &base, "--repo", repo],
        &["check", "--repo", repo],
    ] {
        let (code, out, err) = run(&fake, &cache, args).await;
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert!(lines_naming(&err, "cache").is_empty(), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_cache_location_gives_an_in_memory_cache_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let fake = repo_with_a_snapshot(repo, &dir.path().join("cache")).await;
    let base = fake.bases()[0].id.clone();
    // The cache folder is a regular file (root is not stopped by a read-only folder).
    let not_a_dir = dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, b"a file").unwrap();
    for args in [
        &["snapshots", "--repo", repo][..],
        &["snapshot", "--base", &base, "--repo", repo],
        &["check", "--repo", repo],
    ] {
        let (code, out, err) = run(&fake, &not_a_dir, args).await;
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        let warnings = lines_naming(&err, "cache");
        assert_eq!(warnings.len(), 1, "{args:?}: one warning: {err}");
        assert!(
            warnings[0].contains(not_a_dir.to_str().unwrap()) && warnings[0].contains("memory"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&not_a_dir).unwrap(), b"a file");
}

// ---------------------------------------------------------------------------------------------
// Weaknesses: locks from a host whose clock is ahead, `tmp/` leftovers, file permissions.

async fn open_local(location: &str, cache: &Path) -> Repository {
    let backend = Backend::open(location, &BackendOptions::default()).unwrap();
    Repository::open(
        backend,
        CacheChoice::Dir(cache.to_path_buf()),
        crate::support::password(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_dated_in_the_future_expires_thirty_minutes_after_it_was_first_seen() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo");
    let location = location.to_str().unwrap();
    let cache = dir.path().join("cache");
    // The lock below is written by hand in format 1's plain form.
    let options = crate::support::format1(crate::support::small_options());
    crate::support::new_repo(location, &options).await;
    // A prune on a host whose clock is a year ahead died holding its lock.
    let year_ahead = SystemTime::now() + Duration::from_secs(365 * 24 * 3600);
    let lock = LockInfo {
        time: humantime::format_rfc3339_seconds(year_ahead).to_string(),
        hostname: "fast-clock-host".into(),
        pid: 4242,
        exclusive: true,
        operation: "prune".into(),
        writer: false,
    };
    let name = "future-lock";
    let repo = open_local(location, &cache).await;
    repo.backend()
        .write(&format!("locks/{name}"), serde_json::to_vec(&lock).unwrap())
        .await
        .unwrap();

    // Seen for the first time: it blocks, and the message says when it stops counting.
    let err = repo.lock(false, "check").await.unwrap_err();
    assert!(matches!(err, RepoError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("in the future") && err.to_string().contains("stale from"),
        "{err}"
    );
    let key = format!("lock-first-seen:{name}");
    let seen: u64 = repo
        .cache()
        .get_value(&key)
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();

    // A later run, 31 minutes after that first sighting (moved back in the cache, as the
    // clock cannot be): the lock is stale, removed, and no longer blocks.
    repo.cache()
        .set_value(&key, &(seen - 31 * 60).to_string())
        .unwrap();
    drop(repo);
    let repo = open_local(location, &cache).await;
    let guard = repo.lock(false, "check").await.unwrap();
    guard.release().await.unwrap();
    assert!(repo.backend().list("locks/").await.unwrap().is_empty());
}

fn age_file(path: &Path, age: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmp_leftovers_are_reported_by_check_and_removed_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let location = repo.to_str().unwrap();
    let cache = dir.path().join("cache");
    let fake = repo_with_a_snapshot(location, &cache).await;
    let tmp = repo.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // An upload cut short by a full disk two hours ago, and one being written right now.
    let old = tmp.join("0123abcd.5f3a9e01c2d4b6a8");
    std::fs::write(&old, vec![7u8; 1000]).unwrap();
    age_file(&old, TMP_LEFTOVER_AGE + Duration::from_secs(3600));
    let fresh = tmp.join("4567ef01.0b1c2d3e4f5a6b7c");
    std::fs::write(&fresh, vec![7u8; 10]).unwrap();

    let (code, out, err) = run(&fake, &cache, &["check", "--repo", location]).await;
    assert_eq!(code, 0, "{out}{err}");
    // (The repository here is unencrypted, which `check` also warns about.)
    let warnings: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("warning:") && !l.contains("not encrypted"))
        .collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(
        warnings[0].contains("tmp/0123abcd.5f3a9e01c2d4b6a8")
            && warnings[0].contains("1000 bytes")
            && warnings[0].contains("interrupted write"),
        "{out}"
    );

    let base = fake.bases()[0].id.clone();
    let (code, out, err) = run(
        &fake,
        &cache,
        &["snapshot", "--base", &base, "--repo", location],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(!old.exists(), "the leftover was removed");
    assert!(
        fresh.exists(),
        "a write that may be in progress is left alone"
    );
    let (code, out, err) = run(&fake, &cache, &["check", "--repo", location]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.lines()
            .any(|l| l.starts_with("warning:") && !l.contains("not encrypted")),
        "{out}"
    );
}

/// Issue #11, item 5: `airback snapshot` lists the repository's packs once per run, before its
/// first base (adopting leftovers, finding lost packs), not once per base.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_two_bases_lists_the_packs_once() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let location = s3.location("two");
    let fake = repo_with_a_snapshot(&location, &cache).await;
    let base = fake.bases()[0].id.clone();
    // An unknown base fails after its turn has begun: a listing per base would show as two.
    let unknown = "appUnknownBase000";
    let before = s3.requests().len();
    // A cache that never listed the packs (a later run from the same cache lists them only
    // when due: see `economy`).
    let (code, out, err) = run(
        &fake,
        &dir.path().join("another cache"),
        &[
            "snapshot", "--repo", &location, "--base", unknown, "--base", &base,
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("of base {base}")), "{out}");
    assert!(err.contains(unknown) && err.contains("failed"), "{err}");
    let requests = s3.requests();
    let pack_lists: Vec<&String> = requests[before..]
        .iter()
        .filter(|r| r.starts_with("ListObjects") && r.ends_with("prefix=two/data/"))
        .collect();
    assert_eq!(pack_lists.len(), 1, "{:#?}", &requests[before..]);
}

/// Every file below `dir` is 0600 and every folder (`dir` included) 0700.
fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
                files += 1;
            }
        }
    }
    assert!(files > 0, "nothing below {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_and_cache_files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let cache = dir.path().join("cache");
    // `run` sets umask 022, under which files would be 0644 and folders 0755.
    let fake = repo_with_a_snapshot(repo.to_str().unwrap(), &cache).await;
    let (code, out, err) = run(
        &fake,
        &cache,
        &["check", "--read-data", "--repo", repo.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(repo.join("data").is_dir() && repo.join("snapshots").is_dir());
    assert_private(&repo);
    assert_private(&cache);
}
