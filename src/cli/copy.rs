//! `airback copy`: which snapshots, opening the target with its own password, the source's
//! shared lock, and the printed summary (see `crate::copy`); and the copies into the config's
//! `copies:` repositories after `snapshot --config` ([`after_snapshot`]).

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Args;
use serde_json::json;

use super::password::PasswordError;
use super::print::{Text, count, err};
use super::settings::Settings;
use super::{exit, open_repo, read_lock, release};
use crate::backend::redact_location;
use crate::config::{Config, CopyTarget};
use crate::copy::{Action, CopyOptions, CopySummary};
use crate::id::SnapshotId;
use crate::repo::{RepoError, Repository};
use crate::snapshots;

/// Arguments of `airback copy`.
#[derive(Debug, Args)]
pub(super) struct CopyArgs {
    /// Snapshots to copy: ids, unique prefixes of ids, or `latest` (of each --base); default:
    /// every snapshot (of the --base bases)
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Only snapshots of these bases (repeat for more)
    #[arg(long, value_name = "appXXXXXXXXXXXXXX")]
    base: Vec<String>,
    /// The repository to copy into: a local path or s3://, gcs://, ... (create it first with
    /// `airback init`)
    #[arg(long, value_name = "LOCATION")]
    to_repo: String,
    /// Read the target repository's password from this file (else AIRBACK_TO_PASSWORD_FILE,
    /// AIRBACK_TO_PASSWORD, or a prompt)
    #[arg(long, value_name = "FILE")]
    to_password_file: Option<PathBuf>,
    /// Print what would be copied; write nothing to the target
    #[arg(long)]
    dry_run: bool,
}

/// Runs `airback copy`.
pub(super) async fn run(settings: &Settings, args: &CopyArgs) -> anyhow::Result<u8> {
    let source = open_repo(settings).await?;
    // The config's entry for this repository, if any, may give its password.
    let entry = settings
        .config
        .as_ref()
        .and_then(|c| c.copies.iter().find(|e| e.repository == args.to_repo));
    let to = Target {
        location: &args.to_repo,
        password_file: args.to_password_file.as_deref(),
        variables: true,
        entry,
    };
    let target = open_target(settings, &to).await?;
    check_pair(&source, &target, &args.to_repo, args.dry_run)?;
    let lock = read_lock(settings, &source, "copy").await?;
    let result = async {
        let ids = select(&source, args).await?;
        let options = CopyOptions {
            dry_run: args.dry_run,
        };
        anyhow::Ok(crate::copy::copy(&source, &target, &ids, &options).await?)
    }
    .await;
    release(lock).await?;
    let summary = result?;
    /// `storage_requests`: both sides', from their opening.
    #[derive(serde::Serialize)]
    struct WithRequests<'a> {
        #[serde(flatten)]
        summary: &'a crate::copy::CopySummary,
        storage_requests: crate::copy::Requests,
    }
    let with_requests = WithRequests {
        summary: &summary,
        storage_requests: crate::copy::Requests {
            source: source.backend().requests(),
            target: target.backend().requests(),
        },
    };
    settings
        .printer
        .result(&with_requests, |t| print(t, &summary))?;
    Ok(exit::OK)
}

/// After `snapshot --config`: each of the config's `copies:` repositories receives every
/// snapshot of the run's `bases` (those its entry names, if it names any) that it lacks, so a
/// night whose copy failed is caught up by the next. A copy that fails is reported and the
/// others still run; the exit code is then 1.
pub(super) async fn after_snapshot(
    settings: &Settings,
    source: &Repository,
    config: &Config,
    bases: &[String],
) -> anyhow::Result<u8> {
    let mut code = exit::OK;
    for entry in &config.copies {
        let shown = redact_location(&entry.repository);
        let wanted: Vec<&String> = bases
            .iter()
            .filter(|b| entry.bases.is_empty() || entry.bases.contains(b))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let result = async {
            let to = Target {
                location: &entry.repository,
                password_file: None,
                variables: false,
                entry: Some(entry),
            };
            let target = open_target(settings, &to).await?;
            check_pair(source, &target, &entry.repository, false)?;
            let lock = read_lock(settings, source, "copy").await?;
            let copied = async {
                let ids: Vec<SnapshotId> = snapshots::list(source)
                    .await?
                    .into_iter()
                    .filter(|(_, s)| {
                        snapshots::base_id(s).is_some_and(|b| wanted.iter().any(|w| *w == b))
                    })
                    .map(|(id, _)| id)
                    .collect();
                anyhow::Ok(crate::copy::copy(source, &target, &ids, &CopyOptions::default()).await?)
            }
            .await;
            release(lock).await?;
            copied
        }
        .await;
        match result {
            Ok(summary) => {
                let report =
                    json!({"copy": {"repository": shown, "copied": true, "summary": &summary}});
                settings.printer.result(&report, |t| {
                    t.note(format_args!("copy to {shown}:"))?;
                    print(t, &summary)
                })?;
            }
            Err(e) => {
                code = exit::ERROR;
                let message = format!(
                    "snapshots are saved in the main repository; the copy to {shown} failed: \
                     {}; the next run copies them",
                    crate::secrets::scrub(&format!("{e:#}"))
                );
                err!("error: {message}");
                let report =
                    json!({"copy": {"repository": shown, "copied": false, "error": message}});
                settings.printer.result(&report, |_| Ok(()))?;
            }
        }
    }
    Ok(code)
}

/// Where a copy goes and where its password may come from.
struct Target<'a> {
    location: &'a str,
    /// `--to-password-file`.
    password_file: Option<&'a Path>,
    /// Whether `AIRBACK_TO_PASSWORD_FILE` and `AIRBACK_TO_PASSWORD` count (not for the
    /// copies after a snapshot, which may go to several repositories).
    variables: bool,
    /// The config's `copies` entry for this repository.
    entry: Option<&'a CopyTarget>,
}

