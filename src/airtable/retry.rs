//! The retry policy: which failures are retried, how long to wait, and when a retry would be
//! unsafe.
//!
//! - **429** (`RATE_LIMIT_REACHED`): the base is paused for `max(min_penalty, Retry-After)` plus
//!   a little jitter, then the request is retried. `PUBLIC_API_BILLING_LIMIT_EXCEEDED` is never
//!   retried: waiting does not bring the monthly quota back.
//! - **502, 503, 504** (and 500 for idempotent requests): retried after a jittered exponential
//!   backoff: `retry_base_delay × 2^n` capped at `retry_max_delay`, of which a random 50–100 % is
//!   slept; a `Retry-After` header on a 503 lengthens the wait (up to the cap).
//! - **Network failures** (connection refused or reset, timeouts, truncated bodies): retried the
//!   same way.
//! - **Everything else** (401, 403, 404, 422 and other 4xx) is final.
//!
//! A request that is not idempotent (creating records, tables, fields or bases, uploading an
//! attachment) is retried only when Airtable surely did not apply it: the connection was never
//! made, or the answer was 429 or 503. After a timeout, a reset once the request was sent, or a
//! 502/504 from a proxy, it may or may not have been applied, so the client returns
//! [`AirtableError::WriteOutcomeUnknown`](super::AirtableError::WriteOutcomeUnknown) and leaves
//! reconciliation to the caller. All retries of one request share the `max_retries` budget.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::options::ClientOptions;

/// The numbers of the retry policy, taken from [`ClientOptions`].
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub(crate) max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
    min_penalty: Duration,
}

/// What to do about an HTTP status that is not a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusAction {
    /// Pause the base, then retry.
    RateLimited,
    /// Back off, then retry.
    Retry,
    /// The write may have been applied; do not retry.
    Ambiguous,
    /// Give up: the status is final.
    Fail,
}

impl RetryPolicy {
    pub(crate) fn new(options: &ClientOptions) -> RetryPolicy {
        RetryPolicy {
            max_retries: options.max_retries,
            base_delay: options.retry_base_delay,
            max_delay: options.retry_max_delay.max(options.retry_base_delay),
            min_penalty: options.min_penalty,
        }
    }

    /// The wait before retry number `retry` (0-based), honouring a server's `Retry-After` up to
    /// the cap.
    pub(crate) fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let jittered = exponential.mul_f64(0.5 + fastrand::f64() * 0.5);
        match retry_after {
            Some(asked) => jittered.max(asked.min(self.max_delay)),
            None => jittered,
        }
    }

    /// How long a base stays paused after a 429: at least `min_penalty`, longer if the server
    /// asks, plus up to 10 % (at most 1 s) of jitter so paused tasks do not all return at once
    /// exactly at the edge.
    pub(crate) fn penalty(&self, retry_after: Option<Duration>) -> Duration {
        let wait = self.min_penalty.max(retry_after.unwrap_or_default());
        let jitter = wait.mul_f64(0.1).min(Duration::from_secs(1));
        wait + jitter.mul_f64(fastrand::f64())
    }

    /// The action for an HTTP status that is not a success.
    pub(crate) fn on_status(status: u16, idempotent: bool) -> StatusAction {
        match status {
            429 => StatusAction::RateLimited,
            503 => StatusAction::Retry,
            500 | 502 | 504 if idempotent => StatusAction::Retry,
            502 | 504 => StatusAction::Ambiguous,
            _ => StatusAction::Fail,
        }
    }

    /// Whether a request that got no answer may be sent again.
    pub(crate) fn may_retry_transport(error: &reqwest::Error, idempotent: bool) -> bool {
        idempotent || error.is_connect()
    }
}

/// The `Retry-After` header as a duration (the seconds form; an HTTP date is ignored).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// A short description of a network failure for error messages.
pub(crate) fn describe_transport(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the answer was cut short"
    } else {
        "the connection failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(&ClientOptions::default())
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = policy();
        for retry in 0..10 {
            let full = Duration::from_millis(500)
                .saturating_mul(1 << retry)
                .min(Duration::from_secs(30));
            for _ in 0..50 {
                let wait = policy.backoff(retry, None);
                assert!(wait >= full / 2 && wait <= full, "{retry}: {wait:?}");
            }
        }
        assert!(policy.backoff(0, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        assert!(policy.backoff(0, Some(Duration::from_secs(700))) <= Duration::from_secs(30));
    }

    #[test]
    fn penalty_is_at_least_the_minimum() {
        let policy = policy();
        for _ in 0..50 {
            let wait = policy.penalty(None);
            assert!(wait >= Duration::from_secs(30) && wait <= Duration::from_secs(31));
        }
        assert!(policy.penalty(Some(Duration::from_secs(45))) >= Duration::from_secs(45));
    }

    #[test]
    fn statuses() {
        use StatusAction::*;
        assert_eq!(RetryPolicy::on_status(429, false), RateLimited);
        assert_eq!(RetryPolicy::on_status(503, false), Retry);
        assert_eq!(RetryPolicy::on_status(502, true), Retry);
        assert_eq!(RetryPolicy::on_status(502, false), Ambiguous);
        assert_eq!(RetryPolicy::on_status(504, false), Ambiguous);
        assert_eq!(RetryPolicy::on_status(500, false), Fail);
        for status in [400, 401, 403, 404, 413, 422] {
            assert_eq!(RetryPolicy::on_status(status, true), Fail);
        }
    }

    #[test]
    fn parses_retry_after_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("31"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(31)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
