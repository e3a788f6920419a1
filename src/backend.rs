//! Storage backends: a repository location string turned into an opendal `Operator` with retry,
//! timeout and concurrency layers, behind a small async API that speaks in repository paths.
//!
//! Locations: a local path (the default), `file:///abs/path`, `memory://` (tests),
//! `s3://bucket/prefix`, `gcs://bucket/prefix`, `azblob://container/prefix`,
//! `b2://bucket/prefix`, `webdav://host/path` and `webdavs://host/path`. Query options are passed
//! to the opendal service (`?endpoint=…&region=…`); for S3 the standard `AWS_*` variables fill
//! in what the URI leaves out. Secrets in a location never reach `Display`.
//!
//! A local folder's objects are written to `tmp/` and renamed into place. A write cancelled
//! before the rename (Ctrl-C) removes its temporary file when dropped; one that a blocking
//! thread creates just after that is removed by [`remove_abandoned_temp_files`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator, services};

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
    /// Time limit of one request without I/O progress.
    pub timeout: Duration,
    /// Create a local directory that does not exist yet (only `init` does; other commands
    /// must not leave empty folders behind a mistyped path).
    pub create: bool,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            connections: 8,
            retries: 5,
            timeout: Duration::from_secs(120),
            create: false,
        }
    }
}

/// A repository's storage. Cheap to clone.
#[derive(Clone)]
pub struct Backend {
    op: Operator,
    display: String,
    /// A local folder's `tmp/`, where opendal writes objects before renaming them.
    temp_dir: Option<Arc<PathBuf>>,
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
            Some((k, v)) if SHOWN_OPTIONS.contains(&k) => format!("{k}={v}"),
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
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        None => url.to_string(),
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
        let mut temp_dir = None;
        let mut local = |path: &str| {
            if !options.create && !std::path::Path::new(path).is_dir() {
                return Err(BackendError::NotFound {
                    path: String::new(),
                    location: display.clone(),
                });
            }
            let root = std::path::absolute(path).unwrap_or_else(|_| path.into());
            temp_dir = Some(Arc::new(root.join("tmp")));
            Self::fs_operator(path).map_err(storage)
        };
        let op = match location.split_once("://") {
            None => local(location)?,
            Some(("file", path)) => local(path)?,
            Some(("memory", _)) => Operator::new(services::Memory::default()).map_err(storage)?,
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
                opts.insert("root".into(), format!("/{path}"));
                let service = match scheme {
                    "s3" => {
                        opts.insert("bucket".into(), authority.into());
                        fill_from_env(
                            &mut opts,
                            &[
                                ("endpoint", "AWS_ENDPOINT_URL"),
                                ("region", "AWS_REGION"),
                                ("region", "AWS_DEFAULT_REGION"),
                                ("access_key_id", "AWS_ACCESS_KEY_ID"),
                                ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                                ("session_token", "AWS_SESSION_TOKEN"),
                            ],
                        );
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
                        opts.insert("bucket".into(), authority.into());
                        "b2"
                    }
                    "webdav" | "webdavs" => {
                        let http = if scheme == "webdavs" { "https" } else { "http" };
                        opts.insert("endpoint".into(), format!("{http}://{authority}"));
                        "webdav"
                    }
                    other => {
                        return Err(invalid(format!(
                            "unknown scheme `{other}`; use a local path, s3://, gcs://, \
                             azblob://, b2://, webdav://, webdavs:// or memory://"
                        )));
                    }
                };
                Operator::via_iter(service, opts).map_err(storage)?
            }
        };
        let op = op
            .layer(TimeoutLayer::new().with_io_timeout(options.timeout))
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
            temp_dir,
        })
    }

    fn fs_operator(path: &str) -> opendal::Result<Operator> {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.into());
        let root = abs.to_string_lossy().to_string();
        // Writes go to a temporary file first and are renamed into place, so a crash never
        // leaves a half-written object under its final name.
        let tmp = abs.join("tmp").to_string_lossy().to_string();
        Operator::new(services::Fs::default().root(&root).atomic_write_dir(&tmp))
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

    /// Writes a whole object in one request.
    pub async fn write(&self, path: &str, bytes: Vec<u8>) -> Result<(), BackendError> {
        let pending = self.pending_write(path);
        let written = self.op.write(path, bytes).await;
        pending.settled();
        written.map(|_| ()).map_err(|e| self.err("write", path, e))
    }

    /// A guard for a write to `path` that removes its temporary file if the write is dropped
    /// (cancelled) before it settles.
    fn pending_write(&self, path: &str) -> PendingWrite {
        PendingWrite {
            temp: self.temp_dir.as_ref().map(|dir| {
                let name = path.rsplit('/').next().unwrap_or(path);
                (dir.clone(), name.to_owned())
            }),
        }
    }

    /// Reads a whole object.
    pub async fn read(&self, path: &str) -> Result<Vec<u8>, BackendError> {
        self.op
            .read(path)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.err("read", path, e))
    }

    /// Reads the bytes `range` of an object.
    pub async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>, BackendError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        self.op
            .read_with(path)
            .range(range)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.err("read", path, e))
    }

    /// The size of an object, or `None` when it does not exist.
    pub async fn size(&self, path: &str) -> Result<Option<u64>, BackendError> {
        match self.op.stat(path).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("stat", path, e)),
        }
    }

    /// Every object below the directory `dir` (which ends with `/`), recursively, with paths
    /// relative to `dir`. Directories themselves are not listed.
    pub async fn list(&self, dir: &str) -> Result<Vec<ListEntry>, BackendError> {
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

    /// Writes an object from a stream of chunks, without holding it whole in memory.
    pub async fn write_stream<E: std::fmt::Display>(
        &self,
        path: &str,
        mut chunks: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    ) -> Result<(), BackendError> {
        let pending = self.pending_write(path);
        let written = self.write_chunks(path, &mut chunks).await;
        pending.settled();
        written
    }

    async fn write_chunks<E: std::fmt::Display>(
        &self,
        path: &str,
        chunks: &mut (impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin),
    ) -> Result<(), BackendError> {
        use futures::StreamExt;
        let mut writer = self
            .op
            .writer(path)
            .await
            .map_err(|e| self.err("write", path, e))?;
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
        self.op
            .delete(path)
            .await
            .map_err(|e| self.err("delete", path, e))
    }
}

