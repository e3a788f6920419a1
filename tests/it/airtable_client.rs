//! Tests of the Airtable client (`airback::airtable`).
//!
//! Most run against the strict fake (`airback::fake`), which enforces the real rate limits and
//! injects faults. A few need failures placed exactly (a connection dropped after the request
//! was read, a body cut at a known byte) and use tiny purpose-built servers defined below.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use airback::airtable::{AirtableError, Client, ClientOptions, NewRecord, Token};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TEST_TOKEN: &str =
    "patTESTTESTTESTTE.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Options for tests: the given server for both hosts, no pacing, quick retries.
fn quick_options(url: &str) -> ClientOptions {
    ClientOptions {
        retry_base_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(40),
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    }
    .with_url(url)
    .unpaced()
}

fn client_with(options: ClientOptions) -> Client {
    Client::new(Token::new(TEST_TOKEN).unwrap(), options).unwrap()
}

/// Asserts that no rendering of `error` shows the token.
fn assert_no_token(error: &AirtableError, token: &str) {
    for shown in [
        error.to_string(),
        format!("{error:?}"),
        format!("{error:#?}"),
        error_chain(error),
    ] {
        assert!(!shown.contains(token), "token leaked: {shown}");
        assert!(
            !shown.contains(&token[3..12]),
            "part of the token leaked: {shown}"
        );
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(" | ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

// ----------------------------------------------------------------------------------------------
// Purpose-built servers.

/// A raw HTTP/1.1 server that reads each request whole and then drops the connection (a reset,
/// after the request reached it) for the first `resets` requests, and answers `answer` (JSON)
/// after that. Returns its URL and the count of requests read.
async fn dropping_server(resets: usize, answer: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                loop {
                    // Read one request: headers, then Content-Length bytes of body.
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let header_end = loop {
                        if let Some(end) = find(&buffer, b"\r\n\r\n") {
                            break end + 4;
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let headers = String::from_utf8_lossy(&buffer[..header_end]).to_lowercase();
                    let length: usize = headers
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    while buffer.len() < header_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    if n < resets {
                        // Reset: the request was read, no answer is sent.
                        let _ = socket.set_zero_linger();
                        return;
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
                        answer.len(),
                        answer
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

const RECORD_JSON: &str = r#"{"id":"recAAAAAAAAAAAAAA","createdTime":"2024-01-01T00:00:00.000Z","fields":{"fldAAAAAAAAAAAAAA":"x"}}"#;
const RECORDS_JSON: &str = r#"{"records":[{"id":"recAAAAAAAAAAAAAA","createdTime":"2024-01-01T00:00:00.000Z","fields":{}}]}"#;

#[tokio::test]
async fn reads_are_retried_after_a_reset() {
    let (url, seen) = dropping_server(2, RECORD_JSON).await;
    let client = client_with(quick_options(&url));
    let record = client
        .get_record(
            "appAAAAAAAAAAAAAA",
            "tblAAAAAAAAAAAAAA",
            "recAAAAAAAAAAAAAA",
        )
        .await
        .unwrap();
    assert_eq!(record.id, "recAAAAAAAAAAAAAA");
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    let counters = client.counters();
    assert_eq!(counters.requests, 3);
    assert_eq!(counters.retries, 2);
    assert_eq!(counters.transport_errors, 2);
}

#[tokio::test]
async fn a_create_that_may_have_been_applied_is_not_retried() {
    let (url, seen) = dropping_server(1, RECORDS_JSON).await;
    let client = client_with(quick_options(&url));
    let error = client
        .create_records(
            "appAAAAAAAAAAAAAA",
            "tblAAAAAAAAAAAAAA",
            &[NewRecord::default()],
            false,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, AirtableError::WriteOutcomeUnknown { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("may have been applied"), "{message}");
    assert!(
        message.contains("POST /v0/appAAAAAAAAAAAAAA/tblAAAAAAAAAAAAAA"),
        "{message}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1, "the create was sent twice");
    assert_no_token(&error, TEST_TOKEN);
}

#[tokio::test]
async fn a_create_that_never_connected_is_retried() {
    // A port nobody listens on: connection refused, so the request surely was not applied.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let options = ClientOptions {
        max_retries: 3,
        ..quick_options(&url)
    };
    let client = client_with(options);
    let error = client
        .create_records(
            "appAAAAAAAAAAAAAA",
            "tblAAAAAAAAAAAAAA",
            &[NewRecord::default()],
            false,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, AirtableError::Transport { retries: 3, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("after 3 retries"), "{error}");
    assert_eq!(client.counters().requests, 4);
    assert_no_token(&error, TEST_TOKEN);
}

/// A file server for download tests. The first answer is cut after `cut_at` bytes; later
/// answers honour `Range` when `ranges` is set and send the whole file otherwise. A request for
/// `/expired` gets 410.
async fn flaky_file_server(file: Bytes, cut_at: usize, ranges: bool) -> (String, Arc<AtomicUsize>) {
    use axum::body::Body;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::Response;
    use axum::routing::get;

    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let router = axum::Router::new()
        .route(
            "/file",
            get(move |headers: HeaderMap| {
                let file = file.clone();
                let counter = counter.clone();
                async move {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let total = file.len();
                    if n == 0 {
                        // Promise the whole file, send a prefix, then fail the body.
                        let prefix = file.slice(..cut_at);
                        let stream = futures::stream::iter(vec![
                            Ok::<Bytes, std::io::Error>(prefix),
                            Err(std::io::Error::other("cut")),
                        ]);
                        return Response::builder()
                            .header(header::CONTENT_LENGTH, total)
                            .body(Body::from_stream(stream))
                            .unwrap();
                    }
                    let range_start = headers
                        .get(header::RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes="))
                        .and_then(|v| v.strip_suffix('-'))
                        .and_then(|v| v.parse::<usize>().ok());
                    match range_start {
                        Some(start) if ranges => Response::builder()
                            .status(StatusCode::PARTIAL_CONTENT)
                            .header(
                                header::CONTENT_RANGE,
                                format!("bytes {start}-{}/{total}", total - 1),
                            )
                            .header(header::CONTENT_LENGTH, total - start)
                            .body(Body::from(file.slice(start..)))
                            .unwrap(),
                        _ => Response::builder()
                            .header(header::CONTENT_LENGTH, total)
                            .body(Body::from(file.clone()))
                            .unwrap(),
                    }
                }
            }),
        )
        .route(
            "/expired",
            get(|| async {
                Response::builder()
                    .status(StatusCode::GONE)
                    .body(Body::from("This URL has expired"))
                    .unwrap()
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, served)
}

fn test_file(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 7 % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

async fn collect(download: airback::airtable::Download) -> Result<Vec<u8>, AirtableError> {
    let mut bytes = Vec::new();
    let mut stream = download.into_stream();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(bytes)
}

#[tokio::test]
async fn a_broken_download_resumes_with_a_range() {
    let file = test_file(300_000);
    let (url, served) = flaky_file_server(file.clone(), 70_000, true).await;
    let client = client_with(quick_options(&url));
    let download = client.download(&format!("{url}/file")).await.unwrap();
    assert_eq!(download.content_length(), Some(300_000));
    let bytes = collect(download).await.unwrap();
    assert!(bytes == file, "downloaded bytes differ");
    assert_eq!(served.load(Ordering::SeqCst), 2);
    let counters = client.counters();
    assert_eq!(counters.bytes_downloaded, 300_000);
    assert_eq!(counters.downloads, 2);
    assert_eq!(counters.retries, 1);
    // Downloads are not API requests.
    assert_eq!(counters.requests, 0);
}

#[tokio::test]
async fn a_broken_download_resumes_without_range_support() {
    let file = test_file(300_000);
    let (url, served) = flaky_file_server(file.clone(), 70_000, false).await;
    let client = client_with(quick_options(&url));
    let bytes = collect(client.download(&format!("{url}/file")).await.unwrap())
        .await
        .unwrap();
    assert!(bytes == file, "downloaded bytes differ");
    assert_eq!(served.load(Ordering::SeqCst), 2);
    assert_eq!(client.counters().bytes_downloaded, 300_000);
}

#[tokio::test]
async fn a_gone_url_is_reported_as_expired() {
    let (url, _) = flaky_file_server(test_file(10), 1, true).await;
    let client = client_with(quick_options(&url));
    let error = client
        .download(&format!("{url}/expired?signature=abc"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, AirtableError::AttachmentUrlExpired { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("has expired"), "{message}");
    assert!(!message.contains("signature"), "{message}");
}
