//! Client settings: endpoints, rate limits, retry and timeout budgets.
//!
//! The defaults follow Airtable's published limits (5 requests/s per base, 50/s per token, a
//! 30-second penalty after a 429) and can all be changed, because Airtable may change them and
//! tests need short penalties. Nothing here reads the environment: the command line sets the
//! endpoints from `AIRTABLE_API_URL` and `AIRTABLE_CONTENT_URL`, which point airback at the
//! fake server.

use std::time::Duration;

/// How a [`Client`](super::Client) talks to Airtable.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// The Web API root, `https://api.airtable.com` by default.
    pub api_url: String,
    /// The content host for `uploadAttachment`, `https://content.airtable.com` by default.
    pub content_url: String,
    /// Requests per second per base (5). Zero, negative or infinite turns per-base pacing off.
    pub per_base_rate: f64,
    /// Requests per second over all bases (50). Zero, negative or infinite turns it off.
    pub per_token_rate: f64,
    /// Extra spacing the pacer adds to every one-second window, to absorb the jitter between
    /// sending a request and its arrival (100 ms; see the pacer's docs). At 5/s the sustained
    /// rate is `5 / (1 s + margin)`: 4.55/s with the default.
    pub pacing_margin: Duration,
    /// The least time a base is left alone after a 429 (30 s); a longer `Retry-After` wins.
    pub min_penalty: Duration,
    /// Retries per request after 429s, 5xx answers and network failures (6).
    pub max_retries: u32,
    /// The first retry delay; each further retry doubles it, up to `retry_max_delay`, and the
    /// delay actually slept is drawn between half of it and all of it (500 ms).
    pub retry_base_delay: Duration,
    /// The cap on one retry delay (30 s).
    pub retry_max_delay: Duration,
    /// The whole-request timeout for API calls, and the idle-read timeout for downloads (60 s).
    pub request_timeout: Duration,
    /// The connection timeout (10 s).
    pub connect_timeout: Duration,
    /// How many times in a row one table's listing may restart after Airtable expires its
    /// iterator without getting any record it had not returned before (5). Restarts that make
    /// progress do not count against it: a retried page whose answer was lost finds its
    /// iterator gone on a strict server, so long listings over flaky networks restart often.
    pub max_listing_restarts: u32,
    /// The `User-Agent` header, `airback/VERSION` by default.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            api_url: "https://api.airtable.com".to_owned(),
            content_url: "https://content.airtable.com".to_owned(),
            per_base_rate: 5.0,
            per_token_rate: 50.0,
            pacing_margin: Duration::from_millis(100),
            min_penalty: Duration::from_secs(30),
            max_retries: 6,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_listing_restarts: 5,
            user_agent: concat!("airback/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl ClientOptions {
    /// Both endpoints at one URL, as the fake server serves them.
    pub fn with_url(mut self, url: &str) -> ClientOptions {
        self.api_url = url.to_owned();
        self.content_url = url.to_owned();
        self
    }

    /// Pacing off (per base and per token), for talking to a server without limits.
    pub fn unpaced(mut self) -> ClientOptions {
        self.per_base_rate = f64::INFINITY;
        self.per_token_rate = f64::INFINITY;
        self
    }
}
