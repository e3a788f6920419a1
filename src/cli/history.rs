//! `airback history`: the arguments, the repository's shared lock and the text rendering (one
//! block per snapshot where the record changed). The work is `crate::history`.

use clap::Args;

use super::diff::print_field;
use super::print::{Text, count};
use super::settings::Settings;
use super::{exit, open_repo};
use crate::history::{Event, History, HistoryOptions, record_history};

/// Arguments of `airback history`.
#[derive(Debug, Args)]
pub(super) struct HistoryArgs {
    /// The record's id (recXXXXXXXXXXXXXX)
    record: String,
    /// The record's base (default: the one base whose snapshots hold it)
    #[arg(long, value_name = "appXXXXXXXXXXXXXX")]
    base: Option<String>,
    /// Only changes to this field (name or id; repeat for several)
    #[arg(long = "field", value_name = "NAME")]
    fields: Vec<String>,
}

/// Runs `airback history`.
pub(super) async fn run(settings: &Settings, args: &HistoryArgs) -> anyhow::Result<u8> {
    let repo = open_repo(settings).await?;
    let lock = super::read_lock(settings, &repo, "history").await?;
    let options = HistoryOptions {
        base: args.base.clone(),
        fields: args.fields.clone(),
    };
    let history = record_history(&repo, &args.record, &options).await;
    super::release(lock).await?;
    let history = history?;
    settings
        .printer
        .result(&history, |t| print_history(t, &history))?;
    Ok(exit::OK)
}

fn print_history(t: &Text, h: &History) -> anyhow::Result<()> {
    t.note(format_args!(
        "record {} of table {} ({}) in base {}: {} in {}",
        h.record,
        h.table_name,
        h.table,
        h.base,
        count(h.changes.len() as u64, "change"),
        count(h.snapshots as u64, "snapshot")
    ))?;
    for change in &h.changes {
        let what = match change.event {
            Event::Added => "added",
            Event::Changed => "changed",
            Event::Removed => "removed",
        };
        t.line(format_args!(
            "{} {}  {what}",
            change.snapshot.get(..8).unwrap_or(&change.snapshot),
            change.time
        ))?;
        for field in &change.fields {
            print_field(t, field)?;
        }
    }
    Ok(())
}
