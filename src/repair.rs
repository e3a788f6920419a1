//! `airback repair index` and `airback repair snapshots`: bringing a damaged repository back
//! to a state where every snapshot reads back completely, losing no more than was lost.
//!
//! - **repair index** reads every pack in storage, verifies it whole (its hash, its header and
//!   every blob), and writes a new index of the packs that verify, which supersedes every
//!   existing index file. A damaged pack's blobs that still decode are salvaged into new
//!   packs; the rest are dropped from the index, so the next snapshot stores that content
//!   again; then the damaged pack objects are deleted. The new index names the packs it
//!   dropped (`damaged_packs`, a record for people and `check`). Dictionaries missing from
//!   `dicts/` or damaged there are written back from their copies in packs.
//! - **repair snapshots** rewrites each snapshot that refers to content the index does not
//!   hold: a table whose file lost some blobs keeps its complete records, an attachment or
//!   another file that lost any blob is dropped, a lost folder is dropped. The new snapshot is
//!   marked partial and names every loss; then the original is deleted. A snapshot whose root
//!   is lost, or whose manifest cannot be read, is deleted and reported.
//!
//! Both take the exclusive lock and write in the usual order (packs, index, snapshot) before
//! deleting anything, so an interrupted repair leaves a repository that `check` accepts and
//! that the same command finishes.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::check::PackProblem;
use crate::codec;
use crate::crypto::Salt;
use crate::id::{BlobId, DictId, IndexId, PackId, SnapshotId};
use crate::layout::{self, AttachmentMeta, LayoutJson, TableMeta};
use crate::repo::index::{DamagedPack, IndexFile, IndexPack, MAX_BLOBS_PER_INDEX_FILE};
use crate::repo::pack::{self, BlobKind, pack_path};
use crate::repo::snapshot::{Node, NodeKind, Snapshot, Tree};
use crate::repo::{
    BlobWriter, DictionaryProblem, Exclusive, RepoError, Repository, Result, dict_path,
};

/// What `repair index` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexRepair {
    /// Packs read whole from storage.
    pub packs_read: usize,
    /// Bytes read.
    pub bytes_read: u64,
    /// Packs that verified and are in the new index.
    pub packs_kept: usize,
    /// Of those, packs no index listed before (left by interrupted runs).
    pub packs_adopted: usize,
    /// Packs missing from storage or damaged, dropped from the index.
    pub packs_damaged: Vec<PackProblem>,
    /// Blobs of damaged packs that still decoded and were stored again.
    pub blobs_salvaged: usize,
    /// Blobs of damaged packs that could not be read: the next snapshot stores what the base
    /// still holds; `repair snapshots` removes the rest from old snapshots.
    pub blobs_lost: usize,
    /// Index files written.
    pub index_files_written: usize,
    /// Index files removed (superseded).
    pub index_files_removed: usize,
    /// Dictionaries written back to `dicts/` from their copies.
    pub dictionaries_restored: Vec<DictId>,
    /// Damaged dictionaries removed from `dicts/` (no copy; no indexed blob needs them now).
    pub dictionaries_removed: Vec<DictId>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

/// One snapshot that `repair snapshots` rewrote or removed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotRepair {
    /// The damaged snapshot.
    pub original: SnapshotId,
    /// The partial snapshot that replaces it; `None` when it was removed.
    pub replacement: Option<SnapshotId>,
    /// What was lost, one line each.
    pub lost: Vec<String>,
}

/// What `repair snapshots` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SnapshotsRepair {
    /// Snapshots looked at.
    pub snapshots: usize,
    /// Those rewritten or removed.
    pub repaired: Vec<SnapshotRepair>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

