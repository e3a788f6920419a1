//! `prune`: frees the storage that no snapshot uses, safely beside snapshots that are running.
//!
//! Deletion has two phases (docs/FORMAT.md, "Deletion"). First prune finds what the snapshots
//! use (walking their trees), copies the used blobs out of packs that are mostly unused
//! (repack), and *marks* the packs it wants gone: a new index file lists them under
//! `packs_to_delete` and replaces the old files. From then on no writer counts their blobs as
//! stored. Then it looks at `locks/`: with no writer lock live (rule B) every marked pack may
//! go at once; otherwise only packs marked at least [`DELETE_DELAY`] ago (rule A), because a
//! snapshot that started before the mark may rely on them. Before deleting, prune reads the
//! snapshots saved since it started and keeps ("recovers") any marked pack they need. Pack
//! objects are deleted before their entries leave the index, so a live entry never names a
//! missing pack, and a prune killed at any moment leaves a repository that `check` accepts
//! and that the next prune finishes.
//!
//! Memory: the used set holds one entry per used blob; the index is read from the local cache
//! one row at a time, and at most one pack being repacked is held whole.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde::Serialize;

use crate::backend::RequestStats;
use crate::id::{BlobId, IndexId, PackId, SnapshotId};
use crate::repo::cache::CachedPack;
use crate::repo::index::{EraseEntry, IndexFile, IndexPack, MAX_BLOBS_PER_INDEX_FILE, MarkedPack};
use crate::repo::pack::{self, pack_path};
use crate::repo::{BlobKind, Exclusive, NodeKind, RepoError, Repository, writer};

/// Rule A: with a writer running, a marked pack is deleted only this long after its mark.
pub const DELETE_DELAY: Duration = Duration::from_secs(23 * 3600);

/// How much unused space may stay in packs that are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnused {
    /// A share of the repository after prune, in percent (restic's `--max-unused 5%`).
    Percent(f64),
    /// A number of bytes.
    Bytes(u64),
    /// Any amount: only packs with no used blob go.
    Unlimited,
}

impl Default for MaxUnused {
    /// 5 %, as restic.
    fn default() -> Self {
        MaxUnused::Percent(5.0)
    }
}

impl FromStr for MaxUnused {
    type Err = String;

    /// `5`, `5%`, `0`, `unlimited`, or a size such as `500M` or `2G`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(MaxUnused::Unlimited);
        }
        let number = t.strip_suffix('%').unwrap_or(t);
        if let Ok(p) = number.parse::<f64>()
            && (0.0..=100.0).contains(&p)
        {
            return Ok(MaxUnused::Percent(p));
        }
        if let Ok(bytes) = parse_size(t)
            && t.ends_with(|c: char| c.is_ascii_alphabetic())
        {
            return Ok(MaxUnused::Bytes(bytes));
        }
        Err(format!(
            "`{s}` is not a share of unused space: give a percentage from 0 to 100 (`5` or \
             `5%`), a size such as `500M`, or `unlimited`"
        ))
    }
}

/// A size in bytes: a number with an optional `K`, `M`, `G` or `T` (powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("`{s}` has an unknown unit: use K, M, G or T")),
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size: write a number with K, M, G or T, e.g. 500M"))?;
    if n.is_nan() || n < 0.0 {
        return Err(format!("`{s}` is negative"));
    }
    Ok((n * (1u64 << shift) as f64) as u64)
}

/// What to prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Report what would be done; write and delete nothing.
    pub dry_run: bool,
    /// Unused space allowed to stay in partly used packs.
    pub max_unused: MaxUnused,
    /// The most pack bytes to rewrite in this run (`None`: no limit).
    pub max_repack: Option<u64>,
    /// Rule A's delay.
    pub delete_delay: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            max_unused: MaxUnused::default(),
            max_repack: None,
            delete_delay: DELETE_DELAY,
        }
    }
}

/// Blobs and their stored bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Amount {
    /// Blobs.
    pub blobs: u64,
    /// Their stored bytes.
    pub bytes: u64,
}

