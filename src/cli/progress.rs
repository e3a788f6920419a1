//! Progress for long runs: indicatif bars on a terminal, a plain line every 30 seconds when
//! stderr is not a terminal (cron mail stays short), nothing with `--quiet`. One implementation
//! of [`Progress`] for each, whatever the command.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::print::{err, stderr_is_terminal};
use crate::progress::{NoProgress, Progress};

/// The right progress reporter for a snapshot or an export of `label` (a base): records read or
/// written, attachment bytes stored or written.
pub(super) fn for_backup(quiet: bool, label: &str) -> Arc<dyn Progress> {
    if quiet {
        Arc::new(NoProgress)
    } else if stderr_is_terminal() {
        Arc::new(Bars::tables(label))
    } else {
        Arc::new(Lines::new(label))
    }
}

/// A progress reporter for one of several snapshots running at once: a line every 30 seconds
/// (bars of several bases would overwrite each other).
pub(super) fn for_backup_lines(quiet: bool, label: &str) -> Arc<dyn Progress> {
    if quiet {
        Arc::new(NoProgress)
    } else {
        Arc::new(Lines::new(label))
    }
}

/// The right progress reporter for a restore: its passes.
pub(super) fn for_restore(quiet: bool) -> Arc<dyn Progress> {
    if quiet {
        Arc::new(NoProgress)
    } else if stderr_is_terminal() {
        Arc::new(Bars::passes())
    } else {
        Arc::new(Lines::new("restore"))
    }
}

/// Bars on stderr. A snapshot or an export shows two from the start: a spinner of records
/// (with the current table's name) and a bar of attachment bytes. A restore shows one bar per
/// pass, from the pass's start.
struct Bars {
    multi: MultiProgress,
    /// The records spinner, or the current pass's bar.
    items: Mutex<Option<ProgressBar>>,
    /// Attachment bytes, when the operation counts them.
    bytes: Option<ProgressBar>,
}

impl Bars {
    /// The bars of a snapshot or an export of `label`.
    fn tables(label: &str) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5));
        let records = multi.add(ProgressBar::new_spinner());
        records.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {pos} records ({per_sec}) {msg}")
                .expect("valid template"),
        );
        records.set_prefix(label.to_string());
        records.enable_steady_tick(Duration::from_millis(200));
        let attachments = multi.add(ProgressBar::new(0));
        attachments.set_style(
            ProgressStyle::with_template(
                "  attachments [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Bars {
            multi,
            items: Mutex::new(Some(records)),
            bytes: Some(attachments),
        }
    }

    /// The bars of a restore: none until a pass starts.
    fn passes() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5)),
            items: Mutex::new(None),
            bytes: None,
        }
    }

    /// Clears every bar from the terminal.
    fn clear(&self) {
        if let Some(bar) = &*self.items.lock().unwrap_or_else(|e| e.into_inner()) {
            bar.finish_and_clear();
        }
        if let Some(bar) = &self.bytes {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bars {
    fn phase(&self, name: &str, total: Option<u64>) {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let Some(total) = total else {
            if let Some(records) = &*items {
                records.set_message(format!("table `{name}`"));
            }
            return;
        };
        if let Some(old) = items.take() {
            old.finish_and_clear();
            self.multi.remove(&old);
        }
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} ({per_sec}, {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(name.to_string());
        *items = Some(bar);
    }
    fn items(&self, n: u64) {
        if let Some(bar) = &*self.items.lock().unwrap_or_else(|e| e.into_inner()) {
            bar.inc(n);
        }
    }
    fn bytes_expected(&self, n: u64) {
        if let Some(bar) = &self.bytes {
            bar.inc_length(n);
        }
    }
    fn bytes(&self, n: u64) {
        if let Some(bar) = &self.bytes {
            bar.inc(n);
        }
    }
    fn finish(&self) {
        self.clear();
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Lines on stderr, prefixed with a label: one when a restore's pass starts, and one at most
/// every 30 seconds with what is done.
struct Lines {
    label: String,
    state: Mutex<LinesState>,
}

struct LinesState {
    /// The current pass of a restore and the items it will count.
    pass: Option<(String, u64)>,
    /// Items done (in the current pass, if any).
    items: u64,
    bytes: u64,
    /// When the last line was written (or the current pass started).
    last: Instant,
}

impl Lines {
    fn new(label: &str) -> Lines {
        Lines {
            label: label.to_string(),
            state: Mutex::new(LinesState {
                pass: None,
                items: 0,
                bytes: 0,
                last: Instant::now(),
            }),
        }
    }

    /// Adds to the counts, and writes a line if the last one is 30 seconds old.
    fn count(&self, items: u64, bytes: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.items += items;
        state.bytes += bytes;
        if state.last.elapsed() < Duration::from_secs(30) {
            return;
        }
        state.last = Instant::now();
        match &state.pass {
            Some((name, total)) => err!("{}: {name} {}/{total}", self.label, state.items),
            None => err!(
                "{}: {} records read, {} MB of attachments stored",
                self.label,
                state.items,
                state.bytes / 1_000_000
            ),
        }
    }
}

impl Progress for Lines {
    fn phase(&self, name: &str, total: Option<u64>) {
        // A table of a snapshot or an export: the 30-second lines say enough.
        let Some(total) = total else { return };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.pass = Some((name.to_string(), total));
        state.items = 0;
        state.last = Instant::now();
        err!("{}: {name} ({total} to do)", self.label);
    }
    fn items(&self, n: u64) {
        self.count(n, 0);
    }
    fn bytes(&self, n: u64) {
        self.count(0, n);
    }
}
