//! The three package formats behind one small trait, [`Package`]: a tar archive (to a file or
//! a stream), a zip archive, and a plain folder. Each gets files one at a time as readers, in
//! the order the layout gives them, and writes them out as they are read: nothing is held in
//! memory beyond an I/O buffer, nothing is written twice.
//!
//! Archives are deterministic: every entry has the same fixed metadata (mode 0644, owner 0,
//! the snapshot's time as modification time, no user or group names), entries come in the
//! order they are added, and nothing depends on the machine, the clock or the file system.
//!
//! Also here: where a package is written ([`Target`]). Files and folders are first written
//! next to their destination under a temporary name and renamed into place at the end, so a
//! failed or interrupted export never leaves a half-written package under the requested name.
//! Only a regular file is ever replaced: a character device or a FIFO gets the package as a
//! stream, anything else is refused; into a folder holding an earlier export, only the files
//! that export wrote are replaced.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System};

/// Buffer between the package and the file or stream it is written to.
const WRITE_BUFFER: usize = 1 << 20;

/// How an entry's content is expected to compress. Zip deflates text and stores binary
/// content (attachments are mostly compressed formats already); tar and folders ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    /// JSON, CSV.
    Text,
    /// Attachments.
    Binary,
}

/// A package being written.
pub(crate) trait Package: Send {
    /// Whether [`Package::add_file`] needs the exact size of a file before its content (tar
    /// writes it in the entry's header).
    fn needs_size(&self) -> bool;

    /// Adds the file `path` (relative, `/`-separated, every component a safe name) with the
    /// content `data` yields. When `size` is given, `data` must yield exactly that many bytes.
    fn add_file(
        &mut self,
        path: &str,
        size: Option<u64>,
        content: Content,
        data: &mut dyn Read,
    ) -> io::Result<()>;

    /// Completes the package (a tar's end blocks, a zip's central directory) and flushes it.
    /// Returns the bytes written.
    fn finish(self: Box<Self>) -> io::Result<u64>;

    /// Gives up: a stream is left without its end, so that no reader takes it for complete.
    fn abandon(self: Box<Self>);
}

/// A tar archive (POSIX ustar with GNU long names) written to any stream.
pub(crate) struct TarPackage<W: Write + Send> {
    builder: tar::Builder<Guarded<BufWriter<W>>>,
    abandoned: Arc<AtomicBool>,
    mtime: u64,
}

impl<W: Write + Send> TarPackage<W> {
    /// A tar archive whose entries all carry `mtime` (seconds since 1970).
    pub(crate) fn new(out: W, mtime: u64) -> TarPackage<W> {
        let writer = Guarded::new(BufWriter::with_capacity(WRITE_BUFFER, out));
        let abandoned = writer.abandoned.clone();
        let mut builder = tar::Builder::new(writer);
        builder.mode(tar::HeaderMode::Deterministic);
        TarPackage {
            builder,
            abandoned,
            mtime,
        }
    }
}

impl<W: Write + Send> Package for TarPackage<W> {
    fn needs_size(&self) -> bool {
        true
    }

    fn add_file(
        &mut self,
        path: &str,
        size: Option<u64>,
        _content: Content,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let size = size.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "a tar entry needs its size")
        })?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(self.mtime);
        header.set_size(size);
        // The tar crate pads whatever the reader yields to the header's size only by blocks,
        // so the reader itself must check the length (see `ChunkReader`).
        self.builder.append_data(&mut header, path, data)
    }

    fn finish(self: Box<Self>) -> io::Result<u64> {
        let mut writer = self.builder.into_inner()?;
        writer.flush()?;
        Ok(writer.written)
    }

    fn abandon(self: Box<Self>) {
        // The builder writes the end blocks when dropped; they are dropped instead.
        self.abandoned.store(true, Ordering::Relaxed);
    }
}

/// Counts bytes, and drops every write once the package is abandoned (what was written
/// before still reaches the stream when the buffer below is flushed).
pub(crate) struct Guarded<W: Write> {
    inner: W,
    written: u64,
    abandoned: Arc<AtomicBool>,
}

