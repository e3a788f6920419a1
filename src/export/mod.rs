//! `airback export`: a snapshot of a base as a package other tools read without airback (a tar
//! or zip archive, or a plain folder) or as a SQLite database. docs/EXPORT.md documents what
//! comes out; this module decides it and drives the writing.
//!
//! ```text
//! manifest.json                                  snapshot, base, tables, attachment counts
//! schema.json                                    the meta API's answer
//! tables/<table>.json, tables/<table>.csv        records (cells keyed by field name)
//! attachments/<table>/<record id>/<filename>     each attachment's bytes
//! ```
//!
//! An export reads the snapshot in passes (via [`StoredBase`], which verifies every blob):
//! the first decides every name and path (the [`Layout`]: safe, unique names from
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
//! channels ([`Source`]), so reading and writing overlap.

pub mod names;
mod package;
mod render;
mod sqlite;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::runtime::Handle;

use crate::airtable::Record;
use crate::id::SnapshotId;
use crate::progress::Progress;
use crate::stored::{StoredBase, StoredError, StoredFile, StoredTable};
use names::{MAX_NAME_BYTES, NameSet};
use package::{Content, DirPackage, Package, TarPackage, Target, TargetProblem, ZipPackage};
use render::Column;

/// The `format` of an export's `manifest.json` (and of the SQLite `_airback_manifest`).
pub const MANIFEST_FORMAT: &str = "airback-export";
/// The version of the layout described in docs/EXPORT.md.
pub const LAYOUT_VERSION: u32 = 1;

/// Records rendered into one chunk before it is handed to the package.
const TEXT_CHUNK: usize = 64 * 1024;
/// Records handed to the writer at once (at most two such batches wait).
const RECORDS_AHEAD: usize = 256;
/// Attachment blobs handed to the writer at once (at most two such batches wait, besides the
/// reader's own read-ahead): at most 4 MiB each.
const BLOBS_AHEAD: usize = 1;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard output (`-o -`; tar only).
    Stdout,
    /// A file (tar, zip, sqlite) or a folder (dir); a character device or a FIFO (tar, zip)
    /// is written as a stream.
    Path(PathBuf),
}

impl Output {
    /// Whether the output is a character device or a FIFO (`/dev/null`, a named pipe),
    /// which takes the package as a stream.
    pub fn is_stream(&self) -> bool {
        match self {
            Output::Stdout => true,
            Output::Path(path) => std::fs::metadata(path).is_ok_and(|m| package::is_stream(&m)),
        }
    }

