//! Tests of the Airtable client (`airback::airtable`).
//!
//! Most run against the strict fake (`airback_fake`), which enforces the real rate limits and
//! injects faults. A few need failures placed exactly (a connection dropped after the request
//! was read, a body cut at a known byte) and use tiny purpose-built servers defined below.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::collections::{HashMap, HashSet};

use airback::airtable::{
    AirtableError, Attachment, Client, ClientOptions, ListRecordsOptions, MAX_UPLOAD_BYTES,
    NameDescriptionUpdate, NewField, NewRecord, NewTable, Record, RecordPager, RecordUpdate, Token,
};
use airback_fake::{FakeAirtable, FakeOptions, Faults, LargeParams, Preset, Route};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
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

// ----------------------------------------------------------------------------------------------
// Against the fake.

async fn start_fake(options: FakeOptions) -> FakeAirtable {
    FakeAirtable::start(options).await.unwrap()
}

/// A fake with one table of `records` records and a few small attachments, limits off.
async fn small_large_fake(records: usize) -> FakeAirtable {
    start_fake(FakeOptions {
        preset: Preset::Large,
        large: LargeParams {
            tables: 1,
            records_per_table: records,
            attachments: 6,
            min_attachment_bytes: 1_000,
            max_attachment_bytes: 200_000,
            ..LargeParams::default()
        },
        ..FakeOptions::unlimited(Preset::Large)
    })
    .await
}

fn fake_client(fake: &FakeAirtable, options: ClientOptions) -> Client {
    Client::new(
        Token::new(fake.token()).unwrap(),
        options.with_url(&fake.url()),
    )
    .unwrap()
}

/// The first base and its first table.
fn first_table(fake: &FakeAirtable) -> (String, String) {
    let base = fake.bases()[0].id.clone();
    let table = fake.schema_json(&base)["tables"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (base, table)
}

async fn list_all(pager: RecordPager) -> Vec<Record> {
    let pages: Vec<Vec<Record>> = pager.into_stream().try_collect().await.unwrap();
    pages.into_iter().flatten().collect()
}

/// Asserts that `records` are exactly the fake's records of the table, once each, with the same
/// cells.
fn assert_same_records(records: &[Record], fake: &FakeAirtable, base: &str, table: &str) {
    let expected: HashMap<String, serde_json::Value> = fake
        .records_json(base, table)
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r))
        .collect();
    let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), records.len(), "duplicate records");
    assert_eq!(records.len(), expected.len(), "record count");
    for record in records {
        let want = &expected[&record.id];
        assert_eq!(record.created_time, want["createdTime"].as_str().unwrap());
        assert_eq!(
            strip_urls(&serde_json::Value::Object(record.fields.clone())),
            strip_urls(&want["fields"]),
            "cells of {}",
            record.id
        );
    }
}

