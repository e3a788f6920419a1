//! Parts of the inside that airback's own integration tests and benchmarks reach for: where a
//! pack lives, what a lock file holds. Not an API: hidden from the documentation, and free to
//! change in any release.

pub use crate::backend::TMP_LEFTOVER_AGE;
pub use crate::repo::lock::{LockInfo, dropped_locks_removed, hostname};
pub use crate::repo::pack::pack_path;

use crate::id::PackId;
use crate::repo::{RepoError, Repository};

/// The plaintext of every blob of a pack in storage, read whole, opened (format 2) and
/// decoded: what the erasure tests search, since encrypted bytes show nothing.
pub async fn pack_plaintexts(repo: &Repository, pack: &PackId) -> Result<Vec<Vec<u8>>, RepoError> {
    let bytes = repo.backend().read(&pack_path(pack)).await?;
    let (kind, blobs, salt) = crate::repo::pack::parse_pack(&bytes, repo.crypto())
        .map_err(|e| RepoError::Internal(e.to_string()))?;
    let dicts = repo.dictionaries();
    blobs
        .iter()
        .map(|b| {
            let start = b.offset as usize;
            let stored = &bytes[start..start + b.length as usize];
            crate::repo::pack::open_and_decode(
                repo.crypto(),
                salt.as_ref(),
                kind,
                b,
                stored,
                &dicts,
            )
            .map_err(|e| RepoError::Internal(e.to_string()))
        })
        .collect()
}
