//! Errors of the Airtable client, and the parser for Airtable's error bodies.
//!
//! Policy: every error a caller can act on has its own variant, and its message says what to do
//! (check the token, grant a scope, fix an id, wait for the quota). Messages are lowercase, name
//! values in backticks, and never contain the token: requests carry it only in a sensitive
//! header, and URLs shown here are API paths or attachment URLs stripped of their query string.
//!
//! Airtable sends errors in two shapes, `{"error":{"type":"…","message":"…"}}` (message optional)
//! and `{"error":"NOT_FOUND"}`; [`ApiError::parse`] reads both, and anything else (an HTML page
//! from a proxy, say) keeps a short excerpt of the body as the message.

use std::fmt;

use super::token::TokenError;

/// What Airtable said about a failed request: the HTTP status plus the error type and message
/// from the body, when there was one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// The `error.type` (or bare `error` string), e.g. `INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND`.
    pub kind: Option<String>,
    /// The human message, e.g. `Could not find table tblX in application appY`.
    pub message: Option<String>,
}

impl ApiError {
    /// Parses an error body of either shape. Never fails: an unreadable body becomes the message
    /// (trimmed to 200 characters).
    pub fn parse(status: u16, body: &[u8]) -> ApiError {
        let mut api = ApiError {
            status,
            ..ApiError::default()
        };
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value) => match value.get("error") {
                Some(serde_json::Value::String(kind)) => api.kind = Some(kind.clone()),
                Some(serde_json::Value::Object(error)) => {
                    api.kind = error
                        .get("type")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned);
                    api.message = error
                        .get("message")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned);
                }
                _ => api.message = excerpt(body),
            },
            Err(_) => api.message = excerpt(body),
        }
        api
    }

    /// True when the error type is `kind`.
    pub fn is(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind)
    }
}

