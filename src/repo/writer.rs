//! Writing blobs: chunk, hash, deduplicate, compress, pack, upload, index.
//!
//! CPU work (chunking, BLAKE3, zstd, sealing, pack hashing) runs on the rayon pool; the async side only
//! moves finished packs to storage. Uploads are bounded, so memory stays at a few packs whatever
//! the input size. Packs are uploaded first; an index file describing them is written every
//! [`WriterOptions::index_flush_blobs`] blobs or [`WriterOptions::index_flush_interval`], and
//! by [`BlobWriter::flush`]. A snapshot may only be saved after `flush` returned.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::index::{IndexFile, IndexPack, MAX_BLOBS_PER_INDEX_FILE};
use super::pack::{BlobKind, FinishedPack, PackBuilder, pack_path};
use super::{RepoError, Repository, Result};
use crate::codec::{self, Dictionary, EncodedBlob};
use crate::crypto::ObjectKind;
use crate::id::{BlobId, DictId};

/// Tuning of a writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Packs uploading at once (each holds up to one pack in memory).
    pub uploads: usize,
    /// Write an index file once this many new blobs are uploaded.
    pub index_flush_blobs: usize,
    /// ... or once this much time passed since the last one.
    pub index_flush_interval: Duration,
    /// Bytes being chunked, hashed and compressed at once, over all streams (each in-flight
    /// buffer also has its encoded copy until it is packed): bounds memory when many
    /// attachments download at once.
    pub processing_budget: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            uploads: 2,
            index_flush_blobs: MAX_BLOBS_PER_INDEX_FILE,
            index_flush_interval: Duration::from_secs(300),
            processing_budget: 24 * MIB,
        }
    }
}

/// What a writer did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriterStats {
    /// Blobs passed in (new or not).
    pub blobs_seen: u64,
    /// Their plaintext bytes.
    pub bytes_seen: u64,
    /// Blobs that were new.
    pub blobs_new: u64,
    /// Plaintext bytes of new blobs.
    pub bytes_new_raw: u64,
    /// Stored (compressed, and in format 2 sealed: 16 bytes more each) bytes of new blobs.
    pub bytes_new_stored: u64,
    /// Pack files uploaded.
    pub packs_written: u64,
    /// Bytes of pack files uploaded.
    pub pack_bytes_written: u64,
    /// Index files written.
    pub index_files_written: u64,
    /// Bytes of index files written.
    pub index_bytes_written: u64,
}

/// Writes blobs into a repository. Cheap to clone; clones share packs and statistics, so many
/// tasks can save concurrently and one `flush` finishes them all. A clone made by
/// [`BlobWriter::counting_apart`] also keeps statistics of its own (one per base when several
/// are backed up at once through one writer, which bounds memory: one set of open packs,
/// uploads and processing budget for all of them).
#[derive(Clone, Debug)]
pub struct BlobWriter {
    inner: Arc<Inner>,
    /// Statistics of this clone and the clones made from it.
    tally: Option<Arc<Mutex<WriterStats>>>,
}

#[derive(Debug)]
struct Inner {
    repo: Repository,
    options: WriterOptions,
    permits: Arc<Semaphore>,
    /// One permit per MiB of [`WriterOptions::processing_budget`].
    processing: Arc<Semaphore>,
    state: Mutex<State>,
    /// Set once this writer has tried to train a metadata dictionary.
    dict_attempt: tokio::sync::OnceCell<()>,
    /// Every `process` call holds it shared for its whole run; `flush` takes it exclusively,
    /// so it waits for work that other clones have started (a full pack on its way to
    /// upload) before declaring everything durable.
    gate: tokio::sync::RwLock<()>,
}

const MIB: usize = 1024 * 1024;

/// What a pack grows to: its target, one more blob, and its header (and in format 2 the tags,
/// at most 16 bytes × 25,000 blobs, which fit in the same MiB).
fn pack_capacity(repo: &Repository) -> usize {
    repo.config().pack_size as usize + repo.config().chunker.data.max_size as usize + MIB
}

