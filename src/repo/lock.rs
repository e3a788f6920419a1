//! Lock files in `locks/`. Backups never wait for a lock: they only add immutable objects,
//! and deletion is delayed (docs/FORMAT.md, "Deletion"). Locks order the commands that must
//! not overlap with deletion: `check` takes a shared lock, deleting commands an exclusive one.
//! A writer (`snapshot`) takes a *writer lock*, which conflicts with nothing: it only tells
//! `prune` that a writer may be relying on packs prune has marked, so they must wait.
//!
//! A lock is refreshed every [`REFRESH_INTERVAL`] while held and is stale after
//! [`STALE_AFTER`], or at once when it names a process on this host that no longer exists, so a
//! crashed run never blocks the next cron run for long. A lock dated more than [`STALE_AFTER`]
//! in the future (another host's clock is ahead) ages from when this host first saw it instead:
//! the first sighting is kept in the local cache, so it counts across runs. A holder that is
//! alive rewrites its lock under a new name at every refresh, so only a dead holder's lock
//! grows old this way.
//! A guard dropped without [`LockGuard::release`] (a cancelled command) removes its lock
//! file in the background; [`dropped_locks_removed`] waits for that before the process exits.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::{RepoError, Repository, Result};
use crate::backend::Backend;
use crate::crypto::{Crypto, ObjectKind};
use crate::id::BlobId;

/// How often a held lock is rewritten with a fresh time.
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// A lock not refreshed for this long is ignored and may be removed.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// The content of a `locks/<id>` object (plain JSON; sealed in format 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// When it was written or last refreshed (RFC 3339, UTC).
    pub time: String,
    /// Host of the holder.
    pub hostname: String,
    /// Process id of the holder.
    pub pid: u32,
    /// Exclusive or shared.
    pub exclusive: bool,
    /// The command holding it.
    pub operation: String,
    /// A writer lock: blocks nothing, and keeps `prune` from deleting marked packs at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writer: bool,
}

impl LockInfo {
    fn describe(&self) -> String {
        format!(
            "`airback {}` (pid {} on {}, {} lock since {})",
            self.operation,
            self.pid,
            self.hostname,
            if self.exclusive {
                "exclusive"
            } else if self.writer {
                "writer"
            } else {
                "shared"
            },
            self.time
        )
    }

    /// When the lock says it was written, if that is more than [`STALE_AFTER`] after `now`.
    pub fn far_future(&self, now: SystemTime) -> Option<SystemTime> {
        let time = humantime::parse_rfc3339(&self.time).ok()?;
        (time.duration_since(now).ok()? > STALE_AFTER).then_some(time)
    }

    /// Whether the lock can be ignored at `now`. `first_seen` is when this host first saw the
    /// lock; it counts only for a lock dated far in the future ([`LockInfo::far_future`]).
    pub fn is_stale(&self, now: SystemTime, first_seen: SystemTime) -> bool {
        let Ok(time) = humantime::parse_rfc3339(&self.time) else {
            return true;
        };
        let since = if self.far_future(now).is_some() {
            first_seen
        } else {
            time
        };
        if now.duration_since(since).unwrap_or_default() > STALE_AFTER {
            return true;
        }
        self.hostname == hostname() && !process_exists(self.pid)
    }
}

/// When this host first saw the lock `name` dated far in the future: from the cache's
/// `lock-first-seen:<name>` entry, else `now` (which is then recorded there).
fn first_seen(repo: &Repository, name: &str, now: SystemTime) -> SystemTime {
    let key = format!("lock-first-seen:{name}");
    let recorded = repo
        .cache()
        .get_value(&key)
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(secs) = recorded {
        return UNIX_EPOCH + Duration::from_secs(secs);
    }
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if let Err(e) = repo.cache().set_value(&key, &secs.to_string()) {
        tracing::debug!("cannot record when lock {name} was first seen: {e}");
    }
    now
}

/// This machine's name, for lock files and snapshots: the kernel's, else `/etc/hostname`,
/// else `unknown`.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