impl<W: Write> Guarded<W> {
    fn new(inner: W) -> Guarded<W> {
        Guarded {
            inner,
            written: 0,
            abandoned: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl<W: Write> Write for Guarded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.abandoned.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A zip archive, to a file (zip seeks back to complete each entry's header) or to a stream
/// (each entry followed by a data descriptor instead).
pub(crate) struct ZipPackage<W: Write + Seek + Send> {
    zip: zip::ZipWriter<W>,
    time: DateTime,
    /// For a stream: set to drop what the archive would still write (its central directory).
    abandoned: Option<Arc<AtomicBool>>,
}

impl ZipPackage<BufWriter<File>> {
    /// A zip archive in `file` whose entries all carry `time` (UTC, as the snapshot's).
    pub(crate) fn new(file: File, time: &str) -> Self {
        ZipPackage {
            zip: zip::ZipWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file)),
            time: zip_time(time),
            abandoned: None,
        }
    }
}

impl ZipPackage<zip::write::StreamWriter<Guarded<BufWriter<File>>>> {
    /// A zip archive written as a stream to `out` (a FIFO, a character device), which cannot
    /// seek.
    pub(crate) fn stream(out: File, time: &str) -> Self {
        let writer = Guarded::new(BufWriter::with_capacity(WRITE_BUFFER, out));
        let abandoned = writer.abandoned.clone();
        ZipPackage {
            zip: zip::ZipWriter::new_stream(writer),
            time: zip_time(time),
            abandoned: Some(abandoned),
        }
    }
}

/// The zip (DOS) time for an RFC 3339 UTC time: `2026-11-22T03:00:00Z` gives 2026-11-22
/// 03:00:00. Times zip cannot hold (before 1980, after 2107, unparsable) give 1980-01-01.
fn zip_time(time: &str) -> DateTime {
    fn parse(time: &str) -> Option<DateTime> {
        let part = |range: std::ops::Range<usize>| time.get(range)?.parse::<u8>().ok();
        let year = time.get(0..4)?.parse::<u16>().ok()?;
        DateTime::from_date_and_time(
            year,
            part(5..7)?,
            part(8..10)?,
            part(11..13)?,
            part(14..16)?,
            part(17..19)?,
        )
        .ok()
    }
    parse(time).unwrap_or_default()
}

impl<W: Write + Seek + Send> Package for ZipPackage<W> {
    fn needs_size(&self) -> bool {
        false
    }

    fn add_file(
        &mut self,
        path: &str,
        size: Option<u64>,
        content: Content,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let method = match content {
            Content::Text => CompressionMethod::Deflated,
            Content::Binary => CompressionMethod::Stored,
        };
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .last_modified_time(self.time)
            .unix_permissions(0o644)
            .system(System::Unix)
            // Zip64 records only where 4 GiB may be exceeded (or the size is not known).
            .large_file(size.is_none_or(|s| s >= u64::from(u32::MAX)));
        self.zip.start_file(path, options)?;
        io::copy(data, &mut self.zip)?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> io::Result<u64> {
        let mut out = self.zip.finish()?;
        out.flush()?;
        out.stream_position()
    }

    fn abandon(self: Box<Self>) {
        // A file is a temporary one, deleted by the caller; a stream is left without its
        // central directory, so that no reader takes it for complete.
        if let Some(abandoned) = &self.abandoned {
            abandoned.store(true, Ordering::Relaxed);
        }
    }
}

/// A plain folder.
pub(crate) struct DirPackage {
    root: PathBuf,
    written: u64,
}

impl DirPackage {
    /// Files go below `root`, which exists and is empty.
    pub(crate) fn new(root: PathBuf) -> DirPackage {
        DirPackage { root, written: 0 }
    }
}

impl Package for DirPackage {
    fn needs_size(&self) -> bool {
        false
    }

    fn add_file(
        &mut self,
        path: &str,
        _size: Option<u64>,
        _content: Content,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        // Names come from `names::safe_name`; this only guards against a layout bug.
        let relative = safe_relative(path).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsafe path {path:?} in the export layout"),
            )
        })?;
        let target = self.root.join(relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        self.written += io::copy(data, &mut out)?;
        out.flush()?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> io::Result<u64> {
        Ok(self.written)
    }

    fn abandon(self: Box<Self>) {}
}

/// `path` (`/`-separated) as a relative path, if every component is a plain name: not empty,
/// not `.` or `..`, no separator or drive of another system in it.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.split('/') {
        if component.is_empty()
            || component == "."
            || component == ".."
            || component.contains(['\\', ':', '\0'])
        {
            return None;
        }
        out.push(component);
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Where an export is written, prepared before anything is read: checks done, a temporary file
/// or folder created next to the destination, or the stream opened.
#[derive(Debug)]
pub(crate) enum Target {
    /// Standard output, as the caller opened it (tar only).
    Stdout(CallerStream),
    /// A character device or a FIFO (`/dev/null`, `/dev/stdout`, a named pipe), open for
    /// writing as a stream: it is never replaced, whatever `--force` says.
    Stream(File),
    /// A regular file, written as `temp` and renamed to `path` by [`Target::commit`].
    File {
        /// The file to replace or create: `-o`, or the file a symbolic link there points to.
        path: PathBuf,
        /// Whether it existed when checked (then it was a regular file).
        existed: bool,
        temp: tempfile::NamedTempFile,
    },
    /// A folder. A new one is written as `temp` and renamed to `path`; into an existing one
    /// (empty, or holding an earlier export), [`Target::commit`] moves the new files, after
    /// moving aside the files the earlier export wrote. Nothing else in it is touched.
    Dir {
        path: PathBuf,
        temp: tempfile::TempDir,
        /// For an existing folder: the files the earlier export wrote (relative paths).
        existing: Option<BTreeSet<PathBuf>>,
    },
}

/// A stream the caller opened (standard output), written to as it is.
pub(crate) struct CallerStream(pub(crate) Box<dyn Write + Send>);

impl CallerStream {
    /// The stream, leaving an empty sink in its place.
    pub(crate) fn take(&mut self) -> Box<dyn Write + Send> {
        std::mem::replace(&mut self.0, Box::new(std::io::sink()))
    }
}

impl std::fmt::Debug for CallerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallerStream")
    }
}

