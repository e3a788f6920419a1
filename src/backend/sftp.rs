//! `sftp://user@host[:port]/absolute/path[?key=FILE&known_hosts=FILE]`: a repository on any SSH
//! server with SFTP (a NAS, a Linux box), as an opendal service written on russh and
//! russh-sftp, so that the backend's retry, timeout and concurrency layers apply as for the
//! other services.
//!
//! Why not opendal's own sftp service: it drives the system `ssh` through the `openssh` crate
//! and cannot be given a known_hosts file, so a host key could only be checked against
//! `~/.ssh/known_hosts`, and an unknown key's fingerprint never reaches the error; it also
//! writes objects in place (a dropped connection leaves half an object under its final name)
//! and puts its control sockets in the working directory.
//!
//! - Host keys are checked strictly against the `known_hosts` file given, or
//!   `~/.ssh/known_hosts`: an unknown or changed key stops the connection with an error that
//!   names the host, the key's SHA256 fingerprint and what to do. Nothing is ever added to a
//!   known_hosts file.
//! - Login is by key only: the `key` file (unencrypted; a key with a passphrase belongs in the
//!   agent), else every key of the ssh agent (`SSH_AUTH_SOCK`). Locations carry no password.
//! - Writes go to `tmp/<name>.<random>` (0600), are synced (`fsync@openssh.com` where the
//!   server has it), and renamed into place, so a dropped connection never leaves a half object
//!   under its final name. New folders are made 0700.
//! - One SSH connection with one SFTP session serves every request (SFTP pipelines them); a
//!   connection that fails is dropped and the next request (opendal's retry) opens another.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use opendal::raw::{
    OpCopy, OpCreateDir, OpDelete, OpList, OpPresign, OpRead, OpRename, OpStat, OpWrite,
    RpCreateDir, RpPresign, RpRead, RpRename, RpStat, Service, ServiceInfo, Timestamp, oio,
};
use opendal::{
    Buffer, Builder, BytesRange, Capability, Error, ErrorKind, Metadata, MetadataBuilder,
    OperationContext, Operator, Result,
};
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The scheme of the service (its `ServiceInfo`).
pub(super) const SCHEME: &str = "sftp";

/// An `sftp://` location, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SftpLocation {
    /// The login name on the server.
    pub(super) user: String,
    /// The host name or address (an IPv6 address without its brackets).
    pub(super) host: String,
    /// The SSH port (22 unless given).
    pub(super) port: u16,
    /// The repository's folder on the server: absolute, without a trailing `/`.
    pub(super) root: String,
    /// A private key file to log in with (else the ssh agent's keys).
    pub(super) key: Option<PathBuf>,
    /// The known_hosts file to check the host key against (else `~/.ssh/known_hosts`).
    pub(super) known_hosts: Option<PathBuf>,
}

const SYNTAX: &str = "write `sftp://user@host[:port]/absolute/path[?key=FILE&known_hosts=FILE]`";

impl SftpLocation {
    /// Parses what follows `sftp://`. The error says what is wrong and what to write.
    pub(super) fn parse(rest: &str) -> std::result::Result<SftpLocation, String> {
        let (head, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match head.find('/') {
            Some(i) => (&head[..i], &head[i..]),
            None => (head, ""),
        };
        let Some((userinfo, hostport)) = authority.rsplit_once('@') else {
            return Err(format!(
                "`sftp://` needs a user name, as in `sftp://backup@{authority}/path`; {SYNTAX}"
            ));
        };
        if userinfo.contains(':') {
            return Err(
                "an sftp location takes no password: log in with a key (`?key=FILE`) or the \
                 ssh agent"
                    .into(),
            );
        }
        if userinfo.is_empty() {
            return Err(format!("the user name before `@` is empty; {SYNTAX}"));
        }
        let (host, port) = split_host_port(hostport)?;
        if path.is_empty() || path == "/" {
            return Err(format!(
                "`sftp://` needs the repository's absolute folder on the server after the host, \
                 as in `sftp://{userinfo}@{hostport}/srv/backups/airback`"
            ));
        }
        if let Some(below_home) = path.strip_prefix("/~") {
            return Err(format!(
                "the path `~{below_home}` is relative to the home folder; sftp locations take \
                 absolute paths: write the full path, as in `/home/{userinfo}/{}`",
                below_home.trim_start_matches('/')
            ));
        }
        let root = path.trim_end_matches('/');
        if root.split('/').any(|part| part == "." || part == "..") {
            return Err(format!(
                "the path `{path}` has `.` or `..` in it; write the folder's plain absolute path"
            ));
        }
        let mut location = SftpLocation {
            user: userinfo.to_string(),
            host,
            port,
            root: root.to_string(),
            key: None,
            known_hosts: None,
        };
        for option in query.split('&').filter(|kv| !kv.is_empty()) {
            let (name, value) = option.split_once('=').unwrap_or((option, ""));
            let slot = match name {
                "key" => &mut location.key,
                "known_hosts" => &mut location.known_hosts,
                other => {
                    return Err(format!(
                        "unknown option `{other}`; an sftp location takes `key=FILE` (a private \
                         key) and `known_hosts=FILE`"
                    ));
                }
            };
            if value.is_empty() {
                return Err(format!(
                    "the option `{name}` needs a file, as in `{name}=/path/to/file`"
                ));
            }
            *slot = Some(PathBuf::from(value));
        }
        Ok(location)
    }

    /// The host as known_hosts files write it: `host`, or `[host]:port` off port 22.
    fn host_port(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

fn split_host_port(hostport: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!(
                "the host `{hostport}` lacks its closing `]`; {SYNTAX}"
            ));
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected `{after}` after the host; {SYNTAX}")),
            },
        }
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`sftp://` needs a host name after `@`; {SYNTAX}"));
    }
    let port = match port {
        None => 22,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                return Err(format!(
                    "bad port `{text}`: write a number from 1 to 65535, or leave `:port` out for 22"
                ));
            }
        },
    };
    Ok((host.to_string(), port))
}

