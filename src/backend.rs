//! Storage backends: a repository location string turned into an opendal `Operator` with retry,
//! timeout and concurrency layers, behind a small async API that speaks in repository paths.
//!
//! Locations: a local path (the default), `file:///abs/path`, `memory://` (tests),
//! `s3://bucket/prefix`, `gcs://bucket/prefix`, `azblob://container/prefix`,
//! `webdav://host/path`, `webdavs://host/path` and `sftp://user@host[:port]/absolute/path`
//! (see the `sftp` module; Backblaze B2 through its S3-compatible endpoint: `b2://` is
//! refused with a message that says so). Query options are passed
//! to the opendal service (`?endpoint=…&region=…`); for S3, [`S3Defaults`] in the options fill
//! in what the URI leaves out (the command line reads them from the standard `AWS_*`
//! variables; this module reads no environment variable, though opendal's S3 service still
//! looks for credentials where the AWS tools do when none are given). Secrets in a location
//! never reach `Display`, nor any log: S3 keys reach opendal's signer in a type whose `Debug`
//! hides them, a login in an endpoint URL never reaches opendal (WebDAV gets it as
//! `username`/`password`), retried failures are logged sanitized, and every secret seen is
//! registered with `crate::secrets`, whose log writer scrubs what dependencies print.
//!
//! Local folders are read through opendal but written here: each object goes to `tmp/` first
//! (created 0600, whatever the umask), is synced, and renamed into place; folders are created
//! 0700. A leftover in `tmp/` (a write cut short by a full disk or a file-size limit) is found
//! by [`Backend::tmp_leftovers`]. `sftp://` stages its writes in `tmp/` the same way, over the
//! connection, and its leftovers are found and removed alike.
//!
//! A write cancelled before its rename (Ctrl-C) leaves no temporary file: the local write runs
//! to its end on a blocking thread, and [`remove_abandoned_temp_files`] sweeps `tmp/` on exit.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::{Configurator, ErrorKind, Operator, services};
use reqsign_core::{ProvideCredential, ProvideCredentialChain};

use crate::secrets;

#[doc(hidden)]
pub mod faults;
mod sftp;

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The location string could not be understood.
    #[error("invalid repository location `{location}`: {reason}")]
    InvalidLocation {
        /// The location, with secrets removed.
        location: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
    /// The object does not exist.
    #[error("`{path}` does not exist in {location}")]
    NotFound {
        /// Repository path.
        path: String,
        /// Where the repository is.
        location: String,
    },
    /// Any other storage failure, after opendal's retries: what airback was doing, then the
    /// service's message.
    #[error("{}: {source}", doing(op, path, location))]
    Storage {
        /// What was attempted.
        op: &'static str,
        /// Repository path.
        path: String,
        /// Where the repository is.
        location: String,
        /// The service's error, secrets removed.
        #[source]
        source: StorageFailure,
    },
}

/// What a storage operation was doing, as the start of an error message.
fn doing(op: &str, path: &str, location: &str) -> String {
    match op {
        "open" => format!("cannot open the storage at {location}"),
        "read" => format!("cannot read `{path}` from {location}"),
        "write" => format!("cannot write `{path}` to {location}"),
        "stat" => format!("cannot look up `{path}` in {location}"),
        "list" => format!("cannot list `{path}` in {location}"),
        "delete" => format!("cannot delete `{path}` from {location}"),
        "presign" => format!("cannot make a signed URL for `{path}` in {location}"),
        other => format!("storage operation `{other}` on `{path}` in {location} failed"),
    }
}

/// Tuning for every backend.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Requests in flight at once.
    pub connections: usize,
    /// Retries of a failed request (jittered exponential backoff).
    pub retries: usize,
    /// Time limit of one request, and of each step of a read or write without I/O progress.
    pub timeout: Duration,
    /// Create a local directory that does not exist yet (only `init` does; other commands
    /// must not leave empty folders behind a mistyped path).
    pub create: bool,
    /// Settings of `s3://` locations that their query string leaves out.
    pub s3: S3Defaults,
    /// Tests only: storage faults injected from a seeded plan, below the timeout and retry
    /// layers. `None` (the default) everywhere else.
    #[doc(hidden)]
    pub faults: Option<faults::FaultPlan>,
}