    /// Whether the output is the file standard output writes to (`-o -`, `-o /dev/stdout`):
    /// then messages go to standard error.
    pub fn is_stdout(&self) -> bool {
        match self {
            Output::Stdout => true,
            #[cfg(unix)]
            Output::Path(path) => {
                use std::os::fd::AsFd;
                use std::os::unix::fs::MetadataExt;
                let stdout = io::stdout()
                    .as_fd()
                    .try_clone_to_owned()
                    .and_then(|fd| std::fs::File::from(fd).metadata());
                match (std::fs::metadata(path), stdout) {
                    (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                    _ => false,
                }
            }
            #[cfg(not(unix))]
            Output::Path(_) => false,
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Stdout => f.write_str("standard output"),
            Output::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What to export where.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The format.
    pub format: ExportFormat,
    /// The destination.
    pub output: Output,
    /// Replace an existing file, or a folder holding an earlier export.
    pub force: bool,
}

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
    options: &ExportOptions,
    progress: Arc<dyn Progress>,
) -> Result<ExportSummary, ExportError> {
    if options.output == Output::Stdout && options.format != ExportFormat::Tar {
        return Err(ExportError::StdoutNeedsTar(options.format));
    }
    let source = Source {
        base: base.clone(),
        rt: Handle::current(),
    };
    let options = options.clone();
    tokio::task::spawn_blocking(move || run(&source, &options, &*progress))
        .await
        .map_err(|e| ExportError::Internal(format!("the export thread failed: {e}")))?
}

fn run(
    source: &Source,
    options: &ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportSummary, ExportError> {
    let started = Instant::now();
    let target = prepare_target(options)?;
    let layout = Layout::build(source)?;
    tracing::debug!(
        "export layout: {} tables, {} records, {} attachment files in {:.2} s",
        layout.tables.len(),
        layout.records,
        layout.files.len(),
        started.elapsed().as_secs_f64()
    );
    let manifest = manifest(&source.base, &layout);
    let what = options.output.to_string();
    let bytes_written = match options.format {
        ExportFormat::Sqlite => {
            let path = target
                .work_path()
                .ok_or_else(|| ExportError::Internal("SQLite needs a file".into()))?;
            sqlite::write(source, &layout, &manifest, path, progress)?
        }
        format => {
            let mut package: Box<dyn Package> = match (&target, format) {
                (Target::Stdout, _) => Box::new(TarPackage::new(io::stdout(), mtime(source))),
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
            match write_package(source, &layout, &manifest, &mut *package, &what, progress) {
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
    target.commit().map_err(|e| ExportError::write(&what, e))?;
    Ok(ExportSummary {
        snapshot_id: source.base.id,
        base_id: source.base.base_id().to_owned(),
        base_name: source.base.base_name().to_owned(),
        format: options.format,
        output: match &options.output {
            Output::Stdout => "-".to_owned(),
            Output::Path(path) => path.display().to_string(),
        },
        tables: layout.tables.len(),
        records: layout.records,
        attachments: layout.files.len() as u64,
        attachment_bytes: layout.attachment_bytes(),
        missing_attachments: layout.missing.len() as u64,
        bytes_written,
        duration_secs: started.elapsed().as_secs_f64(),
    })
}

fn prepare_target(options: &ExportOptions) -> Result<Target, ExportError> {
    let path = match &options.output {
        Output::Stdout => return Ok(Target::Stdout),
        Output::Path(path) => path,
    };
    let prepared = match options.format {
        ExportFormat::Dir => Target::dir(path, options.force),
        ExportFormat::Sqlite => Target::file(path, options.force, false),
        ExportFormat::Tar | ExportFormat::Zip => Target::file(path, options.force, true),
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

/// The snapshot as the writing thread sees it: blocking iterators over its records and bytes,
/// fed by tokio tasks through bounded channels.
struct Source {
    base: StoredBase,
    rt: Handle,
}

impl Source {
    fn records(&self, table: &StoredTable) -> impl Iterator<Item = Result<Record, StoredError>> {
        forward(&self.rt, self.base.records(table), RECORDS_AHEAD)
    }

    fn attachment(&self, id: &str) -> Result<Option<StoredFile>, StoredError> {
        self.rt.block_on(self.base.attachment(id))
    }

    fn file_bytes(&self, file: &StoredFile) -> impl Iterator<Item = Result<Bytes, StoredError>> {
        forward(&self.rt, self.base.file_bytes(file), BLOBS_AHEAD)
    }
}

/// A stream read by a tokio task, handed to a blocking thread as an iterator: items travel
/// in batches of what is ready (up to `capacity`), so a stream of many small items does not
/// cost a thread wake-up each. At most two batches wait in the channel. Dropping the
/// iterator stops the task at its next batch.
fn forward<S>(rt: &Handle, stream: S, capacity: usize) -> impl Iterator<Item = S::Item> + use<S>
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<S::Item>>(2);
    rt.spawn(async move {
        let mut batches = std::pin::pin!(stream.ready_chunks(capacity));
        while let Some(batch) = batches.next().await {
            if tx.send(batch).await.is_err() {
                break;
            }
        }
    });
    std::iter::from_fn(move || rx.blocking_recv()).flatten()
}

/// Every name and path of an export, decided before anything is written.
struct Layout {
    tables: Vec<TableLayout>,
    /// Attachments whose content the snapshot holds, in the order they are written.
    files: Vec<FileEntry>,
    /// Attachment id → its file.
    paths: HashMap<String, Slot>,
    /// Attachments without content, in the order they were found.
    missing: Vec<String>,
    records: u64,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    File(usize),
    Missing,
}

struct TableLayout {
    table: StoredTable,
    /// The table's safe name: `tables/<stem>.json`, `attachments/<stem>/`.
    stem: String,
    columns: Vec<Column>,
    records: u64,
}

impl TableLayout {
    fn json_path(&self) -> String {
        format!("tables/{}.json", self.stem)
    }
    fn csv_path(&self) -> String {
        format!("tables/{}.csv", self.stem)
    }
}

/// One attachment file.
struct FileEntry {
    id: String,
    /// Index of the table whose record holds it.
    table: usize,
    record_id: String,
    field_id: String,
    /// Relative path in the package.
    path: String,
    /// The attachment object as the record holds it (filename, type, size, …).
    object: Value,
    file: StoredFile,
}

/// The folders of one table's records under `attachments/<table>/`.
#[derive(Default)]
struct RecordFolders {
    names: NameSet,
    /// Record id → (folder name, the names taken in it).
    folders: HashMap<String, (String, NameSet)>,
}

impl RecordFolders {
    fn folder(&mut self, record_id: &str) -> &mut (String, NameSet) {
        if !self.folders.contains_key(record_id) {
            let name = self.names.claim(record_id, MAX_NAME_BYTES);
            self.folders
                .insert(record_id.to_owned(), (name, NameSet::new()));
        }
        self.folders.get_mut(record_id).expect("inserted above")
    }
}

/// An attachment seen outside an attachment field (a lookup), placed after every table was
/// read unless its own field turned up meanwhile.
struct Pending {
    id: String,
    table: usize,
    record_id: String,
    field_id: String,
    object: Value,
}

impl Layout {
    /// The first pass: reads every record once, and decides table names, columns and the path
    /// of every attachment.
    fn build(source: &Source) -> Result<Layout, ExportError> {
        let base = &source.base;
        let mut layout = Layout {
            tables: Vec::new(),
            files: Vec::new(),
            paths: HashMap::new(),
            missing: Vec::new(),
            records: 0,
        };
        let mut stems = NameSet::new();
        let mut folders: Vec<RecordFolders> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut pending_ids: HashSet<String> = HashSet::new();

        for table in &base.tables {
            let index = layout.tables.len();
            // Room for the `.json` and `.csv` that follow the stem.
            let stem = stems.claim(&table.name, MAX_NAME_BYTES - ".json".len());
            let mut columns = schema_columns(base, table);
            let attachment_fields: HashSet<String> = columns
                .iter()
                .filter(|c| c.field_type.as_deref() == Some("multipleAttachments"))
                .map(|c| c.field_id.clone())
                .collect();
            let known: HashSet<String> = columns.iter().map(|c| c.field_id.clone()).collect();
            let order: HashMap<String, usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.field_id.clone(), i))
                .collect();
            let mut extra: BTreeSet<String> = BTreeSet::new();
            let mut table_folders = RecordFolders::default();
            let mut records = 0u64;

            for record in source.records(table) {
                let record = record.map_err(records_of(table))?;
                records += 1;
                // Cells in column order, then those the schema does not list (by id).
                let mut cells: Vec<(&String, &Value)> = record.fields.iter().collect();
                cells.sort_by_key(|(id, _)| (order.get(*id).copied().unwrap_or(usize::MAX), *id));
                for (field_id, value) in cells {
                    if !known.contains(field_id) {
                        extra.insert(field_id.clone());
                    }
                    let mut found = Vec::new();
                    render::for_each_attachment(value, &mut |object| found.push(object));
                    for object in found {
                        let id = crate::airtable::attachment_id(object).unwrap_or_default();
                        if layout.paths.contains_key(id) {
                            continue;
                        }
                        if attachment_fields.contains(field_id) {
                            layout.place(
                                source,
                                &stem,
                                index,
                                &mut table_folders,
                                &record.id,
                                field_id,
                                object,
                            )?;
                        } else if pending_ids.insert(id.to_owned()) {
                            pending.push(Pending {
                                id: id.to_owned(),
                                table: index,
                                record_id: record.id.clone(),
                                field_id: field_id.clone(),
                                object: object.clone(),
                            });
                        }
                    }
                }
            }
            columns.extend(extra_columns(&columns, extra));
            layout.records += records;
            layout.tables.push(TableLayout {
                table: table.clone(),
                stem,
                columns,
                records,
            });
            folders.push(table_folders);
        }

        for p in pending {
            if layout.paths.contains_key(&p.id) {
                continue;
            }
            let stem = layout.tables[p.table].stem.clone();
            layout.place(
                source,
                &stem,
                p.table,
                &mut folders[p.table],
                &p.record_id,
                &p.field_id,
                &p.object,
            )?;
        }
        Ok(layout)
    }

    /// Gives the attachment `object` of `record_id` its file (or notes it as missing).
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        source: &Source,
        stem: &str,
        table: usize,
        folders: &mut RecordFolders,
        record_id: &str,
        field_id: &str,
        object: &Value,
    ) -> Result<(), ExportError> {
        let id = crate::airtable::attachment_id(object)
            .unwrap_or_default()
            .to_owned();
        let found = source
            .attachment(&id)
            .map_err(ExportError::reading(format!("attachment {id}")))?;
        let Some(file) = found else {
            self.paths.insert(id.clone(), Slot::Missing);
            self.missing.push(id);
            return Ok(());
        };
        let filename = object
            .get("filename")
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty())
            .or(file.filename.as_deref())
            .unwrap_or(&id)
            .to_owned();
        let (folder, taken) = folders.folder(record_id);
        let name = taken.claim(&filename, MAX_NAME_BYTES);
        let path = format!("attachments/{stem}/{folder}/{name}");
        self.paths.insert(id.clone(), Slot::File(self.files.len()));
        self.files.push(FileEntry {
            id,
            table,
            record_id: record_id.to_owned(),
            field_id: field_id.to_owned(),
            path,
            object: object.clone(),
            file,
        });
        Ok(())
    }

    /// The path of attachment `id` in the package, if its content is exported.
    fn path_of(&self, id: &str) -> Option<String> {
        match self.paths.get(id) {
            Some(Slot::File(index)) => Some(self.files[*index].path.clone()),
            _ => None,
        }
    }

    fn attachment_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.file.size).sum()
    }

    /// A record ready to render: attachment objects carry their paths.
    fn prepare(&self, mut record: Record) -> Record {
        let path_of = |id: &str| self.path_of(id);
        for value in record.fields.values_mut() {
            render::add_paths(value, &path_of);
        }
        record
    }
}

/// The columns of a table from the schema: its fields in schema order, less those the backup
/// left out. Keys are the field names; a name given twice gets the field id appended.
fn schema_columns(base: &StoredBase, table: &StoredTable) -> Vec<Column> {
    let Some(schema) = base.schema.tables.iter().find(|t| t.id == table.id) else {
        return Vec::new();
    };
    let fields: Vec<_> = schema
        .fields
        .iter()
        .filter(|f| !table.excluded_fields.contains(&f.id))
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for field in &fields {
        *counts.entry(field.name.as_str()).or_default() += 1;
    }
    fields
        .iter()
        .map(|f| Column {
            field_id: f.id.clone(),
            key: if counts[f.name.as_str()] > 1 {
                format!("{} ({})", f.name, f.id)
            } else {
                f.name.clone()
            },
            name: Some(f.name.clone()),
            field_type: Some(f.field_type.clone()),
        })
        .collect()
}

/// Columns for field ids found in records but not in the schema: keyed by id.
fn extra_columns(columns: &[Column], extra: BTreeSet<String>) -> Vec<Column> {
    let keys: HashSet<&str> = columns.iter().map(|c| c.key.as_str()).collect();
    extra
        .into_iter()
        .map(|id| Column {
            key: if keys.contains(id.as_str()) {
                format!("{id} ({id})")
            } else {
                id.clone()
            },
            field_id: id,
            name: None,
            field_type: None,
        })
        .collect()
}

/// `manifest.json`: what was exported, from where, by what. No export time, so that the same
/// snapshot always gives the same bytes.
fn manifest(base: &StoredBase, layout: &Layout) -> Value {
    let s = &base.snapshot;
    let tables: Vec<Value> = layout
        .tables
        .iter()
        .map(|t| {
            json!({
                "id": t.table.id, "name": t.table.name, "records": t.records,
                "json": t.json_path(), "csv": t.csv_path(),
                "attachments": format!("attachments/{}", t.stem),
                "fields": t.columns.len(),
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
    })
}

/// Writes the package's files in order: manifest, schema, each table's JSON and CSV, then
/// every attachment.
fn write_package(
    source: &Source,
    layout: &Layout,
    manifest: &Value,
    package: &mut dyn Package,
    what: &str,
    progress: &dyn Progress,
) -> Result<(), ExportError> {
    let begun = Instant::now();
    let mut w = PackageWriter {
        source,
        layout,
        package,
        what,
        progress,
        text_buffer: text_buffer(),
    };
    let pretty = |value: &Value| {
        let mut bytes = serde_json::to_vec_pretty(value).expect("JSON values serialize");
        bytes.push(b'\n');
        bytes
    };
    w.bytes("manifest.json", pretty(manifest), false)?;
    w.bytes("schema.json", pretty(&source.base.schema.raw), false)?;
    for table in &layout.tables {
        w.table(table)?;
    }
    tracing::debug!(
        "export: tables written in {:.2} s",
        begun.elapsed().as_secs_f64()
    );
    w.attachments()
}

/// Writes into a package.
struct PackageWriter<'a> {
    source: &'a Source,
    layout: &'a Layout,
    package: &'a mut dyn Package,
    what: &'a str,
    progress: &'a dyn Progress,
    text_buffer: usize,
}

impl PackageWriter<'_> {
    /// A file whose content is in memory. Table files announce their size only to packages
    /// that need it, so that a table gives the same bytes whether it was kept in memory or
    /// streamed (a zip marks entries of unknown size as zip64).
    fn bytes(&mut self, path: &str, bytes: Vec<u8>, table: bool) -> Result<(), ExportError> {
        let size = bytes.len() as u64;
        let announced = (!table || self.package.needs_size()).then_some(size);
        let chunks = std::iter::once(Ok(Bytes::from(bytes)));
        let reader = ChunkReader::new(chunks, Some(size), path);
        self.add(path, announced, Content::Text, reader)
    }

    /// A table's JSON and CSV. A tar needs each one's size before its content: one pass
    /// renders both, keeping them in memory when small and only counting them when not, and
    /// what was not kept is rendered again as it is written. Other packages get the JSON as it
    /// is rendered, the CSV alongside it (kept when small).
    fn table(&mut self, table: &TableLayout) -> Result<(), ExportError> {
        self.progress.phase(&table.table.name, None);
        let (json_path, csv_path) = (table.json_path(), table.csv_path());
        let mut csv = Capture::new(self.text_buffer);
        if self.package.needs_size() {
            let mut json = Capture::new(self.text_buffer);
            let progress = Some(self.progress);
            let text = TableText::new(
                self.source,
                self.layout,
                table,
                TextKind::Json,
                Some(&mut csv),
                progress,
            );
            for chunk in text {
                json.push(&chunk?);
            }
            match json.take() {
                Some(bytes) => self.bytes(&json_path, bytes, true)?,
                None => self.text(table, TextKind::Json, Some(json.len), None, false)?,
            }
        } else {
            self.text(table, TextKind::Json, None, Some(&mut csv), true)?;
        }
        match csv.take() {
            Some(bytes) => self.bytes(&csv_path, bytes, true),
            None => {
                let size = self.package.needs_size().then_some(csv.len);
                self.text(table, TextKind::Csv, size, None, false)
            }
        }
    }

    /// A table's JSON or CSV, rendered as it is written; the CSV captured alongside the JSON
    /// when `csv` is given.
    fn text(
        &mut self,
        table: &TableLayout,
        kind: TextKind,
        size: Option<u64>,
        csv: Option<&mut Capture>,
        count_records: bool,
    ) -> Result<(), ExportError> {
        let path = match kind {
            TextKind::Json => table.json_path(),
            TextKind::Csv => table.csv_path(),
        };
        let progress = count_records.then_some(self.progress);
        let text = TableText::new(self.source, self.layout, table, kind, csv, progress);
        let reader = ChunkReader::new(text, size, &path);
        self.add(&path, size, Content::Text, reader)
    }

    /// Every attachment, streamed.
    fn attachments(&mut self) -> Result<(), ExportError> {
        let (source, layout, progress) = (self.source, self.layout, self.progress);
        progress.bytes_expected(layout.attachment_bytes());
        for entry in &layout.files {
            let chunks = source.file_bytes(&entry.file).map(|chunk| {
                let chunk = chunk?;
                progress.bytes(chunk.len() as u64);
                Ok(chunk)
            });
            let size = Some(entry.file.size);
            let reader = ChunkReader::new(chunks, size, &entry.path);
            self.add(&entry.path, size, Content::Binary, reader)?;
        }
        Ok(())
    }

    /// Adds one file; a failure of the snapshot's reading is reported as such, not as the
    /// write error it caused.
    fn add<I>(
        &mut self,
        path: &str,
        size: Option<u64>,
        content: Content,
        mut reader: ChunkReader<I>,
    ) -> Result<(), ExportError>
    where
        I: Iterator<Item = Result<Bytes, ExportError>>,
    {
        match self.package.add_file(path, size, content, &mut reader) {
            Ok(()) => Ok(()),
            Err(e) => Err(match reader.error.take() {
                Some(ExportError::Stored(source)) => ExportError::Read {
                    what: path.to_owned(),
                    source,
                },
                Some(other) => other,
                None => ExportError::write(format!("{path} to {}", self.what), e),
            }),
        }
    }
}

/// Wraps a failure to read `table`'s records.
fn records_of(table: &StoredTable) -> impl FnOnce(StoredError) -> ExportError {
    ExportError::reading(format!("the records of table `{}`", table.name))
}

/// Table text kept in memory rather than rendered a second time, per file: a table's JSON
/// and CSV hold at most twice this. `AIRBACK_EXPORT_TEXT_BUFFER` (bytes) changes it, for
/// tests of the other path.
const TEXT_BUFFER: usize = 8 << 20;

fn text_buffer() -> usize {
    std::env::var("AIRBACK_EXPORT_TEXT_BUFFER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TEXT_BUFFER)
}

/// Rendered text, kept up to `cap` bytes, and its length in any case.
struct Capture {
    cap: usize,
    bytes: Vec<u8>,
    len: u64,
    overflowed: bool,
}

impl Capture {
    fn new(cap: usize) -> Capture {
        Capture {
            cap,
            bytes: Vec::new(),
            len: 0,
            overflowed: false,
        }
    }

    fn push(&mut self, text: &[u8]) {
        self.len += text.len() as u64;
        if self.overflowed {
            return;
        }
        if self.bytes.len() + text.len() > self.cap {
            self.overflowed = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(text);
        }
    }

    /// The text, if all of it was kept.
    fn take(&mut self) -> Option<Vec<u8>> {
        (!self.overflowed).then(|| std::mem::take(&mut self.bytes))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextKind {
    Json,
    Csv,
}

/// A table's JSON or CSV text, in chunks of about [`TEXT_CHUNK`] bytes, read from the
/// snapshot as they are asked for. Optionally renders the CSV into a [`Capture`] alongside
/// the JSON, and reports records to the progress.
struct TableText<'a> {
    records: Box<dyn Iterator<Item = Result<Record, StoredError>> + 'a>,
    layout: &'a Layout,
    table: &'a TableLayout,
    kind: TextKind,
    csv: Option<&'a mut Capture>,
    progress: Option<&'a dyn Progress>,
    started: bool,
    done: bool,
    first: bool,
}

impl<'a> TableText<'a> {
    fn new(
        source: &'a Source,
        layout: &'a Layout,
        table: &'a TableLayout,
        kind: TextKind,
        csv: Option<&'a mut Capture>,
        progress: Option<&'a dyn Progress>,
    ) -> TableText<'a> {
        TableText {
            records: Box::new(source.records(&table.table)),
            layout,
            table,
            kind,
            csv,
            progress,
            started: false,
            done: false,
            first: true,
        }
    }
}

impl Iterator for TableText<'_> {
    type Item = Result<Bytes, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let table = self.table;
        let columns = &table.columns;
        let mut out = Vec::with_capacity(TEXT_CHUNK + 4096);
        if !self.started {
            self.started = true;
            match self.kind {
                TextKind::Json => {
                    out = render::json_header(&table.table.id, &table.table.name, columns)
                }
                TextKind::Csv => out = render::csv_header(columns),
            }
            if let Some(csv) = self.csv.as_deref_mut() {
                csv.push(&render::csv_header(columns));
            }
        }
        let mut rendered = 0;
        let mut row = Vec::new();
        while out.len() < TEXT_CHUNK {
            match self.records.next() {
                Some(Ok(record)) => {
                    let record = self.layout.prepare(record);
                    match self.kind {
                        TextKind::Json => {
                            render::json_record(&mut out, &record, columns, self.first)
                        }
                        TextKind::Csv => render::csv_record(&mut out, &record, columns),
                    }
                    if let Some(csv) = self.csv.as_deref_mut() {
                        row.clear();
                        render::csv_record(&mut row, &record, columns);
                        csv.push(&row);
                    }
                    self.first = false;
                    rendered += 1;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(records_of(&table.table)(e)));
                }
                None => {
                    if self.kind == TextKind::Json {
                        out.extend_from_slice(render::JSON_FOOTER);
                    }
                    self.done = true;
                    break;
                }
            }
        }
        if let Some(progress) = self.progress {
            progress.items(rendered);
        }
        Some(Ok(Bytes::from(out)))
    }
}

