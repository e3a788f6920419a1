//! `airback restore`: the arguments, the plan and report output, and the exit code.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use super::print::{Text, count, err};
use super::settings::Settings;
use super::snapshot::human_bytes;
use super::{exit, open_repo, progress};
use crate::airtable::Client;
use crate::backend::Backend;
use crate::restore::{
    InPlaceOptions, InPlaceReport, RestoreOptions, RestoreReport, Role, Target, restore,
    restore_in_place,
};
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
        required_unless_present_any = ["workspace", "in_place"],
        conflicts_with_all = ["workspace", "in_place"]
    )]
    to_base: Option<String>,
    /// Create a new base in this workspace instead
    #[arg(long, value_name = "wspXXXXXXXXXXXXXX", conflicts_with = "in_place")]
    workspace: Option<String>,
    /// Bring the snapshot's own base, the live one, back to the snapshot's state: records
    /// deleted since are created again (new ids, links pointed at them), changed cells are
    /// written back; a safety snapshot of the live base is taken first
    #[arg(long)]
    in_place: bool,
    /// With --in-place: only this record (its id in the snapshot; repeat for several), with the
    /// links to and from it
    #[arg(
        long = "record",
        value_name = "recXXXXXXXXXXXXXX",
        requires = "in_place"
    )]
    records: Vec<String>,
    /// With --in-place: only this field's cells (name or id; repeat for several)
    #[arg(long = "field", value_name = "NAME", requires = "in_place")]
    fields: Vec<String>,
    /// With --in-place: delete the records created since the snapshot
    #[arg(long, requires = "in_place")]
    delete_new: bool,
    /// With --in-place: do not take the safety snapshot of the live base first
    #[arg(long, requires = "in_place")]
    no_safety_snapshot: bool,
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
    #[arg(long, value_name = "LOCATION", conflicts_with = "in_place")]
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

impl RestoreArgs {
    /// Whether the command writes to the repository: `--in-place` saves its safety snapshot.
    pub(super) fn writes(&self) -> bool {
        self.in_place && !self.no_safety_snapshot && !self.dry_run
    }
}

