//! Alerts after (and, for healthchecks, before) each job: a healthchecks.io-style ping URL
//! (`<url>/start`, then `<url>` on success or `<url>/fail` with the error as body; a partial
//! snapshot counts as a failure and the body names what is missing), a webhook that receives
//! the job's summary as JSON, and a command run with the summary in `AIRBACK_JOB_*`
//! environment variables (without the credentials of this process's environment).
//!
//! An alert that cannot be delivered does not change the job's outcome: it becomes a warning
//! in the job's log.

use std::time::Duration;

use serde::Serialize;

use super::history::{JobRow, LogLine, Outcome};
use crate::config::Alerts;

/// How long one alert may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The JSON a webhook receives (and `AIRBACK_JOB_SUMMARY` holds).
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    /// Always `airback`.
    pub service: &'static str,
    /// The job.
    #[serde(flatten)]
    pub job: &'a JobRow,
    /// Seconds from start to end.
    pub duration_secs: Option<f64>,
}

/// Sends alerts.
#[derive(Debug, Clone)]
pub struct Alerter {
    http: reqwest::Client,
}

impl Default for Alerter {
    fn default() -> Self {
        Alerter::new()
    }
}

impl Alerter {
    /// An alerter with its own HTTP client (not the Airtable client: its pacing and token are
    /// for Airtable only).
    pub fn new() -> Alerter {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("airback/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Alerter { http }
    }

    /// Before a job: pings `<healthchecks>/start`. Returns the warnings of what failed.
    pub async fn started(&self, alerts: &Alerts) -> Vec<LogLine> {
        let mut log = Vec::new();
        if let Some(url) = &alerts.healthchecks {
            let url = format!("{}/start", url.trim_end_matches('/'));
            if let Err(e) = self.post(&url, Body::Empty).await {
                log.push(LogLine::new(
                    "warning",
                    format!("healthchecks start ping failed: {e}"),
                ));
            }
        }
        log
    }

    /// After a job: the healthchecks ping, the webhook and the command. Returns the warnings
    /// of what failed.
    pub async fn ended(&self, alerts: &Alerts, job: &JobRow) -> Vec<LogLine> {
        let mut log = Vec::new();
        let summary = Summary {
            service: "airback",
            job,
            duration_secs: job.duration_secs(),
        };
        let json = serde_json::to_string(&summary).unwrap_or_default();
        if let Some(url) = &alerts.healthchecks {
            let base = url.trim_end_matches('/');
            let result = if job.outcome == Outcome::Ok {
                self.post(base, Body::Empty).await
            } else {
                self.post(&format!("{base}/fail"), Body::Text(failure_text(job)))
                    .await
            };
            if let Err(e) = result {
                log.push(LogLine::new(
                    "warning",
                    format!("healthchecks ping failed: {e}"),
                ));
            }
        }
        if let Some(url) = &alerts.webhook
            && let Err(e) = self.post(url, Body::Json(json.clone())).await
        {
            log.push(LogLine::new("warning", format!("webhook failed: {e}")));
        }
        if let Some(command) = &alerts.command
            && let Err(e) = run_command(command, job, &json).await
        {
            log.push(LogLine::new(
                "warning",
                format!("alert command failed: {e}"),
            ));
        }
        log
    }

    async fn post(&self, url: &str, body: Body) -> Result<(), String> {
        let shown = crate::backend::redact_location(url);
        let request = self.http.post(url);
        let request = match body {
            Body::Empty => request,
            Body::Text(text) => request
                .header("content-type", "text/plain; charset=utf-8")
                .body(text),
            Body::Json(json) => request
                .header("content-type", "application/json")
                .body(json),
        };
        let answer = request
            .send()
            .await
            .map_err(|e| format!("{shown}: {}", crate::backup::without_urls(&e.to_string())))?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(format!("{shown} answered {}", answer.status()))
        }
    }
}

enum Body {
    Empty,
    Text(String),
    Json(String),
}

/// What a failure ping says: the outcome, the error or the missing items.
fn failure_text(job: &JobRow) -> String {
    let what = match &job.base {
        Some(base) => format!("{} of base {base}", job.kind.as_str()),
        None => job.kind.as_str().to_owned(),
    };
    format!(
        "{what}: {}: {}",
        job.outcome.as_str(),
        job.error.as_deref().unwrap_or("no details")
    )
}

/// Runs `command` through the shell with the job's summary in the environment; an exit code
/// other than 0 is an error.
async fn run_command(command: &str, job: &JobRow, json: &str) -> Result<(), String> {
    #[cfg(unix)]
    let mut cmd = {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(command);
        c
    };
    #[cfg(not(unix))]
    let mut cmd = {
        let mut c = tokio::process::Command::new("cmd");
        c.arg("/C").arg(command);
        c
    };
    for var in crate::secrets::SECRET_VARS {
        cmd.env_remove(var);
    }
    cmd.env("AIRBACK_JOB_ID", job.id.to_string())
        .env("AIRBACK_JOB_KIND", job.kind.as_str())
        .env("AIRBACK_JOB_BASE", job.base.as_deref().unwrap_or(""))
        .env("AIRBACK_JOB_OUTCOME", job.outcome.as_str())
        .env("AIRBACK_JOB_ERROR", job.error.as_deref().unwrap_or(""))
        .env(
            "AIRBACK_JOB_SNAPSHOT",
            job.snapshot.as_deref().unwrap_or(""),
        )
        .env("AIRBACK_JOB_RECORDS", job.figures.records.to_string())
        .env("AIRBACK_JOB_SUMMARY", json)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    let status = tokio::time::timeout(Duration::from_secs(300), cmd.status())
        .await
        .map_err(|_| format!("`{command}` ran for more than 5 minutes; it was stopped"))?
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{command}` ended with {status}"))
    }
}
