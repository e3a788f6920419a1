//! Attachment downloads: streamed, resumed, and refreshed when their URL has expired.
//!
//! Attachment URLs point at a content host, not the API, so downloads are not paced by the API
//! limiter and carry no token. They are retried like API reads (connection failures, timeouts,
//! 429 and 5xx answers, with the same backoff). A [`Download`] is a stream of byte chunks: the
//! file is never held whole in memory. If the body breaks off midway, the stream asks again
//! with a `Range` header from the first missing byte (or, if the host ignores ranges, fetches the
//! file again and skips what it already delivered), so the caller sees one unbroken byte
//! sequence.
//!
//! Airtable's download URLs expire after a couple of hours. An expired URL (`410 Gone`, or a
//! 4xx whose body says it expired) gives [`AirtableError::AttachmentUrlExpired`]; then
//! [`Client::refresh_attachment`] re-reads the record for a fresh URL, and
//! [`Client::download_attachment`] does both steps.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::Url;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};

use super::client::Client;
use super::counters::Counters;
use super::error::{AirtableError, ApiError, display_url};
use super::model::Attachment;
use super::retry;

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// A download in progress: the size, if the host said it, and the bytes as a stream that
/// resumes by itself when the connection breaks (see [`Client::download`]).
///
/// The stream ends with an error when resuming fails after the client's retries, or when the URL
/// expires before a resumption ([`AirtableError::AttachmentUrlExpired`]); the bytes already
/// delivered are then incomplete, and the caller starts over, e.g. with
/// [`Client::download_attachment`], which fetches a fresh URL.
pub struct Download {
    content_length: Option<u64>,
    content_type: Option<String>,
    stream: Pin<Box<dyn Stream<Item = Result<Bytes, AirtableError>> + Send>>,
}

impl Download {
    /// The size in bytes, when the host sent a `Content-Length`.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The `Content-Type` the host sent.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The remaining bytes, chunk by chunk.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, AirtableError>> + Send {
        self.stream
    }
}

impl Stream for Download {
    type Item = Result<Bytes, AirtableError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("content_length", &self.content_length)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// What a download request got.
enum Opened {
    /// A body to read: the response status (200 or 206), its headers' length and type.
    Body {
        partial: bool,
        content_length: Option<u64>,
        content_type: Option<String>,
        body: ByteStream,
    },
    /// A final failure.
    Failed(AirtableError),
}

/// The state of a streaming download between chunks.
struct Transfer {
    client: Client,
    url: Url,
    total: Option<u64>,
    delivered: u64,
    /// Bytes still to drop from the current body (a restart the host did not let us range).
    skip: u64,
    retries: u32,
    body: Option<ByteStream>,
    last_error: Option<reqwest::Error>,
}

impl Client {
    /// Starts downloading `url` (an attachment or thumbnail URL), without the token and outside
    /// the API pacing. Connection failures, timeouts, 429 and 5xx answers are retried with the
    /// client's backoff; if the body breaks off later, the [`Download`] stream resumes it (with a
    /// `Range` request, or by fetching again and skipping what it delivered). An expired URL
    /// gives [`AirtableError::AttachmentUrlExpired`].
    pub async fn download(&self, url: &str) -> Result<Download, AirtableError> {
        let url = Url::parse(url).map_err(|e| {
            AirtableError::InvalidOptions(format!("attachment url is not an url: {e}"))
        })?;
        let mut retries = 0;
        let (content_length, content_type, body) =
            match self.open_download(&url, 0, &mut retries).await {
                Opened::Body {
                    content_length,
                    content_type,
                    body,
                    ..
                } => (content_length, content_type, body),
                Opened::Failed(error) => return Err(error),
            };
        let transfer = Transfer {
            client: self.clone(),
            url,
            total: content_length,
            delivered: 0,
            skip: 0,
            retries,
            body: Some(body),
            last_error: None,
        };
        Ok(Download {
            content_length,
            content_type,
            stream: Box::pin(futures::stream::unfold(Some(transfer), next_chunk)),
        })
    }