/// Runs `airback restore`.
pub(super) async fn run(settings: &Settings, args: &RestoreArgs) -> anyhow::Result<u8> {
    if args.in_place {
        return in_place(settings, args).await;
    }
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
    let journal = journal_path(repo);
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
    printer.result(&super::with_requests(&report, repo.backend()), |t| {
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

/// The restore journal, beside the cache (`None` without a cache).
pub(super) fn journal_path(repo: &crate::repo::Repository) -> Option<PathBuf> {
    repo.cache()
        .path()
        .and_then(|p| p.parent())
        .map(|dir| dir.join("restore.sqlite"))
}

/// `airback restore SNAPSHOT --in-place`.
async fn in_place(settings: &Settings, args: &RestoreArgs) -> anyhow::Result<u8> {
    let token = settings.token(args.token_file.as_deref(), settings.config.as_ref())?;
    let client = Client::new(token, settings.client.clone())?;
    let repo = open_repo(settings).await?;
    let lock = super::read_lock(settings, &repo, "restore --in-place").await?;
    let result = in_place_locked(settings, args, &repo, client).await;
    super::release(lock).await?;
    result
}

async fn in_place_locked(
    settings: &Settings,
    args: &RestoreArgs,
    repo: &crate::repo::Repository,
    client: Client,
) -> anyhow::Result<u8> {
    let (id, snapshot) = snapshots::resolve(repo, &args.snapshot, args.base.as_deref()).await?;
    let stored = StoredBase::open(repo, id, snapshot).await?;
    let journal = journal_path(repo);
    if journal.is_none() && !args.dry_run {
        tracing::warn!(
            "no local cache: the restore journal is kept in memory, so an interrupted restore cannot resume quickly"
        );
    }
    let safety_snapshot = (!args.no_safety_snapshot).then(|| {
        settings
            .config
            .as_ref()
            .and_then(|c| super::snapshot::configured(c, stored.base_id()))
            .unwrap_or_else(|| crate::backup::BackupOptions::new(stored.base_id()))
    });
    let options = InPlaceOptions {
        tables: args.tables.clone(),
        records: args.records.clone(),
        fields: args.fields.clone(),
        delete_new: args.delete_new,
        dry_run: args.dry_run,
        journal,
        verify: !args.no_verify,
        safety_snapshot,
    };
    let printer = settings.printer;
    let progress = progress::for_restore(!printer.shows_progress() || args.dry_run);
    let report = restore_in_place(&stored, &client, &options, progress).await?;
    printer.result(&super::with_requests(&report, repo.backend()), |t| {
        print_in_place(t, &report)
    })?;
    if !report.problems.is_empty() && !printer.is_json() {
        err!(
            "warning: not everything {} brought back:",
            if args.dry_run { "would be" } else { "was" }
        );
        for p in &report.problems {
            err!("  {p}");
        }
    }
    Ok(if report.is_complete() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

/// What an in-place restore did, or would do with `--dry-run` (then printed even with
/// `--quiet`: it is the result).
fn print_in_place(t: &Text, r: &InPlaceReport) -> anyhow::Result<()> {
    let line = |t: &Text, args: std::fmt::Arguments<'_>| {
        if r.dry_run {
            t.line(args)
        } else {
            t.note(args)
        }
    };
    if r.dry_run {
        t.line(format_args!(
            "restoring snapshot {} into its base {} would change (nothing is written with --dry-run):",
            &r.snapshot[..8],
            r.base
        ))?;
    } else if let Some(safety) = &r.safety_snapshot {
        t.note(format_args!(
            "safety snapshot {} of the live base taken first (undo this with `airback restore {} --in-place`)",
            &safety[..8],
            &safety[..8]
        ))?;
    }
    for table in &r.changes.schema.tables_added {
        line(t, format_args!("  table `{}` created again", table.name))?;
    }
    for f in &r.changes.schema.fields_added {
        line(
            t,
            format_args!("  field `{}` created again in {}", f.name, f.table),
        )?;
    }
    for table in &r.changes.tables {
        line(
            t,
            format_args!(
                "  {:<32} {} created again, {} deleted, {} changed",
                table.name,
                table.added.len(),
                table.removed.len(),
                table.changed.len()
            ),
        )?;
        for id in &table.added {
            match r.recreated.get(id) {
                Some(new) => line(t, format_args!("    + {id} → {new}"))?,
                None => line(t, format_args!("    + {id}"))?,
            }
        }
        for id in &table.removed {
            line(t, format_args!("    - {id}"))?;
        }
        for record in &table.changed {
            let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
            line(t, format_args!("    ~ {}: {}", record.id, names.join(", ")))?;
        }
    }
    if r.dry_run {
        t.line(format_args!(
            "{} write requests (at least {:.1} s at 5 requests/s)",
            r.write_requests,
            r.write_requests as f64 / 5.0
        ))?;
        return Ok(());
    }
    t.note(format_args!(
        "base {}: {} records created again, {} updated, {} deleted, {} files uploaded, {} tables and {} fields created; {} write requests, {} requests in all, {:.1} s",
        r.base,
        r.records_created,
        r.records_updated,
        r.records_deleted,
        r.attachments_uploaded,
        r.tables_created,
        r.fields_created,
        r.write_requests,
        r.requests,
        r.seconds
    ))?;
    if r.comments_created > 0 {
        comments_note(t, r.comments_created, r.comments_author.as_deref())?;
    }
    if let Some(v) = &r.verified {
        t.note(format_args!(
            "verified: {} records read again, {} cells still differ, {} records wrong",
            v.records, v.cells_differing, v.records_wrong
        ))?;
        for e in &v.examples {
            t.note(format_args!("  {e}"))?;
        }
    }
    Ok(())
}

/// The comments line of a report: who they were created as, and what the API cannot do.
fn comments_note(t: &Text, written: u64, author: Option<&str>) -> anyhow::Result<()> {
    t.note(format_args!(
        "{} restored as {}; authorship and times cannot be set through the API (each comment \
         starts with its original author and time)",
        count(written, "comment"),
        author.unwrap_or("the token's user")
    ))
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
        "work: {} records, {} with links, {} uploads and {} files over 5 MB ({}), {} schema requests, {}; at least {:.0} s at 5 requests/s",
        w.records,
        w.link_records,
        w.uploads,
        w.large,
        human_bytes(w.attachment_bytes),
        w.schema_requests,
        count(w.comments, "comment"),
        r.floor_seconds
    ))?;
    Ok(())
}

/// What a restore did: left out with `--quiet`.
fn print_report(t: &Text, r: &RestoreReport) -> anyhow::Result<()> {
    t.note(format_args!(
        "restored snapshot {} into base {}{}: {} records written ({} resumed), {} files by URL from the original base, {} uploaded, {} through staging, {} written again after Airtable dropped them; links of {} records written after their records",
        &r.snapshot[..8],
        r.base_id.as_deref().unwrap_or("?"),
        if r.created_base { " (created)" } else { "" },
        r.records_written,
        r.records_resumed,
        r.attachments_by_url,
        r.attachments_uploaded,
        r.attachments_staged,
        r.attachments_repaired,
        r.link_records_written
    ))?;
    if r.workload.comments > 0 {
        comments_note(t, r.comments_written, r.comments_author.as_deref())?;
    }
    t.note(format_args!(
        "{} API requests on the target ({} retried, {} rate-limited), {} on the original base, in {:.1} s ({:.2}/s while writing; the floor for this work is {:.0} s)",
        r.requests,
        r.retries,
        r.rate_limited,
        r.original_requests,
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