/// What happened to the packs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PackCounts {
    /// Packs in the index before prune.
    pub total: u64,
    /// Kept as they are.
    pub keep: u64,
    /// Rewritten: their used blobs copied to new packs, then marked.
    pub repack: u64,
    /// Marked for deletion (no used blob).
    pub mark: u64,
    /// Marked before and needed again: listed as live.
    pub recover: u64,
    /// Pack objects deleted.
    pub delete: u64,
    /// Marked packs left for a later prune (a snapshot was running).
    pub pending_deletion: u64,
}

/// Byte totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ByteCounts {
    /// Packs in the index before prune.
    pub before: u64,
    /// Downloaded to repack.
    pub read: u64,
    /// Uploaded (new packs and index files).
    pub written: u64,
    /// Pack bytes deleted.
    pub deleted: u64,
    /// Packs in the index after prune (marked ones included).
    pub after: u64,
}

/// Which deletion rule applied (docs/FORMAT.md, "Deletion").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Deletion {
    /// `no-writers` (rule B: every marked pack), `delay` (rule A: packs marked at least the
    /// delay ago), or `none` (dry run).
    pub rule: String,
    /// The writers found running, described.
    pub writers: Vec<String>,
    /// Rule A's delay in hours.
    pub delay_hours: u64,
}

/// Index files written and deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IndexCounts {
    /// Written.
    pub written: u64,
    /// Deleted (replaced).
    pub deleted: u64,
}

/// What prune did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneSummary {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Snapshots whose content is kept.
    pub snapshots: usize,
    /// Blobs some snapshot uses (every stored copy).
    pub used: Amount,
    /// Blobs no snapshot uses, in live packs.
    pub unused: Amount,
    /// Packs by fate.
    pub packs: PackCounts,
    /// Bytes by fate.
    pub bytes: ByteCounts,
    /// Unused bytes left in kept packs.
    pub unused_after: u64,
    /// The deletion rule.
    pub deletion: Deletion,
    /// Index files.
    pub index_files: IndexCounts,
    /// Storage requests made.
    pub requests: RequestStats,
    /// Wall time.
    pub seconds: f64,
}

/// Why prune stopped. Nothing was deleted by a prune that stopped before its deletion step.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// A snapshot cannot be read, so what it uses is unknown.
    #[error(
        "snapshot {id} cannot be read ({source}); nothing was pruned: run `airback check`, \
         then `airback repair snapshots`"
    )]
    UnreadableSnapshot {
        /// The snapshot.
        id: SnapshotId,
        /// Why.
        #[source]
        source: Box<RepoError>,
    },
    /// A snapshot needs a blob that no pack holds.
    #[error(
        "a snapshot needs blob {0}, which no indexed pack holds; nothing was pruned: run \
         `airback check` (it names the snapshots), then `airback repair index`"
    )]
    MissingBlob(BlobId),
    /// An indexed pack is missing or has the wrong size.
    #[error(
        "pack {pack} is in the index but {reason}; nothing was pruned: run `airback check`, \
         then `airback repair index`"
    )]
    DamagedPack {
        /// The pack.
        pack: PackId,
        /// What is wrong.
        reason: String,
    },
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

type Result<T> = std::result::Result<T, PruneError>;

impl From<rusqlite::Error> for PruneError {
    fn from(e: rusqlite::Error) -> Self {
        PruneError::Repo(e.into())
    }
}

/// What prune decided for one pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Live and kept.
    Keep,
    /// Live, used blobs copied out, then marked.
    Repack,
    /// Live with no used blob: marked.
    Mark,
    /// Marked before and still marked.
    StayMarked,
    /// Marked before, needed again: live.
    Recover,
}

/// One pack's usage.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    used: Amount,
    unused: Amount,
}

