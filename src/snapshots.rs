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
    /// The snapshot asked for is there, but cannot be read.
    #[error(
        "snapshot {id} is damaged: it cannot be read (`airback check` reports what else is \
         damaged)"
    )]
    Damaged {
        /// The snapshot.
        id: SnapshotId,
        /// Why it cannot be read.
        #[source]
        source: RepoError,
    },
    /// `latest` found only snapshots that cannot be read.
    #[error(
        "no readable snapshot matches `latest`; {} damaged ({}): `airback check` reports them",
        if .0.len() == 1 { "1 snapshot is".to_owned() } else { format!("{} snapshots are", .0.len()) },
        .0.iter().map(|id| id.short()).collect::<Vec<_>>().join(", ")
    )]
    AllDamaged(Vec<SnapshotId>),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// The base a snapshot belongs to, if it is an Airtable snapshot (`crate::layout::Source`).
pub fn base_id(snapshot: &Snapshot) -> Option<&str> {
    crate::layout::base_id(snapshot)
}

/// Every snapshot, oldest first (by time, then id). Unreadable manifests are skipped with a
/// warning; `check` reports them.
pub async fn list(repo: &Repository) -> Result<Vec<(SnapshotId, Snapshot)>, RepoError> {
    let (out, damaged) = scan(repo).await?;
    for (id, e) in damaged {
        tracing::warn!("skipping snapshot {id}: {e}");
    }
    Ok(out)
}

/// Every readable snapshot, oldest first, and the snapshots that cannot be read, with why.
async fn scan(repo: &Repository) -> Result<Scan, RepoError> {
    let mut out = Vec::new();
    let mut damaged = Vec::new();
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
                    damaged.push((id, e));
                    continue;
                }
            },
        };
        out.push((id, snapshot));
    }
    out.sort_by(|(a_id, a), (b_id, b)| a.time.cmp(&b.time).then(a_id.cmp(b_id)));
    Ok((out, damaged))
}

/// What [`scan`] finds: readable snapshots, oldest first, and damaged ones.
type Scan = (Vec<(SnapshotId, Snapshot)>, Vec<(SnapshotId, RepoError)>);

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

/// Resolves `spec`: `latest` (of `base` if given), a full id, or a unique prefix of one. A
/// snapshot that matches but cannot be read is reported as damaged, not as missing (its base
/// cannot be known, so it matches any `base`).
pub async fn resolve(
    repo: &Repository,
    spec: &str,
    base: Option<&str>,
) -> Result<(SnapshotId, Snapshot), ResolveError> {
    let (readable, damaged) = scan(repo).await?;
    if spec == "latest" {
        let found = readable
            .into_iter()
            .rfind(|(_, s)| base.is_none_or(|b| base_id(s) == Some(b)));
        for (id, e) in &damaged {
            tracing::warn!("skipping snapshot {id}: {e}");
        }
        return match found {
            Some(found) => Ok(found),
            None if damaged.is_empty() => Err(ResolveError::NotFound(spec.to_string())),
            None => Err(ResolveError::AllDamaged(
                damaged.into_iter().map(|(id, _)| id).collect(),
            )),
        };
    }
    let mut matches: Vec<(SnapshotId, Snapshot)> = readable
        .into_iter()
        .filter(|(id, s)| {
            id.to_hex().starts_with(spec) && base.is_none_or(|b| base_id(s) == Some(b))
        })
        .collect();
    let mut damaged: Vec<(SnapshotId, RepoError)> = damaged
        .into_iter()
        .filter(|(id, _)| id.to_hex().starts_with(spec))
        .collect();
    match (matches.len(), damaged.len()) {
        (0, 0) => Err(ResolveError::NotFound(spec.to_string())),
        (1, 0) => Ok(matches.remove(0)),
        (0, 1) => {
            let (id, source) = damaged.remove(0);
            Err(ResolveError::Damaged { id, source })
        }
        (a, b) => Err(ResolveError::Ambiguous(spec.to_string(), a + b)),
    }
}
