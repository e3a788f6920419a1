//! Parts of the inside that airback's own integration tests and benchmarks reach for: where a
//! pack lives, what a lock file holds. Not an API: hidden from the documentation, and free to
//! change in any release.

pub use crate::backend::TMP_LEFTOVER_AGE;
pub use crate::repo::lock::{LockInfo, dropped_locks_removed, hostname};
pub use crate::repo::pack::pack_path;
