//! Reading an Airtable snapshot back: its schema, its tables' records and its attachments'
//! bytes, streamed blob by blob so memory stays flat whatever the snapshot's size. Restore and
//! export both read snapshots through this module, so neither knows the tree layout, which
//! this module reads with the types of `crate::layout` (docs/FORMAT.md, "Airtable
//! snapshots"):
//!
//! ```text
//! schema.json                      the meta API's answer
//! tables/<table id>.jsonl          one record per line, sorted by record id
//! attachments/<c>/<attachment id>  content; <c> is the id's fourth character
//! comments/<table id>.jsonl        the comments of each record that has some (newer snapshots)
//! ```
//!
//! Every blob is verified by its hash as it is read ([`Repository::read_blob`]). Names found in
//! trees are used only as lookup keys, never as paths.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::airtable::{BaseSchema, Record};
use crate::id::{BlobId, SnapshotId};
use crate::layout::{self, AttachmentMeta, CommentsMeta, LayoutJson, TableMeta};
use crate::repo::snapshot::{NodeKind, Snapshot, Tree};
use crate::repo::{RepoError, Repository};

/// Blobs read ahead of the consumer when streaming records (metadata blobs: ≤ 16 KiB each).
const RECORD_READ_AHEAD: usize = 16;
/// Blobs read ahead when streaming an attachment (data blobs: ≤ 4 MiB each).
const FILE_READ_AHEAD: usize = 4;

/// Why a snapshot could not be read as an Airtable base.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// The repository failed (missing or damaged blob, storage error).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The snapshot is not laid out as an Airtable base snapshot.
    #[error("snapshot {snapshot} is not a readable Airtable snapshot: {reason}")]
    Layout {
        /// The snapshot.
        snapshot: SnapshotId,
        /// What is wrong.
        reason: String,
    },
}

/// One table of a stored base.
#[derive(Debug, Clone)]
pub struct StoredTable {
    /// The original table id (`tbl…`).
    pub id: String,
    /// The table's name when it was backed up.
    pub name: String,
    /// How many records the snapshot holds.
    pub records: u64,
    /// Field ids left out of the backup by configuration (`TableMeta::excluded_fields`).
    pub excluded_fields: Vec<String>,
    /// Size of the JSON-lines file.
    size: u64,
    content: Vec<BlobId>,
}

impl StoredTable {
    /// The table file's blobs, in order.
    pub(crate) fn content(&self) -> &[BlobId] {
        &self.content
    }
}

/// The comments of one record, as a comments file stores them (one line).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RecordComments {
    /// The original record id (`rec…`).
    pub record: String,
    /// Its comments, oldest first, each exactly as the API returned it (`id`, `text`,
    /// `author {id, email, name}`, `createdTime`, `lastUpdatedTime`, `mentioned`,
    /// `parentCommentId`, ...).
    pub comments: Vec<Value>,
}

/// A table's stored comments file.
#[derive(Debug, Clone)]
struct CommentsFile {
    size: u64,
    content: Vec<BlobId>,
    /// Comments in it (from its meta; 0 when unreadable).
    comments: u64,
}

/// One attachment's stored content.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// Length in bytes.
    pub size: u64,
    /// The filename recorded when it was backed up.
    pub filename: Option<String>,
    /// The MIME type recorded when it was backed up.
    pub content_type: Option<String>,
    content: Vec<BlobId>,
}

/// A snapshot of one base, opened for reading.
#[derive(Debug, Clone)]
pub struct StoredBase {
    repo: Repository,
    /// The snapshot's id.
    pub id: SnapshotId,
    /// The snapshot manifest.
    pub snapshot: Snapshot,
    /// The schema as the meta API returned it, with its typed view.
    pub schema: BaseSchema,
    /// The tables in schema order (tables the backup left out are not here).
    pub tables: Vec<StoredTable>,
    attachment_groups: HashMap<String, BlobId>,
    loaded_groups: Arc<Mutex<HashMap<String, Arc<Tree>>>>,
    /// Comment files by table id; `None` when the snapshot holds no comments.
    comment_files: Option<HashMap<String, CommentsFile>>,
}