/// Why a destination cannot be used.
#[derive(Debug)]
pub(crate) enum TargetProblem {
    /// It exists and `--force` was not given.
    Exists,
    /// A file was asked for and it is a folder.
    IsDir,
    /// A folder was asked for and it is something else.
    NotDir,
    /// A character device or FIFO, for a format that cannot be written as a stream.
    NotStreamable,
    /// A terminal (a character device): an archive is not for the screen.
    Terminal,
    /// Neither a regular file, a folder, a character device nor a FIFO (a block device, a
    /// socket, a symbolic link to nothing); says which.
    Special(&'static str),
    /// `--force` for a non-empty folder that is not an earlier export.
    NotAnExport,
    /// An earlier export whose files cannot be told (the reason).
    UnknownExport(String),
    /// The folder it would go in does not exist.
    NoParent(PathBuf),
    /// Checking or creating failed.
    Io(io::Error),
}

impl Target {
    /// Prepares a file destination for a format that can (`stream`) or cannot be written as a
    /// stream. A character device or a FIFO gets the stream (it is not replaced, so `--force`
    /// is not needed); a regular file is replaced only with `force`, through a symbolic link
    /// the file it points to; anything else is refused.
    pub(crate) fn file(path: &Path, force: bool, stream: bool) -> Result<Target, TargetProblem> {
        let mut destination = path.to_owned();
        let mut existed = false;
        match fs::metadata(path) {
            Ok(meta) if is_stream(&meta) => {
                if !stream {
                    return Err(TargetProblem::NotStreamable);
                }
                // Opening a FIFO waits for its reader; that is what the user asked for.
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(TargetProblem::Io)?;
                if std::io::IsTerminal::is_terminal(&file) {
                    return Err(TargetProblem::Terminal);
                }
                return Ok(Target::Stream(file));
            }
            Ok(meta) if meta.is_dir() => return Err(TargetProblem::IsDir),
            Ok(meta) if !meta.is_file() => return Err(TargetProblem::Special(kind_of(&meta))),
            Ok(_) if !force => return Err(TargetProblem::Exists),
            Ok(_) => {
                existed = true;
                if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                    destination = fs::canonicalize(path).map_err(TargetProblem::Io)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(TargetProblem::Special("a symbolic link to nothing"));
                }
            }
            Err(e) => return Err(TargetProblem::Io(e)),
        }
        let parent = parent_of(&destination)?;
        let prefix = temp_prefix(&destination);
        let temp = temp_builder(&prefix, 0o666)
            .tempfile_in(&parent)
            .map_err(TargetProblem::Io)?;
        Ok(Target::File {
            path: destination,
            existed,
            temp,
        })
    }

