//! `airback export`: a snapshot of a base as a package other tools read without airback (a tar
//! or zip archive, or a plain folder) or as a SQLite database. docs/EXPORT.md documents what
//! comes out; this module decides it and drives the writing.
//!
//! ```text
//! manifest.json                                  snapshot, base, tables, attachment counts
//! schema.json                                    the meta API's answer
//! tables/<table>.json, tables/<table>.csv        records (cells keyed by field name)
//! attachments/<table>/<record id>/<filename>     each attachment's bytes
//! comments/<table>.json                          record comments (tables that have some)
//! ```
//!
//! An export reads the snapshot in passes (via [`StoredBase`], which verifies every blob):
//! the first decides every name and path (the `Layout`: safe, unique names from
//! [`names`], the path of each attachment, the columns of each table); the next writes the
//! tables; the last streams every attachment. A table's JSON and CSV are rendered in one pass
//! and kept in memory up to 8 MiB each; what is larger is rendered a second time as it is
//! written (a tar needs each entry's size before its content; other packages take the JSON
//! as it is rendered and only the CSV waits). Nothing is held whole in memory or on disk
//! beyond that bound, whatever the table's size. Memory stays flat in records
//! and attachment bytes: records stream a batch at a time, attachments a few blobs at a time.
//! What grows is the layout: about 200 bytes per attachment (its id, path and blob list).
//!
//! The writing is blocking I/O and CPU work (rendering, deflate, SQLite), so it all runs on one
//! blocking thread; reads from the repository run as tokio tasks feeding it through bounded
//! channels (`Source`), so reading and writing overlap. Dropping the future of [`export`]
//! (Ctrl-C) stops that thread at its next read or file; it then deletes what it wrote, and
//! nothing is moved to the destination.
//!
//! The parts: `plan.rs` (the `Layout`, the first pass), `source.rs` (the async-to-blocking
//! `Source`), `render.rs` (a table's JSON and CSV text), `writer.rs` (the files of a package,
//! in order), `package.rs` (tar, zip, folder, and the destination) and `sqlite.rs` (the SQLite
//! database). This file holds the options, the errors, the summary, the manifest, and
//! [`export`], which checks the destination, plans, and writes.

pub mod names;
mod package;
mod plan;
mod render;
mod source;
mod sqlite;
mod writer;

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::runtime::Handle;

use crate::id::SnapshotId;
use crate::progress::Progress;
use crate::stored::{StoredBase, StoredError, StoredTable};
use package::{CallerStream, DirPackage, Package, TarPackage, Target, TargetProblem, ZipPackage};
use plan::Layout;
use source::Source;
use writer::write_package;

/// The `format` of an export's `manifest.json` (and of the SQLite `_airback_manifest`).
pub const MANIFEST_FORMAT: &str = "airback-export";
/// The version of the layout described in docs/EXPORT.md.
pub const LAYOUT_VERSION: u32 = 1;

/// What an export is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// A tar archive (to a file or standard output).
    Tar,
    /// A zip archive.
    Zip,
    /// A folder.
    Dir,
    /// A SQLite database.
    Sqlite,
}

impl ExportFormat {
    /// All formats, for help texts.
    pub const ALL: [ExportFormat; 4] = [
        ExportFormat::Tar,
        ExportFormat::Zip,
        ExportFormat::Dir,
        ExportFormat::Sqlite,
    ];

    /// The format a file name suggests: `.tar`, `.zip`, `.sqlite`/`.sqlite3`/`.db`.
    pub fn from_extension(path: &std::path::Path) -> Option<ExportFormat> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "tar" => Some(ExportFormat::Tar),
            "zip" => Some(ExportFormat::Zip),
            "sqlite" | "sqlite3" | "db" => Some(ExportFormat::Sqlite),
            _ => None,
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Tar => "tar",
            ExportFormat::Zip => "zip",
            ExportFormat::Dir => "dir",
            ExportFormat::Sqlite => "sqlite",
        })
    }
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<ExportFormat, String> {
        ExportFormat::ALL
            .into_iter()
            .find(|f| f.to_string().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!("unknown export format `{text}`: expected tar, zip, dir or sqlite")
            })
    }
}