impl StoredBase {
    /// Opens `snapshot`: reads its root tree, schema and table list (a few small blobs).
    pub async fn open(
        repo: &Repository,
        id: SnapshotId,
        snapshot: Snapshot,
    ) -> Result<StoredBase, StoredError> {
        let layout = |reason: String| StoredError::Layout {
            snapshot: id,
            reason,
        };
        let root = repo.load_tree(&snapshot.tree).await?;
        let schema_file = layout::SCHEMA_FILE;
        let schema_node =
            layout::schema_file(&root).ok_or_else(|| layout(format!("it has no {schema_file}")))?;
        let NodeKind::File { content, .. } = &schema_node.kind else {
            return Err(layout(format!("{schema_file} is not a file")));
        };
        let raw = read_all(repo, content).await?;
        let raw: Value = serde_json::from_slice(&raw)
            .map_err(|e| layout(format!("{schema_file} is not JSON: {e}")))?;
        let schema = BaseSchema::from_raw(raw)
            .map_err(|e| layout(format!("{schema_file} is not a base schema: {e}")))?;

        let mut files = HashMap::new();
        if let Some(subtree) = layout::tables_dir(&root) {
            for node in repo.load_tree(&subtree).await?.nodes {
                if let NodeKind::File { size, content, .. } = node.kind {
                    files.insert(node.name, (size, content, node.meta));
                }
            }
        }
        let mut tables = Vec::new();
        for table in &schema.tables {
            let Some((size, content, meta)) = files.remove(&layout::table_file(&table.id)) else {
                continue;
            };
            let (records, excluded_fields) = match TableMeta::from_json(&meta) {
                Some(meta) => (meta.records, meta.excluded_fields),
                None => (0, Vec::new()),
            };
            tables.push(StoredTable {
                id: table.id.clone(),
                name: table.name.clone(),
                records,
                excluded_fields,
                size,
                content,
            });
        }

        let mut attachment_groups = HashMap::new();
        if let Some(subtree) = layout::attachments_dir(&root) {
            for node in repo.load_tree(&subtree).await?.nodes {
                if let NodeKind::Dir { subtree } = node.kind {
                    attachment_groups.insert(node.name, subtree);
                }
            }
        }
        let comment_files = match layout::comments_dir(&root) {
            None => None,
            Some(subtree) => {
                let mut files = HashMap::new();
                for node in repo.load_tree(&subtree).await?.nodes {
                    let comments = CommentsMeta::from_json(&node.meta).map_or(0, |m| m.comments);
                    if let (NodeKind::File { size, content, .. }, Some(table)) =
                        (node.kind, node.name.strip_suffix(&layout::table_file("")))
                    {
                        files.insert(
                            table.to_owned(),
                            CommentsFile {
                                size,
                                content,
                                comments,
                            },
                        );
                    }
                }
                Some(files)
            }
        };
        Ok(StoredBase {
            repo: repo.clone(),
            id,
            snapshot,
            schema,
            tables,
            attachment_groups,
            loaded_groups: Arc::default(),
            comment_files,
        })
    }

    /// The base id the snapshot was taken of.
    pub fn base_id(&self) -> &str {
        layout::base_id(&self.snapshot).unwrap_or("")
    }

    /// The base's name when it was backed up.
    pub fn base_name(&self) -> &str {
        layout::Source::of(&self.snapshot).map_or("", |s| s.base_name)
    }

    /// The repository the snapshot lives in.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The stored table with this original id.
    pub fn table(&self, id: &str) -> Option<&StoredTable> {
        self.tables.iter().find(|t| t.id == id)
    }

    /// Whether the snapshot holds record comments: false for snapshots taken without them
    /// (turned off, no scope) and for those written before comments were backed up.
    pub fn has_comments(&self) -> bool {
        self.comment_files.is_some()
    }

    /// How many comments the snapshot holds for table `table_id` (an original id).
    pub fn comment_count(&self, table_id: &str) -> u64 {
        self.comment_files
            .as_ref()
            .and_then(|files| files.get(table_id))
            .map_or(0, |f| f.comments)
    }

