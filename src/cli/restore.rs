//! `airback restore`: the arguments, the plan and report output, and the exit code.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use super::print::{Text, err};
use super::settings::Settings;
use super::snapshot::human_bytes;
use super::{exit, open_repo, progress};
use crate::airtable::Client;
use crate::backend::Backend;
use crate::restore::{RestoreOptions, RestoreReport, Role, Target, restore};
use crate::snapshots;
use crate::stored::StoredBase;

/// Arguments of `airback restore`.
#[derive(Debug, Args)]
pub(super) struct RestoreArgs {
    /// A snapshot id, a unique prefix of one, or `latest`
    snapshot: String,
    /// Restore into this existing base (typically a new, empty one)
    #[arg(
        long,
        value_name = "appXXXXXXXXXXXXXX",
        required_unless_present = "workspace",
        conflicts_with = "workspace"
    )]
    to_base: Option<String>,
    /// Create a new base in this workspace instead
    #[arg(long, value_name = "wspXXXXXXXXXXXXXX")]
    workspace: Option<String>,
    /// The new base's name (with --workspace; default: the original name plus "(restored …)")
    #[arg(long, requires = "workspace")]
    name: Option<String>,
    /// Restore only this table (name or id; repeat for several)
    #[arg(long = "table", value_name = "NAME")]
    tables: Vec<String>,
    /// Print the plan and write nothing
    #[arg(long)]
    dry_run: bool,
    /// Where to put attachments over 5 MB so Airtable can fetch them (a location that signs
    /// URLs, e.g. s3://bucket/prefix, with the same settings as repositories)
    #[arg(long, value_name = "LOCATION")]
    staging: Option<String>,
    /// Skip re-reading the target and comparing it with the snapshot
    #[arg(long)]
    no_verify: bool,
    /// With `latest`: the latest snapshot of this base
    #[arg(long, value_name = "appXXXXXXXXXXXXXX")]
    base: Option<String>,
    /// Read the Airtable token from this file (default: $AIRTABLE_TOKEN)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// Runs `airback restore`.
pub(super) async fn run(settings: &Settings, args: &RestoreArgs) -> anyhow::Result<u8> {
    let target = match (&args.to_base, &args.workspace) {
        (Some(base), None) => Target::Base(base.clone()),
        (None, Some(workspace)) => Target::Workspace {
            id: workspace.clone(),
            name: args.name.clone(),
        },
        _ => bail!("pass either --to-base appXXXXXXXXXXXXXX or --workspace wspXXXXXXXXXXXXXX"),
    };
    let token = settings.token(args.token_file.as_deref(), None)?;
    let client = Client::new(token, settings.client.clone())?;
    let repo = open_repo(settings).await?;
    // Shared, like `check` and `export`: a future `prune` must not delete packs being read.
    let lock = super::read_lock(settings, &repo, "restore").await?;
    tracing::debug!("restore: repository open and locked");
    let result = run_locked(settings, args, &repo, target, client).await;
    super::release(lock).await?;
    result
}

