//! Finding snapshots: listing them (oldest first), the latest of a base, and resolving what a
//! user typed (a full id, a unique prefix, or `latest`). Manifests are cached in the local
//! cache, so listing a long history reads each manifest from storage once.

use crate::id::SnapshotId;
use crate::repo::snapshot::Snapshot;
use crate::repo::{RepoError, Repository};

/// Why a snapshot name could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Nothing matches.
    #[error("no snapshot matches `{0}`; `airback snapshots` lists them")]
    NotFound(String),
    /// More than one matches.
    #[error("`{0}` matches {1} snapshots; give more digits of the id")]
    Ambiguous(String, usize),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// The base a snapshot belongs to, if it is an Airtable snapshot ([`crate::layout::Source`]).
pub fn base_id(snapshot: &Snapshot) -> Option<&str> {
    crate::layout::base_id(snapshot)
}

/// Every snapshot, oldest first (by time, then id). Unreadable manifests are skipped with a
/// warning; `check` reports them.
pub async fn list(repo: &Repository) -> Result<Vec<(SnapshotId, Snapshot)>, RepoError> {
    let mut out = Vec::new();
    for id in repo.list_snapshots().await? {
        let key = format!("snapshot:{id}");
        let cached = repo
            .cache()
            .get_value(&key)?
            .and_then(|text| serde_json::from_str::<Snapshot>(&text).ok());
        let snapshot = match cached {
            Some(s) => s,
            None => match repo.load_snapshot(&id).await {
                Ok(s) => {
                    let text = serde_json::to_string(&s).expect("snapshots serialize");
                    repo.cache().set_value(&key, &text)?;
                    s
                }
                Err(e) => {
                    tracing::warn!("skipping snapshot {id}: {e}");
                    continue;
                }
            },
        };
        out.push((id, snapshot));
    }
    out.sort_by(|(a_id, a), (b_id, b)| a.time.cmp(&b.time).then(a_id.cmp(b_id)));
    Ok(out)
}

/// The newest snapshot, of `base` if given.
pub async fn latest(
    repo: &Repository,
    base: Option<&str>,
) -> Result<Option<(SnapshotId, Snapshot)>, RepoError> {
    Ok(list(repo)
        .await?
        .into_iter()
        .rfind(|(_, s)| base.is_none_or(|b| base_id(s) == Some(b))))
}

/// Resolves `spec`: `latest` (of `base` if given), a full id, or a unique prefix of one.
pub async fn resolve(
    repo: &Repository,
    spec: &str,
    base: Option<&str>,
) -> Result<(SnapshotId, Snapshot), ResolveError> {
    if spec == "latest" {
        return latest(repo, base)
            .await?
            .ok_or_else(|| ResolveError::NotFound(spec.to_string()));
    }
    let matches: Vec<(SnapshotId, Snapshot)> = list(repo)
        .await?
        .into_iter()
        .filter(|(id, s)| {
            id.to_hex().starts_with(spec) && base.is_none_or(|b| base_id(s) == Some(b))
        })
        .collect();
    match matches.len() {
        0 => Err(ResolveError::NotFound(spec.to_string())),
        1 => Ok(matches.into_iter().next().expect("one")),
        n => Err(ResolveError::Ambiguous(spec.to_string(), n)),
    }
}