    /// The comments of table `table_id` (an original id): one item per record that has
    /// comments, sorted by record id. Empty when the snapshot holds none for the table.
    pub fn comments(
        &self,
        table_id: &str,
    ) -> BoxStream<'static, Result<RecordComments, StoredError>> {
        let Some(file) = self
            .comment_files
            .as_ref()
            .and_then(|files| files.get(table_id))
        else {
            return futures::stream::empty().boxed();
        };
        let blobs = blob_stream(self.repo.clone(), file.content.clone(), RECORD_READ_AHEAD)
            .map_err(StoredError::from);
        parse_lines(
            blobs,
            self.id,
            format!("the comments of table {table_id}"),
            file.size,
        )
    }

    /// The comments of table `table_id` by record id, read whole.
    pub async fn comments_by_record(
        &self,
        table_id: &str,
    ) -> Result<HashMap<String, Vec<Value>>, StoredError> {
        self.comments(table_id)
            .map_ok(|r| (r.record, r.comments))
            .try_collect()
            .await
    }

    /// The table's records, in the stored order (by record id), one at a time. Cells are keyed
    /// by field id; attachment objects carry no URL.
    pub fn records(&self, table: &StoredTable) -> BoxStream<'static, Result<Record, StoredError>> {
        let blobs = blob_stream(self.repo.clone(), table.content.clone(), RECORD_READ_AHEAD)
            .map_err(StoredError::from);
        parse_lines(blobs, self.id, format!("table {}", table.id), table.size)
    }

    /// The records of `table` that are not certainly also in `other`, a stored version of the
    /// same table (in another snapshot), by record id.
    ///
    /// Equal blob ids mean equal bytes, so a record line that lies inside a run of blobs that
    /// both files hold in the same order is in both files, byte for byte. Such lines are skipped
    /// without being read: a run costs the reading of its first and last blob (to find the
    /// first and last line break in it), whatever its length. The rule is symmetric (runs are
    /// the same in both files), so a record skipped here is skipped in `other` too, and
    /// merging the two streams by id yields every record that was added, removed or changed.
    /// When a file holds the same blob twice, nothing is skipped.
    pub fn records_not_in(
        &self,
        table: &StoredTable,
        other: &StoredTable,
    ) -> BoxStream<'static, Result<Record, StoredError>> {
        let Some(pieces) = unshared_pieces(&table.content, &other.content) else {
            return self.records(table);
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, StoredError>>(RECORD_READ_AHEAD);
        let repo = self.repo.clone();
        let content = table.content.clone();
        tokio::spawn(async move {
            if let Err(e) = send_pieces(&repo, &content, &pieces, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        let bytes = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        parse_lines(bytes, self.id, format!("table {}", table.id), table.size)
    }

    /// The stored content of attachment `id`, or `None` when the snapshot does not hold it (an
    /// attachment the backup could not download, or a backup without attachment content).
    pub async fn attachment(&self, id: &str) -> Result<Option<StoredFile>, StoredError> {
        let group = layout::attachment_group(id);
        let tree = {
            let cached = self
                .loaded_groups
                .lock()
                .expect("poisoned")
                .get(&group)
                .cloned();
            match cached {
                Some(tree) => tree,
                None => {
                    let Some(subtree) = self.attachment_groups.get(&group) else {
                        return Ok(None);
                    };
                    let tree = Arc::new(self.repo.load_tree(subtree).await?);
                    self.loaded_groups
                        .lock()
                        .expect("poisoned")
                        .insert(group, tree.clone());
                    tree
                }
            }
        };
        let Ok(index) = tree.nodes.binary_search_by(|n| n.name.as_str().cmp(id)) else {
            return Ok(None);
        };
        let node = &tree.nodes[index];
        let NodeKind::File { size, content, .. } = &node.kind else {
            return Ok(None);
        };
        let meta = AttachmentMeta::from_json(&node.meta);
        Ok(Some(StoredFile {
            size: *size,
            filename: meta.as_ref().map(|m| m.filename.clone()),
            content_type: meta.and_then(|m| m.content_type),
            content: content.clone(),
        }))
    }

    /// The bytes of a stored file, blob by blob (a few blobs read ahead), each verified.
    pub fn file_bytes(&self, file: &StoredFile) -> BoxStream<'static, Result<Bytes, StoredError>> {
        blob_stream(self.repo.clone(), file.content.clone(), FILE_READ_AHEAD)
            .map_err(StoredError::from)
            .boxed()
    }

    /// The whole content of a stored file in memory (for files known to be small).
    pub async fn read_file(&self, file: &StoredFile) -> Result<Vec<u8>, StoredError> {
        Ok(read_all(&self.repo, &file.content).await?)
    }
}

/// A JSON-lines file (`file` names it: "table tblX") parsed from its bytes, one line at a
/// time.
fn parse_lines<T: DeserializeOwned + Send + 'static>(
    bytes: impl Stream<Item = Result<Bytes, StoredError>> + Send + 'static,
    snapshot: SnapshotId,
    file: String,
    size: u64,
) -> BoxStream<'static, Result<T, StoredError>> {
    futures::stream::unfold(
        (bytes.boxed(), Vec::<u8>::new(), 0u64, false),
        move |(mut blobs, mut carry, mut offset, mut done)| {
            let file = file.clone();
            async move {
                loop {
                    if let Some(end) = carry.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = carry.drain(..=end).collect();
                        offset += line.len() as u64;
                        let parsed =
                            serde_json::from_slice::<T>(&line).map_err(|e| StoredError::Layout {
                                snapshot,
                                reason: format!(
                                    "a line of {file} near byte {offset} is not valid: {e}"
                                ),
                            });
                        return Some((parsed, (blobs, carry, offset, done)));
                    }
                    if done {
                        if carry.is_empty() {
                            return None;
                        }
                        let error = StoredError::Layout {
                            snapshot,
                            reason: format!(
                                "{file} ends in the middle of a line ({} of {size} bytes)",
                                offset + carry.len() as u64
                            ),
                        };
                        carry.clear();
                        return Some((Err(error), (blobs, carry, offset, done)));
                    }
                    match blobs.next().await {
                        Some(Ok(bytes)) => carry.extend_from_slice(&bytes),
                        Some(Err(e)) => {
                            done = true;
                            carry.clear();
                            return Some((Err(e), (blobs, carry, offset, done)));
                        }
                        None => done = true,
                    }
                }
            }
        },
    )
    .boxed()
}

