//! The HTTP endpoints of `airback serve` (axum), JSON for scripts and the web page:
//!
//! - `GET /metrics`: Prometheus text ([`crate::metrics::render`]) from the job history, the
//!   latest snapshots and the shared Airtable client's counters.
//! - `GET /api/session`: the CSRF token POSTs must send back in `X-CSRF-Token`.
//! - `GET /api/bases`: each configured base with its last and next run and its health.
//! - `GET /api/jobs?base=&limit=`: the job history, newest first; `GET /api/jobs/{id}`: one
//!   job with its log lines.
//! - `POST /api/bases/{base}/snapshot`: queues a snapshot now; 202 with the job's id.
//! - `POST /login` with `{"token": "..."}`: with an access token, sets a session cookie so a
//!   browser need not send the token with each request.
//! - The repository's views ([`super::browse`]): `GET /api/bases/{base}/snapshots`,
//!   `/api/snapshots/{id}`, `/api/snapshots/{id}/tables/{table}/records?q=&offset=&limit=`,
//!   `/api/records/{record}/history?base=`, `/api/diff?from=&to=` (`to=live` for the live
//!   base) and `/api/snapshots/{id}/export?format=zip|sqlite` (a download).
//! - Restores in place ([`super::inplace`]): `POST /api/snapshots/{id}/restore/plan` (a dry
//!   run: the changes it would make) and `POST /api/snapshots/{id}/restore` (a job).
//! - The web page ([`super::web`]): `/`, `/app.js`, `/app.css`, built into the binary; they
//!   hold no data, so they are served without the access token (the page then asks for it).
//!
//! Security: with an access token, every request but `/login` needs `Authorization: Bearer
//! <token>` or the session cookie (401 otherwise). Without one (loopback only), a request
//! whose `Host` is not a loopback name is refused (403), so a web page cannot reach the
//! service by rebinding its own domain name to 127.0.0.1. Every POST but `/login` needs the
//! per-process CSRF token (403 otherwise), which another site's page cannot read. Responses
//! never hold the Airtable token or the repository's password: they are built from the
//! history, the configuration's ids and names, and scrubbed error texts.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::Service;
use super::history::{JobKind, Outcome};
use crate::metrics::{BaseMetrics, Metrics, RunStatus};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "airback_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the handlers share.
pub(super) struct AppState {
    pub(super) service: Arc<Service>,
    auth: Option<secrecy::SecretString>,
    /// Random per process: the cookie value `/login` sets.
    session: String,
    /// Random per process: what POSTs send in `X-CSRF-Token`.
    csrf: String,
}

/// 32 random bytes in hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source");
    hex::encode(bytes)
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The router of the service: with `auth`, every request needs that access token.
pub fn router(service: Arc<Service>, auth: Option<secrecy::SecretString>) -> Router {
    let state = Arc::new(AppState {
        service,
        auth,
        session: random_token(),
        csrf: random_token(),
    });
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/session", get(session))
        .route("/api/bases", get(bases))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/bases/{base}/snapshot", post(snapshot_now))
        .route("/login", post(login))
        .route(
            "/api/bases/{base}/snapshots",
            get(super::browse::base_snapshots),
        )
        .route("/api/snapshots/{id}", get(super::browse::snapshot))
        .route(
            "/api/snapshots/{id}/tables/{table}/records",
            get(super::browse::records),
        )
        .route("/api/records/{record}/history", get(super::browse::history))
        .route("/api/diff", get(super::browse::diff))
        .route("/api/snapshots/{id}/export", get(super::browse::download))
        .route(
            "/api/snapshots/{id}/restore/plan",
            post(super::inplace::plan),
        )
        .route("/api/snapshots/{id}/restore", post(super::inplace::apply))
        .route("/", get(super::web::index))
        .route("/app.js", get(super::web::script))
        .route("/app.css", get(super::web::style))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), guard))
        .with_state(state)
}

/// `{"error": message}` with `status`.
pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

/// The cookie's value, if the request has it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether `Host` names a loopback address (`localhost`, `127.x.x.x`, `[::1]`, any port).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        // HTTP/1.0 without Host: only a local client would send it.
        return true;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a browser says the request comes from another site's page: `Sec-Fetch-Site` other
