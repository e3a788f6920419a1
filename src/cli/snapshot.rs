//! `airback snapshot`, `airback snapshots` and `airback show`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use serde_json::json;

use super::metrics_file::{self, RunReport};
use super::print::{Printer, Text, count, err};
use super::settings::Settings;
use super::{exit, open_repo_for_writer, progress};
use crate::airtable::Client;
use crate::backup::{BackupError, BackupOptions, BackupSummary, CommentsSkipped, backup_base_with};
use crate::id::SnapshotId;
use crate::layout::{self, LayoutJson, SnapshotSummary, Source, TableMeta};
use crate::repo::snapshot::{NodeKind, Snapshot};
use crate::snapshots;

/// Arguments of `airback snapshot`.
#[derive(Debug, Args)]
pub(super) struct SnapshotArgs {
    /// Base to back up (repeat for several)
    #[arg(long = "base", value_name = "appXXXXXXXXXXXXXX")]
    bases: Vec<String>,
    /// Back up every base the token can see
    #[arg(long)]
    all_bases: bool,
    /// Read the Airtable token from this file (default: $AIRTABLE_TOKEN)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Keep attachment metadata but not their content
    #[arg(long)]
    no_attachments: bool,
    /// Leave record comments out (they cost one request per record that has comments)
    #[arg(long)]
    no_comments: bool,
    /// Attachment downloads at once (shared among the bases backed up at once)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    attachment_concurrency: Option<u16>,
    /// Tag the snapshots (repeat for several)
    #[arg(long, value_name = "TAG")]
    tag: Vec<String>,
    /// Bases backed up at once (default 10: ten bases at Airtable's 5 requests/s each fill the
    /// token's 50 requests/s)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=50))]
    base_concurrency: Option<u16>,
    /// After the run, write Prometheus metrics of its bases to this file, atomically (for the
    /// node exporter's textfile collector; see README, "Monitoring")
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
}

/// Bases backed up at once by default: 10 × 5 requests/s per base = the 50 requests/s Airtable
/// allows a token.
pub(super) const BASE_CONCURRENCY: usize = 10;

/// Arguments of `airback snapshots`.
#[derive(Debug, Args)]
pub(super) struct SnapshotsArgs {
    /// Only snapshots of this base
    #[arg(long, value_name = "appXXXXXXXXXXXXXX")]
    base: Option<String>,
}

/// Arguments of `airback show`.
#[derive(Debug, Args)]
pub(super) struct ShowArgs {
    /// A snapshot id, a unique prefix of one, or `latest`
    snapshot: String,
    /// With `latest`: the latest of this base
    #[arg(long, value_name = "appXXXXXXXXXXXXXX")]
    base: Option<String>,
}

/// The backup options the config file gives `base`, or `None` when it does not list it.
pub(super) fn configured(config: &crate::config::Config, base: &str) -> Option<BackupOptions> {
    BackupOptions::from_config(config, base)
}

/// Runs `airback snapshot`, then writes the metrics file if one is asked for (even when the
/// run failed: its bases are then reported as failed).
pub(super) async fn snapshot(settings: &Settings, args: &SnapshotArgs) -> anyhow::Result<u8> {
    let metrics_file = args.metrics_file.clone().or_else(|| {
        settings
            .config
            .as_ref()
            .and_then(|c| c.metrics_file.clone())
    });
    let mut report = RunReport::default();
    let result = run(settings, args, &mut report).await;
    let Some(path) = metrics_file else {
        return result;
    };
    match (metrics_file::write(&path, report).await, result) {
        (Ok(()), result) => result,
        (Err(e), Ok(_)) => {
            err!("error: {e:#}");
            Ok(exit::ERROR)
        }
        // The run's own error says more; the metrics file's follows it.
        (Err(e), Err(run)) => {
            err!("error: {e:#}");
            Err(run)
        }
    }
}