/// The opendal operator of an `sftp://` location (before the backend's layers). Nothing is
/// connected yet: the first request connects.
pub(super) fn operator(
    location: SftpLocation,
    request_timeout: std::time::Duration,
) -> Result<Operator> {
    let service = SftpService {
        core: Arc::new(Core {
            location,
            request_timeout_secs: request_timeout.as_secs().max(1),
            conn: tokio::sync::Mutex::new(None),
        }),
    };
    Operator::new(SftpBuilder(Some(service)))
}

/// Hands a ready [`SftpService`] to [`Operator::new`].
#[derive(Default)]
struct SftpBuilder(Option<SftpService>);

impl Builder for SftpBuilder {
    type Config = ();

    fn build(self) -> Result<impl Service> {
        self.0
            .ok_or_else(|| Error::new(ErrorKind::ConfigInvalid, "no sftp location was given"))
    }
}

struct Core {
    location: SftpLocation,
    request_timeout_secs: u64,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

/// One SSH connection and its SFTP session.
struct Conn {
    sftp: SftpSession,
    handle: client::Handle<HostKeyCheck>,
}

impl Core {
    fn abs(&self, path: &str) -> String {
        let path = path.trim_start_matches('/').trim_end_matches('/');
        if path.is_empty() {
            self.location.root.clone()
        } else {
            format!("{}/{path}", self.location.root)
        }
    }

    /// The open connection, or a new one.
    async fn conn(&self) -> Result<Arc<Conn>> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref()
            && !conn.handle.is_closed()
        {
            return Ok(conn.clone());
        }
        *slot = None;
        let conn = Arc::new(self.connect().await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets `conn` after a failure that may have broken it.
    async fn forget(&self, conn: &Arc<Conn>) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *slot = None;
        }
    }

    /// Maps an SFTP failure, dropping the connection when the failure is not the server's
    /// answer about a file.
    async fn fail(&self, conn: &Arc<Conn>, what: &str, e: SftpError) -> Error {
        let error = sftp_error(what, e);
        if error.is_temporary() {
            self.forget(conn).await;
        }
        error
    }