/// Settings of an `s3://` location used where its query string does not give them (the
/// command line fills them from `AWS_ENDPOINT_URL`, `AWS_REGION` or `AWS_DEFAULT_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`). Empty values count
/// as unset. `Debug` shows neither the secret key nor the session token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Defaults {
    /// The service's URL, for S3-compatible stores (`endpoint`).
    pub endpoint: Option<String>,
    /// The region (`region`); `us-east-1` when neither the location nor this gives one.
    pub region: Option<String>,
    /// The access key id (`access_key_id`).
    pub access_key_id: Option<String>,
    /// The secret access key (`secret_access_key`).
    pub secret_access_key: Option<String>,
    /// A temporary session token (`session_token`).
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Defaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("S3Defaults")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &secret(&self.secret_access_key))
            .field("session_token", &secret(&self.session_token))
            .finish()
    }
}

impl S3Defaults {
    /// Each option name with its value, in the order they are applied.
    fn options(&self) -> [(&'static str, &Option<String>); 5] {
        [
            ("endpoint", &self.endpoint),
            ("region", &self.region),
            ("access_key_id", &self.access_key_id),
            ("secret_access_key", &self.secret_access_key),
            ("session_token", &self.session_token),
        ]
    }
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            connections: 8,
            retries: 5,
            timeout: Duration::from_secs(120),
            create: false,
            s3: S3Defaults::default(),
            faults: None,
        }
    }
}

/// A repository's storage. Cheap to clone.
#[derive(Clone)]
pub struct Backend {
    op: Operator,
    display: String,
    /// The folder of a local repository: its writes bypass opendal (see [`write_local`]).
    local: Option<PathBuf>,
    /// Requests made so far, by every clone.
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    list: AtomicU64,
    get: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    delete: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

/// Storage requests made through a [`Backend`] (and its clones), by kind, as counted by
/// airback: one per call (a listing that the service pages counts once; a streamed upload
/// counts once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestStats {
    /// Listings.
    #[serde(rename = "LIST")]
    pub list: u64,
    /// Reads, whole or ranged.
    #[serde(rename = "GET")]
    pub get: u64,
    /// Size lookups.
    #[serde(rename = "HEAD")]
    pub head: u64,
    /// Writes.
    #[serde(rename = "PUT")]
    pub put: u64,
    /// Deletions.
    #[serde(rename = "DELETE")]
    pub delete: u64,
    /// Bytes downloaded.
    pub bytes_read: u64,
    /// Bytes uploaded.
    pub bytes_written: u64,
}

impl RequestStats {
    /// The requests made after `earlier` was taken.
    pub fn since(&self, earlier: &RequestStats) -> RequestStats {
        RequestStats {
            list: self.list - earlier.list,
            get: self.get - earlier.get,
            head: self.head - earlier.head,
            put: self.put - earlier.put,
            delete: self.delete - earlier.delete,
            bytes_read: self.bytes_read - earlier.bytes_read,
            bytes_written: self.bytes_written - earlier.bytes_written,
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("location", &self.display)
            .finish()
    }
}

/// One object found by [`Backend::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Path relative to the listed directory.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// Query options shown as they are; every other option's value is replaced by `***`
/// (secrets have many names: keys, tokens, SAS signatures, customer encryption keys, ...).
const SHOWN_OPTIONS: &[&str] = &[
    "endpoint",
    "region",
    "root",
    "bucket",
    "container",
    "account_name",
    "access_key_id",
    "enable_virtual_host_style",
    "default_storage_class",
    "scope",
    "skip_signature",
];

/// The location with the values of secret query options replaced by `***` and any password
/// in it (`scheme://user:password@host`) removed.
pub fn redact_location(location: &str) -> String {
    let (head, query) = match location.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (location, None),
    };
    let head = strip_password(head);
    let Some(query) = query else {
        return head;
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if SHOWN_OPTIONS.contains(&k) => format!("{k}={}", strip_password(v)),
            // An sftp location's options are file paths, never secrets.
            Some((k, v)) if head.starts_with("sftp://") => format!("{k}={v}"),
            Some((k, _)) => format!("{k}=***"),
            None => kv.to_string(),
        })
        .collect();
    format!("{head}?{}", parts.join("&"))
}

fn strip_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        // A user name without a password (`sftp://user@host`) is shown as it is.
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        _ => url.to_string(),
    }
}

