//! Lock files in `locks/`. Backups never lock: they only add immutable objects, and deletion
//! is delayed (docs/FORMAT.md, "Concurrency"). Locks order the commands that must not overlap
//! with deletion: `check` takes a shared lock, deleting commands an exclusive one.
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
    path: std::sync::Arc<std::sync::Mutex<String>>,
    refresher: JoinHandle<()>,
    released: bool,
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

/// The description of a lock that conflicts with the one wanted, if any; stale locks met on
/// the way are deleted.
async fn conflicting(
    repo: &Repository,
    exclusive: bool,
    own: Option<&str>,
) -> Result<Option<String>> {
    let backend = repo.backend();
    let now = SystemTime::now();
    for entry in backend.list("locks/").await? {
        let path = format!("locks/{}", entry.name);
        if Some(path.as_str()) == own {
            continue;
        }
        // One that cannot be opened (another key, damaged) or parsed is skipped.
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
        if exclusive || info.exclusive {
            let mut holder = info.describe();
            if info.far_future(now).is_some() {
                holder.push_str(&format!(
                    ", a time in the future (that host's clock is ahead): the lock counts as \
                     stale from {} on",
                    humantime::format_rfc3339_seconds(seen + STALE_AFTER)
                ));
            }
            return Ok(Some(holder));
        }
    }
    Ok(None)
}

impl Repository {
    /// Takes a lock for `operation`; fails with [`RepoError::Locked`] on a conflict.
    pub async fn lock(&self, exclusive: bool, operation: &str) -> Result<LockGuard> {
        let backend = self.backend().clone();
        if let Some(holder) = conflicting(self, exclusive, None).await? {
            return Err(RepoError::Locked { holder });
        }
        let info = LockInfo {
            time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            hostname: hostname(),
            pid: std::process::id(),
            exclusive,
            operation: operation.to_string(),
        };
        let crypto = self.crypto().clone();
        let path = match write_lock(&backend, &crypto, &info).await {
            Ok(path) => path,
            Err(RepoError::Backend(source)) if !exclusive => {
                return Err(RepoError::LockNotWritten {
                    location: backend.location().to_string(),
                    source: Box::new(source),
                });
            }
            Err(e) => return Err(e),
        };
        let shared_path = std::sync::Arc::new(std::sync::Mutex::new(path));
        let refresher = {
            let backend = backend.clone();
            let shared_path = shared_path.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REFRESH_INTERVAL).await;
                    let mut fresh = info.clone();
                    fresh.time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
                    if let Ok(new_path) = write_lock(&backend, &crypto, &fresh).await {
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
        let guard = LockGuard {
            backend: backend.clone(),
            path: shared_path,
            refresher,
            released: false,
        };
        // Two processes may have written their locks at the same moment: look again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(holder) = conflicting(self, exclusive, Some(&guard.path())).await? {
            let _ = guard.release().await;
            return Err(RepoError::Locked { holder });
        }
        Ok(guard)
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
        self.backend.delete(&self.path()).await?;
        self.released = true;
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.refresher.abort();
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