    async fn connect(&self) -> Result<Conn> {
        let loc = &self.location;
        let known_hosts = match &loc.known_hosts {
            Some(file) => {
                if let Err(e) = std::fs::metadata(file) {
                    return Err(permanent(format!(
                        "cannot read the known_hosts file {}: {e}; give an existing file in \
                         `known_hosts=`",
                        file.display()
                    )));
                }
                file.clone()
            }
            None => dirs::home_dir()
                .ok_or_else(|| {
                    permanent(
                        "no home folder to find ~/.ssh/known_hosts in; give the file with \
                         `?known_hosts=FILE`",
                    )
                })?
                .join(".ssh/known_hosts"),
        };
        // A key from a file is read before connecting: a bad file is the user's to fix, and
        // says so without a network round trip.
        let key = match &loc.key {
            Some(path) => Some(load_key(path)?),
            None => None,
        };
        let mut config = client::Config::default();
        config.preferred.key = known_algorithms_first(loc, &known_hosts).into();
        let verdict = Arc::new(Mutex::new(None));
        let check = HostKeyCheck {
            host: loc.host.clone(),
            port: loc.port,
            known_hosts: known_hosts.clone(),
            verdict: verdict.clone(),
        };
        let mut handle =
            match client::connect(Arc::new(config), (loc.host.as_str(), loc.port), check).await {
                Ok(handle) => handle,
                Err(e) => {
                    let refused = verdict.lock().unwrap_or_else(|e| e.into_inner()).take();
                    return Err(match refused {
                        Some(message) => permanent(message),
                        None => Error::new(
                            ErrorKind::Unexpected,
                            format!("cannot connect to {}: {e}", loc.host_port()),
                        )
                        .set_temporary(),
                    });
                }
            };
        let user = loc.user.as_str();
        match key {
            Some((path, key)) => {
                let hash = rsa_hash(&handle, &key.public_key().clone()).await;
                let result = handle
                    .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                    .await
                    .map_err(|e| connection_error(loc, e))?;
                if !result.success() {
                    return Err(permanent(format!(
                        "{} refused the key {} for the user `{user}`; add its public key ({}.pub) \
                         to ~{user}/.ssh/authorized_keys on the server, or give another key",
                        loc.host_port(),
                        path.display(),
                        path.display()
                    )));
                }
            }
            None => login_with_agent(&mut handle, loc).await?,
        }
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| connection_error(loc, e))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| connection_error(loc, e))?;
        let config = russh_sftp::client::Config {
            request_timeout_secs: self.request_timeout_secs,
            ..Default::default()
        };
        let sftp = SftpSession::new_with_config(channel.into_stream(), config)
            .await
            .map_err(|e| {
                permanent(format!(
                    "{} has no SFTP service for `{user}` ({e}); enable the sftp subsystem in \
                     its sshd_config",
                    loc.host_port()
                ))
            })?;
        Ok(Conn { sftp, handle })
    }
}

/// A permanent error that stops the command: opendal does not retry it.
fn permanent(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::PermissionDenied, message.into())
}

fn connection_error(loc: &SftpLocation, e: russh::Error) -> Error {
    Error::new(
        ErrorKind::Unexpected,
        format!("the SSH connection to {} failed: {e}", loc.host_port()),
    )
    .set_temporary()
}

/// Reads an unencrypted private key file.
fn load_key(path: &Path) -> Result<(PathBuf, russh::keys::PrivateKey)> {
    match russh::keys::load_secret_key(path, None) {
        Ok(key) => Ok((path.to_path_buf(), key)),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(permanent(format!(
            "the key file {} is protected by a passphrase, and airback asks for none: load the \
             key into the ssh agent (`ssh-add {}`) and leave `key=` out of the location",
            path.display(),
            path.display()
        ))),
        Err(russh::keys::Error::IO(e)) => Err(permanent(format!(
            "cannot read the key file {}: {e}; give the path of a private key in `key=`",
            path.display()
        ))),
        Err(e) => Err(permanent(format!(
            "the key file {} is not a private key airback can use ({e}); give an OpenSSH \
             private key (ed25519, ecdsa or rsa) in `key=`",
            path.display()
        ))),
    }
}

/// The signature hash for an RSA key (the best the server takes); `None` for other keys.
async fn rsa_hash(handle: &client::Handle<HostKeyCheck>, key: &PublicKey) -> Option<HashAlg> {
    if !matches!(key.algorithm(), russh::keys::Algorithm::Rsa { .. }) {
        return None;
    }
    handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten()
}

/// Logs in with the first key of the ssh agent that the server accepts.
async fn login_with_agent(
    handle: &mut client::Handle<HostKeyCheck>,
    loc: &SftpLocation,
) -> Result<()> {
    use russh::keys::agent::AgentIdentity;
    let user = loc.user.as_str();
    let mut agent = russh::keys::agent::client::AgentClient::connect_env()
        .await
        .map_err(|e| {
            permanent(format!(
                "no key to log in to {} with: no `key=FILE` in the location and no ssh agent \
                 ({e}); add `?key=/path/to/private_key`, or start ssh-agent and `ssh-add` a key",
                loc.host_port()
            ))
        })?;
    let identities = agent.request_identities().await.map_err(|e| {
        permanent(format!(
            "cannot list the ssh agent's keys: {e}; check SSH_AUTH_SOCK"
        ))
    })?;
    let mut tried = 0;
    for identity in identities {
        let AgentIdentity::PublicKey { key, .. } = identity else {
            continue;
        };
        tried += 1;
        let hash = rsa_hash(handle, &key).await;
        match handle
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
        {
            Ok(result) if result.success() => return Ok(()),
            Ok(_) => {}
            Err(e) => tracing::debug!("the ssh agent could not sign with a key: {e}"),
        }
    }
    Err(permanent(if tried == 0 {
        format!(
            "the ssh agent holds no key to log in to {} with; `ssh-add` one, or add \
             `?key=/path/to/private_key` to the location",
            loc.host_port()
        )
    } else {
        format!(
            "{} refused all {tried} keys of the ssh agent for the user `{user}`; add a public \
             key to ~{user}/.ssh/authorized_keys on the server, or give a key with `?key=FILE`",
            loc.host_port()
        )
    }))
}

