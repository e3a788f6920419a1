//! `sftp://` repositories against a real OpenSSH server ([`Sshd`]): the backend conformance
//! suite, writes that never leave half an object under its final name, one end-to-end run
//! through the binary, and the errors for an unknown or changed host key and a wrong key.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use airback::backend::{Backend, BackendOptions};

use crate::support::sshd::{Sshd, keygen};
use crate::support::{airback, files_below, open_backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_sftp() {
    let sshd = Sshd::start().await;
    let backend = open_backend(&sshd.location("conformance"));
    assert_eq!(backend.location(), sshd.location("conformance"));
    crate::repo::conformance(backend).await;
    let root = sshd.data().join("conformance");
    // Objects were written to tmp/ and renamed into place: nothing is left there.
    let left: Vec<String> = files_below(&root)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(left, ["a/b/one", "a/b/two"], "{}", sshd.log());
    // Private: objects 0600 and folders 0700, whatever the server's umask.
    let mode = |p: &str| {
        std::fs::metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("a/b/one"), 0o600);
    assert_eq!(mode("a/b"), 0o700);
    assert_eq!(mode("tmp"), 0o700);
}

/// A streamed write whose connection drops half-way fails, and the object's final name never
/// holds half of it; the next request connects again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cut_by_a_dropped_connection_leaves_no_half_object() {
    let sshd = Sshd::start().await;
    let options = BackendOptions {
        retries: 1,
        ..BackendOptions::default()
    };
    let backend = Backend::open(&sshd.location("cut"), &options).unwrap();
    backend
        .write("data/first", b"whole".to_vec())
        .await
        .unwrap();
    let root = sshd.data().join("cut");

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, String>>(1);
    let chunks = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let writer = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.write_stream("data/second", chunks).await })
    };
    tx.send(Ok(vec![7u8; 1 << 20].into())).await.unwrap();
    // Wait until the first megabyte reached the server's disk (in tmp/).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let staged: u64 = std::fs::read_dir(root.join("tmp"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if staged >= 1 << 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first chunk never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!root.join("data/second").exists());
    sshd.drop_connections();
    let _ = tx.send(Ok(vec![8u8; 1 << 20].into())).await;
    drop(tx);
    let result = writer.await.unwrap();
    assert!(
        result.is_err(),
        "a write over a dropped connection succeeded"
    );
    assert!(
        !root.join("data/second").exists(),
        "half an object was left under its final name"
    );
    // A new connection serves the next requests.
    assert_eq!(backend.size("data/second").await.unwrap(), None);
    assert_eq!(backend.read("data/first").await.unwrap(), b"whole");
}

/// A stream that fails half-way aborts the write: no object, no temporary file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_stream_leaves_neither_object_nor_temporary_file() {
    let sshd = Sshd::start().await;
    let backend = open_backend(&sshd.location("aborted"));
    let chunks = futures::stream::iter(vec![
        Ok(bytes::Bytes::from(vec![1u8; 100_000])),
        Err("the source failed".to_string()),
    ]);
    let err = backend.write_stream("data/x", chunks).await.unwrap_err();
    assert!(err.to_string().contains("the source failed"), "{err}");
    assert!(files_below(&sshd.data().join("aborted")).is_empty());
}

/// init, snapshot of the demo base, check --read-data, export and restore into a new base,
/// all through the binary on an sftp:// repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_on_sftp() {
    let sshd = Sshd::start().await;
    let location = sshd.location("e2e");
    crate::servers::end_to_end(&location, None).await;
    // The repository is on the server's disk, objects only (tmp/ is empty).
    let files = files_below(&sshd.data().join("e2e"));
    assert!(
        files.iter().any(|f| f.starts_with("snapshots")),
        "{files:?}"
    );
    assert!(!files.iter().any(|f| f.starts_with("tmp")), "{files:?}");
}

/// The SHA256 fingerprint of a public key file, as `ssh-keygen -l` shows it.
fn fingerprint(public_key: &std::path::Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let fingerprint = text.split_whitespace().nth(1).unwrap().to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{text}");
    fingerprint
}