/// Rebuilds the index from the packs in storage; see the module documentation.
pub async fn repair_index(repo: &Exclusive, dry_run: bool) -> Result<IndexRepair> {
    let mut report = IndexRepair {
        dry_run,
        ..IndexRepair::default()
    };
    // Index files before packs: every pack an index file lists was stored before it.
    let old_files = repo.list_index_files().await?;
    let indexed = read_index(repo, &old_files).await?;
    let stored = repo.list_packs().await?;
    let in_storage: HashSet<PackId> = stored.iter().map(|(id, _)| *id).collect();

    let mut damaged: Vec<DamagedPack> = Vec::new();
    let mut missing: Vec<PackId> = indexed
        .keys()
        .filter(|id| !in_storage.contains(id))
        .copied()
        .collect();
    missing.sort();
    // Blobs of missing or damaged packs; those no kept pack holds and none salvaged are lost.
    let mut at_risk: HashSet<(BlobId, BlobKind)> = HashSet::new();
    let mut saved: HashSet<(BlobId, BlobKind)> = HashSet::new();
    for id in missing {
        let pack = &indexed[&id];
        at_risk.extend(pack.blobs.iter().map(|b| (b.id, pack.kind)));
        damaged.push(DamagedPack {
            id,
            reason: crate::repo::MISSING.into(),
        });
    }

    let writer = repo.writer();
    let mut kept: Vec<IndexPack> = Vec::new();
    for (id, size) in stored {
        let bytes = repo.backend().read(&pack_path(&id)).await?;
        report.packs_read += 1;
        report.bytes_read += bytes.len() as u64;
        let known = indexed.get(&id).cloned();
        let verdict = verify_pack(repo, id, bytes, known).await?;
        match verdict {
            PackVerdict::Sound(pack) => {
                if !indexed.contains_key(&id) {
                    report.packs_adopted += 1;
                }
                kept.push(IndexPack {
                    id,
                    kind: pack.0,
                    size,
                    blobs: pack.1,
                    salt: pack.2,
                });
            }
            PackVerdict::Damaged {
                reason,
                readable,
                lost,
            } => {
                at_risk.extend(lost);
                if !dry_run {
                    // Its blobs must stop counting as stored before they are saved again.
                    repo.mark_packs_damaged(vec![(id, reason.clone())]).await?;
                }
                for (kind, plain) in readable {
                    saved.insert((repo.blob_id(&plain), kind));
                    if !dry_run {
                        writer.save_blob(kind, plain).await?;
                    }
                    report.blobs_salvaged += 1;
                }
                damaged.push(DamagedPack { id, reason });
            }
        }
    }
    report.packs_kept = kept.len();
    for p in &kept {
        for b in &p.blobs {
            saved.insert((b.id, p.kind));
        }
    }
    report.blobs_lost = at_risk.difference(&saved).count();
    report.packs_damaged = damaged
        .iter()
        .map(|d| PackProblem {
            id: d.id,
            reason: d.reason.clone(),
        })
        .collect();
    let dictionaries = repo.load_dictionaries().await?;
    if dry_run {
        report.dictionaries_restored = dictionaries
            .iter()
            .filter(|d| d.recovered)
            .map(|d| d.id)
            .collect();
        return Ok(report);
    }

    // Salvaged blobs first (packs, then their index), then the new index, then deletions.
    let stats = writer.flush().await?;
    report.index_files_written += stats.index_files_written as usize;
    write_index(repo, kept, &old_files, &damaged, &in_storage, &mut report).await?;

    restore_dictionaries(repo, dictionaries, &mut report).await?;
    let sound: Vec<PackId> = repo.cache().pack_sizes()?.into_keys().collect();
    repo.mark_packs_sound(&sound).await?;
    repo.sync_index().await?;
    repo.load_dictionaries().await?;
    Ok(report)
}

