//! Ingest throughput: chunk, hash, compress, pack and write to a local repository, on
//! incompressible data and on JSON lines, side by side with `restic backup` and `borg create`
//! (`repokey-blake2`, `zstd,3`) on the same files in the same run (each when it is on PATH;
//! `benches/compare_restic.sh` installs both).
//!
//! Run: `cargo bench --bench ingest` (size with `AIRBACK_BENCH_MB`, default 256 per data set).
//! airback's figures are the mean of three runs, encrypted (format version 2: three random
//! keys, the default Argon2id parameters; the time to open the repository, which is the key
//! derivation, is printed apart and not counted in the throughput) and unencrypted (format
//! version 1, each run with the chunker seed its encrypted twin derived from its key, so the
//! two columns cut the same chunks and differ only by encryption).
//! Prints a markdown table for docs/BENCHMARKS.md.

// The crate denies printing outside src/cli/print.rs; benchmarks print their tables.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use airback::backend::{Backend, BackendOptions};
use airback::crypto::{KdfParams, KeyMeta, Password};
use airback::repo::BlobKind;
use airback::repo::{CacheChoice, Repository};
use airback::repo::{InitEncryption, InitOptions};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

struct DataSet {
    name: &'static str,
    dir: PathBuf,
    kind: BlobKind,
    bytes: u64,
}

const STATUSES: [&str; 4] = ["Todo", "In progress", "Done", "Blocked"];

