//! `airback check`: verifies the repository's invariants, reading in the reverse of the write
//! order (snapshots, then index, then packs) so that a concurrent backup cannot cause a false
//! alarm.
//!
//! Structure (always): every index file hashes to its name; every indexed pack exists with the
//! indexed size and its own header lists exactly what the index says; every blob a snapshot
//! needs (trees, file contents) is indexed with the right kind. With `--read-data`, every pack
//! (or a deterministic subset) is downloaded, hashed, and every blob decoded and hashed.
//!
//! In an encrypted repository (format 2) every object read is authenticated first, so damage
//! shows as "authentication failed" naming the object, `--read-data` authenticates every blob,
//! and every key file is checked against the master key. An unencrypted repository (format 1)
//! is reported as such (`encrypted: false` and a warning).
//!
//! Damage is reported where it hurts: each snapshot that can no longer be read back completely
//! is named with the files and folders it loses. Packs found missing or damaged are recorded in
//! the local cache, so the next snapshot stores their content again instead of referring to it
//! (`airback repair index` then fixes the index for every machine).

use std::collections::{HashMap, HashSet};

use crate::codec;
use crate::crypto::Salt;
use crate::id::{BlobId, IndexId, PackId, SnapshotId};
use crate::layout::{AttachmentMeta, LayoutJson, Source, TableMeta};
use crate::repo::index::IndexPack;
use crate::repo::pack::{self, BlobKind, PackedBlob, pack_path};
use crate::repo::snapshot::{NodeKind, Snapshot};
use crate::repo::{Repository, Result};

/// Which packs `--read-data` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subset {
    /// 1-based slice number.
    pub n: u32,
    /// Number of slices.
    pub m: u32,
}

impl std::str::FromStr for Subset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a subset: write N/M with 1 <= N <= M, e.g. 2/7");
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || m == 0 || n > m {
            return Err(bad());
        }
        Ok(Subset { n, m })
    }
}

impl Subset {
    /// Whether slice `n` of `m` holds the pack. Slices split the id space evenly, so `m` runs
    /// with `n = 1..=m` read every pack exactly once.
    pub fn contains(&self, id: &PackId) -> bool {
        let prefix = u64::from(u32::from_be_bytes(id.0[..4].try_into().expect("4 bytes")));
        (prefix * u64::from(self.m)) >> 32 == u64::from(self.n - 1)
    }
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Download and verify blob contents.
    pub read_data: bool,
    /// Only this slice of the packs (implies reading data).
    pub subset: Option<Subset>,
}

/// What `check` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// Whether the repository is encrypted (format 2).
    pub encrypted: bool,
    /// Problems that mean data is missing or damaged.
    pub errors: Vec<String>,
    /// Harmless findings (leftovers of interrupted runs).
    pub warnings: Vec<String>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Index files read.
    pub index_files: usize,
    /// Packs in the index.
    pub packs: usize,
    /// Blobs in the index.
    pub blobs: usize,
    /// Packs downloaded by `--read-data`.
    pub packs_read: usize,
    /// Bytes downloaded by `--read-data`.
    pub bytes_read: u64,
    /// Every snapshot that cannot be read back completely, with what it loses.
    pub damaged_snapshots: Vec<DamagedSnapshot>,
    /// Packs that are missing from storage or damaged.
    pub damaged_packs: Vec<PackProblem>,
    /// Live packs that hold no blob any snapshot uses (information: `prune` removes them).
    pub unreferenced_packs: usize,
    /// Their bytes.
    pub unreferenced_bytes: u64,
}

/// A snapshot that needs content the repository has lost.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DamagedSnapshot {
    /// The snapshot.
    pub id: SnapshotId,
    /// The base it belongs to (or another description of its source), when readable.
    pub source: String,
    /// When it was taken, when readable.
    pub time: String,
    /// How many of its files and folders are lost.
    pub lost_count: usize,
    /// The first [`MAX_LOST_LISTED`] of them: path, what it is, and why it is lost.
    pub lost: Vec<String>,
}