/// A copy of a value without attachment and thumbnail URLs (they are signed per request).
fn strip_urls(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(k, _)| k.as_str() != "url")
            .map(|(k, v)| (k.clone(), strip_urls(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        serde_json::Value::Array(items) => items.iter().map(strip_urls).collect(),
        other => other.clone(),
    }
}

#[tokio::test]
async fn lists_a_table_over_several_pages() {
    let fake = small_large_fake(250).await;
    let client = fake_client(&fake, quick_options(""));
    let (base, table) = first_table(&fake);
    let mut pager = client.list_records(&base, &table, ListRecordsOptions::default());
    let mut records = Vec::new();
    let mut pages = 0;
    while let Some(page) = pager.next_page().await.unwrap() {
        assert!(page.len() <= 100);
        pages += 1;
        records.extend(page);
    }
    assert_eq!(pages, 3);
    assert_same_records(&records, &fake, &base, &table);
    assert_eq!(client.counters().requests, 3);
    assert_eq!(fake.counters().requests(Route::ListRecords), 3);

    // Smaller pages, through the stream.
    let options = ListRecordsOptions {
        page_size: Some(7),
        ..ListRecordsOptions::default()
    };
    let records = list_all(client.list_records(&base, &table, options)).await;
    assert_same_records(&records, &fake, &base, &table);
    assert_eq!(client.counters().requests, 3 + 250u64.div_ceil(7));
}

#[tokio::test]
async fn switches_to_post_when_the_url_would_be_too_long() {
    let fake = small_large_fake(120).await;
    let client = fake_client(&fake, quick_options(""));
    let (base, table) = first_table(&fake);
    let schema = client.base_schema(&base).await.unwrap();
    let primary = schema.tables[0].primary_field_id.clone();
    // 1,000 copies of a 17-character id make a query string of over 20,000 characters.
    let options = ListRecordsOptions {
        fields: vec![primary.clone(); 1_000],
        ..ListRecordsOptions::default()
    };
    let records = list_all(client.list_records(&base, &table, options)).await;
    assert_eq!(records.len(), 120);
    assert!(
        records
            .iter()
            .all(|r| r.fields.keys().all(|k| *k == primary))
    );
    let counters = fake.counters();
    assert_eq!(counters.requests(Route::ListRecordsPost), 2);
    assert_eq!(counters.requests(Route::ListRecords), 0);
}

#[tokio::test]
async fn reads_bases_and_the_schema_verbatim() {
    let fake = start_fake(FakeOptions::unlimited(Preset::Demo)).await;
    let client = fake_client(&fake, quick_options(""));
    let bases = client.list_bases().await.unwrap();
    let expected: Vec<(String, String)> =
        fake.bases().into_iter().map(|b| (b.id, b.name)).collect();
    let got: Vec<(String, String)> = bases.into_iter().map(|b| (b.id, b.name)).collect();
    assert_eq!(got, expected);
    let base = &expected[0].0;
    let schema = client.base_schema(base).await.unwrap();
    assert_eq!(schema.raw, fake.schema_json(base));
    assert!(!schema.tables.is_empty());
    for table in &schema.tables {
        assert!(table.field(&table.primary_field_id).is_some());
        assert!(!table.views.is_empty());
    }
    let me = client.whoami().await.unwrap();
    assert!(me.id.starts_with("usr"), "{me:?}");
}

#[tokio::test]
async fn many_tasks_sharing_a_base_never_draw_a_429() {
    // Real limits (5/s per base, 50/s per token, 30 s penalty) and default pacing.
    let fake = start_fake(FakeOptions {
        preset: Preset::Demo,
        ..FakeOptions::default()
    })
    .await;
    let client = fake_client(&fake, ClientOptions::default());
    let (base, table) = first_table(&fake);
    let record_ids: Vec<String> = fake
        .records_json(&base, &table)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            let (base, table) = (base.clone(), table.clone());
            let record_id = record_ids[i % record_ids.len()].clone();
            tokio::spawn(async move { client.get_record(&base, &table, &record_id).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(fake.counters().rate_limited, 0);
    let counters = client.counters();
    assert_eq!(counters.rate_limited, 0);
    assert_eq!(counters.requests, 20);
}

/// Sends `n` requests at once to `base` with a plain HTTP client, to push the fake over its
/// limit. Returns how many got 429.
async fn hammer(fake: &FakeAirtable, base: &str, table: &str, n: usize) -> usize {
    let http = reqwest::Client::new();
    let url = format!("{}/v0/{base}/{table}?pageSize=1", fake.url());
    let requests = (0..n).map(|_| {
        http.get(&url)
            .header("Authorization", format!("Bearer {}", fake.token()))
            .send()
    });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().status() == 429)
        .count()
}

#[tokio::test]
async fn waits_out_a_429_penalty_and_completes() {
    let fake = start_fake(FakeOptions {
        preset: Preset::Demo,
        penalty: Duration::from_secs(2),
        ..FakeOptions::default()
    })
    .await;
    let (base, table) = first_table(&fake);
    assert!(hammer(&fake, &base, &table, 10).await > 0);

    let options = ClientOptions {
        min_penalty: Duration::from_secs(2),
        ..quick_options("")
    };
    let client = fake_client(
        &fake,
        ClientOptions {
            per_base_rate: 5.0,
            per_token_rate: 50.0,
            ..options
        },
    );
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            let (base, table) = (base.clone(), table.clone());
            tokio::spawn(async move {
                list_all(client.list_records(&base, &table, ListRecordsOptions::default())).await
            })
        })
        .collect();
    for task in tasks {
        assert_same_records(&task.await.unwrap(), &fake, &base, &table);
    }
    let counters = client.counters();
    assert!(counters.rate_limited >= 1, "{counters:?}");
    assert_eq!(counters.retries, counters.rate_limited);
    assert_eq!(counters.errors(429), counters.rate_limited);
    // The penalty was waited out rather than hammered: one 429 per task at most.
    assert!(counters.rate_limited <= 3, "{counters:?}");
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test]
async fn honours_a_longer_retry_after() {
    let fake = start_fake(FakeOptions {
        preset: Preset::Demo,
        penalty: Duration::from_secs(2),
        retry_after_header: true,
        ..FakeOptions::default()
    })
    .await;
    let (base, table) = first_table(&fake);
    fake.trigger_rate_limit(&base);
    // The client's own minimum is shorter than the fake's penalty: only Retry-After keeps it
    // from coming back too early and drawing more 429s.
    let client = fake_client(
        &fake,
        ClientOptions {
            min_penalty: Duration::from_millis(200),
            per_base_rate: 5.0,
            per_token_rate: 50.0,
            ..quick_options("")
        },
    );
    let records = list_all(client.list_records(&base, &table, ListRecordsOptions::default())).await;
    assert_same_records(&records, &fake, &base, &table);
    assert_eq!(client.counters().rate_limited, 1);
}

