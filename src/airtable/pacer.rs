//! Pacing: keeps the request rate under Airtable's limits, per base and per token, for every
//! clone of a client and every task using it.
//!
//! Airtable allows 5 requests per second per base and 50 per second per token, and a strict
//! server counts *any* one-second window. Pacing evenly at exactly 5/s is therefore not enough:
//! network jitter moves one request's arrival closer to another's and a window then holds six.
//! The pacer keeps, for each base and for the token, the send times of the last `limit`
//! requests, and lets a request go only when the oldest of them is at least `period + margin`
//! old, where `limit / period` is the configured rate and `margin` (default 100 ms) is the
//! jitter budget. Any two requests `limit` apart are then at least `1 s + margin` apart when sent,
//! so the server sees at most `limit` in any second as long as their transit times differ by less
//! than `margin`. At 5/s that is up to 5 requests every 1.1 s: 4.55 requests per second sustained.
//!
//! Waiters queue in FIFO order (a fair async mutex per base, then one for the token), so many
//! tasks sharing a base take turns. A request to a base first waits for its base's turn and then
//! for the token's, and its send time is recorded in both at the same instant.
//!
//! A new gate starts full, as if its scope had just sent `limit` requests, because another
//! process may have: two `airback` runs on one base back to back would otherwise draw a 429.
//!
//! A 429 pauses the base (or the token, for requests outside any base) with `Pacer::penalize`:
//! nothing is sent there until the penalty is over. Time is `tokio::time`, so the unit tests run on
//! a paused clock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// The sliding-window limit: at most `limit` sends in any `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WindowSpec {
    pub(crate) limit: usize,
    pub(crate) period: Duration,
}

impl WindowSpec {
    /// The window for `rate` requests per second plus a jitter `margin`; `None` (no pacing) when
    /// the rate is not a positive finite number.
    pub(crate) fn from_rate(rate: f64, margin: Duration) -> Option<WindowSpec> {
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        let limit = rate.floor().max(1.0);
        Some(WindowSpec {
            limit: limit as usize,
            period: Duration::from_secs_f64(limit / rate) + margin,
        })
    }
}

