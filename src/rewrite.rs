//! `rewrite`: new snapshots without named records, fields or attachments, so that one
//! person's data (a record, a field, a leaked file) can be erased without dropping whole
//! snapshots (restic's `rewrite`).
//!
//! Each table file is streamed line by line: records with an excluded id are dropped (and
//! their ids removed from link cells of other records), excluded fields removed, attachment
//! objects with an excluded id removed from every cell (lookups included). Lookup, rollup and
//! formula values that show a removed record's data stay: they carry values, not its id. Unchanged lines keep their bytes and FastCDC resynchronises around the changed
//! ones, so only chunks near a change are new. A removed record's comments (`comments/`) go
//! with it. An attachment node goes when it is named, or
//! when a removed record or field referred to it and no remaining cell does. The manifest
//! keeps every field of the original, gains the tag `rewritten` and a `rewritten` record
//! (counts, never the erased ids).
//!
//! The blobs the originals used and the rewrites do not are recorded in an index file's
//! `erase` section: the next `prune` rewrites every pack that holds one of them once no
//! snapshot uses it, whatever its thresholds (docs/FORMAT.md, "Deletion"). Order: packs,
//! index (with `erase`), the new snapshots, then with `forget_originals` the originals go.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::airtable::attachment_id;
use crate::config::FieldRef;
use crate::id::{BlobId, SnapshotId};
use crate::layout::{
    self, AttachmentsMeta, CommentsDirMeta, CommentsMeta, LayoutJson, TableMeta, TablesMeta,
};
use crate::repo::{BlobKind, BlobWriter, Exclusive, Node, NodeKind, RepoError, Snapshot, Tree};

/// The tag every rewritten snapshot carries.
pub const REWRITTEN_TAG: &str = "rewritten";

/// What to leave out.
#[derive(Debug, Clone, Default)]
pub struct RewriteOptions {
    /// Record ids (`rec…`).
    pub records: Vec<String>,
    /// Fields, `<table>.<field>` by name or id.
    pub fields: Vec<FieldRef>,
    /// Attachment ids (`att…`).
    pub attachments: Vec<String>,
    /// Delete each original once its rewrite is saved.
    pub forget_originals: bool,
    /// Compute and report; save nothing.
    pub dry_run: bool,
}

/// One snapshot rewritten.
#[derive(Debug, Clone, Serialize)]
pub struct Rewritten {
    /// The original.
    pub original: SnapshotId,
    /// The new snapshot (`None` in a dry run).
    pub snapshot: Option<SnapshotId>,
    /// Records removed.
    pub records: u64,
    /// Fields removed (table.field ids).
    pub fields: Vec<String>,
    /// Attachments removed.
    pub attachments: u64,
}

/// What `rewrite` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RewriteSummary {
    /// Snapshots that changed.
    pub rewritten: Vec<Rewritten>,
    /// Snapshots in which nothing matched (left as they are).
    pub unchanged: Vec<SnapshotId>,
    /// Blobs recorded for erasure by the next prune.
    pub erase: usize,
    /// Whether the originals were deleted.
    pub originals_forgotten: bool,
}

/// Why rewrite failed.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// Nothing to exclude was given.
    #[error(
        "rewrite needs something to leave out: --exclude-record, --exclude-field or --exclude-attachment"
    )]
    NothingToExclude,
    /// A selector matched in none of the snapshots.
    #[error(
        "{0} is in none of the selected snapshots; nothing was rewritten (check the id, or the table and field names)"
    )]
    NoMatch(String),
    /// A snapshot is not an Airtable base's.
    #[error("snapshot {0} is not a snapshot of an Airtable base; rewrite knows only those")]
    NotABase(SnapshotId),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

type Result<T> = std::result::Result<T, RewriteError>;