/// The host key algorithms to ask for: those the known_hosts file has a key of for this host
/// first (as OpenSSH does), so that a host known by its RSA key is not called unknown because
/// it also has an Ed25519 one.
fn known_algorithms_first(loc: &SftpLocation, known_hosts: &Path) -> Vec<russh::keys::Algorithm> {
    let family = |a: &russh::keys::Algorithm| match a {
        russh::keys::Algorithm::Rsa { .. } => "ssh-rsa".to_string(),
        other => other.as_str().to_string(),
    };
    let known: Vec<String> =
        russh::keys::known_hosts::known_host_keys_path(&loc.host, loc.port, known_hosts)
            .unwrap_or_default()
            .iter()
            .map(|(_, key)| family(&key.algorithm()))
            .collect();
    let mut algorithms = russh::Preferred::DEFAULT.key.to_vec();
    algorithms.sort_by_key(|a| !known.contains(&family(a)));
    algorithms
}

/// Accepts the server's host key only when the known_hosts file has it for this host; else
/// leaves the reason, to be told to the user.
struct HostKeyCheck {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    verdict: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let refusal = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                host_key_refusal(&self.host, self.port, key, &self.known_hosts)
            }
            PublicKeyOrCertificate::Certificate(_) => Some(format!(
                "{} offered a host certificate, which airback does not check; let it offer its \
                 plain host key",
                host_port(&self.host, self.port)
            )),
        };
        let accepted = refusal.is_none();
        *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) = refusal;
        Ok(accepted)
    }
}

fn host_port(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Why the server's key `key` is not accepted, or `None` when `known_hosts` has it.
fn host_key_refusal(host: &str, port: u16, key: &PublicKey, known_hosts: &Path) -> Option<String> {
    let name = host_port(host, port);
    let algorithm = key.algorithm();
    let fingerprint = key.fingerprint(HashAlg::Sha256);
    let file = known_hosts.display();
    let port_flag = if port == 22 {
        String::new()
    } else {
        format!("-p {port} ")
    };
    match russh::keys::known_hosts::check_known_hosts_path(host, port, key, known_hosts) {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "the host key of {name} is unknown: its {algorithm} key {fingerprint} is not in \
             {file}; check that fingerprint with the server's administrator (`ssh-keygen -lf \
             /etc/ssh/ssh_host_*_key.pub` on the server), then add the key with `ssh-keyscan \
             {port_flag}{host} >> {file}`"
        )),
        Err(russh::keys::Error::KeyChanged { line }) => Some(format!(
            "the host key of {name} has CHANGED: it now sends the {algorithm} key {fingerprint}, \
             but line {line} of {file} has another key for it; someone may be intercepting the \
             connection, or the server was reinstalled: check the new fingerprint with the \
             server's administrator, then remove the old key with `ssh-keygen -R '{name}' -f \
             {file}` and add the new one with `ssh-keyscan {port_flag}{host} >> {file}`"
        )),
        Err(e) => Some(format!(
            "cannot check the host key of {name} against {file}: {e}; fix or replace that file"
        )),
    }
}

/// An SFTP failure as an opendal error: the server's answers about a file are permanent,
/// everything else (a timeout, a dropped connection) is temporary and retried.
fn sftp_error(what: &str, e: SftpError) -> Error {
    match &e {
        SftpError::Status(status) => {
            let kind = match status.status_code {
                StatusCode::NoSuchFile => ErrorKind::NotFound,
                StatusCode::PermissionDenied => ErrorKind::PermissionDenied,
                StatusCode::OpUnsupported => ErrorKind::Unsupported,
                _ => ErrorKind::Unexpected,
            };
            let error = Error::new(kind, format!("{what}: {e}"));
            match status.status_code {
                StatusCode::NoConnection | StatusCode::ConnectionLost => error.set_temporary(),
                _ => error,
            }
        }
        _ => Error::new(ErrorKind::Unexpected, format!("{what}: {e}")).set_temporary(),
    }
}

