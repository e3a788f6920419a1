//! `airback serve` as a process against the fake Airtable: "snapshot now" and `/metrics`
//! (parsed by a Prometheus text parser), alerts received by a local HTTP server for success,
//! partial and failure, and the security rules (loopback without a token only, the access
//! token, CSRF on POSTs, no response holding the Airtable token or the password).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use airback_fake::{FakeOptions, Preset};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{FakeSetup, TEST_PASSWORD};

/// A running `airback serve`.
pub(crate) struct Served {
    child: tokio::process::Child,
    pub(crate) url: String,
    http: reqwest::Client,
}

impl Served {
    /// Starts `serve` on port 0 with `config` (YAML) and `extra` flags; reads the URL from the
    /// first line.
    pub(crate) async fn start(setup: &FakeSetup, config: &str, extra: &[&str]) -> Served {
        let dir = setup.dir.path();
        let config_path = dir.join("airback.yaml");
        std::fs::write(&config_path, config).unwrap();
        let state = dir.join("state");
        let mut args = vec![
            "serve",
            "--config",
            config_path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let mut child = setup
            .command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next_line().await.unwrap().unwrap_or_default();
        let Some(url) = first.strip_prefix("listening on ").map(str::to_owned) else {
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "first line {first:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        assert!(
            url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
            "{url}"
        );
        Served {
            child,
            url,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    pub(crate) fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.url))
    }

