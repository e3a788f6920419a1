//! Issue #13's prune figures: `airback prune` against `restic prune` on the same data with the
//! same share forgotten, in one run.
//!
//! 1. An in-process fake Airtable serves the large preset (about 1 GB of attachments by
//!    default); airback backs it up (encrypted, default key parameters) into a local
//!    repository: snapshot 1.
//! 2. Attachments are removed (in a seeded random order) until 30 % of the attachment bytes
//!    are gone, and 30 % of the records get new notes; snapshot 2.
//! 3. Each snapshot is exported (`airback export -f dir`) to the same folder in turn and backed
//!    up from there by `restic backup`, one restic snapshot each.
//! 4. Both tools forget the first snapshot, then prune with default options: airback's release
//!    binary (`airback prune --json`) and `restic prune` (`--no-cache`, so that what it reads
//!    is storage). Wall time; bytes read and written (airback: its own storage counters;
//!    restic: `rchar`/`wchar` of `/proc/PID/io`, which for a local repository is storage
//!    plus a few small files); airback's storage requests; peak RSS (`VmHWM` of
//!    `/proc/PID/status`). The last two are sampled every 10 ms, so they can miss the last
//!    moment of the run.
//!
//! Run: `cargo bench --bench prune_compare` (needs restic on PATH: `benches/compare_restic.sh`
//! installs it). `AIRBACK_BENCH_LARGE=tables=4,records=2500,attachments=500` for a smaller
//! try; `AIRBACK_BENCH_DIR` to choose the work folder (default: a fresh one in the temp dir).
//! Prints a markdown table for docs/BENCHMARKS.md.

// The crate denies printing outside src/cli/print.rs; benchmarks print their tables.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airback::airtable::{Client, ClientOptions, Token};
use airback::backend::{Backend, BackendOptions};
use airback::crypto::{KdfParams, KeyMeta, Password};
use airback::progress::NoProgress;
use airback::repo::{CacheChoice, InitEncryption, InitOptions, Repository};
use airback::{BackupOptions, backup_base};
use airback_fake::{FakeAirtable, FakeOptions, LargeParams, Preset};
use serde_json::{Map, Value, json};

const PASSWORD: &str = "prune-bench";
/// The share of attachment bytes removed between the two snapshots (about the share of the
/// repository that is unused after the first snapshot is forgotten).
const REMOVED_SHARE: f64 = 0.30;

/// What one measured command did.
#[derive(Debug, Default)]
struct Run {
    secs: f64,
    read: u64,
    written: u64,
    peak_rss_kib: u64,
    stdout: String,
}

