//! The integration tests, in one binary so they link once. One module per area.

// The crate denies printing outside src/cli/print.rs; tests say what they skipped and what they saw.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod airtable_client;
mod cancel;
mod cli;
mod comments;
mod completions;
mod copy;
mod damage;
mod diff;
mod economy;
mod encryption;
mod erasure;
mod export;
mod fake_airtable;
mod forget;
mod hygiene;
mod in_place;
mod metrics;
mod ops;
mod password;
mod prune;
mod regressions;
mod repo;
mod restore;
mod secrets;
mod serve;
mod servers;
mod sftp;
mod snapshot;
mod support;
mod web;