async fn run(
    settings: &Settings,
    args: &SnapshotArgs,
    report: &mut RunReport,
) -> anyhow::Result<u8> {
    let config = settings.config.as_ref();
    for base in args
        .bases
        .iter()
        .chain(config.iter().flat_map(|c| c.bases.iter().map(|b| &b.id)))
    {
        report.plan(base);
    }
    let location = settings.location()?;
    let all_bases = args.all_bases || config.is_some_and(|c| c.all_bases);
    if args.bases.is_empty() && config.is_none_or(|c| c.bases.is_empty()) && !all_bases {
        if config.is_some() {
            bail!(
                "nothing to back up: list bases under `bases:` in the config file or set \
                 `all_bases: true` there, or pass --base appXXXXXXXXXXXXXX or --all-bases"
            );
        }
        bail!("nothing to back up: pass --base appXXXXXXXXXXXXXX, --all-bases, or --config FILE");
    }
    let token = settings.token(args.token_file.as_deref(), config)?;
    let client = Client::new(token, settings.client.clone())?;
    report.client = Some(client.clone());

    // The repository first: a wrong password (or no repository) ends the run before any
    // Airtable request, `--all-bases`'s listing included.
    // The writer lock is written before the index is read for deduplication
    // (docs/FORMAT.md, "Deletion"): a prune running now or later then keeps what this run
    // may rely on. Opening takes it, so the index is listed once.
    let (repo, writer_lock) = open_repo_for_writer(settings, &location, "snapshot").await?;
    report.repo = Some(repo.clone());

    // Which bases, with which options.
    let mut jobs: Vec<BackupOptions> = Vec::new();
    let defaults = |base: &str| {
        let mut o = BackupOptions::new(base);
        o.tags = args.tag.clone();
        o.comments = config.and_then(|c| c.comments).unwrap_or(true);
        o
    };
    for base in &args.bases {
        if !jobs.iter().any(|j| j.base_id == *base) {
            jobs.push(defaults(base));
        }
    }
    if let Some(config) = config {
        for base in &config.bases {
            let mut o = configured(config, &base.id).expect("a configured base");
            o.tags = args.tag.clone();
            jobs.push(o);
        }
    }
    // One listing of the bases gives every base its name (and `--all-bases` its bases),
    // instead of one listing per base.
    let listed = if all_bases {
        Some(
            client
                .list_bases()
                .await
                .context("cannot list the token's bases")?,
        )
    } else if jobs.len() > 1 {
        client.list_bases().await.ok()
    } else {
        None
    };
    if let Some(listed) = &listed {
        if all_bases {
            for base in listed {
                if !jobs.iter().any(|j| j.base_id == base.id) {
                    jobs.push(defaults(&base.id));
                }
            }
        }
        for job in &mut jobs {
            job.base_name = listed
                .iter()
                .find(|b| b.id == job.base_id)
                .map(|b| b.name.clone());
        }
    }
    if jobs.is_empty() {
        bail!("nothing to back up: pass --base appXXXXXXXXXXXXXX, --all-bases, or --config FILE");
    }
    for job in &jobs {
        report.plan(&job.base_id);
    }
    for job in &mut jobs {
        if args.no_attachments {
            job.attachments = false;
        }
        if args.no_comments {
            job.comments = false;
        }
        if let Some(n) = args.attachment_concurrency {
            job.attachment_concurrency = usize::from(n);
        }
    }

    // Each base on its own: one that fails is reported and the next one still runs; the exit
    // code is the worst outcome (error over partial over ok).
    let printer = settings.printer;
    let backend = repo.backend();
    match backend
        .remove_tmp_leftovers(crate::backend::TMP_LEFTOVER_AGE)
        .await
    {
        Ok(removed) => {
            for leftover in removed {
                tracing::info!("removed {leftover}, left by an interrupted write");
            }
        }
        Err(e) => tracing::warn!("cannot remove leftovers of interrupted writes: {e}"),
    }
    // Once, before the first base (`backup_base` leaves it to its caller), and only when due:
    // while it takes one request, the first run from this cache, after an interrupted run, or
    // a week after the last one.
    repo.adopt_unindexed_packs_if_due(crate::repo::PACKS_LISTED_EVERY_RUN)
        .await
        .context("cannot list the repository's packs to adopt those an interrupted run left")?;
    // Several bases at once, each still paced at 5 requests/s by the client's per-base gate
    // and all of them under the token's 50 requests/s by its per-token gate. Each base's line
    // prints when it finishes.
    let concurrency = args
        .base_concurrency
        .map(usize::from)
        .or(config.and_then(|c| c.base_concurrency))
        .unwrap_or(BASE_CONCURRENCY)
        .clamp(1, jobs.len().max(1));
    let together = concurrency > 1;
    // Attachment downloads at once are shared among the bases running at once, so the
    // buffers of the downloads in flight do not grow with the number of bases.
    for job in &mut jobs {
        job.attachment_concurrency = (job.attachment_concurrency / concurrency).max(1);
    }
    // One writer for all of them: memory stays that of one base whatever the concurrency.
    let writer = repo.writer();
    let mut runs = futures::stream::iter(jobs.iter().map(|job| {
        let repo = &repo;
        let client = &client;
        let writer = &writer;
        async move {
            // Bars of several bases at once would overwrite each other: lines instead.
            let progress = if together {
                progress::for_backup_lines(!printer.shows_progress(), &job.base_id)
            } else {
                progress::for_backup(!printer.shows_progress(), &job.base_id)
            };
            let started = std::time::Instant::now();
            let result = backup_base_with(repo, writer, client, job, progress).await;
            (job, result, started.elapsed())
        }
    }))
    .buffer_unordered(concurrency);
    let mut code = exit::OK;
    let mut failed = Vec::new();
    let mut saved = Vec::new();
    while let Some((job, result, took)) = runs.next().await {
        match result {
            Ok(summary) => {
                report.saved(
                    &job.base_id,
                    took,
                    summary.snapshot_id,
                    summary.partial,
                    summary.attachments,
                );
                if summary.partial && code == exit::OK {
                    code = exit::PARTIAL;
                }
                print_summary(printer, &summary, backend.requests())?;
                saved.push(job.base_id.clone());
            }
            Err(err) => {
                report.failed(&job.base_id, took);
                code = exit::ERROR;
                // "cannot back up base X" says nothing the report line does not.
                let err = match err {
                    BackupError::Airtable { source, .. } => anyhow::Error::from(source),
                    other => anyhow::Error::from(other),
                };
                print_failure(printer, &job.base_id, &err);
                failed.push(job.base_id.as_str());
            }
        }
    }
    drop(runs);
    if failed.len() == jobs.len() && jobs.len() > 1 {
        err!("error: all {} bases failed", jobs.len());
    } else if !failed.is_empty() && jobs.len() > 1 {
        err!(
            "error: {} of {} bases failed ({}); the others were backed up",
            failed.len(),
            jobs.len(),
            failed.join(", ")
        );
    }
    writer_lock.release().await?;
    if failed.is_empty() {
        repo.snapshot_run_finished();
    }
    if let Some(config) = config.filter(|c| c.retention.as_ref().is_some_and(|r| r.after_snapshot))
        && !saved.is_empty()
        && let Err(e) = super::forget::after_snapshot(settings, &repo, config, saved.clone()).await
    {
        err!("error: {e:#}");
        code = exit::ERROR;
    }
    // Then the config's second repositories get what they lack of these bases.
    if let Some(config) = config.filter(|c| !c.copies.is_empty())
        && !saved.is_empty()
        && super::copy::after_snapshot(settings, &repo, config, &saved).await? != exit::OK
    {
        code = exit::ERROR;
    }
    Ok(code)
}