/// Runs `cmd`, sampling `/proc/PID/io` and `/proc/PID/status` every 10 ms.
fn measure(mut cmd: Command) -> Run {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the command starts");
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let mut run = Run::default();
    loop {
        if let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) {
            for line in io.lines() {
                if let Some(v) = line.strip_prefix("rchar: ") {
                    run.read = v.trim().parse().unwrap_or(run.read);
                }
                if let Some(v) = line.strip_prefix("wchar: ") {
                    run.written = v.trim().parse().unwrap_or(run.written);
                }
            }
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            run.peak_rss_kib = run.peak_rss_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{cmd:?} failed: {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    run.secs = started.elapsed().as_secs_f64();
    run.stdout = reader.join().unwrap_or_default();
    run
}

fn airback_cmd(bin: &Path, work: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("AIRBACK_PASSWORD", PASSWORD)
        .env("AIRBACK_CACHE_DIR", work.join("cache"))
        .env_remove("AIRBACK_REPO");
    cmd
}

fn restic_cmd(repo: &Path) -> Command {
    let mut cmd = Command::new("restic");
    cmd.env("RESTIC_PASSWORD", PASSWORD).arg("--repo").arg(repo);
    cmd
}

fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Removes attachments, in a seeded random order, until `share` of the attachment bytes are
/// gone, and gives 30 % of the records new notes. Returns (removed, total) bytes.
fn change_the_base(fake: &FakeAirtable, base: &str, share: f64) -> (u64, u64) {
    let schema = fake.schema_json(base);
    let mut rng = fastrand::Rng::with_seed(7);
    // (table, notes field, files field, record) of every record, and every attachment.
    let mut records = Vec::new();
    let mut attachments = Vec::new();
    for table in schema["tables"].as_array().unwrap() {
        let id = table["id"].as_str().unwrap().to_owned();
        let field = |name: &str| {
            table["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name)
                .map(|f| f["id"].as_str().unwrap().to_owned())
        };
        let (Some(notes), Some(files)) = (field("Notes"), field("Files")) else {
            continue;
        };
        for record in fake.records_json(base, &id) {
            let index = records.len();
            for a in record["fields"][&files].as_array().into_iter().flatten() {
                attachments.push((
                    index,
                    a["id"].as_str().unwrap().to_owned(),
                    a["size"].as_u64().unwrap_or(0),
                ));
            }
            records.push((id.clone(), notes.clone(), files.clone(), record));
        }
    }
    let total: u64 = attachments.iter().map(|(_, _, size)| size).sum();
    rng.shuffle(&mut attachments);
    let mut gone = std::collections::HashSet::new();
    let mut removed = 0;
    for (_, id, size) in &attachments {
        if removed as f64 >= share * total as f64 {
            break;
        }
        removed += size;
        gone.insert(id.clone());
    }
    for (table, notes, files, record) in &records {
        let mut fields = Map::new();
        if let Some(list) = record["fields"][files].as_array() {
            let kept: Vec<Value> = list
                .iter()
                .filter(|a| !gone.contains(a["id"].as_str().unwrap()))
                .map(|a| json!({"id": a["id"]}))
                .collect();
            if kept.len() != list.len() {
                fields.insert(files.clone(), Value::Array(kept));
            }
        }
        if rng.f64() < 0.3 {
            fields.insert(notes.clone(), json!(format!("changed {}", rng.u64(..))));
        }
        if !fields.is_empty() {
            fake.update_record_fields(base, table, record["id"].as_str().unwrap(), fields)
                .unwrap();
        }
    }
    (removed, total)
}

fn main() {
    let bin = std::env::var_os("AIRBACK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_airback")));
    let large: LargeParams = std::env::var("AIRBACK_BENCH_LARGE")
        .ok()
        .map(|s| {
            s.parse()
                .expect("AIRBACK_BENCH_LARGE: tables=…,records=…,attachments=…")
        })
        .unwrap_or_default();
    let scratch = tempfile::tempdir().unwrap();
    let work = std::env::var_os("AIRBACK_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| scratch.path().to_path_buf());
    std::fs::create_dir_all(&work).unwrap();
    let repo = work.join("airback");
    let restic_repo = work.join("restic");
    let export_dir = work.join("export");
    let rt = tokio::runtime::Runtime::new().unwrap();

    // 1-2. Two snapshots, the base changed between them.
    let fake = rt
        .block_on(FakeAirtable::start(FakeOptions {
            large: large.clone(),
            ..FakeOptions::unlimited(Preset::Large)
        }))
        .unwrap();
    let base = fake.bases()[0].id.clone();
    let client = Client::new(
        Token::new(fake.token()).unwrap(),
        ClientOptions::default().with_url(&fake.url()),
    )
    .unwrap();
    let password = Arc::new(Password::new(PASSWORD.as_bytes().into()));
    let mut ids = Vec::new();
    let (removed, total) = rt.block_on(async {
        let backend = Backend::open(
            repo.to_str().unwrap(),
            &BackendOptions {
                create: true,
                ..BackendOptions::default()
            },
        )
        .unwrap();
        let options = InitOptions {
            encryption: InitEncryption::Password {
                password: password.clone(),
                kdf: KdfParams::DEFAULT,
                meta: KeyMeta {
                    hostname: "bench".into(),
                    username: "bench".into(),
                    created: "2026-12-05T00:00:00Z".into(),
                },
            },
            ..InitOptions::default()
        };
        Repository::init(&backend, &options).await.unwrap();
        let r = Repository::open(
            backend,
            CacheChoice::Dir(work.join("cache")),
            Some(&password),
        )
        .await
        .unwrap();
        let mut options = BackupOptions::new(&base);
        options.attachment_concurrency = 16;
        let first = backup_base(&r, &client, &options, Arc::new(NoProgress))
            .await
            .unwrap();
        ids.push(first.snapshot_id.to_string());
        let changed = change_the_base(&fake, &base, REMOVED_SHARE);
        let second = backup_base(&r, &client, &options, Arc::new(NoProgress))
            .await
            .unwrap();
        ids.push(second.snapshot_id.to_string());
        changed
    });
    eprintln!(
        "removed {:.1} % of {:.2} GB of attachments between the snapshots",
        100.0 * removed as f64 / total.max(1) as f64,
        total as f64 / 1e9
    );

    // 3. The same content in restic, one snapshot per airback snapshot.
    run_ok({
        let mut c = restic_cmd(&restic_repo);
        c.arg("init");
        c
    });
    for id in &ids {
        let _ = std::fs::remove_dir_all(&export_dir);
        run_ok({
            let mut c = airback_cmd(&bin, &work);
            c.args(["export", id, "--repo"])
                .arg(&repo)
                .args(["-f", "dir", "-o"])
                .arg(&export_dir)
                .arg("--quiet");
            c
        });
        run_ok({
            let mut c = restic_cmd(&restic_repo);
            c.args(["backup", "--quiet", "--no-cache", "."])
                .current_dir(&export_dir);
            c
        });
    }

    // 4. Forget the first snapshot in both, then prune.
    run_ok({
        let mut c = airback_cmd(&bin, &work);
        c.args(["forget", "--keep-last", "1", "--repo"]).arg(&repo);
        c
    });
    run_ok({
        let mut c = restic_cmd(&restic_repo);
        c.args(["forget", "--keep-last", "1", "--no-cache"]);
        c
    });
    let dry = run_ok({
        let mut c = airback_cmd(&bin, &work);
        c.args(["prune", "--dry-run", "--json", "--repo"])
            .arg(&repo);
        c
    });
    let dry: Value = serde_json::from_str(dry.trim()).unwrap();
    let unused_share = dry["unused"]["bytes"].as_f64().unwrap()
        / (dry["used"]["bytes"].as_f64().unwrap() + dry["unused"]["bytes"].as_f64().unwrap());
    let (airback_before, restic_before) = (dir_size(&repo), dir_size(&restic_repo));
    let ours = measure({
        let mut c = airback_cmd(&bin, &work);
        c.args(["prune", "--json", "--repo"]).arg(&repo);
        c
    });
    let theirs = measure({
        let mut c = restic_cmd(&restic_repo);
        c.args(["prune", "--no-cache"]);
        c
    });
    let summary: Value = serde_json::from_str(ours.stdout.trim()).unwrap();
    let requests = &summary["requests"];
    let mb = |b: f64| b / 1e6;

    println!(
        "prune benchmark: {} (restic {}), base `{large}`, {:.1} % of the airback repository unused before prune (dry run)\n",
        std::env::consts::ARCH,
        run_ok({
            let mut c = Command::new("restic");
            c.arg("version");
            c
        })
        .trim(),
        100.0 * unused_share
    );
    println!(
        "| tool | repo before | repo after | wall (s) | read (MB) | written (MB) | requests (LIST / GET / HEAD / PUT / DELETE) | peak RSS (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| airback prune | {:.1} MB | {:.1} MB | {:.2} | {:.1} (storage) | {:.1} (storage) | {} / {} / {} / {} / {} | {:.0} |",
        mb(airback_before as f64),
        mb(dir_size(&repo) as f64),
        ours.secs,
        mb(requests["bytes_read"].as_f64().unwrap()),
        mb(requests["bytes_written"].as_f64().unwrap()),
        requests["LIST"],
        requests["GET"],
        requests["HEAD"],
        requests["PUT"],
        requests["DELETE"],
        ours.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "| restic prune | {:.1} MB | {:.1} MB | {:.2} | {:.1} (rchar) | {:.1} (wchar) | not counted | {:.0} |",
        mb(restic_before as f64),
        mb(dir_size(&restic_repo) as f64),
        theirs.secs,
        mb(theirs.read as f64),
        mb(theirs.written as f64),
        theirs.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "\nairback process I/O for comparison (rchar / wchar, includes its local cache): {:.1} MB / {:.1} MB",
        mb(ours.read as f64),
        mb(ours.written as f64)
    );
    println!("\nairback prune summary: {summary}");
}