fn excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        None
    } else {
        Some(text.chars().take(200).collect())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http {}", self.status)?;
        if let Some(kind) = &self.kind {
            write!(f, " {kind}")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong talking to Airtable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AirtableError {
    /// 401: the token is wrong, expired or revoked.
    #[error(
        "airtable rejected the token ({api}): it is wrong, expired or revoked; check \
         `AIRTABLE_TOKEN` or the token file"
    )]
    Unauthorized {
        /// What Airtable said.
        api: ApiError,
    },

    /// 403: the token lacks the scope, or the base is not among its resources (Airtable also
    /// answers 403 for a base id that does not exist).
    #[error("{}", forbidden_message(operation, base.as_deref(), scope, api))]
    Forbidden {
        /// What was attempted, e.g. "list records".
        operation: &'static str,
        /// The base the request was about, if any.
        base: Option<String>,
        /// The scope the request needs, e.g. `data.records:read`.
        scope: &'static str,
        /// What Airtable said.
        api: ApiError,
    },

    /// 404: an unknown base, table, field, record or route.
    #[error(
        "{what} was not found ({api}): check the ids and names, and that the token has access \
         to the base"
    )]
    NotFound {
        /// What was looked for, e.g. "table `tblX` in base `appY`".
        what: String,
        /// What Airtable said.
        api: ApiError,
    },

    /// 422 (other than an expired iterator): Airtable rejected the request's content.
    #[error("airtable rejected the request to {operation} as invalid ({api})")]
    InvalidRequest {
        /// What was attempted.
        operation: &'static str,
        /// What Airtable said; `api.kind` is e.g. `INVALID_VALUE_FOR_COLUMN`.
        api: ApiError,
    },

    /// 422 `LIST_RECORDS_ITERATOR_NOT_AVAILABLE`: a listing offset expired. [`RecordPager`]
    /// handles this by restarting the table; other callers see it only from raw requests.
    ///
    /// [`RecordPager`]: super::RecordPager
    #[error(
        "airtable expired the record listing iterator ({api}); the table has to be listed \
         again from the start"
    )]
    IteratorExpired {
        /// What Airtable said.
        api: ApiError,
    },

    /// A listing kept losing its iterator and was abandoned.
    #[error(
        "listing table `{table}` of base `{base}` was restarted {restarts} times because \
         airtable kept expiring its iterator; try again later"
    )]
    ListingRestartedTooOften {
        /// The base.
        base: String,
        /// The table.
        table: String,
        /// How many restarts were made.
        restarts: u32,
    },

    /// 429 `PUBLIC_API_BILLING_LIMIT_EXCEEDED`: the workspace's monthly call quota is used up.
    #[error(
        "the workspace has used up its monthly airtable api call quota ({api}); retrying will \
         not help until the quota resets or the plan is upgraded"
    )]
    BillingLimitExceeded {
        /// What Airtable said.
        api: ApiError,
    },

    /// 429 again and again, even after waiting out the penalty each time.
    #[error(
        "airtable still rate limited the request to {operation} after {retries} retries; \
         another program may be using the same base or token"
    )]
    RateLimited {
        /// What was attempted.
        operation: &'static str,
        /// How many retries were made.
        retries: u32,
    },

    /// Another 4xx status (400, 413, ...).
    #[error("airtable refused the request to {operation} ({api})")]
    Rejected {
        /// What was attempted.
        operation: &'static str,
        /// What Airtable said.
        api: ApiError,
    },

    /// A 5xx status, after the retries allowed for it.
    #[error(
        "airtable failed to {operation} ({api}) after {retries} retries; it may be having \
         trouble, try again later"
    )]
    Server {
        /// What was attempted.
        operation: &'static str,
        /// How many retries were made.
        retries: u32,
        /// What Airtable said.
        api: ApiError,
    },

    /// The request could not be sent or its answer not received (connection refused or reset,
    /// timeout, truncated body), after the retries allowed for it.
    #[error("could not {operation} (`{method} {path}`) after {retries} retries")]
    Transport {
        /// What was attempted.
        operation: &'static str,
        /// The HTTP method.
        method: String,
        /// The URL path (no query string).
        path: String,
        /// How many retries were made.
        retries: u32,
        /// The underlying error (its URL removed).
        #[source]
        source: reqwest::Error,
    },

    /// A write that is not idempotent (e.g. creating records) failed in a way that leaves it
    /// unknown whether Airtable applied it: a timeout or a reset after the request was sent, or
    /// a 502/504. It is not retried, because a retry could apply it twice; the caller must look
    /// at the target (e.g. list the records) before trying again.
    #[error(
        "the request to {operation} (`{method} {path}`) failed after it may have reached \
         airtable ({reason}); it was not retried because it may have been applied, so check \
         the target before trying again"
    )]
    WriteOutcomeUnknown {
        /// What was attempted.
        operation: &'static str,
        /// The HTTP method.
        method: String,
        /// The URL path.
        path: String,
        /// What happened, e.g. "timed out" or "http 502".
        reason: String,
        /// The transport error, if that was the cause.
        #[source]
        source: Option<reqwest::Error>,
    },

    /// Airtable answered with a body this client cannot read.
    #[error("airtable sent a response to {operation} that airback cannot read")]
    InvalidResponse {
        /// What was attempted.
        operation: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// An attachment URL has expired; re-read the record for a fresh one
    /// ([`Client::refresh_attachment`](super::Client::refresh_attachment) does it).
    #[error(
        "the attachment url `{url}` has expired ({api}); re-read its record to get a fresh one"
    )]
    AttachmentUrlExpired {
        /// The URL without its query string.
        url: String,
        /// What the content host said.
        api: ApiError,
    },

    /// An attachment download failed with a status that retrying did not fix.
    #[error("downloading `{url}` failed ({api}) after {retries} retries")]
    DownloadFailed {
        /// The URL without its query string.
        url: String,
        /// How many retries were made.
        retries: u32,
        /// What the content host said.
        api: ApiError,
    },

    /// A download's body was cut short and could not be resumed.
    #[error(
        "downloading `{url}` stopped after {received} bytes and could not be resumed after \
         {retries} retries"
    )]
    DownloadInterrupted {
        /// The URL without its query string.
        url: String,
        /// Bytes delivered before the failure.
        received: u64,
        /// How many retries were made.
        retries: u32,
        /// The last transport error.
        #[source]
        source: Option<reqwest::Error>,
    },

    /// The attachment is no longer in the record (it was removed or replaced since it was read).
    #[error(
        "attachment `{attachment_id}` is no longer in field `{field}` of record `{record_id}` \
         (table `{table}`, base `{base}`)"
    )]
    AttachmentGone {
        /// The base.
        base: String,
        /// The table.
        table: String,
        /// The record.
        record_id: String,
        /// The attachment field.
        field: String,
        /// The attachment.
        attachment_id: String,
    },

    /// A file too large for `uploadAttachment`.
    #[error(
        "`{filename}` is {size} bytes, more than the {limit} bytes `uploadAttachment` accepts; \
         write it by url instead"
    )]
    UploadTooLarge {
        /// The file name.
        filename: String,
        /// Its size.
        size: usize,
        /// The limit, [`MAX_UPLOAD_BYTES`](super::MAX_UPLOAD_BYTES).
        limit: usize,
    },

    /// A client option is unusable (a malformed URL, a bad user agent, ...).
    #[error("invalid airtable client option: {0}")]
    InvalidOptions(String),

    /// The token could not be loaded.
    #[error(transparent)]
    Token(#[from] TokenError),
}