/// A host key the known_hosts file lacks, or that differs from the one it has, stops the
/// command at once with the host, the key's fingerprint and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_or_changed_host_key_is_refused_with_its_fingerprint() {
    let sshd = Sshd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host_fingerprint = fingerprint(&sshd.data().join("../host_ed25519.pub"));
    let host = format!("[127.0.0.1]:{}", sshd.port);

    let empty = dir.path().join("known_hosts_empty");
    std::fs::write(&empty, "").unwrap();
    let location = sshd.location_with("repo", &sshd.key(), &empty);
    let started = std::time::Instant::now();
    let (code, out, err) = airback(dir.path(), &["init", "--repo", &location]).await;
    eprintln!("unknown host key, exit code {code}: {err}");
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!("the host key of {host} is unknown"))
            && err.contains(&host_fingerprint)
            && err.contains(&format!("ssh-keyscan -p {} 127.0.0.1 >> ", sshd.port)),
        "{err}"
    );
    // Not retried: a refused host key is not a network hiccup.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(!sshd.data().join("repo").exists());

    // The same host name with another key: changed.
    let other = dir.path().join("other_host_key");
    keygen(&other);
    let other_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_key: Vec<&str> = other_key.split_whitespace().take(2).collect();
    let changed = dir.path().join("known_hosts_changed");
    std::fs::write(&changed, format!("{host} {}\n", other_key.join(" "))).unwrap();
    let location = sshd.location_with("repo", &sshd.key(), &changed);
    let (code, out, err) = airback(dir.path(), &["init", "--repo", &location]).await;
    eprintln!("changed host key, exit code {code}: {err}");
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!("the host key of {host} has CHANGED"))
            && err.contains(&host_fingerprint)
            && err.contains("line 1 of")
            && err.contains("ssh-keygen -R"),
        "{err}"
    );

    // A known_hosts file that does not exist is named.
    let missing = dir.path().join("no_such_known_hosts");
    let location = sshd.location_with("repo", &sshd.key(), &missing);
    let (code, _, err) = airback(dir.path(), &["init", "--repo", &location]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot read the known_hosts file") && err.contains("no_such_known_hosts"),
        "{err}"
    );
    assert!(!sshd.data().join("repo").exists());
}

/// A key the server does not know, or a key file that is missing or not a key, is a clear
/// error naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_file_is_a_clear_error() {
    let sshd = Sshd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("stranger_ed25519");
    keygen(&stranger);
    let location = sshd.location_with("repo", &stranger, &sshd.known_hosts());
    let (code, out, err) = airback(dir.path(), &["init", "--repo", &location]).await;
    eprintln!("unknown user key, exit code {code}: {err}");
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!("refused the key {}", stranger.display()))
            && err.contains(&format!("for the user `{}`", sshd.user))
            && err.contains("authorized_keys"),
        "{err}"
    );

    let missing = dir.path().join("no_such_key");
    let location = sshd.location_with("repo", &missing, &sshd.known_hosts());
    let (code, _, err) = airback(dir.path(), &["init", "--repo", &location]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("cannot read the key file {}", missing.display())),
        "{err}"
    );

    // The public half given for the private one.
    let public = stranger.with_extension("pub");
    let location = sshd.location_with("repo", &public, &sshd.known_hosts());
    let (code, _, err) = airback(dir.path(), &["init", "--repo", &location]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!(
            "the key file {} is not a private key",
            public.display()
        )),
        "{err}"
    );
    assert!(!sshd.data().join("repo").exists());
}

/// A key with a passphrase belongs in the agent: the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_a_passphrase_is_sent_to_the_agent() {
    let sshd = Sshd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("locked_ed25519");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let location = sshd.location_with("repo", &key, &sshd.known_hosts());
    let (code, _, err) = airback(dir.path(), &["init", "--repo", &location]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("is protected by a passphrase") && err.contains("ssh-add"),
        "{err}"
    );
}