/// A pack that is missing or damaged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackProblem {
    /// The pack.
    pub id: PackId,
    /// What is wrong.
    pub reason: String,
}

/// A damaged snapshot's report lists at most this many lost items by name.
pub const MAX_LOST_LISTED: usize = 100;

impl CheckReport {
    /// True when no error was found.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Where an indexed blob lives, as far as `check` needs to know.
#[derive(Debug, Clone)]
struct Located {
    /// Every pack that holds it (usually one), with its entry there and the pack's salt.
    packs: Vec<(PackId, PackedBlob, Option<Salt>)>,
    /// Whether its entry is compressed with a dictionary.
    dict_compressed: bool,
}

/// What check learned about readability, used to decide which snapshots are damaged.
#[derive(Debug, Default)]
struct Damage {
    /// Packs whose blobs cannot be read at all (missing, wrong size, unusable header).
    bad_packs: HashMap<PackId, String>,
    /// Blobs that `--read-data` found undecodable, with the reason.
    bad_blobs: HashMap<(BlobId, BlobKind, PackId), String>,
    /// Some dictionary is lost without a copy: blobs compressed with one may not decode.
    dictionary_lost: bool,
    /// Packs that `--read-data` read and verified completely.
    verified: HashSet<PackId>,
    /// Packs in `bad_packs` whose blobs all decoded: damaged, but nothing in them is lost.
    bad_packs_readable: HashSet<PackId>,
}

impl Damage {
    /// Why the blob cannot be read, or `None` when one of its copies can be.
    fn unreadable(
        &self,
        blobs: &HashMap<(BlobId, BlobKind), Located>,
        id: BlobId,
        kind: BlobKind,
    ) -> Option<String> {
        let Some(located) = blobs.get(&(id, kind)) else {
            return Some(format!(
                "needs {} blob {id}, which no index lists",
                kind.as_str()
            ));
        };
        let mut why = None;
        for (pack, _, _) in &located.packs {
            if self.bad_packs_readable.contains(pack)
                && !self.bad_blobs.contains_key(&(id, kind, *pack))
            {
                return None;
            }
            if let Some(reason) = self.bad_packs.get(pack) {
                why = Some(format!(
                    "needs blob {id} from pack {pack}, which is {reason}"
                ));
            } else if let Some(reason) = self.bad_blobs.get(&(id, kind, *pack)) {
                why = Some(format!("needs blob {id} in pack {pack}: {reason}"));
            } else if located.dict_compressed
                && self.dictionary_lost
                && !self.verified.contains(pack)
            {
                why = Some(format!(
                    "needs blob {id}, compressed with a zstd dictionary that is lost"
                ));
            } else {
                return None;
            }
        }
        why
    }
}

/// Checks the repository. Storage failures are errors of the call; damage is reported, and
/// packs found missing or damaged are recorded in the local cache so that the next snapshot
/// stores their content again instead of referring to it.
///
/// The steps run in the reverse of the write order (snapshots, then the index, then packs):
/// anything a snapshot needs was written before it.
pub async fn check(repo: &Repository, options: &CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport {
        encrypted: repo.is_encrypted(),
        ..CheckReport::default()
    };
    let mut damage = Damage::default();

    // 0. The keys (format 2), or a word that there are none.
    if repo.is_encrypted() {
        for (name, problem) in repo.verify_key_files().await? {
            report.errors.push(format!("key file {name}: {problem}"));
        }
    } else {
        report.warnings.push(
            "the repository is not encrypted (format version 1): anyone who can read the \
             storage can read these backups"
                .into(),
        );
    }

    // 1. Snapshots first: anything they need was written before them.
    let snapshots = load_snapshots(repo, &mut report).await?;
    report.snapshots = snapshots.len();
    // A backup may have committed since the repository was opened: bring the cache up to
    // date, so reading its trees below finds their blobs.
    repo.sync_index().await?;
    check_dictionaries(repo, &mut report, &mut damage).await?;

    // 2. The index, read from the repository (not trusted from the cache).
    let index = load_index(repo, &mut report).await?;
    report.packs = index.packs.len();
    report.blobs = index.blobs.len();

    // 3. Packs: present, right size, header agrees with the index.
    let listed: HashMap<PackId, u64> = repo.list_packs().await?.into_iter().collect();
    let mut index = index;
    add_marked_packs(&mut index, &listed, &mut report);
    check_packs(repo, &index, &listed, &mut report, &mut damage).await?;

    // 4. Contents. A pack whose header was unusable is read too: its blobs may still decode.
    if options.read_data || options.subset.is_some() {
        let mut ids: Vec<&PackId> = index.packs.keys().collect();
        ids.sort();
        for id in ids {
            if options.subset.is_some_and(|s| !s.contains(id)) || !listed.contains_key(id) {
                continue;
            }
            if listed[id] != index.packs[id].size {
                continue;
            }
            read_pack(repo, &index.packs[id], &mut report, &mut damage).await?;
        }
    }

    // 5. Remember what is broken (and what turned out sound), so writers stop referring to
    // it; before the walk, so that reading trees uses what was just learnt.
    record_pack_states(repo, &index, &listed, &damage, &mut report).await?;

    // 6. Every snapshot: can each file and folder it names be read back?
    let used = find_damaged_snapshots(repo, &snapshots, &index, &damage, &mut report).await;
    report_unreferenced(repo, &index, &used, &mut report)?;

    // 7. Leftovers of interrupted writes in a local (or sftp) repository's `tmp/`.
    for leftover in repo
        .backend()
        .tmp_leftovers(crate::backend::TMP_LEFTOVER_AGE)
        .await?
    {
        report.warnings.push(format!(
            "{leftover} was left by an interrupted write; the next `airback snapshot` removes \
             it, or delete it"
        ));
    }
    Ok(report)
}

/// The index as check reads it from the repository.
struct CheckedIndex {
    /// Every indexed pack, once.
    packs: HashMap<PackId, IndexPack>,
    /// Where every blob is.
    blobs: HashMap<(BlobId, BlobKind), Located>,
    /// Packs that `airback repair index` recorded as dropped, with why.
    recorded_bad: HashMap<PackId, String>,
    /// Packs that prune marked for deletion and no effective file lists as live.
    marked: HashMap<PackId, IndexPack>,
    /// Their ids (kept after the ones still stored join `packs`).
    marked_ids: HashSet<PackId>,
}

/// Every snapshot that can be read; the others are reported as damaged.
async fn load_snapshots(
    repo: &Repository,
    report: &mut CheckReport,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let mut snapshots = Vec::new();
    for id in repo.list_snapshots().await? {
        match repo.load_snapshot(&id).await {
            Ok(s) => snapshots.push((id, s)),
            Err(e) => {
                report.errors.push(format!("snapshot {id}: {e}"));
                report.damaged_snapshots.push(DamagedSnapshot {
                    id,
                    source: String::new(),
                    time: String::new(),
                    lost_count: 1,
                    lost: vec![format!("the snapshot object itself: {e}")],
                });
            }
        }
    }
    Ok(snapshots)
}

/// Dictionaries: each must hash to its name; a lost one may have an intact copy in a pack.
async fn check_dictionaries(
    repo: &Repository,
    report: &mut CheckReport,
    damage: &mut Damage,
) -> Result<()> {
    for problem in repo.load_dictionaries().await? {
        let id = problem.id;
        if let Some(object) = &problem.object {
            let consequence = if problem.recovered {
                "every dictionary the index records is intact or has an intact copy, so nothing \
                 is lost (`airback repair index` removes it)"
            } else {
                "some dictionary has no intact copy: metadata compressed with it cannot be read"
            };
            if !problem.recovered {
                damage.dictionary_lost = true;
            }
            report.errors.push(format!(
                "dictionary `{object}` is {}; {consequence}",
                problem.problem
            ));
        } else if problem.recovered {
            report.errors.push(format!(
                "zstd dictionary {id} is {}; its copy in a pack is intact, so nothing is lost (`airback repair index` writes it back)",
                problem.problem
            ));
        } else {
            damage.dictionary_lost = true;
            report.errors.push(format!(
                "zstd dictionary {id} is {}, and no intact copy exists: metadata compressed with it cannot be read",
                problem.problem
            ));
        }
    }
    if !repo.dictionaries_complete() {
        damage.dictionary_lost = true;
    }
    Ok(())
}

/// Reads every index file. Index files that another one supersedes (left by an interrupted
/// repair) are skipped; two files that describe one pack differently are an error.
async fn load_index(repo: &Repository, report: &mut CheckReport) -> Result<CheckedIndex> {
    let mut files = Vec::new();
    for id in repo.list_index_files().await? {
        report.index_files += 1;
        match repo.load_index_file(&id).await {
            Ok(file) => files.push((id, file)),
            Err(e) => report.errors.push(format!("index file {id}: {e}")),
        }
    }
    let superseded: HashSet<IndexId> = files
        .iter()
        .flat_map(|(_, f)| f.supersedes.iter().copied())
        .collect();
    let mut recorded_bad: HashMap<PackId, String> = HashMap::new();
    let mut packs: HashMap<PackId, IndexPack> = HashMap::new();
    let mut blobs: HashMap<(BlobId, BlobKind), Located> = HashMap::new();
    let mut marked: HashMap<PackId, IndexPack> = HashMap::new();
    for (id, file) in files {
        if superseded.contains(&id) {
            report.warnings.push(format!(
                "index file {id} is superseded by a newer one (left by an interrupted prune or repair); the next `airback prune` or `airback repair index` removes it"
            ));
            continue;
        }
        for d in file.damaged_packs {
            recorded_bad.insert(d.id, d.reason);
        }
        for m in file.packs_to_delete {
            marked.insert(m.pack.id, m.pack);
        }
        for p in file.packs {
            if let Some(existing) = packs.get(&p.id) {
                if existing.blobs != p.blobs || existing.size != p.size {
                    report.errors.push(format!(
                        "pack {}: index file {id} describes it differently from another index file",
                        p.id
                    ));
                }
                continue;
            }
            for b in &p.blobs {
                let entry = blobs.entry((b.id, p.kind)).or_insert_with(|| Located {
                    packs: Vec::new(),
                    dict_compressed: false,
                });
                entry.packs.push((p.id, *b, p.salt));
                entry.dict_compressed |= b.compression == codec::Compression::ZstdDict;
            }
            packs.insert(p.id, p);
        }
    }
    marked.retain(|id, _| !packs.contains_key(id));
    let marked_ids = marked.keys().copied().collect();
    Ok(CheckedIndex {
        packs,
        blobs,
        recorded_bad,
        marked,
        marked_ids,
    })
}

/// Packs marked for deletion that are still in storage are checked like the others (readers
/// may still read them, and a snapshot saved while prune ran may need them until the next
/// prune recovers them); marked packs already deleted are fine (docs/FORMAT.md, "Deletion").
fn add_marked_packs(
    index: &mut CheckedIndex,
    listed: &HashMap<PackId, u64>,
    report: &mut CheckReport,
) {
    let marked = std::mem::take(&mut index.marked);
    let total = marked.len();
    let mut present = 0;
    for (id, p) in marked {
        if !listed.contains_key(&id) {
            continue;
        }
        present += 1;
        for b in &p.blobs {
            let entry = index
                .blobs
                .entry((b.id, p.kind))
                .or_insert_with(|| Located {
                    packs: Vec::new(),
                    dict_compressed: false,
                });
            entry.packs.push((p.id, *b, p.salt));
            entry.dict_compressed |= b.compression == codec::Compression::ZstdDict;
        }
        index.packs.insert(id, p);
    }
    if total > 0 {
        report.warnings.push(format!(
            "{} marked for deletion by prune ({present} still in storage); a later `airback prune` deletes them",
            if total == 1 { "1 pack is".to_owned() } else { format!("{total} packs are") }
        ));
    }
}

/// Every indexed pack is in storage with its indexed size and a header that agrees with the
/// index; packs in storage that no index names are reported, with what they probably are.
async fn check_packs(
    repo: &Repository,
    index: &CheckedIndex,
    listed: &HashMap<PackId, u64>,
    report: &mut CheckReport,
    damage: &mut Damage,
) -> Result<()> {
    let mut pack_ids: Vec<&PackId> = index.packs.keys().collect();
    pack_ids.sort();
    for id in pack_ids {
        let indexed = &index.packs[id];
        let problem = match listed.get(id) {
            None => Some(crate::repo::MISSING.to_string()),
            Some(&size) if size != indexed.size => Some(format!(
                "{size} bytes in storage where the index says {}",
                indexed.size
            )),
            Some(_) => None,
        };
        if let Some(reason) = problem {
            report
                .errors
                .push(format!("pack {id} is in the index but {reason}"));
            damage.bad_packs.insert(*id, reason);
            continue;
        }
        match repo.read_pack_header(id, indexed.size).await {
            Ok((kind, header_blobs, salt)) => {
                let before = report.errors.len();
                if salt != indexed.salt {
                    report.errors.push(format!(
                        "pack {id}: its salt differs from the one in the index"
                    ));
                }
                compare_header(id, indexed, kind, &header_blobs, &mut report.errors);
                if report.errors.len() > before {
                    damage
                        .bad_packs
                        .insert(*id, "damaged (its header disagrees with the index)".into());
                }
            }
            Err(e) => {
                report
                    .errors
                    .push(format!("pack {id}: header unreadable: {e}"));
                damage
                    .bad_packs
                    .insert(*id, "damaged (its header cannot be read)".into());
            }
        }
    }
    let mut unindexed: Vec<(&PackId, &u64)> = listed
        .iter()
        .filter(|(id, _)| !index.packs.contains_key(id))
        .collect();
    unindexed.sort();
    for (id, size) in unindexed {
        let state = if let Some(reason) = index.recorded_bad.get(id) {
            format!("`airback repair index` dropped it from the index: {reason}; safe to delete")
        } else {
            match repo.read_pack_header(id, *size).await {
                Ok(_) => "a complete pack; the next snapshot adopts it into the index".into(),
                Err(_) => "unreadable, probably an interrupted upload; safe to delete".into(),
            }
        };
        report
            .warnings
            .push(format!("pack {id} is not in the index ({state})"));
    }
    Ok(())
}

/// Records in the cache the packs found missing or damaged, and those found sound again. A
/// pack recorded as missing that is back with its indexed size and a good header counts as
/// sound.
async fn record_pack_states(
    repo: &Repository,
    index: &CheckedIndex,
    listed: &HashMap<PackId, u64>,
    damage: &Damage,
    report: &mut CheckReport,
) -> Result<()> {
    let mut bad: Vec<(PackId, String)> = damage
        .bad_packs
        .iter()
        .map(|(id, reason)| (*id, reason.clone()))
        .collect();
    let damaged_by_read: HashSet<PackId> = damage.bad_blobs.keys().map(|(_, _, p)| *p).collect();
    bad.extend(
        damaged_by_read
            .into_iter()
            .map(|p| (p, "damaged (found by `check --read-data`)".to_string())),
    );
    bad.sort();
    bad.dedup_by_key(|(id, _)| *id);
    report.damaged_packs = bad
        .iter()
        .map(|(id, reason)| PackProblem {
            id: *id,
            reason: reason.clone(),
        })
        .collect();
    repo.mark_packs_damaged(bad).await?;
    let recorded = repo.cache().bad_packs()?;
    let mut sound: Vec<PackId> = damage.verified.iter().copied().collect();
    sound.extend(recorded.iter().filter_map(|(id, reason)| {
        (reason == crate::repo::MISSING
            && index.packs.contains_key(id)
            && listed.get(id) == Some(&index.packs[id].size)
            && !damage.bad_packs.contains_key(id))
        .then_some(*id)
    }));
    repo.mark_packs_sound(&sound).await?;
    Ok(())
}

/// Names every snapshot that lost content, with what it lost.
async fn find_damaged_snapshots(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    index: &CheckedIndex,
    damage: &Damage,
    report: &mut CheckReport,
) -> HashSet<(BlobId, BlobKind)> {
    let mut walk = Walk::default();
    for (snapshot_id, snapshot) in snapshots {
        let lost: Vec<String> =
            tree_losses(repo, snapshot.tree, "", &index.blobs, damage, &mut walk)
                .await
                .into_iter()
                .map(|(path, why)| format!("`{path}`{why}"))
                .collect();
        if lost.is_empty() {
            continue;
        }
        let source = describe_source(&snapshot.source);
        let listed: Vec<&str> = lost.iter().take(10).map(String::as_str).collect();
        let more = if lost.len() > listed.len() {
            format!("; and {} more", lost.len() - listed.len())
        } else {
            String::new()
        };
        report.errors.push(format!(
            "snapshot {} ({source}, {}) is damaged: {} cannot be read: {}{more}",
            snapshot_id.short(),
            snapshot.time,
            plural(lost.len(), "item"),
            listed.join("; ")
        ));
        report.damaged_snapshots.push(DamagedSnapshot {
            id: *snapshot_id,
            source,
            time: snapshot.time.clone(),
            lost_count: lost.len(),
            lost: lost.into_iter().take(MAX_LOST_LISTED).collect(),
        });
    }
    walk.used
}

/// What the walk over the snapshots' trees remembers: each tree's losses (trees are shared
/// between snapshots, so each is read once) and every blob the trees name.
#[derive(Default)]
struct Walk {
    memo: HashMap<BlobId, Vec<(String, String)>>,
    used: HashSet<(BlobId, BlobKind)>,
}

/// Live packs that no snapshot uses: information (not an error), since `prune` removes them.
/// A pack holding a dictionary's copy counts as used.
fn report_unreferenced(
    repo: &Repository,
    index: &CheckedIndex,
    used: &HashSet<(BlobId, BlobKind)>,
    report: &mut CheckReport,
) -> Result<()> {
    let dictionaries: HashSet<BlobId> = repo
        .cache()
        .dictionary_ids()?
        .into_iter()
        .map(|d| BlobId(d.0))
        .collect();
    let marked = &index.marked_ids;
    for (id, pack) in &index.packs {
        if marked.contains(id) {
            continue;
        }
        let referenced = pack.blobs.iter().any(|b| {
            used.contains(&(b.id, pack.kind))
                || (pack.kind == BlobKind::Meta && dictionaries.contains(&b.id))
        });
        if !referenced {
            report.unreferenced_packs += 1;
            report.unreferenced_bytes += pack.size;
        }
    }
    if report.unreferenced_packs > 0 {
        report.warnings.push(format!(
            "{} ({:.1} MiB) hold no blob any snapshot uses; `airback prune` removes them",
            if report.unreferenced_packs == 1 {
                "1 pack".to_owned()
            } else {
                format!("{} packs", report.unreferenced_packs)
            },
            report.unreferenced_bytes as f64 / (1024.0 * 1024.0)
        ));
    }
    Ok(())
}

/// "1 item", "2 items".
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// "base appXXX", or the source JSON when it is not an Airtable base.
fn describe_source(source: &serde_json::Value) -> String {
    match Source::from_json(source) {
        Some(airtable) => format!("base {}", airtable.base_id),
        None => source.to_string(),
    }
}

/// The name a node carries in its metadata (a table's name, an attachment's filename).
fn node_label(meta: &serde_json::Value) -> String {
    TableMeta::from_json(meta)
        .map(|table| table.name)
        .or_else(|| AttachmentMeta::from_json(meta).map(|attachment| attachment.filename))
        .map(|name| format!(" ({name:?})"))
        .unwrap_or_default()
}

/// A boxed future, for recursion.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What cannot be read below `tree`: (path, why) for each lost file or folder, paths below
/// `prefix`. Trees are shared between snapshots, so results are remembered by tree id
/// (relative to the tree) and each tree is read once.
fn tree_losses<'a>(
    repo: &'a Repository,
    tree: BlobId,
    prefix: &'a str,
    blobs: &'a HashMap<(BlobId, BlobKind), Located>,
    damage: &'a Damage,
    walk: &'a mut Walk,
) -> BoxFuture<'a, Vec<(String, String)>> {
    Box::pin(async move {
        if let Some(relative) = walk.memo.get(&tree) {
            return prefixed(prefix, relative);
        }
        walk.used.insert((tree, BlobKind::Meta));
        let mut relative = Vec::new();
        if let Some(why) = damage.unreadable(blobs, tree, BlobKind::Meta) {
            relative.push((
                "/".to_string(),
                format!(" (the whole folder): its tree {why}"),
            ));
        } else {
            match load_tree(repo, tree, blobs, damage).await {
                Err(e) => relative.push(("/".to_string(), format!(" (the whole folder): {e}"))),
                Ok(loaded) => {
                    for node in loaded.nodes {
                        let child = format!("/{}", node.name);
                        match node.kind {
                            NodeKind::File {
                                content, blob_kind, ..
                            } => {
                                walk.used.extend(content.iter().map(|b| (*b, blob_kind)));
                                let why = content
                                    .iter()
                                    .find_map(|b| damage.unreadable(blobs, *b, blob_kind));
                                if let Some(why) = why {
                                    let label = node_label(&node.meta);
                                    relative.push((child, format!("{label} {why}")));
                                }
                            }
                            NodeKind::Dir { subtree } => {
                                let below =
                                    tree_losses(repo, subtree, &child, blobs, damage, walk).await;
                                relative.extend(below);
                            }
                        }
                    }
                }
            }
        }
        let out = prefixed(prefix, &relative);
        walk.memo.insert(tree, relative);
        out
    })
}

