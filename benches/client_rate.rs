//! The request rate the Airtable client sustains against the fake server.
//!
//! Run with `cargo bench --bench client_rate`. Two parts:
//!
//! 1. **Real limits**: the fake enforces 5 requests/s per base over any one-second window (and
//!    50/s per token, with the 30 s penalty), the client runs with its defaults. The client
//!    should sustain at least 4.5 requests/s (90 % of the limit) with zero 429s, both for one
//!    task listing a table and for several tasks sharing the base.
//! 2. **Limits off**: no limits in the fake, pacing off in the client, several concurrent tasks;
//!    this measures what a request costs the client (and the fake, which runs in the same
//!    process on the same cores).
//!
//! The rate is requests divided by the time from the first request to the last answer. Because
//! the pacer lets a first burst of 5 go at once, that flatters short runs; the "sustained" column
//! leaves those 5 out, and converges on the pacer's design rate, 5 per 1.1 s = 4.55/s. Results
//! are printed as a markdown table. Set `CLIENT_RATE_QUICK=1` for a short run (smaller tables).

// The crate denies printing outside src/cli/print.rs; benchmarks print their tables.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use airback::airtable::{Client, ClientCounters, ClientOptions, ListRecordsOptions, Token};
use airback_fake::{FakeAirtable, FakeCounters, FakeOptions, LargeParams, Preset};

struct Row {
    scenario: String,
    tasks: usize,
    requests: u64,
    elapsed: Duration,
    client: ClientCounters,
    fake: FakeCounters,
}

