//! Log output on standard error: `AIRBACK_LOG` picks the level (default `warn`, `error` with
//! `--quiet`); colours only on a terminal (and not with `NO_COLOR`); a warning or error
//! repeated within a run is printed once (but by `serve`), and [`Repeats::report`] says at the end how often it
//! happened. After an interruption the log is muted ([`mute`]): the abandoned work's last
//! failures are not news.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use super::print::{err, stderr_is_terminal};
use super::settings::LogSettings;

/// Distinct messages remembered; beyond that, messages are printed every time.
const MAX_REMEMBERED: usize = 1000;

/// Set by [`mute`].
static MUTED: AtomicBool = AtomicBool::new(false);

/// Drops every later log message.
pub(super) fn mute() {
    MUTED.store(true, Ordering::Relaxed);
}

/// Installs the log output for the process. The returned [`Repeats`] reports repeated
/// messages at the end; with `once` false (`serve`, which runs for months) every message is
/// printed. The warnings and errors logged inside a `serve` job also go to its history
/// (`crate::serve::joblog`).
pub(super) fn init(settings: &LogSettings, once: bool) -> Repeats {
    let default = if settings.quiet { "error" } else { "warn" };
    let filter = settings
        .filter
        .as_deref()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    let colour = stderr_is_terminal() && !settings.no_color;
    let repeats = Repeats::default();
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::filter::filter_fn(|_| {
            !MUTED.load(Ordering::Relaxed)
        }))
        .with(once.then(|| repeats.clone()))
        .with(crate::serve::joblog::JobLogLayer)
        .with(
            tracing_subscriber::fmt::layer()
                // Secrets seen in locations or the environment never reach the log.
                .with_writer(crate::secrets::ScrubbedStderr)
                .with_target(false)
                .with_ansi(colour),
        )
        .try_init();
    repeats
}

/// Counts warnings and errors by their text, and lets only the first of each through.
#[derive(Clone, Default)]
pub(super) struct Repeats {
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    /// Level and text → its position in `order`.
    index: HashMap<String, usize>,
    /// Level, text and count, in the order first seen.
    order: Vec<(Level, String, u64)>,
}

impl Repeats {
    /// Prints, for each message that came more than once, how many times it came.
    pub(super) fn report(&self) {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for (level, text, n) in &seen.order {
            if *n > 1 {
                let level = if *level == Level::ERROR {
                    "error"
                } else {
                    "warning"
                };
                err!(
                    "{level}: {} (repeated {n} times)",
                    crate::secrets::scrub(text)
                );
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for Repeats {
    fn event_enabled(&self, event: &Event<'_>, _cx: Context<'_, S>) -> bool {
        let level = *event.metadata().level();
        // More verbose levels compare greater.
        if level > Level::WARN {
            return true;
        }
        let mut text = crate::serve::joblog::EventText::default();
        event.record(&mut text);
        let key = format!("{level} {}", text.0);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&i) = seen.index.get(&key) {
            seen.order[i].2 += 1;
            return false;
        }
        if seen.order.len() < MAX_REMEMBERED {
            let i = seen.order.len();
            seen.order.push((level, text.0, 1));
            seen.index.insert(key, i);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_warning_passes_once_and_is_counted() {
        let repeats = Repeats::default();
        let subscriber = tracing_subscriber::registry().with(repeats.clone());
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                tracing::warn!("the same thing");
            }
            tracing::warn!("another thing");
            tracing::info!("not counted");
            tracing::info!("not counted");
        });
        let seen = repeats.seen.lock().unwrap();
        let counts: Vec<(&str, u64)> = seen
            .order
            .iter()
            .map(|(_, text, n)| (text.as_str(), *n))
            .collect();
        assert_eq!(counts, vec![("the same thing", 3), ("another thing", 1)]);
    }
}
