//! `airback restore`: the arguments, the plan and report output, and the exit code.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use super::print::{err, out};
use super::snapshot::human_bytes;
use super::{GlobalArgs, exit, open_repo, progress};
use crate::airtable::{Client, ClientOptions, Token};
use crate::backend::{Backend, BackendOptions};
use crate::restore::{RestoreOptions, RestoreReport, Role, Target, restore};
use crate::snapshots;
use crate::stored::StoredBase;

/// Arguments of `airback restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
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
pub async fn run(g: &GlobalArgs, args: &RestoreArgs) -> anyhow::Result<u8> {
    let target = match (&args.to_base, &args.workspace) {
        (Some(base), None) => Target::Base(base.clone()),
        (None, Some(workspace)) => Target::Workspace {
            id: workspace.clone(),
            name: args.name.clone(),
        },
        _ => bail!("pass either --to-base appXXXXXXXXXXXXXX or --workspace wspXXXXXXXXXXXXXX"),
    };
    let token = match &args.token_file {
        Some(path) => Token::from_file(path)?,
        None => Token::from_env()?,
    };
    let client = Client::new(token, ClientOptions::from_env())?;
    let repo = open_repo(g).await?;
    // Shared, like `check` and `export`: a future `prune` must not delete packs being read.
    let lock = super::read_lock(g, &repo, "restore").await?;
    tracing::debug!("restore: repository open and locked");
    let result = run_locked(g, args, &repo, target, client).await;
    super::release(lock).await?;
    result
}

async fn run_locked(
    g: &GlobalArgs,
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
            Backend::open(location, &BackendOptions::default())
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
    let progress = progress::for_restore(g.quiet || g.json || args.dry_run);
    let report = restore(&stored, &client, &options, progress).await?;
    if g.json {
        out!("{}", serde_json::to_string(&report)?)?;
    } else if args.dry_run {
        print_plan(&report)?;
    } else if !g.quiet {
        print_report(&report)?;
    }
    if !report.problems.is_empty() && !g.json {
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

fn print_plan(r: &RestoreReport) -> anyhow::Result<()> {
    out!(
        "plan for restoring snapshot {} (nothing is written with --dry-run):",
        &r.snapshot[..8]
    )?;
    for table in &r.plan.tables {
        out!("  table `{}`", table.name)?;
        for f in &table.fields {
            let what = match (&f.role, &f.note) {
                (Role::Skipped, Some(note)) => format!("not restored: {note}"),
                (Role::Link, _) => "link, created here; links written in pass 2".into(),
                (Role::Inverse, _) => "link, the inverse Airtable creates (renamed)".into(),
                (_, Some(note)) => format!("{} → {note}", f.source_type),
                _ => f.source_type.clone(),
            };
            out!("    {:<32} {what}", f.name)?;
        }
        out!(
            "    {:<32} singleLineText, the original record id (added)",
            table.source_id_field
        )?;
    }
    for note in &r.plan.notes {
        out!("note: {note}")?;
    }
    out!("cannot be restored:")?;
    for loss in &r.plan.losses {
        match &loss.table {
            Some(t) => out!("  {t}: {}", loss.what)?,
            None => out!("  {}", loss.what)?,
        }
    }
    let w = &r.workload;
    out!(
        "work: {} records, {} with links, {} uploads and {} files over 5 MB ({}), {} schema requests; at least {:.0} s at 5 requests/s",
        w.records,
        w.link_records,
        w.uploads,
        w.large,
        human_bytes(w.attachment_bytes),
        w.schema_requests,
        r.floor_seconds
    )?;
    Ok(())
}

fn print_report(r: &RestoreReport) -> anyhow::Result<()> {
    out!(
        "restored snapshot {} into base {}{}: {} records written ({} resumed), {} files uploaded, {} through staging, links of {} records",
        &r.snapshot[..8],
        r.base_id.as_deref().unwrap_or("?"),
        if r.created_base { " (created)" } else { "" },
        r.records_written,
        r.records_resumed,
        r.attachments_uploaded,
        r.attachments_staged,
        r.link_records_written
    )?;
    out!(
        "{} API requests ({} retried, {} rate-limited) in {:.1} s ({:.2}/s while writing; the floor for this work is {:.0} s)",
        r.requests,
        r.retries,
        r.rate_limited,
        r.seconds,
        r.apply_requests as f64 / r.apply_seconds.max(0.001),
        r.floor_seconds
    )?;
    for note in &r.plan.notes {
        out!("note: {note}")?;
    }
    if let Some(f) = &r.fidelity {
        out!(
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
        )?;
        for t in &f.tables {
            out!(
                "  {:<32} {:>7} records  cells {:>6.1} %  files {}/{}{}",
                t.name,
                t.records_found,
                t.cells.percent(),
                t.attachments.equal,
                t.attachments.cells,
                if t.missing + t.duplicates > 0 {
                    format!("  ({} missing, {} duplicated)", t.missing, t.duplicates)
                } else {
                    String::new()
                }
            )?;
            for e in &t.examples {
                out!("      {e}")?;
            }
        }
        out!("  by field type:")?;
        for (kind, s) in &f.by_type {
            if s.cells + s.not_restorable > 0 {
                out!(
                    "    {kind:<24} {:>6}/{:<6} equal  {:>5} not restorable",
                    s.equal,
                    s.cells,
                    s.not_restorable
                )?;
            }
        }
    }
    Ok(())
}