fn is_status(e: &SftpError, code: StatusCode) -> bool {
    matches!(e, SftpError::Status(status) if status.status_code == code)
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Unexpected, format!("{what}: {e}")).set_temporary()
}

/// The opendal service of an `sftp://` location.
#[derive(Clone)]
pub(super) struct SftpService {
    core: Arc<Core>,
}

impl std::fmt::Debug for SftpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loc = &self.core.location;
        f.debug_struct("SftpService")
            .field("user", &loc.user)
            .field("host", &loc.host_port())
            .field("root", &loc.root)
            .finish()
    }
}

impl SftpService {
    /// Creates `dir` (absolute) and its missing parents, 0700.
    async fn create_dirs(&self, conn: &Arc<Conn>, dir: &str) -> Result<()> {
        let mut missing = Vec::new();
        let mut current = dir.trim_end_matches('/').to_string();
        loop {
            match conn.sftp.metadata(current.as_str()).await {
                Ok(_) => break,
                Err(e) if is_status(&e, StatusCode::NoSuchFile) => {}
                Err(e) => return Err(self.core.fail(conn, "cannot look up a folder", e).await),
            }
            missing.push(current.clone());
            match current.rsplit_once('/') {
                Some((parent, _)) if !parent.is_empty() => current = parent.to_string(),
                _ => break,
            }
        }
        for dir in missing.into_iter().rev() {
            let attrs = FileAttributes {
                permissions: Some(0o700),
                ..Default::default()
            };
            match conn.sftp.create_dir(dir.as_str()).await {
                Ok(()) => {
                    // mkdir takes the umask; the folder is made private afterwards.
                    let _ = conn.sftp.set_metadata(dir.as_str(), attrs).await;
                }
                Err(e) => {
                    // Another writer may have made it meanwhile.
                    if conn.sftp.metadata(dir.as_str()).await.is_err() {
                        let what = format!("cannot create the folder {dir}");
                        return Err(self.core.fail(conn, &what, e).await);
                    }
                }
            }
        }
        Ok(())
    }

    /// Renames `from` to `to` (absolute), replacing `to`, making `to`'s folder if missing.
    async fn rename_abs(&self, conn: &Arc<Conn>, from: &str, to: &str) -> Result<()> {
        let parent = to.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        let mut made_parent = false;
        let mut replaced = false;
        loop {
            let e = match conn.sftp.rename(from, to).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if !made_parent && is_status(&e, StatusCode::NoSuchFile) && !parent.is_empty() {
                made_parent = true;
                self.create_dirs(conn, parent).await?;
                continue;
            }
            // SFTP version 3 does not replace an existing file (OpenSSH answers "Failure").
            // Every object airback writes has a new name (content-addressed), so this is rare:
            // the old object goes first, which leaves a moment without it.
            if !replaced && conn.sftp.metadata(to).await.is_ok() {
                replaced = true;
                if let Err(e) = conn.sftp.remove_file(to).await
                    && !is_status(&e, StatusCode::NoSuchFile)
                {
                    return Err(self.core.fail(conn, "cannot replace an object", e).await);
                }
                continue;
            }
            return Err(self.core.fail(conn, "cannot rename into place", e).await);
        }
    }
}

impl Service for SftpService {
    type Reader = oio::StreamReader<SftpReader>;
    type Writer = SftpWriter;
    type Lister = oio::HierarchyLister<SftpLister>;
    type Deleter = oio::OneShotDeleter<SftpDeleter>;
    type Copier = ();
    type Composer = ();

    fn info(&self) -> ServiceInfo {
        let loc = &self.core.location;
        ServiceInfo::new(
            SCHEME,
            format!("{}/", loc.root),
            format!("{}@{}", loc.user, loc.host_port()),
        )
    }

    fn capability(&self) -> Capability {
        Capability {
            stat: true,
            read: true,
            write: true,
            write_can_empty: true,
            write_can_multi: true,
            create_dir: true,
            delete: true,
            list: true,
            list_with_recursive: true,
            rename: true,
            shared: true,
            ..Default::default()
        }
    }

    async fn create_dir(
        &self,
        _: &OperationContext,
        path: &str,
        _: OpCreateDir,
    ) -> Result<RpCreateDir> {
        let conn = self.core.conn().await?;
        self.create_dirs(&conn, &self.core.abs(path)).await?;
        Ok(RpCreateDir::default())
    }

