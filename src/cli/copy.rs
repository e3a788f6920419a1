//! `airback copy`: which snapshots, opening the target with its own password, the source's
//! shared lock, and the printed summary (see `crate::copy`).

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use super::password::PasswordError;
use super::print::{Text, count, err};
use super::settings::Settings;
use super::{exit, open_repo, read_lock, release};
use crate::backend::redact_location;
use crate::copy::{Action, CopyOptions, CopySummary};
use crate::crypto::Password;
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
    let target = open_target(settings, args).await?;
    if source.id() == target.id() {
        bail!(
            "the target at {} has the source's repository id: it is the same repository, or a \
             copy of its files; nothing was copied",
            redact_location(&args.to_repo)
        );
    }
    if source.is_encrypted() && !target.is_encrypted() && !args.dry_run {
        err!(
            "warning: the source is encrypted but the target at {} is not (format 1): anyone \
             who can read its storage can read the copies",
            redact_location(&args.to_repo)
        );
    }
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
    settings.printer.result(&summary, |t| print(t, &summary))?;
    Ok(exit::OK)
}

/// Opens the target at `--to-repo`. Its password, read only when it is encrypted, comes from
/// its own sources; every error says it is about the target.
async fn open_target(settings: &Settings, args: &CopyArgs) -> anyhow::Result<Repository> {
    let shown = redact_location(&args.to_repo);
    // The cause's text is part of the message, so it is not printed twice.
    let about_target = |e: RepoError| {
        let message = format!("the target repository: {e}");
        anyhow::Error::new(e).context(message)
    };
    let backend =
        Repository::backend_for(&args.to_repo, &settings.backend).map_err(about_target)?;
    let (config, bytes) = Repository::read_config(&backend)
        .await
        .map_err(about_target)?;
    let password = if config.is_encrypted() {
        let (secret, origin) =
            settings.target_password(args.to_password_file.as_deref(), &shown)?;
        Some((Password::from(secret), origin))
    } else {
        None
    };
    let opened = Repository::open_with_config(
        backend,
        config,
        &bytes,
        settings.cache.clone(),
        password.as_ref().map(|(p, _)| p),
    )
    .await;
    match (opened, password) {
        (Ok(repo), _) => Ok(repo),
        (Err(RepoError::WrongPassword { key_files, .. }), Some((_, origin))) => {
            Err(PasswordError::WrongTarget {
                origin,
                location: shown,
                key_files,
            }
            .into())
        }
        (Err(e), _) => Err(about_target(e)),
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