/// Where an export goes.
pub enum Output {
    /// Standard output, opened by the caller (the command line's `-o -`; tar only): the
    /// package is written to it as a stream. Named `standard output` in messages and `-` in
    /// the summary.
    Stdout(Box<dyn Write + Send>),
    /// A file (tar, zip, sqlite) or a folder (dir); a character device or a FIFO (tar, zip)
    /// is written as a stream.
    Path(PathBuf),
}

impl Output {
    /// Whether the output is a character device or a FIFO (`/dev/null`, a named pipe),
    /// which takes the package as a stream.
    pub fn is_stream(&self) -> bool {
        match self {
            Output::Stdout(_) => true,
            Output::Path(path) => std::fs::metadata(path).is_ok_and(|m| package::is_stream(&m)),
        }
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Stdout(_) => f.write_str("Stdout"),
            Output::Path(path) => f.debug_tuple("Path").field(path).finish(),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Stdout(_) => f.write_str("standard output"),
            Output::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What to export where.
#[derive(Debug)]
pub struct ExportOptions {
    /// The format.
    pub format: ExportFormat,
    /// The destination.
    pub output: Output,
    /// Replace an existing file, or a folder holding an earlier export.
    pub force: bool,
    /// Table text kept in memory rather than rendered a second time, per file, in bytes
    /// ([`DEFAULT_TEXT_BUFFER`]; the command line reads `AIRBACK_EXPORT_TEXT_BUFFER`, for
    /// tests of the other path).
    pub text_buffer: usize,
}

impl ExportOptions {
    /// `format` to `output`, replacing nothing, with the default text buffer.
    pub fn new(format: ExportFormat, output: Output) -> ExportOptions {
        ExportOptions {
            format,
            output,
            force: false,
            text_buffer: DEFAULT_TEXT_BUFFER,
        }
    }
}

/// Table text kept in memory rather than rendered a second time, per file: a table's JSON
/// and CSV hold at most twice this, unless [`ExportOptions::text_buffer`] says otherwise.
pub const DEFAULT_TEXT_BUFFER: usize = 8 << 20;

/// What an export wrote; `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// The snapshot exported.
    pub snapshot_id: SnapshotId,
    /// Its base.
    pub base_id: String,
    /// The base's name.
    pub base_name: String,
    /// The format written.
    pub format: ExportFormat,
    /// Where (a path, or `-` for standard output).
    pub output: String,
    /// Tables exported.
    pub tables: usize,
    /// Records exported.
    pub records: u64,
    /// Attachment files exported.
    pub attachments: u64,
    /// Their bytes.
    pub attachment_bytes: u64,
    /// Attachments whose content the snapshot does not hold (a partial snapshot, or one taken
    /// without attachment content): their metadata is exported, their bytes cannot be.
    pub missing_attachments: u64,
    /// Bytes written (the package or database).
    pub bytes_written: u64,
    /// Wall time.
    pub duration_secs: f64,
    /// Record comments exported.
    pub comments: u64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the snapshot failed.
    #[error(transparent)]
    Stored(#[from] StoredError),
    /// Reading one part of the snapshot failed.
    #[error(
        "cannot read {what} from the snapshot (`airback check --read-data` reports what else is \
         damaged)"
    )]
    Read {
        /// What was being read.
        what: String,
        /// Why it failed.
        source: StoredError,
    },
    /// The destination exists.
    #[error("{0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    /// A file was asked for and the destination is a folder.
    #[error("{0} is a folder; give a file name for a {1} export, or use --format dir")]
    IsDir(PathBuf, ExportFormat),
    /// A folder was asked for and the destination is something else.
    #[error("{0} exists and is not a folder; give another path for a dir export")]
    NotDir(PathBuf),
    /// `--force` on a non-empty folder that is not an earlier export.
    #[error(
        "{0} is not empty and holds no earlier airback export; --force only replaces an \
         earlier export, so pick another folder or empty this one"
    )]
    NotAnExport(PathBuf),
    /// `--force` on a folder whose earlier export's files cannot be told.
    #[error(
        "{0} holds an earlier airback export, but which files it wrote cannot be told ({1}); \
         --force replaces only those, so move the folder aside or empty it, and export again"
    )]
    UnknownExport(PathBuf, String),
    /// A character device or a FIFO for a format that cannot be written as a stream.
    #[error(
        "{0} is a character device or a FIFO, which can only take a stream, and a {1} export \
         cannot be one; use --format tar or zip, or give a file name (-o PATH)"
    )]
    NotStreamable(PathBuf, ExportFormat),
    /// A terminal as the destination.
    #[error("{0} is a terminal; give a file name, or a pipe or FIFO that a program reads")]
    Terminal(PathBuf),
    /// Something that is never written to or replaced.
    #[error(
        "{0} is {1}; an export goes to a regular file, a folder, a character device or a FIFO, \
         and never replaces anything else: give another path"
    )]
    Special(PathBuf, &'static str),
    /// The destination's folder does not exist.
    #[error("the folder {0} does not exist; create it first or choose another path")]
    NoParent(PathBuf),
    /// `-o -` with a format other than tar.
    #[error(
        "only tar can be written to standard output; give a file name (-o PATH) for a {0} \
         export"
    )]
    StdoutNeedsTar(ExportFormat),
    /// No `--format`, and the destination's extension does not tell.
    #[error(
        "cannot tell the format from {0}; pass --format tar, zip, dir or sqlite (or name the \
         file .tar, .zip or .sqlite)"
    )]
    NoFormat(PathBuf),
    /// `-o -` on a terminal.
    #[error(
        "standard output is a terminal; redirect it to a file or a pipe (`-o - | tar -t`), or \
         give a file name with -o"
    )]
    StdoutIsTerminal,
    /// Writing failed.
    #[error("cannot write {what}: {source}")]
    Write {
        /// What was being written.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
    /// SQLite failed.
    #[error("cannot write the SQLite database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The export was cancelled (its future dropped) before it was complete.
    #[error("the export was interrupted; nothing was written under the destination's name")]
    Interrupted,
    /// A bug.
    #[error("internal error: {0}; please report it")]
    Internal(String),
}

