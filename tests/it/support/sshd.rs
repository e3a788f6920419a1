//! A real SSH server for `sftp://` tests: OpenSSH's `sshd` (Debian `openssh-server`, which
//! `.ci/run` installs) run unprivileged in the foreground on 127.0.0.1, with a throwaway host
//! key and user key made by `ssh-keygen` in a temporary folder, its own config file
//! (`sshd -f`), an `authorized_keys` with the user key, and a `known_hosts` with the host key
//! under `[127.0.0.1]:PORT`. The login user is whoever runs the tests (root in CI, allowed by
//! `PermitRootLogin prohibit-password`). The server is killed when the [`Sshd`] is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs sshd; it must be started by its absolute path (it re-executes itself).
const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd.
pub struct Sshd {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// The login name (the current user).
    pub user: String,
    dir: tempfile::TempDir,
}

impl Sshd {
    /// Starts a server and waits until it answers.
    pub async fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install OpenSSH's server (`apt-get install openssh-server`; \
             .ci/run does)"
        );
        let started = Instant::now();
        let mut dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let path = path.as_path();
        keygen(&path.join("host_ed25519"));
        keygen(&path.join("user_ed25519"));
        std::fs::copy(path.join("user_ed25519.pub"), path.join("authorized_keys")).unwrap();
        std::fs::create_dir(path.join("data")).unwrap();
        let user = current_user();
        if is_root() {
            // sshd started by root separates privileges into this folder, which the package's
            // service would create at boot.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        // The port is the OS's choice: bound and released, then given to sshd; another
        // process could take it in between, so a failed start tries another one.
        for _ in 0..5 {
            let port = super::free_port();
            let config = path.join("sshd_config");
            std::fs::write(&config, sshd_config(path, port)).unwrap();
            let log = std::fs::File::create(path.join("sshd.log")).unwrap();
            let child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("sshd starts");
            let mut sshd = Sshd {
                child,
                port,
                user: user.clone(),
                dir,
            };
            if sshd.wait_until_ready().await {
                let host_key = std::fs::read_to_string(path.join("host_ed25519.pub")).unwrap();
                let entry = host_key.split_whitespace().take(2).collect::<Vec<_>>();
                std::fs::write(
                    sshd.known_hosts(),
                    format!("[127.0.0.1]:{port} {}\n", entry.join(" ")),
                )
                .unwrap();
                eprintln!("sshd started on port {port} in {:?}", started.elapsed());
                return sshd;
            }
            let _ = sshd.child.kill();
            let _ = sshd.child.wait();
            dir = std::mem::replace(&mut sshd.dir, tempfile::tempdir().unwrap());
        }
        panic!(
            "sshd did not start; its log:\n{}",
            std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default()
        );
    }

    /// Whether the server answers with an SSH banner before it exits or 10 s pass.
    async fn wait_until_ready(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                let mut banner = [0u8; 4];
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut banner))
                        .await
                {
                    return &banner == b"SSH-";
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// A folder on the server that the tests may fill (absolute, inside the temporary folder).
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The user's private key (unencrypted).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("user_ed25519")
    }

    /// A known_hosts file with the server's host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The location of the repository `name` in [`Sshd::data`], with the key and known_hosts.
    pub fn location(&self, name: &str) -> String {
        self.location_with(name, &self.key(), &self.known_hosts())
    }

    /// The location of the repository `name`, logging in with `key` and checking the host key
    /// against `known_hosts`.
    pub fn location_with(&self, name: &str, key: &Path, known_hosts: &Path) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}{}/{name}?key={}&known_hosts={}",
            self.user,
            self.port,
            self.data().display(),
            key.display(),
            known_hosts.display()
        )
    }

    /// What sshd logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Sshd {
    /// Cuts every open connection (kills the processes sshd forked for them); the server
    /// keeps accepting new ones.
    pub fn drop_connections(&self) {
        for pid in descendants(self.child.id()) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.drop_connections();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The processes below `pid` (children, grandchildren, ...), from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`; comm may hold spaces, so read after its `)`.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((child, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == parent && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// A new ed25519 key pair without a passphrase at `path` and `path.pub`.
pub fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "airback-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs (package openssh-client)");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

fn sshd_config(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {dir}/host_ed25519\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         PidFile none\n\
         StrictModes no\n\
         UsePAM no\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n"
    )
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("`id` runs");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("`id` runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}