impl Row {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The rate without the first burst a sliding window lets through at once (5 requests at
    /// 5/s), which flatters short runs: the rate the pacer sustains.
    fn sustained(&self, burst: u64) -> f64 {
        self.requests.saturating_sub(burst) as f64 / self.elapsed.as_secs_f64()
    }
}

fn large(tables: usize, records_per_table: usize) -> LargeParams {
    LargeParams {
        tables,
        records_per_table,
        attachments: 0,
        ..LargeParams::default()
    }
}

async fn start(limits: bool, params: LargeParams) -> FakeAirtable {
    let options = if limits {
        FakeOptions {
            preset: Preset::Large,
            large: params,
            ..FakeOptions::default()
        }
    } else {
        FakeOptions {
            large: params,
            ..FakeOptions::unlimited(Preset::Large)
        }
    };
    FakeAirtable::start(options).await.expect("start the fake")
}

fn client(fake: &FakeAirtable, paced: bool) -> Client {
    let mut options = ClientOptions::default().with_url(&fake.url());
    if !paced {
        options = options.unpaced();
    }
    Client::new(Token::new(fake.token()).expect("token"), options).expect("client")
}

fn tables(fake: &FakeAirtable) -> (String, Vec<String>) {
    let base = fake.bases()[0].id.clone();
    let tables = fake.schema_json(&base)["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| t["id"].as_str().expect("table id").to_owned())
        .collect();
    (base, tables)
}

/// Lists `table` to the end; returns the number of records.
async fn list_table(client: Client, base: String, table: String) -> usize {
    let mut pager = client.list_records(&base, &table, ListRecordsOptions::default());
    let mut records = 0;
    while let Some(page) = pager.next_page().await.expect("list a page") {
        records += page.len();
    }
    records
}

/// `tasks` tasks each list one table of the base (round robin over the tables), all at once;
/// with `repeat_for`, each task keeps listing (the next table) until that much time has passed.
async fn listing(
    fake: &FakeAirtable,
    paced: bool,
    tasks: usize,
    repeat_for: Option<Duration>,
    scenario: &str,
) -> Row {
    let client = client(fake, paced);
    let (base, tables) = tables(fake);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (client, base, tables) = (client.clone(), base.clone(), tables.clone());
            tokio::spawn(async move {
                let mut i = task;
                loop {
                    let table = tables[i % tables.len()].clone();
                    list_table(client.clone(), base.clone(), table).await;
                    i += tasks;
                    if repeat_for.is_none_or(|d| started.elapsed() >= d) {
                        break;
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("task");
    }
    let elapsed = started.elapsed();
    let counters = client.counters();
    Row {
        scenario: scenario.to_owned(),
        tasks,
        requests: counters.requests,
        elapsed,
        client: counters,
        fake: fake.counters(),
    }
}

/// `tasks` tasks read single records for `duration`.
async fn get_records(fake: &FakeAirtable, tasks: usize, duration: Duration, scenario: &str) -> Row {
    let client = client(fake, false);
    let (base, tables) = tables(fake);
    let ids: Vec<String> = fake
        .records_json(&base, &tables[0])
        .iter()
        .take(500)
        .map(|r| r["id"].as_str().expect("record id").to_owned())
        .collect();
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (client, base, table, ids) =
                (client.clone(), base.clone(), tables[0].clone(), ids.clone());
            tokio::spawn(async move {
                let mut i = task;
                while started.elapsed() < duration {
                    client
                        .get_record(&base, &table, &ids[i % ids.len()])
                        .await
                        .expect("get a record");
                    i += tasks;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("task");
    }
    let elapsed = started.elapsed();
    let counters = client.counters();
    Row {
        scenario: scenario.to_owned(),
        tasks,
        requests: counters.requests,
        elapsed,
        client: counters,
        fake: fake.counters(),
    }
}

fn print(rows: &[Row], burst: u64) {
    println!();
    println!(
        "| scenario | tasks | requests (client / fake) | elapsed (s) | requests/s | sustained (s⁻¹, first {burst} excluded) | 429s (client / fake) | retries |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        println!(
            "| {} | {} | {} / {} | {:.2} | {:.2} | {:.2} | {} / {} | {} |",
            row.scenario,
            row.tasks,
            row.requests,
            row.fake.api_requests(),
            row.elapsed.as_secs_f64(),
            row.rate(),
            row.sustained(burst),
            row.client.rate_limited,
            row.fake.rate_limited,
            row.client.retries,
        );
    }
    println!();
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let quick = std::env::var_os("CLIENT_RATE_QUICK").is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let defaults = ClientOptions::default();
    println!(
        "client_rate: client paces at {}/s per base with a {} ms margin (at most {} requests per {:.2} s)",
        defaults.per_base_rate,
        defaults.pacing_margin.as_millis(),
        defaults.per_base_rate.floor(),
        1.0 + defaults.pacing_margin.as_secs_f64(),
    );
    let rows = runtime.block_on(async {
        let mut rows = Vec::new();
        let (single, shared, overhead_time) = if quick {
            (2_000, 500, Duration::from_secs(1))
        } else {
            (12_000, 1_500, Duration::from_secs(5))
        };

        // Real limits: one task listing one table of `single` records.
        let fake = start(true, large(1, single)).await;
        eprintln!("real limits, 1 task ...");
        rows.push(listing(&fake, true, 1, None, "real limits (5/s): list one table").await);
        drop(fake);

        // Real limits: 8 tasks listing 8 tables of one base at once.
        let fake = start(true, large(8, shared)).await;
        eprintln!("real limits, 8 tasks ...");
        let scenario = "real limits (5/s): list 8 tables at once";
        rows.push(listing(&fake, true, 8, None, scenario).await);
        drop(fake);

        // Limits off: client overhead, each for a few seconds.
        let fake = start(false, large(8, shared)).await;
        eprintln!("limits off ...");
        let scenario = "limits off: list tables (pages of 100)";
        rows.push(listing(&fake, false, 1, Some(overhead_time), scenario).await);
        let fake = start(false, large(8, shared)).await;
        rows.push(listing(&fake, false, 8, Some(overhead_time), scenario).await);
        let fake = start(false, large(1, 1_000)).await;
        rows.push(get_records(&fake, 1, overhead_time, "limits off: get_record").await);
        let fake = start(false, large(1, 1_000)).await;
        rows.push(get_records(&fake, 8, overhead_time, "limits off: get_record").await);
        rows
    });
    print(&rows, defaults.per_base_rate.floor() as u64);
}