#[tokio::test]
async fn retries_5xx_and_resets_until_done() {
    let fake = small_large_fake(200).await;
    fake.set_faults(
        "503=0.1,502=0.05,500=0.03,reset=0.08,seed=11"
            .parse::<Faults>()
            .unwrap(),
    );
    let client = fake_client(
        &fake,
        ClientOptions {
            max_retries: 8,
            ..quick_options("")
        },
    );
    let (base, table) = first_table(&fake);
    let options = ListRecordsOptions {
        page_size: Some(10),
        ..ListRecordsOptions::default()
    };
    let records = list_all(client.list_records(&base, &table, options)).await;
    assert_same_records(&records, &fake, &base, &table);
    for record in records.iter().take(20) {
        let again = client.get_record(&base, &table, &record.id).await.unwrap();
        assert_eq!(again.id, record.id);
    }
    let counters = client.counters();
    let served = fake.counters();
    let injected = served.faults_injected();
    assert!(
        served.faults_503 + served.faults_502 + served.faults_500 > 0,
        "{served:?}"
    );
    assert!(served.resets > 0, "no resets were injected: {served:?}");
    // Every injected fault cost exactly one retry, and nothing else did.
    assert_eq!(counters.retries, injected, "{counters:?}");
    assert_eq!(counters.requests, served.api_requests());
    assert_eq!(counters.transport_errors, served.resets);
    assert_eq!(counters.errors(503), served.faults_503);
    assert_eq!(counters.errors(502), served.faults_502);
    assert_eq!(counters.errors(500), served.faults_500);
    // A page whose answer was cut off cannot be asked for again (the fake, like a strict
    // server, moved its iterator on), so those cost a restart of the listing, and nothing else.
    assert_eq!(counters.errors(422), served.iterator_expired);
}