/// Removes the query strings of URLs inside a storage service's error text (signed requests
/// carry credentials and signatures there).
fn sanitize_error_text(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains("://") {
                let word = strip_password(word);
                match word.split_once('?') {
                    Some((url, _)) => format!("{url}?***"),
                    None => word,
                }
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A storage service's error, with secrets removed from its text.
#[derive(Debug)]
pub struct StorageFailure {
    kind: ErrorKind,
    text: String,
}

impl StorageFailure {
    fn new(error: &opendal::Error) -> Self {
        StorageFailure {
            kind: error.kind(),
            text: sanitize_error_text(&error.to_string()),
        }
    }

    /// opendal's classification of the failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for StorageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for StorageFailure {}

impl Backend {
    /// Opens the storage at `location`. Nothing is read or written yet.
    pub fn open(location: &str, options: &BackendOptions) -> Result<Backend, BackendError> {
        let display = redact_location(location);
        let invalid = |reason: String| BackendError::InvalidLocation {
            location: display.clone(),
            reason,
        };
        let storage = |source: opendal::Error| BackendError::Storage {
            op: "open",
            path: String::new(),
            location: display.clone(),
            source: StorageFailure::new(&source),
        };
        let mut local_root = None;
        let mut local = |path: &str| {
            let root = std::path::absolute(path).unwrap_or_else(|_| path.into());
            if options.create {
                create_private_dirs(&root).map_err(|e| storage(io_failure(e)))?;
            } else if !root.is_dir() {
                return Err(BackendError::NotFound {
                    path: String::new(),
                    location: display.clone(),
                });
            }
            let op = Operator::new(services::Fs::default().root(&root.to_string_lossy()))
                .map_err(storage)?;
            local_root = Some(root);
            Ok(op)
        };
        let op = match location.split_once("://") {
            None => local(location)?,
            Some(("file", path)) => local(path)?,
            Some(("memory", _)) => Operator::new(services::Memory::default()).map_err(storage)?,
            Some(("sftp", rest)) => {
                let location = sftp::SftpLocation::parse(rest).map_err(invalid)?;
                sftp::operator(location, options.timeout).map_err(storage)?
            }
            Some((scheme, rest)) => {
                let (authority_and_path, query) = rest.split_once('?').unwrap_or((rest, ""));
                let (authority, path) = authority_and_path
                    .split_once('/')
                    .unwrap_or((authority_and_path, ""));
                if authority.is_empty() {
                    return Err(invalid(format!(
                        "`{scheme}://` needs a bucket or host, as in `{scheme}://name/prefix`"
                    )));
                }
                let mut opts: BTreeMap<String, String> = query
                    .split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                remember_secrets(authority, &opts);
                opts.insert("root".into(), format!("/{path}"));
                let service = match scheme {
                    "s3" => {
                        opts.insert("bucket".into(), authority.into());
                        for (key, value) in options.s3.options() {
                            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                                if !SHOWN_OPTIONS.contains(&key) {
                                    secrets::remember(value);
                                }
                                opts.entry(key.into()).or_insert_with(|| value.into());
                            }
                        }
                        opts.entry("region".into()).or_insert("us-east-1".into());
                        "s3"
                    }
                    "gcs" => {
                        opts.insert("bucket".into(), authority.into());
                        "gcs"
                    }
                    "azblob" => {
                        opts.insert("container".into(), authority.into());
                        "azblob"
                    }
                    "b2" => {
                        return Err(invalid(
                            "b2:// is not supported; use B2's S3-compatible endpoint: \
                             s3://bucket/prefix?endpoint=https://s3.REGION.backblazeb2.com&region=REGION"
                                .into(),
                        ));
                    }
                    "webdav" | "webdavs" => {
                        let http = if scheme == "webdavs" { "https" } else { "http" };
                        opts.insert("endpoint".into(), format!("{http}://{authority}"));
                        "webdav"
                    }
                    other => {
                        return Err(invalid(format!(
                            "unknown scheme `{other}`; use a local path, s3://, gcs://, \
                             azblob://, webdav://, webdavs://, sftp:// or memory://"
                        )));
                    }
                };
                move_endpoint_login(service, &display, &mut opts);
                match S3Keys::take(service, &mut opts) {
                    Some(keys) => {
                        let builder = services::S3Config::from_iter(opts)
                            .map_err(storage)?
                            .into_builder()
                            .credential_provider_chain(ProvideCredentialChain::new().push(keys));
                        Operator::new(builder).map_err(storage)?
                    }
                    None => Operator::via_iter(service, opts).map_err(storage)?,
                }
            }
        };
        // Faults sit right above the service, so that timeouts and retries see them as they
        // see a real service's failures.
        let op = match &options.faults {
            Some(plan) => op.layer(faults::FaultLayer(plan.clone())),
            None => op,
        };
        let op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(options.timeout)
                    .with_io_timeout(options.timeout),
            )
            .layer(
                RetryLayer::new()
                    .with_jitter()
                    .with_max_times(options.retries)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .with_notify(log_retry),
            )
            .layer(ConcurrentLimitLayer::new(options.connections.max(1)));
        Ok(Backend {
            op,
            display,
            local: local_root,
            counters: Arc::default(),
        })
    }

    /// The location, safe to print.
    pub fn location(&self) -> &str {
        &self.display
    }

    fn err(&self, op: &'static str, path: &str, source: opendal::Error) -> BackendError {
        if source.kind() == ErrorKind::NotFound {
            BackendError::NotFound {
                path: path.to_string(),
                location: self.display.clone(),
            }
        } else {
            BackendError::Storage {
                op,
                path: path.to_string(),
                location: self.display.clone(),
                source: StorageFailure::new(&source),
            }
        }
    }

    /// The requests made so far through this backend and its clones.
    pub fn requests(&self) -> RequestStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestStats {
            list: load(&c.list),
            get: load(&c.get),
            head: load(&c.head),
            put: load(&c.put),
            delete: load(&c.delete),
            bytes_read: load(&c.bytes_read),
            bytes_written: load(&c.bytes_written),
        }
    }

    fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Writes a whole object in one request.
    pub async fn write(&self, path: &str, bytes: Vec<u8>) -> Result<(), BackendError> {
        Self::count(&self.counters.put, 1);
        Self::count(&self.counters.bytes_written, bytes.len() as u64);
        if let Some(root) = &self.local {
            let (root, rel) = (root.clone(), path.to_string());
            return tokio::task::spawn_blocking(move || write_local(&root, &rel, &bytes))
                .await
                .map_err(|e| io_failure(std::io::Error::other(e)))
                .and_then(|r| r.map_err(io_failure))
                .map_err(|e| self.err("write", path, e));
        }
        let mut write = self.op.write_with(path, bytes);
        if let Some(content_type) = self.content_type() {
            write = write.content_type(content_type);
        }
        write
            .await
            .map(|_| ())
            .map_err(|e| self.err("write", path, e))
    }

    /// The content type objects are written with, where the service needs one: GCS stores an
    /// object uploaded without one with none, and servers of its API (the emulator the tests
    /// run, tests/it/support/servers.rs) then describe it with a `null` content type that
    /// opendal cannot read. Google's own service would say `application/octet-stream`.
    fn content_type(&self) -> Option<&'static str> {
        (self.op.info().scheme() == "gcs").then_some("application/octet-stream")
    }

    /// Reads a whole object.
    pub async fn read(&self, path: &str) -> Result<Vec<u8>, BackendError> {
        Self::count(&self.counters.get, 1);
        let bytes = self
            .op
            .read(path)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.err("read", path, e))?;
        Self::count(&self.counters.bytes_read, bytes.len() as u64);
        Ok(bytes)
    }

    /// Reads the bytes `range` of an object.
    pub async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>, BackendError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        Self::count(&self.counters.get, 1);
        let bytes = self
            .op
            .read_with(path)
            .range(range)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.err("read", path, e))?;
        Self::count(&self.counters.bytes_read, bytes.len() as u64);
        Ok(bytes)
    }

    /// The size of an object, or `None` when it does not exist.
    pub async fn size(&self, path: &str) -> Result<Option<u64>, BackendError> {
        Self::count(&self.counters.head, 1);
        match self.op.stat(path).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("stat", path, e)),
        }
    }

    /// Every object below the directory `dir` (which ends with `/`), recursively, with paths
    /// relative to `dir`. Directories themselves are not listed.
    pub async fn list(&self, dir: &str) -> Result<Vec<ListEntry>, BackendError> {
        Self::count(&self.counters.list, 1);
        let entries = match self.op.list_with(dir).recursive(true).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.path();
            if path.ends_with('/') {
                continue;
            }
            let name = path.strip_prefix(dir).unwrap_or(path).to_string();
            let size = if entry.metadata().content_length() > 0 || !entry.metadata().is_file() {
                entry.metadata().content_length()
            } else {
                self.size(path).await?.unwrap_or(0)
            };
            out.push(ListEntry { name, size });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Writes an object from a stream of chunks, without holding it whole in memory (but on
    /// services that take an object in one request only, WebDAV, which get it gathered).
    pub async fn write_stream<E: std::fmt::Display>(
        &self,
        path: &str,
        mut chunks: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    ) -> Result<(), BackendError> {
        self.write_chunks(path, &mut chunks).await
    }

    async fn write_chunks<E: std::fmt::Display>(
        &self,
        path: &str,
        chunks: &mut (impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin),
    ) -> Result<(), BackendError> {
        use futures::StreamExt;
        Self::count(&self.counters.put, 1);
        if let Some(root) = &self.local {
            let mut file = LocalFile::create(root, path)
                .await
                .map_err(|e| self.err("write", path, io_failure(e)))?;
            while let Some(chunk) = chunks.next().await {
                let written = match chunk {
                    Ok(chunk) => {
                        Self::count(&self.counters.bytes_written, chunk.len() as u64);
                        file.write(&chunk).await.map_err(io_failure)
                    }
                    Err(e) => Err(opendal::Error::new(ErrorKind::Unexpected, e.to_string())),
                };
                if let Err(e) = written {
                    file.abort().await;
                    return Err(self.err("write", path, e));
                }
            }
            return file
                .commit()
                .await
                .map_err(|e| self.err("write", path, io_failure(e)));
        }
        if !self.op.info().capability().write_can_multi {
            // The service takes an object in one request (WebDAV's PUT): gather it first.
            let mut whole = Vec::new();
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(chunk) => whole.extend_from_slice(&chunk),
                    Err(e) => {
                        return Err(self.err(
                            "write",
                            path,
                            opendal::Error::new(ErrorKind::Unexpected, e.to_string()),
                        ));
                    }
                }
            }
            Self::count(&self.counters.bytes_written, whole.len() as u64);
            let mut write = self.op.write_with(path, whole);
            if let Some(content_type) = self.content_type() {
                write = write.content_type(content_type);
            }
            return write
                .await
                .map(|_| ())
                .map_err(|e| self.err("write", path, e));
        }
        let mut writer = self.op.writer_with(path);
        if let Some(content_type) = self.content_type() {
            writer = writer.content_type(content_type);
        }
        let mut writer = writer.await.map_err(|e| self.err("write", path, e))?;
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(self.err(
                        "write",
                        path,
                        opendal::Error::new(ErrorKind::Unexpected, e.to_string()),
                    ));
                }
            };
            Self::count(&self.counters.bytes_written, chunk.len() as u64);
            writer
                .write(chunk)
                .await
                .map_err(|e| self.err("write", path, e))?;
        }
        writer
            .close()
            .await
            .map(|_| ())
            .map_err(|e| self.err("write", path, e))
    }

    /// A URL that lets anyone read `path` for `ttl` without credentials (S3-compatible stores
    /// and others that sign URLs). The URL is a credential of its own: never log or store it.
    pub async fn presign_read(
        &self,
        path: &str,
        ttl: std::time::Duration,
    ) -> Result<String, BackendError> {
        let request = self
            .op
            .presign_read(path, ttl)
            .await
            .map_err(|e| self.err("presign", path, e))?;
        Ok(request.uri().to_string())
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), BackendError> {
        Self::count(&self.counters.delete, 1);
        self.op
            .delete(path)
            .await
            .map_err(|e| self.err("delete", path, e))
    }

    /// Files in a local or `sftp://` repository's `tmp/` last written more than `older_than`
    /// ago: writes that were interrupted (disk full, a file-size limit, a killed process, a
    /// dropped connection). Younger ones may be another process's writes in progress. Other
    /// storages have no `tmp/`: empty.
    pub async fn tmp_leftovers(
        &self,
        older_than: Duration,
    ) -> Result<Vec<TmpLeftover>, BackendError> {
        let Some(root) = &self.local else {
            return self.remote_tmp_leftovers(older_than).await;
        };
        let dir = root.join(TMP_DIR);
        tokio::task::spawn_blocking(move || leftovers_in(&dir, older_than))
            .await
            .map_err(|e| io_failure(std::io::Error::other(e)))
            .and_then(|r| r.map_err(io_failure))
            .map_err(|e| self.err("list", "tmp/", e))
    }

    /// Removes what [`Backend::tmp_leftovers`] finds; returns what it removed. Writing commands
    /// call it when they start.
    pub async fn remove_tmp_leftovers(
        &self,
        older_than: Duration,
    ) -> Result<Vec<TmpLeftover>, BackendError> {
        let leftovers = self.tmp_leftovers(older_than).await?;
        if self.local.is_none() {
            for leftover in &leftovers {
                self.delete(&format!("{TMP_DIR}/{}", leftover.name)).await?;
            }
        }
        if let Some(root) = &self.local {
            for leftover in &leftovers {
                let path = root.join(TMP_DIR).join(&leftover.name);
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    let rel = format!("{TMP_DIR}/{}", leftover.name);
                    return Err(self.err("delete", &rel, io_failure(e)));
                }
            }
        }
        Ok(leftovers)
    }
}