/// Rewrites `snapshots` without what `options` names.
pub async fn rewrite(
    repo: &Exclusive,
    snapshots: &[(SnapshotId, Snapshot)],
    options: &RewriteOptions,
) -> Result<RewriteSummary> {
    if options.records.is_empty() && options.fields.is_empty() && options.attachments.is_empty() {
        return Err(RewriteError::NothingToExclude);
    }
    let writer = repo.writer();
    let mut seen = Seen::default();
    let mut planned = Vec::new();
    let mut summary = RewriteSummary::default();
    for (id, snapshot) in snapshots {
        let mut run = Run {
            repo,
            writer: &writer,
            options,
            seen: &mut seen,
            counts: Counts::default(),
            old_blobs: HashSet::new(),
            new_blobs: HashSet::new(),
        };
        let tree = run.snapshot(*id, snapshot).await?;
        let counts = run.counts;
        let (old, new) = (run.old_blobs, run.new_blobs);
        if counts.is_empty() {
            summary.unchanged.push(*id);
            continue;
        }
        planned.push((*id, snapshot.clone(), tree, counts, old, new));
    }
    if let Some(missing) = seen.unmatched(options) {
        return Err(RewriteError::NoMatch(missing));
    }
    // Blobs the originals use that no rewrite uses: candidates for erasure.
    let kept: HashSet<(BlobId, BlobKind)> =
        planned.iter().flat_map(|p| p.5.iter().copied()).collect();
    let erase: Vec<(BlobId, BlobKind)> = planned
        .iter()
        .flat_map(|p| p.4.iter().copied())
        .filter(|b| !kept.contains(b))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    summary.erase = erase.len();
    if options.dry_run {
        summary.rewritten = planned
            .into_iter()
            .map(|(id, _, _, counts, _, _)| counts.into_report(id, None))
            .collect();
        return Ok(summary);
    }
    writer.flush().await?;
    repo.write_erase(&erase).await?;
    for (id, original, tree, counts, _, _) in planned {
        let mut manifest = original.clone();
        manifest.tree = tree;
        // Other content than the original's: not the same snapshot for `copy`.
        manifest.copy_of = None;
        if !manifest.tags.iter().any(|t| t == REWRITTEN_TAG) {
            manifest.tags.push(REWRITTEN_TAG.to_owned());
        }
        let mut summary_json = layout::SnapshotSummary::of(&original);
        summary_json.records = summary_json.records.saturating_sub(counts.records);
        summary_json.attachments = summary_json.attachments.saturating_sub(counts.attachments);
        summary_json.attachment_bytes = summary_json
            .attachment_bytes
            .saturating_sub(counts.attachment_bytes);
        summary_json.comments = summary_json.comments.saturating_sub(counts.comments);
        manifest.summary = summary_json.to_json();
        manifest.rewritten = Some(serde_json::json!({
            "original": id,
            "excluded": {"records": counts.records, "fields": counts.fields, "attachments": counts.attachments},
        }));
        let new = repo.save_snapshot(&manifest).await?;
        if options.forget_originals && new != id {
            repo.delete_snapshot(&id).await?;
        }
        summary.rewritten.push(counts.into_report(id, Some(new)));
    }
    summary.originals_forgotten = options.forget_originals;
    Ok(summary)
}

/// Which selectors matched somewhere.
#[derive(Default)]
struct Seen {
    records: HashSet<String>,
    attachments: HashSet<String>,
    fields: HashSet<String>,
}

impl Seen {
    fn unmatched(&self, options: &RewriteOptions) -> Option<String> {
        if let Some(r) = options.records.iter().find(|r| !self.records.contains(*r)) {
            return Some(format!("record {r}"));
        }
        if let Some(a) = options
            .attachments
            .iter()
            .find(|a| !self.attachments.contains(*a))
        {
            return Some(format!("attachment {a}"));
        }
        options
            .fields
            .iter()
            .find(|f| !self.fields.contains(&f.to_string()))
            .map(|f| format!("field {f}"))
    }
}

/// What one snapshot lost.
#[derive(Debug, Default)]
struct Counts {
    records: u64,
    fields: Vec<String>,
    attachments: u64,
    attachment_bytes: u64,
    /// Cells changed (attachments removed from them).
    cells: u64,
    /// Comments removed (with their records).
    comments: u64,
}

impl Counts {
    fn is_empty(&self) -> bool {
        self.records == 0 && self.fields.is_empty() && self.attachments == 0 && self.cells == 0
    }