    async fn stat(&self, _: &OperationContext, path: &str, _: OpStat) -> Result<RpStat> {
        let conn = self.core.conn().await?;
        let meta = match conn.sftp.metadata(self.core.abs(path)).await {
            Ok(meta) => meta,
            Err(e) => return Err(self.core.fail(&conn, "cannot look up the object", e).await),
        };
        Ok(RpStat::new(to_metadata(&meta)))
    }

    fn read(&self, _: &OperationContext, path: &str, _: OpRead) -> Result<Self::Reader> {
        Ok(oio::StreamReader::new(SftpReader {
            service: self.clone(),
            path: path.to_string(),
        }))
    }

    fn write(&self, _: &OperationContext, path: &str, _: OpWrite) -> Result<Self::Writer> {
        Ok(SftpWriter {
            service: self.clone(),
            target: self.core.abs(path),
            open: None,
        })
    }

    fn delete(&self, _: &OperationContext) -> Result<Self::Deleter> {
        Ok(oio::OneShotDeleter::new(SftpDeleter {
            service: self.clone(),
        }))
    }

    fn list(&self, _: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        let lister = SftpLister {
            service: self.clone(),
            dir: path.trim_start_matches('/').to_string(),
            entries: None,
        };
        Ok(oio::HierarchyLister::new(lister, path, args.recursive()))
    }

    fn copy(&self, _: &OperationContext, _: &str, _: &str, _: OpCopy) -> Result<Self::Copier> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "sftp does not copy on the server",
        ))
    }

    async fn rename(
        &self,
        _: &OperationContext,
        from: &str,
        to: &str,
        _: OpRename,
    ) -> Result<RpRename> {
        let conn = self.core.conn().await?;
        self.rename_abs(&conn, &self.core.abs(from), &self.core.abs(to))
            .await?;
        Ok(RpRename::default())
    }

    async fn presign(&self, _: &OperationContext, _: &str, _: OpPresign) -> Result<RpPresign> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "an sftp server cannot make signed URLs",
        ))
    }
}

fn to_metadata(meta: &FileAttributes) -> Metadata {
    let mut builder = if meta.is_dir() {
        MetadataBuilder::dir()
    } else {
        MetadataBuilder::file(meta.len())
    };
    if let Some(mtime) = meta.mtime
        && let Ok(time) = Timestamp::from_second(i64::from(mtime))
    {
        builder.last_modified(time);
    }
    builder.build()
}

/// Reads a range of an object whole (the backend reads objects or ranges of them whole).
pub(super) struct SftpReader {
    service: SftpService,
    path: String,
}

impl oio::StreamRead for SftpReader {
    async fn open(&self, range: BytesRange) -> Result<(RpRead, Box<dyn oio::ReadStreamDyn>)> {
        let core = &self.service.core;
        let conn = core.conn().await?;
        let mut file = match conn.sftp.open(core.abs(&self.path)).await {
            Ok(file) => file,
            Err(e) => return Err(core.fail(&conn, "cannot open the object", e).await),
        };
        let result = async {
            if range.offset() > 0 {
                file.seek(std::io::SeekFrom::Start(range.offset())).await?;
            }
            let mut bytes = Vec::new();
            match range.size() {
                Some(size) => {
                    (&mut file).take(size).read_to_end(&mut bytes).await?;
                }
                None => {
                    file.read_to_end(&mut bytes).await?;
                }
            }
            file.shutdown().await?;
            Ok::<_, std::io::Error>(bytes)
        }
        .await;
        match result {
            Ok(bytes) => Ok((
                RpRead::default(),
                Box::new(Buffer::from(bytes)) as Box<dyn oio::ReadStreamDyn>,
            )),
            Err(e) => {
                core.forget(&conn).await;
                Err(io_error("cannot read the object", e))
            }
        }
    }
}

/// Writes an object to `tmp/`, then renames it into place on close.
pub(super) struct SftpWriter {
    service: SftpService,
    /// The object's absolute path.
    target: String,
    open: Option<OpenWrite>,
}

struct OpenWrite {
    conn: Arc<Conn>,
    file: Option<russh_sftp::client::fs::File>,
    /// The temporary file's absolute path.
    tmp: String,
}