fn process_exists(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// A held lock. Call [`LockGuard::release`] to remove it; dropping it instead (a cancelled
/// command) removes it in a background task, which [`dropped_locks_removed`] waits for.
#[derive(Debug)]
pub struct LockGuard {
    backend: Backend,
    path: Arc<Mutex<String>>,
    refresher: JoinHandle<()>,
    released: bool,
    session: Arc<WriterSession>,
}

/// The removals started by dropped [`LockGuard`]s that nobody waited for yet.
static REMOVALS: std::sync::Mutex<Vec<JoinHandle<()>>> = std::sync::Mutex::new(Vec::new());

/// Waits until the lock files of guards dropped without `LockGuard::release` are removed. A
/// program that cancels a command (Ctrl-C) calls it before its runtime shuts down (which would
/// cancel the removals).
pub async fn dropped_locks_removed() {
    loop {
        let removals = std::mem::take(&mut *REMOVALS.lock().unwrap_or_else(|e| e.into_inner()));
        if removals.is_empty() {
            return;
        }
        for removal in removals {
            let _ = removal.await;
        }
    }
}

/// Writes a lock file (sealed in format 2, so every refresh is a new object with a new salt)
/// named by the hash of its stored bytes.
async fn write_lock(backend: &Backend, crypto: &Crypto, info: &LockInfo) -> Result<String> {
    let json = serde_json::to_vec(info).expect("lock serializes");
    let bytes = crypto.seal_object(ObjectKind::Lock, &json);
    let path = format!("locks/{}", BlobId::of(&bytes));
    backend.write(&path, bytes).await?;
    Ok(path)
}

/// The locks in `locks/` that are not stale, with their object names (`own` left out);
/// stale locks met on the way are deleted, and ones that cannot be opened (another key,
/// damaged) or parsed are skipped.
async fn live_locks(repo: &Repository, own: Option<&str>) -> Result<Vec<(LockInfo, String)>> {
    let backend = repo.backend();
    let now = SystemTime::now();
    let mut live = Vec::new();
    for entry in backend.list("locks/").await? {
        let path = format!("locks/{}", entry.name);
        if Some(path.as_str()) == own {
            continue;
        }
        let info: LockInfo = match backend.read(&path).await {
            Ok(bytes) => match repo
                .crypto()
                .open_object(ObjectKind::Lock, &bytes)
                .ok()
                .and_then(|json| serde_json::from_slice(&json).ok())
            {
                Some(info) => info,
                None => continue,
            },
            Err(_) => continue, // removed meanwhile
        };
        let seen = match info.far_future(now) {
            Some(_) => {
                let (this, name) = (repo.clone(), entry.name.clone());
                tokio::task::spawn_blocking(move || first_seen(&this, &name, now))
                    .await
                    .map_err(|e| RepoError::Internal(e.to_string()))?
            }
            None => now,
        };
        if info.is_stale(now, seen) {
            let _ = backend.delete(&path).await;
            continue;
        }
        let mut holder = info.describe();
        if info.far_future(now).is_some() {
            holder.push_str(&format!(
                ", a time in the future (that host's clock is ahead): the lock counts as \
                 stale from {} on",
                humantime::format_rfc3339_seconds(seen + STALE_AFTER)
            ));
        }
        live.push((info, holder));
    }
    Ok(live)
}

/// The description of a lock that conflicts with the one wanted, if any. Writer locks
/// conflict with nothing.
async fn conflicting(
    repo: &Repository,
    exclusive: bool,
    own: Option<&str>,
) -> Result<Option<String>> {
    Ok(live_locks(repo, own)
        .await?
        .into_iter()
        .find(|(info, _)| !info.writer && (exclusive || info.exclusive))
        .map(|(_, holder)| holder))
}

impl Repository {
    /// Takes a lock for `operation`; fails with [`RepoError::Locked`] on a conflict.
    pub async fn lock(&self, exclusive: bool, operation: &str) -> Result<LockGuard> {
        if let Some(holder) = conflicting(self, exclusive, None).await? {
            return Err(RepoError::Locked { holder });
        }
        let guard = self.hold(exclusive, false, operation).await?;
        // Two processes may have written their locks at the same moment: look again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(holder) = conflicting(self, exclusive, Some(&guard.path())).await? {
            let _ = guard.release().await;
            return Err(RepoError::Locked { holder });
        }
        Ok(guard)
    }

    /// Takes a writer lock for `operation` (`snapshot`), then brings the index up to date:
    /// the lock is in storage before the writer learns which blobs are stored, as the
    /// deletion rules require (docs/FORMAT.md, "Deletion"). It waits for nobody. While it
    /// is held, [`Repository::save_snapshot`] refuses to commit if the lock could not be
    /// refreshed for [`WRITER_REFRESH_LIMIT`] or was taken more than [`WRITER_AGE_LIMIT`]
    /// ago, because a prune may then have deleted packs the snapshot relies on.
    pub async fn lock_writer(&self, operation: &str) -> Result<LockGuard> {
        let guard = self.hold_writer(operation).await?;
        self.sync_index().await?;
        Ok(guard)
    }

    /// Writes a writer lock and records the session; the caller reads the index next.
    pub(crate) async fn hold_writer(&self, operation: &str) -> Result<LockGuard> {
        let guard = self.hold(false, true, operation).await?;
        self.set_writer_session(Some(guard.session.clone()));
        Ok(guard)
    }

    /// The writer locks in storage that are not stale: the snapshots running now, here or
    /// elsewhere.
    pub(crate) async fn live_writers(&self) -> Result<Vec<LockInfo>> {
        Ok(live_locks(self, None)
            .await?
            .into_iter()
            .filter(|(info, _)| info.writer)
            .map(|(info, _)| info)
            .collect())
    }

    /// Writes a lock object and starts refreshing it.
    async fn hold(&self, exclusive: bool, writer: bool, operation: &str) -> Result<LockGuard> {
        let backend = self.backend().clone();
        let now = SystemTime::now();
        let info = LockInfo {
            time: humantime::format_rfc3339_seconds(now).to_string(),
            hostname: hostname(),
            pid: std::process::id(),
            exclusive,
            operation: operation.to_string(),
            writer,
        };
        let crypto = self.crypto().clone();
        let path = match write_lock(&backend, &crypto, &info).await {
            Ok(path) => path,
            Err(RepoError::Backend(source)) if !exclusive && !writer => {
                return Err(RepoError::LockNotWritten {
                    location: backend.location().to_string(),
                    source: Box::new(source),
                });
            }
            Err(e) => return Err(e),
        };
        let session = Arc::new(WriterSession {
            started: now,
            last_written: Mutex::new(now),
            held: std::sync::atomic::AtomicBool::new(true),
        });
        let shared_path = Arc::new(Mutex::new(path));
        let refresher = {
            let backend = backend.clone();
            let shared_path = shared_path.clone();
            let session = session.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REFRESH_INTERVAL).await;
                    let mut fresh = info.clone();
                    let now = SystemTime::now();
                    fresh.time = humantime::format_rfc3339_seconds(now).to_string();
                    if let Ok(new_path) = write_lock(&backend, &crypto, &fresh).await {
                        *session
                            .last_written
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = now;
                        let old = std::mem::replace(
                            &mut *shared_path.lock().unwrap_or_else(|e| e.into_inner()),
                            new_path,
                        );
                        let _ = backend.delete(&old).await;
                    }
                }
            })
        };
        // From here on, a cancelled command removes the lock when it drops the guard.
        Ok(LockGuard {
            backend,
            path: shared_path,
            refresher,
            released: false,
            session,
        })
    }
}