/// A reader over chunks that keeps the first error of its source for the caller, and checks
/// that exactly the announced number of bytes comes out (a tar entry with fewer or more bytes
/// than its header says would corrupt the rest of the archive).
struct ChunkReader<I> {
    chunks: I,
    current: Bytes,
    expected: Option<u64>,
    total: u64,
    error: Option<ExportError>,
    path: String,
}

impl<I: Iterator<Item = Result<Bytes, ExportError>>> ChunkReader<I> {
    fn new(chunks: I, expected: Option<u64>, path: &str) -> Self {
        ChunkReader {
            chunks,
            current: Bytes::new(),
            expected,
            total: 0,
            error: None,
            path: path.to_owned(),
        }
    }

    fn fail(&mut self, error: ExportError) -> io::Error {
        let message = error.to_string();
        self.error = Some(error);
        io::Error::other(message)
    }
}

impl<I: Iterator<Item = Result<Bytes, ExportError>>> Read for ChunkReader<I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current.split_to(n));
                return Ok(n);
            }
            match self.chunks.next() {
                Some(Ok(chunk)) => {
                    self.total += chunk.len() as u64;
                    if let Some(expected) = self.expected
                        && self.total > expected
                    {
                        let e = ExportError::Internal(format!(
                            "{} has more than the {expected} bytes announced",
                            self.path
                        ));
                        return Err(self.fail(e));
                    }
                    self.current = chunk;
                }
                Some(Err(e)) => return Err(self.fail(e)),
                None => {
                    if let Some(expected) = self.expected
                        && self.total != expected
                    {
                        let e = ExportError::Internal(format!(
                            "{} has {} bytes, not the {expected} announced",
                            self.path, self.total
                        ));
                        return Err(self.fail(e));
                    }
                    return Ok(0);
                }
            }
        }
    }
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
    fn chunk_readers_check_the_length() {
        let chunks = || {
            vec![
                Ok(Bytes::from_static(b"abc")),
                Ok(Bytes::from_static(b"de")),
            ]
        };
        let mut out = Vec::new();
        ChunkReader::new(chunks().into_iter(), Some(5), "f")
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"abcde");
        for expected in [4, 6] {
            let mut reader = ChunkReader::new(chunks().into_iter(), Some(expected), "f");
            assert!(reader.read_to_end(&mut Vec::new()).is_err());
            assert!(matches!(reader.error, Some(ExportError::Internal(_))));
        }
        let failing = vec![
            Ok(Bytes::from_static(b"abc")),
            Err(ExportError::Internal("boom".into())),
        ];
        let mut reader = ChunkReader::new(failing.into_iter(), None, "f");
        assert!(reader.read_to_end(&mut Vec::new()).is_err());
        assert!(reader.error.unwrap().to_string().contains("boom"));
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

    #[test]
    fn duplicate_field_names_get_their_id() {
        let cols = extra_columns(
            &[Column {
                field_id: "fldA".into(),
                key: "fldX".into(),
                name: Some("fldX".into()),
                field_type: None,
            }],
            ["fldX".to_owned(), "fldY".to_owned()].into_iter().collect(),
        );
        assert_eq!(cols[0].key, "fldX (fldX)");
        assert_eq!(cols[1].key, "fldY");
    }
}