impl ExportError {
    /// Whether the command line was wrong (exit code 2) rather than something failing.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ExportError::StdoutNeedsTar(_)
                | ExportError::NoFormat(_)
                | ExportError::StdoutIsTerminal
                | ExportError::NotStreamable(..)
                | ExportError::Terminal(_)
        )
    }

    /// Wraps a failure to read `what`.
    fn reading(what: impl Into<String>) -> impl FnOnce(StoredError) -> ExportError {
        let what = what.into();
        move |source| ExportError::Read { what, source }
    }

    fn write(what: impl Into<String>, source: io::Error) -> ExportError {
        ExportError::Write {
            what: what.into(),
            source,
        }
    }
}

/// Exports `base` as `options` say. Checks the destination before reading anything, writes
/// under a temporary name and renames at the end; on failure nothing is left under the
/// destination's name. Standard output, a character device or a FIFO gets a tar or zip
/// stream instead, left without its end on failure, so that `tar` reports it as truncated.
pub async fn export(
    base: &StoredBase,
    options: ExportOptions,
    progress: Arc<dyn Progress>,
) -> Result<ExportSummary, ExportError> {
    if matches!(options.output, Output::Stdout(_)) && options.format != ExportFormat::Tar {
        return Err(ExportError::StdoutNeedsTar(options.format));
    }
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let source = Source {
        base: base.clone(),
        rt: Handle::current(),
        stop: stop.0.clone(),
    };
    tokio::task::spawn_blocking(move || run(&source, options, &*progress))
        .await
        .map_err(|e| ExportError::Internal(format!("the export thread failed: {e}")))?
}