/// than `same-origin` or `none` (typed in the address bar), or an `Origin` whose host is not
/// the request's `Host`. Scripts (curl, Prometheus) send neither and pass.
fn cross_site(headers: &HeaderMap) -> bool {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return true;
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_none_or(|(_, rest)| !rest.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// Authentication, the Host check, CSRF on POSTs, and headers that keep browsers from caching
/// or framing the answers.
async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let path = request.uri().path().to_owned();
    let is_login = path == "/login";
    let is_asset = request.method() == Method::GET && super::web::is_asset(&path);
    match &state.auth {
        Some(token) => {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|given| {
                    same(given.trim().as_bytes(), token.expose_secret().as_bytes())
                });
            let session = cookie(headers, SESSION_COOKIE)
                .is_some_and(|given| same(given.as_bytes(), state.session.as_bytes()));
            if !bearer && !session && !is_login && !is_asset {
                let mut answer = error(
                    StatusCode::UNAUTHORIZED,
                    "this service needs its access token: send `Authorization: Bearer <token>`, \
                     or POST {\"token\": \"...\"} to /login for a session cookie",
                );
                answer
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return answer;
            }
        }
        None if !loopback_host(headers) => {
            return error(
                StatusCode::FORBIDDEN,
                "this service listens on loopback without an access token and answers only \
                 requests addressed to localhost or 127.0.0.1",
            );
        }
        None => {}
    }
    // Another site's page may send requests here (an image, a form, a no-cors fetch) even if
    // it cannot read the answers; browsers say where a request comes from, so such requests
    // are refused before they cost anything (an export, a live diff).
    if !is_asset && cross_site(headers) {
        return error(
            StatusCode::FORBIDDEN,
            "a request from another site's page is refused; open this service's own page",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD && !is_login {
        let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !given.is_some_and(|g| same(g.as_bytes(), state.csrf.as_bytes())) {
            return error(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: send the `csrf_token` of GET /api/session in the \
                 X-CSRF-Token header",
            );
        }
    }
    let mut answer = next.run(request).await;
    let h = answer.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    answer
}

async fn session(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({
        "csrf_token": state.csrf,
        "version": env!("CARGO_PKG_VERSION"),
        "auth": state.auth.is_some(),
    }))
    .into_response()
}

/// `POST /login`: `{"token": "..."}` (or a form `token=...`); sets the session cookie.
async fn login(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let Some(token) = &state.auth else {
        return Json(json!({"csrf_token": state.csrf})).into_response();
    };
    #[derive(Deserialize)]
    struct Login {
        token: String,
    }
    let given = serde_json::from_slice::<Login>(&body)
        .map(|l| l.token)
        .ok()
        .or_else(|| {
            let text = std::str::from_utf8(&body).ok()?;
            text.split('&')
                .find_map(|pair| pair.strip_prefix("token="))
                .map(str::to_owned)
        });
    if !given.is_some_and(|g| same(g.trim().as_bytes(), token.expose_secret().as_bytes())) {
        return error(StatusCode::UNAUTHORIZED, "wrong access token");
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        state.session
    );
    let mut answer = Json(json!({"csrf_token": state.csrf})).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        answer.headers_mut().insert(header::SET_COOKIE, value);
    }
    answer
}

pub(super) fn internal(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        crate::secrets::scrub(&e.to_string()).into_owned(),
    )
}

