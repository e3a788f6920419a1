//! Issue #4's acceptance figures for `airback snapshot` on the fake's `large` preset, with the
//! fake's real rate limit (5 requests/s per base, a 429 locks the base for 30 s).
//!
//! Run with `benches/snapshot_large.sh` (installs restic and GNU time if missing, builds the
//! release binary, then runs this), or `cargo bench --bench snapshot_large`. Everything that
//! is measured runs as a subprocess of the release binary (`target/release/airback`, or
//! `$AIRBACK_BIN`), so `/usr/bin/time -v` sees the snapshot's memory alone.
//!
//! For each size (records in the base, spread over 4 tables; attachments scale linearly to
//! about 2 GB at 100k records):
//!
//! 1. `airback fake-airtable --preset large --rate 5 --large …` as a child; its JSON line gives
//!    the URL, token and base.
//! 2. `airback init`, then the first `airback snapshot --json` under `/usr/bin/time -v`:
//!    API requests against the floor (Σ ⌈records/100⌉ per table + list bases + schema), 429s,
//!    and the request rate while listing, from the client's debug log (`AIRBACK_LOG`): list
//!    requests answered over the time from the first to the last list answer.
//! 3. A second snapshot with nothing changed: downloads, bytes added, objects written, and the
//!    files that appeared in the repository directory.
//! 4. 1 % of the records changed (`Notes`, through the library client, batches of 10) and 10
//!    attachments uploaded (random bytes, up to 5 MB); a third snapshot. At one size, the base
//!    is also exported before and after the change (one JSON-lines file per table plus one file
//!    per attachment) and backed up with `restic backup`, to compare what each tool adds.
//! 5. Peak RSS of every snapshot run.
//!
//! Environment: `AIRBACK_BENCH_SIZES=10000,50000,100000` (the default),
//! `AIRBACK_BENCH_QUICK=1` (2,000 records, to try things out), `AIRBACK_BENCH_RESTIC_SIZE=N`
//! (default: the middle size; `0` for none), `AIRBACK_BENCH_FIRST_ONLY=100000` (sizes for which
//! only the first snapshot runs), `AIRBACK_BENCH_DIR` (work directory, default a fresh one in
//! the temp dir), `AIRBACK_BENCH_KEEP=1` (keep repositories and exports),
//! `AIRBACK_BENCH_INSECURE=1` (unencrypted repositories; encrypted with the default key
//! parameters otherwise, as `airback init` makes them).
//! Results are printed as markdown and written to `results.md` and `results.json` in the work
//! directory.

// The crate denies printing outside src/cli/print.rs; benchmarks print their tables.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use airback::airtable::{
    Attachment, Client, ClientOptions, ListRecordsOptions, Record, RecordUpdate, Token,
};
use airback_fake::LargeParams;
use futures::StreamExt;
use serde_json::{Map, Value, json};

/// The fake's (and Airtable's) limit, requests per second per base.
const RATE: u32 = 5;
const TABLES: usize = 4;
/// Attachment bytes at 100k records; the count scales linearly with the records.
const ATTACHMENT_BYTES_AT_100K: f64 = 2e9;
/// Uploaded in the third step.
const UPLOADS: usize = 10;
/// The RSS target at 100k records.
const RSS_TARGET_BYTES: u64 = 150_000_000;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Settings {
    bin: PathBuf,
    sizes: Vec<usize>,
    restic_size: Option<usize>,
    first_only: BTreeSet<usize>,
    work: PathBuf,
    keep: bool,
    quick: bool,
    /// Encrypted repositories (the default, as `airback init` makes them); plaintext with
    /// `AIRBACK_BENCH_INSECURE=1`.
    encrypted: bool,
}

/// The password the bench's encrypted repositories use (default key parameters, as a user's).
const BENCH_PASSWORD: &str = "airback-bench";

fn env_sizes(name: &str) -> Option<Vec<usize>> {
    let text = std::env::var(name).ok()?;
    Some(
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|_| panic!("{name}: `{s}` is not a number"))
            })
            .collect(),
    )
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::var("AIRBACK_BENCH_QUICK").is_ok_and(|v| v == "1");
        let sizes = env_sizes("AIRBACK_BENCH_SIZES").unwrap_or_else(|| {
            if quick {
                vec![2_000]
            } else {
                vec![10_000, 50_000, 100_000]
            }
        });
        let restic_size = match env_sizes("AIRBACK_BENCH_RESTIC_SIZE") {
            Some(v) => v.first().copied().filter(|&n| n > 0),
            None => sizes.get(sizes.len() / 2).copied(),
        };
        let first_only = env_sizes("AIRBACK_BENCH_FIRST_ONLY")
            .unwrap_or_default()
            .into_iter()
            .collect();
        let bin = std::env::var_os("AIRBACK_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_airback")));
        let work = std::env::var_os("AIRBACK_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!("airback-bench-{}", std::process::id()))
            });
        Settings {
            bin,
            sizes,
            restic_size,
            first_only,
            work,
            keep: std::env::var("AIRBACK_BENCH_KEEP").is_ok_and(|v| v == "1"),
            quick,
            encrypted: !std::env::var("AIRBACK_BENCH_INSECURE").is_ok_and(|v| v == "1"),
        }
    }

    /// Gives `cmd` the repository password, or nothing for a plaintext repository.
    fn password(&self, cmd: &mut Command) {
        if self.encrypted {
            cmd.env("AIRBACK_PASSWORD", BENCH_PASSWORD);
        }
    }
}

