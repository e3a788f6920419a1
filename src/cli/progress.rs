//! Progress for long runs: indicatif bars on a terminal, a plain line every 30 seconds when
//! stderr is not a terminal (cron mail stays short), nothing with `--quiet`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::print::{err, stderr_is_terminal};
use crate::backup::{NoProgress, Progress};

/// The right progress reporter for this run.
pub fn for_backup(quiet: bool, base: &str) -> std::sync::Arc<dyn Progress> {
    if quiet {
        std::sync::Arc::new(NoProgress)
    } else if stderr_is_terminal() {
        std::sync::Arc::new(Bars::new(base))
    } else {
        std::sync::Arc::new(LogLines::new(base))
    }
}

/// Two bars: records read, attachment bytes stored.
struct Bars {
    _multi: MultiProgress,
    records: ProgressBar,
    attachments: ProgressBar,
}

impl Bars {
    fn new(base: &str) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5));
        let records = multi.add(ProgressBar::new_spinner());
        records.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {pos} records ({per_sec}) {msg}")
                .expect("valid template"),
        );
        records.set_prefix(base.to_string());
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
            _multi: multi,
            records,
            attachments,
        }
    }
}

impl Progress for Bars {
    fn table(&self, name: &str) {
        self.records.set_message(format!("table `{name}`"));
    }
    fn records(&self, n: u64) {
        self.records.inc(n);
    }
    fn attachment_queued(&self, bytes: u64) {
        self.attachments.inc_length(bytes);
    }
    fn attachment_bytes(&self, n: u64) {
        self.attachments.inc(n);
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.records.finish_and_clear();
        self.attachments.finish_and_clear();
    }
}

/// A line on stderr at most every 30 seconds.
struct LogLines {
    base: String,
    records: AtomicU64,
    bytes: AtomicU64,
    last: Mutex<Instant>,
}

impl LogLines {
    fn new(base: &str) -> LogLines {
        LogLines {
            base: base.to_string(),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    fn maybe_print(&self) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(30) {
            *last = Instant::now();
            err!(
                "{}: {} records read, {} MB of attachments stored",
                self.base,
                self.records.load(Ordering::Relaxed),
                self.bytes.load(Ordering::Relaxed) / 1_000_000
            );
        }
    }
}

impl Progress for LogLines {
    fn records(&self, n: u64) {
        self.records.fetch_add(n, Ordering::Relaxed);
        self.maybe_print();
    }
    fn attachment_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.maybe_print();
    }
}

/// The right progress reporter for a restore.
pub fn for_restore(quiet: bool) -> std::sync::Arc<dyn crate::restore::RestoreProgress> {
    if quiet {
        std::sync::Arc::new(crate::restore::NoProgress)
    } else if stderr_is_terminal() {
        std::sync::Arc::new(PassBar::default())
    } else {
        std::sync::Arc::new(PassLines::default())
    }
}

/// One bar for the current pass.
#[derive(Default)]
struct PassBar {
    bar: Mutex<Option<ProgressBar>>,
}

impl crate::restore::RestoreProgress for PassBar {
    fn pass(&self, name: &str, total: u64) {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(5));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} ({per_sec}, {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(name.to_string());
        let mut slot = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.replace(bar) {
            old.finish_and_clear();
        }
    }
    fn advance(&self, n: u64) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            bar.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

/// A line when a pass starts and every 30 seconds.
struct PassLines {
    state: Mutex<(String, u64, u64, Instant)>,
}

impl Default for PassLines {
    fn default() -> Self {
        PassLines {
            state: Mutex::new((String::new(), 0, 0, Instant::now())),
        }
    }
}

impl crate::restore::RestoreProgress for PassLines {
    fn pass(&self, name: &str, total: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = (name.to_string(), total, 0, Instant::now());
        err!("restore: {name} ({total} to do)");
    }
    fn advance(&self, n: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.2 += n;
        if state.3.elapsed() >= Duration::from_secs(30) {
            state.3 = Instant::now();
            err!("restore: {} {}/{}", state.0, state.2, state.1);
        }
    }
}