/// Reports a base whose backup failed (no snapshot was saved for it): a line on stderr, and
/// with `--json` an object `{"base_id", "outcome": "failed", "error"}` on stdout.
fn print_failure(printer: Printer, base: &str, err: &anyhow::Error) {
    err!("error: base {base} failed, no snapshot was saved for it: {err:#}");
    let failure = json!({"base_id": base, "outcome": "failed", "error": format!("{err:#}")});
    let _ = printer.result(&failure, |_| Ok(()));
}

/// Prints a base's summary; `storage_requests` are the run's so far (see the README).
fn print_summary(
    printer: Printer,
    s: &BackupSummary,
    storage_requests: crate::backend::RequestStats,
) -> anyhow::Result<()> {
    // Filter entries that matched nothing: printed even with --quiet or --json, since a
    // nightly run would otherwise drop a renamed table without a word.
    for w in &s.warnings {
        err!("warning: base {}: {w}", s.base_id);
    }
    // Likewise a token that may not read comments (the snapshot is not partial for that).
    if let Some(skipped @ CommentsSkipped::NoScope) = s.comments_skipped {
        err!("warning: base {}: {}", s.base_id, skipped.describe());
    }
    /// The summary's keys, in their order, then `outcome`.
    #[derive(serde::Serialize)]
    struct WithOutcome<'a> {
        #[serde(flatten)]
        summary: &'a BackupSummary,
        outcome: &'static str,
        storage_requests: crate::backend::RequestStats,
    }
    let outcome = if s.partial { "partial" } else { "ok" };
    let with_outcome = WithOutcome {
        summary: s,
        outcome,
        storage_requests,
    };
    printer.result(&with_outcome, |t| {
        t.note(format_args!(
            "snapshot {} of base {} ({}): {}, {}, {} ({} downloaded, {} reused), {}; {} added in {}; {} ({}, {} rate-limited) in {:.1} s",
            s.snapshot_id.short(),
            s.base_id,
            s.base_name,
            count(s.tables as u64, "table"),
            count(s.records, "record"),
            count(s.attachments, "attachment"),
            s.attachments_downloaded,
            s.attachments_reused,
            match s.comments_skipped {
                None => count(s.comments, "comment"),
                Some(CommentsSkipped::TurnedOff) => "comments off".to_owned(),
                Some(CommentsSkipped::NoScope) => "no comments (no scope)".to_owned(),
            },
            human_bytes(s.bytes_added),
            count(s.objects_written, "object"),
            count(s.api_requests, "API request"),
            count(s.retries, "retry"),
            s.rate_limited,
            s.duration_secs
        ))
    })?;
    if printer.is_json() {
        // The JSON holds the problems.
        return Ok(());
    }
    if !s.problems.is_empty() {
        err!(
            "warning: snapshot {} is partial; {} could not be read:",
            s.snapshot_id.short(),
            count(s.problems.len() as u64, "item")
        );
        for p in &s.problems {
            err!("  {p}");
        }
    } else if s.partial {
        err!(
            "warning: snapshot {} is marked partial: the configuration names tables or fields \
             that base {} does not have (see above)",
            s.snapshot_id.short(),
            s.base_id
        );
    }
    Ok(())
}