impl Backend {
    /// [`Backend::tmp_leftovers`] of a storage other than a local folder: only `sftp://`
    /// stages its writes in `tmp/` (see the `sftp` module); the others have none.
    async fn remote_tmp_leftovers(
        &self,
        older_than: Duration,
    ) -> Result<Vec<TmpLeftover>, BackendError> {
        if self.op.info().scheme() != sftp::SCHEME {
            return Ok(Vec::new());
        }
        let dir = format!("{TMP_DIR}/");
        Self::count(&self.counters.list, 1);
        let entries = match self.op.list(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", &dir, e)),
        };
        let now = SystemTime::now();
        let mut out = Vec::new();
        for entry in entries {
            let meta = entry.metadata();
            if !meta.is_file() {
                continue;
            }
            let age = meta
                .last_modified()
                .and_then(|t| now.duration_since(SystemTime::from(t)).ok())
                .unwrap_or_default();
            if age > older_than {
                out.push(TmpLeftover {
                    name: entry.name().to_string(),
                    size: meta.content_length(),
                    age,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Where local writes (and those of `sftp://`) are staged before they are renamed into place.
const TMP_DIR: &str = "tmp";

/// A file in `tmp/` not written for this long is an interrupted write's leftover, not a write
/// in progress.
pub const TMP_LEFTOVER_AGE: Duration = Duration::from_secs(60 * 60);

/// A file an interrupted write left in a local repository's `tmp/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpLeftover {
    /// Its name in `tmp/`.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// How long ago it was last written.
    pub age: Duration,
}

impl fmt::Display for TmpLeftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minutes = Duration::from_secs(self.age.as_secs() / 60 * 60);
        write!(
            f,
            "{TMP_DIR}/{} ({} bytes, last written {} ago)",
            self.name,
            self.size,
            humantime::format_duration(minutes)
        )
    }
}

fn leftovers_in(dir: &Path, older_than: Duration) -> std::io::Result<Vec<TmpLeftover>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let meta = match entry.metadata() {
            Ok(meta) if meta.is_file() => meta,
            _ => continue,
        };
        let age = meta
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        if age > older_than {
            out.push(TmpLeftover {
                name: entry.file_name().to_string_lossy().into_owned(),
                size: meta.len(),
                age,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Creates `dir` and its missing parents, each readable by the owner only (0700) whatever the
/// umask. Folders that exist keep their mode.
fn create_private_dirs(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens a new file in `tmp/` for the object `path`, readable by the owner only (0600) whatever
/// the umask, and creates the folders of `tmp/` and of `path` that are missing (0700).
fn create_tmp_file(root: &Path, path: &str) -> std::io::Result<(std::fs::File, PathBuf, PathBuf)> {
    let target = root.join(path);
    let tmp_dir = root.join(TMP_DIR);
    create_private_dirs(&tmp_dir)?;
    if let Some(parent) = target.parent() {
        create_private_dirs(parent)?;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let tmp = tmp_dir.join(format!("{name}.{:016x}", fastrand::u64(..)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    Ok((options.open(&tmp)?, tmp, target))
}

/// Writes an object of a local repository: into `tmp/` (0600), synced, then renamed into place,
/// so a crash never leaves a half-written object under its final name. opendal's own atomic
/// write does the same but creates files and folders with the umask's modes (0644 and 0755),
/// which would let every user of the machine read the backups.
fn write_local(root: &Path, path: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let (mut file, tmp, target) = create_tmp_file(root, path)?;
    let result = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &target));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A streamed write of [`write_local`]. Dropped before it is committed or aborted (a cancelled
/// command), it removes its temporary file and remembers it for
/// [`remove_abandoned_temp_files`].
struct LocalFile {
    file: Option<tokio::fs::File>,
    tmp: PathBuf,
    target: PathBuf,
}

impl LocalFile {
    async fn create(root: &Path, path: &str) -> std::io::Result<LocalFile> {
        let (root, path) = (root.to_path_buf(), path.to_string());
        let (file, tmp, target) =
            tokio::task::spawn_blocking(move || create_tmp_file(&root, &path))
                .await
                .map_err(std::io::Error::other)??;
        Ok(LocalFile {
            file: Some(tokio::fs::File::from_std(file)),
            tmp,
            target,
        })
    }

    fn file(&mut self) -> std::io::Result<&mut tokio::fs::File> {
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the write already ended"))
    }

    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.file()?.write_all(chunk).await
    }

    async fn commit(mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let result = async {
            let file = self.file()?;
            file.flush().await?;
            file.sync_all().await?;
            tokio::fs::rename(&self.tmp, &self.target).await
        }
        .await;
        self.file = None;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&self.tmp).await;
        }
        result
    }

    async fn abort(mut self) {
        self.file = None;
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }
}

impl Drop for LocalFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
            ABANDONED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.tmp.clone());
        }
    }
}

/// An I/O error of a local write, as opendal would report it.
fn io_failure(e: std::io::Error) -> opendal::Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Unexpected,
    };
    opendal::Error::new(kind, e.to_string()).set_source(e)
}

/// The temporary files of cancelled local writes.
static ABANDONED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes the temporary files that cancelled writes to local folders left in `tmp/`. Call it
/// once no blocking thread of the runtime that ran them is left (after its shutdown): one may
/// have created a file after the write was dropped.
pub fn remove_abandoned_temp_files() {
    let abandoned = std::mem::take(&mut *ABANDONED.lock().unwrap_or_else(|e| e.into_inner()));
    for tmp in abandoned {
        let _ = std::fs::remove_file(tmp);
    }
}

/// Logs a storage request about to be retried: the same line for every retry of the same
/// kind of failure (so that the log prints it once, with a count), the error's text without
/// secrets at debug level, and never its backtrace (opendal's own log prints the error with
/// `Debug`, which holds one when `RUST_BACKTRACE` is set).
fn log_retry(event: opendal::layers::RetryEvent<'_>) {
    tracing::warn!(
        "a storage request ({}) failed ({}); retrying",
        event.op,
        event.err.kind()
    );
    tracing::debug!(
        "retry {} of {} in {:.1} s after: {}",
        event.attempt,
        event.op,
        event.retry_after.as_secs_f64(),
        sanitize_error_text(&event.err.to_string())
    );
}

/// Tells [`secrets`] about every secret in a location: the values of options not in
/// [`SHOWN_OPTIONS`] and passwords in the authority or in URL-valued options.
fn remember_secrets(authority: &str, opts: &BTreeMap<String, String>) {
    let password = |url: &str| {
        let (_, login) = split_login(url);
        if let Some((_, Some(password))) = login {
            secrets::remember(&password);
        }
    };
    password(&format!("x://{authority}"));
    for (key, value) in opts {
        if SHOWN_OPTIONS.contains(&key.as_str()) {
            password(value);
        } else {
            secrets::remember(value);
        }
    }
}

/// Splits `scheme://user:password@host/...` into the URL without its login and the login.
fn split_login(url: &str) -> (String, Option<(String, Option<String>)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password.to_string())),
                None => (userinfo, None),
            };
            (
                format!("{scheme}://{host}{}", &rest[authority_end..]),
                Some((user.to_string(), password)),
            )
        }
        None => (url.to_string(), None),
    }
}

