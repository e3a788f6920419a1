//! The Airtable client's trace logs never show the token, in a test binary of its own.
//!
//! tracing keeps per-callsite interest and the maximum level in process-wide caches. In the
//! shared integration binary, other tests running on other threads without a subscriber could
//! make a callsite cache "never interested" while this test's thread-local subscriber was being
//! installed, and the test then saw nothing logged (seen under load). Alone in its process it
//! installs one global subscriber before any callsite is reached, so what it captures is
//! exactly what the client logs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airback::airtable::{Client, ClientOptions, ListRecordsOptions, Token};
use airback_fake::{FakeAirtable, FakeOptions, Faults, LargeParams, Preset};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn options(url: &str) -> ClientOptions {
    ClientOptions {
        retry_base_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(40),
        max_retries: 10,
        ..ClientOptions::default()
    }
    .with_url(url)
    .unpaced()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_never_show_the_token() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "airback::airtable=trace",
        ))
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();

    let fake = FakeAirtable::start(FakeOptions {
        large: LargeParams {
            tables: 1,
            records_per_table: 120,
            attachments: 6,
            min_attachment_bytes: 1_000,
            max_attachment_bytes: 200_000,
            ..LargeParams::default()
        },
        ..FakeOptions::unlimited(Preset::Large)
    })
    .await
    .unwrap();
    fake.set_faults("503=0.2,reset=0.1,seed=3".parse::<Faults>().unwrap());
    let client = Client::new(Token::new(fake.token()).unwrap(), options(&fake.url())).unwrap();
    let base = fake.bases()[0].id.clone();
    let table = fake.schema_json(&base)["tables"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut pager = client.list_records(
        &base,
        &table,
        ListRecordsOptions {
            page_size: Some(20),
            ..Default::default()
        },
    );
    let mut records = 0;
    while let Some(page) = pager.next_page().await.unwrap() {
        records += page.len();
    }
    assert_eq!(records, 120);
    let _ = client
        .list_records(&base, "tblNOSUCHTABLE000", ListRecordsOptions::default())
        .next_page()
        .await;
    let wrong = Client::new(Token::new("patWRONG").unwrap(), options(&fake.url())).unwrap();
    let _ = wrong.list_bases().await;
    let _ = format!("{client:?} {wrong:?}");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("airtable request"),
        "nothing was logged: {logs}"
    );
    assert!(!logs.contains(&fake.token()), "the token was logged");
    assert!(
        !logs.contains(&fake.token()[3..20]),
        "part of the token was logged"
    );
    assert!(!logs.contains("patWRONG"), "the wrong token was logged");
}
