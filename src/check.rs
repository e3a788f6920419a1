//! `airback check`: verifies the repository's invariants, reading in the reverse of the write
//! order (snapshots, then index, then packs) so that a concurrent backup cannot cause a false
//! alarm.
//!
//! Structure (always): every index file hashes to its name; every indexed pack exists with the
//! indexed size and its own header lists exactly what the index says; every blob a snapshot
//! needs (trees, file contents) is indexed with the right kind. With `--read-data`, every pack
//! (or a deterministic subset) is downloaded, hashed, and every blob decoded and hashed.

use std::collections::{HashMap, HashSet};

use crate::codec;
use crate::id::{BlobId, PackId, SnapshotId};
use crate::repo::index::IndexPack;
use crate::repo::pack::{self, BlobKind, PackedBlob, pack_path};
use crate::repo::snapshot::NodeKind;
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
}

impl CheckReport {
    /// True when no error was found.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks the repository. Storage failures are errors of the call; damage is reported.
pub async fn check(repo: &Repository, options: &CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport::default();

    // 1. Snapshots first: anything they need was written before them.
    let mut snapshots = Vec::new();
    for id in repo.list_snapshots().await? {
        match repo.load_snapshot(&id).await {
            Ok(s) => snapshots.push((id, s)),
            Err(e) => report.errors.push(format!("snapshot {id}: {e}")),
        }
    }
    report.snapshots = snapshots.len();
    // A backup may have committed since the repository was opened: bring the cache up to
    // date, so reading its trees below finds their blobs.
    repo.sync_index().await?;

    // Dictionaries: each must hash to its name (damaged ones were left out when opening).
    for id in repo.load_dictionaries().await? {
        report.errors.push(format!(
            "zstd dictionary {id} is damaged: its blobs cannot be decoded"
        ));
    }

    // 2. The index, read from the repository (not trusted from the cache).
    let mut packs: HashMap<PackId, IndexPack> = HashMap::new();
    let mut blobs: HashMap<(BlobId, BlobKind), PackId> = HashMap::new();
    for id in repo.list_index_files().await? {
        report.index_files += 1;
        match repo.load_index_file(&id).await {
            Ok(file) => {
                for p in file.packs {
                    for b in &p.blobs {
                        blobs.entry((b.id, p.kind)).or_insert(p.id);
                    }
                    if let Some(existing) = packs.get(&p.id) {
                        if existing.blobs != p.blobs || existing.size != p.size {
                            report.errors.push(format!(
                                "pack {}: index file {id} describes it differently from another index file",
                                p.id
                            ));
                        }
                    } else {
                        packs.insert(p.id, p);
                    }
                }
            }
            Err(e) => report.errors.push(format!("index file {id}: {e}")),
        }
    }
    report.packs = packs.len();
    report.blobs = blobs.len();

    // 3. Packs: present, right size, header agrees with the index.
    let listed: HashMap<PackId, u64> = repo
        .backend()
        .list("data/")
        .await?
        .into_iter()
        .filter_map(|e| Some((e.name.rsplit('/').next()?.parse().ok()?, e.size)))
        .collect();
    let mut pack_ids: Vec<&PackId> = packs.keys().collect();
    pack_ids.sort();
    for id in pack_ids {
        let indexed = &packs[id];
        match listed.get(id) {
            None => {
                report.errors.push(format!(
                    "pack {id} is in the index but missing from storage"
                ));
                continue;
            }
            Some(&size) if size != indexed.size => {
                report.errors.push(format!(
                    "pack {id} has {size} bytes, the index says {}",
                    indexed.size
                ));
                continue;
            }
            Some(_) => {}
        }
        match repo.read_pack_header(id, indexed.size).await {
            Ok((kind, header_blobs)) => {
                compare_header(id, indexed, kind, &header_blobs, &mut report.errors);
            }
            Err(e) => report
                .errors
                .push(format!("pack {id}: header unreadable: {e}")),
        }
    }
    let mut unindexed: Vec<(&PackId, &u64)> = listed
        .iter()
        .filter(|(id, _)| !packs.contains_key(id))
        .collect();
    unindexed.sort();
    for (id, size) in unindexed {
        let state = match repo.read_pack_header(id, *size).await {
            Ok(_) => "a complete pack; the next snapshot adopts it into the index",
            Err(_) => "unreadable, probably an interrupted upload; safe to delete",
        };
        report
            .warnings
            .push(format!("pack {id} is not in the index ({state})"));
    }

    // 4. Every blob the snapshots need is indexed, with the right kind.
    let mut seen_trees: HashSet<BlobId> = HashSet::new();
    for (snapshot_id, snapshot) in &snapshots {
        walk(
            repo,
            snapshot_id,
            snapshot.tree,
            "",
            &blobs,
            &mut seen_trees,
            &mut report.errors,
        )
        .await;
    }

    // 5. Contents.
    if options.read_data || options.subset.is_some() {
        let mut ids: Vec<&PackId> = packs.keys().collect();
        ids.sort();
        for id in ids {
            if options.subset.is_some_and(|s| !s.contains(id)) || !listed.contains_key(id) {
                continue;
            }
            read_pack(repo, &packs[id], &mut report).await?;
        }
    }

    // 6. Leftovers of interrupted writes in a local repository's `tmp/`.
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

fn walk<'a>(
    repo: &'a Repository,
    snapshot: &'a SnapshotId,
    tree: BlobId,
    path: &'a str,
    blobs: &'a HashMap<(BlobId, BlobKind), PackId>,
    seen: &'a mut HashSet<BlobId>,
    errors: &'a mut Vec<String>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        if !seen.insert(tree) {
            return;
        }
        let short = snapshot.short();
        if !blobs.contains_key(&(tree, BlobKind::Meta)) {
            errors.push(format!(
                "snapshot {short}: tree `{path}/` ({tree}) is not in the index as a metadata blob"
            ));
            return;
        }
        let loaded = match repo.load_tree(&tree).await {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("snapshot {short}: tree `{path}/`: {e}"));
                return;
            }
        };
        for node in loaded.nodes {
            let child = format!("{path}/{}", node.name);
            match node.kind {
                NodeKind::File {
                    content, blob_kind, ..
                } => {
                    for blob in content {
                        if !blobs.contains_key(&(blob, blob_kind)) {
                            errors.push(format!(
                                "snapshot {short}: file `{child}` needs {} blob {blob}, which no index lists",
                                blob_kind.as_str()
                            ));
                        }
                    }
                }
                NodeKind::Dir { subtree } => {
                    walk(repo, snapshot, subtree, &child, blobs, seen, errors).await;
                }
            }
        }
    })
}