fn generate(root: &Path, mb: u64) -> Vec<DataSet> {
    let random_dir = root.join("incompressible");
    let json_dir = root.join("jsonl");
    std::fs::create_dir_all(&random_dir).unwrap();
    std::fs::create_dir_all(&json_dir).unwrap();
    let mut rng = fastrand::Rng::with_seed(42);
    // Attachments: sizes from 10 KB to 8 MB, log-uniform.
    let mut total = 0u64;
    let mut i = 0;
    while total < mb * 1024 * 1024 {
        let size = (10_000f64 * (800f64).powf(rng.f64())) as usize;
        let mut buf = vec![0u8; size];
        rng.fill(&mut buf);
        std::fs::write(random_dir.join(format!("att{i:05}.bin")), &buf).unwrap();
        total += size as u64;
        i += 1;
    }
    let random_total = total;
    // Tables: JSON lines shaped like Airtable records, 8 MiB to 32 MiB per table.
    let mut total = 0u64;
    let mut t = 0;
    while total < mb * 1024 * 1024 {
        let mut out = Vec::new();
        let target = rng.usize(8..32) * 1024 * 1024;
        let mut r = 0;
        while out.len() < target {
            let line = serde_json::json!({
                "id": format!("rec{t:03}{r:011}"),
                "createdTime": format!("2026-0{}-1{}T10:00:00.000Z", 1 + rng.u8(..9), rng.u8(..9)),
                "fields": {
                    "fldName": format!("Customer {} {}", r, rng.u32(..)),
                    "fldEmail": format!("user{}@example.com", rng.u32(..1_000_000)),
                    "fldStatus": STATUSES[rng.usize(..4)],
                    "fldAmount": f64::from(rng.u32(..10_000_000)) / 100.0,
                    "fldTags": (0..rng.usize(0..4)).map(|k| format!("tag{k}")).collect::<Vec<_>>(),
                    "fldNotes": "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(rng.usize(0..6)),
                    "fldLinks": (0..rng.usize(0..3)).map(|_| format!("rec{:014}", rng.u32(..))).collect::<Vec<_>>(),
                }
            });
            out.extend(serde_json::to_vec(&line).unwrap());
            out.push(b'\n');
            r += 1;
        }
        std::fs::write(json_dir.join(format!("tbl{t:03}.jsonl")), &out).unwrap();
        total += out.len() as u64;
        t += 1;
    }
    vec![
        DataSet {
            name: "incompressible (attachments)",
            dir: random_dir,
            kind: BlobKind::Data,
            bytes: random_total,
        },
        DataSet {
            name: "JSON lines (tables)",
            dir: json_dir,
            kind: BlobKind::Meta,
            bytes: total,
        },
    ]
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

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One airback run on a data set.
struct Ingest {
    /// Seconds to store the files (opening the repository excluded).
    secs: f64,
    /// The repository's size.
    size: u64,
    /// Bytes of it that are index files and pack headers.
    overhead: u64,
    /// Seconds to open the repository (Argon2id with the default parameters when encrypted).
    open_secs: f64,
    /// The chunker's gear seed (given for format 1, derived from the key for format 2).
    seed: u64,
}

/// Stores the data set in a new repository, encrypted (format 2, default key parameters) or
/// not (format 1, `seed` for its chunker; format 2 derives the seed from its key).
async fn ingest(
    set: &DataSet,
    repo_dir: &Path,
    cache_dir: &Path,
    seed: u64,
    encrypted: bool,
) -> Ingest {
    let backend = Backend::open(
        repo_dir.to_str().unwrap(),
        &BackendOptions {
            create: true,
            ..BackendOptions::default()
        },
    )
    .unwrap();
    let password = Arc::new(Password::new(b"bench".as_slice().into()));
    let encryption = if encrypted {
        InitEncryption::Password {
            password: password.clone(),
            kdf: KdfParams::DEFAULT,
            meta: KeyMeta {
                hostname: "bench".into(),
                username: "bench".into(),
                created: "2026-12-05T00:00:00Z".into(),
            },
        }
    } else {
        InitEncryption::None
    };
    let options = InitOptions {
        chunker_seed: Some(seed),
        encryption,
        ..InitOptions::default()
    };
    Repository::init(&backend, &options).await.unwrap();
    let opening = Instant::now();
    let repo = Repository::open(
        backend,
        CacheChoice::Dir(cache_dir.to_path_buf()),
        encrypted.then_some(&*password),
    )
    .await
    .unwrap();
    let open_secs = opening.elapsed().as_secs_f64();
    let seed = repo.chunker(BlobKind::Data).seed();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&set.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let start = Instant::now();
    let writer = repo.writer();
    let kind = set.kind;
    futures::stream::iter(files)
        .map(|path| {
            let writer = writer.clone();
            async move {
                let mut file = tokio::fs::File::open(&path).await.unwrap();
                let mut saver = writer.file(kind);
                let mut buf = vec![0u8; 1024 * 1024];
                loop {
                    let n = file.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    saver.push(&buf[..n]).await.unwrap();
                }
                saver.finish().await.unwrap()
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    let stats = writer.flush().await.unwrap();
    let overhead = stats.index_bytes_written + stats.pack_bytes_written - stats.bytes_new_stored;
    Ingest {
        secs: start.elapsed().as_secs_f64(),
        size: dir_size(repo_dir),
        overhead,
        open_secs,
        seed,
    }
}

/// The mean of three runs: encrypted with three random keys, then unencrypted with the
/// chunker seeds those keys derived, so that both columns cut the same chunks and differ only
/// in encryption. (The seed alone moves the size of repetitive data by several percent.)
fn mean_ingest_pair(
    rt: &tokio::runtime::Runtime,
    set: &DataSet,
    root: &Path,
    name: &str,
) -> (Ingest, Ingest) {
    let zero = || Ingest {
        secs: 0.0,
        size: 0,
        overhead: 0,
        open_secs: 0.0,
        seed: 0,
    };
    let (mut plain, mut sealed) = (zero(), zero());
    const RUNS: u64 = 3;
    for run in 0..RUNS {
        let enc = rt.block_on(ingest(
            set,
            &root.join(format!("{name}-encrypted-{run}")),
            &root.join(format!("{name}-encrypted-cache-{run}")),
            0,
            true,
        ));
        let pla = rt.block_on(ingest(
            set,
            &root.join(format!("{name}-plain-{run}")),
            &root.join(format!("{name}-plain-cache-{run}")),
            enc.seed,
            false,
        ));
        for (sum, one) in [(&mut sealed, enc), (&mut plain, pla)] {
            sum.secs += one.secs;
            sum.size += one.size;
            sum.overhead += one.overhead;
            sum.open_secs += one.open_secs;
        }
    }
    for sum in [&mut plain, &mut sealed] {
        sum.secs /= RUNS as f64;
        sum.size /= RUNS;
        sum.overhead /= RUNS;
        sum.open_secs /= RUNS as f64;
    }
    (plain, sealed)
}

fn restic(set: &DataSet, repo_dir: &Path, cache_dir: &Path) -> Option<(f64, u64)> {
    let run = |args: &[&str]| {
        std::process::Command::new("restic")
            .args(args)
            .env("RESTIC_PASSWORD", "bench")
            .env("RESTIC_CACHE_DIR", cache_dir)
            .stdout(std::process::Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
    };
    let repo = repo_dir.to_str().unwrap();
    run(&["init", "-r", repo])?;
    let start = Instant::now();
    run(&["backup", "-r", repo, "--quiet", set.dir.to_str().unwrap()])?;
    Some((start.elapsed().as_secs_f64(), dir_size(repo_dir)))
}

/// `borg init --encryption=repokey-blake2`, then `borg create --compression zstd,3` of the data
/// set (timed). borg's keys, cache and config go under `base_dir` (`BORG_BASE_DIR`), inside the
/// scratch folder.
fn borg(set: &DataSet, repo_dir: &Path, base_dir: &Path) -> Option<(f64, u64)> {
    let run = |args: &[&str]| {
        std::process::Command::new("borg")
            .args(args)
            .env("BORG_PASSPHRASE", "bench")
            .env("BORG_BASE_DIR", base_dir)
            .stdout(std::process::Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
    };
    let repo = repo_dir.to_str().unwrap();
    run(&["init", "--encryption=repokey-blake2", repo])?;
    let start = Instant::now();
    let archive = format!("{repo}::bench");
    run(&[
        "create",
        "--compression",
        "zstd,3",
        &archive,
        set.dir.to_str().unwrap(),
    ])?;
    Some((start.elapsed().as_secs_f64(), dir_size(repo_dir)))
}

/// The first line `TOOL --version` (or `TOOL version`) prints.
fn version(tool: &str, arg: &str) -> Option<String> {
    let out = std::process::Command::new(tool).arg(arg).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or_default().trim().to_string())
}

fn main() {
    let mb: u64 = std::env::var("AIRBACK_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let scratch = tempfile::tempdir().unwrap();
    let sets = generate(scratch.path(), mb);
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "ingest benchmark, {} cores, restic: {}, borg: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        version("restic", "version").unwrap_or_else(|| "not installed".into()),
        version("borg", "--version").unwrap_or_else(|| "not installed".into())
    );
    println!();
    println!(
        "| data set | input | airback MB/s | airback repo (index + pack headers) | encrypted MB/s | encrypted repo | restic MB/s | restic repo | encrypted / restic speed | encrypted / plain size | borg MB/s | borg repo |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut open = (0.0, 0.0);
    for (i, set) in sets.iter().enumerate() {
        let (plain, sealed) = mean_ingest_pair(&rt, set, scratch.path(), &format!("airback-{i}"));
        open = (plain.open_secs, sealed.open_secs);
        let mbs = |secs: f64| set.bytes as f64 / 1e6 / secs;
        let theirs = restic(
            set,
            &scratch.path().join(format!("restic-{i}")),
            &scratch.path().join(format!("rcache-{i}")),
        );
        let (theirs_mbs, theirs_size) = theirs.map_or((f64::NAN, 0), |(s, sz)| (mbs(s), sz));
        let borg = borg(
            set,
            &scratch.path().join(format!("borg-{i}")),
            &scratch.path().join(format!("borg-base-{i}")),
        );
        let (borg_mbs, borg_size) = borg.map_or((f64::NAN, 0), |(s, sz)| (mbs(s), sz));
        println!(
            "| {} | {:.1} MB | {:.0} | {:.1} MB ({:.1} MB) | {:.0} | {:.1} MB | {:.0} | {:.1} MB | {:.2}x | {:+.2} % | {:.0} | {:.1} MB |",
            set.name,
            set.bytes as f64 / 1e6,
            mbs(plain.secs),
            plain.size as f64 / 1e6,
            plain.overhead as f64 / 1e6,
            mbs(sealed.secs),
            sealed.size as f64 / 1e6,
            theirs_mbs,
            theirs_size as f64 / 1e6,
            mbs(sealed.secs) / theirs_mbs,
            100.0 * (sealed.size as f64 / plain.size as f64 - 1.0),
            borg_mbs,
            borg_size as f64 / 1e6,
        );
    }
    println!();
    println!(
        "opening a repository (mean of 3): {:.3} s unencrypted, {:.3} s encrypted (Argon2id {} KiB, t={}, p={})",
        open.0,
        open.1,
        KdfParams::DEFAULT.memory_kib,
        KdfParams::DEFAULT.iterations,
        KdfParams::DEFAULT.parallelism
    );
    println!();
    println!(
        "airback peak RSS (whole bench process, before restic and borg ran as children): {:.0} MiB",
        peak_rss_mib()
    );
}