/// Opens every repository of the config's `copies:` for `airback serve`, which copies each
/// base's snapshots there after its snapshot jobs. A target that cannot be opened stops the
/// service from starting, with why.
pub(super) async fn open_copies(
    settings: &Settings,
    source: &Repository,
    config: &Config,
) -> anyhow::Result<Vec<(crate::config::CopyTarget, Repository)>> {
    use anyhow::Context as _;
    let mut out = Vec::new();
    for entry in &config.copies {
        let to = Target {
            location: &entry.repository,
            password_file: None,
            variables: false,
            entry: Some(entry),
        };
        let target = open_target(settings, &to).await.with_context(|| {
            format!(
                "cannot open the copy repository {} (`copies:` in the config file)",
                redact_location(&entry.repository)
            )
        })?;
        check_pair(source, &target, &entry.repository, false)?;
        out.push((entry.clone(), target));
    }
    Ok(out)
}

/// Refuses a target that is the source, and warns when an encrypted source goes into an
/// unencrypted target.
fn check_pair(
    source: &Repository,
    target: &Repository,
    location: &str,
    dry_run: bool,
) -> anyhow::Result<()> {
    if source.id() == target.id() {
        bail!(
            "the target at {} has the source's repository id: it is the same repository, or a \
             copy of its files; nothing was copied",
            redact_location(location)
        );
    }
    if source.is_encrypted() && !target.is_encrypted() && !dry_run {
        err!(
            "warning: the source is encrypted but the target at {} is not (format 1): anyone \
             who can read its storage can read the copies",
            redact_location(location)
        );
    }
    Ok(())
}

/// Opens the target. Its password, read only when it is encrypted, comes from its own
/// sources; every error says it is about the target.
async fn open_target(settings: &Settings, to: &Target<'_>) -> anyhow::Result<Repository> {
    let shown = redact_location(to.location);
    // The cause's text is part of the message, so it is not printed twice.
    let about_target = |e: RepoError| {
        let message = format!("the target repository: {e}");
        anyhow::Error::new(e).context(message)
    };
    let password = || settings.target_password(to.password_file, to.variables, to.entry, &shown);
    use super::OpenFailure;
    match super::open_with_password(settings, to.location, password, None).await {
        Ok((repo, _)) => Ok(repo),
        Err(OpenFailure::WrongPassword {
            error: RepoError::WrongPassword { key_files, .. },
            origin,
        }) => Err(PasswordError::WrongTarget {
            origin,
            location: shown,
            key_files,
        }
        .into()),
        Err(OpenFailure::WrongPassword { error, .. } | OpenFailure::Repo(error)) => {
            Err(about_target(error))
        }
        Err(OpenFailure::Password(e)) => Err(e.into()),
    }
}

/// The source snapshots the arguments name: every one (of the `--base` bases), or each
/// SNAPSHOT resolved (`latest` with bases: the latest of each).
async fn select(source: &Repository, args: &CopyArgs) -> anyhow::Result<Vec<SnapshotId>> {
    let of_bases = |snapshot: &crate::repo::Snapshot| {
        args.base.is_empty()
            || snapshots::base_id(snapshot).is_some_and(|b| args.base.iter().any(|a| a == b))
    };
    if args.snapshots.is_empty() {
        return Ok(snapshots::list(source)
            .await?
            .into_iter()
            .filter(|(_, s)| of_bases(s))
            .map(|(id, _)| id)
            .collect());
    }
    let mut ids = Vec::new();
    for spec in &args.snapshots {
        if spec == "latest" && !args.base.is_empty() {
            for base in &args.base {
                ids.push(snapshots::resolve(source, spec, Some(base)).await?.0);
            }
            continue;
        }
        let (id, snapshot) = snapshots::resolve(source, spec, None).await?;
        if !of_bases(&snapshot) {
            bail!(
                "snapshot {} is of base {}, which --base does not name; nothing was copied",
                id.short(),
                snapshots::base_id(&snapshot).unwrap_or("(none)")
            );
        }
        ids.push(id);
    }
    Ok(ids)
}

/// The text rendering: a line per snapshot, then the totals.
fn print(t: &Text, s: &CopySummary) -> anyhow::Result<()> {
    for entry in &s.list {
        let base = entry.base_id.as_deref().unwrap_or("no base");
        let (id, time) = (entry.source.short(), &entry.time);
        match (entry.action, entry.target) {
            (Action::Copied, Some(target)) => t.line(format_args!(
                "copied snapshot {id} ({base}, {time}) as {}",
                target.short()
            ))?,
            (Action::Copied, None) => {
                t.line(format_args!("would copy snapshot {id} ({base}, {time})"))?
            }
            (Action::Skipped, target) => t.line(format_args!(
                "skipped snapshot {id} ({base}, {time}): the target has it{}",
                target.map_or_else(String::new, |to| format!(" as {}", to.short()))
            ))?,
        }
    }
    let copied = if s.dry_run {
        "would be copied"
    } else {
        "copied"
    };
    t.line(format_args!(
        "{} {copied}, {} skipped; blobs: {} {copied}, {} present in the target, {} read",
        count(s.snapshots.copied, "snapshot"),
        s.snapshots.skipped,
        s.blobs.copied,
        s.blobs.present,
        s.blobs.read
    ))?;
    let (r, w) = (&s.requests.source, &s.requests.target);
    t.note(format_args!(
        "read {} from the source ({} GET), wrote {} to the target ({} PUT){}",
        mib(s.bytes.read),
        r.get,
        mib(s.bytes.written),
        w.put,
        if s.dry_run {
            "; nothing was written"
        } else {
            ""
        }
    ))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
