//! Chooses the chunker sizes per blob kind (docs/FORMAT.md, docs/BENCHMARKS.md "Chunk sizes").
//!
//! Metadata: a 50,000-record table as canonical JSON lines, snapshotted, then 1 % and 0.1 % of
//! records changed at scattered places: how many bytes each nightly snapshot adds to the
//! repository (packs and index files, after zstd with the repository dictionary), as a
//! multiple of the changed lines, and how many blobs the table needs (index
//! size). Data: attachments of 10 KB to 20 MB: throughput, blob count, and bytes added when
//! 4 KiB in the middle of ten attachments are overwritten.
//!
//! Run: `cargo bench --bench chunk_params`.

// The crate denies printing outside src/cli/print.rs; benchmarks print their tables.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

use airback::backend::{Backend, BackendOptions};
use airback::repo::BlobKind;
use airback::repo::ChunkerParams;
use airback::repo::InitOptions;
use airback::repo::{CacheChoice, Repository};

const KIB: u32 = 1024;

const STATUSES: [&str; 4] = ["Todo", "In progress", "Done", "Blocked"];

fn table(records: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..records)
        .map(|r| {
            let mut line = serde_json::to_vec(&serde_json::json!({
                "id": format!("rec{r:014}"),
                "createdTime": "2026-03-14T10:00:00.000Z",
                "fields": {
                    "fldName": format!("Customer {} {}", r, rng.u32(..)),
                    "fldEmail": format!("user{}@example.com", rng.u32(..1_000_000)),
                    "fldStatus": STATUSES[rng.usize(..4)],
                    "fldAmount": f64::from(rng.u32(..10_000_000)) / 100.0,
                    "fldNotes": "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(rng.usize(0..6)),
                }
            }))
            .unwrap();
            line.push(b'\n');
            line
        })
        .collect()
}

/// Changes `fraction` of the records (a new amount and status), at scattered places.
fn change(lines: &mut [Vec<u8>], every: usize, round: u32) -> usize {
    let mut changed_bytes = 0;
    for (i, line) in lines.iter_mut().enumerate() {
        if i % every == (every / 2) {
            let mut v: serde_json::Value = serde_json::from_slice(line).unwrap();
            v["fields"]["fldAmount"] = serde_json::json!(f64::from(round) + i as f64 / 7.0);
            v["fields"]["fldStatus"] = serde_json::json!("Done");
            *line = serde_json::to_vec(&v).unwrap();
            line.push(b'\n');
            changed_bytes += line.len();
        }
    }
    changed_bytes
}

async fn repo(meta: ChunkerParams, data: ChunkerParams, seed: u64) -> Repository {
    let backend = Backend::open("memory://", &BackendOptions::default()).unwrap();
    let options = InitOptions {
        data_chunker: data,
        meta_chunker: meta,
        chunker_seed: Some(seed),
        ..InitOptions::default()
    };
    Repository::init(&backend, &options).await.unwrap();
    Repository::open(backend, CacheChoice::Memory, None)
        .await
        .unwrap()
}

fn label(p: ChunkerParams) -> String {
    let k = |v: u32| {
        if v >= 1024 * KIB {
            format!("{}M", v / 1024 / KIB)
        } else {
            format!("{}K", v / KIB)
        }
    };
    format!("{}/{}/{}", k(p.min_size), k(p.avg_size), k(p.max_size))
}

