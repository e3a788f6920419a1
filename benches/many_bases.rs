//! Many bases at once: `airback snapshot --all-bases` with bases backed up one after another
//! (`--base-concurrency 1`) and at once (the default, 10), against the fake at Airtable's real
//! limits (5 requests/s per base over any one-second window, 50/s per token, a 30 s penalty
//! after a 429).
//!
//! Run with `cargo bench --bench many_bases` (`MANY_BASES_QUICK=1`: 500 records per base).
//! The last pair of runs gives each base 20 files of 0.5–5 MB, for the memory of many bases
//! downloading at once.
//! The fake runs in this process, so its counters are read directly: the API requests, the
//! 429s, and the most requests it received within any one second. A sampler reads the request
//! count every 100 ms; the busy rate is the requests divided by the time from the first
//! request to the last, and the sustained rate the most requests in any 3-second window (while
//! every base runs, before the last ones finish alone). The snapshots run as subprocesses of the release binary under
//! `/usr/bin/time -v` (peak RSS), each into a fresh encrypted repository.

// The crate denies printing outside src/cli/print.rs; benchmarks print their tables.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use airback_fake::{FakeAirtable, FakeOptions, Preset};

struct Run {
    label: String,
    bases: usize,
    concurrency: usize,
    seconds: f64,
    requests: u64,
    busy_seconds: f64,
    /// The most requests in any 3-second window, per second: the rate while every base runs.
    sustained: f64,
    peak_per_second: u64,
    rate_limited: u64,
    rss_mib: f64,
}

fn main() {
    let quick = std::env::var("MANY_BASES_QUICK").is_ok_and(|v| v == "1");
    let records = if quick { 500 } else { 2_000 };
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_airback"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let work = tempfile::tempdir().expect("temporary directory");
    let mut runs = Vec::new();
    for (bases, files, concurrencies) in [
        (6, 0, vec![1, 10]),
        (12, 0, vec![10]),
        (10, 20, vec![1, 10]),
    ] {
        for concurrency in concurrencies {
            // A fresh fake each time: its counters and windows start empty.
            let fake = runtime.block_on(start(bases, records, files));
            let label = match files {
                0 => format!("{bases} bases, {concurrency} at once"),
                n => {
                    format!("{bases} bases with {n} files of 0.5–5 MB each, {concurrency} at once")
                }
            };
            let dir = work.path().join(format!("{bases}-{concurrency}"));
            runs.push(run(&bin, &fake, &dir, label, bases, concurrency));
            runtime.block_on(async { drop(fake) });
        }
    }
    println!(
        "| run | bases × records | wall s | API requests | busy rate /s | best 3 s /s | peak in 1 s | 429s | peak RSS |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &runs {
        println!(
            "| {} | {} × {records} | {:.1} | {} | {:.1} | {:.1} | {} | {} | {:.0} MiB |",
            r.label,
            r.bases,
            r.seconds,
            r.requests,
            r.requests as f64 / r.busy_seconds.max(0.001),
            r.sustained,
            r.peak_per_second,
            r.rate_limited,
            r.rss_mib
        );
    }
    let sequential = runs.iter().find(|r| r.bases == 6 && r.concurrency == 1);
    let files: Vec<&Run> = runs.iter().filter(|r| r.bases == 10).collect();
    if let [one, ten] = files[..] {
        println!(
            "\nwith files, peak RSS {:.0} MiB one base at a time and {:.0} MiB ten at once: {:.1} MiB per base more",
            one.rss_mib,
            ten.rss_mib,
            (ten.rss_mib - one.rss_mib) / 9.0
        );
    }
    let together = runs.iter().find(|r| r.bases == 6 && r.concurrency == 10);
    if let (Some(a), Some(b)) = (sequential, together) {
        println!(
            "\n6 bases at once: {:.1}x faster than one after another ({:.1} s against {:.1} s)",
            a.seconds / b.seconds,
            b.seconds,
            a.seconds
        );
    }
}

async fn start(bases: usize, records: usize, files: usize) -> FakeAirtable {
    let mut options = FakeOptions {
        preset: Preset::Large,
        ..FakeOptions::default()
    };
    options.large = format!(
        "bases={bases},tables=2,records={},attachments={files},min=500000,max=5000000",
        records / 2
    )
    .parse()
    .expect("large parameters");
    FakeAirtable::start(options).await.expect("start the fake")
}

fn airback(bin: &Path, fake: &FakeAirtable, dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("AIRTABLE_API_URL", fake.url())
        .env("AIRTABLE_CONTENT_URL", fake.url())
        .env("AIRTABLE_TOKEN", fake.token())
        .env("AIRBACK_CACHE_DIR", dir.join("cache"))
        .env("AIRBACK_PASSWORD", "bench password")
        .env("AIRBACK_REPO", dir.join("repo"))
        .env("NO_COLOR", "1");
    cmd
}

fn run(
    bin: &Path,
    fake: &FakeAirtable,
    dir: &Path,
    label: String,
    bases: usize,
    concurrency: usize,
) -> Run {
    std::fs::create_dir_all(dir).expect("bench folder");
    let init = airback(bin, fake, dir)
        .args(["init", "--quiet"])
        .status()
        .expect("airback init");
    assert!(init.success(), "airback init failed");
    let before = fake.counters();
    let time_file = dir.join("time");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v")
        .arg("-o")
        .arg(&time_file)
        .arg(bin)
        .args(["snapshot", "--all-bases", "--quiet", "--base-concurrency"])
        .arg(concurrency.to_string());
    for (key, value) in airback(bin, fake, dir).get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    // The request count, sampled every 100 ms while the snapshot runs: when the first and the
    // last request came.
    let done = AtomicBool::new(false);
    let (status, seconds, (busy_seconds, sustained)) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let started = Instant::now();
            let mut previous = fake.counters().api_requests();
            let mut samples = vec![previous];
            let (mut first, mut last) = (None, None);
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let now = fake.counters().api_requests();
                samples.push(now);
                if now != previous {
                    first.get_or_insert(started.elapsed());
                    last = Some(started.elapsed());
                    previous = now;
                }
            }
            let busy = match (first, last) {
                (Some(a), Some(b)) => (b - a + Duration::from_millis(100)).as_secs_f64(),
                _ => 0.0,
            };
            // 30 samples of 100 ms: the best 3-second window.
            let sustained = samples
                .windows(31)
                .map(|w| (w[30] - w[0]) as f64 / 3.0)
                .fold(0.0, f64::max);
            (busy, sustained)
        });
        let started = Instant::now();
        let status = cmd.status().expect("airback snapshot");
        let seconds = started.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        (status, seconds, sampler.join().expect("sampler"))
    });
    assert!(status.success(), "airback snapshot failed: {status}");
    let after = fake.counters();
    let time = std::fs::read_to_string(&time_file).unwrap_or_default();
    let rss_kib: f64 = time
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    Run {
        label,
        bases,
        concurrency,
        seconds,
        requests: after.api_requests() - before.api_requests(),
        busy_seconds,
        sustained,
        peak_per_second: after.peak_api_requests_per_second,
        rate_limited: after.rate_limited - before.rate_limited,
        rss_mib: rss_kib / 1024.0,
    }
}