/// A writer that has not refreshed its lock for this long must not commit: a prune may
/// count its lock as stale (after [`STALE_AFTER`]) and delete packs it relies on.
pub(crate) const WRITER_REFRESH_LIMIT: Duration = Duration::from_secs(25 * 60);
/// A writer that started this long ago must not commit: a prune deletes packs marked 23
/// hours earlier even while writers run (docs/FORMAT.md, "Deletion", rule A).
pub(crate) const WRITER_AGE_LIMIT: Duration = Duration::from_secs(22 * 3600);

/// When a held lock was taken and last written.
#[derive(Debug)]
pub(crate) struct WriterSession {
    started: SystemTime,
    last_written: Mutex<SystemTime>,
    /// False once the lock is released.
    held: std::sync::atomic::AtomicBool,
}

impl WriterSession {
    /// Why a writer holding this lock must not commit at `now`, if it must not.
    pub(crate) fn expired(&self, now: SystemTime) -> Option<String> {
        if !self.held.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let last = *self.last_written.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(last).unwrap_or_default() > WRITER_REFRESH_LIMIT {
            return Some(format!(
                "its writer lock was last written {} ago (the storage was unreachable or the \
                 machine slept), so a prune may have deleted data it relies on",
                humantime::format_duration(Duration::from_secs(
                    now.duration_since(last).unwrap_or_default().as_secs()
                ))
            ));
        }
        if now.duration_since(self.started).unwrap_or_default() > WRITER_AGE_LIMIT {
            return Some(
                "it started more than 22 hours ago, and a prune may have deleted data it \
                 relies on"
                    .to_string(),
            );
        }
        None
    }
}

