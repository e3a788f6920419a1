//! `airback export`: a snapshot as a tar or zip archive, a folder, or a SQLite database
//! (docs/EXPORT.md). Argument checks, the repository's shared lock, progress and the summary;
//! the work is `crate::export`.

use std::path::PathBuf;

use clap::Args;

use super::print::{self, Printer, count, err};
use super::settings::Settings;
use super::snapshot::human_bytes;
use super::{exit, open_repo, progress};
use crate::export::{ExportError, ExportFormat, ExportOptions, ExportSummary, Output};
use crate::snapshots;
use crate::stored::StoredBase;

/// Arguments of `airback export`.
#[derive(Debug, Args)]
pub(super) struct ExportArgs {
    /// A snapshot id, a unique prefix of one, or `latest`
    snapshot: String,
    /// With `latest`: the latest of this base
    #[arg(long, value_name = "appXXXXXXXXXXXXXX")]
    base: Option<String>,
    /// tar, zip, dir or sqlite [default: from the extension of -o; tar for -o -]
    #[arg(short, long, value_parser = parse_format)]
    format: Option<ExportFormat>,
    /// Where to write: a file, a folder (dir), or - for standard output (tar only)
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
    /// Replace an existing file, or a folder that holds an earlier export
    #[arg(long)]
    force: bool,
}

fn parse_format(text: &str) -> Result<ExportFormat, String> {
    text.parse()
}

/// Runs `airback export`.
pub(super) async fn export(settings: &Settings, args: &ExportArgs) -> anyhow::Result<u8> {
    let output = if args.output.as_os_str() == "-" {
        Output::Stdout(print::stdout_stream())
    } else {
        Output::Path(args.output.clone())
    };
    let format = match (args.format, &output) {
        (Some(format), _) => format,
        (None, Output::Stdout(_)) => ExportFormat::Tar,
        (None, Output::Path(path)) => match ExportFormat::from_extension(path) {
            Some(format) => format,
            // `-o /dev/null`, a named pipe: a stream, as for `-o -`.
            None if output.is_stream() => ExportFormat::Tar,
            None => return Err(ExportError::NoFormat(path.clone()).into()),
        },
    };
    if let Output::Stdout(_) = output {
        if format != ExportFormat::Tar {
            return Err(ExportError::StdoutNeedsTar(format).into());
        }
        if print::stdout_is_terminal() {
            return Err(ExportError::StdoutIsTerminal.into());
        }
    }
    // Checked before the export writes to it: `-o /dev/stdout` carries the archive.
    let to_stderr = match &output {
        Output::Stdout(_) => true,
        Output::Path(path) => print::is_stdout_file(path),
    };
    let destination = output.to_string();
    let options = ExportOptions {
        force: args.force,
        text_buffer: settings.export_text_buffer,
        ..ExportOptions::new(format, output)
    };

    let repo = open_repo(settings).await?;
    // Shared, like `check`: a future `prune` must not delete packs while they are read.
    let lock = super::read_lock(settings, &repo, "export").await?;
    let printer = settings.printer.to_stderr(to_stderr);
    let result = async {
        let (id, snapshot) =
            snapshots::resolve(&repo, &args.snapshot, args.base.as_deref()).await?;
        let base = StoredBase::open(&repo, id, snapshot).await?;
        let label = format!("{} {}", base.base_id(), id.short());
        let bars = progress::for_backup(!printer.shows_progress(), &label);
        let summary = crate::export::export(&base, options, bars.clone()).await;
        drop(bars);
        anyhow::Ok(summary?)
    }
    .await;
    super::release(lock).await?;
    let summary = result?;
    print_summary(printer, &destination, &summary, repo.backend())?;
    Ok(exit::OK)
}

/// Prints the summary (`printer` writes to standard error when standard output carries the
/// archive).
fn print_summary(
    printer: Printer,
    destination: &str,
    s: &ExportSummary,
    backend: &crate::backend::Backend,
) -> anyhow::Result<()> {
    printer.result(&super::with_requests(s, backend), |t| {
        let rate = if s.duration_secs > 0.0 {
            format!(
                " ({}/s of attachments)",
                human_bytes((s.attachment_bytes as f64 / s.duration_secs) as u64)
            )
        } else {
            String::new()
        };
        t.note(format_args!(
            "exported snapshot {} of base {} ({}) as {} to {}: {}, {}, {} ({}); {} written \
             in {:.1} s{rate}",
            s.snapshot_id.short(),
            s.base_id,
            s.base_name,
            s.format,
            destination,
            count(s.tables as u64, "table"),
            count(s.records, "record"),
            count(s.attachments, "attachment"),
            human_bytes(s.attachment_bytes),
            human_bytes(s.bytes_written),
            s.duration_secs,
        ))
    })?;
    if s.missing_attachments > 0 {
        err!(
            "warning: {} no content in this snapshot (it is partial, or was taken without \
             attachment content); their metadata is exported, manifest.json lists their ids",
            if s.missing_attachments == 1 {
                "1 attachment has".to_owned()
            } else {
                format!("{} attachments have", s.missing_attachments)
            }
        );
    }
    Ok(())
}