/// A pack is closed at this many blobs even below its target size, so that one pack always
/// fits in one index file.
const MAX_BLOBS_PER_PACK: usize = MAX_BLOBS_PER_INDEX_FILE / 2;

/// A repository without a dictionary trains one from the first metadata buffer at least this big.
const DICT_MIN_SAMPLE: usize = 256 * 1024;
/// Size of a trained dictionary (docs/BENCHMARKS.md, "Chunk sizes": 16 KiB did best).
const DICT_SIZE: usize = 16 * 1024;
/// Training reads at most this much of the buffer.
const DICT_MAX_SAMPLE: usize = 4 * 1024 * 1024;

#[derive(Debug)]
struct State {
    data: PackBuilder,
    meta: PackBuilder,
    /// Blobs given to a pack during this run, by kind.
    added: HashSet<(BlobKind, BlobId)>,
    /// Uploaded packs that no index file lists yet.
    unindexed: Vec<IndexPack>,
    unindexed_blobs: usize,
    last_index: Instant,
    uploads: Vec<JoinHandle<Result<()>>>,
    stats: WriterStats,
    /// The first upload failure. The writer stays failed: blobs it handed out may not be
    /// stored, so nothing may be committed with it.
    failed: Option<String>,
    /// Dictionaries whose copy this writer packed; named in the index file of that pack.
    dict_copies: Vec<DictId>,
}

impl BlobWriter {
    pub(super) fn new(repo: Repository) -> Self {
        Self::with_options(repo, WriterOptions::default())
    }