async fn run_locked(
    settings: &Settings,
    args: &RestoreArgs,
    repo: &crate::repo::Repository,
    target: Target,
    client: Client,
) -> anyhow::Result<u8> {
    let (id, snapshot) = snapshots::resolve(repo, &args.snapshot, args.base.as_deref()).await?;
    let stored = StoredBase::open(repo, id, snapshot).await?;
    tracing::debug!("restore: snapshot {id} open");
    let staging = match &args.staging {
        Some(location) => Some(
            Backend::open(location, &settings.backend)
                .context("cannot open the staging location")?,
        ),
        None => None,
    };
    let journal = repo
        .cache()
        .path()
        .and_then(|p| p.parent())
        .map(|dir| dir.join("restore.sqlite"));
    if journal.is_none() && !args.dry_run {
        tracing::warn!(
            "no local cache: the restore journal is kept in memory, so an interrupted restore cannot resume quickly"
        );
    }
    let options = RestoreOptions {
        target,
        tables: args.tables.clone(),
        staging,
        dry_run: args.dry_run,
        journal,
        verify: !args.no_verify,
    };
    let printer = settings.printer;
    let progress = progress::for_restore(!printer.shows_progress() || args.dry_run);
    let report = restore(&stored, &client, &options, progress).await?;
    printer.result(&report, |t| {
        if args.dry_run {
            print_plan(t, &report)
        } else {
            print_report(t, &report)
        }
    })?;
    if !report.problems.is_empty() && !printer.is_json() {
        err!(
            "warning: not everything {} restored:",
            if args.dry_run { "would be" } else { "was" }
        );
        for p in &report.problems {
            err!("  {p}");
        }
    }
    Ok(if report.dry_run || report.is_complete() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

/// The plan of a `--dry-run`: the result itself, printed even with `--quiet`.
fn print_plan(t: &Text, r: &RestoreReport) -> anyhow::Result<()> {
    t.line(format_args!(
        "plan for restoring snapshot {} (nothing is written with --dry-run):",
        &r.snapshot[..8]
    ))?;
    for table in &r.plan.tables {
        t.line(format_args!("  table `{}`", table.name))?;
        for f in &table.fields {
            let what = match (&f.role, &f.note) {
                (Role::Skipped, Some(note)) => format!("not restored: {note}"),
                (Role::Link, _) => "link, created here; links written in pass 2".into(),
                (Role::Inverse, _) => "link, the inverse Airtable creates (renamed)".into(),
                (_, Some(note)) => format!("{} → {note}", f.source_type),
                _ => f.source_type.clone(),
            };
            t.line(format_args!("    {:<32} {what}", f.name))?;
        }
        t.line(format_args!(
            "    {:<32} singleLineText, the original record id (added)",
            table.source_id_field
        ))?;
    }
    for note in &r.plan.notes {
        t.line(format_args!("note: {note}"))?;
    }
    t.line(format_args!("cannot be restored:"))?;
    for loss in &r.plan.losses {
        match &loss.table {
            Some(table) => t.line(format_args!("  {table}: {}", loss.what))?,
            None => t.line(format_args!("  {}", loss.what))?,
        }
    }
    let w = &r.workload;
    t.line(format_args!(
        "work: {} records, {} with links, {} uploads and {} files over 5 MB ({}), {} schema requests; at least {:.0} s at 5 requests/s",
        w.records,
        w.link_records,
        w.uploads,
        w.large,
        human_bytes(w.attachment_bytes),
        w.schema_requests,
        r.floor_seconds
    ))?;
    Ok(())
}

/// What a restore did: left out with `--quiet`.
fn print_report(t: &Text, r: &RestoreReport) -> anyhow::Result<()> {
    t.note(format_args!(
        "restored snapshot {} into base {}{}: {} records written ({} resumed), {} files uploaded, {} through staging, links of {} records",
        &r.snapshot[..8],
        r.base_id.as_deref().unwrap_or("?"),
        if r.created_base { " (created)" } else { "" },
        r.records_written,
        r.records_resumed,
        r.attachments_uploaded,
        r.attachments_staged,
        r.link_records_written
    ))?;
    t.note(format_args!(
        "{} API requests ({} retried, {} rate-limited) in {:.1} s ({:.2}/s while writing; the floor for this work is {:.0} s)",
        r.requests,
        r.retries,
        r.rate_limited,
        r.seconds,
        r.apply_requests as f64 / r.apply_seconds.max(0.001),
        r.floor_seconds
    ))?;
    for note in &r.plan.notes {
        t.note(format_args!("note: {note}"))?;
    }
    if let Some(f) = &r.fidelity {
        t.note(format_args!(
            "verified: {} of {} records, {} duplicates; cells {}/{} equal ({:.1} %), files {}/{} equal, {} values not restorable",
            f.records_found,
            f.records_expected,
            f.duplicates,
            f.cells.equal,
            f.cells.cells,
            f.cells.percent(),
            f.attachments.equal,
            f.attachments.cells,
            f.cells.not_restorable + f.attachments.not_restorable
        ))?;
        for table in &f.tables {
            t.note(format_args!(
                "  {:<32} {:>7} records  cells {:>6.1} %  files {}/{}{}",
                table.name,
                table.records_found,
                table.cells.percent(),
                table.attachments.equal,
                table.attachments.cells,
                if table.missing + table.duplicates > 0 {
                    format!(
                        "  ({} missing, {} duplicated)",
                        table.missing, table.duplicates
                    )
                } else {
                    String::new()
                }
            ))?;
            for e in &table.examples {
                t.note(format_args!("      {e}"))?;
            }
        }
        t.note(format_args!("  by field type:"))?;
        for (kind, s) in &f.by_type {
            if s.cells + s.not_restorable > 0 {
                t.note(format_args!(
                    "    {kind:<24} {:>6}/{:<6} equal  {:>5} not restorable",
                    s.equal, s.cells, s.not_restorable
                ))?;
            }
        }
    }
    Ok(())
}
