//! `airback diff`: resolving the two sides (snapshots, or a snapshot and the live base), the
//! repository's shared lock, and the text rendering (a `--stat`-like summary, the schema, then
//! each record's changed cells, long values shortened). The work is `crate::diff`; `--json`
//! prints its [`Diff`] whole.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

use super::print::{Text, count};
use super::settings::Settings;
use super::{exit, open_repo, usage_error};
use crate::airtable::Client;
use crate::diff::{Diff, DiffOptions, FieldChange, diff_live, diff_snapshots};
use crate::id::SnapshotId;
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;
use crate::snapshots;
use crate::stored::StoredBase;

/// The longest value the text output shows in full, in characters.
const SHOWN_CHARS: usize = 72;

/// Arguments of `airback diff`.
#[derive(Debug, Args)]
pub(super) struct DiffArgs {
    /// The older side: a snapshot id, a unique prefix of one, or `latest`
    from: String,
    /// The newer side: a snapshot id, a unique prefix of one, or `latest` (not with --live)
    to: Option<String>,
    /// Compare with the base as it is now, read through the Airtable API
    #[arg(long)]
    live: bool,
    /// Compare only this table (name or id; repeat for several)
    #[arg(long = "table", value_name = "NAME")]
    tables: Vec<String>,
    /// With `latest`: the latest snapshot of this base
    #[arg(long, value_name = "appXXXXXXXXXXXXXX")]
    base: Option<String>,
    /// With --live: read the Airtable token from this file (default: $AIRTABLE_TOKEN)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// Runs `airback diff`.
pub(super) async fn run(settings: &Settings, args: &DiffArgs) -> anyhow::Result<u8> {
    match (&args.to, args.live) {
        (Some(_), true) => usage_error(
            "`airback diff A B` compares two snapshots and `airback diff A --live` a snapshot \
             with the live base; give B or --live, not both",
        ),
        (None, false) => usage_error(
            "give a second snapshot (`airback diff A B`) or --live (`airback diff A --live`) to \
             compare snapshot A with",
        ),
        _ => {}
    }
    if args.token_file.is_some() && !args.live {
        usage_error("--token-file is for --live (a diff between snapshots reads no API)");
    }
    let client = if args.live {
        let token = settings.token(args.token_file.as_deref(), None)?;
        Some(Client::new(token, settings.client.clone())?)
    } else {
        None
    };
    let repo = open_repo(settings).await?;
    let lock = super::read_lock(settings, &repo, "diff").await?;
    let result = run_locked(settings, args, &repo, client).await;
    super::release(lock).await?;
    result
}

async fn run_locked(
    settings: &Settings,
    args: &DiffArgs,
    repo: &Repository,
    client: Option<Client>,
) -> anyhow::Result<u8> {
    // Records `restore --in-place` created again in this base: links to them compare equal
    // to links to the records they replace.
    let options = |base: &str| -> anyhow::Result<DiffOptions> {
        let recreated = match super::restore::journal_path(repo) {
            Some(journal) => crate::restore::Journal::recreated_in(&journal, base)
                .context("cannot read the restore journal")?,
            None => Default::default(),
        };
        Ok(DiffOptions {
            tables: args.tables.clone(),
            recreated,
        })
    };
    let diff = match (&args.to, client) {
        (Some(to), _) => {
            let ((from_id, from), (to_id, to)) =
                resolve_pair(repo, &args.from, to, args.base.as_deref()).await?;
            let from = StoredBase::open(repo, from_id, from).await?;
            let to = StoredBase::open(repo, to_id, to).await?;
            diff_snapshots(&from, &to, &options(from.base_id())?).await?
        }
        (None, Some(client)) => {
            let (id, snapshot) = resolve_one(repo, &args.from, args.base.as_deref()).await?;
            let from = StoredBase::open(repo, id, snapshot).await?;
            diff_live(&from, &client, &options(from.base_id())?).await?
        }
        (None, None) => bail!("internal: --live without a client"),
    };
    settings.printer.result(&diff, |t| print_diff(t, &diff))?;
    Ok(exit::OK)
}

/// Resolves one snapshot name. `latest` without `--base` needs the repository to hold
/// snapshots of one base only: the latest of any base is rarely the one meant.
pub(super) async fn resolve_one(
    repo: &Repository,
    spec: &str,
    base: Option<&str>,
) -> anyhow::Result<(SnapshotId, Snapshot)> {
    if spec == "latest" && base.is_none() {
        let base = only_base(repo).await?;
        return Ok(snapshots::resolve(repo, spec, base.as_deref()).await?);
    }
    Ok(snapshots::resolve(repo, spec, base).await?)
}

/// The one base the repository's snapshots are of (`None` when it holds none), or an error
/// that lists them and says to give `--base`.
async fn only_base(repo: &Repository) -> anyhow::Result<Option<String>> {
    let mut bases: Vec<String> = Vec::new();
    for (_, snapshot) in snapshots::list(repo).await? {
        if let Some(base) = snapshots::base_id(&snapshot)
            && !bases.iter().any(|b| b == base)
        {
            bases.push(base.to_owned());
        }
    }
    if bases.len() > 1 {
        bail!(
            "`latest` is ambiguous: the repository holds snapshots of {} bases ({}); give --base \
             appXXXXXXXXXXXXXX",
            bases.len(),
            bases.join(", ")
        );
    }
    Ok(bases.pop())
}

/// Resolves `A B`: `latest` on one side is the latest snapshot of the other side's base.
async fn resolve_pair(
    repo: &Repository,
    from: &str,
    to: &str,
    base: Option<&str>,
) -> anyhow::Result<((SnapshotId, Snapshot), (SnapshotId, Snapshot))> {
    let base_of =
        |resolved: &(SnapshotId, Snapshot)| snapshots::base_id(&resolved.1).map(str::to_owned);
    Ok(match (from == "latest", to == "latest") {
        (true, false) => {
            let to = resolve_one(repo, to, base).await?;
            let base = base.map(str::to_owned).or_else(|| base_of(&to));
            (snapshots::resolve(repo, from, base.as_deref()).await?, to)
        }
        (false, true) => {
            let from = resolve_one(repo, from, base).await?;
            let base = base.map(str::to_owned).or_else(|| base_of(&from));
            let to = snapshots::resolve(repo, to, base.as_deref()).await?;
            (from, to)
        }
        _ => (
            resolve_one(repo, from, base).await?,
            resolve_one(repo, to, base).await?,
        ),
    })
}

/// The text rendering: the summary per table, the schema changes, then each record.
fn print_diff(t: &Text, diff: &Diff) -> anyhow::Result<()> {
    let short = |id: &str| id.get(..8).unwrap_or(id).to_owned();
    let to = if diff.to == "live" {
        "the live base".to_owned()
    } else {
        format!("snapshot {}", short(&diff.to))
    };
    t.note(format_args!(
        "base {}: snapshot {} → {to}",
        diff.base,
        short(&diff.from)
    ))?;
    if diff.is_empty() {
        t.line(format_args!("no changes"))?;
        return Ok(());
    }
    // The summary, like `git diff --stat`.
    let width = diff
        .tables
        .iter()
        .map(|table| table.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(40);
    for table in &diff.tables {
        t.line(format_args!(
            " {:<width$}  +{} −{} ~{}",
            table.name,
            table.added.len(),
            table.removed.len(),
            table.changed.len()
        ))?;
    }
    let s = &diff.summary;
    t.line(format_args!(
        " {} changed: {} added, {} removed, {} changed",
        count(diff.tables.len() as u64, "table"),
        count(s.added, "record"),
        s.removed,
        s.changed
    ))?;
    print_schema(t, diff)?;
    for table in &diff.tables {
        t.line(format_args!(""))?;
        t.line(format_args!("{} ({})", table.name, table.id))?;
        for id in &table.added {
            t.line(format_args!("  + {id}"))?;
        }
        for id in &table.removed {
            t.line(format_args!("  - {id}"))?;
        }
        for record in &table.changed {
            t.line(format_args!("  ~ {}", record.id))?;
            for field in &record.fields {
                print_field(t, field)?;
            }
        }
    }
    Ok(())
}

fn print_schema(t: &Text, diff: &Diff) -> anyhow::Result<()> {
    let s = &diff.schema;
    if s.is_empty() {
        return Ok(());
    }
    t.line(format_args!(""))?;
    t.line(format_args!("schema:"))?;
    for table in &s.tables_added {
        t.line(format_args!("  + table {} ({})", table.name, table.id))?;
    }
    for table in &s.tables_removed {
        t.line(format_args!("  - table {} ({})", table.name, table.id))?;
    }
    for (table, before) in &s.tables_renamed {
        t.line(format_args!(
            "  ~ table {before} renamed {} ({})",
            table.name, table.id
        ))?;
    }
    for f in &s.fields_added {
        t.line(format_args!(
            "  + field {} ({}, {}) in {}",
            f.name, f.id, f.field_type, f.table
        ))?;
    }
    for f in &s.fields_removed {
        t.line(format_args!(
            "  - field {} ({}, {}) in {}",
            f.name, f.id, f.field_type, f.table
        ))?;
    }
    for f in &s.fields_renamed {
        t.line(format_args!(
            "  ~ field {} renamed {} ({}) in {}",
            f.before, f.name, f.id, f.table
        ))?;
    }
    for f in &s.fields_changed {
        let (before, after) = (&f.before["type"], &f.after["type"]);
        let what = if before == after {
            format!(
                "options {} → {}",
                shown(&f.before["options"]),
                shown(&f.after["options"])
            )
        } else {
            format!("type {} → {}", shown(before), shown(after))
        };
        t.line(format_args!(
            "  ~ field {} ({}) in {}: {what}",
            f.name, f.id, f.table
        ))?;
    }
    Ok(())
}

/// One changed cell: `name: before → after`, computed fields marked.
pub(super) fn print_field(t: &Text, field: &FieldChange) -> anyhow::Result<()> {
    t.line(format_args!(
        "      {}{}: {} → {}",
        field.name,
        if field.computed { " (computed)" } else { "" },
        shown(&field.before),
        shown(&field.after)
    ))
}

/// A cell as one short line: text quoted, attachments by filename, links and selects by id or
/// name, anything longer than [`SHOWN_CHARS`] cut with `…`.
pub(super) fn shown(value: &Value) -> String {
    let text = match value {
        Value::Null => return "(empty)".to_owned(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(item).collect::<Vec<_>>().join(", ")
        ),
        other => item(other),
    };
    shortened(&text)
}

fn item(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Object(map) => ["filename", "name", "email", "id"]
            .iter()
            .find_map(|key| map.get(*key).and_then(Value::as_str))
            .map(|s| s.to_owned())
            .unwrap_or_else(|| value.to_string()),
        other => other.to_string(),
    }
}

fn shortened(text: &str) -> String {
    if text.chars().count() <= SHOWN_CHARS {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(SHOWN_CHARS - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_shown_short_and_readable() {
        assert_eq!(shown(&Value::Null), "(empty)");
        assert_eq!(shown(&json!("a\nb")), r#""a\nb""#);
        assert_eq!(shown(&json!(3.5)), "3.5");
        assert_eq!(
            shown(&json!([{"id": "att1", "filename": "x.png", "size": 3}])),
            "[x.png]"
        );
        assert_eq!(shown(&json!(["recA", "recB"])), r#"["recA", "recB"]"#);
        let long = shown(&json!("x".repeat(500)));
        assert_eq!(long.chars().count(), SHOWN_CHARS);
        assert!(long.ends_with('…'));
    }
}
