//! `airback repair index` and `airback repair snapshots` (see `crate::repair`).

use clap::{Args, Subcommand};

use super::print::{Printer, Text, count};
use super::settings::Settings;
use super::{exit, open_repo};
use crate::repair;
use crate::repo::Exclusive;

/// Arguments of `airback repair`.
#[derive(Debug, Args)]
pub(super) struct RepairArgs {
    #[command(subcommand)]
    what: RepairCommand,
}

#[derive(Debug, Subcommand)]
enum RepairCommand {
    /// Rebuild the index from the packs in storage, reading and verifying every pack; drop
    /// what is missing or damaged so the next snapshot stores it again
    Index(DryRun),
    /// Rewrite snapshots that refer to lost content: keep what can be read, mark them partial
    /// and name what was lost (run `repair index` first)
    Snapshots(DryRun),
}

#[derive(Debug, Args)]
struct DryRun {
    /// Report what would be done; write and delete nothing
    #[arg(long)]
    dry_run: bool,
}

/// Runs `airback repair …`.
pub(super) async fn run(settings: &Settings, args: &RepairArgs) -> anyhow::Result<u8> {
    let repo = open_repo(settings).await?.lock_exclusive("repair").await?;
    let printer = settings.printer;
    let result = match &args.what {
        RepairCommand::Index(o) => index(printer, &repo, o.dry_run).await,
        RepairCommand::Snapshots(o) => snapshots(printer, &repo, o.dry_run).await,
    };
    repo.release().await?;
    result
}

async fn index(printer: Printer, repo: &Exclusive, dry_run: bool) -> anyhow::Result<u8> {
    let report = repair::repair_index(repo, dry_run).await?;
    printer.result(&super::with_requests(&report, repo.backend()), |t| {
        print_index(t, &report, dry_run)
    })?;
    Ok(exit::OK)
}

/// What `repair index` did or would do: left out with `--quiet`.
fn print_index(t: &Text, report: &repair::IndexRepair, dry_run: bool) -> anyhow::Result<()> {
    let would = if dry_run { "would be " } else { "" };
    for p in &report.packs_damaged {
        t.note(format_args!(
            "pack {}: {}; {would}dropped from the index",
            p.id, p.reason
        ))?;
    }
    for d in &report.dictionaries_restored {
        t.note(format_args!(
            "zstd dictionary {d}: {would}written back from its copy"
        ))?;
    }
    for d in &report.dictionaries_removed {
        t.note(format_args!(
            "zstd dictionary {d}: damaged without a copy; removed"
        ))?;
    }
    t.note(format_args!(
        "read {} ({} bytes): {} kept ({} newly indexed), {} missing or damaged; {} salvaged, {} lost",
        count(report.packs_read as u64, "pack"),
        report.bytes_read,
        report.packs_kept,
        report.packs_adopted,
        report.packs_damaged.len(),
        count(report.blobs_salvaged as u64, "blob"),
        count(report.blobs_lost as u64, "blob"),
    ))?;
    if !dry_run {
        t.note(format_args!(
            "wrote {}, removed {}",
            count(report.index_files_written as u64, "index file"),
            count(report.index_files_removed as u64, "index file")
        ))?;
    }
    if report.blobs_lost > 0 {
        t.note(format_args!(
            "the next snapshot stores again what the bases still hold; run `airback repair snapshots` to mark older snapshots that lost content"
        ))?;
    }
    Ok(())
}

async fn snapshots(printer: Printer, repo: &Exclusive, dry_run: bool) -> anyhow::Result<u8> {
    let report = repair::repair_snapshots(repo, dry_run).await?;
    printer.result(&super::with_requests(&report, repo.backend()), |t| {
        print_snapshots(t, &report, dry_run)
    })?;
    Ok(exit::OK)
}

/// What `repair snapshots` did or would do: left out with `--quiet`.
fn print_snapshots(
    t: &Text,
    report: &repair::SnapshotsRepair,
    dry_run: bool,
) -> anyhow::Result<()> {
    for r in &report.repaired {
        match (&r.replacement, dry_run) {
            (Some(new), _) => t.note(format_args!(
                "snapshot {} replaced by partial snapshot {}:",
                r.original.short(),
                new.short()
            )),
            (None, true) => t.note(format_args!(
                "snapshot {} would be repaired:",
                r.original.short()
            )),
            (None, false) => t.note(format_args!("snapshot {} removed:", r.original.short())),
        }?;
        for lost in &r.lost {
            t.note(format_args!("  lost: {lost}"))?;
        }
    }
    t.note(format_args!(
        "checked {}, {} {}",
        count(report.snapshots as u64, "snapshot"),
        report.repaired.len(),
        if dry_run { "to repair" } else { "repaired" }
    ))?;
    Ok(())
}