/// A table file cut into what must be read: single blobs, and runs of blobs that the other
/// file holds too, in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Blob `i`, read whole.
    Whole(usize),
    /// Blobs `first..=last`, a shared run: only the bytes up to the run's first line break and
    /// after its last are read.
    Run(usize, usize),
}

/// The pieces of `content` against `other`, or `None` when either file holds a blob twice
/// (then runs are not well defined, and everything is read).
fn unshared_pieces(content: &[BlobId], other: &[BlobId]) -> Option<Vec<Piece>> {
    let unique = |ids: &[BlobId]| ids.iter().collect::<HashSet<_>>().len() == ids.len();
    if !unique(content) || !unique(other) {
        return None;
    }
    let shared: HashSet<&BlobId> = other.iter().collect();
    let edges: HashSet<(&BlobId, &BlobId)> = other.windows(2).map(|w| (&w[0], &w[1])).collect();
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < content.len() {
        if !shared.contains(&content[i]) {
            pieces.push(Piece::Whole(i));
            i += 1;
            continue;
        }
        let mut last = i;
        while last + 1 < content.len()
            && shared.contains(&content[last + 1])
            && edges.contains(&(&content[last], &content[last + 1]))
        {
            last += 1;
        }
        pieces.push(Piece::Run(i, last));
        i = last + 1;
    }
    Some(pieces)
}

/// Sends the bytes `pieces` select from `content`, in order: whole blobs, and of each run its
/// bytes up to and including its first line break and after its last one. The blobs that are
/// probably needed (whole ones, and the ends of runs) are read ahead; a run whose end blobs
/// hold no line break reads further blobs when it gets there.
async fn send_pieces(
    repo: &Repository,
    content: &[BlobId],
    pieces: &[Piece],
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, StoredError>>,
) -> Result<(), StoredError> {
    let likely: Vec<usize> = pieces
        .iter()
        .flat_map(|p| match *p {
            Piece::Whole(i) => vec![i],
            Piece::Run(first, last) if first == last => vec![first],
            Piece::Run(first, last) => vec![first, last],
        })
        .collect();
    let mut ahead = blob_stream(
        repo.clone(),
        likely.iter().map(|&i| content[i]).collect(),
        RECORD_READ_AHEAD,
    );
    let mut likely = likely.into_iter();
    // A blob: the next read-ahead one when it is the one wanted, else read now.
    let read = async |wanted: usize| -> Result<Bytes, StoredError> {
        Ok(Bytes::from(repo.read_blob(&content[wanted]).await?))
    };
    for piece in pieces {
        let mut out: Vec<Bytes> = Vec::new();
        match *piece {
            Piece::Whole(_) => {
                likely.next();
                let bytes = ahead.next().await.expect("one read per likely blob")?;
                out.push(bytes);
            }
            Piece::Run(first, last) => {
                let mut blobs: HashMap<usize, Bytes> = HashMap::new();
                for _ in 0..(if first == last { 1 } else { 2 }) {
                    let index = likely.next().expect("run ends are likely");
                    let bytes = ahead.next().await.expect("one read per likely blob")?;
                    blobs.insert(index, bytes);
                }
                // The head: blobs from `first` up to the one holding the first line break.
                let mut head_end = None;
                for index in first..=last {
                    if let Entry::Vacant(entry) = blobs.entry(index) {
                        entry.insert(read(index).await?);
                    }
                    if let Some(at) = blobs[&index].iter().position(|&b| b == b'\n') {
                        head_end = Some((index, at));
                        break;
                    }
                }
                let Some((head_blob, head_at)) = head_end else {
                    // No line break in the whole run: all of it is one line's middle.
                    out.extend((first..=last).map(|i| blobs[&i].clone()));
                    send_all(tx, out).await?;
                    continue;
                };
                // The tail: blobs from `last` back to the one holding the last line break.
                let mut tail_start = (head_blob, head_at);
                for index in (head_blob..=last).rev() {
                    if let Entry::Vacant(entry) = blobs.entry(index) {
                        entry.insert(read(index).await?);
                    }
                    let from = if index == head_blob { head_at } else { 0 };
                    if let Some(at) = blobs[&index][from..].iter().rposition(|&b| b == b'\n') {
                        tail_start = (index, from + at);
                        break;
                    }
                }
                for index in first..head_blob {
                    out.push(blobs[&index].clone());
                }
                out.push(blobs[&head_blob].slice(..=head_at));
                let (tail_blob, tail_at) = tail_start;
                out.push(blobs[&tail_blob].slice(tail_at + 1..));
                for index in tail_blob + 1..=last {
                    out.push(blobs[&index].clone());
                }
            }
        }
        send_all(tx, out).await?;
    }
    Ok(())
}