/// Tells the writing thread to stop when the future of [`export`] is dropped (cancelled).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn run(
    source: &Source,
    options: ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportSummary, ExportError> {
    let started = Instant::now();
    let what = options.output.to_string();
    let output = match &options.output {
        Output::Stdout(_) => "-".to_owned(),
        Output::Path(path) => path.display().to_string(),
    };
    let (format, text_buffer) = (options.format, options.text_buffer);
    let mut target = prepare_target(options)?;
    let layout = Layout::build(source)?;
    tracing::debug!(
        "export layout: {} tables, {} records, {} attachment files in {:.2} s",
        layout.tables.len(),
        layout.records,
        layout.files.len(),
        started.elapsed().as_secs_f64()
    );
    let manifest = manifest(&source.base, &layout);
    let bytes_written = match format {
        ExportFormat::Sqlite => {
            let path = target
                .work_path()
                .ok_or_else(|| ExportError::Internal("SQLite needs a file".into()))?;
            sqlite::write(source, &layout, &manifest, path, progress)?
        }
        format => {
            let mut package: Box<dyn Package> = match (&mut target, format) {
                (Target::Stdout(out), _) => Box::new(TarPackage::new(out.take(), mtime(source))),
                (Target::Stream(file), ExportFormat::Tar) => Box::new(TarPackage::new(
                    file.try_clone().map_err(|e| ExportError::write(&what, e))?,
                    mtime(source),
                )),
                (Target::Stream(file), ExportFormat::Zip) => Box::new(ZipPackage::stream(
                    file.try_clone().map_err(|e| ExportError::write(&what, e))?,
                    &source.base.snapshot.time,
                )),
                (Target::File { temp, .. }, ExportFormat::Tar) => Box::new(TarPackage::new(
                    temp.as_file()
                        .try_clone()
                        .map_err(|e| ExportError::write(&what, e))?,
                    mtime(source),
                )),
                (Target::File { temp, .. }, ExportFormat::Zip) => Box::new(ZipPackage::new(
                    temp.as_file()
                        .try_clone()
                        .map_err(|e| ExportError::write(&what, e))?,
                    &source.base.snapshot.time,
                )),
                (Target::Dir { temp, .. }, _) => Box::new(DirPackage::new(temp.path().to_owned())),
                _ => return Err(ExportError::Internal(format!("no target for {format}"))),
            };
            let written = write_package(
                source,
                &layout,
                &manifest,
                &mut *package,
                &what,
                progress,
                text_buffer,
            );
            match written {
                Ok(()) => package.finish().map_err(|e| ExportError::write(&what, e))?,
                Err(e) => {
                    package.abandon();
                    return Err(e);
                }
            }
        }
    };
    tracing::debug!(
        "export: written after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // A cancelled export saw its reads end early: what it wrote is incomplete.
    source.check_stop()?;
    target.commit().map_err(|e| ExportError::write(&what, e))?;
    Ok(ExportSummary {
        snapshot_id: source.base.id,
        base_id: source.base.base_id().to_owned(),
        base_name: source.base.base_name().to_owned(),
        format,
        output,
        tables: layout.tables.len(),
        records: layout.records,
        attachments: layout.files.len() as u64,
        attachment_bytes: layout.attachment_bytes(),
        missing_attachments: layout.missing.len() as u64,
        bytes_written,
        duration_secs: started.elapsed().as_secs_f64(),
        comments: layout
            .tables
            .iter()
            .map(|t| source.base.comment_count(&t.table.id))
            .sum(),
    })
}

fn prepare_target(options: ExportOptions) -> Result<Target, ExportError> {
    let path = match options.output {
        Output::Stdout(out) => return Ok(Target::Stdout(CallerStream(out))),
        Output::Path(path) => path,
    };
    let prepared = match options.format {
        ExportFormat::Dir => Target::dir(&path, options.force),
        ExportFormat::Sqlite => Target::file(&path, options.force, false),
        ExportFormat::Tar | ExportFormat::Zip => Target::file(&path, options.force, true),
    };
    prepared.map_err(|problem| match problem {
        TargetProblem::Exists => ExportError::Exists(path.clone()),
        TargetProblem::IsDir => ExportError::IsDir(path.clone(), options.format),
        TargetProblem::NotDir => ExportError::NotDir(path.clone()),
        TargetProblem::NotStreamable => ExportError::NotStreamable(path.clone(), options.format),
        TargetProblem::Terminal => ExportError::Terminal(path.clone()),
        TargetProblem::Special(what) => ExportError::Special(path.clone(), what),
        TargetProblem::NotAnExport => ExportError::NotAnExport(path.clone()),
        TargetProblem::UnknownExport(why) => ExportError::UnknownExport(path.clone(), why),
        TargetProblem::NoParent(parent) => ExportError::NoParent(parent),
        TargetProblem::Io(e) => ExportError::write(path.display().to_string(), e),
    })
}

/// The snapshot's time in seconds since 1970, for the entries of a tar (0 if unreadable).
fn mtime(source: &Source) -> u64 {
    humantime::parse_rfc3339_weak(&source.base.snapshot.time)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// `manifest.json`: what was exported, from where, by what. No export time, so that the same
/// snapshot always gives the same bytes.
fn manifest(base: &StoredBase, layout: &Layout) -> Value {
    let s = &base.snapshot;
    let tables: Vec<Value> = layout
        .tables
        .iter()
        .map(|t| {
            let comments = base.comment_count(&t.table.id);
            json!({
                "id": t.table.id, "name": t.table.name, "records": t.records,
                "json": t.json_path(), "csv": t.csv_path(),
                "attachments": format!("attachments/{}", t.stem),
                "fields": t.columns.len(),
                "comments": (comments > 0).then(|| t.comments_path()),
            })
        })
        .collect();
    json!({
        "format": MANIFEST_FORMAT,
        "version": LAYOUT_VERSION,
        "exported_by": format!("airback {}", env!("CARGO_PKG_VERSION")),
        "snapshot": {
            "id": base.id, "time": s.time, "hostname": s.hostname, "program": s.program,
            "partial": s.partial, "tags": s.tags,
            // Snapshots of earlier versions kept attachment URLs (with their signature) here.
            "problems": s.problems.iter().map(|p| crate::backup::without_urls(p)).collect::<Vec<_>>(),
        },
        "base": {"id": base.base_id(), "name": base.base_name()},
        "tables": tables,
        "records": layout.records,
        "attachments": {
            "files": layout.files.len(),
            "bytes": layout.attachment_bytes(),
            "missing": layout.missing,
        },
        "comments": {
            "count": layout.tables.iter().map(|t| base.comment_count(&t.table.id)).sum::<u64>(),
            "backed_up": base.has_comments(),
            "skipped": crate::layout::SnapshotSummary::of(s).comments_skipped,
        },
    })
}

/// Wraps a failure to read `table`'s records.
fn records_of(table: &StoredTable) -> impl FnOnce(StoredError) -> ExportError {
    ExportError::reading(format!("the records of table `{}`", table.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_come_from_extensions() {
        assert_eq!("TAR".parse::<ExportFormat>(), Ok(ExportFormat::Tar));
        assert!("rar".parse::<ExportFormat>().is_err());
        let from = |p: &str| ExportFormat::from_extension(std::path::Path::new(p));
        assert_eq!(from("x.zip"), Some(ExportFormat::Zip));
        assert_eq!(from("x.SQLite3"), Some(ExportFormat::Sqlite));
        assert_eq!(from("x.tar.gz"), None);
        assert_eq!(from("x"), None);
    }

    #[test]
    fn problems_in_manifests_keep_no_url_beyond_its_host() {
        let text = "attachment att1 (`a.png`): downloading \
                    `https://v5.airtableusercontent.com/v3/u/27/SIGNATURE/a.png?sig=X` failed \
                    (error sending request for url (http://user:pw@host:8080/p?q=1))";
        assert_eq!(
            crate::backup::without_urls(text),
            "attachment att1 (`a.png`): downloading `https://v5.airtableusercontent.com/…` \
             failed (error sending request for url (http://host:8080/…))"
        );
        assert_eq!(crate::backup::without_urls("no url here"), "no url here");
    }
}