    /// Re-reads the record and returns the attachment `attachment_id` with a fresh URL. Looks in
    /// `field` (an id, as records are read by field id) first, then in every other cell.
    pub async fn refresh_attachment(
        &self,
        base_id: &str,
        table: &str,
        record_id: &str,
        field: &str,
        attachment_id: &str,
    ) -> Result<Attachment, AirtableError> {
        let record = self.get_record(base_id, table, record_id).await?;
        let in_field = record.attachments(field).into_iter();
        let anywhere = record
            .fields
            .values()
            .flat_map(Attachment::list_from_cell)
            .collect::<Vec<_>>();
        in_field
            .chain(anywhere)
            .find(|a| a.id == attachment_id)
            .ok_or_else(|| AirtableError::AttachmentGone {
                base: base_id.to_owned(),
                table: table.to_owned(),
                record_id: record_id.to_owned(),
                field: field.to_owned(),
                attachment_id: attachment_id.to_owned(),
            })
    }

    /// Downloads an attachment of a record; if its URL has expired, re-reads the record for a
    /// fresh one and tries once more.
    pub async fn download_attachment(
        &self,
        base_id: &str,
        table: &str,
        record_id: &str,
        field: &str,
        attachment: &Attachment,
    ) -> Result<Download, AirtableError> {
        match self.download(&attachment.url).await {
            Err(AirtableError::AttachmentUrlExpired { .. }) => {
                tracing::debug!(
                    attachment = %attachment.id,
                    record = record_id,
                    "attachment url expired; re-reading the record"
                );
                let fresh = self
                    .refresh_attachment(base_id, table, record_id, field, &attachment.id)
                    .await?;
                self.download(&fresh.url).await
            }
            other => other,
        }
    }

    /// Sends one download request (from byte `from`), retrying failures that may pass, and
    /// returns the body or a final error. `retries` is the running count for this download.
    async fn open_download(&self, url: &Url, from: u64, retries: &mut u32) -> Opened {
        let inner = &*self.inner;
        loop {
            self.count(|c| Counters::bump(&c.downloads));
            let mut request = inner.download_http.get(url.clone());
            if from > 0 {
                request = request.header(RANGE, format!("bytes={from}-"));
            }
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if status == 200 || (status == 206 && from > 0) {
                        let header = |name| {
                            response
                                .headers()
                                .get(name)
                                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        let content_type = header(CONTENT_TYPE);
                        let partial = status == 206
                            && header(CONTENT_RANGE)
                                .is_some_and(|range| range.starts_with(&format!("bytes {from}-")));
                        if status == 206 && !partial {
                            // A range we did not ask for: start over without one.
                            return Box::pin(self.open_download(url, 0, retries)).await;
                        }
                        let content_length = header(CONTENT_LENGTH).and_then(|v| v.parse().ok());
                        return Opened::Body {
                            partial,
                            content_length,
                            content_type,
                            body: Box::pin(response.bytes_stream()),
                        };
                    }
                    self.count(|c| c.status(status));
                    let retry_after = retry::retry_after(response.headers());
                    let body = response.bytes().await.unwrap_or_default();
                    let api = ApiError::parse(status, &body);
                    if is_expired(status, &body) {
                        return Opened::Failed(AirtableError::AttachmentUrlExpired {
                            url: display_url(url),
                            api,
                        });
                    }
                    if !matches!(status, 429 | 500..=599) || *retries >= inner.policy.max_retries {
                        return Opened::Failed(AirtableError::DownloadFailed {
                            url: display_url(url),
                            retries: *retries,
                            api,
                        });
                    }
                    retry_after
                }
                Err(error) => {
                    let error = error.without_url();
                    self.count(|c| Counters::bump(&c.transport_errors));
                    if *retries >= inner.policy.max_retries {
                        return Opened::Failed(AirtableError::DownloadInterrupted {
                            url: display_url(url),
                            received: from,
                            retries: *retries,
                            source: Some(error),
                        });
                    }
                    tracing::debug!(url = %display_url(url), error = %error, "download failed; retrying");
                    None
                }
            };
            tokio::time::sleep(inner.policy.backoff(*retries, failure)).await;
            *retries += 1;
            self.count(|c| Counters::bump(&c.retries));
        }
    }
}

