//! `airback rewrite`: which snapshots, what to leave out, the exclusive lock, the report (see
//! `crate::rewrite`).

use clap::Args;

use super::print::count;
use super::settings::Settings;
use super::{exit, open_repo};
use crate::config::FieldRef;
use crate::rewrite::{self, RewriteOptions};

/// Arguments of `airback rewrite`.
#[derive(Debug, Args)]
pub(super) struct RewriteArgs {
    /// Snapshots to rewrite: ids, unique prefixes, or `latest` (default: every snapshot, of
    /// --base if given)
    snapshots: Vec<String>,
    /// Only snapshots of these bases (repeat for more)
    #[arg(long, value_name = "appXXXXXXXXXXXXXX")]
    base: Vec<String>,
    /// Leave out this record (repeat for more)
    #[arg(long, value_name = "recXXXXXXXXXXXXXX")]
    exclude_record: Vec<String>,
    /// Leave out this field: TABLE.FIELD, each by name or id (repeat for more)
    #[arg(long, value_name = "TABLE.FIELD", value_parser = parse_field)]
    exclude_field: Vec<FieldRef>,
    /// Leave out this attachment (repeat for more)
    #[arg(long, value_name = "attXXXXXXXXXXXXXX")]
    exclude_attachment: Vec<String>,
    /// Delete each original once its rewrite is saved
    #[arg(long)]
    forget_originals: bool,
    /// Print what would be rewritten; write nothing
    #[arg(long)]
    dry_run: bool,
}

fn parse_field(s: &str) -> Result<FieldRef, String> {
    FieldRef::parse(s).ok_or_else(|| {
        format!(
            "`{s}` is not TABLE.FIELD: give a table and a field, by name or id, e.g. Contacts.Email"
        )
    })
}

/// Runs `airback rewrite`.
pub(super) async fn run(settings: &Settings, args: &RewriteArgs) -> anyhow::Result<u8> {
    let repo = open_repo(settings).await?.lock_exclusive("rewrite").await?;
    let backend = repo.backend().clone();
    let result = async {
        let all = crate::snapshots::list(&repo).await?;
        let in_bases = |s: &crate::repo::Snapshot| {
            args.base.is_empty()
                || crate::snapshots::base_id(s).is_some_and(|b| args.base.iter().any(|x| x == b))
        };
        let selected = if args.snapshots.is_empty() {
            all.into_iter().filter(|(_, s)| in_bases(s)).collect()
        } else {
            let mut selected = Vec::new();
            for spec in &args.snapshots {
                let base = (args.base.len() == 1).then(|| args.base[0].as_str());
                selected.push(crate::snapshots::resolve(&repo, spec, base).await?);
            }
            selected
        };
        let options = RewriteOptions {
            records: args.exclude_record.clone(),
            fields: args.exclude_field.clone(),
            attachments: args.exclude_attachment.clone(),
            forget_originals: args.forget_originals,
            dry_run: args.dry_run,
        };
        anyhow::Ok(rewrite::rewrite(&repo, &selected, &options).await?)
    }
    .await;
    repo.release().await?;
    let summary = result?;
    settings.printer.result(&super::with_requests(&summary, &backend), |t| {
        for r in &summary.rewritten {
            let what = format!(
                "{} removed, {} removed, {} removed",
                count(r.records, "record"),
                count(r.fields.len() as u64, "field"),
                count(r.attachments, "attachment")
            );
            match r.snapshot {
                Some(new) => t.line(format_args!(
                    "snapshot {} rewritten as {}: {what}",
                    r.original.short(),
                    new.short()
                ))?,
                None => t.line(format_args!(
                    "snapshot {} would be rewritten: {what}",
                    r.original.short()
                ))?,
            }
        }
        t.note(format_args!(
            "{} rewritten, {} unchanged{}; {} to erase: the next `airback prune` removes their bytes once no snapshot uses them{}",
            count(summary.rewritten.len() as u64, "snapshot"),
            summary.unchanged.len(),
            if summary.originals_forgotten {
                ", originals removed"
            } else {
                ""
            },
            count(summary.erase as u64, "blob"),
            if summary.originals_forgotten || args.dry_run {
                ""
            } else {
                " (the originals still use them: forget them, or pass --forget-originals)"
            }
        ))
    })?;
    Ok(exit::OK)
}