/// A write in progress to a local folder. opendal writes the object to `tmp/NAME.XXXXXXXX`
/// (eight random letters or digits) and renames it into place; it does not remove that file
/// when the write is dropped before the rename. Dropped before [`PendingWrite::settled`], the
/// guard removes it, and remembers the name for [`remove_abandoned_temp_files`]: the file may
/// be created by a blocking thread just after the guard is dropped.
struct PendingWrite {
    temp: Option<(Arc<PathBuf>, String)>,
}

/// The temporary files of cancelled writes: (the `tmp/` folder, the object's name).
static ABANDONED: Mutex<Vec<(Arc<PathBuf>, String)>> = Mutex::new(Vec::new());

impl PendingWrite {
    /// The write ended, done or failed: it was not cancelled.
    fn settled(mut self) {
        self.temp = None;
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        if let Some((dir, name)) = self.temp.take() {
            remove_temp_files(&dir, &name);
            ABANDONED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((dir, name));
        }
    }
}

/// Removes the temporary files that cancelled writes to local folders left in `tmp/`. Call it
/// once no blocking thread of the runtime that ran them is left (after its shutdown): one may
/// have created a file after the write was dropped.
pub fn remove_abandoned_temp_files() {
    let abandoned = std::mem::take(&mut *ABANDONED.lock().unwrap_or_else(|e| e.into_inner()));
    for (dir, name) in abandoned {
        remove_temp_files(&dir, &name);
    }
}

/// Removes `dir/NAME.XXXXXXXX`, opendal's temporary files for the object `name`.
fn remove_temp_files(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let is_temp = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|suffix| {
                suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        if is_temp {
            let _ = std::fs::remove_file(entry.path());
        }
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

fn fill_from_env(opts: &mut BTreeMap<String, String>, pairs: &[(&str, &str)]) {
    for (key, var) in pairs {
        if !opts.contains_key(*key)
            && let Ok(value) = std::env::var(var)
            && !value.is_empty()
        {
            opts.insert((*key).to_string(), value);
        }
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
        let text = sanitize_error_text(
            "request to https://host/b/k?X-Amz-Signature=abc&sig=SECRET failed",
        );
        assert_eq!(text, "request to https://host/b/k?*** failed");
    }

    #[test]
    fn unknown_scheme_says_what_is_supported() {
        let err = Backend::open("ftp2://x/y", &BackendOptions::default()).unwrap_err();
        assert!(err.to_string().contains("unknown scheme `ftp2`"), "{err}");
    }
}
