//! Ctrl-C (SIGINT) and SIGTERM. The command's future is raced against the signal; on a signal
//! it is dropped, which cancels it at the `.await` it was waiting on, and its guards run:
//! temporary files and folders are deleted, an open SQLite transaction rolls back, an export's
//! writing thread is told to stop, a lock guard starts removing its lock file. What needs more
//! than a destructor happens here, in order: the lock removals are waited for, the runtime is
//! shut down (which waits for blocking threads, such as the export's, to end), and the
//! temporary files of cancelled writes that a blocking thread created late are removed.
//!
//! A second signal while the locks are being removed exits at once: a lock left behind names
//! this process, so it counts as stale as soon as the process is gone on this host, and after
//! 30 minutes anywhere (`repo::lock`).

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Runtime;

use super::Command;
use super::exit;
use super::print::err;

/// How long the runtime's blocking threads (an export being written, SQLite work) get to end
/// after a cancellation, so that they remove their temporary files.
const BLOCKING_GRACE: Duration = Duration::from_secs(10);

/// Runs `command` on `runtime` until it completes (`Some`) or the process receives Ctrl-C or
/// SIGTERM (`None`, after the cleanup described in the module documentation). Shuts the
/// runtime down either way; after a signal, waits at most [`BLOCKING_GRACE`] for its blocking
/// threads (a signal in that time is not heard).
pub(super) fn run<T>(runtime: Runtime, command: impl Future<Output = T>) -> Option<T> {
    let done = runtime.block_on(async {
        tokio::select! {
            done = command => Some(done),
            () = interrupt() => None,
        }
    });
    // The command's future is dropped: a lock guard it held is removing its lock.
    runtime.block_on(async {
        tokio::select! {
            () = crate::repo::lock::dropped_locks_removed() => {}
            () = interrupt(), if done.is_none() => {
                err!(
                    "interrupted again; exiting at once (a lock left in the repository counts \
                     as stale once this process has ended)"
                );
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
    if done.is_some() {
        drop(runtime);
        return done;
    }
    // Tasks of the dropped command still running fail as the runtime stops: not news.
    super::logging::mute();
    runtime.shutdown_timeout(BLOCKING_GRACE);
    crate::backend::remove_abandoned_temp_files();
    None
}

/// Completes on Ctrl-C or, on Unix, SIGTERM; never if neither can be listened for.
pub(super) async fn interrupt() {
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The line printed on standard error when `command` was interrupted.
pub(super) fn interrupted_message(command: &Command) -> &'static str {
    match command {
        Command::Snapshot(_) => {
            "interrupted; no snapshot was saved for the base in progress, and the next snapshot \
             reuses what was uploaded"
        }
        Command::Restore(_) => "interrupted; run the same command again to resume",
        Command::Export(_) => {
            "interrupted; nothing was written under the destination's name (a stream is left \
             without its end)"
        }
        Command::Check(_) => "interrupted; the check did not finish",
        Command::Copy(_) => {
            "interrupted; the snapshots committed so far stay in the target, and the same copy \
             again copies the rest"
        }
        _ => "interrupted",
    }
}