/// Prunes the repository held under its exclusive lock.
pub async fn prune(repo: &Exclusive, options: &PruneOptions) -> Result<PruneSummary> {
    let started = Instant::now();
    let requests_before = repo.backend().requests();
    let mut summary = PruneSummary {
        dry_run: options.dry_run,
        deletion: Deletion {
            rule: "none".into(),
            delay_hours: options.delete_delay.as_secs() / 3600,
            ..Deletion::default()
        },
        ..PruneSummary::default()
    };

    // 1. Snapshots, then the index, then the packs in storage: what a snapshot needs was
    // written before it.
    let known_snapshots = repo.list_snapshots().await?;
    let roots = load_roots(repo, &known_snapshots).await?;
    summary.snapshots = roots.len();
    repo.sync_index().await?;
    let in_storage: HashMap<PackId, u64> = repo.list_packs().await?.into_iter().collect();

    // 2. What the snapshots use.
    let mut used: HashSet<(BlobId, BlobKind)> = HashSet::new();
    walk(repo, &roots, &mut used).await?;
    let dictionary_copies: HashSet<(BlobId, BlobKind)> = repo
        .cache()
        .dictionary_ids()?
        .into_iter()
        .map(|d| (BlobId(d.0), BlobKind::Meta))
        .collect();
    used.extend(dictionary_copies.iter().copied());

    // 3. Per pack: used and unused bytes.
    let packs = repo.cache().packs()?;
    let erase = repo.cache().erase_set()?;
    let scan = scan(repo, used, erase).await?;
    let used = scan.used;
    if let Some(missing) = used
        .iter()
        .find(|b| !scan.held_anywhere.contains(b) && !dictionary_copies.contains(b))
    {
        return Err(PruneError::MissingBlob(missing.0));
    }
    for p in packs.iter().filter(|p| p.marked.is_none()) {
        match in_storage.get(&p.id) {
            None => {
                return Err(PruneError::DamagedPack {
                    pack: p.id,
                    reason: crate::repo::MISSING.into(),
                });
            }
            Some(&size) if size != p.size => {
                return Err(PruneError::DamagedPack {
                    pack: p.id,
                    reason: format!("{size} bytes in storage where the index says {}", p.size),
                });
            }
            Some(_) => {}
        }
    }

    // 4. Decide.
    let fates = decide(
        &packs,
        &scan.usage,
        &scan.marked_needing,
        &scan.erase_hits,
        options,
        repo.config().pack_size as u64,
    );
    for p in &packs {
        let u = scan.usage.get(&p.id).copied().unwrap_or_default();
        summary.packs.total += 1;
        summary.bytes.before += p.size;
        if p.marked.is_none() {
            summary.used.blobs += u.used.blobs;
            summary.used.bytes += u.used.bytes;
            summary.unused.blobs += u.unused.blobs;
            summary.unused.bytes += u.unused.bytes;
        }
        match fates[&p.id] {
            Fate::Keep => {
                summary.packs.keep += 1;
                summary.unused_after += u.unused.bytes;
            }
            Fate::Repack => summary.packs.repack += 1,
            Fate::Mark => summary.packs.mark += 1,
            Fate::Recover => summary.packs.recover += 1,
            Fate::StayMarked => {}
        }
    }
    if options.dry_run {
        summary.requests = repo.backend().requests().since(&requests_before);
        summary.seconds = started.elapsed().as_secs_f64();
        summary.bytes.after = summary.bytes.before;
        return Ok(summary);
    }

    // 5. Repack: used blobs of the packs to rewrite go to new packs.
    let written_before = repo.backend().requests().bytes_written;
    let read_before = repo.backend().requests().bytes_read;
    repack(repo, &packs, &fates, &used, &scan.copies).await?;

    // 6. Mark: one rewrite of the index with every state change.
    let marked_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    if fates
        .values()
        .any(|f| matches!(f, Fate::Repack | Fate::Mark | Fate::Recover))
    {
        rewrite_index(repo, &fates, &marked_at, &HashSet::new(), &mut summary).await?;
    }

    // 7. Which marked packs may go now.
    let writers = repo.live_writers().await?;
    summary.deletion.writers = writers
        .iter()
        .map(|w| {
            format!(
                "`airback {}` (pid {} on {}, since {})",
                w.operation, w.pid, w.hostname, w.time
            )
        })
        .collect();
    let now = SystemTime::now();
    let delay = options.delete_delay;
    summary.deletion.rule = if writers.is_empty() {
        "no-writers".into()
    } else {
        "delay".into()
    };
    // Snapshots saved since step 1 may use marked packs: walk them, after their index.
    let latest = repo.list_snapshots().await?;
    let fresh: Vec<SnapshotId> = latest
        .into_iter()
        .filter(|id| !known_snapshots.contains(id))
        .collect();
    let fresh_roots = load_roots(repo, &fresh).await?;
    repo.sync_index().await?;
    let mut fresh_used = HashSet::new();
    walk(repo, &fresh_roots, &mut fresh_used).await?;
    let marked_now: Vec<CachedPack> = repo
        .cache()
        .packs()?
        .into_iter()
        .filter(|p| p.marked.is_some())
        .collect();
    let mut candidates = Vec::new();
    let mut recovered = Vec::new();
    for p in marked_now {
        let old_enough = p
            .marked
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .is_some_and(|t| now.duration_since(t).unwrap_or_default() >= delay);
        if !(writers.is_empty() || old_enough) {
            summary.packs.pending_deletion += 1;
            continue;
        }
        let blobs = repo.cache().pack_blobs(&p.id)?;
        let needed = blobs.iter().any(|b| {
            fresh_used.contains(&(b.id, p.kind))
                && !repo.cache().has_blob(&b.id, p.kind).unwrap_or(false)
        });
        if needed {
            recovered.push(p.id);
        } else {
            candidates.push(p);
        }
    }

    // 8. Delete the pack objects (a pack already gone counts as deleted).
    // Owned ids: a closure over `&CachedPack` makes the future not `Send` (a higher-ranked
    // lifetime rustc cannot prove), and `serve` runs prune on a spawned task.
    let ids: Vec<PackId> = candidates.iter().map(|p| p.id).collect();
    let deletions = futures::stream::iter(
        ids.into_iter()
            .map(|id| async move { repo.delete_pack(&id).await }),
    )
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    for result in deletions {
        result?;
    }
    let deleted: HashSet<PackId> = candidates.iter().map(|p| p.id).collect();
    for p in &candidates {
        summary.packs.delete += 1;
        if in_storage.contains_key(&p.id) {
            summary.bytes.deleted += p.size;
        }
    }
    summary.packs.recover += recovered.len() as u64;

    // 9. Drop the deleted packs' entries; recovered packs become live again.
    if !deleted.is_empty() || !recovered.is_empty() {
        let mut fates: HashMap<PackId, Fate> = repo
            .cache()
            .packs()?
            .into_iter()
            .map(|p| {
                let fate = if p.marked.is_some() {
                    Fate::StayMarked
                } else {
                    Fate::Keep
                };
                (p.id, fate)
            })
            .collect();
        for id in &recovered {
            fates.insert(*id, Fate::Recover);
        }
        rewrite_index(repo, &fates, &marked_at, &deleted, &mut summary).await?;
    }
    summary.bytes.after = repo.cache().packs()?.iter().map(|p| p.size).sum();
    let requests = repo.backend().requests();
    summary.bytes.read = requests.bytes_read - read_before;
    summary.bytes.written = requests.bytes_written - written_before;
    summary.requests = requests.since(&requests_before);
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The root trees of `ids`; a snapshot that cannot be read stops prune.
async fn load_roots(repo: &Repository, ids: &[SnapshotId]) -> Result<Vec<(SnapshotId, BlobId)>> {
    let mut roots = Vec::with_capacity(ids.len());
    for id in ids {
        match repo.load_snapshot(id).await {
            Ok(s) => roots.push((*id, s.tree)),
            Err(source) => {
                return Err(PruneError::UnreadableSnapshot {
                    id: *id,
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(roots)
}

/// Adds every blob the trees below `roots` name to `used`. A tree already in `used` is not
/// read again, so shared subtrees cost nothing; eight trees are read at once.
async fn walk(
    repo: &Repository,
    roots: &[(SnapshotId, BlobId)],
    used: &mut HashSet<(BlobId, BlobKind)>,
) -> Result<()> {
    let mut level: Vec<BlobId> = roots
        .iter()
        .filter(|(_, tree)| used.insert((*tree, BlobKind::Meta)))
        .map(|(_, tree)| *tree)
        .collect();
    while !level.is_empty() {
        let trees: Vec<_> = futures::stream::iter(level.drain(..).map(|id| {
            let repo = repo.clone();
            async move { (id, repo.load_tree(&id).await) }
        }))
        .buffer_unordered(8)
        .collect()
        .await;
        for (id, tree) in trees {
            let tree = tree.map_err(|e| match e {
                RepoError::MissingBlob(_) | RepoError::LostBlob { .. } => {
                    PruneError::MissingBlob(id)
                }
                other => PruneError::Repo(other),
            })?;
            for node in tree.nodes {
                match node.kind {
                    NodeKind::File {
                        blob_kind, content, ..
                    } => used.extend(content.into_iter().map(|b| (b, blob_kind))),
                    NodeKind::Dir { subtree } => {
                        if used.insert((subtree, BlobKind::Meta)) {
                            level.push(subtree);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// What one pass over the index found.
struct Scan {
    used: HashSet<(BlobId, BlobKind)>,
    usage: HashMap<PackId, Usage>,
    /// Used blobs that some pack (live or marked) holds.
    held_anywhere: HashSet<(BlobId, BlobKind)>,
    /// Marked packs holding a used blob that no live pack holds.
    marked_needing: HashSet<PackId>,
    /// Used blobs that a live pack holds although another live pack holds them too (left by
    /// two writers storing the same blob, or by an interrupted prune): the first holder in
    /// pack id order keeps the blob, and these copies count as unused.
    copies: HashSet<(PackId, BlobId, BlobKind)>,
    /// Live packs holding a blob that `rewrite` asked to erase and no snapshot uses.
    erase_hits: HashSet<PackId>,
}

/// One pass over every blob of the index (from the cache, row by row, off the async
/// threads): used and unused bytes per pack.
async fn scan(
    repo: &Repository,
    used: HashSet<(BlobId, BlobKind)>,
    erase: HashSet<(BlobId, BlobKind)>,
) -> Result<Scan> {
    let repo = repo.clone();
    tokio::task::spawn_blocking(move || {
        let marked: HashSet<PackId> = repo
            .cache()
            .packs()?
            .into_iter()
            .filter(|p| p.marked.is_some())
            .map(|p| p.id)
            .collect();
        let mut usage: HashMap<PackId, Usage> = HashMap::new();
        let mut held_live = HashSet::new();
        let mut held_anywhere = HashSet::new();
        let mut in_marked: Vec<(PackId, (BlobId, BlobKind))> = Vec::new();
        let mut copies = HashSet::new();
        let mut erase_hits = HashSet::new();
        repo.cache().for_each_blob(|id, kind, pack, length| {
            let u = usage.entry(pack).or_default();
            let amount = if used.contains(&(id, kind)) {
                held_anywhere.insert((id, kind));
                if marked.contains(&pack) {
                    in_marked.push((pack, (id, kind)));
                    &mut u.used
                } else if held_live.insert((id, kind)) {
                    &mut u.used
                } else {
                    copies.insert((pack, id, kind));
                    &mut u.unused
                }
            } else {
                if !marked.contains(&pack) && erase.contains(&(id, kind)) {
                    erase_hits.insert(pack);
                }
                &mut u.unused
            };
            amount.blobs += 1;
            amount.bytes += u64::from(length);
        })?;
        let marked_needing = in_marked
            .into_iter()
            .filter(|(_, blob)| !held_live.contains(blob))
            .map(|(pack, _)| pack)
            .collect();
        Ok(Scan {
            used,
            usage,
            held_anywhere,
            marked_needing,
            copies,
            erase_hits,
        })
    })
    .await
    .map_err(|e| RepoError::Internal(e.to_string()))?
}

/// The fate of every pack. Live packs with no used blob are marked; partly used packs that
/// hold a blob to erase are repacked; other partly used packs are repacked, the emptiest first
/// (and packs under half the target size before others), until the unused bytes left are
/// within `max_unused` or `max_repack` is spent; marked packs that hold a blob no live pack
/// holds are recovered.
fn decide(
    packs: &[CachedPack],
    usage: &HashMap<PackId, Usage>,
    marked_needing: &HashSet<PackId>,
    erase_hits: &HashSet<PackId>,
    options: &PruneOptions,
    pack_size: u64,
) -> HashMap<PackId, Fate> {
    let mut fates = HashMap::new();
    let of = |id: &PackId| usage.get(id).copied().unwrap_or_default();
    let live: Vec<&CachedPack> = packs.iter().filter(|p| p.marked.is_none()).collect();
    let used_total: u64 = live.iter().map(|p| of(&p.id).used.bytes).sum();
    let mut unused_left: u64 = 0;
    let mut partial = Vec::new();
    for p in packs {
        let u = of(&p.id);
        let fate = match (&p.marked, u.used.blobs, u.unused.blobs) {
            (Some(_), _, _) if marked_needing.contains(&p.id) => Fate::Recover,
            (Some(_), _, _) => Fate::StayMarked,
            (None, 0, _) => Fate::Mark,
            (None, _, 0) => Fate::Keep,
            // Erasure: rewritten whatever the thresholds.
            (None, _, _) if erase_hits.contains(&p.id) => Fate::Repack,
            (None, _, _) => {
                unused_left += u.unused.bytes;
                partial.push(p);
                Fate::Keep
            }
        };
        fates.insert(p.id, fate);
    }
    let allowed = match options.max_unused {
        MaxUnused::Unlimited => u64::MAX,
        MaxUnused::Bytes(b) => b,
        MaxUnused::Percent(p) if p >= 100.0 => u64::MAX,
        MaxUnused::Percent(p) => (p / (100.0 - p) * used_total as f64) as u64,
    };
    let small = |p: &CachedPack| p.size < pack_size / 2;
    partial.sort_by(|a, b| {
        let ratio = |p: &CachedPack| of(&p.id).unused.bytes as f64 / p.size.max(1) as f64;
        (small(b), ratio(b))
            .partial_cmp(&(small(a), ratio(a)))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut repacked = 0u64;
    for p in partial {
        if unused_left <= allowed {
            break;
        }
        if options
            .max_repack
            .is_some_and(|max| repacked + p.size > max)
        {
            continue;
        }
        repacked += p.size;
        unused_left -= of(&p.id).unused.bytes;
        fates.insert(p.id, Fate::Repack);
    }
    fates
}

/// Copies the used blobs of every pack to repack (those it keeps: not `copies`) into new
/// packs, verifying each, and makes the new packs durable (packs, then their index files).
async fn repack(
    repo: &Repository,
    packs: &[CachedPack],
    fates: &HashMap<PackId, Fate>,
    used: &HashSet<(BlobId, BlobKind)>,
    copies: &HashSet<(PackId, BlobId, BlobKind)>,
) -> Result<()> {
    let writer = repo.writer();
    for p in packs.iter().filter(|p| fates[&p.id] == Fate::Repack) {
        let bytes = repo
            .backend()
            .read(&pack_path(&p.id))
            .await
            .map_err(RepoError::from)?;
        let wanted: Vec<_> = repo
            .cache()
            .pack_blobs(&p.id)?
            .into_iter()
            .filter(|b| used.contains(&(b.id, p.kind)) && !copies.contains(&(p.id, b.id, p.kind)))
            .collect();
        let (crypto, dicts, pack) = (repo.crypto().clone(), repo.dictionaries(), p.clone());
        let encoded = writer::run_cpu(move || {
            if PackId::of(&bytes) != pack.id {
                return Err(PruneError::DamagedPack {
                    pack: pack.id,
                    reason: "its content does not hash to its name".into(),
                });
            }
            wanted
                .iter()
                .map(|b| {
                    let start = b.offset as usize;
                    let stored = bytes.get(start..start + b.length as usize).ok_or_else(|| {
                        PruneError::DamagedPack {
                            pack: pack.id,
                            reason: format!("blob {} lies outside the pack", b.id),
                        }
                    })?;
                    pack::open_verified(&crypto, pack.salt.as_ref(), pack.kind, b, stored, &dicts)
                        .map_err(|e| PruneError::DamagedPack {
                            pack: pack.id,
                            reason: format!("blob {} is damaged ({e})", b.id),
                        })
                })
                .collect::<Result<Vec<_>>>()
        })
        .await??;
        for blob in encoded {
            writer.add_encoded(p.kind, blob).await?;
        }
    }
    writer.flush().await?;
    Ok(())
}

/// Writes the index again with every pack in its new state, replacing every index file loaded
/// now: packs kept or recovered (and new ones) under `packs`, packs marked now or before
/// under `packs_to_delete`, `deleted` packs left out. Only the last file written names the
/// files it replaces, so an interrupted rewrite leaves the old files in effect; then the old
/// files are deleted.
async fn rewrite_index(
    repo: &Exclusive,
    fates: &HashMap<PackId, Fate>,
    marked_at: &str,
    deleted: &HashSet<PackId>,
    summary: &mut PruneSummary,
) -> Result<()> {
    repo.sync_index().await?;
    let old: Vec<IndexId> = repo.cache().index_files()?.into_iter().collect();
    let version = repo.config().version;
    let erase = repo.cache().erase_set()?;
    let mut still_held = HashSet::new();
    let mut files: Vec<IndexFile> = vec![IndexFile::new(Vec::new(), version)];
    let mut blobs_in_last = 0;
    for p in repo.cache().packs()? {
        if deleted.contains(&p.id) {
            continue;
        }
        let entry = IndexPack {
            id: p.id,
            kind: p.kind,
            size: p.size,
            blobs: repo.cache().pack_blobs(&p.id)?,
            salt: p.salt,
        };
        still_held.extend(
            entry
                .blobs
                .iter()
                .map(|b| (b.id, p.kind))
                .filter(|b| erase.contains(b)),
        );
        if blobs_in_last + entry.blobs.len() > MAX_BLOBS_PER_INDEX_FILE && blobs_in_last > 0 {
            files.push(IndexFile::new(Vec::new(), version));
            blobs_in_last = 0;
        }
        blobs_in_last += entry.blobs.len();
        let file = files.last_mut().expect("one file at least");
        // Packs the cache has but `fates` does not know (written by this run's repack, or by
        // a writer since) are live.
        match (fates.get(&p.id), p.marked) {
            (Some(Fate::Repack | Fate::Mark), _) => file.packs_to_delete.push(MarkedPack {
                pack: entry,
                marked: marked_at.to_owned(),
            }),
            (Some(Fate::Recover), _) | (None | Some(Fate::Keep), None) => file.packs.push(entry),
            (_, Some(time)) => file.packs_to_delete.push(MarkedPack {
                pack: entry,
                marked: time,
            }),
            (Some(Fate::StayMarked), None) => file.packs.push(entry),
        }
    }
    for d in repo.cache().dictionary_ids()? {
        files[0].dictionaries.push(d);
    }
    let last = files.len() - 1;
    // An erasure is done once no pack holds the blob any more.
    let mut erase: Vec<EraseEntry> = still_held
        .into_iter()
        .map(|(id, kind)| EraseEntry { id, kind })
        .collect();
    erase.sort_by_key(|e| (e.id, e.kind == BlobKind::Meta));
    files[last].erase = erase;
    files[last].supersedes = old.clone();
    for file in files {
        repo.write_index_file(file).await?;
        summary.index_files.written += 1;
    }
    for id in &old {
        repo.delete_index_file(id).await?;
        summary.index_files.deleted += 1;
    }
    repo.sync_index().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(n: u8, size: u64, marked: bool) -> CachedPack {
        CachedPack {
            id: PackId([n; 32]),
            kind: BlobKind::Data,
            size,
            salt: None,
            marked: marked.then(|| "2026-12-01T00:00:00Z".to_string()),
        }
    }

    fn usage(used: u64, unused: u64) -> Usage {
        Usage {
            used: Amount {
                blobs: u64::from(used > 0) * (used / 10).max(1),
                bytes: used,
            },
            unused: Amount {
                blobs: u64::from(unused > 0) * (unused / 10).max(1),
                bytes: unused,
            },
        }
    }

    #[test]
    fn unused_packs_are_marked_and_partly_used_ones_repacked_down_to_the_threshold() {
        let packs = vec![
            pack(1, 100, false), // all used
            pack(2, 100, false), // none used
            pack(3, 100, false), // 90 % unused
            pack(4, 100, false), // 20 % unused
            pack(5, 100, true),  // marked, not needed
            pack(6, 100, true),  // marked, needed
        ];
        let usage: HashMap<PackId, Usage> = [
            (packs[0].id, usage(100, 0)),
            (packs[1].id, usage(0, 100)),
            (packs[2].id, usage(10, 90)),
            (packs[3].id, usage(80, 20)),
            (packs[4].id, usage(0, 100)),
            (packs[5].id, usage(50, 50)),
        ]
        .into();
        let needing: HashSet<PackId> = [packs[5].id].into();
        // 5 % of 190 used bytes allows 10 unused: both partly used packs go.
        let fates = decide(
            &packs,
            &usage,
            &needing,
            &HashSet::new(),
            &PruneOptions::default(),
            100,
        );
        assert_eq!(fates[&packs[0].id], Fate::Keep);
        assert_eq!(fates[&packs[1].id], Fate::Mark);
        assert_eq!(fates[&packs[2].id], Fate::Repack);
        assert_eq!(fates[&packs[3].id], Fate::Repack);
        assert_eq!(fates[&packs[4].id], Fate::StayMarked);
        assert_eq!(fates[&packs[5].id], Fate::Recover);
        // 30 unused bytes allowed: only the emptiest pack is repacked.
        let options = PruneOptions {
            max_unused: MaxUnused::Bytes(30),
            ..PruneOptions::default()
        };
        let fates = decide(&packs, &usage, &needing, &HashSet::new(), &options, 100);
        assert_eq!(fates[&packs[2].id], Fate::Repack);
        assert_eq!(fates[&packs[3].id], Fate::Keep);
        // Unlimited: nothing is repacked; a repack budget below a pack's size too.
        let options = PruneOptions {
            max_unused: MaxUnused::Unlimited,
            ..PruneOptions::default()
        };
        let fates = decide(&packs, &usage, &needing, &HashSet::new(), &options, 100);
        assert!(fates.values().all(|f| *f != Fate::Repack));
        let options = PruneOptions {
            max_repack: Some(99),
            ..PruneOptions::default()
        };
        let fates = decide(&packs, &usage, &needing, &HashSet::new(), &options, 100);
        assert!(fates.values().all(|f| *f != Fate::Repack));
        assert_eq!(fates[&packs[1].id], Fate::Mark);
        // A pack holding a blob to erase is repacked whatever the thresholds.
        let options = PruneOptions {
            max_unused: MaxUnused::Unlimited,
            max_repack: Some(0),
            ..PruneOptions::default()
        };
        let erase: HashSet<PackId> = [packs[3].id].into();
        let fates = decide(&packs, &usage, &needing, &erase, &options, 100);
        assert_eq!(fates[&packs[3].id], Fate::Repack);
        assert_eq!(fates[&packs[2].id], Fate::Keep);
    }

    #[test]
    fn thresholds_and_sizes_parse_as_restic_writes_them() {
        assert_eq!("5".parse::<MaxUnused>(), Ok(MaxUnused::Percent(5.0)));
        assert_eq!("12.5%".parse::<MaxUnused>(), Ok(MaxUnused::Percent(12.5)));
        assert_eq!("0".parse::<MaxUnused>(), Ok(MaxUnused::Percent(0.0)));
        assert_eq!("unlimited".parse::<MaxUnused>(), Ok(MaxUnused::Unlimited));
        assert_eq!("2G".parse::<MaxUnused>(), Ok(MaxUnused::Bytes(2 << 30)));
        assert!(
            "150"
                .parse::<MaxUnused>()
                .unwrap_err()
                .contains("percentage")
        );
        assert!(
            "lots"
                .parse::<MaxUnused>()
                .unwrap_err()
                .contains("percentage")
        );
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert!(parse_size("5X").unwrap_err().contains("unit"));
        assert!(parse_size("-1G").is_err());
    }
}