fn forbidden_message(operation: &str, base: Option<&str>, scope: &str, api: &ApiError) -> String {
    match base {
        Some(base) => format!(
            "the token may not {operation} in base `{base}` ({api}): check that the base id \
             is right, that the token has the `{scope}` scope, and that base `{base}` is in \
             the token's list of bases"
        ),
        None => {
            format!("the token may not {operation} ({api}): check that it has the `{scope}` scope")
        }
    }
}

impl AirtableError {
    /// The error body Airtable sent, for errors that came from an HTTP answer.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            AirtableError::Unauthorized { api }
            | AirtableError::Forbidden { api, .. }
            | AirtableError::NotFound { api, .. }
            | AirtableError::InvalidRequest { api, .. }
            | AirtableError::IteratorExpired { api }
            | AirtableError::BillingLimitExceeded { api }
            | AirtableError::Rejected { api, .. }
            | AirtableError::Server { api, .. }
            | AirtableError::AttachmentUrlExpired { api, .. }
            | AirtableError::DownloadFailed { api, .. } => Some(api),
            _ => None,
        }
    }

    /// The HTTP status, for errors that came from an HTTP answer.
    pub fn status(&self) -> Option<u16> {
        self.api_error().map(|api| api.status)
    }

    /// True when the failure may go away by itself (rate limits, server trouble, network
    /// trouble): a later run may succeed where this one gave up.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AirtableError::RateLimited { .. }
                | AirtableError::Server { .. }
                | AirtableError::Transport { .. }
                | AirtableError::DownloadInterrupted { .. }
                | AirtableError::ListingRestartedTooOften { .. }
        )
    }
}

/// An URL as it may be shown: scheme, host and path, without the query string (attachment URLs
/// carry signatures there) and cut to a readable length.
pub(crate) fn display_url(url: &reqwest::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    if shown.chars().count() > 160 {
        shown = shown.chars().take(160).collect::<String>() + "…";
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_body_shapes() {
        let object = ApiError::parse(
            403,
            br#"{"error":{"type":"INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND","message":"Invalid permissions, or the requested model was not found."}}"#,
        );
        assert_eq!(
            object.kind.as_deref(),
            Some("INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND")
        );
        assert!(object.message.as_deref().unwrap().starts_with("Invalid"));

        let bare = ApiError::parse(404, br#"{"error":"NOT_FOUND"}"#);
        assert!(bare.is("NOT_FOUND"));
        assert_eq!(bare.message, None);
        assert_eq!(bare.to_string(), "http 404 NOT_FOUND");

        let no_message = ApiError::parse(404, br#"{"error":{"type":"NOT_FOUND"}}"#);
        assert!(no_message.is("NOT_FOUND"));

        let html = ApiError::parse(502, b"<html>Bad Gateway</html>");
        assert_eq!(html.kind, None);
        assert_eq!(html.to_string(), "http 502: <html>Bad Gateway</html>");

        let empty = ApiError::parse(503, b"");
        assert_eq!(empty.to_string(), "http 503");
    }

    #[test]
    fn messages_say_what_to_do() {
        let forbidden = AirtableError::Forbidden {
            operation: "list records",
            base: Some("appAAAAAAAAAAAAAA".into()),
            scope: "data.records:read",
            api: ApiError::parse(
                403,
                br#"{"error":{"type":"INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"}}"#,
            ),
        };
        let text = forbidden.to_string();
        assert!(text.contains("`data.records:read`"), "{text}");
        assert!(text.contains("`appAAAAAAAAAAAAAA`"), "{text}");
    }

    #[test]
    fn display_url_drops_the_query() {
        let url = reqwest::Url::parse("https://v5.example.com/a/b.png?sig=secret&exp=1").unwrap();
        assert_eq!(display_url(&url), "https://v5.example.com/a/b.png");
    }
}
