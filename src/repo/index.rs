//! Index files: which pack holds which blob. Written after the packs they describe and before
//! any snapshot that needs them; each file lists at most [`MAX_BLOBS_PER_INDEX_FILE`] blobs.
//! In format 2 (version 2 of the index JSON, sealed) each pack also carries its salt, so a
//! blob can be opened with the index alone.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::crypto::Salt;
use crate::id::{BlobId, DictId, IndexId, PackId};
use crate::repo::pack::{BlobKind, PackedBlob};

/// An index file holds at most this many blobs; a long run writes several.
pub(crate) const MAX_BLOBS_PER_INDEX_FILE: usize = 50_000;

/// The content of one `index/<id>` object. Unknown fields are ignored (FORMAT.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Format version: 1, or 2 in an encrypted repository (every pack has a `salt`).
    pub version: u32,
    /// Index files this one replaces (written by repair or prune; empty otherwise).
    #[serde(default)]
    pub supersedes: Vec<IndexId>,
    /// The packs described, each live: its blobs count as stored.
    pub packs: Vec<IndexPack>,
    /// Packs that `prune` marked for deletion (docs/FORMAT.md, "Deletion"): their blobs may
    /// still be read but do not count as stored, and the pack object may already be gone. A
    /// pack that another effective index file lists under `packs` is live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs_to_delete: Vec<MarkedPack>,
    /// Blobs that `rewrite` took out of snapshots: `prune` rewrites every pack that holds
    /// one of them once no snapshot uses it, whatever its thresholds, so the bytes leave the
    /// storage. An entry stays while some pack the index names still holds the blob.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erase: Vec<EraseEntry>,
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

/// A blob to erase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EraseEntry {
    /// The blob.
    pub id: BlobId,
    /// Its kind.
    pub kind: BlobKind,
}

/// A pack marked for deletion, with when it was marked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkedPack {
    /// The pack, as `packs` lists it.
    #[serde(flatten)]
    pub pack: IndexPack,
    /// When it was marked (RFC 3339, UTC).
    pub marked: String,
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
    /// The pack's salt (32 hex digits), from which its key is derived; format 2 only.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "salt_hex",
        deserialize_with = "salt_from_hex"
    )]
    pub salt: Option<Salt>,
}

fn salt_hex<S: Serializer>(salt: &Option<Salt>, serializer: S) -> Result<S::Ok, S::Error> {
    match salt {
        Some(salt) => serializer.serialize_str(&hex::encode(salt)),
        None => serializer.serialize_none(),
    }
}

fn salt_from_hex<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Salt>, D::Error> {
    let s = String::deserialize(deserializer)?;
    let mut salt = [0u8; 16];
    hex::decode_to_slice(&s, &mut salt)
        .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a salt of 32 hex digits")))?;
    Ok(Some(salt))
}

impl IndexFile {
    /// An index file for `packs`, of format `version` (the repository's).
    pub(crate) fn new(packs: Vec<IndexPack>, version: u32) -> Self {
        IndexFile {
            version,
            supersedes: Vec::new(),
            packs,
            packs_to_delete: Vec::new(),
            erase: Vec::new(),
            dictionaries: Vec::new(),
            damaged_packs: Vec::new(),
        }
    }

    /// Checks the version against the repository's and, in version 2, that every pack has
    /// its salt (and in version 1 that none has).
    pub(crate) fn validate(&self, repo_version: u32) -> Result<(), String> {
        if self.version != repo_version {
            return Err(if self.version > 2 {
                format!("version {} is not supported; upgrade airback", self.version)
            } else {
                format!(
                    "version {} in a repository of format {repo_version}",
                    self.version
                )
            });
        }
        let encrypted = repo_version == 2;
        let mut all = self
            .packs
            .iter()
            .chain(self.packs_to_delete.iter().map(|m| &m.pack));
        if let Some(m) = self
            .packs_to_delete
            .iter()
            .find(|m| humantime::parse_rfc3339(&m.marked).is_err())
        {
            return Err(format!(
                "pack {} is marked at `{}`, which is not an RFC 3339 time",
                m.pack.id, m.marked
            ));
        }
        if let Some(p) = all.find(|p| p.salt.is_some() != encrypted) {
            return Err(format!(
                "pack {} {}",
                p.id,
                if encrypted {
                    "has no salt"
                } else {
                    "has a salt in an unencrypted repository"
                }
            ));
        }
        Ok(())
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
