//! `copy`: snapshots of one repository stored into another (another backend, another
//! password, another format), transferring only the blobs the target lacks.
//!
//! A snapshot's identity is its manifest's `copy_of` (the repository it was first taken in and
//! its id there), or else itself; a source snapshot whose identity the target already holds
//! is skipped without reading any tree, so a second run copies nothing. The others are copied
//! oldest first. In format 2 each repository keys its own blob ids, so the same content has a
//! different id in each: a tree is copied children first and saved again with the target's
//! ids. The target id of a source blob is found in the target's local cache (`copy_map`, a
//! fact about content that never goes stale), else computed from the plaintext, which means
//! reading the blob; when both repositories are format 1 the ids are equal and no read is
//! needed to know one. A blob the target holds (in a live pack) is not stored again; trees
//! are always read, because a tree the target holds does not prove that everything below it
//! is still there (a prune may have freed an unused subtree's content but kept its tree).
//!
//! A blob is moved in its encoded form, without compressing it again (format 2 seals it under
//! the target's pack key), unless it was compressed with a zstd dictionary: the target lacks
//! the source's dictionaries, so such a blob is decoded and stored through the target's writer
//! like new content (compressed with the target's own dictionary, if it has one).
//!
//! The target is written under a writer lock, in the writers' order (docs/FORMAT.md, "Write
//! order" and "Deletion"): the lock, then the index, then packs and index files, then the
//! manifests, the commit point. Manifests are committed in batches of about a pack of new
//! data, so an interrupted copy keeps what it committed and the next run goes on from there.
//! The source is only read; its lock is its caller's business (the CLI takes a shared one).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::backend::{BackendError, RequestStats};
use crate::codec::{Compression, EncodedBlob};
use crate::id::{BlobId, RepoId, SnapshotId};
use crate::repo::pack::{self, PackedBlob, pack_path};
use crate::repo::{
    BlobKind, BlobWriter, CopyOf, Node, NodeKind, RepoError, Repository, Snapshot, Tree, writer,
};

/// Blobs read (or stored) at once: each holds its stored and its plain bytes, at most a
/// maximum chunk (4 MiB by default) each.
const CONCURRENCY: usize = 8;

/// How to copy.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Report what would be copied; write nothing to the target (and take no lock there).
    pub dry_run: bool,
}

/// Snapshots copied and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotCounts {
    /// Copied (or, in a dry run, to copy).
    pub copied: u64,
    /// Skipped: the target holds a snapshot with the same identity.
    pub skipped: u64,
}

/// Blobs, each counted once per run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BlobCounts {
    /// Stored in the target (in a dry run: that would be).
    pub copied: u64,
    /// Already in the target.
    pub present: u64,
    /// Read from the source (trees, and blobs whose target id was unknown or that the target
    /// lacked).
    pub read: u64,
}

/// Bytes moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ByteCounts {
    /// Downloaded from the source.
    pub read: u64,
    /// Uploaded to the target (packs, index files, manifests, lock files).
    pub written: u64,
}

/// Storage requests of each side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Requests {
    /// Made to the source.
    pub source: RequestStats,
    /// Made to the target.
    pub target: RequestStats,
}

/// What happened to one source snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Copied (in a dry run: to copy).
    Copied,
    /// The target has it already.
    Skipped,
}

/// One source snapshot's fate.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotCopy {
    /// The snapshot in the source.
    pub source: SnapshotId,
    /// The snapshot in the target: the new one, or the one that made this one skipped;
    /// `None` for a snapshot a dry run would copy, and for one skipped because this run
    /// copied another snapshot with its identity.
    pub target: Option<SnapshotId>,
    /// Copied or skipped.
    pub action: Action,
    /// When it was taken.
    pub time: String,
    /// Its base, for an Airtable snapshot.
    pub base_id: Option<String>,
}

/// What `copy` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopySummary {
    /// Nothing was written.
    pub dry_run: bool,
    /// Snapshots by fate.
    pub snapshots: SnapshotCounts,
    /// Blobs by fate.
    pub blobs: BlobCounts,
    /// Bytes downloaded and uploaded.
    pub bytes: ByteCounts,
    /// Storage requests made.
    pub requests: Requests,
    /// Every source snapshot asked for, oldest first.
    pub list: Vec<SnapshotCopy>,
    /// Wall time.
    pub seconds: f64,
}