/// Whether a failed download says its URL expired: `410 Gone`, or a 400/401/403/404 whose body
/// mentions expiry (signed-URL hosts answer 403 "Request has expired" and the like).
fn is_expired(status: u16, body: &[u8]) -> bool {
    status == 410
        || (matches!(status, 400 | 401 | 403 | 404)
            && String::from_utf8_lossy(body)
                .to_ascii_lowercase()
                .contains("expire"))
}

/// Produces the next chunk of a transfer, resuming it after a break.
async fn next_chunk(
    state: Option<Transfer>,
) -> Option<(Result<Bytes, AirtableError>, Option<Transfer>)> {
    let mut transfer = state?;
    loop {
        if let Some(body) = transfer.body.as_mut() {
            match body.next().await {
                Some(Ok(mut chunk)) => {
                    if transfer.skip > 0 {
                        let dropped = transfer.skip.min(chunk.len() as u64);
                        transfer.skip -= dropped;
                        chunk = chunk.slice(dropped as usize..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    transfer.delivered += chunk.len() as u64;
                    let n = chunk.len() as u64;
                    transfer
                        .client
                        .count(|c| Counters::add(&c.bytes_downloaded, n));
                    return Some((Ok(chunk), Some(transfer)));
                }
                Some(Err(error)) => {
                    transfer
                        .client
                        .count(|c| Counters::bump(&c.transport_errors));
                    transfer.last_error = Some(error.without_url());
                    transfer.body = None;
                }
                None => {
                    let complete = transfer
                        .total
                        .is_none_or(|total| transfer.delivered >= total);
                    if complete && transfer.skip == 0 {
                        return None;
                    }
                    transfer.body = None;
                }
            }
        }
        // The body broke off: resume from the first byte not delivered.
        let client = transfer.client.clone();
        let inner = &*client.inner;
        if transfer.retries >= inner.policy.max_retries {
            let error = AirtableError::DownloadInterrupted {
                url: display_url(&transfer.url),
                received: transfer.delivered,
                retries: transfer.retries,
                source: transfer.last_error.take(),
            };
            return Some((Err(error), None));
        }
        tokio::time::sleep(inner.policy.backoff(transfer.retries, None)).await;
        transfer.retries += 1;
        client.count(|c| Counters::bump(&c.retries));
        tracing::debug!(
            url = %display_url(&transfer.url),
            delivered = transfer.delivered,
            "download broke off; resuming"
        );
        match client
            .open_download(&transfer.url, transfer.delivered, &mut transfer.retries)
            .await
        {
            Opened::Body {
                partial,
                content_length,
                body,
                ..
            } => {
                if !partial {
                    // The whole file again: drop what was already delivered, and make sure it
                    // is the same size as before.
                    if let (Some(total), Some(length)) = (transfer.total, content_length)
                        && total != length
                    {
                        let error = AirtableError::DownloadInterrupted {
                            url: display_url(&transfer.url),
                            received: transfer.delivered,
                            retries: transfer.retries,
                            source: transfer.last_error.take(),
                        };
                        return Some((Err(error), None));
                    }
                    transfer.skip = transfer.delivered;
                }
                transfer.body = Some(body);
            }
            Opened::Failed(error) => return Some((Err(error), None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_expiry() {
        assert!(is_expired(410, b""));
        assert!(is_expired(403, b"<Error>Request has expired</Error>"));
        assert!(is_expired(
            404,
            br#"{"error":{"type":"ATTACHMENT_URL_EXPIRED"}}"#
        ));
        assert!(!is_expired(404, br#"{"error":"NOT_FOUND"}"#));
        assert!(!is_expired(500, b"expired"));
    }
}
