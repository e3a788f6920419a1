//! Request counters, shared by a client and all its clones.
//!
//! Plain relaxed atomics bumped on every request, so reading them costs nothing and callers can
//! print summaries (`api_requests` in `snapshot --json`) and benchmarks can report 429s.
//! [`Client::counters`](super::Client::counters) returns a [`ClientCounters`] snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a client's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// API requests sent (to the API and content hosts), retries included.
    pub requests: u64,
    /// Retries of API requests and downloads.
    pub retries: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Requests (API and downloads) that got no HTTP answer: connection refused or reset,
    /// timeouts, truncated bodies.
    pub transport_errors: u64,
    /// Download requests sent (resumptions included).
    pub downloads: u64,
    /// Attachment bytes delivered to callers.
    pub bytes_downloaded: u64,
    /// Non-2xx answers by HTTP status, API and downloads together.
    pub errors_by_status: BTreeMap<u16, u64>,
}

impl ClientCounters {
    /// How many answers had this status.
    pub fn errors(&self, status: u16) -> u64 {
        self.errors_by_status.get(&status).copied().unwrap_or(0)
    }
}

const FIRST_STATUS: u16 = 300;
const LAST_STATUS: u16 = 599;

#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) transport_errors: AtomicU64,
    pub(crate) downloads: AtomicU64,
    pub(crate) bytes_downloaded: AtomicU64,
    statuses: Box<[AtomicU64]>,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            transport_errors: AtomicU64::new(0),
            downloads: AtomicU64::new(0),
            bytes_downloaded: AtomicU64::new(0),
            statuses: (FIRST_STATUS..=LAST_STATUS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a non-2xx answer.
    pub(crate) fn status(&self, status: u16) {
        let index = status.clamp(FIRST_STATUS, LAST_STATUS) - FIRST_STATUS;
        Counters::bump(&self.statuses[usize::from(index)]);
    }

    pub(crate) fn snapshot(&self) -> ClientCounters {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClientCounters {
            requests: load(&self.requests),
            retries: load(&self.retries),
            rate_limited: load(&self.rate_limited),
            transport_errors: load(&self.transport_errors),
            downloads: load(&self.downloads),
            bytes_downloaded: load(&self.bytes_downloaded),
            errors_by_status: (FIRST_STATUS..=LAST_STATUS)
                .zip(self.statuses.iter())
                .map(|(status, count)| (status, load(count)))
                .filter(|(_, count)| *count > 0)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_statuses() {
        let counters = Counters::default();
        counters.status(429);
        counters.status(429);
        counters.status(503);
        Counters::bump(&counters.requests);
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.errors(429), 2);
        assert_eq!(snapshot.errors(503), 1);
        assert_eq!(snapshot.errors(404), 0);
        assert_eq!(snapshot.errors_by_status.len(), 2);
        assert_eq!(snapshot.requests, 1);
    }
}