/// Reads a tree from a copy that check found readable, straight from the index's entry (the
/// cache may have just recorded that copy's pack as damaged while this blob in it is sound).
async fn load_tree(
    repo: &Repository,
    tree: BlobId,
    blobs: &HashMap<(BlobId, BlobKind), Located>,
    damage: &Damage,
) -> Result<crate::repo::snapshot::Tree> {
    let mut last = None;
    for (pack, entry, salt) in blobs
        .get(&(tree, BlobKind::Meta))
        .map(|l| l.packs.as_slice())
        .unwrap_or_default()
    {
        if damage.bad_packs.contains_key(pack) && !damage.bad_packs_readable.contains(pack)
            || damage
                .bad_blobs
                .contains_key(&(tree, BlobKind::Meta, *pack))
        {
            continue;
        }
        match repo.read_blob_at(pack, *salt, BlobKind::Meta, entry).await {
            Ok(bytes) => return Repository::parse_tree(&tree, &bytes),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(crate::repo::RepoError::MissingBlob(tree)))
}

fn prefixed(prefix: &str, relative: &[(String, String)]) -> Vec<(String, String)> {
    relative
        .iter()
        .map(|(path, why)| (format!("{prefix}{path}"), why.clone()))
        .collect()
}

fn compare_header(
    id: &PackId,
    indexed: &IndexPack,
    kind: BlobKind,
    header: &[PackedBlob],
    errors: &mut Vec<String>,
) {
    if kind != indexed.kind {
        errors.push(format!(
            "pack {id}: header says {} blobs, the index says {}",
            kind.as_str(),
            indexed.kind.as_str()
        ));
    }
    let in_header: HashMap<BlobId, &PackedBlob> = header.iter().map(|b| (b.id, b)).collect();
    for b in &indexed.blobs {
        match in_header.get(&b.id) {
            Some(h) if *h == b => {}
            Some(_) => errors.push(format!(
                "pack {id}: blob {}: header entry disagrees with the index",
                b.id
            )),
            None => errors.push(format!(
                "pack {id}: blob {} is in the index but not in the pack header",
                b.id
            )),
        }
    }
    let in_index: HashSet<BlobId> = indexed.blobs.iter().map(|b| b.id).collect();
    for h in header {
        if !in_index.contains(&h.id) {
            errors.push(format!(
                "pack {id}: blob {} is in the pack header but not in the index",
                h.id
            ));
        }
    }
}

async fn read_pack(
    repo: &Repository,
    indexed: &IndexPack,
    report: &mut CheckReport,
    damage: &mut Damage,
) -> Result<()> {
    let id = indexed.id;
    let bytes = match repo.backend().read(&pack_path(&id)).await {
        Ok(b) => b,
        Err(e) => {
            report
                .errors
                .push(format!("pack {id}: cannot be read: {e}"));
            damage.bad_packs.insert(id, format!("unreadable ({e})"));
            return Ok(());
        }
    };
    report.packs_read += 1;
    report.bytes_read += bytes.len() as u64;
    let blobs = indexed.blobs.clone();
    let (kind, salt) = (indexed.kind, indexed.salt);
    let dicts = repo.dictionaries();
    let crypto = repo.crypto().clone();
    let (problems, bad_blobs) = crate::repo::writer::run_cpu(move || {
        let mut problems = Vec::new();
        let mut bad_blobs = Vec::new();
        if PackId::of(&bytes) != id {
            problems.push(format!(
                "pack {id}: content does not hash to its name (the file is damaged)"
            ));
        }
        if let Err(e) = pack::parse_pack(&bytes, &crypto) {
            problems.push(format!("pack {id}: header: {e}"));
        }
        // Open and decode with the index's view (its salt too), so that every damaged blob is
        // named.
        for b in &blobs {
            let start = b.offset as usize;
            let end = start + b.length as usize;
            let Some(stored) = bytes.get(start..end) else {
                problems.push(format!("pack {id}: blob {} lies outside the pack", b.id));
                bad_blobs.push((b.id, "it lies outside the pack".to_string()));
                continue;
            };
            if let Err(e) = pack::open_and_decode(&crypto, salt.as_ref(), kind, b, stored, &dicts) {
                problems.push(format!("pack {id}: blob {}: {e}", b.id));
                bad_blobs.push((b.id, e.to_string()));
            }
        }
        (problems, bad_blobs)
    })
    .await?;
    if problems.is_empty() {
        damage.verified.insert(id);
    } else if bad_blobs.is_empty() {
        // The pack object is damaged outside its blobs (say, in its header): every blob still
        // reads, but the object must be repaired.
        damage
            .bad_packs
            .insert(id, "damaged (found by `check --read-data`)".into());
        damage.bad_packs_readable.insert(id);
    }
    for (blob, reason) in bad_blobs {
        damage.bad_blobs.insert((blob, indexed.kind, id), reason);
    }
    // The header check found a problem that reading shows is harmless to the blobs.
    if damage.bad_packs.contains_key(&id) && problems.is_empty() {
        damage.bad_packs.remove(&id);
    }
    report.errors.extend(problems);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_partition_the_packs() {
        let m = 7;
        for i in 0..500u32 {
            let id = PackId::of(&i.to_le_bytes());
            let hits = (1..=m).filter(|&n| Subset { n, m }.contains(&id)).count();
            assert_eq!(hits, 1);
        }
        assert!("0/3".parse::<Subset>().is_err());
        assert!("4/3".parse::<Subset>().is_err());
        assert_eq!("2/3".parse::<Subset>().unwrap(), Subset { n: 2, m: 3 });
    }
}