    /// A writer with explicit tuning.
    pub fn with_options(repo: Repository, options: WriterOptions) -> Self {
        let capacity = pack_capacity(&repo);
        let crypto = repo.crypto().clone();
        BlobWriter {
            tally: None,
            inner: Arc::new(Inner {
                repo,
                permits: Arc::new(Semaphore::new(options.uploads.max(1))),
                processing: Arc::new(Semaphore::new((options.processing_budget / MIB).max(1))),
                options,
                dict_attempt: tokio::sync::OnceCell::new(),
                gate: tokio::sync::RwLock::new(()),
                state: Mutex::new(State {
                    data: PackBuilder::with_capacity(BlobKind::Data, capacity, &crypto),
                    meta: PackBuilder::with_capacity(BlobKind::Meta, capacity, &crypto),
                    added: HashSet::new(),
                    unindexed: Vec::new(),
                    unindexed_blobs: 0,
                    last_index: Instant::now(),
                    uploads: Vec::new(),
                    stats: WriterStats::default(),
                    failed: None,
                    dict_copies: Vec::new(),
                }),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Statistics so far: of every clone, or of this one if it counts apart.
    pub fn stats(&self) -> WriterStats {
        match &self.tally {
            Some(tally) => tally.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            None => self.state().stats.clone(),
        }
    }

    /// A clone that shares everything (packs, uploads, budget, the blobs packed in this run)
    /// but whose [`BlobWriter::stats`] count only what it and its own clones save, upload and
    /// index.
    pub fn counting_apart(&self) -> BlobWriter {
        BlobWriter {
            inner: self.inner.clone(),
            tally: Some(Arc::default()),
        }
    }

    /// Applies `count` to the shared statistics and to this clone's own.
    fn count(&self, st: &mut State, count: impl Fn(&mut WriterStats)) {
        count(&mut st.stats);
        if let Some(tally) = &self.tally {
            count(&mut tally.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Whether the blob is stored as `kind` (in the index) or was given to a pack of that kind
    /// by this writer.
    pub fn is_known(&self, kind: BlobKind, id: &BlobId) -> bool {
        if self.state().added.contains(&(kind, *id)) {
            return true;
        }
        self.inner.repo.has_blob(id, kind).unwrap_or_else(|e| {
            tracing::warn!("cache lookup failed, storing blob again: {e}");
            false
        })
    }

    /// What sealing adds to each stored blob: 16 bytes in format 2, nothing in format 1.
    fn tag_len(&self) -> usize {
        if self.inner.repo.is_encrypted() {
            crate::crypto::TAG_LEN
        } else {
            0
        }
    }

    /// Fails if an earlier upload failed.
    fn check_failed(&self) -> Result<()> {
        match &self.state().failed {
            Some(e) => Err(RepoError::WriterFailed(e.clone())),
            None => Ok(()),
        }
    }

    /// Saves `bytes` as one blob (not chunked), e.g. a tree.
    pub async fn save_blob(&self, kind: BlobKind, bytes: Vec<u8>) -> Result<BlobId> {
        let (ids, _) = self.process(kind, bytes, Cut::Whole).await?;
        Ok(ids[0])
    }

    /// Saves a whole byte string, chunked; returns its blob ids in order.
    pub async fn save_bytes(&self, kind: BlobKind, bytes: Vec<u8>) -> Result<Vec<BlobId>> {
        Ok(self.process(kind, bytes, Cut::Final).await?.0)
    }

    /// Packs a blob that is already encoded (read from another pack by `prune`), whatever the
    /// index says: the pack it comes from is about to go. It is not compressed again; format
    /// 2 seals it under the new pack's key. A blob this writer already packed is skipped.
    pub(crate) async fn add_encoded(&self, kind: BlobKind, blob: EncodedBlob) -> Result<()> {
        let _running = self.inner.gate.read().await;
        self.check_failed()?;
        let raw = u64::from(blob.raw_length);
        let full = {
            let mut st = self.state();
            self.count(&mut st, |s| {
                s.blobs_seen += 1;
                s.bytes_seen += raw;
            });
            self.pack_new(&mut st, kind, std::slice::from_ref(&blob))
        };
        for builder in full {
            self.upload(builder).await?;
        }
        self.maybe_write_index().await
    }

    /// Puts the blobs this writer has not packed yet into the open pack of `kind`, counting
    /// them, and returns the packs that became full (to upload).
    fn pack_new(&self, st: &mut State, kind: BlobKind, blobs: &[EncodedBlob]) -> Vec<PackBuilder> {
        let pack_size = self.inner.repo.config().pack_size as usize;
        let tag_len = self.tag_len();
        let mut full = Vec::new();
        for blob in blobs {
            if !st.added.insert((kind, blob.id)) {
                continue;
            }
            self.count(st, |s| {
                s.blobs_new += 1;
                s.bytes_new_raw += u64::from(blob.raw_length);
                s.bytes_new_stored += (blob.stored.len() + tag_len) as u64;
            });
            let packer = match kind {
                BlobKind::Data => &mut st.data,
                BlobKind::Meta => &mut st.meta,
            };
            packer.add(blob);
            if packer.len() >= pack_size || packer.count() >= MAX_BLOBS_PER_PACK {
                let repo = &self.inner.repo;
                let fresh = PackBuilder::with_capacity(kind, pack_capacity(repo), repo.crypto());
                full.push(std::mem::replace(packer, fresh));
            }
        }
        full
    }

    /// A saver for a byte stream that arrives piece by piece.
    pub fn file(&self, kind: BlobKind) -> FileSaver {
        let max = self.inner.repo.chunker(kind).params().max_size as usize;
        FileSaver {
            writer: self.clone(),
            kind,
            buf: Vec::new(),
            // Enough for FastCDC's look-ahead (one maximum chunk) plus some, and for metadata
            // at least the sample a dictionary is trained from.
            threshold: match kind {
                BlobKind::Data => max + MIB,
                BlobKind::Meta => (2 * max).max(DICT_MIN_SAMPLE * 4),
            },
            ids: Vec::new(),
            size: 0,
        }
    }

    /// Chunks (unless `Cut::Whole`), hashes and compresses on rayon, then packs the new blobs.
    /// Returns the ids of the chunks cut and the bytes left over (only with `Cut::Ready`).
    async fn process(
        &self,
        kind: BlobKind,
        buf: Vec<u8>,
        cut: Cut,
    ) -> Result<(Vec<BlobId>, Vec<u8>)> {
        let _running = self.inner.gate.read().await;
        self.check_failed()?;
        // Hold budget for this buffer (and its encoded copy) until its blobs are packed. A
        // buffer larger than the whole budget takes all of it.
        let budget = self.inner.options.processing_budget / MIB;
        // The buffer and its encoded copy.
        let wanted = u32::try_from((2 * buf.len()).div_ceil(MIB).clamp(1, budget.max(1)))
            .unwrap_or(u32::MAX);
        let _budget = self
            .inner
            .processing
            .acquire_many(wanted)
            .await
            .map_err(|e| RepoError::Internal(e.to_string()))?;
        let buf = if kind == BlobKind::Meta && buf.len() >= DICT_MIN_SAMPLE {
            self.train_dictionary_once(buf).await?
        } else {
            buf
        };
        let dict = match kind {
            BlobKind::Meta => self.inner.repo.dictionaries().for_encoding().cloned(),
            BlobKind::Data => None,
        };
        if let Some(dict) = &dict {
            self.save_dictionary_copy(dict).await?;
        }
        let this = self.clone();
        let (ids, new_blobs, leftover, seen_bytes) = run_cpu(move || {
            let repo = &this.inner.repo;
            let ranges = match cut {
                Cut::Whole => std::iter::once(0..buf.len()).collect(),
                Cut::Final => repo.chunker(kind).cut_ready(&buf, true),
                Cut::Ready => repo.chunker(kind).cut_ready(&buf, false),
            };
            let level = repo.config().compression.level;
            let results: Vec<(BlobId, Option<EncodedBlob>)> = ranges
                .par_iter()
                .map(|r| {
                    let data = &buf[r.clone()];
                    let id = repo.blob_id(data);
                    let blob = (!this.is_known(kind, &id))
                        .then(|| codec::encode(id, data, level, dict.as_ref()));
                    (id, blob)
                })
                .collect();
            let consumed = ranges.last().map_or(0, |r| r.end);
            let ids = results.iter().map(|(id, _)| *id).collect::<Vec<_>>();
            let new_blobs = results
                .into_iter()
                .filter_map(|(_, b)| b)
                .collect::<Vec<_>>();
            (ids, new_blobs, buf[consumed..].to_vec(), consumed as u64)
        })
        .await?;

        let full = {
            let mut st = self.state();
            let n = ids.len() as u64;
            self.count(&mut st, |s| {
                s.blobs_seen += n;
                s.bytes_seen += seen_bytes;
            });
            self.pack_new(&mut st, kind, &new_blobs)
        };
        for builder in full {
            self.upload(builder).await?;
        }
        self.maybe_write_index().await?;
        Ok((ids, leftover))
    }

    /// Packs a copy of `dict` as a metadata blob (its blob id is the dictionary id), unless
    /// the index already has an intact one, so that losing the `dicts/` object loses nothing.
    /// The copy is compressed without a dictionary, so it can always be read.
    async fn save_dictionary_copy(&self, dict: &Dictionary) -> Result<()> {
        let id = BlobId(dict.id.0);
        if self.is_known(BlobKind::Meta, &id) {
            return Ok(());
        }
        let level = self.inner.repo.config().compression.level;
        let bytes = dict.bytes.clone();
        let blob = run_cpu(move || codec::encode(id, &bytes, level, None)).await?;
        let tag_len = self.tag_len();
        let mut st = self.state();
        if st.added.insert((BlobKind::Meta, id)) {
            self.count(&mut st, |s| {
                s.blobs_new += 1;
                s.bytes_new_raw += u64::from(blob.raw_length);
                s.bytes_new_stored += (blob.stored.len() + tag_len) as u64;
            });
            st.meta.add(&blob);
            st.dict_copies.push(dict.id);
        }
        Ok(())
    }

    /// If the repository has no dictionary yet, trains one from the chunks of `buf` and stores
    /// it before anything is compressed with it. Tried once per writer. Returns `buf`.
    async fn train_dictionary_once(&self, buf: Vec<u8>) -> Result<Vec<u8>> {
        // A repository that lost the dictionary its stored blobs need gets no new one: the
        // lost one is then still noticed on the next open, so those blobs keep not counting.
        if !self.inner.repo.dictionaries().is_empty()
            || !self.inner.repo.dictionaries_complete()
            || self.inner.dict_attempt.initialized()
        {
            return Ok(buf);
        }
        let mut buf = Some(buf);
        self.inner
            .dict_attempt
            .get_or_try_init(|| async {
                let repo = self.inner.repo.clone();
                let sample = buf.take().expect("taken once");
                let (sample, dict) = run_cpu(move || {
                    let limit = sample.len().min(DICT_MAX_SAMPLE);
                    let ranges = repo
                        .chunker(BlobKind::Meta)
                        .cut_ready(&sample[..limit], true);
                    let samples: Vec<&[u8]> = ranges.iter().map(|r| &sample[r.clone()]).collect();
                    let dict = codec::train_dictionary(&samples, DICT_SIZE, repo.crypto());
                    (sample, dict)
                })
                .await?;
                buf = Some(sample);
                if let Some(dict) = dict {
                    self.inner.repo.store_dictionary(dict).await?;
                }
                Ok::<(), RepoError>(())
            })
            .await?;
        Ok(buf.expect("returned by the training job"))
    }

    /// Finishes a pack on rayon and uploads it in the background once a permit is free.
    async fn upload(&self, builder: PackBuilder) -> Result<()> {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| RepoError::Internal(e.to_string()))?;
        let pack: FinishedPack = run_cpu(move || builder.finish()).await?;
        let this = self.clone();
        let handle = tokio::spawn(async move {
            let size = pack.bytes.len() as u64;
            let written = this
                .inner
                .repo
                .backend()
                .write(&pack_path(&pack.id), pack.bytes)
                .await;
            drop(permit);
            if let Err(e) = written {
                let mut st = this.state();
                st.failed.get_or_insert_with(|| e.to_string());
                return Err(e.into());
            }
            let mut st = this.state();
            this.count(&mut st, |s| {
                s.packs_written += 1;
                s.pack_bytes_written += size;
            });
            st.unindexed_blobs += pack.blobs.len();
            st.unindexed.push(IndexPack {
                id: pack.id,
                kind: pack.kind,
                size,
                blobs: pack.blobs,
                salt: pack.salt,
            });
            Ok(())
        });
        self.state().uploads.push(handle);
        Ok(())
    }

    async fn maybe_write_index(&self) -> Result<()> {
        let due = {
            let st = self.state();
            st.unindexed_blobs >= self.inner.options.index_flush_blobs
                || (!st.unindexed.is_empty()
                    && st.last_index.elapsed() >= self.inner.options.index_flush_interval)
        };
        if due {
            self.write_index().await
        } else {
            Ok(())
        }
    }

    /// Writes index files (each at most [`MAX_BLOBS_PER_INDEX_FILE`] blobs) for the uploaded
    /// packs that have none yet. On failure the packs stay pending, so a later call retries.
    async fn write_index(&self) -> Result<()> {
        let packs = {
            let mut st = self.state();
            st.unindexed_blobs = 0;
            st.last_index = Instant::now();
            std::mem::take(&mut st.unindexed)
        };
        let mut pending = packs.into_iter().peekable();
        while pending.peek().is_some() {
            let mut batch = Vec::new();
            let mut blobs = 0;
            while let Some(pack) = pending.peek() {
                if !batch.is_empty() && blobs + pack.blobs.len() > MAX_BLOBS_PER_INDEX_FILE {
                    break;
                }
                blobs += pack.blobs.len();
                batch.push(pending.next().expect("peeked"));
            }
            let mut file = IndexFile::new(batch, self.inner.repo.config().version);
            {
                let st = self.state();
                file.dictionaries = st
                    .dict_copies
                    .iter()
                    .filter(|d| {
                        file.packs
                            .iter()
                            .any(|p| p.blobs.iter().any(|b| b.id.0 == d.0))
                    })
                    .copied()
                    .collect();
            }
            let size =
                codec::encode_file(self.inner.repo.crypto(), ObjectKind::Index, &file).len() as u64;
            if let Err(e) = self.inner.repo.write_index_file(file.clone()).await {
                let mut st = self.state();
                st.unindexed_blobs +=
                    file.blob_count() + pending.clone().map(|p| p.blobs.len()).sum::<usize>();
                st.unindexed.extend(file.packs);
                st.unindexed.extend(pending);
                return Err(e);
            }
            let mut st = self.state();
            self.count(&mut st, |s| {
                s.index_files_written += 1;
                s.index_bytes_written += size;
            });
        }
        Ok(())
    }

    /// Uploads the partly filled packs and waits for every upload, without writing an index.
    /// (`flush` does this and more; tests use it to stop between the two steps.)
    pub async fn finish_packs(&self) -> Result<()> {
        let _exclusive = self.inner.gate.write().await;
        self.finish_packs_locked().await
    }

    async fn finish_packs_locked(&self) -> Result<()> {
        self.check_failed()?;
        let partial: Vec<PackBuilder> = {
            let mut st = self.state();
            [BlobKind::Data, BlobKind::Meta]
                .into_iter()
                .filter_map(|kind| {
                    let packer = match kind {
                        BlobKind::Data => &mut st.data,
                        BlobKind::Meta => &mut st.meta,
                    };
                    (!packer.is_empty()).then(|| {
                        std::mem::replace(packer, PackBuilder::new(kind, self.inner.repo.crypto()))
                    })
                })
                .collect()
        };
        for builder in partial {
            self.upload(builder).await?;
        }
        let uploads = std::mem::take(&mut self.state().uploads);
        for handle in uploads {
            if let Err(e) = handle.await {
                self.state()
                    .failed
                    .get_or_insert_with(|| format!("an upload task failed: {e}"));
            }
        }
        self.check_failed()
    }

    /// Makes everything saved so far durable: waits for saves in progress in every clone,
    /// uploads the open packs, waits for all uploads, then writes the index. After it returns
    /// Ok, a snapshot may refer to every blob saved. After a failed upload it keeps failing.
    pub async fn flush(&self) -> Result<WriterStats> {
        let _exclusive = self.inner.gate.write().await;
        self.finish_packs_locked().await?;
        self.write_index().await?;
        Ok(self.stats())
    }
}

/// How `process` cuts its buffer.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// One blob.
    Whole,
    /// Chunk everything: the buffer is the end of the stream.
    Final,
    /// Chunk what is final; return the rest.
    Ready,
}

/// Saves a stream of bytes as a chunked file. Memory stays at about its threshold (the maximum
/// chunk size plus 1 MiB for attachments, 1 MiB for metadata) whatever the stream's length.
#[derive(Debug)]
pub struct FileSaver {
    writer: BlobWriter,
    kind: BlobKind,
    buf: Vec<u8>,
    threshold: usize,
    ids: Vec<BlobId>,
    size: u64,
}

impl FileSaver {
    /// Appends bytes to the stream.
    pub async fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(bytes);
        self.size += bytes.len() as u64;
        if self.buf.len() >= self.threshold {
            let buf = std::mem::take(&mut self.buf);
            let (ids, leftover) = self.writer.process(self.kind, buf, Cut::Ready).await?;
            self.ids.extend(ids);
            self.buf = leftover;
        }
        Ok(())
    }

    /// Ends the stream; returns its blob ids in order and its length.
    pub async fn finish(mut self) -> Result<(Vec<BlobId>, u64)> {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            let (ids, _) = self.writer.process(self.kind, buf, Cut::Final).await?;
            self.ids.extend(ids);
        }
        Ok((self.ids, self.size))
    }
}

/// Runs CPU-bound work on the rayon pool and waits for it without blocking the async thread.
pub(crate) async fn run_cpu<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(work());
    });
    rx.await
        .map_err(|_| RepoError::Internal("a worker thread panicked".into()))
}