/// A login in the endpoint (`http://user:password@host`) never reaches the storage library,
/// which logs its endpoint and puts it in error messages. WebDAV gets it as its `username` and
/// `password` options; the other services sign requests with their own keys, so it is dropped
/// with a warning.
fn move_endpoint_login(service: &str, location: &str, opts: &mut BTreeMap<String, String>) {
    let Some(endpoint) = opts.get("endpoint") else {
        return;
    };
    let (bare, Some((user, password))) = split_login(endpoint) else {
        return;
    };
    opts.insert("endpoint".into(), bare);
    if service == "webdav" {
        opts.entry("username".into()).or_insert(user);
        if let Some(password) = password {
            opts.entry("password".into()).or_insert(password);
        }
    } else {
        tracing::warn!(
            "the user name and password in the endpoint of {location} are not used ({service} \
             signs requests with its access keys); remove them from the location"
        );
    }
}

/// S3 keys for opendal's request signer. The signer logs its credential providers with `Debug`
/// at debug level, and opendal's own provider shows the keys there: this one shows the access
/// key id only.
#[derive(Clone)]
struct S3Keys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl fmt::Debug for S3Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Keys")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl S3Keys {
    /// Takes the keys out of an S3 service's options. Not with `role_arn`: opendal then signs
    /// its STS requests with the keys, through its own provider.
    fn take(service: &str, opts: &mut BTreeMap<String, String>) -> Option<S3Keys> {
        if service != "s3"
            || opts.contains_key("role_arn")
            || !opts.contains_key("access_key_id")
            || !opts.contains_key("secret_access_key")
        {
            return None;
        }
        Some(S3Keys {
            access_key_id: opts.remove("access_key_id")?,
            secret_access_key: opts.remove("secret_access_key")?,
            session_token: opts.remove("session_token"),
        })
    }
}

