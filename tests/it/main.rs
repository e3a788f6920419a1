//! The integration tests, in one binary so they link once. One module per area.

mod airtable_client;
mod cancel;
mod cli;
mod damage;
mod export;
mod fake_airtable;
mod hygiene;
mod regressions;
mod repo;
mod restore;
mod snapshot;
mod support;
