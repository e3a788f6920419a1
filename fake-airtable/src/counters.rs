//! Request counters, so tests and benchmarks can check what a client did: requests per route
//! and per base, 429s served, faults injected, expiries hit, attachment bytes streamed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

/// The routes the fake serves, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    Whoami,
    ListBases,
    GetSchema,
    CreateBase,
    CreateTable,
    UpdateTable,
    CreateField,
    UpdateField,
    /// `GET /v0/{base}/{table}`.
    ListRecords,
    /// `POST /v0/{base}/{table}/listRecords`.
    ListRecordsPost,
    GetRecord,
    CreateRecords,
    /// PATCH or PUT, batch or single, including upserts.
    UpdateRecords,
    DeleteRecords,
    ListComments,
    /// `POST /v0/{base}/{table}/{record}/comments`.
    CreateComment,
    UploadAttachment,
    /// A download from the content host; never rate-limited.
    AttachmentDownload,
    /// Anything that matched no route (404).
    Unknown,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Whoami => "whoami",
            Route::ListBases => "list_bases",
            Route::GetSchema => "get_schema",
            Route::CreateBase => "create_base",
            Route::CreateTable => "create_table",
            Route::UpdateTable => "update_table",
            Route::CreateField => "create_field",
            Route::UpdateField => "update_field",
            Route::ListRecords => "list_records",
            Route::ListRecordsPost => "list_records_post",
            Route::GetRecord => "get_record",
            Route::CreateRecords => "create_records",
            Route::UpdateRecords => "update_records",
            Route::DeleteRecords => "delete_records",
            Route::ListComments => "list_comments",
            Route::CreateComment => "create_comment",
            Route::UploadAttachment => "upload_attachment",
            Route::AttachmentDownload => "attachment_download",
            Route::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FakeCounters {
    /// Requests received per route, whatever their outcome (429s and faults included).
    pub requests: BTreeMap<Route, u64>,
    /// API requests per base id (routes that name a base).
    pub requests_per_base: BTreeMap<String, u64>,
    /// 429 `RATE_LIMIT_REACHED` answers.
    pub rate_limited: u64,
    /// 429 `PUBLIC_API_BILLING_LIMIT_EXCEEDED` answers.
    pub billing_limited: u64,
    /// 401 answers.
    pub unauthorized: u64,
    pub faults_503: u64,
    pub faults_502: u64,
    pub faults_500: u64,
    /// Connections cut mid-response.
    pub resets: u64,
    /// Responses delayed by the slow fault.
    pub slow: u64,
    /// 422 `LIST_RECORDS_ITERATOR_NOT_AVAILABLE` answers.
    pub iterator_expired: u64,
    /// Downloads refused because the URL had expired.
    pub url_expired: u64,
    /// Bytes of attachment content sent (as streamed; a cut stream counts what was sent).
    pub attachment_bytes_served: u64,
    /// `{url}` attachments fetched, and fetches that failed.
    pub url_fetches_ok: u64,
    pub url_fetches_failed: u64,
    /// The records successful write requests named, with how many requests did: created,
    /// updated (batch, single, upsert), deleted, or given an uploaded attachment. A link
    /// mirrored into a linked record's inverse field does not count for the linked record.
    pub records_written: BTreeMap<String, u64>,
    /// Comments created through the API (not counted in `records_written`).
    pub comments_created: u64,
    /// The most API requests (every token and base; downloads not counted) received within
    /// one second: what a client's per-token pacing must keep under 50.
    pub peak_api_requests_per_second: u64,
}

impl FakeCounters {
    /// Requests on one route.
    pub fn requests(&self, route: Route) -> u64 {
        self.requests.get(&route).copied().unwrap_or(0)
    }

    /// All API requests (everything except attachment downloads).
    pub fn api_requests(&self) -> u64 {
        self.requests
            .iter()
            .filter(|(route, _)| **route != Route::AttachmentDownload)
            .map(|(_, count)| count)
            .sum()
    }

    /// Faults injected: 5xx answers, resets and slow responses.
    pub fn faults_injected(&self) -> u64 {
        self.faults_503 + self.faults_502 + self.faults_500 + self.resets + self.slow
    }
}

impl serde::Serialize for Route {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    inner: Mutex<FakeCounters>,
    /// When the API requests of the last second arrived.
    recent: Mutex<std::collections::VecDeque<std::time::Instant>>,
}

impl Counters {
    pub(crate) fn update(&self, change: impl FnOnce(&mut FakeCounters)) {
        let mut counters = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut counters);
    }

    /// Counts a successful write that named these records.
    pub(crate) fn written<'a>(&self, records: impl IntoIterator<Item = &'a String>) {
        self.update(|counters| {
            for record in records {
                *counters.records_written.entry(record.clone()).or_default() += 1;
            }
        });
    }

    pub(crate) fn request(&self, route: Route, base: Option<&str>) {
        let in_last_second = (route != Route::AttachmentDownload).then(|| {
            let now = std::time::Instant::now();
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            while recent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= std::time::Duration::from_secs(1))
            {
                recent.pop_front();
            }
            recent.push_back(now);
            recent.len() as u64
        });
        self.update(|counters| {
            if let Some(n) = in_last_second {
                counters.peak_api_requests_per_second =
                    counters.peak_api_requests_per_second.max(n);
            }
            *counters.requests.entry(route).or_default() += 1;
            if let Some(base) = base {
                *counters
                    .requests_per_base
                    .entry(base.to_owned())
                    .or_default() += 1;
            }
        });
    }

    pub(crate) fn snapshot(&self) -> FakeCounters {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}