impl SftpWriter {
    async fn open(&mut self) -> Result<&mut OpenWrite> {
        if self.open.is_none() {
            let core = &self.service.core;
            let conn = core.conn().await?;
            let name = self.target.rsplit('/').next().unwrap_or("object");
            let tmp_dir = format!("{}/{}", core.location.root, super::TMP_DIR);
            let tmp = format!("{tmp_dir}/{name}.{:016x}", fastrand::u64(..));
            let attrs = FileAttributes {
                permissions: Some(0o600),
                ..Default::default()
            };
            let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE;
            let mut made_dir = false;
            let file = loop {
                match conn
                    .sftp
                    .open_with_flags_and_attributes(tmp.as_str(), flags, attrs.clone())
                    .await
                {
                    Ok(file) => break file,
                    Err(e) if !made_dir && is_status(&e, StatusCode::NoSuchFile) => {
                        made_dir = true;
                        self.service.create_dirs(&conn, &tmp_dir).await?;
                    }
                    Err(e) => {
                        return Err(core.fail(&conn, "cannot create a temporary file", e).await);
                    }
                }
            };
            self.open = Some(OpenWrite {
                conn,
                file: Some(file),
                tmp,
            });
        }
        Ok(self.open.as_mut().expect("opened above"))
    }
}

impl oio::Write for SftpWriter {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        let core = self.service.core.clone();
        let open = self.open().await?;
        let file = open
            .file
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, "the sftp write already ended"))?;
        for chunk in bs {
            if let Err(e) = file.write_all(&chunk).await {
                core.forget(&open.conn).await;
                return Err(io_error("cannot write the object", e));
            }
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<Metadata> {
        let core = self.service.core.clone();
        let open = self.open().await?;
        let Some(file) = open.file.take() else {
            return Err(Error::new(
                ErrorKind::Unexpected,
                "the sftp write already ended",
            ));
        };
        let conn = open.conn.clone();
        let tmp = open.tmp.clone();
        if let Err(e) = file.sync_all().await {
            let _ = conn.sftp.remove_file(tmp.as_str()).await;
            return Err(core.fail(&conn, "cannot sync the object", e).await);
        }
        if let Err(e) = file.close().await {
            let _ = conn.sftp.remove_file(tmp.as_str()).await;
            core.forget(&conn).await;
            return Err(io_error("cannot finish writing the object", e));
        }
        let renamed = self.service.rename_abs(&conn, &tmp, &self.target).await;
        self.open = None;
        if let Err(e) = renamed {
            let _ = conn.sftp.remove_file(tmp.as_str()).await;
            return Err(e);
        }
        Ok(MetadataBuilder::unknown().build())
    }

    async fn abort(&mut self) -> Result<()> {
        if let Some(mut open) = self.open.take() {
            drop(open.file.take());
            let _ = open.conn.sftp.remove_file(open.tmp.as_str()).await;
        }
        Ok(())
    }
}

impl Drop for SftpWriter {
    /// A write dropped before it ended (a cancelled command) removes its temporary file when
    /// it can.
    fn drop(&mut self) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        drop(open.file.take());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = open.conn.sftp.remove_file(open.tmp.as_str()).await;
            });
        }
    }
}

/// Lists a folder recursively (the hierarchy lister above it keeps one level when asked).
pub(super) struct SftpLister {
    service: SftpService,
    /// The listed folder, relative to the root, ending with `/` (or empty for the root).
    dir: String,
    entries: Option<VecDeque<oio::Entry>>,
}

impl SftpLister {
    async fn walk(&self) -> Result<VecDeque<oio::Entry>> {
        let core = &self.service.core;
        let conn = core.conn().await?;
        let mut out = VecDeque::new();
        let mut pending = vec![self.dir.clone()];
        while let Some(dir) = pending.pop() {
            let entries = match conn.sftp.read_dir(core.abs(&dir)).await {
                Ok(entries) => entries,
                Err(e) if is_status(&e, StatusCode::NoSuchFile) => continue,
                Err(e) => return Err(core.fail(&conn, "cannot list a folder", e).await),
            };
            for entry in entries {
                let name = entry.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                let meta = entry.metadata();
                if meta.is_dir() {
                    let path = format!("{dir}{name}/");
                    out.push_back(oio::Entry::new(&path, to_metadata(&meta)));
                    pending.push(path);
                } else {
                    let path = format!("{dir}{name}");
                    out.push_back(oio::Entry::new(&path, to_metadata(&meta)));
                }
            }
        }
        Ok(out)
    }
}

impl oio::List for SftpLister {
    async fn next(&mut self) -> Result<Option<oio::Entry>> {
        if self.entries.is_none() {
            self.entries = Some(self.walk().await?);
        }
        Ok(self.entries.as_mut().and_then(VecDeque::pop_front))
    }
}

