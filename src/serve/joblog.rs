//! A job's log lines from the process log: the warnings and errors logged (`tracing`) while
//! the job's future runs inside its [`span`] are kept apart and added to the job's history
//! when it ends ([`take`]). The process installs [`JobLogLayer`] beside its log output; work a
//! job hands to a task of its own is outside the span and only reaches the process log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::history::LogLine;

/// Lines kept per job; later ones are counted in one last line.
const MAX_LINES: usize = 200;

/// The lines kept of one run, and how many more were left out.
type Kept = (Vec<LogLine>, usize);

/// Lines logged by running jobs, by [`Capture`] key, until [`take`]n.
static LINES: LazyLock<Mutex<HashMap<u64, Kept>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The last key handed out: each run of a job gets its own, so two schedulers in one process
/// (tests) never share lines.
static LAST_KEY: AtomicU64 = AtomicU64::new(0);

/// Where the lines of one job run are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capture(u64);

/// The span a job's future runs in (at level error, so that every log filter keeps it), and
/// the key its lines are kept under.
pub fn span(job: i64) -> (tracing::Span, Capture) {
    let key = LAST_KEY.fetch_add(1, Ordering::Relaxed) + 1;
    (
        tracing::error_span!("job", id = job, run = key),
        Capture(key),
    )
}

/// The lines logged so far inside the span of `capture`, removed from the store.
pub fn take(capture: Capture) -> Vec<LogLine> {
    let mut lines = LINES.lock().unwrap_or_else(|e| e.into_inner());
    let Some((mut kept, dropped)) = lines.remove(&capture.0) else {
        return Vec::new();
    };
    if dropped > 0 {
        kept.push(LogLine::new(
            "warning",
            format!("{dropped} more log lines were left out"),
        ));
    }
    kept
}

/// The `tracing` layer that files warnings and errors under the job whose span they were
/// logged in.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobLogLayer;

/// The capture key kept in a job span's extensions.
struct JobKey(u64);

#[derive(Default)]
struct KeyField(Option<u64>);

impl Visit for KeyField {
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "run" {
            self.0 = u64::try_from(value).ok();
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "run" {
            self.0 = Some(value);
        }
    }
    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// An event's message and fields as one line (also what the CLI's repeat counting keys on).
#[derive(Default)]
pub(crate) struct EventText(pub(crate) String);

impl Visit for EventText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = if name == "message" {
            write!(self.0, "{value:?}")
        } else {
            write!(self.0, "{name}={value:?}")
        };
    }
}

impl<S> Layer<S> for JobLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "job" {
            return;
        }
        let mut field = KeyField::default();
        attrs.record(&mut field);
        if let (Some(key), Some(span)) = (field.0, ctx.span(id)) {
            span.extensions_mut().insert(JobKey(key));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        // More verbose levels compare greater.
        if level > Level::WARN {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let Some(key) = scope
            .from_root()
            .find_map(|span| span.extensions().get::<JobKey>().map(|k| k.0))
        else {
            return;
        };
        let mut text = EventText::default();
        event.record(&mut text);
        let line = LogLine::new(
            if level == Level::ERROR {
                "error"
            } else {
                "warning"
            },
            crate::secrets::scrub(&text.0),
        );
        let mut lines = LINES.lock().unwrap_or_else(|e| e.into_inner());
        let (kept, dropped) = lines.entry(key).or_default();
        if kept.len() < MAX_LINES {
            kept.push(line);
        } else {
            *dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn warnings_inside_a_job_span_are_filed_under_the_job() {
        let subscriber = tracing_subscriber::registry().with(JobLogLayer);
        let (first, second) = tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("outside any job");
            let (one, first) = span(1);
            one.in_scope(|| {
                tracing::warn!(pack = "abc", "retrying an upload");
                tracing::info!("not a warning");
                tracing::info_span!("inner").in_scope(|| tracing::error!("deep inside"));
            });
            // The same job id in another scheduler (or run) is kept apart.
            let (two, second) = span(1);
            two.in_scope(|| tracing::warn!("the other run"));
            (first, second)
        });
        assert_eq!(
            take(first),
            vec![
                LogLine::new("warning", "retrying an upload pack=\"abc\""),
                LogLine::new("error", "deep inside"),
            ]
        );
        assert_eq!(take(first), vec![]);
        assert_eq!(take(second), vec![LogLine::new("warning", "the other run")]);
    }
}
