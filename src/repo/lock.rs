//! Lock files in `locks/`. Backups never lock: they only add immutable objects, and deletion
//! is delayed (docs/FORMAT.md, "Concurrency"). Locks order the commands that must not overlap
//! with deletion: `check` takes a shared lock, deleting commands an exclusive one.
//!
//! A lock is refreshed every [`REFRESH_INTERVAL`] while held and is stale after
//! [`STALE_AFTER`], or at once when it names a process on this host that no longer exists, so a
//! crashed run never blocks the next cron run for long. A guard dropped without
//! [`LockGuard::release`] (a cancelled command) removes its lock file in the background;
//! [`dropped_locks_removed`] waits for that before the process exits.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::{RepoError, Repository, Result};
use crate::backend::Backend;
use crate::id::BlobId;

/// How often a held lock is rewritten with a fresh time.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// A lock not refreshed for this long is ignored and may be removed.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// The content of a `locks/<id>` object (plain JSON).
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

    /// Whether the lock can be ignored.
    pub fn is_stale(&self, now: SystemTime) -> bool {
        let Ok(time) = humantime::parse_rfc3339(&self.time) else {
            return true;
        };
        if now.duration_since(time).unwrap_or_default() > STALE_AFTER {
            return true;
        }
        self.hostname == hostname() && !process_exists(self.pid)
    }
}

/// This machine's name, for lock files and snapshots.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
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

/// Waits until the lock files of guards dropped without [`LockGuard::release`] are removed. A
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

async fn write_lock(backend: &Backend, info: &LockInfo) -> Result<String> {
    let bytes = serde_json::to_vec(info).expect("lock serializes");
    let path = format!("locks/{}", BlobId::of(&bytes));
    backend.write(&path, bytes).await?;
    Ok(path)
}

async fn conflicting(
    backend: &Backend,
    exclusive: bool,
    own: Option<&str>,
) -> Result<Option<LockInfo>> {
    let now = SystemTime::now();
    for entry in backend.list("locks/").await? {
        let path = format!("locks/{}", entry.name);
        if Some(path.as_str()) == own {
            continue;
        }
        let info: LockInfo = match backend.read(&path).await {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(info) => info,
                Err(_) => continue,
            },
            Err(_) => continue, // removed meanwhile
        };
        if info.is_stale(now) {
            let _ = backend.delete(&path).await;
            continue;
        }
        if exclusive || info.exclusive {
            return Ok(Some(info));
        }
    }
    Ok(None)
}

impl Repository {
    /// Takes a lock for `operation`; fails with [`RepoError::Locked`] on a conflict.
    pub async fn lock(&self, exclusive: bool, operation: &str) -> Result<LockGuard> {
        let backend = self.backend().clone();
        if let Some(holder) = conflicting(&backend, exclusive, None).await? {
            return Err(RepoError::Locked {
                holder: holder.describe(),
            });
        }
        let info = LockInfo {
            time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            hostname: hostname(),
            pid: std::process::id(),
            exclusive,
            operation: operation.to_string(),
        };
        let path = write_lock(&backend, &info).await?;
        let shared_path = std::sync::Arc::new(std::sync::Mutex::new(path));
        let refresher = {
            let backend = backend.clone();
            let shared_path = shared_path.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REFRESH_INTERVAL).await;
                    let mut fresh = info.clone();
                    fresh.time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
                    if let Ok(new_path) = write_lock(&backend, &fresh).await {
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
        if let Some(holder) = conflicting(&backend, exclusive, Some(&guard.path())).await? {
            let _ = guard.release().await;
            return Err(RepoError::Locked {
                holder: holder.describe(),
            });
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