/// Deletes one object; a missing one is not an error.
pub(super) struct SftpDeleter {
    service: SftpService,
}

impl oio::OneShotDelete for SftpDeleter {
    async fn delete_once(&self, path: String, _: OpDelete) -> Result<()> {
        let core = &self.service.core;
        let conn = core.conn().await?;
        let abs = core.abs(&path);
        let result = if path.ends_with('/') {
            conn.sftp.remove_dir(abs).await
        } else {
            conn.sftp.remove_file(abs).await
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => Ok(()),
            Err(e) => Err(core.fail(&conn, "cannot delete the object", e).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(location: &str) -> std::result::Result<SftpLocation, String> {
        SftpLocation::parse(location.strip_prefix("sftp://").unwrap())
    }

    #[test]
    fn a_full_location_is_parsed() {
        let loc =
            parse("sftp://backup@nas.local:2222/srv/airback/?key=/k/id_ed25519&known_hosts=/k/kh")
                .unwrap();
        assert_eq!(
            loc,
            SftpLocation {
                user: "backup".into(),
                host: "nas.local".into(),
                port: 2222,
                root: "/srv/airback".into(),
                key: Some("/k/id_ed25519".into()),
                known_hosts: Some("/k/kh".into()),
            }
        );
        assert_eq!(loc.host_port(), "[nas.local]:2222");
        let loc = parse("sftp://me@[::1]/r").unwrap();
        assert_eq!((loc.host.as_str(), loc.port), ("::1", 22));
        assert_eq!(loc.host_port(), "::1");
    }

    #[test]
    fn a_missing_user_is_an_error_that_shows_the_syntax() {
        let err = parse("sftp://nas.local/srv/airback").unwrap_err();
        assert!(err.contains("needs a user name"), "{err}");
        assert!(err.contains("sftp://backup@nas.local/path"), "{err}");
        let err = parse("sftp://@nas.local/srv").unwrap_err();
        assert!(err.contains("user name before `@` is empty"), "{err}");
    }

    #[test]
    fn a_relative_or_missing_path_is_an_error() {
        let err = parse("sftp://me@nas/~/backups").unwrap_err();
        assert!(err.contains("relative to the home folder"), "{err}");
        assert!(err.contains("/home/me/backups"), "{err}");
        for location in ["sftp://me@nas", "sftp://me@nas/", "sftp://me@nas:22"] {
            let err = parse(location).unwrap_err();
            assert!(err.contains("absolute folder"), "{location}: {err}");
        }
        let err = parse("sftp://me@nas/srv/../etc").unwrap_err();
        assert!(err.contains("`.` or `..`"), "{err}");
    }

    #[test]
    fn a_bad_port_is_an_error() {
        for (location, port) in [
            ("sftp://me@nas:ssh/r", "ssh"),
            ("sftp://me@nas:0/r", "0"),
            ("sftp://me@nas:70000/r", "70000"),
            ("sftp://me@nas:/r", ""),
        ] {
            let err = parse(location).unwrap_err();
            assert!(
                err.contains(&format!("bad port `{port}`")),
                "{location}: {err}"
            );
            assert!(err.contains("1 to 65535"), "{err}");
        }
    }

    #[test]
    fn unknown_options_and_passwords_are_errors() {
        let err = parse("sftp://me@nas/r?password=x").unwrap_err();
        assert!(err.contains("unknown option `password`"), "{err}");
        assert!(
            err.contains("key=FILE") && err.contains("known_hosts=FILE"),
            "{err}"
        );
        let err = parse("sftp://me@nas/r?key=").unwrap_err();
        assert!(err.contains("`key` needs a file"), "{err}");
        let err = parse("sftp://me:hunter2@nas/r").unwrap_err();
        assert!(err.contains("takes no password"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_bad_location_is_an_invalid_location_that_shows_no_password() {
        use crate::backend::{Backend, BackendError, BackendOptions};
        let err = Backend::open("sftp://me:hunter2@nas/r", &BackendOptions::default()).unwrap_err();
        assert!(
            matches!(err, BackendError::InvalidLocation { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("sftp://me:***@nas/r") && !text.contains("hunter2"),
            "{text}"
        );
        let err = Backend::open("sftp://nas/r", &BackendOptions::default()).unwrap_err();
        assert!(err.to_string().contains("needs a user name"), "{err}");
        // A good location opens without connecting.
        let backend = Backend::open("sftp://me@192.0.2.1/r?key=/k", &BackendOptions::default());
        assert_eq!(backend.unwrap().location(), "sftp://me@192.0.2.1/r?key=/k");
    }
}
