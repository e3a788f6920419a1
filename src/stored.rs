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
//! ```
//!
//! Every blob is verified by its hash as it is read ([`Repository::read_blob`]). Names found in
//! trees are used only as lookup keys, never as paths.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use serde_json::Value;

use crate::airtable::{BaseSchema, Record};
use crate::id::{BlobId, SnapshotId};
use crate::layout::{self, AttachmentMeta, LayoutJson, TableMeta};
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
        Ok(StoredBase {
            repo: repo.clone(),
            id,
            snapshot,
            schema,
            tables,
            attachment_groups,
            loaded_groups: Arc::default(),
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

    /// The table's records, in the stored order (by record id), one at a time. Cells are keyed
    /// by field id; attachment objects carry no URL.
    pub fn records(&self, table: &StoredTable) -> BoxStream<'static, Result<Record, StoredError>> {
        let snapshot = self.id;
        let table_id = table.id.clone();
        let size = table.size;
        let blobs = blob_stream(self.repo.clone(), table.content.clone(), RECORD_READ_AHEAD);
        futures::stream::unfold(
            (blobs, Vec::<u8>::new(), 0u64, false),
            move |(mut blobs, mut carry, mut offset, mut done)| {
                let table_id = table_id.clone();
                async move {
                    loop {
                        if let Some(end) = carry.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = carry.drain(..=end).collect();
                            offset += line.len() as u64;
                            let parsed = serde_json::from_slice::<Record>(&line).map_err(|e| {
                                StoredError::Layout {
                                    snapshot,
                                    reason: format!(
                                        "a record of table {table_id} near byte {offset} is not \
                                         valid: {e}"
                                    ),
                                }
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
                                    "table {table_id} ends in the middle of a record ({} of \
                                     {size} bytes)",
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
                                return Some((Err(e.into()), (blobs, carry, offset, done)));
                            }
                            None => done = true,
                        }
                    }
                }
            },
        )
        .boxed()
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
