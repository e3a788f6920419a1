//! airback backs up Airtable bases into a content-addressed, deduplicating repository and
//! restores them into a new base.
//!
//! The library does all the work; `main.rs` only calls [`cli::main`]. The API a program needs
//! is re-exported here: open a storage [`Backend`], create or open a [`Repository`] on it, talk
//! to Airtable with a [`Client`], take a snapshot with [`backup_base`], read it back as a
//! [`StoredBase`], and [`restore()`], [`export()`] or [`check()`] it. Each of those has its options,
//! its summary and its typed error next to it; the modules hold the less common types (the
//! Airtable client's request types in [`airtable`], the snapshot data model in [`repo`]).
//! See `docs/ARCHITECTURE.md` for the codemap and the invariants each module keeps, and
//! `docs/FORMAT.md` for the repository format.
//!
//! # Example
//!
//! An encrypted repository in a folder, a snapshot of a base, and the repository's list of
//! snapshots.
//! The base here is the demo base of the fake Airtable (the `airback-fake` crate), which
//! answers like the real API on a local port.
//!
//! ```
//! use std::sync::Arc;
//!
//! use airback::{
//!     Backend, BackendOptions, BackupOptions, CacheChoice, Client, ClientOptions, InitEncryption,
//!     InitOptions, KdfParams, KeyMeta, NoProgress, Password, Repository, Token, backup_base,
//!     list_snapshots,
//! };
//! use airback_fake::{FakeAirtable, FakeOptions, Preset};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let options = FakeOptions { preset: Preset::Demo, ..FakeOptions::default() };
//! # let fake = FakeAirtable::start(options).await?;
//! # let (api_url, token, base_id) = (fake.url(), fake.token(), fake.bases()[0].id.clone());
//! # let dir = tempfile::tempdir()?;
//! # let folder = dir.path().join("repo");
//! // A repository in a local folder (S3, GCS, Azure, SFTP and WebDAV locations work too).
//! let options = BackendOptions { create: true, ..BackendOptions::default() };
//! let backend = Backend::open(folder.to_str().unwrap(), &options)?;
//! // Encrypted with a key wrapped by this password (Argon2id: about half a second).
//! let password = Arc::new(Password::new(b"correct horse battery staple".as_slice().into()));
//! let kdf = KdfParams::DEFAULT;
//! # let kdf = KdfParams::FOR_TESTS; // doctests run unoptimized
//! let meta = KeyMeta {
//!     hostname: "backup-host".into(),
//!     username: "alice".into(),
//!     created: "2026-11-22T15:00:00Z".into(),
//! };
//! let encryption = InitEncryption::Password { password: password.clone(), kdf, meta };
//! Repository::init(&backend, &InitOptions { encryption, ..InitOptions::default() }).await?;
//! let repo = Repository::open(backend, CacheChoice::Memory, Some(&password)).await?;
//!
//! // A client for the Airtable Web API; `api_url` points at the fake here.
//! let client = Client::new(Token::new(token)?, ClientOptions::default().with_url(&api_url))?;
//!
//! // A snapshot of one base, then every snapshot in the repository.
//! let options = BackupOptions::new(&base_id);
//! let summary = backup_base(&repo, &client, &options, Arc::new(NoProgress)).await?;
//! println!("{} records in snapshot {}", summary.records, summary.snapshot_id);
//! let snapshots = list_snapshots(&repo).await?;
//! assert_eq!(snapshots.len(), 1);
//! assert_eq!(snapshots[0].0, summary.snapshot_id);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod airtable;
pub mod backend;
pub mod backup;
pub mod check;
#[doc(hidden)]
pub mod cli;
pub mod config;
pub mod copy;
pub mod crypto;
pub mod diff;
pub mod export;
pub mod forget;
pub mod history;
pub mod id;
#[doc(hidden)]
pub mod internals;
pub mod metrics;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod rewrite;
pub mod serve;
pub mod snapshots;
pub mod stored;

mod chunker;
mod codec;
mod layout;
mod secrets;

pub use airtable::{AirtableError, Client, ClientOptions, Token};
pub use backend::{Backend, BackendError, BackendOptions};
pub use backup::{BackupError, BackupOptions, BackupSummary, backup_base, backup_base_with};
pub use check::{CheckOptions, CheckReport, check};
pub use config::{Config, ConfigError};
pub use copy::{CopyError, CopyOptions, CopySummary, copy};
pub use crypto::{KdfParams, KeyMeta, Password};
pub use diff::{Diff, DiffError, DiffOptions, diff_live, diff_snapshots};
pub use export::{ExportError, ExportFormat, ExportOptions, ExportSummary, Output, export};
pub use forget::{ForgetError, ForgetOptions, ForgetPlan, Policies};
pub use history::{History, HistoryError, HistoryOptions, record_history};
pub use id::{BlobId, SnapshotId};
pub use progress::{NoProgress, Progress};
pub use prune::{PruneError, PruneOptions, PruneSummary, prune};
pub use repair::{repair_index, repair_snapshots};
pub use repo::{
    CacheChoice, Exclusive, InitEncryption, InitOptions, KeyInfo, RepoError, Repository, Snapshot,
};
pub use restore::{
    InPlaceOptions, InPlaceReport, RestoreError, RestoreOptions, RestoreReport, restore,
    restore_in_place,
};
pub use snapshots::list as list_snapshots;
pub use stored::{StoredBase, StoredError};