/// Why a copy stopped. Snapshots committed before the failure stay in the target (the
/// summary is lost, the next run skips them); nothing of the snapshot in progress is.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A source snapshot asked for cannot be read.
    #[error(
        "snapshot {id} of the source repository cannot be read ({source}); nothing of it was \
         copied: run `airback check` on the source"
    )]
    UnreadableSnapshot {
        /// The snapshot.
        id: SnapshotId,
        /// Why.
        #[source]
        source: Box<RepoError>,
    },
    /// The source repository failed (a blob missing or damaged, storage unreachable).
    #[error("the source repository: {0}")]
    Source(#[source] RepoError),
    /// The target repository failed.
    #[error("the target repository: {0}")]
    Target(#[source] RepoError),
}

type Result<T, E = CopyError> = std::result::Result<T, E>;

fn source_err(e: impl Into<RepoError>) -> CopyError {
    CopyError::Source(e.into())
}

fn target_err(e: impl Into<RepoError>) -> CopyError {
    CopyError::Target(e.into())
}

/// Copies the snapshots `ids` of `source` into `target` (see the module documentation). The
/// source is only read; the target is written under a writer lock taken here.
pub async fn copy(
    source: &Repository,
    target: &Repository,
    ids: &[SnapshotId],
    options: &CopyOptions,
) -> Result<CopySummary> {
    let started = Instant::now();
    let (source_before, target_before) = (source.backend().requests(), target.backend().requests());
    let mut summary = CopySummary {
        dry_run: options.dry_run,
        ..CopySummary::default()
    };
    let wanted = load_wanted(source, ids).await?;
    if options.dry_run {
        // The index the open read is enough to say what would be copied; nothing is locked.
        run(source, target, wanted, options, &mut summary).await?;
    } else {
        // The lock before the index is read (`lock_writer` syncs it), as writers must.
        let lock = target.lock_writer("copy").await.map_err(target_err)?;
        let result = async {
            target.adopt_unindexed_packs().await.map_err(target_err)?;
            run(source, target, wanted, options, &mut summary).await
        }
        .await;
        let released = lock.release().await.map_err(target_err);
        result?;
        released?;
    }
    let (source_now, target_now) = (source.backend().requests(), target.backend().requests());
    summary.requests = Requests {
        source: source_now.since(&source_before),
        target: target_now.since(&target_before),
    };
    summary.bytes = ByteCounts {
        read: summary.requests.source.bytes_read,
        written: summary.requests.target.bytes_written,
    };
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The manifests of `ids`, oldest first (by time, then id), each once.
async fn load_wanted(
    source: &Repository,
    ids: &[SnapshotId],
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let mut listed: HashMap<SnapshotId, Snapshot> = crate::snapshots::list(source)
        .await
        .map_err(source_err)?
        .into_iter()
        .collect();
    let mut wanted = Vec::with_capacity(ids.len());
    for id in ids {
        if wanted.iter().any(|(w, _)| w == id) {
            continue;
        }
        let snapshot = match listed.remove(id) {
            Some(s) => s,
            // Not listed: damaged (the listing skipped it) or gone; say why.
            None => source
                .load_snapshot(id)
                .await
                .map_err(|e| CopyError::UnreadableSnapshot {
                    id: *id,
                    source: Box::new(e),
                })?,
        };
        wanted.push((*id, snapshot));
    }
    wanted.sort_by(|(a_id, a), (b_id, b)| a.time.cmp(&b.time).then(a_id.cmp(b_id)));
    Ok(wanted)
}

/// Copies what the target lacks, committing in batches.
async fn run(
    source: &Repository,
    target: &Repository,
    wanted: Vec<(SnapshotId, Snapshot)>,
    options: &CopyOptions,
    summary: &mut CopySummary,
) -> Result<()> {
    let source_id = source.id();
    let target_id = target.id();
    let held: HashMap<CopyOf, SnapshotId> = crate::snapshots::list(target)
        .await
        .map_err(target_err)?
        .into_iter()
        .map(|(id, s)| (s.identity(target_id, id), id))
        .collect();
    // Identities copied by this run: a second source snapshot with one of them is skipped.
    let mut copying: HashSet<CopyOf> = HashSet::new();
    let copier = Copier {
        source,
        target,
        source_id,
        writer: target.writer(),
        identity: !source.is_encrypted() && !target.is_encrypted(),
        dry_run: options.dry_run,
        done: Mutex::new(HashMap::new()),
        counts: Mutex::new(BlobCounts::default()),
        permits: Semaphore::new(CONCURRENCY),
    };
    let batch_bytes = u64::from(target.config().pack_size);
    let mut committed_bytes = 0;
    // Manifests whose blobs are written but not yet flushed: (index in `summary.list`, it).
    let mut pending: Vec<(usize, Snapshot)> = Vec::new();
    let last = wanted.len().saturating_sub(1);
    for (i, (id, snapshot)) in wanted.into_iter().enumerate() {
        let identity = snapshot.identity(source_id, id);
        let entry = SnapshotCopy {
            source: id,
            target: held.get(&identity).copied(),
            action: Action::Skipped,
            time: snapshot.time.clone(),
            base_id: crate::snapshots::base_id(&snapshot).map(str::to_owned),
        };
        if entry.target.is_some() || !copying.insert(identity) {
            summary.snapshots.skipped += 1;
            summary.list.push(entry);
        } else {
            let tree = copier.copy_tree(snapshot.tree).await?;
            summary.snapshots.copied += 1;
            summary.list.push(SnapshotCopy {
                action: Action::Copied,
                ..entry
            });
            pending.push((
                summary.list.len() - 1,
                Snapshot {
                    tree,
                    copy_of: Some(identity),
                    ..snapshot
                },
            ));
        }
        let stored = copier.writer.stats().bytes_new_stored;
        if !options.dry_run
            && !pending.is_empty()
            && (i == last || stored - committed_bytes >= batch_bytes)
        {
            copier.writer.flush().await.map_err(target_err)?;
            committed_bytes = stored;
            for (at, manifest) in pending.drain(..) {
                let new_id = target.save_snapshot(&manifest).await.map_err(target_err)?;
                summary.list[at].target = Some(new_id);
            }
        }
    }
    summary.blobs = *copier.counts.lock().unwrap_or_else(|e| e.into_inner());
    Ok(())
}

/// What became of one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Copied,
    Present,
}

/// One run's state.
struct Copier<'a> {
    source: &'a Repository,
    target: &'a Repository,
    source_id: RepoId,
    writer: BlobWriter,
    /// Both repositories are format 1: a blob has the same id in both.
    identity: bool,
    dry_run: bool,
    /// Source blobs settled in this run, with their target ids.
    done: Mutex<HashMap<(BlobId, BlobKind), BlobId>>,
    counts: Mutex<BlobCounts>,
    /// Bounds the blobs in memory at once.
    permits: Semaphore,
}