    /// Prepares a folder destination. An existing empty folder is used; a non-empty one only
    /// with `force`, and only when it holds an earlier export (its `manifest.json` says so):
    /// then only the files that export wrote are replaced, so that `--force` never deletes
    /// anything else.
    pub(crate) fn dir(path: &Path, force: bool) -> Result<Target, TargetProblem> {
        let existing = match fs::metadata(path) {
            Ok(meta) if is_stream(&meta) => return Err(TargetProblem::NotStreamable),
            Ok(meta) if !meta.is_dir() => return Err(TargetProblem::NotDir),
            Ok(_) => {
                let empty = fs::read_dir(path)
                    .map_err(TargetProblem::Io)?
                    .next()
                    .is_none();
                if empty {
                    Some(BTreeSet::new())
                } else if !force {
                    return Err(TargetProblem::Exists);
                } else {
                    match earlier_export(path).map_err(TargetProblem::UnknownExport)? {
                        Some(files) => Some(files),
                        None => return Err(TargetProblem::NotAnExport),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(TargetProblem::Special("a symbolic link to nothing"));
                }
                None
            }
            Err(e) => return Err(TargetProblem::Io(e)),
        };
        // Into an existing folder, the new files are written inside it (a hidden folder), so
        // that moving them into place never crosses file systems.
        let work_in = match &existing {
            Some(_) => path.to_owned(),
            None => parent_of(path)?,
        };
        let prefix = temp_prefix(path);
        let temp = temp_builder(&prefix, 0o777)
            .tempdir_in(&work_in)
            .map_err(TargetProblem::Io)?;
        Ok(Target::Dir {
            path: path.to_owned(),
            temp,
            existing,
        })
    }

    /// Where the package is being written: the temporary file or folder.
    pub(crate) fn work_path(&self) -> Option<&Path> {
        match self {
            Target::Stdout(_) | Target::Stream(_) => None,
            Target::File { temp, .. } => Some(temp.path()),
            Target::Dir { temp, .. } => Some(temp.path()),
        }
    }

    /// Moves the finished package to its destination, replacing what `--force` allowed.
    pub(crate) fn commit(self) -> io::Result<()> {
        match self {
            Target::Stdout(_) | Target::Stream(_) => Ok(()),
            Target::File {
                path,
                existed,
                temp,
            } => {
                temp.as_file().sync_all()?;
                if !existed {
                    // Whatever appeared there meanwhile is not replaced.
                    temp.persist_noclobber(&path).map_err(|e| e.error)?;
                    return Ok(());
                }
                match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_file() => {}
                    Ok(meta) => {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!(
                                "{} became {} during the export; it was left as it is",
                                path.display(),
                                kind_of(&meta)
                            ),
                        ));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                temp.persist(&path).map_err(|e| e.error)?;
                Ok(())
            }
            Target::Dir {
                path,
                temp,
                existing: None,
            } => {
                let work = temp.keep();
                if let Err(e) = fs::rename(&work, &path) {
                    let _ = fs::remove_dir_all(&work);
                    return Err(e);
                }
                Ok(())
            }
            Target::Dir {
                path,
                temp,
                existing: Some(earlier),
            } => replace_files(&path, temp.path(), &earlier),
        }
    }
}

