//! `airback completions SHELL` and `airback man`: shell completion scripts (clap_complete) and
//! roff man pages (clap_mangen), generated from the same clap definitions that parse the
//! command line, so they never drift from the flags.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, exit, print};

/// Arguments of `airback completions`.
#[derive(Debug, Args)]
pub(super) struct CompletionsArgs {
    /// The shell to complete in
    #[arg(value_enum)]
    shell: Shell,
}

/// Arguments of `airback man`.
#[derive(Debug, Args)]
pub(super) struct ManArgs {
    /// Write one page per command into this folder (airback.1, airback-snapshot.1, …) instead
    /// of printing airback's page
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the completion script of `args.shell` on standard output.
pub(super) fn completions(args: &CompletionsArgs) -> anyhow::Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "airback", &mut script);
    print::bytes(&script)?;
    Ok(exit::OK)
}

/// Prints airback's man page, or writes one page per command into `--dir`.
pub(super) fn man(args: &ManArgs) -> anyhow::Result<u8> {
    let command = Cli::command();
    match &args.dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("cannot render the man page")?;
            print::bytes(&page)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create the folder {} for the man pages; check that its parent \
                     exists and is writable",
                    dir.display()
                )
            })?;
            clap_mangen::generate_to(command, dir).with_context(|| {
                format!(
                    "cannot write the man pages into {}; check that it is writable",
                    dir.display()
                )
            })?;
        }
    }
    Ok(exit::OK)
}