    /// SIGTERM, then the exit code and standard error.
    pub(crate) async fn terminate(self) -> (i32, String) {
        let pid = self.child.id().unwrap();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let out = self.child.wait_with_output().await.unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Sends the request; returns the status and the body, and keeps the body in `seen`.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    seen: &mut Vec<String>,
) -> (reqwest::StatusCode, String) {
    let answer = request.send().await.unwrap();
    let status = answer.status();
    let headers = format!("{:?}", answer.headers());
    let body = answer.text().await.unwrap();
    seen.push(headers);
    seen.push(body.clone());
    (status, body)
}

pub(crate) fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Waits until job `id` has ended (the job's own pace, not a timing assertion); returns it.
async fn ended(served: &Served, id: i64, seen: &mut Vec<String>) -> serde_json::Value {
    for _ in 0..1200 {
        let (status, body) = send(served.get(&format!("/api/jobs/{id}")), seen).await;
        assert_eq!(status, 200, "{body}");
        let job = json(&body);
        if !matches!(job["outcome"].as_str(), Some("queued" | "running")) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} did not end");
}

pub(crate) async fn csrf(served: &Served, seen: &mut Vec<String>) -> String {
    let (status, body) = send(served.get("/api/session"), seen).await;
    assert_eq!(status, 200, "{body}");
    json(&body)["csrf_token"].as_str().unwrap().to_owned()
}

/// `POST /api/bases/{base}/snapshot` with the CSRF token: asserts 202; the queued job's id.
async fn snapshot_now(served: &Served, base: &str, token: &str, seen: &mut Vec<String>) -> i64 {
    let (status, body) = send(
        served
            .post(&format!("/api/bases/{base}/snapshot"))
            .header("X-CSRF-Token", token),
        seen,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    json(&body)["job_id"].as_i64().unwrap()
}

/// `snapshot now` through the API, then `/metrics` read by a Prometheus text parser: the
/// records of each table are the fake's; no answer holds the Airtable token or the password;
/// SIGTERM ends the service with 0.
#[tokio::test]
async fn snapshot_now_then_metrics() {
    let setup = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let base = setup.base.clone();
    let config =
        format!("bases:\n  - id: {base}\nschedule: \"15 3 * * *\"\ntime_zone: Europe/Berlin\n");
    let served = Served::start(&setup, &config, &[]).await;
    let mut seen = Vec::new();

    // A POST without the CSRF token is refused, and queues nothing.
    let path = format!("/api/bases/{base}/snapshot");
    let (status, body) = send(served.post(&path), &mut seen).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("X-CSRF-Token"), "{body}");
    let (status, body) = send(
        served.post(&path).header("X-CSRF-Token", "wrong"),
        &mut seen,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (_, body) = send(served.get("/api/jobs"), &mut seen).await;
    assert_eq!(json(&body)["jobs"], serde_json::json!([]));

    let token = csrf(&served, &mut seen).await;
    let (status, body) = send(served.post(&path).header("X-CSRF-Token", &token), &mut seen).await;
    assert_eq!(status, 202, "{body}");
    let id = json(&body)["job_id"].as_i64().unwrap();
    let job = ended(&served, id, &mut seen).await;
    assert_eq!(job["outcome"], "ok", "{job}");
    assert_eq!(job["kind"], "snapshot");
    assert_eq!(job["trigger"], "manual");

    // The fake's tables and their records.
    let schema = setup.fake.schema_json(&base);
    let tables: Vec<(String, u64)> = schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let id = t["id"].as_str().unwrap();
            let n = setup.fake.record_count(&base, id).unwrap() as u64;
            (t["name"].as_str().unwrap().to_owned(), n)
        })
        .collect();
    let total: u64 = tables.iter().map(|(_, n)| n).sum();
    assert_eq!(job["figures"]["records"].as_u64(), Some(total), "{job}");

    let (status, text) = send(served.get("/metrics"), &mut seen).await;
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    for (table, n) in &tables {
        assert_eq!(
            value(
                "airback_snapshot_records",
                &[("base", &base), ("table", table)]
            ),
            Some(*n as f64),
            "table {table}\n{text}"
        );
    }
    assert_eq!(
        value("airback_last_run_status", &[("base", &base)]),
        Some(1.0)
    );
    let success = value("airback_last_success_timestamp_seconds", &[("base", &base)]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(success > now - 3600.0 && success <= now + 1.0, "{success}");
    assert!(value("airback_last_run_duration_seconds", &[("base", &base)]).unwrap() >= 0.0);
    assert!(value("airback_snapshot_attachments", &[("base", &base)]).unwrap() > 0.0);
    assert!(value("airback_repository_bytes", &[]).unwrap() > 0.0);
    assert!(value("airback_api_requests_total", &[("status", "ok")]).unwrap() > 0.0);
    assert_eq!(value("airback_rate_limited_total", &[]), Some(0.0));

    // The other endpoints, for the page and for scripts.
    let (_, body) = send(served.get("/api/bases"), &mut seen).await;
    let bases = json(&body);
    let b = &bases["bases"][0];
    assert_eq!(b["id"], base.as_str());
    assert_eq!(b["health"], "ok");
    assert_eq!(b["last_run"]["id"].as_i64(), Some(id));
    assert_eq!(b["schedule"], "15 3 * * *");
    assert!(b["next_run"].as_str().is_some(), "{b}");
    let (_, body) = send(served.get(&format!("/api/jobs?base={base}")), &mut seen).await;
    assert_eq!(json(&body)["jobs"][0]["id"].as_i64(), Some(id));
    let (status, _) = send(served.get("/api/jobs/99999"), &mut seen).await;
    assert_eq!(status, 404);
    let (status, _) = send(
        served
            .post("/api/bases/appZZZZZZZZZZZZZZ/snapshot")
            .header("X-CSRF-Token", &token),
        &mut seen,
    )
    .await;
    assert_eq!(status, 404);
    // A page of another site that rebinds its name to 127.0.0.1 is not answered.
    let (status, _) = send(
        served.get("/api/bases").header("Host", "evil.example:80"),
        &mut seen,
    )
    .await;
    assert_eq!(status, 403);

    // Nothing the service answered holds the Airtable token or the repository's password.
    let secret = setup.fake.token();
    for body in &seen {
        assert!(
            !body.contains(&secret),
            "the Airtable token in an answer: {body}"
        );
        assert!(
            !body.contains(TEST_PASSWORD),
            "the password in an answer: {body}"
        );
    }

    let (code, stderr) = served.terminate().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
}

/// Off loopback without a token: refused before anything is opened (exit 2). With a token:
/// requests without it get 401; the bearer token or the cookie `/login` sets let them in, and
/// a POST still needs the CSRF token.
#[tokio::test]
async fn access_token_and_loopback_rules() {
    let setup = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let base = setup.base.clone();
    let config = format!("bases:\n  - id: {base}\n");
    let config_path = setup.dir.path().join("refused.yaml");
    std::fs::write(&config_path, &config).unwrap();
    let out = setup
        .command(&[
            "serve",
            "--config",
            config_path.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--auth-token-file") && stderr.contains("0.0.0.0"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let token = "s3cret-access-token-0123456789";
    let token_file = setup.dir.path().join("access-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let served = Served::start(
        &setup,
        &config,
        &["--auth-token-file", token_file.to_str().unwrap()],
    )
    .await;
    let mut seen = Vec::new();
    for path in ["/api/bases", "/metrics", "/api/session"] {
        let (status, _) = send(served.get(path), &mut seen).await;
        assert_eq!(status, 401, "{path}");
        let (status, _) = send(
            served.get(path).bearer_auth("wrong-token-wrong-token"),
            &mut seen,
        )
        .await;
        assert_eq!(status, 401, "{path}");
        let (status, _) = send(served.get(path).bearer_auth(token), &mut seen).await;
        assert_eq!(status, 200, "{path}");
    }
    // The cookie from /login.
    let (status, _) = send(
        served
            .post("/login")
            .json(&serde_json::json!({"token": "nope"})),
        &mut seen,
    )
    .await;
    assert_eq!(status, 401);
    let answer = served
        .post("/login")
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let csrf = json(&answer.text().await.unwrap())["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = send(
        served.get("/api/bases").header("Cookie", &session),
        &mut seen,
    )
    .await;
    assert_eq!(status, 200);
    // Logged in, a POST without the CSRF token is still refused.
    let path = format!("/api/bases/{base}/snapshot");
    let (status, _) = send(served.post(&path).header("Cookie", &session), &mut seen).await;
    assert_eq!(status, 403);
    let (status, body) = send(
        served
            .post(&path)
            .header("Cookie", &session)
            .header("X-CSRF-Token", &csrf),
        &mut seen,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    for body in &seen {
        assert!(!body.contains(&setup.fake.token()), "{body}");
        assert!(!body.contains(token), "the access token echoed: {body}");
    }
    let (code, stderr) = served.terminate().await;
    assert_eq!(code, 0, "{stderr}");
}

/// What the local alert server received: (path, body).
type Received = Arc<Mutex<Vec<(String, String)>>>;

async fn alert_server() -> (String, Received) {
    let received: Received = Arc::default();
    let keep = Arc::clone(&received);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
        let keep = Arc::clone(&keep);
        async move {
            keep.lock().unwrap().push((uri.path().to_owned(), body));
            "OK"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Healthchecks pings, webhooks and a command, for a snapshot that succeeds, one that is
/// partial (a configured table the base lacks) and one that fails (a base the token cannot
/// see).
#[tokio::test]
async fn alerts_for_success_partial_and_failure() {
    let setup = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let ok_base = setup.base.clone();
    let partial_base = setup.fake.add_empty_base("Second").id;
    let failed_base = "appZZZZZZZZZZZZZZ";
    let (url, received) = alert_server().await;
    let command_out = setup.dir.path().join("command.out");
    // The third base has no alerts of its own: the top-level ones serve it.
    let config = format!(
        "bases:
  - id: {ok_base}
    alerts: {{healthchecks: {url}/hc/ok, webhook: {url}/hook/ok}}
  - id: {partial_base}
    tables: {{include: [Missing table]}}
    alerts:
      healthchecks: {url}/hc/partial
      webhook: {url}/hook/partial
      command: 'echo \"$AIRBACK_JOB_OUTCOME $AIRBACK_JOB_BASE ${{AIRTABLE_TOKEN:-no-token}}\" > {out}'
  - id: {failed_base}
alerts: {{healthchecks: {url}/hc/failed/, webhook: {url}/hook/failed}}
",
        out = command_out.display()
    );
    let served = Served::start(&setup, &config, &[]).await;
    let mut seen = Vec::new();
    let token = csrf(&served, &mut seen).await;
    let mut outcomes = Vec::new();
    for base in [ok_base.as_str(), partial_base.as_str(), failed_base] {
        let id = snapshot_now(&served, base, &token, &mut seen).await;
        outcomes.push(ended(&served, id, &mut seen).await);
    }
    assert_eq!(outcomes[0]["outcome"], "ok", "{}", outcomes[0]);
    assert_eq!(outcomes[1]["outcome"], "partial", "{}", outcomes[1]);
    assert_eq!(outcomes[2]["outcome"], "failed", "{}", outcomes[2]);
    // The end alerts follow the job's end: wait for the nine requests.
    for _ in 0..600 {
        if received.lock().unwrap().len() >= 9 && command_out.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = received.lock().unwrap().clone();
    let find = |path: &str| -> String {
        got.iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("no request to {path}: {got:?}"))
            .1
            .clone()
    };
    // Success: /start, then the URL itself.
    find("/hc/ok/start");
    assert_eq!(find("/hc/ok"), "");
    assert!(!got.iter().any(|(p, _)| p == "/hc/ok/fail"));
    // Partial counts as a failure, naming what is missing.
    find("/hc/partial/start");
    let partial = find("/hc/partial/fail");
    assert!(
        partial.contains("partial") && partial.contains("Missing table"),
        "{partial}"
    );
    // Failure, with the error (a trailing slash in the URL is not doubled).
    find("/hc/failed/start");
    let failed = find("/hc/failed/fail");
    assert!(
        failed.contains("failed") && failed.contains(failed_base),
        "{failed}"
    );
    for (name, base, outcome) in [
        ("ok", ok_base.as_str(), "ok"),
        ("partial", partial_base.as_str(), "partial"),
        ("failed", failed_base, "failed"),
    ] {
        let hook = json(&find(&format!("/hook/{name}")));
        assert_eq!(hook["outcome"], outcome, "{hook}");
        assert_eq!(hook["base"], base, "{hook}");
        assert_eq!(hook["kind"], "snapshot", "{hook}");
        assert_eq!(hook["service"], "airback", "{hook}");
    }
    let hook = json(&find("/hook/ok"));
    assert!(hook["figures"]["records"].as_u64().unwrap() > 0, "{hook}");
    // The command ran with the summary in its environment, without the Airtable token.
    let command = std::fs::read_to_string(&command_out).unwrap();
    assert_eq!(command.trim(), format!("partial {partial_base} no-token"));
    for (_, body) in &got {
        assert!(!body.contains(&setup.fake.token()), "{body}");
    }
    let (code, stderr) = served.terminate().await;
    assert_eq!(code, 0, "{stderr}");
}

/// SIGTERM while a snapshot runs (held up by a 429 penalty): the service exits 0, the job is
/// recorded as failed with why, no lock is left, and the repository checks clean.
#[tokio::test]
async fn sigterm_cancels_a_running_snapshot_cleanly() {
    let setup = FakeSetup::start(FakeOptions {
        preset: Preset::Demo,
        ..FakeOptions::default()
    })
    .await;
    let base = setup.base.clone();
    let served = Served::start(&setup, &format!("bases:\n  - id: {base}\n"), &[]).await;
    let mut seen = Vec::new();
    let token = csrf(&served, &mut seen).await;
    // The base answers 429 for the fake's 30 s penalty: the snapshot waits inside.
    setup.fake.trigger_rate_limit(&base);
    let id = snapshot_now(&served, &base, &token, &mut seen).await;
    let locks = setup.dir.path().join("repo").join("locks");
    for _ in 0..600 {
        let (_, body) = send(served.get(&format!("/api/jobs/{id}")), &mut seen).await;
        if json(&body)["outcome"] == "running" && !crate::support::files_below(&locks).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, body) = send(served.get(&format!("/api/jobs/{id}")), &mut seen).await;
    assert_eq!(json(&body)["outcome"], "running", "{body}");

    let (code, stderr) = served.terminate().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        crate::support::files_below(&locks).is_empty(),
        "a lock was left"
    );
    let db = rusqlite::Connection::open(setup.dir.path().join("state/serve.sqlite")).unwrap();
    let (outcome, error): (String, String) = db
        .query_row("SELECT outcome, error FROM jobs WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(outcome, "failed");
    assert!(error.contains("stopped while the job ran"), "{error}");
    let out = setup.command(&["check"]).output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The config's `all_bases`, `copies:` and `retention.after_snapshot` in the service: every
/// base the token sees is listed; each snapshot job copies its base's snapshots into the copy
/// repository, then queues retention (trigger `after-snapshot`, no prune without
/// `retention.prune`), so with `keep_last: 1` the repository keeps one snapshot of the base
/// and the copy both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_bases_copies_and_retention_after_snapshot() {
    let setup = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let base = setup.base.clone();
    let second = setup.fake.add_empty_base("Second base");
    let copy = setup.dir.path().join("copy");
    let (code, out, err) = crate::support::airback(
        &setup.dir.path().join("copy-cache"),
        &["init", "--repo", copy.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let password_file = setup.dir.path().join("copy-password");
    std::fs::write(&password_file, TEST_PASSWORD).unwrap();
    let config = format!(
        "all_bases: true\nretention:\n  keep_last: 1\n  after_snapshot: true\ncopies:\n  - \
         repository: {}\n    password_file: {}\n",
        copy.display(),
        password_file.display()
    );
    let served = Served::start(&setup, &config, &[]).await;
    let mut seen = Vec::new();

    let (status, body) = send(served.get("/api/bases"), &mut seen).await;
    assert_eq!(status, 200, "{body}");
    let mut ids: Vec<String> = json(&body)["bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected = vec![base.clone(), second.id.clone()];
    expected.sort();
    assert_eq!(ids, expected, "all_bases lists every base the token sees");

    let token = csrf(&served, &mut seen).await;
    for round in 0..2 {
        let id = snapshot_now(&served, &base, &token, &mut seen).await;
        let job = ended(&served, id, &mut seen).await;
        assert_eq!(job["outcome"], "ok", "round {round}: {job}");
        let copied = job["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["text"].as_str().unwrap().contains("1 snapshot(s) copied"));
        assert!(copied, "round {round}: {job}");
        // The retention job it queued.
        // The retention job it queued (recorded before the snapshot job's end is answered).
        let (_, body) = send(served.get("/api/jobs?limit=1"), &mut seen).await;
        let newest = json(&body)["jobs"][0].clone();
        assert_eq!(newest["kind"], "retention", "round {round}: {newest}");
        let retention = ended(&served, newest["id"].as_i64().unwrap(), &mut seen).await;
        assert_eq!(retention["trigger"], "after-snapshot", "{retention}");
        assert_eq!(retention["outcome"], "ok", "{retention}");
        let text = retention["log"][0]["text"].as_str().unwrap().to_owned();
        assert!(text.contains("not pruned"), "{text}");
        assert!(
            text.starts_with(&format!("removed {round} snapshot(s)")),
            "{text}"
        );
    }
    let (code, stderr) = served.terminate().await;
    assert_eq!(code, 0, "{stderr}");

    let count = |out: &[u8]| -> usize {
        let rows: serde_json::Value = serde_json::from_slice(out).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["base_id"] == base.as_str())
            .count()
    };
    let main = setup
        .command(&["snapshots", "--json"])
        .output()
        .await
        .unwrap();
    assert_eq!(count(&main.stdout), 1, "keep_last 1 in the repository");
    let (code, out, err) = crate::support::airback(
        &setup.dir.path().join("copy-cache"),
        &["snapshots", "--json", "--repo", copy.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(count(out.as_bytes()), 2, "both snapshots were copied first");
}
