//! Index files: which pack holds which blob. Written after the packs they describe and before
//! any snapshot that needs them; each file lists at most [`MAX_BLOBS_PER_INDEX_FILE`] blobs.

use serde::{Deserialize, Serialize};

use crate::id::{DictId, IndexId, PackId};
use crate::repo::pack::{BlobKind, PackedBlob};

/// An index file holds at most this many blobs; a long run writes several.
pub(crate) const MAX_BLOBS_PER_INDEX_FILE: usize = 50_000;

/// The content of one `index/<id>` object. Unknown fields are ignored (FORMAT.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Format version, 1.
    pub version: u32,
    /// Index files this one replaces (written by repair or prune; empty otherwise).
    #[serde(default)]
    pub supersedes: Vec<IndexId>,
    /// The packs described.
    pub packs: Vec<IndexPack>,
    /// Zstd dictionaries of which a copy is stored as a metadata blob (blob id = dictionary
    /// id) in one of `packs`, so a lost or damaged `dicts/` object can be recovered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dictionaries: Vec<DictId>,
    /// Packs that `airback repair index` found missing or damaged and dropped (a damaged one
    /// is deleted once its readable blobs are stored again). A record for people and `check`:
    /// readers take nothing from it, because the same content stored again later has the
    /// same pack id and is sound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged_packs: Vec<DamagedPack>,
}

/// A pack recorded as unusable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedPack {
    /// The pack.
    pub id: PackId,
    /// What was wrong with it, e.g. "missing from storage".
    pub reason: String,
}

/// One pack in an index file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexPack {
    /// The pack.
    pub id: PackId,
    /// The kind of all its blobs.
    pub kind: BlobKind,
    /// Size of the pack object in bytes.
    pub size: u64,
    /// Its blobs, in pack order.
    pub blobs: Vec<PackedBlob>,
}

impl IndexFile {
    /// An index file for `packs`.
    pub(crate) fn new(packs: Vec<IndexPack>) -> Self {
        IndexFile {
            version: 1,
            supersedes: Vec::new(),
            packs,
            dictionaries: Vec::new(),
            damaged_packs: Vec::new(),
        }
    }

    /// Number of blobs listed.
    pub(crate) fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }
}

/// The storage path of an index file.
pub(crate) fn index_path(id: &IndexId) -> String {
    format!("index/{id}")
}
