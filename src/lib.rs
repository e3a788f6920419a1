//! airback backs up Airtable bases into a content-addressed, deduplicating repository and
//! restores them into a new base.
//!
//! The library does all the work; `main.rs` only parses arguments and maps errors to exit codes.
//! See `docs/ARCHITECTURE.md` for the codemap and the invariants each module keeps, and
//! `docs/FORMAT.md` for the repository format.

pub mod airtable;
pub mod backend;
pub mod backup;
pub mod check;
pub mod chunker;
pub mod cli;
pub mod codec;
pub mod config;
pub mod export;
pub mod fake;
pub mod id;
pub mod layout;
pub mod progress;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod secrets;
pub mod snapshots;
pub mod stored;
