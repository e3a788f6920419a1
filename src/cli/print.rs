//! Writing what commands print. Standard output goes through [`out!`]: when it is closed
//! (`airback snapshots | head -n 1`), the write returns [`StdoutClosed`], which `?` carries up
//! to [`super::main`], which ends the command quietly with exit code 0. Messages for people go
//! to standard error through [`err!`], which ignores a closed standard error. Nothing here
//! panics, unlike `println!`.

use std::fmt;
use std::io::{self, Write};

/// Standard output was closed by its reader: the command ends quietly, with exit code 0.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// Writes one line to standard output. A closed standard output gives [`StdoutClosed`];
/// any other failure (a full disk behind a redirection) is an error that says so.
pub fn line(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{args}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::anyhow!("cannot write to standard output: {e}")),
    }
}

/// Writes one line to standard error; a closed standard error is ignored (there is nowhere
/// left to say anything).
pub fn error_line(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

/// Whether `err` is [`StdoutClosed`].
pub fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.downcast_ref::<StdoutClosed>().is_some()
}

/// `1 error`, `2 errors`, `1 retry`, `3 retries`: a count with its noun, plural when the count
/// is not one.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        return format!("1 {noun}");
    }
    match noun.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}

/// `println!` for commands: `out!("{x}")?` writes a line to standard output, and returns
/// [`StdoutClosed`] when its reader is gone.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::print::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: a closed standard error is ignored.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::cli::print::error_line(format_args!($($arg)*))
    };
}

pub(crate) use {err, out};

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
}