    fn into_report(self, original: SnapshotId, snapshot: Option<SnapshotId>) -> Rewritten {
        Rewritten {
            original,
            snapshot,
            records: self.records,
            fields: self.fields,
            attachments: self.attachments,
        }
    }
}

/// Rewriting one snapshot.
struct Run<'a> {
    repo: &'a Exclusive,
    writer: &'a BlobWriter,
    options: &'a RewriteOptions,
    seen: &'a mut Seen,
    counts: Counts,
    /// Blobs of the files and trees this rewrite replaced, and of the new ones.
    old_blobs: HashSet<(BlobId, BlobKind)>,
    new_blobs: HashSet<(BlobId, BlobKind)>,
}

impl Run<'_> {
    /// The new root tree (the original's when nothing changed).
    async fn snapshot(&mut self, id: SnapshotId, snapshot: &Snapshot) -> Result<BlobId> {
        if layout::Source::of(snapshot).is_none() {
            return Err(RewriteError::NotABase(id));
        }
        let root = self.repo.load_tree(&snapshot.tree).await?;
        let schema = match layout::schema_file(&root) {
            Some(Node {
                kind: NodeKind::File { content, .. },
                ..
            }) => self.read_file(content).await?,
            _ => Vec::new(),
        };
        let excluded_fields = self.excluded_fields(&schema);
        let (Some(tables), Some(attachments)) =
            (layout::tables_dir(&root), layout::attachments_dir(&root))
        else {
            return Ok(snapshot.tree);
        };
        let mut referenced_before = HashSet::new();
        let mut referenced_after = HashSet::new();
        let new_tables = self
            .tables(
                tables,
                &excluded_fields,
                &mut referenced_before,
                &mut referenced_after,
            )
            .await?;
        let new_attachments = self
            .attachments(attachments, &referenced_before, &referenced_after)
            .await?;
        if self.counts.is_empty() {
            return Ok(snapshot.tree);
        }
        let new_comments = match layout::comments_dir(&root) {
            Some(dir) => self.comments(dir).await?,
            None => None,
        };
        let mut nodes = root.nodes.clone();
        for node in &mut nodes {
            match node.name.as_str() {
                layout::TABLES_DIR => {
                    node.kind = NodeKind::Dir {
                        subtree: new_tables.0,
                    };
                    node.meta = new_tables.1.to_json();
                }
                layout::ATTACHMENTS_DIR => {
                    node.kind = NodeKind::Dir {
                        subtree: new_attachments.0,
                    };
                    node.meta = new_attachments.1.to_json();
                }
                layout::COMMENTS_DIR => {
                    if let Some((subtree, meta)) = new_comments {
                        node.kind = NodeKind::Dir { subtree };
                        node.meta = meta.to_json();
                    }
                }
                _ => {}
            }
        }
        self.old_blobs.insert((snapshot.tree, BlobKind::Meta));
        self.save_tree(Tree::new(nodes)).await
    }

    /// `table id → field ids` for the fields the options name, from `schema.json`.
    fn excluded_fields(&mut self, schema: &[u8]) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let Ok(schema) = serde_json::from_slice::<Value>(schema) else {
            return out;
        };
        for table in schema["tables"].as_array().into_iter().flatten() {
            let (tid, tname) = (
                table["id"].as_str().unwrap_or_default(),
                table["name"].as_str().unwrap_or_default(),
            );
            for field in table["fields"].as_array().into_iter().flatten() {
                let (fid, fname) = (
                    field["id"].as_str().unwrap_or_default(),
                    field["name"].as_str().unwrap_or_default(),
                );
                for f in &self.options.fields {
                    if f.matches(tid, tname, fid, fname) {
                        self.seen.fields.insert(f.to_string());
                        out.entry(tid.to_owned()).or_default().push(fid.to_owned());
                    }
                }
            }
        }
        out
    }

    async fn read_file(&self, content: &[BlobId]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for blob in content {
            out.extend(self.repo.read_blob(blob).await?);
        }
        Ok(out)
    }

    async fn save_tree(&mut self, tree: Tree) -> Result<BlobId> {
        let bytes = serde_json::to_vec(&tree).expect("trees serialize");
        let id = self.writer.save_blob(BlobKind::Meta, bytes).await?;
        self.new_blobs.insert((id, BlobKind::Meta));
        Ok(id)
    }

    /// The `tables/` folder rewritten.
    async fn tables(
        &mut self,
        dir: BlobId,
        excluded_fields: &BTreeMap<String, Vec<String>>,
        before: &mut HashSet<String>,
        after: &mut HashSet<String>,
    ) -> Result<(BlobId, TablesMeta)> {
        let tree = self.repo.load_tree(&dir).await?;
        let mut nodes = Vec::new();
        let mut changed = false;
        for node in tree.nodes {
            let NodeKind::File { content, .. } = &node.kind else {
                nodes.push(node);
                continue;
            };
            let Some(mut meta) = TableMeta::from_json(&node.meta) else {
                nodes.push(node);
                continue;
            };
            let fields = excluded_fields.get(&meta.id).cloned().unwrap_or_default();
            let (lines, records_left, removed) =
                self.table_file(content, &fields, before, after).await?;
            let file_changed = removed > 0 || lines.is_some();
            if !file_changed {
                nodes.push(node);
                continue;
            }
            changed = true;
            self.counts.records += removed;
            for f in &fields {
                let name = format!("{}.{f}", meta.id);
                if !self.counts.fields.contains(&name) {
                    self.counts.fields.push(name);
                }
                if !meta.excluded_fields.contains(f) {
                    meta.excluded_fields.push(f.clone());
                }
            }
            meta.records = records_left;
            let (ids, size) = lines.expect("a changed file has its new content");
            self.old_blobs
                .extend(content.iter().map(|b| (*b, BlobKind::Meta)));
            self.new_blobs
                .extend(ids.iter().map(|b| (*b, BlobKind::Meta)));
            let mut new = layout::table_node(&meta, size, ids);
            new.meta = merge_meta(&node.meta, new.meta);
            nodes.push(new);
        }
        let meta = TablesMeta {
            tables: nodes.len() as u64,
        };
        if !changed {
            return Ok((dir, meta));
        }
        self.old_blobs.insert((dir, BlobKind::Meta));
        Ok((self.save_tree(Tree::new(nodes)).await?, meta))
    }

    /// One table file streamed line by line. Returns the new content (ids and size) when a
    /// line changed, the records left, and the records removed.
    async fn table_file(
        &mut self,
        content: &[BlobId],
        fields: &[String],
        before: &mut HashSet<String>,
        after: &mut HashSet<String>,
    ) -> Result<(Option<(Vec<BlobId>, u64)>, u64, u64)> {
        let mut saver = self.writer.file(BlobKind::Meta);
        let (mut left, mut removed, mut changed) = (0u64, 0u64, false);
        let mut carry: Vec<u8> = Vec::new();
        let mut blobs = content.iter();
        loop {
            let next = blobs.next();
            if let Some(blob) = next {
                carry.extend(self.repo.read_blob(blob).await?);
            }
            let mut start = 0;
            while let Some(end) = carry[start..].iter().position(|b| *b == b'\n') {
                let line = &carry[start..start + end + 1];
                match self.line(line, fields, before, after) {
                    Line::Same => {
                        left += 1;
                        saver.push(line).await?;
                    }
                    Line::Changed(bytes) => {
                        left += 1;
                        changed = true;
                        saver.push(&bytes).await?;
                    }
                    Line::Removed => {
                        removed += 1;
                        changed = true;
                    }
                }
                start += end + 1;
            }
            carry.drain(..start);
            if next.is_none() {
                break;
            }
        }
        if !carry.is_empty() {
            // A last line without its newline is kept as it is.
            left += 1;
            saver.push(&carry).await?;
        }
        let (ids, size) = saver.finish().await?;
        Ok((changed.then_some((ids, size)), left, removed))
    }

    /// One record line.
    fn line(
        &mut self,
        line: &[u8],
        fields: &[String],
        before: &mut HashSet<String>,
        after: &mut HashSet<String>,
    ) -> Line {
        let Ok(mut record) = serde_json::from_slice::<Value>(line) else {
            return Line::Same;
        };
        let mut referenced = HashSet::new();
        collect_attachments(&record["fields"], &mut referenced);
        before.extend(referenced.iter().cloned());
        let id = record["id"].as_str().unwrap_or_default().to_owned();
        if self.options.records.contains(&id) {
            self.seen.records.insert(id);
            return Line::Removed;
        }
        let mut changed = false;
        if let Some(cells) = record["fields"].as_object_mut() {
            for f in fields {
                changed |= cells.remove(f).is_some();
            }
            for cell in cells.values_mut() {
                // Links to a removed record (the other side of a link field).
                if let Value::Array(items) = cell {
                    let before = items.len();
                    items.retain(|v| {
                        !v.as_str()
                            .is_some_and(|id| self.options.records.iter().any(|r| r == id))
                    });
                    changed |= items.len() != before;
                }
                let mut hit = Vec::new();
                remove_attachments(cell, &self.options.attachments, &mut hit);
                if !hit.is_empty() {
                    changed = true;
                    self.counts.cells += 1;
                    self.seen.attachments.extend(hit);
                }
            }
        }
        collect_attachments(&record["fields"], after);
        if !changed {
            return Line::Same;
        }
        let mut bytes = serde_json::to_vec(&record).expect("JSON values serialize");
        bytes.push(b'\n');
        Line::Changed(bytes)
    }

    /// The `comments/` folder without the comments of the removed records: its new id and
    /// meta, `None` when no removed record had comments.
    async fn comments(&mut self, dir: BlobId) -> Result<Option<(BlobId, CommentsDirMeta)>> {
        if self.options.records.is_empty() {
            return Ok(None);
        }
        let tree = self.repo.load_tree(&dir).await?;
        let (mut nodes, mut total, mut changed) = (Vec::new(), 0u64, false);
        for node in tree.nodes {
            let (NodeKind::File { content, .. }, Some(mut meta)) =
                (&node.kind, CommentsMeta::from_json(&node.meta))
            else {
                nodes.push(node);
                continue;
            };
            let bytes = self.read_file(content).await?;
            let mut kept = Vec::new();
            let (mut records, mut comments, mut removed) = (0u64, 0u64, false);
            for line in bytes.split_inclusive(|b| *b == b'\n') {
                let parsed = serde_json::from_slice::<Value>(line).ok();
                let record = parsed.as_ref().and_then(|l| l["record"].as_str());
                if record.is_some_and(|r| self.options.records.iter().any(|x| x == r)) {
                    removed = true;
                    continue;
                }
                records += 1;
                comments += parsed
                    .as_ref()
                    .and_then(|l| l["comments"].as_array())
                    .map_or(0, |c| c.len() as u64);
                kept.extend_from_slice(line);
            }
            if !removed {
                total += meta.comments;
                nodes.push(node);
                continue;
            }
            changed = true;
            self.counts.comments += meta.comments.saturating_sub(comments);
            self.old_blobs
                .extend(content.iter().map(|b| (*b, BlobKind::Meta)));
            if kept.is_empty() {
                continue;
            }
            let size = kept.len() as u64;
            let mut saver = self.writer.file(BlobKind::Meta);
            saver.push(&kept).await?;
            let (ids, _) = saver.finish().await?;
            self.new_blobs
                .extend(ids.iter().map(|b| (*b, BlobKind::Meta)));
            (meta.records, meta.comments) = (records, comments);
            total += comments;
            let mut new = layout::comments_node(&meta, size, ids);
            new.meta = merge_meta(&node.meta, new.meta);
            nodes.push(new);
        }
        if !changed {
            return Ok(None);
        }
        self.old_blobs.insert((dir, BlobKind::Meta));
        let meta = CommentsDirMeta { comments: total };
        Ok(Some((self.save_tree(Tree::new(nodes)).await?, meta)))
    }

    /// The `attachments/` folder without the attachments named, and without those only the
    /// removed records and fields referred to.
    async fn attachments(
        &mut self,
        dir: BlobId,
        before: &HashSet<String>,
        after: &HashSet<String>,
    ) -> Result<(BlobId, AttachmentsMeta)> {
        let tree = self.repo.load_tree(&dir).await?;
        let mut groups = Vec::new();
        let (mut total, mut changed) = (0u64, false);
        for group in tree.nodes {
            let NodeKind::Dir { subtree } = group.kind else {
                groups.push(group);
                continue;
            };
            let inner = self.repo.load_tree(&subtree).await?;
            let mut kept = Vec::new();
            for node in inner.nodes {
                let named = self.options.attachments.contains(&node.name);
                let orphaned = before.contains(&node.name) && !after.contains(&node.name);
                if named || orphaned {
                    if named {
                        self.seen.attachments.insert(node.name.clone());
                    }
                    self.counts.attachments += 1;
                    if let NodeKind::File { size, content, .. } = &node.kind {
                        self.counts.attachment_bytes += size;
                        self.old_blobs
                            .extend(content.iter().map(|b| (*b, BlobKind::Data)));
                    }
                    continue;
                }
                kept.push(node);
            }
            let count = kept.len() as u64;
            if count as usize == inner_len(&group) {
                total += count;
                groups.push(group);
                continue;
            }
            changed = true;
            self.old_blobs.insert((subtree, BlobKind::Meta));
            if kept.is_empty() {
                continue;
            }
            total += count;
            let id = self.save_tree(Tree::new(kept)).await?;
            groups.push(layout::attachment_group_node(
                group.name,
                id,
                AttachmentsMeta { attachments: count },
            ));
        }
        let meta = AttachmentsMeta { attachments: total };
        if !changed {
            return Ok((dir, meta));
        }
        self.old_blobs.insert((dir, BlobKind::Meta));
        Ok((self.save_tree(Tree::new(groups)).await?, meta))
    }
}