impl ProvideCredential for S3Keys {
    type Credential = reqsign_aws_v4::Credential;

    async fn provide_credential(
        &self,
        _: &reqsign_core::Context,
    ) -> reqsign_core::Result<Option<Self::Credential>> {
        Ok(Some(reqsign_aws_v4::Credential {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: self.session_token.clone(),
            expires_in: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let loc = "s3://b/p?endpoint=http://x&secret_access_key=SECRET&access_key_id=AK";
        let shown = redact_location(loc);
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("access_key_id=AK"));
    }

    #[test]
    fn unknown_options_passwords_and_signed_urls_are_redacted() {
        let shown = redact_location(
            "azblob://c/p?account_name=acct&sas_token=sv%3Dx%26sig%3DSECRET&encryption_key=K1",
        );
        assert!(
            !shown.contains("SECRET") && !shown.contains("K1"),
            "{shown}"
        );
        assert!(shown.contains("account_name=acct"), "{shown}");
        let shown = redact_location("webdavs://alice:hunter2@dav.example.com/backups");
        assert_eq!(shown, "webdavs://alice:***@dav.example.com/backups");
        let shown = redact_location("sftp://alice:hunter2@nas/srv?key=/k/id&known_hosts=/k/kh");
        assert_eq!(
            shown,
            "sftp://alice:***@nas/srv?key=/k/id&known_hosts=/k/kh"
        );
        let shown = redact_location("sftp://alice@nas:2222/srv?key=/k/id");
        assert_eq!(shown, "sftp://alice@nas:2222/srv?key=/k/id");
        let text = sanitize_error_text(
            "request to https://host/b/k?X-Amz-Signature=abc&sig=SECRET failed",
        );
        assert_eq!(text, "request to https://host/b/k?*** failed");
    }

    #[test]
    fn endpoint_logins_are_redacted_and_kept_from_the_storage_library() {
        let shown = redact_location("s3://b/p?endpoint=http://user:PASS1@127.0.0.1:9000&region=x");
        assert_eq!(
            shown,
            "s3://b/p?endpoint=http://user:***@127.0.0.1:9000&region=x"
        );

        let mut opts = BTreeMap::from([(
            "endpoint".to_string(),
            "http://user:PASS1@127.0.0.1:9000".to_string(),
        )]);
        move_endpoint_login("s3", "s3://b/p", &mut opts);
        assert_eq!(opts["endpoint"], "http://127.0.0.1:9000");
        assert_eq!(opts.len(), 1, "{opts:?}");

        let mut opts = BTreeMap::from([(
            "endpoint".to_string(),
            "https://alice:hunter2@dav.example.com".to_string(),
        )]);
        move_endpoint_login("webdav", "webdavs://dav.example.com", &mut opts);
        assert_eq!(opts["endpoint"], "https://dav.example.com");
        assert_eq!(opts["username"], "alice");
        assert_eq!(opts["password"], "hunter2");
    }

    #[test]
    fn s3_keys_reach_the_signer_in_a_type_whose_debug_hides_them() {
        let mut opts = BTreeMap::from([
            ("access_key_id".to_string(), "AKID".to_string()),
            ("secret_access_key".to_string(), "SECRETKEY1".to_string()),
            ("session_token".to_string(), "SESSIONTOKEN1".to_string()),
        ]);
        let keys = S3Keys::take("s3", &mut opts).unwrap();
        assert!(opts.is_empty(), "the keys left the options: {opts:?}");
        let debug = format!("{keys:?}");
        assert!(
            debug.contains("AKID")
                && !debug.contains("SECRETKEY1")
                && !debug.contains("SESSIONTOKEN1"),
            "{debug}"
        );
        let backend = Backend::open(
            "s3://b/p?endpoint=http://u:PASS2@127.0.0.1:1&access_key_id=A&secret_access_key=SECRETKEY2",
            &BackendOptions::default(),
        )
        .unwrap();
        let debug = format!("{backend:?} {}", backend.location());
        assert!(
            !debug.contains("SECRETKEY2") && !debug.contains("PASS2"),
            "{debug}"
        );
    }

    #[test]
    fn b2_is_refused_with_the_s3_compatible_location_to_use() {
        let err = Backend::open("b2://bucket/prefix", &BackendOptions::default()).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, BackendError::InvalidLocation { .. })
                && text.contains("b2:// is not supported")
                && text.contains(
                    "s3://bucket/prefix?endpoint=https://s3.REGION.backblazeb2.com&region=REGION"
                ),
            "{text}"
        );
    }

    #[test]
    fn unknown_scheme_says_what_is_supported() {
        let err = Backend::open("ftp2://x/y", &BackendOptions::default()).unwrap_err();
        assert!(err.to_string().contains("unknown scheme `ftp2`"), "{err}");
    }
}