/// The large-preset parameters for `records` records: 4 tables, default size distribution,
/// attachment count chosen so that the expected total is 2 GB × records / 100k.
fn params_for(records: usize) -> LargeParams {
    let defaults = LargeParams::default();
    let mean = defaults.mean_attachment_bytes();
    let attachments =
        (ATTACHMENT_BYTES_AT_100K * records as f64 / 100_000.0 / mean).round() as usize;
    LargeParams {
        tables: TABLES,
        records_per_table: records.div_ceil(TABLES),
        attachments,
        ..defaults
    }
}

/// Shell-quotes a command for printing.
fn show_command(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| {
            Some(format!(
                "{}={}",
                k.to_string_lossy(),
                quote(&v?.to_string_lossy())
            ))
        })
        .collect();
    parts.push(quote(&cmd.get_program().to_string_lossy()));
    parts.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    parts.join(" ")
}

fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn log(msg: impl AsRef<str>) {
    eprintln!(
        "[bench {}] {}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        msg.as_ref()
    );
}

/// The commands run, for the report.
#[derive(Default)]
struct Commands(Vec<String>);

impl Commands {
    fn note(&mut self, cmd: &Command) {
        let text = show_command(cmd);
        log(format!("$ {text}"));
        self.0.push(text);
    }
}

// ---------------------------------------------------------------------------------------------
// The fake

struct Fake {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    url: String,
    token: String,
    base: String,
}

impl Fake {
    fn start(s: &Settings, params: &LargeParams, dir: &Path, cmds: &mut Commands) -> Res<Fake> {
        let mut cmd = Command::new(&s.bin);
        cmd.args([
            "fake-airtable",
            "--listen",
            "127.0.0.1:0",
            "--preset",
            "large",
            "--rate",
        ])
        .arg(RATE.to_string())
        .arg("--large")
        .arg(params.to_string());
        cmds.note(&cmd);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(File::create(dir.join("fake.stderr"))?)
            .spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let banner: Value = serde_json::from_str(&line)
            .map_err(|e| format!("fake-airtable printed `{line}`: {e}"))?;
        let text = |v: &Value| v.as_str().map(str::to_owned).ok_or("banner field missing");
        Ok(Fake {
            url: text(&banner["url"])?,
            token: text(&banner["token"])?,
            base: text(&banner["bases"][0]["id"])?,
            child,
            _stdout: stdout,
        })
    }

