//! `airback prune`: options, the exclusive lock, and the printed summary (see `crate::prune`).

use clap::Args;

use super::print::{Text, count};
use super::settings::Settings;
use super::{exit, open_repo};
use crate::prune::{self, MaxUnused, PruneOptions, PruneSummary};

/// Arguments of `airback prune` (and the prune that `forget --prune` runs).
#[derive(Debug, Args)]
pub(super) struct PruneArgs {
    /// Print what would be done; write and delete nothing
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Unused space allowed to stay in packs that are kept: a percentage of the repository
    /// (`5`, `5%`), a size (`500M`), or `unlimited`
    #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = clap::value_parser!(MaxUnusedArg))]
    max_unused: MaxUnusedArg,
    /// The most pack bytes to rewrite in one run, e.g. 2G (default: no limit)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_repack: Option<u64>,
}

/// `--max-unused` as clap parses it.
#[derive(Debug, Clone, Copy)]
struct MaxUnusedArg(MaxUnused);

impl std::str::FromStr for MaxUnusedArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(MaxUnusedArg)
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    prune::parse_size(s)
}

impl PruneArgs {
    /// The library's options.
    pub(super) fn options(&self) -> PruneOptions {
        PruneOptions {
            dry_run: self.dry_run,
            max_unused: self.max_unused.0,
            max_repack: self.max_repack,
            ..PruneOptions::default()
        }
    }

    /// Default options, for `forget --prune`.
    pub(super) fn defaults(dry_run: bool) -> PruneOptions {
        PruneOptions {
            dry_run,
            ..PruneOptions::default()
        }
    }
}

/// Runs `airback prune`.
pub(super) async fn run(settings: &Settings, args: &PruneArgs) -> anyhow::Result<u8> {
    let repo = open_repo(settings).await?.lock_exclusive("prune").await?;
    let backend = repo.backend().clone();
    let result = prune::prune(&repo, &args.options()).await;
    repo.release().await?;
    let summary = result?;
    settings
        .printer
        .result(&super::with_requests(&summary, &backend), |t| {
            print(t, &summary)
        })?;
    Ok(exit::OK)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The text rendering.
pub(super) fn print(t: &Text, s: &PruneSummary) -> anyhow::Result<()> {
    let live = s.used.bytes + s.unused.bytes;
    let share = |part: u64| {
        if live == 0 {
            0.0
        } else {
            100.0 * part as f64 / live as f64
        }
    };
    t.note(format_args!(
        "{} use {}; {} ({:.1} %) is unused",
        count(s.snapshots as u64, "snapshot"),
        mib(s.used.bytes),
        mib(s.unused.bytes),
        share(s.unused.bytes)
    ))?;
    let would = if s.dry_run { "would be " } else { "" };
    t.line(format_args!(
        "packs: {} kept, {} {would}repacked, {} {would}marked for deletion, {} recovered, {} deleted",
        s.packs.keep, s.packs.repack, s.packs.mark, s.packs.recover, s.packs.delete
    ))?;
    if s.dry_run {
        return t.note(format_args!(
            "unused after prune: {} ({:.1} %); nothing was changed",
            mib(s.unused_after),
            share(s.unused_after)
        ));
    }
    t.note(format_args!(
        "read {}, wrote {}, deleted {} ({})",
        mib(s.bytes.read),
        mib(s.bytes.written),
        count(s.packs.delete, "pack"),
        mib(s.bytes.deleted)
    ))?;
    t.note(format_args!(
        "unused after prune: {} ({:.1} %)",
        mib(s.unused_after),
        share(s.unused_after)
    ))?;
    if s.packs.pending_deletion > 0 {
        t.line(format_args!(
            "{} running ({}): {} stay marked; a prune deletes them once no snapshot runs, or {} hours after they were marked",
            if s.deletion.writers.len() == 1 {
                "a snapshot is".to_owned()
            } else {
                format!("{} snapshots are", s.deletion.writers.len())
            },
            s.deletion.writers.join(", "),
            count(s.packs.pending_deletion, "pack"),
            s.deletion.delay_hours
        ))?;
    }
    let r = &s.requests;
    t.note(format_args!(
        "storage requests: LIST {}, GET {}, HEAD {}, PUT {}, DELETE {}",
        r.list, r.get, r.head, r.put, r.delete
    ))
}