#[tokio::test]
async fn restarts_the_listing_when_the_iterator_expires() {
    let fake = small_large_fake(230).await;
    let client = fake_client(&fake, quick_options(""));
    let (base, table) = first_table(&fake);
    let options = ListRecordsOptions {
        page_size: Some(50),
        ..ListRecordsOptions::default()
    };
    let mut pager = client.list_records(&base, &table, options);
    let mut records = pager.next_page().await.unwrap().unwrap();
    records.extend(pager.next_page().await.unwrap().unwrap());
    fake.expire_iterators();
    while let Some(page) = pager.next_page().await.unwrap() {
        records.extend(page);
    }
    assert_eq!(pager.restarts(), 1);
    assert_eq!(fake.counters().iterator_expired, 1);
    assert_same_records(&records, &fake, &base, &table);

    // The same through the fault knob, on the 2nd request with an offset.
    fake.set_faults("iterexpire=2".parse::<Faults>().unwrap());
    let mut pager = client.list_records(
        &base,
        &table,
        ListRecordsOptions {
            page_size: Some(50),
            ..ListRecordsOptions::default()
        },
    );
    let mut records = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        records.extend(page);
    }
    assert_eq!(pager.restarts(), 1);
    assert_same_records(&records, &fake, &base, &table);
}

/// A record of the table with an attachment, and that attachment's field.
fn record_with_attachment(fake: &FakeAirtable, base: &str, table: &str) -> (String, String) {
    for record in fake.records_json(base, table) {
        for (field, value) in record["fields"].as_object().unwrap() {
            let attachments = Attachment::list_from_cell(value);
            if attachments.iter().any(|a| a.id.starts_with("att")) {
                return (record["id"].as_str().unwrap().to_owned(), field.clone());
            }
        }
    }
    panic!("no record with an attachment");
}

#[tokio::test]
async fn refreshes_an_expired_attachment_url() {
    let fake = small_large_fake(50).await;
    let client = fake_client(&fake, quick_options(""));
    let (base, table) = first_table(&fake);
    let (record_id, field) = record_with_attachment(&fake, &base, &table);
    let record = client.get_record(&base, &table, &record_id).await.unwrap();
    let attachment = record.attachments(&field)[0].clone();
    let expected = fake.attachment_content(&attachment.id).unwrap();

    fake.expire_attachment_urls();
    let error = client.download(&attachment.url).await.unwrap_err();
    assert!(
        matches!(error, AirtableError::AttachmentUrlExpired { .. }),
        "{error:?}"
    );
    let requests_before = client.counters().requests;
    let download = client
        .download_attachment(&base, &table, &record_id, &field, &attachment)
        .await
        .unwrap();
    assert_eq!(download.content_length(), Some(expected.len() as u64));
    let bytes = collect(download).await.unwrap();
    assert!(bytes == expected, "attachment bytes differ");
    // One API request to re-read the record; downloads are not API requests.
    assert_eq!(client.counters().requests, requests_before + 1);
    assert_eq!(fake.counters().url_expired, 2);
}

