//! Snapshot manifests and trees. A snapshot names one root tree; a tree is a metadata blob that
//! lists files (whose content is a list of blobs) and subtrees, like a small file system. The
//! Airtable layer decides what the files are (schema, table JSON lines, attachments); this
//! module only knows how to store, load and walk them.

use serde::{Deserialize, Serialize};

use crate::id::{BlobId, RepoId, SnapshotId};
use crate::repo::pack::BlobKind;

/// The content of one `snapshots/<id>` object, the commit point of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version, 1.
    pub version: u32,
    /// When the backup started (RFC 3339, UTC).
    pub time: String,
    /// Host that wrote it.
    pub hostname: String,
    /// `airback <version>`.
    pub program: String,
    /// The root tree blob.
    pub tree: BlobId,
    /// What was backed up (for Airtable: a `crate::layout::Source`).
    pub source: serde_json::Value,
    /// User tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// True when some content could not be read; `problems` says what.
    #[serde(default)]
    pub partial: bool,
    /// Human-readable descriptions of what is missing from a partial snapshot.
    #[serde(default)]
    pub problems: Vec<String>,
    /// Counters for listings (for Airtable: a `crate::layout::SnapshotSummary`); informative
    /// only.
    #[serde(default)]
    pub summary: serde_json::Value,
    /// For a snapshot written by `rewrite`: the original's id and what was left out (counts,
    /// never the ids), e.g. `{"original": "<id>", "excluded": {"records": 2, "fields":
    /// ["tbl….fld…"], "attachments": 1}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten: Option<serde_json::Value>,
    /// The snapshot this one is a copy of (`airback copy`), kept across further copies and
    /// `repair snapshots`, dropped by `rewrite` (new content); `None` for an original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<CopyOf>,
}

/// Which snapshot a copied snapshot stands for: the repository it was first taken in and its
/// id there. Two snapshots with the same identity hold the same content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CopyOf {
    /// The id of the repository the original was taken in.
    pub repository: RepoId,
    /// The original's id in that repository.
    pub snapshot: SnapshotId,
}

impl Snapshot {
    /// This snapshot's identity: its [`Snapshot::copy_of`], or else itself, `id` in the
    /// repository `repository`.
    pub fn identity(&self, repository: RepoId, id: SnapshotId) -> CopyOf {
        self.copy_of.unwrap_or(CopyOf {
            repository,
            snapshot: id,
        })
    }
}

/// The storage path of a snapshot.
pub(crate) fn snapshot_path(id: &SnapshotId) -> String {
    format!("snapshots/{id}")
}

/// A tree: one metadata blob holding JSON. Unknown fields are ignored (FORMAT.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Format version, 1.
    pub version: u32,
    /// Entries, sorted by name, names unique.
    pub nodes: Vec<Node>,
}

/// One entry of a tree. (Not `deny_unknown_fields`: serde does not support it with `flatten`.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The entry's name within the tree (any UTF-8 except `/`; not `.` or `..`).
    pub name: String,
    /// A file or a subtree.
    #[serde(flatten)]
    pub kind: NodeKind,
    /// Free-form metadata for the layer above (record counts, original filenames, …).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub meta: serde_json::Value,
}

/// What a node is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum NodeKind {
    /// A byte stream stored as a list of blobs.
    File {
        /// Total length in bytes.
        size: u64,
        /// The kind of the content blobs.
        blob_kind: BlobKind,
        /// The blobs, in order; their concatenation is the file.
        content: Vec<BlobId>,
    },
    /// A subtree stored as its own metadata blob.
    Dir {
        /// The tree blob.
        subtree: BlobId,
    },
}

impl Tree {
    /// A tree with `nodes` sorted by name.
    pub fn new(mut nodes: Vec<Node>) -> Self {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Tree { version: 1, nodes }
    }
}