/// How many attachments a group node says it holds.
fn inner_len(group: &Node) -> usize {
    AttachmentsMeta::from_json(&group.meta).map_or(usize::MAX, |m| m.attachments as usize)
}

/// A table meta rewritten by this version, keeping keys it does not know from the original.
fn merge_meta(original: &Value, new: Value) -> Value {
    match (original.as_object(), new) {
        (Some(old), Value::Object(mut new)) => {
            for (k, v) in old {
                new.entry(k.clone()).or_insert_with(|| v.clone());
            }
            Value::Object(new)
        }
        (_, new) => new,
    }
}

enum Line {
    Same,
    Changed(Vec<u8>),
    Removed,
}

/// Every attachment id in `value` (cells, and lookups of attachments).
fn collect_attachments(value: &Value, out: &mut HashSet<String>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect_attachments(v, out)),
        Value::Object(map) => {
            if let Some(id) = attachment_id(value) {
                out.insert(id.to_owned());
            } else {
                map.values().for_each(|v| collect_attachments(v, out));
            }
        }
        _ => {}
    }
}

/// Removes attachment objects whose id is in `ids` from every array in `value`.
fn remove_attachments(value: &mut Value, ids: &[String], hit: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            items.retain(|v| match attachment_id(v) {
                Some(id) if ids.iter().any(|x| x == id) => {
                    hit.push(id.to_owned());
                    false
                }
                _ => true,
            });
            items
                .iter_mut()
                .for_each(|v| remove_attachments(v, ids, hit));
        }
        Value::Object(_) if attachment_id(value).is_some() => {}
        Value::Object(map) => {
            map.values_mut()
                .for_each(|v| remove_attachments(v, ids, hit));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn attachments_leave_cells_and_lookups_but_other_objects_stay() {
        let mut cell = json!([
            {"id": "attA", "filename": "a.pdf"},
            {"id": "attB", "filename": "b.pdf"},
            {"valuesByLinkedRecordId": {"recX": [{"id": "attA", "filename": "a.pdf"}]}},
            {"id": "attA", "name": "not an attachment: no filename"}
        ]);
        let mut hit = Vec::new();
        remove_attachments(&mut cell, &["attA".to_owned()], &mut hit);
        assert_eq!(hit, ["attA", "attA"]);
        assert_eq!(
            cell,
            json!([
                {"id": "attB", "filename": "b.pdf"},
                {"valuesByLinkedRecordId": {"recX": []}},
                {"id": "attA", "name": "not an attachment: no filename"}
            ])
        );
        let mut ids = HashSet::new();
        collect_attachments(&cell, &mut ids);
        assert_eq!(ids, HashSet::from(["attB".to_owned()]));
    }
}