#[derive(Debug)]
struct GateState {
    spec: Option<WindowSpec>,
    sends: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl GateState {
    /// The earliest instant a request may be sent.
    fn ready_at(&self, now: Instant) -> Instant {
        let mut at = now;
        if let Some(paused_until) = self.paused_until {
            at = at.max(paused_until);
        }
        if let Some(spec) = self.spec
            && self.sends.len() >= spec.limit
        {
            at = at.max(self.sends[self.sends.len() - spec.limit] + spec.period);
        }
        at
    }

    fn record(&mut self, now: Instant) {
        if let Some(spec) = self.spec {
            self.sends.push_back(now);
            while self.sends.len() > spec.limit {
                self.sends.pop_front();
            }
        }
    }
}

/// One rate-limited scope (a base, or the token) with its queue of waiters.
#[derive(Debug)]
struct Gate {
    turn: tokio::sync::Mutex<()>,
    state: Mutex<GateState>,
}

impl Gate {
    /// A gate that starts as if `limit` requests had just been sent: another process (the
    /// previous cron job, a second `airback` on the same base) may have used the last second,
    /// and a strict server would answer our first burst with a 429. The first request waits
    /// one period (1.1 s at 5/s) once per scope and process; after that the window is ours.
    fn new(spec: Option<WindowSpec>) -> Gate {
        let now = Instant::now();
        let sends = spec.map_or_else(VecDeque::new, |spec| {
            std::iter::repeat_n(now, spec.limit).collect()
        });
        Gate {
            turn: tokio::sync::Mutex::new(()),
            state: Mutex::new(GateState {
                spec,
                sends,
                paused_until: None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        // The state is plain data updated in one step; a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn wait_ready(&self) {
        loop {
            let now = Instant::now();
            let at = self.state().ready_at(now);
            if at <= now {
                return;
            }
            tokio::time::sleep_until(at).await;
        }
    }
}

/// The shared pacer of one client and all its clones.
#[derive(Debug)]
pub(crate) struct Pacer {
    per_base: Option<WindowSpec>,
    token: Gate,
    bases: Mutex<HashMap<String, Arc<Gate>>>,
}

impl Pacer {
    /// A pacer with the given per-base and per-token windows (`None` = unlimited).
    pub(crate) fn new(per_base: Option<WindowSpec>, per_token: Option<WindowSpec>) -> Pacer {
        Pacer {
            per_base,
            token: Gate::new(per_token),
            bases: Mutex::new(HashMap::new()),
        }
    }

    fn base_gate(&self, base: &str) -> Arc<Gate> {
        let mut bases = self.bases.lock().unwrap_or_else(|e| e.into_inner());
        bases
            .entry(base.to_owned())
            .or_insert_with(|| Arc::new(Gate::new(self.per_base)))
            .clone()
    }

    /// Waits until one request to `base` (or to no base, e.g. listing bases) may be sent, and
    /// counts it as sent now.
    pub(crate) async fn acquire(&self, base: Option<&str>) {
        let base_gate = base.map(|b| self.base_gate(b));
        let _base_turn = match &base_gate {
            Some(gate) => Some(gate.turn.lock().await),
            None => None,
        };
        loop {
            if let Some(gate) = &base_gate {
                gate.wait_ready().await;
            }
            let _token_turn = self.token.turn.lock().await;
            self.token.wait_ready().await;
            let now = Instant::now();
            let mut token_state = self.token.state();
            if token_state.ready_at(now) > now {
                continue;
            }
            if let Some(gate) = &base_gate {
                let mut base_state = gate.state();
                // A 429 may have paused the base while this task waited for the token.
                if base_state.ready_at(now) > now {
                    continue;
                }
                base_state.record(now);
            }
            token_state.record(now);
            return;
        }
    }

    /// Stops all requests to `base` (or, with `None`, all requests) for `wait` from now. A longer
    /// pause already in force stays.
    pub(crate) fn penalize(&self, base: Option<&str>, wait: Duration) {
        let until = Instant::now() + wait;
        let apply = |state: &mut GateState| {
            state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
        };
        match base {
            Some(base) => apply(&mut self.base_gate(base).state()),
            None => apply(&mut self.token.state()),
        }
    }

    /// When the pause of `base` (or of the token) ends, if one is in force.
    #[cfg(test)]
    pub(crate) fn paused_until(&self, base: Option<&str>) -> Option<Instant> {
        let now = Instant::now();
        let paused = match base {
            Some(base) => self.base_gate(base).state().paused_until,
            None => self.token.state().paused_until,
        };
        paused.filter(|p| *p > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The most sends found in any window of `width` starting at a send, counting both ends
    /// when `closed`.
    fn busiest_window(times: &[Instant], width: Duration, closed: bool) -> usize {
        let mut sorted = times.to_vec();
        sorted.sort();
        (0..sorted.len())
            .map(|i| {
                sorted[i..]
                    .iter()
                    .take_while(|t| {
                        let d = **t - sorted[i];
                        if closed { d <= width } else { d < width }
                    })
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    async fn run_tasks(
        pacer: Arc<Pacer>,
        bases: &[&'static str],
        tasks: usize,
        each: usize,
    ) -> Vec<(usize, Instant)> {
        let mut handles = Vec::new();
        for task in 0..tasks {
            let pacer = pacer.clone();
            let base_index = task % bases.len();
            let base = bases[base_index];
            handles.push(tokio::spawn(async move {
                let mut times = Vec::new();
                for _ in 0..each {
                    pacer.acquire(Some(base)).await;
                    times.push((base_index, Instant::now()));
                    // Some "work" between requests, uneven across tasks.
                    tokio::time::sleep(Duration::from_millis(3 * task as u64)).await;
                }
                times
            }));
        }
        let mut all = Vec::new();
        for handle in handles {
            all.extend(handle.await.unwrap());
        }
        all
    }

    #[test]
    fn window_from_rate() {
        let spec = WindowSpec::from_rate(5.0, Duration::from_millis(100)).unwrap();
        assert_eq!(spec.limit, 5);
        assert_eq!(spec.period, Duration::from_millis(1100));
        let slow = WindowSpec::from_rate(0.5, Duration::ZERO).unwrap();
        assert_eq!((slow.limit, slow.period), (1, Duration::from_secs(2)));
        assert_eq!(WindowSpec::from_rate(0.0, Duration::ZERO), None);
        assert_eq!(WindowSpec::from_rate(f64::INFINITY, Duration::ZERO), None);
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_of_one_second_holds_more_than_the_limit() {
        // No margin: exactly 5 per second, which must still hold for half-open windows.
        let pacer = Arc::new(Pacer::new(WindowSpec::from_rate(5.0, Duration::ZERO), None));
        let start = Instant::now();
        let sends = run_tasks(pacer, &["appA"], 20, 10).await;
        let times: Vec<Instant> = sends.iter().map(|(_, t)| *t).collect();
        assert_eq!(times.len(), 200);
        assert_eq!(busiest_window(&times, Duration::from_secs(1), false), 5);
        // And it is not slower than it has to be: the first send waits one period (the
        // busy start), then 200 sends at 5/s take 39 s.
        let last = *times.iter().max().unwrap();
        assert_eq!(last - start, Duration::from_secs(40));
    }

    #[tokio::test(start_paused = true)]
    async fn the_margin_keeps_closed_windows_under_the_limit_at_over_4_5_per_second() {
        let pacer = Arc::new(Pacer::new(
            WindowSpec::from_rate(5.0, Duration::from_millis(100)),
            WindowSpec::from_rate(50.0, Duration::from_millis(100)),
        ));
        let start = Instant::now();
        let sends = run_tasks(pacer, &["appA"], 20, 10).await;
        let times: Vec<Instant> = sends.iter().map(|(_, t)| *t).collect();
        // Even if every send arrived up to 100 ms late, windows of 1 s hold at most 5.
        assert_eq!(busiest_window(&times, Duration::from_millis(1099), true), 5);
        let last = *times.iter().max().unwrap();
        let rate = (times.len() - 1) as f64 / (last - start).as_secs_f64();
        assert!(rate >= 4.5, "rate {rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_limit_spans_bases() {
        let pacer = Arc::new(Pacer::new(
            WindowSpec::from_rate(5.0, Duration::ZERO),
            WindowSpec::from_rate(7.0, Duration::ZERO),
        ));
        let sends = run_tasks(pacer, &["appA", "appB", "appC"], 12, 10).await;
        let all: Vec<Instant> = sends.iter().map(|(_, t)| *t).collect();
        assert_eq!(busiest_window(&all, Duration::from_secs(1), false), 7);
        for base in 0..3 {
            let one: Vec<Instant> = sends
                .iter()
                .filter(|(b, _)| *b == base)
                .map(|(_, t)| *t)
                .collect();
            assert!(busiest_window(&one, Duration::from_secs(1), false) <= 5);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_penalty_stops_that_base_only() {
        let pacer = Pacer::new(WindowSpec::from_rate(5.0, Duration::ZERO), None);
        pacer.acquire(Some("appA")).await;
        let start = Instant::now();
        pacer.penalize(Some("appA"), Duration::from_secs(30));
        // A shorter penalty does not shorten the pause in force.
        pacer.penalize(Some("appA"), Duration::from_secs(1));
        assert_eq!(
            pacer.paused_until(Some("appA")),
            Some(start + Duration::from_secs(30))
        );
        pacer.acquire(Some("appB")).await;
        assert_eq!(
            Instant::now(),
            start + Duration::from_secs(1),
            "only B's busy start"
        );
        pacer.acquire(Some("appA")).await;
        assert_eq!(Instant::now(), start + Duration::from_secs(30));
        assert_eq!(pacer.paused_until(Some("appA")), None);
    }

    /// Another process may have used the last second: the first request of a new pacer waits
    /// one period, then a full window's worth goes at once.
    #[tokio::test(start_paused = true)]
    async fn a_new_pacer_starts_as_if_the_window_were_full() {
        let pacer = Pacer::new(WindowSpec::from_rate(5.0, Duration::from_millis(100)), None);
        let start = Instant::now();
        for _ in 0..5 {
            pacer.acquire(Some("appA")).await;
            assert_eq!(Instant::now(), start + Duration::from_millis(1100));
        }
        pacer.acquire(Some("appA")).await;
        assert_eq!(Instant::now(), start + Duration::from_millis(2200));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let pacer = Pacer::new(None, None);
        let start = Instant::now();
        for _ in 0..1000 {
            pacer.acquire(Some("appA")).await;
            pacer.acquire(None).await;
        }
        assert_eq!(Instant::now(), start);
        pacer.penalize(None, Duration::from_secs(5));
        pacer.acquire(None).await;
        assert_eq!(Instant::now(), start + Duration::from_secs(5));
    }
}
