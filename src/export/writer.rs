//! Writing a package (tar, zip or folder) in order: `manifest.json`, `schema.json`, each
//! table's JSON and CSV (and comments), then every attachment, streamed. A table's texts are kept in memory
//! up to 8 MiB each and rendered a second time, as they are written, when larger: a tar needs
//! each entry's size before its content. Every file reaches the package through a
//! `ChunkReader`, which checks that exactly the announced bytes come out, and keeps a failure
//! to read the snapshot apart from the write error it causes.
//!
//! It relies on the layout (`plan.rs`) for every name and path, on `render.rs` for the text,
//! and on the source for records and attachment bytes. The package formats themselves are in
//! `package.rs`.

use std::io::{self, Read};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;

use super::ExportError;
use super::package::{Content, Package};
use super::plan::{Layout, TableLayout};
use super::render::{Capture, TableText, TextKind};
use super::source::Source;
use crate::progress::Progress;

/// Writes the package's files in order: manifest, schema, each table's JSON and CSV, then
/// every attachment.
pub(super) fn write_package(
    source: &Source,
    layout: &Layout,
    manifest: &Value,
    package: &mut dyn Package,
    what: &str,
    progress: &dyn Progress,
    text_buffer: usize,
) -> Result<(), ExportError> {
    let begun = Instant::now();
    let mut w = PackageWriter {
        source,
        layout,
        package,
        what,
        progress,
        text_buffer,
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
        w.comments(table)?;
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

    /// A table's comments, `comments/<table>.json`, when it has some: a JSON array with one
    /// `{"comments":[…],"record":"rec…"}` per line, sorted by record id, each comment as the
    /// API returned it, oldest first. Held in memory (comments are small).
    fn comments(&mut self, table: &TableLayout) -> Result<(), ExportError> {
        if self.source.base.comment_count(&table.table.id) == 0 {
            return Ok(());
        }
        let path = table.comments_path();
        let mut bytes = b"[".to_vec();
        for (index, item) in self.source.comments(&table.table.id).enumerate() {
            let item = item.map_err(ExportError::reading(format!(
                "the comments of table `{}`",
                table.table.name
            )))?;
            bytes.extend_from_slice(if index == 0 { b"\n" } else { b",\n" });
            let line = serde_json::json!({"comments": item.comments, "record": item.record});
            serde_json::to_writer(&mut bytes, &line).expect("JSON values serialize");
        }
        self.source.check_stop()?;
        bytes.extend_from_slice(b"\n]\n");
        self.bytes(&path, bytes, false)
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
        self.source.check_stop()?;
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
}
