//! `airback forget`: the keep rules from flags or from the config's `retention:` sections,
//! then `crate::forget` plans and removes.

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::print::{Text, count};
use super::prune::PruneArgs;
use super::settings::Settings;
use super::{exit, open_repo};
use crate::config::Config;
use crate::forget::{self, Action, ForgetOptions, ForgetPlan, Policies};
use crate::prune::PruneSummary;
use crate::retention::{CalendarDuration, Keep, Policy, TagList};

/// Arguments of `airback forget`.
#[derive(Debug, Args)]
pub(super) struct ForgetArgs {
    /// Keep the N latest snapshots (a number, or `unlimited`)
    #[arg(long, value_name = "N")]
    keep_last: Option<Keep>,
    /// Keep the latest snapshot of each of the N latest hours that have one
    #[arg(long, value_name = "N")]
    keep_hourly: Option<Keep>,
    /// Keep the latest snapshot of each of the N latest days that have one
    #[arg(long, value_name = "N")]
    keep_daily: Option<Keep>,
    /// Keep the latest snapshot of each of the N latest ISO weeks that have one
    #[arg(long, value_name = "N")]
    keep_weekly: Option<Keep>,
    /// Keep the latest snapshot of each of the N latest months that have one
    #[arg(long, value_name = "N")]
    keep_monthly: Option<Keep>,
    /// Keep the latest snapshot of each of the N latest years that have one
    #[arg(long, value_name = "N")]
    keep_yearly: Option<Keep>,
    /// Keep every snapshot newer than the latest one minus DURATION, e.g. 30d, 1y6m, 2d12h
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<CalendarDuration>,
    /// Keep snapshots with these tags (`a,b`: both; repeat for either; '' for untagged)
    #[arg(long, value_name = "TAG[,TAG]")]
    keep_tag: Vec<TagList>,
    /// Only the snapshots of these bases (repeat for more)
    #[arg(long, value_name = "appXXXXXXXXXXXXXX")]
    base: Vec<String>,
    /// Print what would be removed; remove nothing
    #[arg(long)]
    dry_run: bool,
    /// Then run `airback prune` (default options) under the same lock, to free the space
    #[arg(long)]
    prune: bool,
}

impl ForgetArgs {
    /// Whether this run deletes (everything but `--dry-run`).
    pub(super) fn writes(&self) -> bool {
        !self.dry_run
    }

    /// The policy the flags give, if they give any rule.
    fn policy(&self) -> Option<Policy> {
        let policy = Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tag.clone(),
            ..Policy::default()
        };
        (!policy.is_empty()).then_some(policy)
    }
}

/// What `forget` prints with `--json`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    dry_run: bool,
    #[serde(flatten)]
    plan: &'a ForgetPlan,
    removed: usize,
    /// What `--prune` did; `null` without it (and with `--dry-run`).
    prune: Option<&'a PruneSummary>,
}

/// Runs `airback forget`.
pub(super) async fn run(settings: &Settings, args: &ForgetArgs) -> anyhow::Result<u8> {
    let (policies, zone_name) = policies(settings.config.as_ref(), args)?;
    let zone = time_zone(&zone_name)?;
    let repo = open_repo(settings).await?;
    let backend = repo.backend().clone();
    let options = ForgetOptions {
        policies,
        bases: args.base.clone(),
        zone,
        zone_name,
        now: jiff::Timestamp::now(),
    };
    let (plan, removed, pruned) = if args.dry_run {
        let lock = super::read_lock(settings, &repo, "forget").await?;
        let snapshots = crate::snapshots::list(&repo).await;
        super::release(lock).await?;
        (forget::plan(snapshots?, &options)?, 0, None)
    } else {
        let repo = repo.lock_exclusive("forget").await?;
        let result = async {
            let plan = forget::plan(crate::snapshots::list(&repo).await?, &options)?;
            let removed = forget::remove(&repo, &plan).await?;
            let pruned = if args.prune {
                Some(crate::prune::prune(&repo, &PruneArgs::defaults(false)).await?)
            } else {
                None
            };
            anyhow::Ok((plan, removed, pruned))
        }
        .await;
        repo.release().await?;
        result?
    };
    let report = Report {
        dry_run: args.dry_run,
        plan: &plan,
        removed,
        prune: pruned.as_ref(),
    };
    settings.printer.result(&super::with_requests(&report, &backend), |t| {
        print(t, &plan, args.dry_run, removed)?;
        match &pruned {
            Some(summary) => super::prune::print(t, summary),
            None if args.prune => t.note(format_args!(
                "--prune: nothing was pruned in a dry run; run without --dry-run, or `airback prune --dry-run` after forget"
            )),
            None => Ok(()),
        }
    })?;
    Ok(exit::OK)
}