/// One table, snapshotted, then changed twice; averaged over three chunker seeds.
async fn meta_case(params: ChunkerParams) {
    const SEEDS: [u64; 3] = [1, 2, 3];
    let (mut blobs, mut stored, mut secs, mut input) = (0.0, 0.0, 0.0, 0.0);
    let mut added = [0.0f64; 2];
    let mut changed = [0.0f64; 2];
    for seed in SEEDS {
        let repo = repo(params, ChunkerParams::DATA, seed).await;
        let mut lines = table(50_000, 1);
        let writer = repo.writer();
        let start = Instant::now();
        let first: Vec<u8> = lines.concat();
        blobs += writer
            .save_bytes(BlobKind::Meta, first.clone())
            .await
            .unwrap()
            .len() as f64;
        let s1 = writer.flush().await.unwrap();
        stored += (s1.pack_bytes_written + s1.index_bytes_written) as f64;
        secs += start.elapsed().as_secs_f64();
        input += first.len() as f64;
        for (k, (every, round)) in [(100, 1), (1000, 2)].into_iter().enumerate() {
            changed[k] += change(&mut lines, every, round) as f64;
            let before = writer.stats();
            writer
                .save_bytes(BlobKind::Meta, lines.concat())
                .await
                .unwrap();
            let after = writer.flush().await.unwrap();
            added[k] += (after.pack_bytes_written + after.index_bytes_written
                - before.pack_bytes_written
                - before.index_bytes_written) as f64;
        }
    }
    let n = SEEDS.len() as f64;
    let mut row = format!(
        "| {} | {:.0} | {:.1} MB | {:.0} MB/s |",
        label(params),
        blobs / n,
        stored / n / 1e6,
        input / 1e6 / secs
    );
    for k in 0..2 {
        row += &format!(
            " {:.0} KB ({:.1}x) |",
            added[k] / n / 1e3,
            added[k] / changed[k]
        );
    }
    println!("{row}");
}

async fn data_case(params: ChunkerParams) {
    let repo = repo(ChunkerParams::META, params, 1).await;
    let mut rng = fastrand::Rng::with_seed(7);
    let files: Vec<Vec<u8>> = (0..60)
        .map(|_| {
            let size = (10_000f64 * (2000f64).powf(rng.f64())) as usize;
            let mut buf = vec![0u8; size];
            rng.fill(&mut buf);
            buf
        })
        .collect();
    let total: usize = files.iter().map(Vec::len).sum();
    let writer = repo.writer();
    let start = Instant::now();
    let mut blobs = 0;
    for f in &files {
        blobs += writer
            .save_bytes(BlobKind::Data, f.clone())
            .await
            .unwrap()
            .len();
    }
    writer.flush().await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    // Edit 4 KiB in the middle of the ten largest attachments.
    let mut by_size: Vec<&Vec<u8>> = files.iter().collect();
    by_size.sort_by_key(|f| std::cmp::Reverse(f.len()));
    let before = writer.stats();
    for f in by_size.into_iter().take(10) {
        let mut edited = f.clone();
        let mid = edited.len() / 2;
        let end = (mid + 4096).min(edited.len());
        rng.fill(&mut edited[mid..end]);
        writer.save_bytes(BlobKind::Data, edited).await.unwrap();
    }
    let after = writer.flush().await.unwrap();
    println!(
        "| {} | {:.0} MB | {} | {:.0} MB/s | {:.1} MB |",
        label(params),
        total as f64 / 1e6,
        blobs,
        total as f64 / 1e6 / secs,
        (after.pack_bytes_written + after.index_bytes_written
            - before.pack_bytes_written
            - before.index_bytes_written) as f64
            / 1e6
    );
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("Metadata (table JSON lines, 50,000 records, mean of 3 chunker seeds):");
    println!();
    println!(
        "| min/avg/max | blobs | first snapshot (packs + index) | throughput | 1 % changed: added (x changed lines) | 0.1 % changed: added (x changed lines) |"
    );
    println!("|---|---|---|---|---|---|");
    for (min, avg, max) in [
        (1, 4, 16),
        (2, 8, 32),
        (4, 16, 64),
        (16, 64, 256),
        (512, 1024, 8192),
    ] {
        let p = ChunkerParams {
            min_size: min * KIB,
            avg_size: avg * KIB,
            max_size: max * KIB,
        };
        rt.block_on(meta_case(p));
    }
    println!();
    println!("Data (60 attachments, 10 KB to 20 MB):");
    println!();
    println!("| min/avg/max | input | blobs | throughput | 4 KiB edited in 10 files: added |");
    println!("|---|---|---|---|---|");
    for (min, avg, max) in [(64, 256, 1024), (256, 1024, 4096), (512, 2048, 8192)] {
        let p = ChunkerParams {
            min_size: min * KIB,
            avg_size: avg * KIB,
            max_size: max * KIB,
        };
        rt.block_on(data_case(p));
    }
}