impl Copier<'_> {
    fn settled(&self, id: BlobId, kind: BlobKind) -> Option<BlobId> {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(id, kind))
            .copied()
    }

    /// Records that source blob `id` is `target` in the target, counting it once.
    fn settle(&self, id: BlobId, kind: BlobKind, target: BlobId, outcome: Outcome) -> BlobId {
        let fresh = self
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((id, kind), target)
            .is_none();
        if fresh {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            match outcome {
                Outcome::Copied => counts.copied += 1,
                Outcome::Present => counts.present += 1,
            }
        }
        target
    }

    /// The target id of a file's blob, storing the blob if the target lacks it.
    async fn copy_blob(&self, id: BlobId, kind: BlobKind) -> Result<BlobId> {
        if let Some(target) = self.settled(id, kind) {
            return Ok(target);
        }
        let known = if self.identity {
            Some(id)
        } else {
            self.target
                .cache()
                .copy_target(&self.source_id, &id, kind)
                .map_err(target_err)?
        };
        if let Some(target) = known
            && self.writer.is_known(kind, &target)
        {
            return Ok(self.settle(id, kind, target, Outcome::Present));
        }
        let _permit = self.permit().await?;
        let (encoded, plain) = self.read(id).await?;
        let target = if self.identity {
            id
        } else {
            self.target.blob_id(&plain)
        };
        self.store(id, kind, target, Stored::Encoded(encoded, plain))
            .await
    }

    /// Copies the tree `id` and everything below it; returns its id in the target.
    fn copy_tree(&self, id: BlobId) -> BoxFuture<'_, Result<BlobId>> {
        Box::pin(async move {
            if let Some(target) = self.settled(id, BlobKind::Meta) {
                return Ok(target);
            }
            let (encoded, plain) = {
                let _permit = self.permit().await?;
                self.read(id).await?
            };
            let tree = Repository::parse_tree(&id, &plain).map_err(source_err)?;
            let nodes: Vec<Node> = futures::stream::iter(tree.nodes)
                .map(|node| self.copy_node(node))
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
            let _permit = self.permit().await?;
            if self.identity {
                // The same ids: the tree's bytes are the target's too.
                return self
                    .store(id, BlobKind::Meta, id, Stored::Encoded(encoded, plain))
                    .await;
            }
            let bytes = serde_json::to_vec(&Tree {
                version: tree.version,
                nodes,
            })
            .expect("trees serialize");
            let target = self.target.blob_id(&bytes);
            self.store(id, BlobKind::Meta, target, Stored::Plain(bytes))
                .await
        })
    }

    /// A node with the target's ids.
    async fn copy_node(&self, node: Node) -> Result<Node> {
        let kind = match node.kind {
            NodeKind::File {
                size,
                blob_kind,
                content,
            } => NodeKind::File {
                size,
                blob_kind,
                content: futures::stream::iter(content)
                    .map(|blob| self.copy_blob(blob, blob_kind))
                    .buffered(CONCURRENCY)
                    .try_collect()
                    .await?,
            },
            NodeKind::Dir { subtree } => NodeKind::Dir {
                subtree: self.copy_tree(subtree).await?,
            },
        };
        Ok(Node { kind, ..node })
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.permits
            .acquire()
            .await
            .map_err(|e| source_err(RepoError::Internal(e.to_string())))
    }

    /// Stores blob `target` (source blob `id`) unless the target has it, and records the
    /// mapping.
    async fn store(
        &self,
        id: BlobId,
        kind: BlobKind,
        target: BlobId,
        blob: Stored,
    ) -> Result<BlobId> {
        if !self.identity {
            self.target
                .cache()
                .record_copy_target(&self.source_id, &id, kind, &target)
                .map_err(target_err)?;
        }
        if self.writer.is_known(kind, &target) {
            return Ok(self.settle(id, kind, target, Outcome::Present));
        }
        if !self.dry_run {
            match blob {
                // The target cannot decode a frame made with a source dictionary: store the
                // plaintext as new content.
                Stored::Encoded(encoded, plain) if encoded.compression == Compression::ZstdDict => {
                    self.save(kind, target, plain).await?;
                }
                Stored::Encoded(encoded, _) => {
                    let encoded = EncodedBlob {
                        id: target,
                        ..encoded
                    };
                    self.writer
                        .add_encoded(kind, encoded)
                        .await
                        .map_err(target_err)?;
                }
                Stored::Plain(bytes) => self.save(kind, target, bytes).await?,
            }
        }
        Ok(self.settle(id, kind, target, Outcome::Copied))
    }

    /// Stores plaintext through the target's writer, which must give it the id `target`.
    async fn save(&self, kind: BlobKind, target: BlobId, plain: Vec<u8>) -> Result<()> {
        let saved = self
            .writer
            .save_blob(kind, plain)
            .await
            .map_err(target_err)?;
        if saved != target {
            return Err(target_err(RepoError::Internal(format!(
                "blob {target} was stored as {saved}"
            ))));
        }
        Ok(())
    }

    /// Reads one source blob, verified: its encoded form (opened, in format 2) and its
    /// plaintext.
    async fn read(&self, id: BlobId) -> Result<(EncodedBlob, Vec<u8>)> {
        let source = self.source;
        let location = match source.cache().lookup(&id).map_err(source_err)? {
            Some(location) => location,
            None => {
                // Indexed by another process since the source was opened, perhaps.
                source.sync_index().await.map_err(source_err)?;
                source
                    .cache()
                    .lookup(&id)
                    .map_err(source_err)?
                    .ok_or(CopyError::Source(RepoError::MissingBlob(id)))?
            }
        };
        let start = u64::from(location.offset);
        let stored = source
            .backend()
            .read_range(
                &pack_path(&location.pack),
                start..start + u64::from(location.length),
            )
            .await
            .map_err(|e| match e {
                BackendError::NotFound { .. } => CopyError::Source(RepoError::MissingPack {
                    pack: location.pack,
                    blob: id,
                }),
                other => source_err(other),
            })?;
        let entry = PackedBlob {
            id,
            offset: location.offset,
            length: location.length,
            raw_length: location.raw_length,
            compression: location.compression,
        };
        let (crypto, dicts) = (source.crypto().clone(), source.dictionaries());
        let decoded = writer::run_cpu(move || {
            pack::open_decoded(
                &crypto,
                location.salt.as_ref(),
                location.kind,
                &entry,
                &stored,
                &dicts,
            )
        })
        .await
        .map_err(source_err)?
        .map_err(|e| {
            source_err(RepoError::Corrupt {
                what: format!("blob {id} in pack {}", location.pack),
                detail: e.to_string(),
            })
        })?;
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).read += 1;
        Ok(decoded)
    }
}

/// A blob to store: read from the source (encoded and plain), or made here (a tree written
/// with the target's ids).
enum Stored {
    Encoded(EncodedBlob, Vec<u8>),
    Plain(Vec<u8>),
}
