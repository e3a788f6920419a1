//! `snapshot --metrics-file F` (and `metrics_file:` in the config): the file parses with a
//! real Prometheus text parser and holds the run's figures; a base that fails keeps its last
//! success from the previous file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use airback_fake::{FakeAirtable, FakeOptions};
use prometheus_parse::{Scrape, Value};

use crate::cli::airback_with;

/// An unknown base: its requests are refused, so its backup fails.
const UNKNOWN: &str = "appUnknownBase000";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The file parsed; every sample line must have been understood (the parser skips the
/// lines it cannot read).
fn scrape(path: &Path) -> Scrape {
    let text = std::fs::read_to_string(path).unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let sample_lines = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(scrape.samples.len(), sample_lines, "{text}");
    scrape
}

/// The value of the sample of `metric` whose labels are `labels`, if there is one.
fn sample(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<Value> {
    let matching: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .collect();
    assert!(
        matching.len() <= 1,
        "several samples of {metric} {labels:?}"
    );
    matching.first().map(|s| s.value.clone())
}

fn gauge(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, metric, labels) {
        Some(Value::Gauge(v)) => v,
        other => panic!("{metric} {labels:?} is not a gauge: {other:?}"),
    }
}

fn counter(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, metric, labels) {
        Some(Value::Counter(v)) => v,
        other => panic!("{metric} {labels:?} is not a counter: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_file_holds_the_run_and_a_failed_base_keeps_its_last_success() {
    let fake = FakeAirtable::start(FakeOptions::default()).await.unwrap();
    let base = fake.bases()[0].id.clone();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let file = dir.path().join("airback.prom");
    let file_arg = file.to_str().unwrap();
    let (code, _, err) = airback_with(&fake, dir.path(), &["init", "--repo", repo]).await;
    assert_eq!(code, 0, "{err}");

    // One base backed up, one failing: exit 1, and both in the file.
    let before = now().floor();
    let (code, out, err) = airback_with(
        &fake,
        dir.path(),
        &[
            "snapshot",
            "--repo",
            repo,
            "--base",
            &base,
            "--base",
            UNKNOWN,
            "--metrics-file",
            file_arg,
            "--json",
        ],
    )
    .await;
    let after = now();
    assert_eq!(code, 1, "{out}{err}");
    let summary: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|o| o["base_id"] == base.as_str())
        .unwrap();
    assert!(
        !dir.path().join("airback.prom.tmp").exists(),
        "the temporary file was left"
    );
    let first = scrape(&file);
    assert!(
        first.docs.contains_key("airback_snapshot_records"),
        "{:?}",
        first.docs
    );

    let ok = [("base", base.as_str())];
    assert_eq!(gauge(&first, "airback_last_run_status", &ok), 1.0);
    let success = gauge(&first, "airback_last_success_timestamp_seconds", &ok);
    assert!(
        (before..=after).contains(&success),
        "{before} <= {success} <= {after}"
    );
    assert!(gauge(&first, "airback_last_run_duration_seconds", &ok) > 0.0);
    assert_eq!(
        gauge(&first, "airback_snapshot_attachments", &ok),
        summary["attachments"].as_f64().unwrap()
    );
    // Records per table, as many as the fake holds, and no other table.
    let schema = fake.schema_json(&base);
    let mut expected = BTreeMap::new();
    for table in schema["tables"].as_array().unwrap() {
        let (id, name) = (
            table["id"].as_str().unwrap(),
            table["name"].as_str().unwrap(),
        );
        expected.insert(
            name.to_owned(),
            fake.record_count(&base, id).unwrap() as f64,
        );
    }
    let records: BTreeMap<String, f64> = first
        .samples
        .iter()
        .filter(|s| s.metric == "airback_snapshot_records" && s.labels.get("base") == Some(&base))
        .map(|s| match s.value {
            Value::Gauge(v) => (s.labels.get("table").unwrap().to_owned(), v),
            ref other => panic!("not a gauge: {other:?}"),
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(records, expected);
    assert!(gauge(&first, "airback_repository_bytes", &[]) > 0.0);
    assert_eq!(counter(&first, "airback_rate_limited_total", &[]), 0.0);
    assert!(counter(&first, "airback_api_requests_total", &[("status", "ok")]) > 0.0);
    let refused: f64 = first
        .samples
        .iter()
        .filter(|s| s.metric == "airback_api_requests_total")
        .filter(|s| s.labels.get("status") != Some("ok"))
        .map(|s| match s.value {
            Value::Counter(v) => v,
            ref other => panic!("not a counter: {other:?}"),
        })
        .sum();
    assert!(refused >= 1.0, "the unknown base's refusal is not counted");
    // The failed base: status 0, no success ever, no records.
    let failed = [("base", UNKNOWN)];
    assert_eq!(gauge(&first, "airback_last_run_status", &failed), 0.0);
    assert!(sample(&first, "airback_last_success_timestamp_seconds", &failed).is_none());
    assert!(sample(&first, "airback_snapshot_records", &failed).is_none());

    // The next run, from a config file naming the metrics file, fails for the base (a token
    // that was not given it): status 0, and the last success carried over from the old file.
    let config = dir.path().join("airback.yaml");
    std::fs::write(
        &config,
        format!("repository: {repo}\nmetrics_file: {file_arg}\nbases:\n  - id: {base}\n"),
    )
    .unwrap();
    let elsewhere = fake.add_token(&["data.records:read", "schema.bases:read"], Some(&[]));
    let out = crate::support::command(env!("CARGO_BIN_EXE_airback"))
        .args(["snapshot", "--config", config.to_str().unwrap()])
        .env("AIRBACK_CACHE_DIR", dir.path())
        .env("AIRTABLE_API_URL", fake.url())
        .env("AIRTABLE_CONTENT_URL", fake.url())
        .env("AIRTABLE_TOKEN", &elsewhere)
        .env_remove("AIRBACK_REPO")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let second = scrape(&file);
    assert_eq!(gauge(&second, "airback_last_run_status", &ok), 0.0);
    assert_eq!(
        gauge(&second, "airback_last_success_timestamp_seconds", &ok),
        success
    );
    assert!(gauge(&second, "airback_last_run_duration_seconds", &ok) >= 0.0);
    // Only this run's bases: the collector replaces the whole file.
    assert!(sample(&second, "airback_last_run_status", &failed).is_none());
    assert!(sample(&second, "airback_snapshot_records", &ok).is_none());

    // A partial snapshot (an exclusion that matches no table): status 0.5, its records, and
    // the last success still the first run's, since a partial snapshot alerts as a failure.
    std::fs::write(
        &config,
        format!(
            "repository: {repo}\nmetrics_file: {file_arg}\nbases:\n  - id: {base}\n    \
             tables:\n      exclude: [No such table]\n"
        ),
    )
    .unwrap();
    let (code, out, err) = airback_with(
        &fake,
        dir.path(),
        &["snapshot", "--config", config.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 3, "{out}{err}");
    let third = scrape(&file);
    assert_eq!(gauge(&third, "airback_last_run_status", &ok), 0.5);
    assert_eq!(
        gauge(&third, "airback_last_success_timestamp_seconds", &ok),
        success
    );
    let (table, records) = expected.iter().next().unwrap();
    assert_eq!(
        gauge(
            &third,
            "airback_snapshot_records",
            &[("base", &base), ("table", table)]
        ),
        *records
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_file_in_a_missing_folder_is_an_error_that_names_it() {
    let fake = FakeAirtable::start(FakeOptions::unlimited(airback_fake::Preset::Demo))
        .await
        .unwrap();
    let base = fake.bases()[0].id.clone();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let file = dir.path().join("no-such-folder").join("airback.prom");
    let (code, _, err) = airback_with(&fake, dir.path(), &["init", "--repo", repo]).await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = airback_with(
        &fake,
        dir.path(),
        &[
            "snapshot",
            "--repo",
            repo,
            "--no-attachments",
            "--base",
            &base,
            "--metrics-file",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("cannot write the metrics file") && err.contains("no-such-folder"),
        "{err}"
    );
    // The snapshot itself was saved.
    assert!(out.contains(&format!("of base {base}")), "{out}");
}
