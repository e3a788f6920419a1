//! airback backs up Airtable bases into a content-addressed, deduplicating repository and
//! restores them into a new base.
//!
//! The library does all the work; `main.rs` only parses arguments and maps errors to exit codes.
//! See `docs/ARCHITECTURE.md` for the codemap and the invariants each module keeps.

pub mod airtable;
pub mod fake;
