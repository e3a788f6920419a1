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

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

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
    mtime: u64,
}

impl<W: Write + Send> TarPackage<W> {
    /// A tar archive whose entries all carry `mtime` (seconds since 1970).
    pub(crate) fn new(out: W, mtime: u64) -> TarPackage<W> {
        let writer = Guarded {
            inner: BufWriter::with_capacity(WRITE_BUFFER, out),
            written: 0,
            abandoned: false,
        };
        let mut builder = tar::Builder::new(writer);
        builder.mode(tar::HeaderMode::Deterministic);
        TarPackage { builder, mtime }
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

    fn abandon(mut self: Box<Self>) {
        // The builder writes the end blocks when dropped; make that write fail instead.
        self.builder.get_mut().abandoned = true;
    }
}

/// Counts bytes, and refuses every write once the package is abandoned.
struct Guarded<W: Write> {
    inner: W,
    written: u64,
    abandoned: bool,
}

impl<W: Write> Write for Guarded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.abandoned {
            return Err(io::Error::other("the export was abandoned"));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A zip archive written to a file (zip needs to seek back to each entry's header).
pub(crate) struct ZipPackage {
    zip: zip::ZipWriter<BufWriter<File>>,
    time: DateTime,
}

impl ZipPackage {
    /// A zip archive in `file` whose entries all carry `time` (UTC, as the snapshot's).
    pub(crate) fn new(file: File, time: &str) -> ZipPackage {
        ZipPackage {
            zip: zip::ZipWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file)),
            time: zip_time(time),
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

impl Package for ZipPackage {
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
        // The file is a temporary one, deleted by the caller.
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
        let mut target = self.root.clone();
        for component in path.split('/') {
            // Names come from `names::safe_name`; this only guards against a layout bug.
            if component.is_empty() || component == "." || component == ".." {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unsafe path {path:?} in the export layout"),
                ));
            }
            target.push(component);
        }
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

/// Where an export is written, prepared before anything is read: checks done, a temporary file
/// or folder created next to the destination.
#[derive(Debug)]
pub(crate) enum Target {
    /// Standard output (tar only).
    Stdout,
    /// A file, written as `temp` and renamed to `path` by [`Target::commit`].
    File {
        path: PathBuf,
        temp: tempfile::NamedTempFile,
    },
    /// A folder, written as `temp` and renamed to `path` by [`Target::commit`].
    Dir {
        path: PathBuf,
        temp: tempfile::TempDir,
    },
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
    /// `--force` for a non-empty folder that is not an earlier export.
    NotAnExport,
    /// The folder it would go in does not exist.
    NoParent(PathBuf),
    /// Checking or creating failed.
    Io(io::Error),
}

impl Target {
    /// Prepares a file destination.
    pub(crate) fn file(path: &Path, force: bool) -> Result<Target, TargetProblem> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => return Err(TargetProblem::IsDir),
            Ok(_) if !force => return Err(TargetProblem::Exists),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(TargetProblem::Io(e)),
        }
        let parent = parent_of(path)?;
        let prefix = temp_prefix(path);
        let temp = temp_builder(&prefix, 0o666)
            .tempfile_in(&parent)
            .map_err(TargetProblem::Io)?;
        Ok(Target::File {
            path: path.to_owned(),
            temp,
        })
    }

    /// Prepares a folder destination. An existing empty folder is used; a non-empty one is
    /// replaced only with `force`, and only when it holds an earlier export (its
    /// `manifest.json` says so), so that `--force` never deletes anything else.
    pub(crate) fn dir(path: &Path, force: bool) -> Result<Target, TargetProblem> {
        match fs::symlink_metadata(path) {
            Ok(meta) if !meta.is_dir() => return Err(TargetProblem::NotDir),
            Ok(_) => {
                let empty = fs::read_dir(path)
                    .map_err(TargetProblem::Io)?
                    .next()
                    .is_none();
                if !empty && !force {
                    return Err(TargetProblem::Exists);
                }
                if !empty && !is_export(path) {
                    return Err(TargetProblem::NotAnExport);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(TargetProblem::Io(e)),
        }
        let parent = parent_of(path)?;
        let prefix = temp_prefix(path);
        let temp = temp_builder(&prefix, 0o777)
            .tempdir_in(&parent)
            .map_err(TargetProblem::Io)?;
        Ok(Target::Dir {
            path: path.to_owned(),
            temp,
        })
    }

    /// Where the package is being written: the temporary file or folder.
    pub(crate) fn work_path(&self) -> Option<&Path> {
        match self {
            Target::Stdout => None,
            Target::File { temp, .. } => Some(temp.path()),
            Target::Dir { temp, .. } => Some(temp.path()),
        }
    }

    /// Moves the finished package to its destination, replacing what `--force` allowed.
    pub(crate) fn commit(self) -> io::Result<()> {
        match self {
            Target::Stdout => Ok(()),
            Target::File { path, temp } => {
                temp.as_file().sync_all()?;
                temp.persist(&path).map_err(|e| e.error)?;
                Ok(())
            }
            Target::Dir { path, temp } => {
                let parent = parent_of(&path).map_err(|p| match p {
                    TargetProblem::Io(e) => e,
                    _ => io::Error::other("the destination's folder disappeared"),
                })?;
                let work = temp.keep();
                if fs::symlink_metadata(&path).is_ok() {
                    // Move the old folder aside first, so that a failure leaves one of them
                    // in place.
                    let old = tempfile::Builder::new()
                        .prefix(&temp_prefix(&path))
                        .suffix(".old")
                        .tempdir_in(&parent)?
                        .keep();
                    fs::remove_dir(&old)?;
                    fs::rename(&path, &old)?;
                    if let Err(e) = fs::rename(&work, &path) {
                        let _ = fs::rename(&old, &path);
                        let _ = fs::remove_dir_all(&work);
                        return Err(e);
                    }
                    fs::remove_dir_all(&old)?;
                } else if let Err(e) = fs::rename(&work, &path) {
                    let _ = fs::remove_dir_all(&work);
                    return Err(e);
                }
                Ok(())
            }
        }
    }
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

/// Whether `dir` holds an airback export (a `manifest.json` naming the format).
fn is_export(dir: &Path) -> bool {
    let Ok(mut file) = File::open(dir.join("manifest.json")) else {
        return false;
    };
    let mut head = Vec::new();
    if Read::take(&mut file, 64 * 1024)
        .read_to_end(&mut head)
        .is_err()
    {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(&head)
        .ok()
        .and_then(|m| m.get("format").and_then(|f| f.as_str()).map(str::to_owned))
        .is_some_and(|f| f == super::MANIFEST_FORMAT)
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
            Target::file(&file, false),
            Err(TargetProblem::Exists)
        ));
        assert!(matches!(
            Target::file(dir.path(), true),
            Err(TargetProblem::IsDir)
        ));
        assert!(matches!(
            Target::file(&dir.path().join("no/such/x.tar"), false),
            Err(TargetProblem::NoParent(_))
        ));
        let target = Target::file(&file, true).unwrap();
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
        fs::write(target.work_path().unwrap().join("new.txt"), b"n").unwrap();
        target.commit().unwrap();
        assert!(out.join("new.txt").exists() && !out.join("precious.txt").exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
