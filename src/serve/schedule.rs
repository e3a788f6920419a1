//! When jobs are due: cron expressions (5 fields, parsed by `croner`) read in a time zone
//! (jiff), and the clock the scheduler reads and sleeps on. Everything here is pure but the
//! [`SystemClock`]; tests give the scheduler a [`ManualClock`] and move it by hand, so nothing
//! waits for real time.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A schedule: a cron expression read in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
    text: String,
}

/// Why a schedule cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The expression is not a 5-field cron expression.
    #[error(
        "`{text}` is not a cron expression of 5 fields (minute hour day-of-month month \
         day-of-week), such as \"15 3 * * *\": {reason}"
    )]
    Cron {
        /// The expression as written.
        text: String,
        /// What the parser said.
        reason: String,
    },
    /// The time zone is unknown.
    #[error(
        "`{name}` is not a time zone this machine knows ({reason}); use UTC, local or an IANA \
         name such as Europe/Berlin"
    )]
    Zone {
        /// The name as written.
        name: String,
        /// What the zone database said.
        reason: String,
    },
}

/// Parses a 5-field cron expression (no seconds, no year).
pub fn parse_cron(text: &str) -> Result<Cron, ScheduleError> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text.trim())
        .map_err(|e| ScheduleError::Cron {
            text: text.to_owned(),
            reason: e.to_string(),
        })
}

/// The zone named `UTC`, `local` (the system's) or by its IANA name.
pub fn zone(name: &str) -> Result<TimeZone, ScheduleError> {
    match name.trim() {
        "UTC" => Ok(TimeZone::UTC),
        "local" => Ok(TimeZone::system()),
        other => TimeZone::get(other).map_err(|e| ScheduleError::Zone {
            name: name.to_owned(),
            reason: e.to_string(),
        }),
    }
}

impl Schedule {
    /// The schedule `text` (cron) read in the zone `zone_name`.
    pub fn new(text: &str, zone_name: &str) -> Result<Schedule, ScheduleError> {
        Ok(Schedule {
            cron: parse_cron(text)?,
            zone: zone(zone_name)?,
            text: text.trim().to_owned(),
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `after` that the schedule names, or `None` when it names
    /// none (a date such as 30 February).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let zoned = after.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// When a job on this schedule that last ran (started) at `last` is next due, seen at
    /// `now`: the first slot after `last`, which is `now` or earlier when slots were missed
    /// (they count once, not once per slot). A job that never ran is due at the first slot
    /// after `now`.
    pub fn due(&self, last: Option<Timestamp>, now: Timestamp) -> Option<Timestamp> {
        match last {
            Some(last) => self.next_after(last).map(|next| next.max(now)),
            None => self.next_after(now),
        }
    }
}

/// What the scheduler reads the time from and sleeps on.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Completes at `when` (at once when it has passed).
    fn sleep_until(&self, when: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The real clock: the system time, and tokio's timer to sleep.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, when: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let wait = Timestamp::now()
            .duration_until(when)
            .try_into()
            .unwrap_or(std::time::Duration::ZERO);
        // Wakes at least hourly so a changed system clock (or a suspended machine) is noticed.
        Box::pin(tokio::time::sleep(
            wait.min(std::time::Duration::from_secs(3600)),
        ))
    }
}

/// A clock that moves only when told ([`ManualClock::set`]): for tests.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Timestamp>>,
    moved: Arc<tokio::sync::watch::Sender<Timestamp>>,
}

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: Timestamp) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(now)),
            moved: Arc::new(tokio::sync::watch::Sender::new(now)),
        }
    }

    /// Moves the clock to `now`, waking the sleepers whose time has come.
    pub fn set(&self, now: Timestamp) {
        *self.now.lock().expect("clock lock") = now;
        self.moved.send_replace(now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().expect("clock lock")
    }

    fn sleep_until(&self, when: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut moved = self.moved.subscribe();
        Box::pin(async move {
            let _ = moved.wait_for(|now| *now >= when).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn next_run_is_read_in_the_zone() {
        let s = Schedule::new("15 3 * * *", "Europe/Berlin").unwrap();
        // 03:15 in Berlin in winter is 02:15 UTC.
        assert_eq!(
            s.next_after(ts("2026-01-10T12:00:00Z")),
            Some(ts("2026-01-11T02:15:00Z"))
        );
        // In summer, 01:15 UTC.
        assert_eq!(
            s.next_after(ts("2026-07-10T12:00:00Z")),
            Some(ts("2026-07-11T01:15:00Z"))
        );
        // Strictly after: the slot itself is not "next".
        assert_eq!(
            s.next_after(ts("2026-07-11T01:15:00Z")),
            Some(ts("2026-07-12T01:15:00Z"))
        );
        let utc = Schedule::new("0 */6 * * MON", "UTC").unwrap();
        // 2026-12-05 is a Saturday: next Monday 00:00.
        assert_eq!(
            utc.next_after(ts("2026-12-05T10:00:00Z")),
            Some(ts("2026-12-07T00:00:00Z"))
        );
    }

    #[test]
    fn missed_slots_are_due_once_at_start() {
        let s = Schedule::new("0 * * * *", "UTC").unwrap();
        let now = ts("2026-03-01T10:30:00Z");
        // Ran at 06:00; 07:00 to 10:00 were missed: due now (once), not four times.
        assert_eq!(s.due(Some(ts("2026-03-01T06:00:00Z")), now), Some(now));
        // Ran at 10:00: next at 11:00.
        assert_eq!(
            s.due(Some(ts("2026-03-01T10:00:00Z")), now),
            Some(ts("2026-03-01T11:00:00Z"))
        );
        // Never ran: the next slot.
        assert_eq!(s.due(None, now), Some(ts("2026-03-01T11:00:00Z")));
    }

    #[test]
    fn bad_expressions_and_zones_say_what_to_write() {
        let e = Schedule::new("15 3 * *", "UTC").unwrap_err().to_string();
        assert!(e.contains("5 fields") && e.contains("15 3 * *"), "{e}");
        let e = Schedule::new("0 15 3 * * *", "UTC")
            .unwrap_err()
            .to_string();
        assert!(e.contains("5 fields"), "{e}");
        let e = Schedule::new("15 3 * * *", "Mars/Olympus")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Mars/Olympus") && e.contains("IANA"), "{e}");
    }

    #[tokio::test]
    async fn the_manual_clock_wakes_sleepers_when_moved() {
        let clock = ManualClock::new(ts("2026-01-01T00:00:00Z"));
        let sleep = clock.sleep_until(ts("2026-01-01T01:00:00Z"));
        let task = tokio::spawn(sleep);
        clock.set(ts("2026-01-01T00:30:00Z"));
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        clock.set(ts("2026-01-01T01:00:00Z"));
        task.await.unwrap();
    }
}