/// After `snapshot --config` when its `retention.after_snapshot` is set: forget in the groups
/// of `bases` (those backed up in this run) by the config's rules. A repository locked by
/// another command is not waited for: a warning says so and the next run applies the rules.
pub(super) async fn after_snapshot(
    settings: &Settings,
    repo: &crate::repo::Repository,
    config: &Config,
    bases: Vec<String>,
) -> anyhow::Result<()> {
    let (policies, zone_name) = policies_of_config(config);
    let options = ForgetOptions {
        policies,
        bases,
        zone: time_zone(&zone_name)?,
        zone_name,
        now: jiff::Timestamp::now(),
    };
    let repo = match repo.lock_exclusive("forget").await {
        Ok(repo) => repo,
        Err(e @ crate::repo::RepoError::Locked { .. }) => {
            super::print::err!("warning: retention not applied: {e}; the next run applies it");
            let skipped =
                serde_json::json!({"retention": {"applied": false, "reason": e.to_string()}});
            return settings.printer.result(&skipped, |_| Ok(()));
        }
        Err(e) => return Err(e.into()),
    };
    let then_prune = config.retention.as_ref().is_some_and(|r| r.prune);
    let result = async {
        let plan = forget::plan(crate::snapshots::list(&repo).await?, &options)?;
        let removed = forget::remove(&repo, &plan).await?;
        let pruned = if then_prune {
            Some(crate::prune::prune(&repo, &PruneArgs::defaults(false)).await?)
        } else {
            None
        };
        anyhow::Ok((plan, removed, pruned))
    }
    .await;
    repo.release().await?;
    let (plan, removed, pruned) =
        result.context("retention (the config's `after_snapshot`) failed")?;
    let report = serde_json::json!({"retention": {
        "applied": true,
        "report": Report { dry_run: false, plan: &plan, removed, prune: pruned.as_ref() },
    }});
    settings.printer.result(&report, |t| {
        print(t, &plan, false, removed)?;
        match &pruned {
            Some(summary) => super::prune::print(t, summary),
            None => Ok(()),
        }
    })
}

/// The policies from the flags, or else from the config file; and the time zone's name.
fn policies(config: Option<&Config>, args: &ForgetArgs) -> anyhow::Result<(Policies, String)> {
    let zone = zone_name(config);
    if let Some(policy) = args.policy() {
        if config.is_some_and(|c| c.has_retention()) {
            super::print::err!(
                "note: the --keep-* flags replace the config's retention policy for this run"
            );
        }
        return Ok((Policies::all(policy), zone));
    }
    match config.filter(|c| c.has_retention()) {
        Some(config) => Ok(policies_of_config(config)),
        None => Err(NoRule.into()),
    }
}

/// `forget` without a keep rule: a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
#[error(
    "forget needs a rule: pass --keep-last, --keep-daily, --keep-within, --keep-tag or another \
     --keep-* flag, or give a config (--config) with a `retention:` section"
)]
pub(super) struct NoRule;

/// The calendar's zone: the config's `retention.time_zone`, else UTC.
fn zone_name(config: Option<&Config>) -> String {
    config
        .and_then(|c| c.retention.as_ref())
        .and_then(|r| r.time_zone.clone())
        .unwrap_or_else(|| "UTC".to_owned())
}

/// The config's `retention:` sections as policies, and the time zone's name.
fn policies_of_config(config: &Config) -> (Policies, String) {
    (forget::policies_of_config(config), zone_name(Some(config)))
}

/// The zone named by the config: `UTC`, `local` or an IANA name.
fn time_zone(name: &str) -> anyhow::Result<jiff::tz::TimeZone> {
    match name {
        "UTC" => Ok(jiff::tz::TimeZone::UTC),
        "local" => Ok(jiff::tz::TimeZone::system()),
        name => jiff::tz::TimeZone::get(name).map_err(|e| {
            anyhow::anyhow!(
                "retention.time_zone `{name}` is not a time zone this machine knows ({e}); \
                 use UTC, local or an IANA name such as Europe/Paris"
            )
        }),
    }
}

/// The text rendering: one block per group, then the total.
fn print(t: &Text, plan: &ForgetPlan, dry_run: bool, removed: usize) -> anyhow::Result<()> {
    for group in &plan.groups {
        let name = match (&group.base_id, &group.base_name) {
            (Some(id), Some(name)) => format!("base {id} ({name})"),
            (Some(id), None) => format!("base {id}"),
            (None, _) => "snapshots without a base".to_owned(),
        };
        t.line(format_args!(
            "{name}: keep {} of {} ({}; periods in {})",
            group.keep,
            count(group.snapshots.len() as u64, "snapshot"),
            group.policy,
            plan.time_zone
        ))?;
        for s in &group.snapshots {
            let action = match s.action {
                Action::Keep => "keep",
                Action::Remove => "remove",
            };
            t.line(format_args!(
                "  {action:<7} {}  {}  {}{}",
                s.id.short(),
                s.time,
                if s.partial { "partial  " } else { "" },
                s.reasons.join(", ")
            ))?;
        }
    }
    let would_remove = plan.to_remove().count();
    if dry_run {
        t.note(format_args!(
            "would remove {}; nothing was removed",
            count(would_remove as u64, "snapshot")
        ))
    } else if removed > 0 {
        t.note(format_args!(
            "removed {}; `airback prune` frees the storage only they used",
            count(removed as u64, "snapshot")
        ))
    } else {
        t.note(format_args!("removed no snapshots"))
    }
}
