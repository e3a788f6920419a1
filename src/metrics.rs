//! Metrics in the Prometheus text exposition format (version 0.0.4), for `airback serve`'s
//! `/metrics` and for `snapshot --metrics-file` (the node exporter's textfile collector).
//!
//! The names follow restic's exporters and rustic's metrics: gauges for "the last value"
//! (the time of the last success, the last run's duration and status, what the last snapshot
//! holds) and counters only for totals that grow (API requests, 429s), the lesson backrest
//! learned (its issue #420). `airback_last_success_timestamp_seconds` moves only on success,
//! so alerting on its age catches failures and runs that stopped happening alike.
//!
//! This module only renders; callers gather the figures ([`Metrics`]) from snapshots, job
//! history and the Airtable client's counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::airtable::ClientCounters;

/// How a run ended, as `airback_last_run_status` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Everything was backed up (exit code 0): gauge value 1.
    Ok,
    /// A snapshot was written, but some items are missing from it (exit code 3): gauge 0.5.
    Partial,
    /// No snapshot (exit code 1): gauge 0.
    Failed,
}

impl RunStatus {
    /// The gauge's value: 1 ok, 0.5 partial, 0 failed.
    pub fn value(self) -> f64 {
        match self {
            RunStatus::Ok => 1.0,
            RunStatus::Partial => 0.5,
            RunStatus::Failed => 0.0,
        }
    }
}

/// What is known of one base.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BaseMetrics {
    /// The base id (`app…`), the `base` label.
    pub base: String,
    /// Unix time of the end of the last successful snapshot.
    pub last_success: Option<f64>,
    /// Seconds the last run took, whatever its outcome.
    pub last_duration_seconds: Option<f64>,
    /// How the last run ended.
    pub last_status: Option<RunStatus>,
    /// Records per table (table name → records) in the latest snapshot.
    pub records: BTreeMap<String, u64>,
    /// Attachments in the latest snapshot.
    pub attachments: Option<u64>,
}

/// Everything `/metrics` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// One entry per base.
    pub bases: Vec<BaseMetrics>,
    /// The repository's stored bytes (packs), when known.
    pub repository_bytes: Option<u64>,
    /// Airtable requests (API calls and downloads) by status (`ok` for 2xx, else the code, `none` when no
    /// answer came), since start; [`api_requests`] counts them from a client's counters.
    pub api_requests: BTreeMap<String, u64>,
    /// 429 answers since start.
    pub rate_limited: u64,
}

/// Renders `metrics` as Prometheus text: one `# HELP` and `# TYPE` per family, samples
/// sorted by label, label values escaped.
pub fn render(metrics: &Metrics) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {}", number(value));
        }
    };
    let base_gauge = |get: &dyn Fn(&BaseMetrics) -> Option<f64>| -> Vec<(String, f64)> {
        metrics
            .bases
            .iter()
            .filter_map(|b| Some((labels(&[("base", &b.base)]), get(b)?)))
            .collect()
    };
    family(
        "airback_last_success_timestamp_seconds",
        "gauge",
        "Unix time at which the base's last successful snapshot ended.",
        base_gauge(&|b| b.last_success),
    );
    family(
        "airback_last_run_duration_seconds",
        "gauge",
        "Seconds the base's last snapshot run took, whatever its outcome.",
        base_gauge(&|b| b.last_duration_seconds),
    );
    family(
        "airback_last_run_status",
        "gauge",
        "Outcome of the base's last run: 1 ok, 0.5 partial, 0 failed.",
        base_gauge(&|b| b.last_status.map(RunStatus::value)),
    );
    family(
        "airback_snapshot_records",
        "gauge",
        "Records per table in the base's latest snapshot.",
        metrics
            .bases
            .iter()
            .flat_map(|b| {
                b.records
                    .iter()
                    .map(|(table, n)| (labels(&[("base", &b.base), ("table", table)]), *n as f64))
            })
            .collect(),
    );
    family(
        "airback_snapshot_attachments",
        "gauge",
        "Attachments in the base's latest snapshot.",
        base_gauge(&|b| b.attachments.map(|n| n as f64)),
    );
    family(
        "airback_repository_bytes",
        "gauge",
        "Bytes the repository's packs take in storage.",
        metrics
            .repository_bytes
            .map(|n| vec![(String::new(), n as f64)])
            .unwrap_or_default(),
    );
    family(
        "airback_api_requests_total",
        "counter",
        "Airtable requests (API calls and attachment downloads) by answer: ok, the HTTP status, or none.",
        metrics
            .api_requests
            .iter()
            .map(|(status, n)| (labels(&[("status", status)]), *n as f64))
            .collect(),
    );
    family(
        "airback_rate_limited_total",
        "counter",
        "Airtable 429 answers (the client paces itself, so this should stay 0).",
        vec![(String::new(), metrics.rate_limited as f64)],
    );
    out
}

