//! `snapshot --metrics-file F` (or `metrics_file:` in the config): after the run, the
//! Prometheus text of [`crate::metrics::render`] for the run's bases, written atomically for
//! the node exporter's textfile collector (`F.tmp` in the same folder, fsync, rename).
//!
//! The collector replaces everything it knew from the file with each read, so a base that
//! failed this time (or whose snapshot is partial) keeps the `airback_last_success_timestamp_seconds` sample the previous file
//! had for it (read back from that file): alerting on that sample's age then catches failed
//! runs and runs that stopped happening alike.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::airtable::Client;
use crate::id::SnapshotId;
use crate::layout::{self, LayoutJson, TableMeta};
use crate::metrics::{self, BaseMetrics, Metrics, RunStatus};
use crate::repo::Repository;

/// The metric whose previous samples a failed base keeps.
const LAST_SUCCESS: &str = "airback_last_success_timestamp_seconds";

/// What a snapshot run learned, filled in as it goes (so a run that fails early still
/// reports its bases as failed).
#[derive(Default)]
pub(super) struct RunReport {
    /// The run's client, for its request counters.
    pub(super) client: Option<Client>,
    /// The repository, once open.
    pub(super) repo: Option<Repository>,
    /// The bases the run meant to back up, in order.
    bases: Vec<String>,
    /// How each base that finished ended.
    outcomes: BTreeMap<String, Outcome>,
}

/// How one base's backup ended.
struct Outcome {
    /// When it ended.
    ended: SystemTime,
    /// How long it took.
    duration: Duration,
    /// The snapshot written, if one was.
    saved: Option<Saved>,
}

/// A snapshot a base's backup wrote.
struct Saved {
    snapshot_id: SnapshotId,
    partial: bool,
    attachments: u64,
}

impl RunReport {
    /// Notes a base the run means to back up.
    pub(super) fn plan(&mut self, base: &str) {
        if !self.bases.iter().any(|b| b == base) {
            self.bases.push(base.to_owned());
        }
    }

    /// Notes a base whose backup wrote `snapshot_id`.
    pub(super) fn saved(
        &mut self,
        base: &str,
        duration: Duration,
        snapshot_id: SnapshotId,
        partial: bool,
        attachments: u64,
    ) {
        self.plan(base);
        let saved = Saved {
            snapshot_id,
            partial,
            attachments,
        };
        self.outcomes.insert(
            base.to_owned(),
            Outcome {
                ended: SystemTime::now(),
                duration,
                saved: Some(saved),
            },
        );
    }

    /// Notes a base whose backup failed.
    pub(super) fn failed(&mut self, base: &str, duration: Duration) {
        self.plan(base);
        self.outcomes.insert(
            base.to_owned(),
            Outcome {
                ended: SystemTime::now(),
                duration,
                saved: None,
            },
        );
    }
}

/// Gathers the run's metrics and writes them to `path` atomically.
pub(super) async fn write(path: &Path, report: RunReport) -> anyhow::Result<()> {
    let previous = match std::fs::read_to_string(path) {
        Ok(text) => last_successes(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => {
            tracing::warn!(
                "cannot read the previous metrics file {} ({e}); the last successes of bases \
                 that failed this time are left out",
                path.display()
            );
            BTreeMap::new()
        }
    };
    let mut metrics = Metrics::default();
    for base in &report.bases {
        let outcome = report.outcomes.get(base);
        // Until this run succeeds for the base, its last success is the previous file's: a
        // partial snapshot alerts as a failure does.
        let mut m = BaseMetrics {
            base: base.clone(),
            last_success: previous.get(base).copied(),
            last_duration_seconds: outcome.map(|o| o.duration.as_secs_f64()),
            last_status: Some(RunStatus::Failed),
            ..BaseMetrics::default()
        };
        if let Some((outcome, saved)) = outcome.and_then(|o| o.saved.as_ref().map(|s| (o, s))) {
            if saved.partial {
                m.last_status = Some(RunStatus::Partial);
            } else {
                m.last_status = Some(RunStatus::Ok);
                m.last_success = Some(unix_seconds(outcome.ended));
            }
            m.attachments = Some(saved.attachments);
            if let Some(repo) = &report.repo {
                m.records = table_records(repo, &saved.snapshot_id)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot read snapshot {} for its record counts",
                            saved.snapshot_id.short()
                        )
                    })?;
            }
        }
        metrics.bases.push(m);
    }
    if let Some(repo) = &report.repo {
        metrics.repository_bytes = repository_bytes(repo).await;
    }
    if let Some(client) = &report.client {
        let counters = client.counters();
        metrics.api_requests = metrics::api_requests(&counters);
        metrics.rate_limited = counters.rate_limited;
    }
    write_atomically(path, metrics::render(&metrics).as_bytes()).with_context(|| {
        format!(
            "cannot write the metrics file {}; check that its folder exists and is writable",
            path.display()
        )
    })
}