/// An ssh-agent of the test's own, killed when dropped.
struct Agent {
    child: std::process::Child,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts an agent holding `key`.
    fn start(key: &std::path::Path) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent runs (package openssh-client)");
        let agent = Agent {
            child,
            socket,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "ssh-agent did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = std::process::Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "ssh-add failed");
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with `SSH_AUTH_SOCK` set to `agent` (or unset).
async fn airback_with_agent(
    cache: &std::path::Path,
    agent: Option<&std::path::Path>,
    args: &[&str],
) -> (i32, String, String) {
    let mut command = crate::support::command(env!("CARGO_BIN_EXE_airback"));
    command
        .args(args)
        .env("AIRBACK_CACHE_DIR", cache)
        .env_remove("AIRBACK_REPO")
        .env_remove("SSH_AUTH_SOCK");
    if let Some(agent) = agent {
        command.env("SSH_AUTH_SOCK", agent);
    }
    let out = command.output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Without `key=`, the ssh agent's keys log in; with no agent at all, the error says how to
/// give a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_file_the_ssh_agent_logs_in() {
    let sshd = Sshd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let location = format!(
        "sftp://{}@127.0.0.1:{}{}/agent?known_hosts={}",
        sshd.user,
        sshd.port,
        sshd.data().display(),
        sshd.known_hosts().display()
    );
    let (code, _, err) = airback_with_agent(dir.path(), None, &["init", "--repo", &location]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("no `key=FILE` in the location and no ssh agent") && err.contains("ssh-add"),
        "{err}"
    );

    // An agent with a key the server does not know.
    let stranger = dir.path().join("stranger_ed25519");
    keygen(&stranger);
    let agent = Agent::start(&stranger);
    let (code, _, err) = airback_with_agent(
        dir.path(),
        Some(&agent.socket),
        &["init", "--repo", &location],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("refused all 1 keys of the ssh agent"), "{err}");
    drop(agent);

    let agent = Agent::start(&sshd.key());
    let (code, out, err) = airback_with_agent(
        dir.path(),
        Some(&agent.socket),
        &["init", "--repo", &location],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(sshd.data().join("agent/config").exists());
}

/// Temporary files that interrupted writes left in an sftp repository's `tmp/` are found
/// (check warns of them) and removed (the next snapshot does) once an hour old; younger ones
/// may be writes in progress and stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_interrupted_writes_in_tmp_are_found_and_removed() {
    use airback::backend::TMP_LEFTOVER_AGE;
    let sshd = Sshd::start().await;
    let backend = open_backend(&sshd.location("leftovers"));
    assert!(
        backend
            .tmp_leftovers(TMP_LEFTOVER_AGE)
            .await
            .unwrap()
            .is_empty()
    );
    backend.write("data/x", b"x".to_vec()).await.unwrap();
    let tmp = sshd.data().join("leftovers/tmp");
    std::fs::write(tmp.join("old.0123"), [0u8; 10]).unwrap();
    let status = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(tmp.join("old.0123"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(tmp.join("young.4567"), b"y").unwrap();

    let found = backend.tmp_leftovers(TMP_LEFTOVER_AGE).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].name.as_str(), found[0].size), ("old.0123", 10));
    assert!(found[0].age > Duration::from_secs(7000), "{found:?}");
    let removed = backend
        .remove_tmp_leftovers(TMP_LEFTOVER_AGE)
        .await
        .unwrap();
    let names = |l: &[airback::backend::TmpLeftover]| -> Vec<(String, u64)> {
        l.iter().map(|l| (l.name.clone(), l.size)).collect()
    };
    assert_eq!(names(&removed), names(&found));
    assert!(!tmp.join("old.0123").exists());
    assert!(tmp.join("young.4567").exists());
    assert!(
        backend
            .tmp_leftovers(TMP_LEFTOVER_AGE)
            .await
            .unwrap()
            .is_empty()
    );
}