/// Bytes for people: `1.2 MB`.
pub(super) fn human_bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} KB", n / 1e3),
        n => format!("{n} B"),
    }
}

/// Runs `airback snapshots`.
pub(super) async fn list(settings: &Settings, args: &SnapshotsArgs) -> anyhow::Result<u8> {
    let repo = super::open_repo(settings).await?;
    let all = snapshots::list(&repo).await?;
    let selected: Vec<_> = all
        .iter()
        .filter(|(_, s)| {
            args.base
                .as_deref()
                .is_none_or(|b| snapshots::base_id(s) == Some(b))
        })
        .collect();
    let rows: Vec<_> = selected
        .iter()
        .map(|(id, s)| {
            let sum = SnapshotSummary::of(s);
            json!({
                "id": id, "time": s.time, "hostname": s.hostname,
                "base_id": snapshots::base_id(s),
                "base_name": Source::of(s).map(|source| source.base_name),
                "tables": sum.tables, "records": sum.records,
                "attachments": sum.attachments, "size": sum.size,
                "comments": sum.comments, "comments_skipped": sum.comments_skipped,
                "partial": s.partial, "tags": s.tags,
            })
        })
        .collect();
    settings.printer.result(&rows, |t| {
        t.line(format_args!(
            "{:<8}  {:<20}  {:<17}  {:<24}  {:>6}  {:>8}  {:>11}  {:>9}",
            "ID", "TIME", "BASE", "NAME", "TABLES", "RECORDS", "ATTACHMENTS", "SIZE"
        ))?;
        for (id, s) in &selected {
            let sum = SnapshotSummary::of(s);
            let name = Source::of(s).map_or("", |source| source.base_name);
            let name: String = name.chars().take(24).collect();
            t.line(format_args!(
                "{:<8}  {:<20}  {:<17}  {:<24}  {:>6}  {:>8}  {:>11}  {:>9}{}",
                id.short(),
                s.time,
                snapshots::base_id(s).unwrap_or("-"),
                name,
                sum.tables,
                sum.records,
                sum.attachments,
                human_bytes(sum.size),
                if s.partial { "  (partial)" } else { "" }
            ))?;
        }
        t.note(format_args!("{}", count(selected.len() as u64, "snapshot")))
    })?;
    Ok(exit::OK)
}