/// Records per table name in a snapshot (tables whose description is unreadable are left out).
async fn table_records(
    repo: &Repository,
    id: &SnapshotId,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let snapshot = repo.load_snapshot(id).await?;
    let root = repo.load_tree(&snapshot.tree).await?;
    let mut records = BTreeMap::new();
    if let Some(subtree) = layout::tables_dir(&root) {
        for node in repo.load_tree(&subtree).await?.nodes {
            if let Some(meta) = TableMeta::from_json(&node.meta) {
                records.insert(meta.name, meta.records);
            }
        }
    }
    Ok(records)
}

/// The bytes of the packs the local cache knows (those of every index file read or written):
/// no request to the storage. `None` when the cache cannot say.
async fn repository_bytes(repo: &Repository) -> Option<u64> {
    let repo = repo.clone();
    let sizes = tokio::task::spawn_blocking(move || repo.cache().pack_sizes())
        .await
        .ok()?;
    match sizes {
        Ok(sizes) => Some(sizes.values().sum()),
        Err(e) => {
            tracing::warn!("cannot sum the repository's pack sizes for the metrics file: {e}");
            None
        }
    }
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs() as f64)
}

/// The `airback_last_success_timestamp_seconds` samples of a metrics file, by base. Lines
/// that are not such samples, or that do not parse, are skipped.
fn last_successes(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter_map(|line| {
            let labels = line.strip_prefix(LAST_SUCCESS)?.strip_prefix('{')?;
            let (base, rest) = label_value(labels, "base")?;
            let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
            value.is_finite().then_some((base, value))
        })
        .collect()
}

/// The value of label `name` in `labels` (the text after `{`), unescaped, and the text after
/// the closing `}`.
fn label_value(labels: &str, name: &str) -> Option<(String, String)> {
    let mut found = None;
    let mut rest = labels;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if let Some(after) = rest.strip_prefix('}') {
            return found.map(|value| (value, after.to_owned()));
        }
        let (label, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        if label.trim() == name {
            found = Some(value);
        }
        rest = &after[end + 1..];
    }
}

/// Writes `data` to `path` through `path.tmp` in the same folder: written, synced, renamed,
/// so the collector reads either the old file or the new one, never half of one.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = PathBuf::from(path);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    tmp.set_file_name(name);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename itself survives a crash once the folder is synced.
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = std::fs::File::open(folder) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_successes_are_read_back_from_a_rendered_file() {
        let rendered = metrics::render(&Metrics {
            bases: vec![
                BaseMetrics {
                    base: "appA".into(),
                    last_success: Some(1_700_000_000.0),
                    last_status: Some(RunStatus::Ok),
                    ..BaseMetrics::default()
                },
                BaseMetrics {
                    base: "we\"ird\\\nbase".into(),
                    last_success: Some(1_700_000_001.5),
                    ..BaseMetrics::default()
                },
                BaseMetrics {
                    base: "appNever".into(),
                    last_status: Some(RunStatus::Failed),
                    ..BaseMetrics::default()
                },
            ],
            ..Metrics::default()
        });
        let text = format!(
            "{rendered}{LAST_SUCCESS}{{job=\"x\", base=\"appB\"}} 12 1700000000000\n\
             {LAST_SUCCESS}{{base=\"appBad\"}} soon\n{LAST_SUCCESS}_other{{base=\"appC\"}} 1\n"
        );
        assert_eq!(
            last_successes(&text),
            BTreeMap::from([
                ("appA".to_string(), 1_700_000_000.0),
                ("we\"ird\\\nbase".to_string(), 1_700_000_001.5),
                ("appB".to_string(), 12.0),
            ])
        );
    }

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("airback.prom");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("airback.prom")]);
        let missing = dir.path().join("no/such/folder/airback.prom");
        assert!(write_atomically(&missing, b"x").is_err());
    }
}