/// Whether `meta` (of a followed path) is something written as a stream.
pub(crate) fn is_stream(meta: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        kind.is_char_device() || kind.is_fifo()
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

/// What a file that is not a regular file, a folder or a stream is, for messages.
fn kind_of(meta: &fs::Metadata) -> &'static str {
    let kind = meta.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_fifo() {
            return "a FIFO";
        }
    }
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a folder"
    } else {
        "a special file"
    }
}

/// Moves the new export's files from `work` into `root`, replacing the files of the earlier
/// export there (`earlier`, relative paths) and nothing else: a file of the user's where the
/// new export writes stops it before anything is moved. The earlier files are moved aside
/// first, so that a failure puts everything back as it was.
fn replace_files(root: &Path, work: &Path, earlier: &BTreeSet<PathBuf>) -> io::Result<()> {
    let new_files = files_below(work)?;
    for file in &new_files {
        let target = root.join(file);
        let replaceable = earlier.contains(file) && is_plain_file_below(root, file);
        if !replaceable && fs::symlink_metadata(&target).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and was not written by the earlier export; move it away and \
                     export again",
                    target.display()
                ),
            ));
        }
    }
    let aside = tempfile::Builder::new()
        .prefix(&temp_prefix(root))
        .suffix(".old")
        .tempdir_in(root)?;
    let mut moved_aside = Vec::new();
    let mut moved_in = Vec::new();
    let moved = (|| {
        for file in earlier {
            if !is_plain_file_below(root, file) {
                continue;
            }
            let to = aside.path().join(file);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(root.join(file), to)?;
            moved_aside.push(file);
        }
        for file in &new_files {
            let to = root.join(file);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(work.join(file), to)?;
            moved_in.push(file);
        }
        io::Result::Ok(())
    })();
    if let Err(e) = moved {
        for file in moved_in.into_iter().rev() {
            let _ = fs::rename(root.join(file), work.join(file));
        }
        for file in moved_aside.into_iter().rev() {
            let _ = fs::rename(aside.path().join(file), root.join(file));
        }
        return Err(e);
    }
    // Folders the earlier export made and that hold nothing now.
    for file in earlier {
        for folder in file.ancestors().skip(1) {
            if folder.as_os_str().is_empty() || fs::remove_dir(root.join(folder)).is_err() {
                break;
            }
        }
    }
    Ok(())
}

/// Whether `root/relative` is a regular file reached through folders only (no symbolic
/// link on the way), so that moving it cannot reach outside `root`.
fn is_plain_file_below(root: &Path, relative: &Path) -> bool {
    let mut path = root.to_owned();
    let mut components = relative.components().peekable();
    while let Some(component) = components.next() {
        let std::path::Component::Normal(name) = component else {
            return false;
        };
        path.push(name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            return false;
        };
        let last = components.peek().is_none();
        if (last && !meta.is_file()) || (!last && !meta.is_dir()) {
            return false;
        }
    }
    true
}

/// Every file below `dir`, as relative paths.
fn files_below(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        for entry in fs::read_dir(dir.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A builder for a temporary sibling (named `prefix…partial`) that, once renamed, has the
/// permissions a new file or folder gets by default: `mode` less the umask (applied by the
/// system on creation), not the private 0600/0700 of temporary files.
fn temp_builder(prefix: &str, mode: u32) -> tempfile::Builder<'_, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    builder.suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder
}

/// `.name.` for temporary siblings of `path` (hidden, and named after what they will become).
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".to_owned());
    format!(".{name}.")
}

fn parent_of(path: &Path) -> Result<PathBuf, TargetProblem> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if parent.is_dir() {
        Ok(parent)
    } else {
        Err(TargetProblem::NoParent(parent))
    }
}

/// The largest `manifest.json` read to recognise an earlier export.
const MANIFEST_LIMIT: u64 = 64 << 20;

