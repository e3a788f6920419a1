//! Airtable's rate limits: at most N requests in any sliding one-second window per base (5 by
//! default) and per token owner (50), and a penalty after going over.
//!
//! The first request over a limit gets 429 and starts the penalty (30 s by default); every
//! request to that base (or from that token) during the penalty gets 429 too, without
//! extending it. Requests refused with 429 do not count toward the window. Counting is exact
//! on arrival times, so a client pacing at exactly the limit with any jitter will be caught,
//! as it would be by the real service.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitScope {
    Base,
    Token,
}

/// A refused request: which limit, and how long until the penalty ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limited {
    pub(crate) scope: LimitScope,
    pub(crate) retry_after: Duration,
}

#[derive(Debug, Default)]
struct Window {
    admitted: VecDeque<Instant>,
    penalty_until: Option<Instant>,
}

impl Window {
    /// Admits a request at `now` or says how long the penalty still runs.
    fn check(&self, limit: u32, now: Instant) -> Result<(), Duration> {
        if let Some(until) = self.penalty_until
            && now < until
        {
            return Err(until - now);
        }
        let in_window = self
            .admitted
            .iter()
            .rev()
            .take_while(|at| now.duration_since(**at) < WINDOW)
            .count();
        if in_window >= limit as usize {
            return Err(Duration::ZERO);
        }
        Ok(())
    }

    fn admit(&mut self, limit: u32, now: Instant) {
        while self.admitted.len() >= limit.max(1) as usize {
            self.admitted.pop_front();
        }
        self.admitted.push_back(now);
    }

    fn punish(&mut self, penalty: Duration, now: Instant) -> Duration {
        self.penalty_until = Some(now + penalty);
        self.admitted.clear();
        penalty
    }
}

/// Limits for all bases and tokens.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_base: Option<u32>,
    per_token: Option<u32>,
    penalty: Duration,
    bases: HashMap<String, Window>,
    tokens: HashMap<String, Window>,
}

impl RateLimiter {
    pub(crate) fn new(
        per_base: Option<u32>,
        per_token: Option<u32>,
        penalty: Duration,
    ) -> RateLimiter {
        RateLimiter {
            per_base,
            per_token,
            penalty,
            bases: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    /// Admits one request from `token_owner`, to `base` when the route names one.
    pub(crate) fn check(
        &mut self,
        base: Option<&str>,
        token_owner: &str,
        now: Instant,
    ) -> Result<(), Limited> {
        // A base can be in its penalty even with the limit off (see `punish_base`).
        let base_window = base.map(|base| self.bases.entry(base.to_owned()).or_default());
        if let Some(window) = base_window
            && let Err(remaining) = window.check(self.per_base.unwrap_or(u32::MAX), now)
        {
            let retry_after = if remaining.is_zero() {
                window.punish(self.penalty, now)
            } else {
                remaining
            };
            return Err(Limited {
                scope: LimitScope::Base,
                retry_after,
            });
        }
        if let Some(limit) = self.per_token {
            let window = self.tokens.entry(token_owner.to_owned()).or_default();
            if let Err(remaining) = window.check(limit, now) {
                let retry_after = if remaining.is_zero() {
                    window.punish(self.penalty, now)
                } else {
                    remaining
                };
                return Err(Limited {
                    scope: LimitScope::Token,
                    retry_after,
                });
            }
            window.admit(limit, now);
        }
        if let (Some(limit), Some(base)) = (self.per_base, base)
            && let Some(window) = self.bases.get_mut(base)
        {
            window.admit(limit, now);
        }
        Ok(())
    }

    /// Starts `base`'s penalty now, as if it had just gone over its limit.
    pub(crate) fn punish_base(&mut self, base: &str, now: Instant) {
        let penalty = self.penalty;
        self.bases
            .entry(base.to_owned())
            .or_default()
            .punish(penalty, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixth_request_within_a_second_starts_the_penalty() {
        let mut limiter = RateLimiter::new(Some(5), None, Duration::from_secs(30));
        let start = Instant::now();
        for i in 0..5 {
            assert!(
                limiter
                    .check(Some("appA"), "usr", start + Duration::from_millis(i * 150))
                    .is_ok()
            );
        }
        let refused = limiter
            .check(Some("appA"), "usr", start + Duration::from_millis(900))
            .unwrap_err();
        assert_eq!(refused.scope, LimitScope::Base);
        assert_eq!(refused.retry_after, Duration::from_secs(30));
        // Still refused long after the window, until the penalty ends, and other bases are fine.
        assert!(
            limiter
                .check(Some("appA"), "usr", start + Duration::from_secs(20))
                .is_err()
        );
        assert!(
            limiter
                .check(Some("appB"), "usr", start + Duration::from_secs(20))
                .is_ok()
        );
        assert!(
            limiter
                .check(Some("appA"), "usr", start + Duration::from_secs(31))
                .is_ok()
        );
    }

    #[test]
    fn the_window_slides() {
        let mut limiter = RateLimiter::new(Some(2), None, Duration::from_secs(30));
        let start = Instant::now();
        assert!(limiter.check(Some("appA"), "usr", start).is_ok());
        assert!(
            limiter
                .check(Some("appA"), "usr", start + Duration::from_millis(600))
                .is_ok()
        );
        assert!(
            limiter
                .check(Some("appA"), "usr", start + Duration::from_millis(1000))
                .is_ok()
        );
        assert!(
            limiter
                .check(Some("appA"), "usr", start + Duration::from_millis(1500))
                .is_err()
        );
    }

    #[test]
    fn token_limit_spans_bases_and_none_turns_limits_off() {
        let mut limiter = RateLimiter::new(Some(5), Some(3), Duration::from_secs(1));
        let now = Instant::now();
        for base in ["appA", "appB", "appC"] {
            assert!(limiter.check(Some(base), "usr", now).is_ok());
        }
        assert_eq!(
            limiter.check(Some("appD"), "usr", now).unwrap_err().scope,
            LimitScope::Token
        );
        let mut off = RateLimiter::new(None, None, Duration::from_secs(1));
        assert!((0..1000).all(|_| off.check(Some("appA"), "usr", now).is_ok()));
        off.punish_base("appA", now);
        assert_eq!(
            off.check(Some("appA"), "usr", now).unwrap_err().retry_after,
            Duration::from_secs(1)
        );
        assert!(
            off.check(Some("appA"), "usr", now + Duration::from_secs(1))
                .is_ok()
        );
    }
}