    fn client(&self) -> Res<Client> {
        Ok(Client::new(
            Token::new(self.token.clone())?,
            ClientOptions::default().with_url(&self.url),
        )?)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lets the fake's one-second window drain between two processes that pace independently.
fn settle() {
    std::thread::sleep(Duration::from_millis(2_000));
}

// ---------------------------------------------------------------------------------------------
// /usr/bin/time -v

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct TimeV {
    max_rss_kb: u64,
    wall_secs: f64,
    user_secs: f64,
    sys_secs: f64,
}

fn parse_time_v(path: &Path) -> Res<TimeV> {
    let text = std::fs::read_to_string(path)?;
    let mut t = TimeV::default();
    for line in text.lines().map(str::trim) {
        let Some((key, value)) = line.rsplit_once(": ") else {
            continue;
        };
        match key {
            "Maximum resident set size (kbytes)" => t.max_rss_kb = value.parse()?,
            "User time (seconds)" => t.user_secs = value.parse()?,
            "System time (seconds)" => t.sys_secs = value.parse()?,
            k if k.starts_with("Elapsed (wall clock) time") => {
                t.wall_secs = value
                    .split(':')
                    .try_fold(0.0, |acc, part| part.parse::<f64>().map(|v| acc * 60.0 + v))?;
            }
            _ => {}
        }
    }
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// Snapshots

#[derive(Debug, Clone, serde::Serialize)]
struct SnapshotRun {
    summary: Value,
    time: TimeV,
    /// List-records requests answered, and the seconds from the first answer to the last.
    list_requests: u64,
    list_span_secs: f64,
    /// All API requests answered, and the seconds from the first answer to the last.
    api_answers: u64,
    api_span_secs: f64,
    /// Files that appeared in the repository directory, and their bytes.
    new_files: usize,
    new_file_bytes: u64,
}

impl SnapshotRun {
    fn u(&self, key: &str) -> u64 {
        self.summary[key].as_u64().unwrap_or(0)
    }

    fn f(&self, key: &str) -> f64 {
        self.summary[key].as_f64().unwrap_or(0.0)
    }

    /// Requests per second while listing: the intervals between list answers.
    fn list_rate(&self) -> f64 {
        if self.list_requests < 2 || self.list_span_secs <= 0.0 {
            return 0.0;
        }
        (self.list_requests - 1) as f64 / self.list_span_secs
    }

    fn rss_bytes(&self) -> u64 {
        self.time.max_rss_kb * 1024
    }
}

fn repo_files(dir: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_dir() => walk(&path, out),
                Ok(m) => {
                    out.insert(path, m.len());
                }
                Err(_) => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// Strips ANSI escape sequences (in case the log is coloured).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// (answers, span seconds) of the client's `airtable request` debug lines matching `filter`.
fn answer_span(log: &str, filter: impl Fn(&str) -> bool) -> (u64, f64) {
    let times: Vec<std::time::SystemTime> = log
        .lines()
        .map(strip_ansi)
        .filter(|l| l.contains("airtable request") && !l.contains("request failed") && filter(l))
        .filter_map(|l| {
            let stamp = l.split_whitespace().next()?.to_owned();
            humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z')).ok()
        })
        .collect();
    let (Some(first), Some(last)) = (times.first(), times.last()) else {
        return (0, 0.0);
    };
    let span = last
        .duration_since(*first)
        .unwrap_or_default()
        .as_secs_f64();
    (times.len() as u64, span)
}

fn snapshot(
    s: &Settings,
    fake: &Fake,
    repo: &Path,
    cache: &Path,
    dir: &Path,
    label: &str,
    cmds: &mut Commands,
) -> Res<SnapshotRun> {
    let time_file = dir.join(format!("{label}.time"));
    let err_file = dir.join(format!("{label}.stderr"));
    let before = repo_files(repo);
    let mut cmd = Command::new("/usr/bin/time");
    cmd.env("AIRTABLE_API_URL", &fake.url)
        .env("AIRTABLE_CONTENT_URL", &fake.url)
        .env("AIRTABLE_TOKEN", &fake.token)
        .env("AIRBACK_CACHE_DIR", cache)
        .env("AIRBACK_LOG", "warn,airback::airtable=debug")
        .env("NO_COLOR", "1");
    s.password(&mut cmd);
    cmd.arg("-v")
        .arg("-o")
        .arg(&time_file)
        .arg(&s.bin)
        .arg("snapshot")
        .arg("--repo")
        .arg(repo)
        .args(["--base", &fake.base, "--json"]);
    cmds.note(&cmd);
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(File::create(&err_file)?)
        .output()?;
    let stderr = std::fs::read_to_string(&err_file).unwrap_or_default();
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        return Err(format!(
            "{label}: airback snapshot exited with {}: {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
        .into());
    }
    let stdout = String::from_utf8(out.stdout)?;
    let summary: Value = serde_json::from_str(
        stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .ok_or("no JSON summary")?,
    )?;
    let (list_requests, list_span_secs) =
        answer_span(&stderr, |l| l.contains("operation=\"list records\""));
    let (api_answers, api_span_secs) = answer_span(&stderr, |_| true);
    let after = repo_files(repo);
    let new: Vec<u64> = after
        .iter()
        .filter(|(p, _)| !before.contains_key(*p))
        .map(|(_, n)| *n)
        .collect();
    let run = SnapshotRun {
        summary,
        time: parse_time_v(&time_file)?,
        list_requests,
        list_span_secs,
        api_answers,
        api_span_secs,
        new_files: new.len(),
        new_file_bytes: new.iter().sum(),
    };
    log(format!(
        "{label}: {} | peak RSS {:.1} MiB, wall {:.1} s, list rate {:.3}/s, {} new repo files",
        run.summary,
        run.time.max_rss_kb as f64 / 1024.0,
        run.time.wall_secs,
        run.list_rate(),
        run.new_files
    ));
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// Changes through the API

#[derive(Debug, Clone)]
struct TableInfo {
    id: String,
    notes: String,
    files: String,
}

async fn tables(client: &Client, base: &str) -> Res<Vec<TableInfo>> {
    let schema = client.base_schema(base).await?;
    schema
        .tables
        .iter()
        .map(|t| {
            let field = |name: &str| {
                t.fields
                    .iter()
                    .find(|f| f.name == name)
                    .map(|f| f.id.clone())
                    .ok_or_else(|| format!("table {} has no field `{name}`", t.id))
            };
            Ok(TableInfo {
                id: t.id.clone(),
                notes: field("Notes")?,
                files: field("Files")?,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Default, serde::Serialize)]
struct ChangeReport {
    records_updated: usize,
    update_requests: u64,
    uploads: usize,
    upload_bytes: u64,
    api_requests: u64,
    rate_limited: u64,
    secs: f64,
}

/// Changes `Notes` of the first 1 % of each table's records (in listing order; record ids are
/// random, so these are spread over the id space) and uploads 10 attachments to other records.
async fn change(
    client: &Client,
    base: &str,
    tables: &[TableInfo],
    records_per_table: usize,
    listing: Option<&BTreeMap<String, Vec<Record>>>,
) -> Res<ChangeReport> {
    let start = Instant::now();
    let before = client.counters();
    let per_table = (records_per_table / 100).max(1);
    let uploads_per_table = UPLOADS.div_ceil(tables.len());
    let wanted = per_table + uploads_per_table;
    let mut candidates: Vec<Vec<String>> = Vec::new();
    for t in tables {
        let ids: Vec<String> = match listing.and_then(|l| l.get(&t.id)) {
            Some(records) => records.iter().take(wanted).map(|r| r.id.clone()).collect(),
            None => {
                let mut pager = client.list_records(base, &t.id, ListRecordsOptions::default());
                let mut ids = Vec::new();
                while ids.len() < wanted {
                    let Some(page) = pager.next_page().await? else {
                        break;
                    };
                    ids.extend(page.into_iter().map(|r| r.id));
                }
                ids.truncate(wanted);
                ids
            }
        };
        candidates.push(ids);
    }
    let requests_before_updates = client.counters().requests;
    let mut report = ChangeReport::default();
    for (t, ids) in tables.iter().zip(&candidates) {
        let updates: Vec<RecordUpdate> = ids
            .iter()
            .take(per_table)
            .enumerate()
            .map(|(i, id)| {
                let mut fields = Map::new();
                fields.insert(
                    t.notes.clone(),
                    json!(format!(
                        "changed by the snapshot_large benchmark ({i}): the quick brown fox"
                    )),
                );
                RecordUpdate {
                    id: id.clone(),
                    fields,
                }
            })
            .collect();
        report.records_updated += client
            .update_records(base, &t.id, &updates, false)
            .await?
            .len();
    }
    report.update_requests = client.counters().requests - requests_before_updates;
    let mut rng = fastrand::Rng::with_seed(0x5eed_0004);
    for i in 0..UPLOADS {
        let t = i % tables.len();
        let record = candidates[t]
            .get(per_table + i / tables.len())
            .ok_or("not enough records for the uploads")?;
        let size = rng.usize(100_000..=airback::airtable::MAX_UPLOAD_BYTES);
        let mut bytes = vec![0u8; size];
        rng.fill(&mut bytes);
        client
            .upload_attachment(
                base,
                record,
                &tables[t].files,
                "application/octet-stream",
                &format!("bench-upload-{i}.bin"),
                &bytes,
            )
            .await?;
        report.uploads += 1;
        report.upload_bytes += size as u64;
    }
    let after = client.counters();
    report.api_requests = after.requests - before.requests;
    report.rate_limited = after.rate_limited - before.rate_limited;
    report.secs = start.elapsed().as_secs_f64();
    log(format!("change: {report:?}"));
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Export and restic

#[derive(Debug, Clone, Default, serde::Serialize)]
struct ExportReport {
    records: usize,
    attachments: usize,
    attachments_downloaded: usize,
    attachment_bytes_downloaded: u64,
    api_requests: u64,
    rate_limited: u64,
    secs: f64,
}

fn strip_urls(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(strip_urls).collect()),
        Value::Object(o)
            if o.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.starts_with("att"))
                && o.contains_key("filename") =>
        {
            let mut o = o.clone();
            o.remove("url");
            o.remove("thumbnails");
            Value::Object(o)
        }
        other => other.clone(),
    }
}

/// Exports the base into `dir`: `tables-raw/<table>.jsonl` (each record as the API returned
/// it, in listing order, expiring attachment URLs included), `tables-stripped/<table>.jsonl`
/// (the same without `url` and `thumbnails` in attachment objects), and `attachments/<att id>`
/// (content; files already there with the right size are not downloaded again).
async fn export(
    client: &Client,
    base: &str,
    tables: &[TableInfo],
    dir: &Path,
) -> Res<(ExportReport, BTreeMap<String, Vec<Record>>)> {
    let start = Instant::now();
    let before = client.counters();
    for sub in ["tables-raw", "tables-stripped", "attachments"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let mut report = ExportReport::default();
    let mut listing = BTreeMap::new();
    let mut todo: Vec<(String, String, String, Attachment)> = Vec::new();
    for t in tables {
        let mut raw = std::io::BufWriter::new(File::create(
            dir.join("tables-raw").join(format!("{}.jsonl", t.id)),
        )?);
        let mut stripped = std::io::BufWriter::new(File::create(
            dir.join("tables-stripped").join(format!("{}.jsonl", t.id)),
        )?);
        let mut pager = client.list_records(base, &t.id, ListRecordsOptions::default());
        let mut records = Vec::new();
        while let Some(page) = pager.next_page().await? {
            for record in page {
                serde_json::to_writer(&mut raw, &record)?;
                raw.write_all(b"\n")?;
                let fields: Map<String, Value> = record
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), strip_urls(v)))
                    .collect();
                serde_json::to_writer(
                    &mut stripped,
                    &json!({"id": record.id, "createdTime": record.created_time, "fields": fields}),
                )?;
                stripped.write_all(b"\n")?;
                for attachment in record.attachments(&t.files) {
                    report.attachments += 1;
                    let path = dir.join("attachments").join(&attachment.id);
                    let have = std::fs::metadata(&path).map(|m| m.len()).ok();
                    if have.is_none() || have != attachment.size {
                        todo.push((t.id.clone(), record.id.clone(), t.files.clone(), attachment));
                    }
                }
                records.push(record);
            }
        }
        raw.flush()?;
        stripped.flush()?;
        report.records += records.len();
        listing.insert(t.id.clone(), records);
    }
    let attachments_dir = dir.join("attachments");
    let results: Vec<Res<u64>> = futures::stream::iter(todo)
        .map(|(table, record, field, attachment)| {
            let attachments_dir = attachments_dir.clone();
            async move {
                let download = client
                    .download_attachment(base, &table, &record, &field, &attachment)
                    .await?;
                let path = attachments_dir.join(&attachment.id);
                let mut file = tokio::fs::File::create(&path).await?;
                let mut stream = Box::pin(download.into_stream());
                let mut n = 0u64;
                while let Some(piece) = stream.next().await {
                    let piece = piece?;
                    n += piece.len() as u64;
                    tokio::io::AsyncWriteExt::write_all(&mut file, &piece).await?;
                }
                tokio::io::AsyncWriteExt::flush(&mut file).await?;
                Ok(n)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for r in results {
        report.attachment_bytes_downloaded += r?;
        report.attachments_downloaded += 1;
    }
    let after = client.counters();
    report.api_requests = after.requests - before.requests;
    report.rate_limited = after.rate_limited - before.rate_limited;
    report.secs = start.elapsed().as_secs_f64();
    log(format!("export: {report:?}"));
    Ok((report, listing))
}

fn du_sb(dir: &Path) -> Res<u64> {
    let out = Command::new("du").arg("-sb").arg(dir).output()?;
    let text = String::from_utf8(out.stdout)?;
    Ok(text
        .split_whitespace()
        .next()
        .ok_or("du printed nothing")?
        .parse()?)
}

/// Runs restic with the bench's password and cache, in `cwd`.
fn restic(
    repo: &Path,
    cache: &Path,
    cwd: &Path,
    args: &[&str],
    time_file: Option<&Path>,
    cmds: &mut Commands,
) -> Res<String> {
    let mut cmd = match time_file {
        Some(f) => {
            let mut c = Command::new("/usr/bin/time");
            c.arg("-v").arg("-o").arg(f).arg("restic");
            c
        }
        None => Command::new("restic"),
    };
    cmd.env("RESTIC_PASSWORD", "x")
        .arg("--repo")
        .arg(repo)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .current_dir(cwd);
    cmds.note(&cmd);
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "restic {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[derive(Debug, Clone, Default, serde::Serialize)]
struct ResticBackup {
    summary: Value,
    repo_bytes_after: u64,
    time: TimeV,
}

fn restic_backup(
    repo: &Path,
    cache: &Path,
    export_dir: &Path,
    tables_dir: &str,
    label: &str,
    cmds: &mut Commands,
) -> Res<ResticBackup> {
    let time_file = export_dir
        .parent()
        .ok_or("export dir has no parent")?
        .join(format!("{label}.time"));
    let out = restic(
        repo,
        cache,
        export_dir,
        &[
            "backup",
            "--json",
            "--host",
            "airback-bench",
            "attachments",
            tables_dir,
        ],
        Some(&time_file),
        cmds,
    )?;
    let summary = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .ok_or("restic printed no summary")?;
    let r = ResticBackup {
        summary,
        repo_bytes_after: du_sb(repo)?,
        time: parse_time_v(&time_file)?,
    };
    log(format!(
        "{label}: repo {} bytes, summary {}",
        r.repo_bytes_after, r.summary
    ));
    Ok(r)
}

#[derive(Debug, Clone, Default, serde::Serialize)]
struct ResticVariant {
    name: String,
    repo_bytes_empty: u64,
    first: ResticBackup,
    second: ResticBackup,
}

impl ResticVariant {
    fn added(&self) -> u64 {
        self.second
            .repo_bytes_after
            .saturating_sub(self.first.repo_bytes_after)
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
struct ResticReport {
    export_before: ExportReport,
    export_after: ExportReport,
    export_bytes_before: u64,
    variants: Vec<ResticVariant>,
}

// ---------------------------------------------------------------------------------------------
// One size

#[derive(Debug, Clone, serde::Serialize)]
struct SizeReport {
    records: usize,
    params: String,
    floor: u64,
    first: SnapshotRun,
    second: Option<SnapshotRun>,
    change: Option<ChangeReport>,
    third: Option<SnapshotRun>,
    restic: Option<ResticReport>,
    wall_secs: f64,
}

fn run_size(
    s: &Settings,
    rt: &tokio::runtime::Runtime,
    records: usize,
    cmds: &mut Commands,
) -> Res<SizeReport> {
    let start = Instant::now();
    let params = params_for(records);
    let dir = s.work.join(format!("n{records}"));
    std::fs::create_dir_all(&dir)?;
    log(format!(
        "size {records}: {params} (expected attachment bytes {:.2} GB)",
        params.attachments as f64 * params.mean_attachment_bytes() / 1e9
    ));
    let fake = Fake::start(s, &params, &dir, cmds)?;
    let result = (|| -> Res<SizeReport> {
        let repo = dir.join("repo");
        let cache = dir.join("cache");
        let mut init = Command::new(&s.bin);
        init.arg("init").arg("--repo").arg(&repo).arg("--quiet");
        if s.encrypted {
            s.password(&mut init);
        } else {
            init.arg("--insecure-no-password");
        }
        cmds.note(&init);
        let status = init.status()?;
        if !status.success() {
            return Err(format!("airback init failed: {status}").into());
        }
        let floor = (params.tables * params.records_per_table.div_ceil(100)) as u64 + 2;
        let first = snapshot(s, &fake, &repo, &cache, &dir, "snapshot1", cmds)?;
        let mut report = SizeReport {
            records: params.tables * params.records_per_table,
            params: params.to_string(),
            floor,
            first,
            second: None,
            change: None,
            third: None,
            restic: None,
            wall_secs: 0.0,
        };
        if s.first_only.contains(&records) {
            return Ok(report);
        }
        settle();
        report.second = Some(snapshot(s, &fake, &repo, &cache, &dir, "snapshot2", cmds)?);
        settle();
        let client = fake.client()?;
        let table_info = rt.block_on(tables(&client, &fake.base))?;
        let with_restic = s.restic_size == Some(records);
        let export_dir = dir.join("export");
        let mut restic_report = ResticReport::default();
        let mut listing = None;
        if with_restic {
            log("export before the change");
            let (e, l) = rt.block_on(export(&client, &fake.base, &table_info, &export_dir))?;
            restic_report.export_before = e;
            restic_report.export_bytes_before = du_sb(&export_dir)?;
            listing = Some(l);
            for (name, tables_dir) in [("raw", "tables-raw"), ("stripped", "tables-stripped")] {
                let repo = dir.join(format!("restic-{name}"));
                let cache = dir.join("restic-cache");
                restic(&repo, &cache, &dir, &["init"], None, cmds)?;
                let empty = du_sb(&repo)?;
                let first = restic_backup(
                    &repo,
                    &cache,
                    &export_dir,
                    tables_dir,
                    &format!("restic-{name}-1"),
                    cmds,
                )?;
                restic_report.variants.push(ResticVariant {
                    name: name.to_owned(),
                    repo_bytes_empty: empty,
                    first,
                    second: ResticBackup::default(),
                });
            }
        }
        report.change = Some(rt.block_on(change(
            &client,
            &fake.base,
            &table_info,
            params.records_per_table,
            listing.as_ref(),
        ))?);
        drop(listing);
        settle();
        report.third = Some(snapshot(s, &fake, &repo, &cache, &dir, "snapshot3", cmds)?);
        if with_restic {
            settle();
            log("export after the change");
            let (e, _) = rt.block_on(export(&client, &fake.base, &table_info, &export_dir))?;
            restic_report.export_after = e;
            for v in &mut restic_report.variants {
                let repo = dir.join(format!("restic-{}", v.name));
                let cache = dir.join("restic-cache");
                v.second = restic_backup(
                    &repo,
                    &cache,
                    &export_dir,
                    &format!("tables-{}", v.name),
                    &format!("restic-{}-2", v.name),
                    cmds,
                )?;
            }
            report.restic = Some(restic_report);
        }
        Ok(report)
    })();
    fake.stop();
    let mut report = result?;
    report.wall_secs = start.elapsed().as_secs_f64();
    if !s.keep {
        for sub in [
            "repo",
            "cache",
            "export",
            "restic-raw",
            "restic-stripped",
            "restic-cache",
        ] {
            let _ = std::fs::remove_dir_all(dir.join(sub));
        }
    }
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Report

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "pass" } else { "FAIL" }
}

fn render(s: &Settings, reports: &[SizeReport], cmds: &Commands) -> String {
    let mut o = String::new();
    let w = &mut o;
    use std::fmt::Write as _;
    let _ = writeln!(w, "# snapshot_large results\n");
    let _ = writeln!(
        w,
        "Fake: `--preset large --rate {RATE}` (5 requests/s per base in any one-second window, 30 s lock after a 429). Binary: `{}`. Repository: {}. {}\n",
        s.bin.display(),
        if s.encrypted {
            "encrypted (format 2, default Argon2id parameters)"
        } else {
            "unencrypted (`--insecure-no-password`, format 1)"
        },
        if s.quick { "QUICK MODE." } else { "" }
    );
    let _ = writeln!(w, "## Setup\n");
    let _ = writeln!(
        w,
        "| records | `--large` | attachments (first snapshot) | attachment bytes | size wall time (s) |\n| ---: | --- | ---: | ---: | ---: |"
    );
    for r in reports {
        let _ = writeln!(
            w,
            "| {} | `{}` | {} | {} MB | {:.0} |",
            r.records,
            r.params,
            r.first.u("attachments"),
            mb(r.first.u("attachment_bytes_downloaded")),
            r.wall_secs
        );
    }

    let _ = writeln!(w, "\n## 1. First snapshot: requests and rate\n");
    let _ = writeln!(
        w,
        "Floor = Σ ⌈records/100⌉ per table + 2 (list bases, schema). Listing rate = (list answers − 1) / (last list answer − first list answer), from the client's debug log; it includes the pacer's first burst of 5. Target: requests = floor + retries, zero 429s, listing rate ≥ 4.5/s.\n"
    );
    let _ = writeln!(
        w,
        "| records | api_requests | floor | retries | rate_limited | list answers | listing span (s) | listing rate (/s) | % of 5/s | api_requests / duration (/s) | duration (s) | verdict |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for r in reports {
        let f = &r.first;
        let rate = f.list_rate();
        let ok = f.u("api_requests") == r.floor + f.u("retries")
            && f.u("rate_limited") == 0
            && rate >= 0.9 * f64::from(RATE);
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.3} | {:.1} % | {:.3} | {:.1} | {} |",
            r.records,
            f.u("api_requests"),
            r.floor,
            f.u("retries"),
            f.u("rate_limited"),
            f.list_requests,
            f.list_span_secs,
            rate,
            rate / f64::from(RATE) * 100.0,
            f.u("api_requests") as f64 / f.f("duration_secs"),
            f.f("duration_secs"),
            verdict(ok)
        );
    }

    let _ = writeln!(w, "\n## 2. Second snapshot, nothing changed\n");
    let _ = writeln!(
        w,
        "Targets: 0 attachment downloads, bytes_added ≤ 0.5 % of the first snapshot's, ≤ 5 objects written. \"new repo files\" counts files that appeared under the repository directory (locks excluded once released).\n"
    );
    let _ = writeln!(
        w,
        "| records | first bytes_added | attachments_downloaded | bytes_added | % of first | objects_written | new repo files (bytes) | api_requests | duration (s) | verdict |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for r in reports {
        let Some(sn) = &r.second else { continue };
        let first = r.first.u("bytes_added");
        let pct = sn.u("bytes_added") as f64 / first.max(1) as f64 * 100.0;
        let ok = sn.u("attachments_downloaded") == 0 && pct <= 0.5 && sn.u("objects_written") <= 5;
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {:.4} % | {} | {} ({}) | {} | {:.1} | {} |",
            r.records,
            first,
            sn.u("attachments_downloaded"),
            sn.u("bytes_added"),
            pct,
            sn.u("objects_written"),
            sn.new_files,
            sn.new_file_bytes,
            sn.u("api_requests"),
            sn.f("duration_secs"),
            verdict(ok)
        );
    }

    let _ = writeln!(
        w,
        "\n## 3. After changing 1 % of records and adding 10 attachments\n"
    );
    let _ = writeln!(
        w,
        "Changes go through the library client (paced): `Notes` of the first 1 % of each table's records in listing order (random ids, so spread over the id space), `update_records` in batches of 10; then 10 `upload_attachment`s of random bytes (100 KB–5 MB) to other records. Target: exactly those 10 attachments downloaded.\n"
    );
    let _ = writeln!(
        w,
        "| records | records changed (requests) | uploads (bytes) | attachments_downloaded | attachment_bytes_downloaded | attachments_reused | bytes_added | bytes_added − uploaded | objects_written | new repo files (bytes) | 429s in changes / snapshot | verdict |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for r in reports {
        let (Some(c), Some(t)) = (&r.change, &r.third) else {
            continue;
        };
        let ok = t.u("attachments_downloaded") == UPLOADS as u64
            && t.u("attachment_bytes_downloaded") == c.upload_bytes;
        let _ = writeln!(
            w,
            "| {} | {} ({}) | {} ({}) | {} | {} | {} | {} | {} | {} | {} ({}) | {} / {} | {} |",
            r.records,
            c.records_updated,
            c.update_requests,
            c.uploads,
            c.upload_bytes,
            t.u("attachments_downloaded"),
            t.u("attachment_bytes_downloaded"),
            t.u("attachments_reused"),
            t.u("bytes_added"),
            t.u("bytes_added") as i64 - c.upload_bytes as i64,
            t.u("objects_written"),
            t.new_files,
            t.new_file_bytes,
            c.rate_limited,
            t.u("rate_limited"),
            verdict(ok)
        );
    }
    for r in reports {
        let (Some(rr), Some(t), Some(c)) = (&r.restic, &r.third, &r.change) else {
            continue;
        };
        let _ = writeln!(
            w,
            "\n### Side by side with restic ({} records)\n",
            r.records
        );
        let _ = writeln!(
            w,
            "The base exported through the same paced client before and after the change: one JSON-lines file per table (records in listing order) plus one file per attachment named by its id (attachments already exported are not downloaded again). \"raw\" keeps each record exactly as the API returned it, including the attachment URLs, which expire and are re-signed on every listing; \"stripped\" drops `url` and `thumbnails` as airback does. Each variant has its own fresh restic repository (`restic init`, then `restic backup` before and after). Export before: {} records, {} attachments ({} MB downloaded), {} API requests, {:.0} s; export directory {} MB. Export after: {} API requests, {} attachments downloaded, {:.0} s.\n",
            rr.export_before.records,
            rr.export_before.attachments,
            mb(rr.export_before.attachment_bytes_downloaded),
            rr.export_before.api_requests,
            rr.export_before.secs,
            mb(rr.export_bytes_before),
            rr.export_after.api_requests,
            rr.export_after.attachments_downloaded,
            rr.export_after.secs
        );
        let _ = writeln!(
            w,
            "| tool | first backup: repo bytes (du -sb, minus empty repo) | second backup: repo bytes added (du -sb) | restic's own `data_added` | peak RSS 2nd (MiB) | vs airback's 3rd-snapshot bytes_added |\n| --- | ---: | ---: | ---: | ---: | ---: |"
        );
        let airback = t.u("bytes_added");
        let _ = writeln!(
            w,
            "| airback (3rd snapshot) | {} (1st snapshot bytes_added) | {} | – | {} | 1.00× |",
            r.first.u("bytes_added"),
            airback,
            mib(t.rss_bytes())
        );
        for v in &rr.variants {
            let _ = writeln!(
                w,
                "| restic 0.14, {} JSON | {} | {} | {} | {} | {:.2}× |",
                v.name,
                v.first.repo_bytes_after - v.repo_bytes_empty,
                v.added(),
                v.second.summary["data_added"],
                mib(v.second.time.max_rss_kb * 1024),
                v.added() as f64 / airback.max(1) as f64
            );
        }
        let _ = writeln!(
            w,
            "\nUploaded attachment bytes: {} (random, incompressible); so the change beyond the new attachments cost airback {} bytes.",
            c.upload_bytes,
            airback as i64 - c.upload_bytes as i64
        );
    }

    let _ = writeln!(
        w,
        "\n## 4. Peak RSS (`/usr/bin/time -v`, maximum resident set size)\n"
    );
    let _ = writeln!(
        w,
        "Target: below 150 MB at 100k records and ~2 GB of attachments. MiB = 2^20 bytes; the verdict compares against 150 × 10^6 bytes.\n"
    );
    let _ = writeln!(
        w,
        "| records | attachment bytes | snapshot 1 (MiB) | snapshot 2 (MiB) | snapshot 3 (MiB) | snapshot 1 wall / user / sys (s) | verdict (< 150 MB) |\n| ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for r in reports {
        let rss =
            |x: &Option<SnapshotRun>| x.as_ref().map_or("–".to_owned(), |x| mib(x.rss_bytes()));
        let max = [Some(&r.first), r.second.as_ref(), r.third.as_ref()]
            .into_iter()
            .flatten()
            .map(SnapshotRun::rss_bytes)
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            w,
            "| {} | {} MB | {} | {} | {} | {:.1} / {:.1} / {:.1} | {} |",
            r.records,
            mb(r.first.u("attachment_bytes_downloaded")),
            mib(r.first.rss_bytes()),
            rss(&r.second),
            rss(&r.third),
            r.first.time.wall_secs,
            r.first.time.user_secs,
            r.first.time.sys_secs,
            verdict(max < RSS_TARGET_BYTES)
        );
    }

    let _ = writeln!(w, "\n## Commands\n\n```sh");
    for c in &cmds.0 {
        let _ = writeln!(w, "{c}");
    }
    let _ = writeln!(w, "```");
    o
}

fn main() -> Res<()> {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let s = Settings::from_env();
    if !s.bin.exists() {
        return Err(format!(
            "{} does not exist: run `cargo build --release` first or set AIRBACK_BIN",
            s.bin.display()
        )
        .into());
    }
    std::fs::create_dir_all(&s.work)?;
    log(format!(
        "binary {}, sizes {:?}, restic at {:?}, first snapshot only for {:?}, work dir {}",
        s.bin.display(),
        s.sizes,
        s.restic_size,
        s.first_only,
        s.work.display()
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut cmds = Commands::default();
    let mut reports = Vec::new();
    let mut failure = None;
    for &records in &s.sizes {
        match run_size(&s, &rt, records, &mut cmds) {
            Ok(r) => {
                reports.push(r);
                std::fs::write(
                    s.work.join("results.json"),
                    serde_json::to_vec_pretty(&reports)?,
                )?;
                std::fs::write(s.work.join("results.md"), render(&s, &reports, &cmds))?;
            }
            Err(e) => {
                log(format!("size {records} failed: {e}"));
                failure = Some(e);
                break;
            }
        }
    }
    let text = render(&s, &reports, &cmds);
    std::fs::write(s.work.join("results.md"), &text)?;
    println!("{text}");
    log(format!(
        "results in {}",
        s.work.join("results.md").display()
    ));
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