impl LockGuard {
    /// The lock file's current path.
    fn path(&self) -> String {
        self.path.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops refreshing and removes the lock file.
    pub async fn release(mut self) -> Result<()> {
        self.refresher.abort();
        self.session
            .held
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.backend.delete(&self.path()).await?;
        self.released = true;
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.refresher.abort();
        self.session
            .held
            .store(false, std::sync::atomic::Ordering::SeqCst);
        if self.released {
            return;
        }
        // Outside a runtime nothing can be removed: the lock goes stale (at once for this
        // host when this process has ended).
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (backend, path) = (self.backend.clone(), self.path());
        let removal = runtime.spawn(async move {
            if let Err(e) = backend.delete(&path).await {
                tracing::warn!("cannot remove the lock `{path}`: {e}; it expires by itself");
            }
        });
        REMOVALS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(removal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn lock_dated(time: SystemTime) -> LockInfo {
        LockInfo {
            time: humantime::format_rfc3339_seconds(time).to_string(),
            hostname: "another-host".into(),
            pid: 1,
            exclusive: true,
            operation: "prune".into(),
            writer: false,
        }
    }

    const NOW: u64 = 1_800_000_000;
    const MIN: u64 = 60;

    #[test]
    fn a_lock_is_stale_thirty_minutes_after_its_time() {
        let lock = lock_dated(at(NOW));
        assert!(!lock.is_stale(at(NOW + 29 * MIN), at(NOW + 29 * MIN)));
        assert!(lock.is_stale(at(NOW + 31 * MIN), at(NOW + 31 * MIN)));
        // A little ahead (clocks a few minutes apart): its own time still counts.
        let ahead = lock_dated(at(NOW + 10 * MIN));
        assert_eq!(ahead.far_future(at(NOW)), None);
        assert!(!ahead.is_stale(at(NOW), at(NOW)));
        assert!(ahead.is_stale(at(NOW + 41 * MIN), at(NOW)));
    }

    #[test]
    fn a_far_future_lock_is_stale_thirty_minutes_after_it_was_first_seen() {
        let lock = lock_dated(at(NOW + 365 * 24 * 60 * MIN));
        assert!(lock.far_future(at(NOW)).is_some());
        // First seen now: not stale yet, neither now nor 29 minutes later.
        assert!(!lock.is_stale(at(NOW), at(NOW)));
        assert!(!lock.is_stale(at(NOW + 29 * MIN), at(NOW)));
        // 31 minutes after it was first seen (by this run or an earlier one): stale.
        assert!(lock.is_stale(at(NOW + 31 * MIN), at(NOW)));
    }

    #[test]
    fn a_lock_with_an_unreadable_time_is_stale() {
        let mut lock = lock_dated(at(NOW));
        lock.time = "yesterday".into();
        assert!(lock.is_stale(at(NOW), at(NOW)));
    }
}