#[tokio::test]
async fn non_retryable_errors_say_what_to_do() {
    let fake = start_fake(FakeOptions::unlimited(Preset::Demo)).await;
    let (base, table) = first_table(&fake);
    let mut tokens = vec![fake.token()];
    let check = |error: &AirtableError, tokens: &[String]| {
        for token in tokens {
            assert_no_token(error, token);
        }
    };

    // 401: a wrong token.
    let wrong =
        "patWRONGWRONGWRON.0000000000000000000000000000000000000000000000000000000000000000";
    tokens.push(wrong.to_owned());
    let client = Client::new(Token::new(wrong).unwrap(), quick_options(&fake.url())).unwrap();
    let error = client.list_bases().await.unwrap_err();
    assert!(
        matches!(error, AirtableError::Unauthorized { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("wrong, expired or revoked"), "{message}");
    assert!(message.contains("AIRTABLE_TOKEN"), "{message}");
    check(&error, &tokens);

    // 403: a token without the scope for reading records.
    let schema_only = fake.add_token(&["schema.bases:read"], None);
    tokens.push(schema_only.clone());
    let client = Client::new(
        Token::new(&schema_only).unwrap(),
        quick_options(&fake.url()),
    )
    .unwrap();
    let error = list_error(&client, &base, &table).await;
    assert!(
        matches!(error, AirtableError::Forbidden { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("`data.records:read`"), "{message}");
    assert!(message.contains(&format!("base `{base}`")), "{message}");
    check(&error, &tokens);

    // 403: a token that was not given this base.
    let other_base = fake.add_empty_base("Other").id;
    let elsewhere = fake.add_token(
        &["data.records:read", "schema.bases:read"],
        Some(&[&other_base]),
    );
    tokens.push(elsewhere.clone());
    let client = Client::new(Token::new(&elsewhere).unwrap(), quick_options(&fake.url())).unwrap();
    let error = list_error(&client, &base, &table).await;
    assert!(
        matches!(error, AirtableError::Forbidden { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("list of bases"), "{error}");
    check(&error, &tokens);

    let client = fake_client(&fake, quick_options(""));
    // 404: an unknown table.
    let error = list_error(&client, &base, "tblNOSUCHTABLE000").await;
    assert!(matches!(error, AirtableError::NotFound { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "table `tblNOSUCHTABLE000` in base `{base}` was not found"
        )),
        "{message}"
    );
    check(&error, &tokens);

    // An unknown base: the data routes answer 403, the meta routes 404; both name the base.
    let error = list_error(&client, "appNOSUCHBASE0000", &table).await;
    assert!(
        matches!(error, AirtableError::Forbidden { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("`appNOSUCHBASE0000`"), "{error}");
    let error = client.base_schema("appNOSUCHBASE0000").await.unwrap_err();
    assert!(
        matches!(
            error,
            AirtableError::NotFound { .. } | AirtableError::Forbidden { .. }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("`appNOSUCHBASE0000`"), "{error}");
    check(&error, &tokens);

    // 404: an unknown record.
    let error = client
        .get_record(&base, &table, "recNOSUCHRECORD00")
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("record `recNOSUCHRECORD00`"),
        "{error}"
    );

    // 422: a write naming a field that does not exist, with Airtable's own message.
    let mut fields = serde_json::Map::new();
    fields.insert("No such field".into(), "x".into());
    let before = fake.counters().requests(Route::CreateRecords);
    let error = client
        .create_records(&base, &table, &[NewRecord { fields }], false)
        .await
        .unwrap_err();
    assert!(
        matches!(error, AirtableError::InvalidRequest { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("UNKNOWN_FIELD_NAME"), "{message}");
    assert!(message.contains("No such field"), "{message}");
    assert_eq!(error.status(), Some(422));
    assert_eq!(fake.counters().requests(Route::CreateRecords), before + 1);
    check(&error, &tokens);

    // 422: a page size Airtable does not serve is clamped, never sent.
    let options = ListRecordsOptions {
        page_size: Some(1000),
        ..ListRecordsOptions::default()
    };
    let mut pager = client.list_records(&base, &table, options);
    assert!(pager.next_page().await.is_ok());

    // 429 PUBLIC_API_BILLING_LIMIT_EXCEEDED: not retried.
    fake.set_billing_limit_exceeded(true);
    let before = client.counters();
    let error = list_error(&client, &base, &table).await;
    assert!(
        matches!(error, AirtableError::BillingLimitExceeded { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("retrying will not help"),
        "{error}"
    );
    let after = client.counters();
    assert_eq!(after.requests, before.requests + 1);
    assert_eq!(after.retries, before.retries);
    fake.set_billing_limit_exceeded(false);
    check(&error, &tokens);
}

async fn list_error(client: &Client, base: &str, table: &str) -> AirtableError {
    client
        .list_records(base, table, ListRecordsOptions::default())
        .next_page()
        .await
        .unwrap_err()
}

#[tokio::test]
async fn writes_records_schema_and_attachments() {
    let fake = start_fake(FakeOptions::unlimited(Preset::Empty)).await;
    let client = fake_client(&fake, quick_options(""));
    let (base, table) = first_table(&fake);
    let schema = client.base_schema(&base).await.unwrap();
    let name_field = schema.tables[0].field("Name").unwrap().id.clone();
    let attachments_field = schema.tables[0].field("Attachments").unwrap().id.clone();

    // 25 records go as 10 + 10 + 5.
    let new: Vec<NewRecord> = (0..25)
        .map(|i| {
            let mut fields = serde_json::Map::new();
            fields.insert("Name".into(), format!("row {i}").into());
            NewRecord { fields }
        })
        .collect();
    let created = client
        .create_records(&base, &table, &new, false)
        .await
        .unwrap();
    assert_eq!(created.len(), 25);
    assert_eq!(created[24].fields[&name_field], "row 24");
    assert_eq!(fake.counters().requests(Route::CreateRecords), 3);
    assert_eq!(fake.record_count(&base, &table), Some(28));

    let updates: Vec<RecordUpdate> = created
        .iter()
        .take(12)
        .map(|r| {
            let mut fields = serde_json::Map::new();
            fields.insert(
                name_field.clone(),
                format!("{} (edited)", r.fields[&name_field].as_str().unwrap()).into(),
            );
            RecordUpdate {
                id: r.id.clone(),
                fields,
            }
        })
        .collect();
    let updated = client
        .update_records(&base, &table, &updates, false)
        .await
        .unwrap();
    assert_eq!(updated.len(), 12);
    assert_eq!(updated[0].fields[&name_field], "row 0 (edited)");
    assert_eq!(fake.counters().requests(Route::UpdateRecords), 2);

    // Schema writes.
    let new_table = client
        .create_table(
            &base,
            &NewTable {
                name: "People".into(),
                description: Some("Restored".into()),
                fields: vec![NewField {
                    name: "Full name".into(),
                    field_type: "singleLineText".into(),
                    description: None,
                    options: None,
                }],
            },
        )
        .await
        .unwrap();
    assert_eq!(new_table.fields.len(), 1);
    assert_eq!(new_table.primary_field_id, new_table.fields[0].id);
    let link = client
        .create_field(
            &base,
            &new_table.id,
            &NewField {
                name: "Rows".into(),
                field_type: "multipleRecordLinks".into(),
                description: None,
                options: Some(serde_json::json!({ "linkedTableId": table })),
            },
        )
        .await
        .unwrap();
    let inverse = link
        .inverse_link_field_id()
        .expect("an inverse link field")
        .to_owned();
    let renamed = client
        .update_field(
            &base,
            &table,
            &inverse,
            &NameDescriptionUpdate {
                name: Some("People".into()),
                description: Some("Who is in this row".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "People");
    let retitled = client
        .update_table(
            &base,
            &new_table.id,
            &NameDescriptionUpdate {
                name: None,
                description: Some("Changed".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(retitled.name, "People");
    assert_eq!(retitled.description.as_deref(), Some("Changed"));
    let schema = client.base_schema(&base).await.unwrap();
    assert_eq!(schema.raw, fake.schema_json(&base));
    assert_eq!(
        schema.table(&table).unwrap().field(&inverse).unwrap().name,
        "People"
    );

    // Upload an attachment, then read it back through its URL.
    let content = test_file(70_000);
    let record = client
        .upload_attachment(
            &base,
            &created[0].id,
            &attachments_field,
            "application/octet-stream",
            "data.bin",
            &content,
        )
        .await
        .unwrap();
    let uploaded = record.attachments(&attachments_field);
    assert_eq!(uploaded.len(), 1);
    assert_eq!(uploaded[0].filename, "data.bin");
    assert_eq!(uploaded[0].size, Some(70_000));
    let bytes = collect(client.download(&uploaded[0].url).await.unwrap())
        .await
        .unwrap();
    assert!(bytes == content.as_ref(), "uploaded bytes differ");

    // Too big is refused before anything is sent.
    let requests = client.counters().requests;
    let big = vec![0u8; MAX_UPLOAD_BYTES + 1];
    let error = client
        .upload_attachment(
            &base,
            &created[0].id,
            &attachments_field,
            "application/octet-stream",
            "big.bin",
            &big,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, AirtableError::UploadTooLarge { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("write it by url instead"),
        "{error}"
    );
    assert_eq!(client.counters().requests, requests);

    // A new base.
    let created_base = client
        .create_base(
            &fake.workspace_id(),
            "Restored base",
            &[NewTable {
                name: "Things".into(),
                description: None,
                fields: vec![NewField {
                    name: "Name".into(),
                    field_type: "singleLineText".into(),
                    description: None,
                    options: None,
                }],
            }],
        )
        .await
        .unwrap();
    assert!(created_base.id.starts_with("app"));
    assert_eq!(created_base.tables[0].name, "Things");
    assert!(fake.bases().iter().any(|b| b.id == created_base.id));
}

#[tokio::test]
async fn timeouts_are_retried_for_reads_but_not_for_creates() {
    let fake = small_large_fake(100).await;
    let (base, table) = first_table(&fake);
    let options = ClientOptions {
        request_timeout: Duration::from_millis(300),
        max_retries: 8,
        ..quick_options("")
    };
    let client = fake_client(&fake, options);
    fake.set_faults("slow=0.3:2s,seed=4".parse::<Faults>().unwrap());
    let listing = ListRecordsOptions {
        page_size: Some(10),
        ..ListRecordsOptions::default()
    };
    let records = list_all(client.list_records(&base, &table, listing)).await;
    assert_same_records(&records, &fake, &base, &table);
    let counters = client.counters();
    assert!(fake.counters().slow > 0, "no slow answers were injected");
    assert_eq!(counters.transport_errors, fake.counters().slow);
    assert_eq!(counters.retries, fake.counters().slow);

    // A create that timed out may still be applied: it is not sent again.
    fake.set_faults("slow=1.0:2s".parse::<Faults>().unwrap());
    let before = fake.counters().requests(Route::CreateRecords);
    let error = client
        .create_records(&base, &table, &[NewRecord::default()], false)
        .await
        .unwrap_err();
    assert!(
        matches!(error, AirtableError::WriteOutcomeUnknown { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("timed out"), "{error}");
    assert_eq!(fake.counters().requests(Route::CreateRecords), before + 1);
}

#[tokio::test]
async fn downloads_complete_through_5xx_and_resets() {
    let fake = small_large_fake(60).await;
    let (base, table) = first_table(&fake);
    let client = fake_client(
        &fake,
        ClientOptions {
            max_retries: 10,
            ..quick_options("")
        },
    );
    let records = list_all(client.list_records(&base, &table, ListRecordsOptions::default())).await;
    fake.set_faults("503=0.2,reset=0.3,seed=5".parse::<Faults>().unwrap());
    let mut checked = 0;
    let mut total_bytes = 0;
    for record in &records {
        for (field, cell) in &record.fields {
            for attachment in Attachment::list_from_cell(cell) {
                let download = client
                    .download_attachment(&base, &table, &record.id, field, &attachment)
                    .await
                    .unwrap();
                let bytes = collect(download).await.unwrap();
                let expected = fake.attachment_content(&attachment.id).unwrap();
                assert!(bytes == expected, "bytes of {} differ", attachment.id);
                assert_eq!(Some(bytes.len() as u64), attachment.size);
                total_bytes += bytes.len() as u64;
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no attachments");
    let served = fake.counters();
    assert!(
        served.resets + served.faults_503 > 0,
        "no faults: {served:?}"
    );
    let counters = client.counters();
    assert!(counters.retries > 0);
    assert_eq!(
        counters.downloads,
        served.requests(Route::AttachmentDownload)
    );
    assert_eq!(counters.rate_limited, 0);
    assert_eq!(counters.bytes_downloaded, total_bytes);
}
