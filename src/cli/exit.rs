//! Documented exit codes (README, "Exit codes"). Scripts may rely on them; any other code means
//! failure.

/// Success.
pub(crate) const OK: u8 = 0;
/// A failure not covered below.
pub(crate) const ERROR: u8 = 1;
/// Wrong usage (unknown flag, bad value); printed by clap.
pub(crate) const USAGE: u8 = 2;
/// Partial success: the snapshot was saved but some content could not be read.
pub(crate) const PARTIAL: u8 = 3;
/// No repository at the given location.
pub(crate) const NO_REPOSITORY: u8 = 10;
/// The repository is locked by another process.
pub(crate) const LOCKED: u8 = 11;
/// Wrong or missing password: no password could be read, or it opens none of the
/// repository's keys.
pub(crate) const WRONG_PASSWORD: u8 = 12;
/// Interrupted (Ctrl-C or SIGTERM): stopped cleanly, locks and temporary files removed.
pub(crate) const INTERRUPTED: u8 = 130;

/// The exit code for an error.
pub(crate) fn for_error(err: &anyhow::Error) -> u8 {
    use crate::repo::RepoError;
    for cause in err.chain() {
        if cause.is::<super::password::PasswordError>() {
            return WRONG_PASSWORD;
        }
        if let Some(export_err) = cause.downcast_ref::<crate::export::ExportError>()
            && export_err.is_usage()
        {
            return USAGE;
        }
        if cause.is::<super::forget::NoRule>()
            || matches!(
                cause.downcast_ref(),
                Some(crate::rewrite::RewriteError::NothingToExclude)
            )
        {
            return USAGE;
        }
        if let Some(crate::serve::ServeError::NeedsToken(_)) = cause.downcast_ref() {
            return USAGE;
        }
        if let Some(crate::restore::RestoreError::SameBase(_)) = cause.downcast_ref() {
            return USAGE;
        }
        if let Some(crate::diff::DiffError::Invalid(_)) = cause.downcast_ref() {
            return USAGE;
        }
        if let Some(crate::history::HistoryError::Invalid(_)) = cause.downcast_ref() {
            return USAGE;
        }
        if let Some(repo_err) = cause.downcast_ref::<RepoError>() {
            return match repo_err {
                RepoError::NoRepository { .. } => NO_REPOSITORY,
                RepoError::Locked { .. } => LOCKED,
                RepoError::WrongPassword { .. } | RepoError::PasswordRequired { .. } => {
                    WRONG_PASSWORD
                }
                _ => ERROR,
            };
        }
    }
    ERROR
}