/// Runs `airback show`.
pub(super) async fn show(settings: &Settings, args: &ShowArgs) -> anyhow::Result<u8> {
    let repo = super::open_repo(settings).await?;
    let (id, s) = snapshots::resolve(&repo, &args.snapshot, args.base.as_deref()).await?;
    let root = repo.load_tree(&s.tree).await?;
    // Each table file's meta (`None` when unreadable) and size.
    let mut tables: Vec<(Option<TableMeta>, u64)> = Vec::new();
    if let Some(subtree) = layout::tables_dir(&root) {
        for node in repo.load_tree(&subtree).await?.nodes {
            let size = match node.kind {
                NodeKind::File { size, .. } => size,
                NodeKind::Dir { .. } => 0,
            };
            tables.push((TableMeta::from_json(&node.meta), size));
        }
    }
    let tables: Vec<_> = tables
        .iter()
        .map(|(meta, size)| {
            json!({
                "id": meta.as_ref().map(|t| &t.id), "name": meta.as_ref().map(|t| &t.name),
                "records": meta.as_ref().map(|t| t.records), "size": size,
            })
        })
        .collect();
    let shown = json!({"id": id, "snapshot": s, "tables": tables});
    settings
        .printer
        .result(&shown, |t| print_snapshot(t, &id, &s, &tables))?;
    Ok(exit::OK)
}

/// `airback show` as text.
fn print_snapshot(
    t: &Text,
    id: &SnapshotId,
    s: &Snapshot,
    tables: &[serde_json::Value],
) -> anyhow::Result<()> {
    t.line(format_args!("snapshot {id}"))?;
    t.line(format_args!("  time:      {}", s.time))?;
    t.line(format_args!("  host:      {}", s.hostname))?;
    t.line(format_args!("  program:   {}", s.program))?;
    t.line(format_args!(
        "  base:      {} ({})",
        snapshots::base_id(s).unwrap_or("-"),
        Source::of(s).map_or("", |source| source.base_name)
    ))?;
    if !s.tags.is_empty() {
        t.line(format_args!("  tags:      {}", s.tags.join(", ")))?;
    }
    let sum = SnapshotSummary::of(s);
    t.line(format_args!(
        "  contents:  {} in {}, {} ({}), {} in all",
        count(sum.records, "record"),
        count(sum.tables, "table"),
        count(sum.attachments, "attachment"),
        human_bytes(sum.attachment_bytes),
        human_bytes(sum.size)
    ))?;
    match sum.comments_skipped {
        None => t.line(format_args!("  comments:  {}", sum.comments))?,
        Some(skipped) => t.line(format_args!("  comments:  none: {}", skipped.describe()))?,
    }
    for table in tables {
        t.line(format_args!(
            "    {:<32} {:>8} records  {:>9}",
            table["name"].as_str().unwrap_or(""),
            table["records"].as_u64().unwrap_or(0),
            human_bytes(table["size"].as_u64().unwrap_or(0))
        ))?;
    }
    if s.partial {
        t.line(format_args!(
            "  PARTIAL: {} could not be read:",
            count(s.problems.len() as u64, "item")
        ))?;
        for p in &s.problems {
            t.line(format_args!("    {}", crate::backup::without_urls(p)))?;
        }
    }
    Ok(())
}