async fn send_all(
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, StoredError>>,
    out: Vec<Bytes>,
) -> Result<(), StoredError> {
    for bytes in out {
        if !bytes.is_empty() && tx.send(Ok(bytes)).await.is_err() {
            // The reader is gone: nothing more to do.
            return Ok(());
        }
    }
    Ok(())
}

/// The blobs of `content`, in order, with up to `read_ahead` reads running ahead of the
/// consumer.
///
/// Each read runs as its own task. Reads take one of the backend's connection permits while
/// they run; as plain futures inside `buffered` they would only make progress while the
/// consumer polls this stream, so a consumer that stops to read something else (an attachment
/// while going through records) could wait for a permit that these idle reads hold: a deadlock
/// once `read_ahead` reaches the backend's connection limit. As tasks they finish and give
/// their permits back whatever the consumer does.
fn blob_stream(
    repo: Repository,
    content: Vec<BlobId>,
    read_ahead: usize,
) -> impl Stream<Item = Result<Bytes, RepoError>> + Send + 'static {
    futures::stream::iter(content)
        .map(move |id| {
            let repo = repo.clone();
            let task = tokio::spawn(async move { repo.read_blob(&id).await.map(Bytes::from) });
            async move {
                task.await
                    .map_err(|e| RepoError::Internal(format!("a blob read failed: {e}")))?
            }
        })
        .buffered(read_ahead)
}

async fn read_all(repo: &Repository, content: &[BlobId]) -> Result<Vec<u8>, RepoError> {
    let mut out = Vec::new();
    let mut blobs = blob_stream(repo.clone(), content.to_vec(), FILE_READ_AHEAD);
    while let Some(bytes) = blobs.next().await {
        out.extend_from_slice(&bytes?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &str) -> Vec<BlobId> {
        names.bytes().map(|b| BlobId::of(&[b])).collect()
    }

    #[test]
    fn shared_runs_are_blobs_in_the_same_order_on_both_sides() {
        // a b c d e  against  a b x d e: runs (a b) and (d e); c read whole.
        let pieces = unshared_pieces(&ids("abcde"), &ids("abxde")).unwrap();
        assert_eq!(
            pieces,
            [Piece::Run(0, 1), Piece::Whole(2), Piece::Run(3, 4)]
        );
        // d and e are shared but not adjacent in the other file: two runs of one.
        let pieces = unshared_pieces(&ids("de"), &ids("dxe")).unwrap();
        assert_eq!(pieces, [Piece::Run(0, 0), Piece::Run(1, 1)]);
        // Nothing shared: every blob whole.
        let pieces = unshared_pieces(&ids("ab"), &ids("xy")).unwrap();
        assert_eq!(pieces, [Piece::Whole(0), Piece::Whole(1)]);
        // A blob twice in one file: no runs at all.
        assert_eq!(unshared_pieces(&ids("aba"), &ids("ab")), None);
    }
}