async fn read_pack(repo: &Repository, indexed: &IndexPack, report: &mut CheckReport) -> Result<()> {
    let id = indexed.id;
    let bytes = match repo.backend().read(&pack_path(&id)).await {
        Ok(b) => b,
        Err(e) => {
            report
                .errors
                .push(format!("pack {id}: cannot be read: {e}"));
            return Ok(());
        }
    };
    report.packs_read += 1;
    report.bytes_read += bytes.len() as u64;
    let blobs = indexed.blobs.clone();
    let dicts = repo.dictionaries();
    let problems = crate::repo::writer::run_cpu(move || {
        let mut problems = Vec::new();
        if PackId::of(&bytes) != id {
            problems.push(format!(
                "pack {id}: content does not hash to its name (the file is damaged)"
            ));
        }
        if let Err(e) = pack::parse_pack(&bytes) {
            problems.push(format!("pack {id}: header: {e}"));
        }
        // Decode with the index's view, so that every damaged blob is named.
        for b in &blobs {
            let start = b.offset as usize;
            let end = start + b.length as usize;
            let Some(stored) = bytes.get(start..end) else {
                problems.push(format!("pack {id}: blob {} lies outside the pack", b.id));
                continue;
            };
            if let Err(e) = codec::decode(&b.id, stored, b.compression, b.raw_length, &dicts) {
                problems.push(format!("pack {id}: blob {}: {e}", b.id));
            }
        }
        problems
    })
    .await?;
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