/// The packs the readable index files list; a damaged index file is skipped with a warning.
async fn read_index(repo: &Exclusive, files: &[IndexId]) -> Result<HashMap<PackId, IndexPack>> {
    let mut indexed: HashMap<PackId, IndexPack> = HashMap::new();
    for id in files {
        match repo.load_index_file(id).await {
            Ok(file) => {
                for p in file.packs {
                    indexed.entry(p.id).or_insert(p);
                }
            }
            Err(RepoError::Corrupt { what, detail }) => {
                tracing::warn!("{what} is damaged ({detail}); rebuilding from the packs");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(indexed)
}

/// Writes the rebuilt index (every kept pack, the damaged ones recorded in the first file,
/// each file superseding the old ones), then removes the old index files and the damaged packs
/// still in storage: written before deleted, so a crash leaves a readable index.
async fn write_index(
    repo: &Exclusive,
    kept: Vec<IndexPack>,
    old_files: &[IndexId],
    damaged: &[DamagedPack],
    in_storage: &HashSet<PackId>,
    report: &mut IndexRepair,
) -> Result<()> {
    let dict_ids: HashSet<BlobId> = repo.dictionaries().iter().map(|d| BlobId(d.id.0)).collect();
    let mut written: HashSet<IndexId> = HashSet::new();
    let mut batches = batch_packs(kept);
    if batches.is_empty() && !damaged.is_empty() {
        batches.push(Vec::new());
    }
    for (i, batch) in batches.into_iter().enumerate() {
        let mut file = IndexFile::new(batch, repo.config().version);
        file.supersedes = old_files.to_vec();
        file.dictionaries = file
            .packs
            .iter()
            .filter(|p| p.kind == BlobKind::Meta)
            .flat_map(|p| p.blobs.iter())
            .filter(|b| dict_ids.contains(&b.id))
            .map(|b| DictId(b.id.0))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if i == 0 {
            file.damaged_packs = damaged.to_vec();
        }
        written.insert(repo.write_index_file(file).await?);
        report.index_files_written += 1;
    }
    for id in old_files {
        if written.contains(id) {
            continue;
        }
        repo.delete_index_file(id).await?;
        report.index_files_removed += 1;
    }
    // Damaged packs still in storage: what could be read is stored again and indexed, the rest
    // is unreadable; removing them keeps later runs from reading them again.
    for d in damaged {
        if in_storage.contains(&d.id) {
            repo.delete_pack(&d.id).await?;
        }
    }
    Ok(())
}

/// Dictionaries: writes back those recovered from a copy, and removes damaged ones that nothing
/// can use (blobs compressed with them did not decode and were dropped).
async fn restore_dictionaries(
    repo: &Exclusive,
    problems: Vec<DictionaryProblem>,
    report: &mut IndexRepair,
) -> Result<()> {
    let loaded: HashMap<DictId, codec::Dictionary> = repo
        .dictionaries()
        .iter()
        .map(|d| (d.id, d.clone()))
        .collect();
    for problem in problems {
        if let Some(dict) = loaded.get(&problem.id) {
            repo.store_dictionary(dict.clone()).await?;
            report.dictionaries_restored.push(dict.id);
        } else if repo
            .backend()
            .size(&dict_path(&problem.id))
            .await?
            .is_some()
        {
            repo.delete_dictionary(&problem.id).await?;
            report.dictionaries_removed.push(problem.id);
        }
    }
    Ok(())
}

/// Splits packs into index files of at most [`MAX_BLOBS_PER_INDEX_FILE`] blobs.
fn batch_packs(packs: Vec<IndexPack>) -> Vec<Vec<IndexPack>> {
    let mut batches: Vec<Vec<IndexPack>> = Vec::new();
    let mut blobs = 0;
    for pack in packs {
        if batches.is_empty() || blobs + pack.blobs.len() > MAX_BLOBS_PER_INDEX_FILE {
            batches.push(Vec::new());
            blobs = 0;
        }
        blobs += pack.blobs.len();
        batches.last_mut().expect("pushed").push(pack);
    }
    batches
}

/// The result of reading one pack whole.
enum PackVerdict {
    /// Hash, header and every blob are good.
    Sound((BlobKind, Vec<pack::PackedBlob>, Option<Salt>)),
    /// Something is wrong; `readable` holds the plaintext of the blobs that still decode.
    Damaged {
        reason: String,
        readable: Vec<(BlobKind, Vec<u8>)>,
        lost: Vec<(BlobId, BlobKind)>,
    },
}

/// Verifies a whole pack on the rayon pool. The blob list comes from the pack's own header, or
/// from the index when the header is damaged.
async fn verify_pack(
    repo: &Repository,
    id: PackId,
    bytes: Vec<u8>,
    indexed: Option<IndexPack>,
) -> Result<PackVerdict> {
    let dicts = repo.dictionaries();
    let crypto = repo.crypto().clone();
    crate::repo::writer::run_cpu(move || {
        let hash_ok = PackId::of(&bytes) == id;
        let (kind, blobs, salt, header_ok) = match pack::parse_pack(&bytes, &crypto) {
            Ok((kind, blobs, salt)) => (kind, blobs, salt, true),
            // The index (authenticated in format 2) says where the blobs are; the footer's
            // salt is used only when the index does not know the pack.
            Err(_) => match indexed {
                Some(p) => (p.kind, p.blobs, p.salt, false),
                None => {
                    return PackVerdict::Damaged {
                        reason: "damaged: its header cannot be read and no index describes it"
                            .into(),
                        readable: Vec::new(),
                        lost: Vec::new(),
                    };
                }
            },
        };
        let mut readable = Vec::new();
        let mut lost = Vec::new();
        for b in &blobs {
            let start = b.offset as usize;
            let decoded = bytes
                .get(start..start + b.length as usize)
                .and_then(|stored| {
                    pack::open_and_decode(&crypto, salt.as_ref(), kind, b, stored, &dicts).ok()
                });
            match decoded {
                Some(plain) => readable.push((kind, plain)),
                None => lost.push((b.id, kind)),
            }
        }
        if hash_ok && header_ok && lost.is_empty() {
            return PackVerdict::Sound((kind, blobs, salt));
        }
        let reason = match (hash_ok, header_ok, lost.len()) {
            (_, _, n) if n > 0 => {
                format!("damaged: {n} of its {} blobs do not decode", blobs.len())
            }
            (_, false, _) => "damaged: its header cannot be read".into(),
            _ => "damaged: its bytes do not hash to its name".into(),
        };
        PackVerdict::Damaged {
            reason,
            readable,
            lost,
        }
    })
    .await
}

/// Rewrites the snapshots that refer to content the index does not hold; see the module
/// documentation.
pub async fn repair_snapshots(repo: &Exclusive, dry_run: bool) -> Result<SnapshotsRepair> {
    let mut report = SnapshotsRepair {
        dry_run,
        ..SnapshotsRepair::default()
    };
    let writer = repo.writer();
    let mut memo: HashMap<BlobId, Outcome> = HashMap::new();
    let mut ids = repo.list_snapshots().await?;
    ids.sort();
    for id in ids {
        report.snapshots += 1;
        let snapshot = match repo.load_snapshot(&id).await {
            Ok(s) => s,
            Err(RepoError::Corrupt { detail, .. }) => {
                let why = format!("the snapshot's manifest cannot be read ({detail})");
                report.repaired.push(remove(repo, id, why, dry_run).await?);
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut repairer = Repairer {
            repo,
            writer: &writer,
            memo: &mut memo,
            dry_run,
        };
        let outcome = repairer.tree(snapshot.tree).await?;
        let (new_tree, lost) = match outcome {
            Outcome::Unchanged => continue,
            Outcome::Lost(why) => {
                let why = format!("everything: the snapshot's root folder is lost ({why})");
                report.repaired.push(remove(repo, id, why, dry_run).await?);
                continue;
            }
            Outcome::Changed(tree, lost) => (tree, lost),
        };
        let replacement = if dry_run {
            None
        } else {
            writer.flush().await?;
            let mut repaired = Snapshot {
                tree: new_tree,
                partial: true,
                ..snapshot.clone()
            };
            repaired.problems.extend(lost.iter().cloned());
            repaired.problems.push(format!(
                "repaired from snapshot {id} by `airback repair snapshots`: the storage lost this content"
            ));
            if !repaired.tags.iter().any(|t| t == "repaired") {
                repaired.tags.push("repaired".into());
            }
            let new_id = repo.save_snapshot(&repaired).await?;
            // The replacement is durable: the damaged original can go.
            if new_id != id {
                repo.delete_snapshot(&id).await?;
            }
            Some(new_id)
        };
        report.repaired.push(SnapshotRepair {
            original: id,
            replacement,
            lost,
        });
    }
    Ok(report)
}

/// Removes a snapshot nothing can be saved of (unless `dry_run`), and says so.
async fn remove(
    repo: &Exclusive,
    id: SnapshotId,
    why: String,
    dry_run: bool,
) -> Result<SnapshotRepair> {
    if !dry_run {
        repo.delete_snapshot(&id).await?;
    }
    Ok(SnapshotRepair {
        original: id,
        replacement: None,
        lost: vec![format!(
            "{why}; it {} removed",
            if dry_run { "would be" } else { "was" }
        )],
    })
}

/// What became of a tree.
#[derive(Debug, Clone)]
enum Outcome {
    /// Everything below it is readable.
    Unchanged,
    /// Rewritten without what was lost (relative descriptions).
    Changed(BlobId, Vec<String>),
    /// The tree itself cannot be read.
    Lost(String),
}

struct Repairer<'a> {
    repo: &'a Repository,
    writer: &'a BlobWriter,
    memo: &'a mut HashMap<BlobId, Outcome>,
    dry_run: bool,
}

impl Repairer<'_> {
    fn known(&self, id: &BlobId, kind: BlobKind) -> Result<bool> {
        self.repo.has_blob(id, kind)
    }

    fn tree(
        &mut self,
        id: BlobId,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome>> + Send + '_>> {
        Box::pin(async move {
            if let Some(done) = self.memo.get(&id) {
                return Ok(done.clone());
            }
            let outcome = self.tree_uncached(id).await?;
            self.memo.insert(id, outcome.clone());
            Ok(outcome)
        })
    }

    async fn tree_uncached(&mut self, id: BlobId) -> Result<Outcome> {
        if !self.known(&id, BlobKind::Meta)? {
            return Ok(Outcome::Lost(format!("its tree {id} is not in the index")));
        }
        let tree = match self.repo.load_tree(&id).await {
            Ok(t) => t,
            Err(
                e @ (RepoError::Corrupt { .. }
                | RepoError::MissingPack { .. }
                | RepoError::MissingBlob(_)
                | RepoError::LostBlob { .. }),
            ) => {
                return Ok(Outcome::Lost(e.to_string()));
            }
            Err(e) => return Err(e),
        };
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        let mut lost = Vec::new();
        let mut changed = false;
        for node in tree.nodes {
            let name = node.name.clone();
            match &node.kind {
                NodeKind::Dir { subtree } => match self.tree(*subtree).await? {
                    Outcome::Unchanged => nodes.push(node),
                    Outcome::Changed(new, below) => {
                        changed = true;
                        lost.extend(below.into_iter().map(|l| format!("{name}/{l}")));
                        nodes.push(Node {
                            kind: NodeKind::Dir { subtree: new },
                            ..node
                        });
                    }
                    Outcome::Lost(why) => {
                        changed = true;
                        lost.push(format!("{name}/ (the whole folder) lost: {why}"));
                    }
                },
                NodeKind::File {
                    content, blob_kind, ..
                } => {
                    let mut all = true;
                    for b in content {
                        all &= self.known(b, *blob_kind)?;
                    }
                    if all {
                        nodes.push(node);
                        continue;
                    }
                    changed = true;
                    match self.salvage_lines(&node).await? {
                        Some((kept, description)) => {
                            lost.push(description);
                            nodes.extend(kept);
                        }
                        None => lost.push(format!(
                            "{} lost (its content is missing or damaged)",
                            describe(&node)
                        )),
                    }
                }
            }
        }
        if !changed {
            return Ok(Outcome::Unchanged);
        }
        let new_id = if self.dry_run {
            id
        } else {
            let bytes = serde_json::to_vec(&Tree::new(nodes)).expect("trees serialize");
            self.writer.save_blob(BlobKind::Meta, bytes).await?
        };
        Ok(Outcome::Changed(new_id, lost))
    }

    /// For a JSON-lines metadata file (a table), keeps every line that lies wholly inside
    /// readable blobs. Returns the new node (none when nothing is left) and a description of
    /// the loss; `None` for other files, which are dropped whole.
    async fn salvage_lines(&mut self, node: &Node) -> Result<Option<(Option<Node>, String)>> {
        let NodeKind::File {
            content, blob_kind, ..
        } = &node.kind
        else {
            return Ok(None);
        };
        if *blob_kind != BlobKind::Meta || !layout::is_table_file(&node.name) {
            return Ok(None);
        }
        // Runs of consecutive readable blobs; a line that crosses a gap is lost.
        let mut kept_lines: Vec<u8> = Vec::new();
        let mut kept = 0u64;
        let mut run: Vec<u8> = Vec::new();
        let mut run_starts_file = true;
        let mut flush_run = |run: &mut Vec<u8>, starts_file: bool, ends_file: bool| {
            let mut lines: Vec<&[u8]> = run.split_inclusive(|b| *b == b'\n').collect();
            // After a gap the first line is whole only if the gap ended at a line break: a
            // proper suffix of a one-line JSON object is never a JSON object itself.
            if !starts_file && lines.first().is_some_and(|l| !is_record_line(l)) {
                lines.remove(0);
            }
            if !ends_file && lines.last().is_some_and(|l| !l.ends_with(b"\n")) {
                lines.pop();
            }
            for line in lines {
                if line.ends_with(b"\n") {
                    kept_lines.extend_from_slice(line);
                    kept += 1;
                }
            }
            run.clear();
        };
        for b in content {
            let plain = if self.known(b, *blob_kind)? {
                match self.repo.read_blob(b).await {
                    Ok(p) => Some(p),
                    Err(RepoError::Backend(e)) => return Err(e.into()),
                    Err(_) => None,
                }
            } else {
                None
            };
            match plain {
                Some(p) => run.extend_from_slice(&p),
                None => {
                    flush_run(&mut run, run_starts_file, false);
                    run_starts_file = false;
                }
            }
        }
        if !run.is_empty() {
            flush_run(&mut run, run_starts_file, true);
        }
        let total = TableMeta::from_json(&node.meta).map(|table| table.records);
        let description = match total {
            Some(total) => format!(
                "{}: {} of {total} records lost (their content is missing or damaged)",
                describe(node),
                total.saturating_sub(kept)
            ),
            None => format!(
                "{}: records lost (their content is missing or damaged); {kept} kept",
                describe(node)
            ),
        };
        if kept == 0 {
            return Ok(Some((None, description)));
        }
        let size = kept_lines.len() as u64;
        let new_content = if self.dry_run {
            Vec::new()
        } else {
            self.writer.save_bytes(BlobKind::Meta, kept_lines).await?
        };
        let mut meta = node.meta.clone();
        TableMeta::set_records(&mut meta, kept);
        let new_node = Node {
            name: node.name.clone(),
            kind: NodeKind::File {
                size,
                blob_kind: BlobKind::Meta,
                content: new_content,
            },
            meta,
        };
        Ok(Some((Some(new_node), description)))
    }
}

/// Whether `line` is one whole record (or one record's comments): a JSON object with an `id`
/// (or a `record`).
fn is_record_line(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|v| {
        // A record has an `id`; a record's comments (a comments file's line), a `record`.
        v.get("id")
            .or_else(|| v.get("record"))
            .is_some_and(|id| id.is_string())
    })
}

/// How a node is named in a loss: its path, and the table name or filename it carries.
fn describe(node: &Node) -> String {
    if let Some(attachment) = AttachmentMeta::from_json(&node.meta) {
        format!("attachment {} ({:?})", node.name, attachment.filename)
    } else if let Some(table) = TableMeta::from_json(&node.meta) {
        format!("table {:?} ({})", table.name, node.name)
    } else {
        format!("`{}`", node.name)
    }
}

#[cfg(test)]
mod tests {
    use super::is_record_line;

    #[test]
    fn whole_lines_are_records_or_a_records_comments() {
        assert!(is_record_line(
            br#"{"createdTime":"t","fields":{},"id":"recA"}"#
        ));
        assert!(is_record_line(
            br#"{"comments":[{"id":"comA"}],"record":"recA"}"#
        ));
        // The tail of a line cut by a damaged blob.
        assert!(!is_record_line(br#""id":"comA"}],"record":"recA"}"#));
        assert!(!is_record_line(br#"{"comments":[]}"#));
    }
}