/// The files of the airback export in `dir` (relative paths), from its `manifest.json`:
/// the manifest, `schema.json`, each table's JSON and CSV, and every attachment file the
/// tables' JSON gives a `path`. `None` when `dir` holds no airback export; an error (saying
/// why) when it seems to, but its files cannot be told.
fn earlier_export(dir: &Path) -> Result<Option<BTreeSet<PathBuf>>, String> {
    let Ok(file) = File::open(dir.join("manifest.json")) else {
        return Ok(None);
    };
    let mut text = Vec::new();
    if file.take(MANIFEST_LIMIT).read_to_end(&mut text).is_err() {
        return Ok(None);
    }
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return Ok(None);
    };
    if manifest.get("format").and_then(|f| f.as_str()) != Some(super::MANIFEST_FORMAT) {
        return Ok(None);
    }
    let unsafe_path = |path: &str| format!("its manifest.json names the unsafe path {path:?}");
    let mut files = BTreeSet::from([PathBuf::from("manifest.json"), PathBuf::from("schema.json")]);
    let tables = manifest.get("tables").and_then(|t| t.as_array());
    for table in tables.into_iter().flatten() {
        for key in ["json", "csv", "comments"] {
            if let Some(path) = table.get(key).and_then(|p| p.as_str()) {
                files.insert(safe_relative(path).ok_or_else(|| unsafe_path(path))?);
            }
        }
        let Some(json) = table.get("json").and_then(|p| p.as_str()) else {
            continue;
        };
        let json = safe_relative(json).ok_or_else(|| unsafe_path(json))?;
        if !is_plain_file_below(dir, &json) {
            // Deleted since: the attachments it listed are left alone.
            continue;
        }
        for path in attachment_paths(&dir.join(&json))
            .map_err(|e| format!("cannot read {}: {e}", json.display()))?
        {
            let relative = safe_relative(&path)
                .filter(|p| p.starts_with("attachments"))
                .ok_or_else(|| format!("{} names the unsafe path {path:?}", json.display()))?;
            files.insert(relative);
        }
    }
    Ok(Some(files))
}