async fn bases(State(state): State<Arc<AppState>>) -> Response {
    let service = &state.service;
    let history = service.scheduler.history();
    let latest = service.runner.latest();
    let mut out = Vec::new();
    for base in &service.config.bases {
        let snapshot = latest.get(&base.id);
        let (last, last_ok) = match history.last_ended(JobKind::Snapshot, Some(&base.id)) {
            Ok(found) => found,
            Err(e) => return internal(e),
        };
        let spec = service
            .specs
            .iter()
            .find(|s| s.kind == JobKind::Snapshot && s.base.as_deref() == Some(&base.id));
        let next = spec.and_then(|s| service.scheduler.next_run(s));
        let health = last.as_ref().map_or("never", |j| j.outcome.as_str());
        out.push(json!({
            "id": base.id,
            "name": base.name,
            "schedule": spec.map(|s| s.schedule.text()),
            "time_zone": service.config.zone_for(Some(base)),
            "next_run": next.map(|t| t.to_string()),
            "last_run": last,
            "last_success": last_ok.and_then(|j| j.ended).map(|t| t.to_string()),
            "health": health,
            "running_job": service.scheduler.running(Some(&base.id)),
            "latest_snapshot": snapshot.map(|s| json!({
                "id": s.id,
                "time": s.time,
                "base_name": s.base_name,
                "records": s.records.values().sum::<u64>(),
                "attachments": s.attachments,
            })),
        }));
    }
    Json(json!({"bases": out})).into_response()
}

#[derive(Deserialize)]
struct JobsQuery {
    base: Option<String>,
    limit: Option<usize>,
}

async fn jobs(State(state): State<Arc<AppState>>, Query(q): Query<JobsQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    match state
        .service
        .scheduler
        .history()
        .list(q.base.as_deref(), limit)
    {
        Ok(jobs) => Json(json!({"jobs": jobs})).into_response(),
        Err(e) => internal(e),
    }
}

async fn job(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::NOT_FOUND, format!("no job {id}"));
    };
    match state.service.scheduler.history().get(id) {
        Ok(Some(job)) => Json(job).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => internal(e),
    }
}

async fn snapshot_now(State(state): State<Arc<AppState>>, Path(base): Path<String>) -> Response {
    if state.service.config.base(&base).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("base {base} is not in the configuration file"),
        );
    }
    queued(
        state
            .service
            .scheduler
            .enqueue(JobKind::Snapshot, Some(&base), "manual"),
    )
}

/// The answer to a POST that queued a job: 202 with its id.
pub(super) fn queued(result: Result<Option<i64>, super::history::HistoryError>) -> Response {
    match result {
        Ok(Some(id)) => (
            StatusCode::ACCEPTED,
            Json(json!({"job_id": id, "job": format!("/api/jobs/{id}")})),
        )
            .into_response(),
        Ok(None) => error(StatusCode::SERVICE_UNAVAILABLE, "the service is stopping"),
        Err(e) => internal(e),
    }
}

/// The figures of `/metrics`.
fn gather(service: &Service) -> Metrics {
    let history = service.scheduler.history();
    let latest = service.runner.latest();
    let mut bases = Vec::new();
    for base in &service.config.bases {
        let (last, last_ok) = history
            .last_ended(JobKind::Snapshot, Some(&base.id))
            .unwrap_or((None, None));
        let snapshot = latest.get(&base.id);
        bases.push(BaseMetrics {
            base: base.id.clone(),
            last_success: last_ok
                .and_then(|j| j.ended)
                .map(|t| t.as_millisecond() as f64 / 1000.0),
            last_duration_seconds: last.as_ref().and_then(|j| j.duration_secs()),
            last_status: last.as_ref().map(|j| match j.outcome {
                Outcome::Ok => RunStatus::Ok,
                Outcome::Partial => RunStatus::Partial,
                _ => RunStatus::Failed,
            }),
            records: snapshot.map(|s| s.records.clone()).unwrap_or_default(),
            attachments: snapshot.map(|s| s.attachments),
        });
    }
    let counters = service.runner.client().counters();
    let mut api_requests: BTreeMap<String, u64> = BTreeMap::new();
    let mut answered_otherwise = 0;
    for (status, n) in &counters.errors_by_status {
        api_requests.insert(status.to_string(), *n);
        answered_otherwise += n;
    }
    api_requests.insert(
        "ok".into(),
        counters
            .requests
            .saturating_sub(answered_otherwise)
            .saturating_sub(counters.transport_errors),
    );
    Metrics {
        bases,
        repository_bytes: service.runner.repository_bytes(),
        api_requests,
        rate_limited: counters.rate_limited,
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = crate::metrics::render(&gather(&state.service));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
