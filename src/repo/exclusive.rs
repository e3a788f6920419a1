//! Deleting from a repository. Objects are immutable and only deletion removes them, so
//! deletion is the one operation that can lose data; it is reachable only through
//! [`Exclusive`], which owns the repository's exclusive lock for as long as it lives. Commands
//! that delete (`repair`, and the coming `prune` and `forget`) take it with
//! [`Repository::lock_exclusive`]; nothing else in the crate deletes repository objects (lock
//! files are removed by `lock.rs`, staged restore files live outside the repository).

use std::ops::Deref;

use super::index::{EraseEntry, IndexFile, index_path};
use super::lock::LockGuard;
use super::pack::BlobKind;
use super::pack::pack_path;
use super::snapshot::snapshot_path;
use super::{Repository, Result, dict_path};
use crate::id::{BlobId, DictId, IndexId, PackId, SnapshotId};

/// A repository held under its exclusive lock: the only way to delete objects from it.
/// Dereferences to [`Repository`] for everything else. Call [`Exclusive::release`] when done;
/// dropped without it, the lock file stays until it is stale.
#[derive(Debug)]
pub struct Exclusive {
    repo: Repository,
    guard: LockGuard,
}

impl Repository {
    /// Takes the exclusive lock for `operation` (no other command may hold any lock), and
    /// returns the handle that can delete.
    pub async fn lock_exclusive(&self, operation: &str) -> Result<Exclusive> {
        let guard = self.lock(true, operation).await?;
        Ok(Exclusive {
            repo: self.clone(),
            guard,
        })
    }
}

impl Deref for Exclusive {
    type Target = Repository;
    fn deref(&self) -> &Repository {
        &self.repo
    }
}

impl Exclusive {
    /// Deletes a pack. The caller must have made sure that no index file it keeps lists it.
    pub async fn delete_pack(&self, id: &PackId) -> Result<()> {
        Ok(self.repo.backend().delete(&pack_path(id)).await?)
    }

    /// Deletes an index file. The caller must have written what replaces it first.
    pub async fn delete_index_file(&self, id: &IndexId) -> Result<()> {
        Ok(self.repo.backend().delete(&index_path(id)).await?)
    }

    /// Deletes a snapshot manifest.
    pub async fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        Ok(self.repo.backend().delete(&snapshot_path(id)).await?)
    }

    /// Deletes a dictionary object (only a damaged one: a dictionary may be needed by any
    /// blob compressed with it). `id` is a loaded dictionary's id, or else the name of its
    /// `dicts/` object (in format 1 the two are the same; in format 2 a damaged object has
    /// only a name).
    pub async fn delete_dictionary(&self, id: &DictId) -> Result<()> {
        let path = match self.repo.dictionary_object(id) {
            Some(name) => format!("dicts/{name}"),
            None => dict_path(id),
        };
        Ok(self.repo.backend().delete(&path).await?)
    }

    /// Writes an index file that asks `prune` to erase these blobs (see
    /// `IndexFile::erase`). Written after the packs of whatever replaced them.
    pub async fn write_erase(&self, blobs: &[(BlobId, BlobKind)]) -> Result<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        let mut file = IndexFile::new(Vec::new(), self.repo.config().version);
        file.erase = blobs
            .iter()
            .map(|&(id, kind)| EraseEntry { id, kind })
            .collect();
        file.erase.sort_by_key(|e| (e.id, e.kind == BlobKind::Meta));
        self.repo.write_index_file(file).await?;
        Ok(())
    }

    /// Gives up the lock.
    pub async fn release(self) -> Result<()> {
        self.guard.release().await
    }
}