/// [`Metrics::api_requests`] from an Airtable client's counters: its API requests and
/// attachment downloads (retries included) by answer: `ok` for 2xx, the HTTP status for the
/// others, `none` for those that got no answer (connection refused or reset, timeout).
pub fn api_requests(counters: &ClientCounters) -> BTreeMap<String, u64> {
    let mut by_status: BTreeMap<String, u64> = counters
        .errors_by_status
        .iter()
        .map(|(status, n)| (status.to_string(), *n))
        .collect();
    let answered_badly: u64 = counters.errors_by_status.values().sum();
    let sent = counters.requests + counters.downloads;
    by_status.insert(
        "ok".into(),
        sent.saturating_sub(answered_badly)
            .saturating_sub(counters.transport_errors),
    );
    if counters.transport_errors > 0 {
        by_status.insert("none".into(), counters.transport_errors);
    }
    by_status
}

/// `{a="x",b="y"}` with values escaped as the format requires (backslash, quote, newline).
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(name, value)| {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{name}=\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A sample value: integers without a fraction, others as Rust prints them.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_type_and_escaped_labels() {
        let metrics = Metrics {
            bases: vec![BaseMetrics {
                base: "appA".into(),
                last_success: Some(1_700_000_000.0),
                last_duration_seconds: Some(12.5),
                last_status: Some(RunStatus::Partial),
                records: BTreeMap::from([("Quote \"q\" \\ x".into(), 3)]),
                attachments: Some(7),
            }],
            repository_bytes: Some(1024),
            api_requests: BTreeMap::from([("ok".into(), 40), ("503".into(), 2)]),
            rate_limited: 0,
        };
        let text = render(&metrics);
        assert!(text.contains("# TYPE airback_last_run_status gauge\n"));
        assert!(text.contains("airback_last_run_status{base=\"appA\"} 0.5\n"));
        assert!(
            text.contains("airback_last_success_timestamp_seconds{base=\"appA\"} 1700000000\n")
        );
        assert!(text.contains(
            "airback_snapshot_records{base=\"appA\",table=\"Quote \\\"q\\\" \\\\ x\"} 3\n"
        ));
        assert!(text.contains("airback_api_requests_total{status=\"503\"} 2\n"));
        assert!(
            text.contains(
                "# TYPE airback_rate_limited_total counter\nairback_rate_limited_total 0\n"
            )
        );
        // A base that never succeeded has no last-success sample, rather than a 0.
        let never = Metrics {
            bases: vec![BaseMetrics {
                base: "appB".into(),
                last_status: Some(RunStatus::Failed),
                ..BaseMetrics::default()
            }],
            ..Metrics::default()
        };
        assert!(!render(&never).contains("airback_last_success_timestamp_seconds"));
    }

    #[test]
    fn api_requests_count_answers_by_status() {
        let counters = ClientCounters {
            requests: 10,
            downloads: 4,
            transport_errors: 1,
            errors_by_status: BTreeMap::from([(429, 2), (503, 1)]),
            ..ClientCounters::default()
        };
        let by_status = api_requests(&counters);
        assert_eq!(
            by_status,
            BTreeMap::from([
                ("ok".to_string(), 10),
                ("429".to_string(), 2),
                ("503".to_string(), 1),
                ("none".to_string(), 1),
            ])
        );
        assert_eq!(
            api_requests(&ClientCounters::default()),
            BTreeMap::from([("ok".to_string(), 0)])
        );
    }
}