/// The `path` of every attachment in a table's JSON as an export writes it (docs/EXPORT.md:
/// a header, then one record per line).
fn attachment_paths(json: &Path) -> io::Result<BTreeSet<String>> {
    let mut paths = BTreeSet::new();
    let reader = io::BufReader::new(File::open(json)?);
    for line in io::BufRead::lines(reader) {
        let line = line?;
        let line = line.trim_end().trim_end_matches(',');
        if !line.starts_with("{\"id\":") {
            continue;
        }
        let record: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("it is not the JSON an export writes ({e})"),
            )
        })?;
        super::render::for_each_attachment(&record, &mut |attachment| {
            if let Some(path) = attachment.get("path").and_then(|p| p.as_str()) {
                paths.insert(path.to_owned());
            }
        });
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut package: Box<dyn Package> = Box::new(TarPackage::new(&mut out, 1_700_000_000));
        for (path, data) in files {
            package
                .add_file(
                    path,
                    Some(data.len() as u64),
                    Content::Binary,
                    &mut &data[..],
                )
                .unwrap();
        }
        let written = package.finish().unwrap();
        assert_eq!(written as usize, out.len());
        out
    }

    #[test]
    fn tar_is_deterministic_and_readable() {
        let long = format!(
            "attachments/{}/recX/{}.txt",
            "t".repeat(120),
            "n".repeat(200)
        );
        let files: Vec<(&str, &[u8])> = vec![
            ("manifest.json", b"{}"),
            (long.as_str(), b"hello"),
            ("empty", b""),
        ];
        let a = tar_bytes(&files);
        assert_eq!(a, tar_bytes(&files));
        let mut archive = tar::Archive::new(&a[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            assert_eq!(entry.header().mtime().unwrap(), 1_700_000_000);
            assert_eq!(entry.header().mode().unwrap(), 0o644);
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            seen.push((path, data));
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1].0, long);
        assert_eq!(seen[1].1, b"hello");
    }

    #[test]
    fn an_abandoned_tar_has_no_end_blocks() {
        let mut out = Vec::new();
        {
            let mut package: Box<dyn Package> = Box::new(TarPackage::new(&mut out, 0));
            package
                .add_file("a", Some(3), Content::Binary, &mut &b"abc"[..])
                .unwrap();
            package.abandon();
        }
        // One header and one data block, flushed by the buffer; no two zero blocks after them.
        assert!(out.len() <= 1024, "{}", out.len());
    }

    #[test]
    fn a_zip_stream_is_readable_and_an_abandoned_one_has_no_end() {
        let write = |abandon: bool| {
            let file = tempfile::tempfile().unwrap();
            let mut package: Box<dyn Package> = Box::new(ZipPackage::stream(
                file.try_clone().unwrap(),
                "2026-01-01T00:00:00Z",
            ));
            package
                .add_file("a.txt", Some(3), Content::Text, &mut &b"abc"[..])
                .unwrap();
            if abandon {
                package.abandon();
            } else {
                let written = package.finish().unwrap();
                assert_eq!(written, file.metadata().unwrap().len());
            }
            let mut bytes = Vec::new();
            let mut file = file;
            file.seek(io::SeekFrom::Start(0)).unwrap();
            file.read_to_end(&mut bytes).unwrap();
            bytes
        };
        let whole = write(false);
        let mut zip = zip::ZipArchive::new(io::Cursor::new(whole)).unwrap();
        let mut text = String::new();
        zip.by_name("a.txt")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "abc");
        // No end-of-central-directory record: no reader takes it for complete.
        let cut = write(true);
        assert!(
            !cut.windows(4).any(|w| w == b"PK\x05\x06"),
            "{} bytes",
            cut.len()
        );
        assert!(zip::ZipArchive::new(io::Cursor::new(cut)).is_err());
    }

    #[test]
    fn zip_times_come_from_the_snapshot() {
        let t = zip_time("2026-11-22T03:04:06Z");
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2026, 11, 22, 3, 4, 6)
        );
        assert_eq!(zip_time("1970-01-01T00:00:00Z"), DateTime::default());
        assert_eq!(zip_time("garbage"), DateTime::default());
    }

    #[test]
    fn targets_refuse_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.tar");
        fs::write(&file, b"old").unwrap();
        assert!(matches!(
            Target::file(&file, false, true),
            Err(TargetProblem::Exists)
        ));
        assert!(matches!(
            Target::file(dir.path(), true, true),
            Err(TargetProblem::IsDir)
        ));
        assert!(matches!(
            Target::file(&dir.path().join("no/such/x.tar"), false, true),
            Err(TargetProblem::NoParent(_))
        ));
        let target = Target::file(&file, true, true).unwrap();
        fs::write(target.work_path().unwrap(), b"new").unwrap();
        target.commit().unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"new");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        // A folder is replaced only if it is empty or an earlier export.
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("precious.txt"), b"keep me").unwrap();
        assert!(matches!(
            Target::dir(&out, false),
            Err(TargetProblem::Exists)
        ));
        assert!(matches!(
            Target::dir(&out, true),
            Err(TargetProblem::NotAnExport)
        ));
        fs::write(
            out.join("manifest.json"),
            format!(r#"{{"format":"{}"}}"#, super::super::MANIFEST_FORMAT),
        )
        .unwrap();
        let target = Target::dir(&out, true).unwrap();
        let work = target.work_path().unwrap().to_owned();
        fs::write(work.join("manifest.json"), b"{}").unwrap();
        fs::write(work.join("new.txt"), b"n").unwrap();
        target.commit().unwrap();
        // Only what the earlier export wrote was replaced.
        assert!(out.join("new.txt").exists() && out.join("precious.txt").exists());
        assert_eq!(fs::read(out.join("manifest.json")).unwrap(), b"{}");
        assert_eq!(fs::read_dir(&out).unwrap().count(), 3);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    /// An earlier export of `tables` (stem, attachment paths), written below `root`.
    fn write_export(root: &Path, tables: &[(&str, &[&str])]) {
        let manifest = serde_json::json!({
            "format": super::super::MANIFEST_FORMAT,
            "tables": tables.iter().map(|(stem, _)| serde_json::json!({
                "json": format!("tables/{stem}.json"), "csv": format!("tables/{stem}.csv"),
            })).collect::<Vec<_>>(),
        });
        fs::create_dir_all(root.join("tables")).unwrap();
        fs::write(root.join("manifest.json"), manifest.to_string()).unwrap();
        fs::write(root.join("schema.json"), b"{}").unwrap();
        for (stem, paths) in tables {
            let mut json = String::from("{\"table\":{},\n\"fields\":[],\n\"records\":[");
            for (i, path) in paths.iter().enumerate() {
                // As `render::json_record` writes it: the id first.
                let cell =
                    serde_json::json!([{"id": format!("att{i}"), "filename": "f", "path": path}]);
                json.push_str(if i == 0 { "\n" } else { ",\n" });
                json.push_str(&format!(
                    "{{\"id\":\"rec{i}\",\"fields\":{{\"F\":{cell}}}}}"
                ));
                let file = root.join(path);
                fs::create_dir_all(file.parent().unwrap()).unwrap();
                fs::write(file, b"old").unwrap();
            }
            json.push_str("\n]}\n");
            fs::write(root.join(format!("tables/{stem}.json")), json).unwrap();
            fs::write(root.join(format!("tables/{stem}.csv")), b"id\r\n").unwrap();
        }
    }

    #[test]
    fn an_earlier_export_lists_its_files_from_its_manifest_and_tables() {
        let dir = tempfile::tempdir().unwrap();
        write_export(dir.path(), &[("T", &["attachments/T/rec0/a.png"])]);
        let files = earlier_export(dir.path()).unwrap().unwrap();
        let files: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            files,
            [
                "attachments/T/rec0/a.png",
                "manifest.json",
                "schema.json",
                "tables/T.csv",
                "tables/T.json"
            ]
        );
        // A path out of the folder is refused, not followed.
        write_export(dir.path(), &[("T", &["attachments/../../etc/passwd"])]);
        assert!(
            earlier_export(dir.path())
                .unwrap_err()
                .contains("unsafe path")
        );
        fs::write(dir.path().join("manifest.json"), b"{\"format\":\"other\"}").unwrap();
        assert!(earlier_export(dir.path()).unwrap().is_none());
    }

    #[test]
    fn replacing_an_export_stops_at_a_users_file_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        write_export(&out, &[("T", &["attachments/T/rec0/a.png"])]);
        // The user's file where the new export writes.
        fs::write(out.join("tables/U.json"), b"mine").unwrap();
        let target = Target::dir(&out, true).unwrap();
        let work = target.work_path().unwrap().to_owned();
        fs::create_dir_all(work.join("tables")).unwrap();
        fs::write(work.join("manifest.json"), b"new").unwrap();
        fs::write(work.join("tables/U.json"), b"new").unwrap();
        let err = target.commit().unwrap_err();
        assert!(
            err.to_string()
                .contains("was not written by the earlier export"),
            "{err}"
        );
        assert_eq!(fs::read(out.join("tables/U.json")).unwrap(), b"mine");
        assert_eq!(
            fs::read(out.join("attachments/T/rec0/a.png")).unwrap(),
            b"old"
        );
        assert_ne!(fs::read(out.join("manifest.json")).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
    }

    #[test]
    #[allow(clippy::print_stderr)] // says why it skipped
    fn a_fifo_is_a_stream_and_only_for_archives() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: mkfifo is not available");
            return;
        }
        assert!(matches!(
            Target::file(&fifo, true, false),
            Err(TargetProblem::NotStreamable)
        ));
        assert!(matches!(
            Target::dir(&fifo, true),
            Err(TargetProblem::NotStreamable)
        ));
        let dangling = dir.path().join("dangling.tar");
        std::os::unix::fs::symlink(dir.path().join("nothing"), &dangling).unwrap();
        assert!(matches!(
            Target::file(&dangling, true, true),
            Err(TargetProblem::Special(_))
        ));
    }

    #[test]
    fn relative_paths_are_plain_names_only() {
        assert_eq!(safe_relative("a/b.txt"), Some(PathBuf::from("a/b.txt")));
        for bad in ["", "/etc", "a//b", "a/../b", "./a", "a\\b", "c:x"] {
            assert_eq!(safe_relative(bad), None, "{bad:?}");
        }
    }
}
