//! Everything airback prints, and the only code that writes to standard output or standard
//! error (`tracing`'s log, set up in `logging.rs`, aside). The crate denies clippy's
//! `print_stdout` and `print_stderr` lints; this module writes through `std::io` instead.
//!
//! A command hands each result to a [`Printer`] as a serializable value with a text
//! rendering: with `--json` the value is printed as one JSON document on one line (never any
//! text on standard output beside it); otherwise the rendering writes lines through [`Text`],
//! either the result itself ([`Text::line`], printed even with `--quiet`) or what only informs
//! ([`Text::note`], left out with `--quiet`). `--quiet` never changes JSON.
//!
//! Standard output is written line by line. When it is closed (`airback snapshots | head -n
//! 1`), the write returns [`StdoutClosed`], which `?` carries up to [`super::main`], which
//! ends the command quietly with exit code 0. Messages for people go to standard error through
//! [`err!`], which ignores a closed standard error. Nothing here panics, unlike `println!`.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::path::Path;

use serde::Serialize;

/// Standard output was closed by its reader: the command ends quietly, with exit code 0.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub(crate) struct StdoutClosed;

/// Writes one line to standard output. A closed standard output gives [`StdoutClosed`];
/// any other failure (a full disk behind a redirection) is an error that says so.
fn line(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{args}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::anyhow!("cannot write to standard output: {e}")),
    }
}

/// Writes `data` as it is to standard output (a generated script or page), with [`line`]'s
/// handling of a closed or failing standard output.
pub(crate) fn bytes(data: &[u8]) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(data).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::anyhow!("cannot write to standard output: {e}")),
    }
}

/// Writes one line to standard error; a closed standard error is ignored (there is nowhere
/// left to say anything).
pub(crate) fn error_line(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

/// Whether `err` is [`StdoutClosed`].
pub(crate) fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.downcast_ref::<StdoutClosed>().is_some()
}

/// Standard output as a stream for a package (`export -o -`), buffered by its writer.
pub(crate) fn stdout_stream() -> Box<dyn Write + Send> {
    Box::new(io::stdout())
}

/// Whether standard output is a terminal (an archive is not for the screen).
pub(crate) fn stdout_is_terminal() -> bool {
    io::stdout().is_terminal()
}

/// Whether standard error is a terminal (progress bars and colours only then).
pub(crate) fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

/// Whether `path` is the file standard output writes to (`-o /dev/stdout`, or a file the
/// shell redirected standard output to).
pub(crate) fn is_stdout_file(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let stdout = io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .and_then(|fd| std::fs::File::from(fd).metadata());
        match (std::fs::metadata(path), stdout) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// How a command prints its results: text or `--json`, with or without `--quiet`. Cheap to
/// copy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    json: bool,
    quiet: bool,
    to_stderr: bool,
}

impl Printer {
    /// A printer for `--json` and `--quiet` as given.
    pub(crate) fn new(json: bool, quiet: bool) -> Printer {
        Printer {
            json,
            quiet,
            to_stderr: false,
        }
    }

    /// The same printer, writing to standard error what it would write to standard output
    /// when `yes` (standard output carries an archive).
    pub(crate) fn to_stderr(self, yes: bool) -> Printer {
        Printer {
            to_stderr: yes,
            ..self
        }
    }

    /// Whether results are printed as JSON (`--json`).
    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// Whether progress may be shown: neither `--quiet` nor `--json`.
    pub(crate) fn shows_progress(&self) -> bool {
        !self.quiet && !self.json
    }

    /// Prints one result: with `--json`, `value` as one JSON document on one line; otherwise
    /// whatever `text` writes.
    pub(crate) fn result<T: Serialize + ?Sized>(
        &self,
        value: &T,
        text: impl FnOnce(&Text) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if self.json {
            let json = serde_json::to_string(value)?;
            return self.write(format_args!("{json}"));
        }
        text(&Text { printer: *self })
    }

    /// A remark outside any result (what the demo is doing): text only, left out with
    /// `--quiet` and with `--json`. Only the demo uses it, which a build without the `fake`
    /// feature leaves out.
    #[cfg_attr(not(feature = "fake"), allow(dead_code))]
    pub(crate) fn note(&self, args: fmt::Arguments<'_>) -> anyhow::Result<()> {
        if self.json || self.quiet {
            return Ok(());
        }
        self.write(args)
    }

    fn write(&self, args: fmt::Arguments<'_>) -> anyhow::Result<()> {
        if self.to_stderr {
            error_line(args);
            Ok(())
        } else {
            line(args)
        }
    }
}

/// Where a text rendering writes, given by [`Printer::result`].
pub(crate) struct Text {
    printer: Printer,
}

impl Text {
    /// A line of the result itself: printed even with `--quiet`.
    pub(crate) fn line(&self, args: fmt::Arguments<'_>) -> anyhow::Result<()> {
        self.printer.write(args)
    }

    /// A line that only informs (a summary, a count): left out with `--quiet`.
    pub(crate) fn note(&self, args: fmt::Arguments<'_>) -> anyhow::Result<()> {
        if self.printer.quiet {
            return Ok(());
        }
        self.printer.write(args)
    }
}

/// `1 error`, `2 errors`, `1 retry`, `3 retries`: a count with its noun, plural when the count
/// is not one.
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        return format!("1 {noun}");
    }
    match noun.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}

/// `eprintln!` that never panics: a closed standard error is ignored.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::cli::print::error_line(format_args!($($arg)*))
    };
}

pub(crate) use err;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(count(1, "error"), "1 error");
        assert_eq!(count(0, "error"), "0 errors");
        assert_eq!(count(2, "snapshot"), "2 snapshots");
        assert_eq!(count(1, "retry"), "1 retry");
        assert_eq!(count(3, "retry"), "3 retries");
        assert_eq!(count(2, "key"), "2 keys");
        assert_eq!(count(2, "index file"), "2 index files");
    }

    #[test]
    fn quiet_renders_results_and_hides_progress() {
        let mut called = false;
        Printer::new(false, true)
            .result(&1, |_| {
                called = true;
                Ok(())
            })
            .unwrap();
        assert!(called, "--quiet skipped a result's text rendering");
        assert!(!Printer::new(false, true).shows_progress());
        assert!(!Printer::new(true, false).shows_progress());
        assert!(Printer::new(false, false).shows_progress());
    }
}
