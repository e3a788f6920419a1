//! The HTTP edge: one axum fallback handler that routes by method and path segments, applies
//! authentication, scopes, the billing switch, rate limits and faults in that order, calls the
//! synchronous handler for the route, and turns the result into a response.
//!
//! Routing is done by hand rather than with axum's router so that unknown routes, table names
//! with encoded slashes and the exact error bodies behave like the real service. State locks
//! are taken inside the synchronous handlers only; nothing holds a lock across an `.await`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::api_error::ApiError;
use super::comments;
use super::content::{self, CONTENT_PREFIX, Scratch, UrlCheck, UrlSigner};
use super::counters::{Counters, Route};
use super::faults::FaultInjector;
use super::listing::{self, Iterators, ListParams};
use super::ratelimit::RateLimiter;
use super::render::{self, Reader, RenderOptions, UrlContext};
use super::schema;
use super::state::{Attachment, AttachmentState, Cell, ContentEntry, World};
use super::time::now_ms;
use super::write::{self, PendingFetch, UpdateInput, WriteContext};

/// Largest decoded file `uploadAttachment` accepts (5 MB, decimal).
pub const UPLOAD_LIMIT_BYTES: usize = 5_000_000;
/// Longest URL the API accepts.
const MAX_URL_CHARS: usize = 16_000;
/// Largest request body read (an upload's base64 plus JSON fits comfortably).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest file fetched for a `{url}` attachment.
const MAX_FETCH_BYTES: u64 = 1 << 30;

/// Token scopes, as Airtable names them.
pub(crate) const SCOPES: &[&str] = &[
    "data.records:read",
    "data.records:write",
    "data.recordComments:read",
    "data.recordComments:write",
    "schema.bases:read",
    "schema.bases:write",
];

/// A token and what it may do.
#[derive(Debug, Clone)]
pub(crate) struct TokenGrant {
    pub(crate) token: String,
    pub(crate) scopes: Vec<String>,
    /// `None` means every base.
    pub(crate) bases: Option<Vec<String>>,
}

impl TokenGrant {
    fn may_use_base(&self, base_id: &str) -> bool {
        self.bases
            .as_ref()
            .is_none_or(|bases| bases.iter().any(|granted| granted == base_id))
    }
}

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub(crate) struct ServerSettings {
    pub(crate) url_ttl: Duration,
    pub(crate) iterator_ttl: Duration,
    pub(crate) retry_after_header: bool,
    pub(crate) url_fetch_delay: Duration,
}

/// State shared by every request.
pub(crate) struct Shared {
    pub(crate) world: RwLock<World>,
    pub(crate) iterators: Mutex<Iterators>,
    pub(crate) limiter: Mutex<RateLimiter>,
    pub(crate) faults: Mutex<FaultInjector>,
    pub(crate) counters: Counters,
    pub(crate) signer: UrlSigner,
    pub(crate) scratch: Scratch,
    pub(crate) tokens: RwLock<Vec<TokenGrant>>,
    pub(crate) settings: ServerSettings,
    pub(crate) base_url: String,
    pub(crate) billing_exceeded: AtomicBool,
    pub(crate) http: reqwest::Client,
    pub(crate) pending_fetches: AtomicUsize,
    pub(crate) fetch_done: tokio::sync::Notify,
}

/// Locks a mutex, ignoring poisoning (a panicking test must not wedge the fake).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// A reader over one base with URLs valid for the configured TTL from now.
    pub(crate) fn reader<'a>(&'a self, world: &'a World, base_index: usize) -> Reader<'a> {
        Reader {
            world,
            base: &world.bases[base_index],
            urls: UrlContext {
                signer: &self.signer,
                base_url: &self.base_url,
                expires_ms: now_ms() + self.settings.url_ttl.as_millis() as i64,
            },
        }
    }
}

/// A matched API route with its path parameters (percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Whoami,
    ListBases,
    CreateBase,
    GetSchema {
        base: String,
    },
    CreateTable {
        base: String,
    },
    UpdateTable {
        base: String,
        table: String,
    },
    CreateField {
        base: String,
        table: String,
    },
    UpdateField {
        base: String,
        table: String,
        field: String,
    },
    ListRecords {
        base: String,
        table: String,
    },
    ListRecordsPost {
        base: String,
        table: String,
    },
    CreateRecords {
        base: String,
        table: String,
    },
    UpdateRecords {
        base: String,
        table: String,
        replace: bool,
    },
    DeleteRecords {
        base: String,
        table: String,
    },
    GetRecord {
        base: String,
        table: String,
        record: String,
    },
    UpdateRecord {
        base: String,
        table: String,
        record: String,
        replace: bool,
    },
    DeleteRecord {
        base: String,
        table: String,
        record: String,
    },
    ListComments {
        base: String,
        table: String,
        record: String,
    },
    CreateComment {
        base: String,
        table: String,
        record: String,
    },
    UploadAttachment {
        base: String,
        record: String,
        field: String,
    },
}

impl Endpoint {
    fn route(&self) -> Route {
        match self {
            Endpoint::Whoami => Route::Whoami,
            Endpoint::ListBases => Route::ListBases,
            Endpoint::CreateBase => Route::CreateBase,
            Endpoint::GetSchema { .. } => Route::GetSchema,
            Endpoint::CreateTable { .. } => Route::CreateTable,
            Endpoint::UpdateTable { .. } => Route::UpdateTable,
            Endpoint::CreateField { .. } => Route::CreateField,
            Endpoint::UpdateField { .. } => Route::UpdateField,
            Endpoint::ListRecords { .. } => Route::ListRecords,
            Endpoint::ListRecordsPost { .. } => Route::ListRecordsPost,
            Endpoint::CreateRecords { .. } => Route::CreateRecords,
            Endpoint::UpdateRecords { .. } | Endpoint::UpdateRecord { .. } => Route::UpdateRecords,
            Endpoint::DeleteRecords { .. } | Endpoint::DeleteRecord { .. } => Route::DeleteRecords,
            Endpoint::GetRecord { .. } => Route::GetRecord,
            Endpoint::ListComments { .. } => Route::ListComments,
            Endpoint::CreateComment { .. } => Route::CreateComment,
            Endpoint::UploadAttachment { .. } => Route::UploadAttachment,
        }
    }

    fn base(&self) -> Option<&str> {
        match self {
            Endpoint::Whoami | Endpoint::ListBases | Endpoint::CreateBase => None,
            Endpoint::GetSchema { base }
            | Endpoint::CreateTable { base }
            | Endpoint::UpdateTable { base, .. }
            | Endpoint::CreateField { base, .. }
            | Endpoint::UpdateField { base, .. }
            | Endpoint::ListRecords { base, .. }
            | Endpoint::ListRecordsPost { base, .. }
            | Endpoint::CreateRecords { base, .. }
            | Endpoint::UpdateRecords { base, .. }
            | Endpoint::DeleteRecords { base, .. }
            | Endpoint::GetRecord { base, .. }
            | Endpoint::UpdateRecord { base, .. }
            | Endpoint::DeleteRecord { base, .. }
            | Endpoint::ListComments { base, .. }
            | Endpoint::CreateComment { base, .. }
            | Endpoint::UploadAttachment { base, .. } => Some(base),
        }
    }

    fn is_meta(&self) -> bool {
        matches!(
            self,
            Endpoint::Whoami
                | Endpoint::ListBases
                | Endpoint::CreateBase
                | Endpoint::GetSchema { .. }
                | Endpoint::CreateTable { .. }
                | Endpoint::UpdateTable { .. }
                | Endpoint::CreateField { .. }
                | Endpoint::UpdateField { .. }
        )
    }

    fn scope(&self) -> Option<&'static str> {
        match self {
            Endpoint::Whoami => None,
            Endpoint::ListBases | Endpoint::GetSchema { .. } => Some("schema.bases:read"),
            Endpoint::CreateBase
            | Endpoint::CreateTable { .. }
            | Endpoint::UpdateTable { .. }
            | Endpoint::CreateField { .. }
            | Endpoint::UpdateField { .. } => Some("schema.bases:write"),
            Endpoint::ListRecords { .. }
            | Endpoint::ListRecordsPost { .. }
            | Endpoint::GetRecord { .. } => Some("data.records:read"),
            Endpoint::ListComments { .. } => Some("data.recordComments:read"),
            Endpoint::CreateComment { .. } => Some("data.recordComments:write"),
            Endpoint::CreateRecords { .. }
            | Endpoint::UpdateRecords { .. }
            | Endpoint::UpdateRecord { .. }
            | Endpoint::DeleteRecords { .. }
            | Endpoint::DeleteRecord { .. }
            | Endpoint::UploadAttachment { .. } => Some("data.records:write"),
        }
    }
}

fn percent_decode(segment: &str, plus_is_space: bool) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' if at + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[at + 1..at + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        at += 3;
                    }
                    None => {
                        out.push(b'%');
                        at += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                at += 1;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query pairs, decoded, in order.
pub(crate) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
        .collect()
}

fn match_endpoint(method: &Method, path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/v0/")?;
    let segments: Vec<String> = rest
        .split('/')
        .map(|segment| percent_decode(segment, false))
        .collect();
    if segments.iter().any(String::is_empty) {
        return None;
    }
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let owned = |index: usize| s[index].to_owned();
    let endpoint = match (method.as_str(), s.as_slice()) {
        ("GET", ["meta", "whoami"]) => Endpoint::Whoami,
        ("GET", ["meta", "bases"]) => Endpoint::ListBases,
        ("POST", ["meta", "bases"]) => Endpoint::CreateBase,
        ("GET", ["meta", "bases", _, "tables"]) => Endpoint::GetSchema { base: owned(2) },
        ("POST", ["meta", "bases", _, "tables"]) => Endpoint::CreateTable { base: owned(2) },
        ("PATCH", ["meta", "bases", _, "tables", _]) => Endpoint::UpdateTable {
            base: owned(2),
            table: owned(4),
        },
        ("POST", ["meta", "bases", _, "tables", _, "fields"]) => Endpoint::CreateField {
            base: owned(2),
            table: owned(4),
        },
        ("PATCH", ["meta", "bases", _, "tables", _, "fields", _]) => Endpoint::UpdateField {
            base: owned(2),
            table: owned(4),
            field: owned(6),
        },
        (_, ["meta", ..]) => return None,
        ("GET", [_, _]) => Endpoint::ListRecords {
            base: owned(0),
            table: owned(1),
        },
        ("POST", [_, _]) => Endpoint::CreateRecords {
            base: owned(0),
            table: owned(1),
        },
        ("PATCH" | "PUT", [_, _]) => Endpoint::UpdateRecords {
            base: owned(0),
            table: owned(1),
            replace: method == Method::PUT,
        },
        ("DELETE", [_, _]) => Endpoint::DeleteRecords {
            base: owned(0),
            table: owned(1),
        },
        ("POST", [_, _, "listRecords"]) => Endpoint::ListRecordsPost {
            base: owned(0),
            table: owned(1),
        },
        ("GET", [_, _, _]) => Endpoint::GetRecord {
            base: owned(0),
            table: owned(1),
            record: owned(2),
        },
        ("PATCH" | "PUT", [_, _, _]) => Endpoint::UpdateRecord {
            base: owned(0),
            table: owned(1),
            record: owned(2),
            replace: method == Method::PUT,
        },
        ("DELETE", [_, _, _]) => Endpoint::DeleteRecord {
            base: owned(0),
            table: owned(1),
            record: owned(2),
        },
        ("GET", [_, _, _, "comments"]) => Endpoint::ListComments {
            base: owned(0),
            table: owned(1),
            record: owned(2),
        },
        ("POST", [_, _, _, "comments"]) => Endpoint::CreateComment {
            base: owned(0),
            table: owned(1),
            record: owned(2),
        },
        ("POST", [_, _, _, "uploadAttachment"]) => Endpoint::UploadAttachment {
            base: owned(0),
            record: owned(1),
            field: owned(2),
        },
        _ => return None,
    };
    Some(endpoint)
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn error_response(error: &ApiError) -> Response {
    json_response(error.status, &error.body)
}

fn connection_reset() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "fault: connection reset",
    )
}

/// The response the client sees when the connection is cut: half the body, then an aborted
/// stream, which makes hyper drop the connection mid-message.
fn cut_off(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let cut = futures::stream::once(async move {
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        Ok::<Bytes, std::io::Error>(bytes.slice(..bytes.len() / 2))
    })
    .chain(futures::stream::once(async { Err(connection_reset()) }));
    Response::from_parts(parts, Body::from_stream(cut))
}

/// Every token belongs to the one fake user, so the per-token limit has one key.
const TOKEN_OWNER: &str = "owner";

/// Authentication, URL length, scope and base access, in that order.
fn authorize(
    shared: &Shared,
    endpoint: &Endpoint,
    authorization: Option<&str>,
    url_length: usize,
) -> Result<TokenGrant, ApiError> {
    let token = authorization
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    let grant = token.and_then(|token| {
        read(&shared.tokens)
            .iter()
            .find(|grant| grant.token == token)
            .cloned()
    });
    let Some(grant) = grant else {
        shared
            .counters
            .update(|counters| counters.unauthorized += 1);
        return Err(ApiError::unauthorized());
    };
    if url_length > MAX_URL_CHARS {
        return Err(ApiError::typed(
            StatusCode::URI_TOO_LONG,
            "INVALID_REQUEST_URL_TOO_LONG",
            format!(
                "URLs are limited to {MAX_URL_CHARS} characters; use POST listRecords for long parameters"
            ),
        ));
    }
    if let Some(scope) = endpoint.scope()
        && !grant.scopes.iter().any(|granted| granted == scope)
    {
        return Err(ApiError::model_not_found_or_forbidden());
    }
    if let Some(base_id) = endpoint.base() {
        let exists = read(&shared.world).base_index(base_id).is_some();
        if !exists || !grant.may_use_base(base_id) {
            return Err(if endpoint.is_meta() {
                ApiError::meta_not_found()
            } else {
                ApiError::model_not_found_or_forbidden()
            });
        }
    }
    Ok(grant)
}

/// The billing switch, then the rate limits: the refusal, if the request may not proceed.
fn throttle(shared: &Shared, endpoint: &Endpoint) -> Option<Response> {
    if !endpoint.is_meta() && shared.billing_exceeded.load(Ordering::SeqCst) {
        shared
            .counters
            .update(|counters| counters.billing_limited += 1);
        return Some(error_response(&ApiError::billing_limited()));
    }
    let limited = lock(&shared.limiter).check(endpoint.base(), TOKEN_OWNER, Instant::now());
    let Err(limited) = limited else {
        return None;
    };
    shared
        .counters
        .update(|counters| counters.rate_limited += 1);
    let mut response = error_response(&ApiError::rate_limited());
    if shared.settings.retry_after_header {
        let seconds = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    Some(response)
}

/// The 5xx answer for an injected fault, counted.
fn injected_status(shared: &Shared, status: u16) -> ApiError {
    shared.counters.update(|counters| match status {
        503 => counters.faults_503 += 1,
        502 => counters.faults_502 += 1,
        _ => counters.faults_500 += 1,
    });
    match status {
        503 => ApiError::retriable(),
        502 => ApiError::bad_gateway(),
        _ => ApiError::typed(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SERVER_ERROR",
            "Internal server error",
        ),
    }
}

/// The single entry point for every request.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix(CONTENT_PREFIX) {
        return download(&shared, rest).await;
    }
    let Some(endpoint) = match_endpoint(request.method(), &path) else {
        shared.counters.request(Route::Unknown, None);
        return error_response(&ApiError::route_not_found());
    };
    shared.counters.request(endpoint.route(), endpoint.base());
    let query = request.uri().query().map(str::to_owned);
    let url_length = shared.base_url.len() + request.uri().to_string().len();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let grant = match authorize(&shared, &endpoint, authorization, url_length) {
        Ok(grant) => grant,
        Err(error) => return error_response(&error),
    };
    if let Some(response) = throttle(&shared, &endpoint) {
        return response;
    }
    let decision = lock(&shared.faults).decide(false);
    if let Some(delay) = decision.delay {
        shared.counters.update(|counters| counters.slow += 1);
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = decision.status {
        return error_response(&injected_status(&shared, status));
    }

    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => return error_response(&ApiError::too_large("The request body is too large")),
    };
    let query_pairs = parse_query(query.as_deref());
    let outcome = dispatch(&shared, &grant, &endpoint, &query_pairs, &body);
    let response = match outcome {
        Ok((value, fetches)) => {
            for fetch in fetches {
                shared.pending_fetches.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(fetch_attachment_task(shared.clone(), fetch));
            }
            json_response(StatusCode::OK, &value)
        }
        Err(error) => {
            if error.error_type() == "LIST_RECORDS_ITERATOR_NOT_AVAILABLE" {
                shared
                    .counters
                    .update(|counters| counters.iterator_expired += 1);
            }
            error_response(&error)
        }
    };
    if decision.reset {
        shared.counters.update(|counters| counters.resets += 1);
        return cut_off(response);
    }
    response
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid_request("the request body is empty"));
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| ApiError::invalid_json())?;
    if !value.is_object() {
        return Err(ApiError::invalid_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

fn allow_keys(object: &Value, allowed: &[&str]) -> Result<(), ApiError> {
    if let Some(unknown) = object
        .as_object()
        .and_then(|object| object.keys().find(|key| !allowed.contains(&key.as_str())))
    {
        return Err(ApiError::invalid_request(format!(
            "unknown property \"{unknown}\""
        )));
    }
    Ok(())
}

fn optional_bool(object: &Value, key: &str) -> Result<bool, ApiError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(_) => Err(ApiError::invalid_request(format!(
            "{key} must be a boolean"
        ))),
    }
}

fn fields_object(value: Option<&Value>) -> Result<Map<String, Value>, ApiError> {
    match value {
        Some(Value::Object(fields)) => Ok(fields.clone()),
        _ => Err(ApiError::invalid_request(
            "each record needs a \"fields\" object",
        )),
    }
}

fn require_no_query(query: &[(String, String)]) -> Result<(), ApiError> {
    match query.first() {
        Some((key, _)) => Err(ApiError::invalid_request(format!(
            "unknown parameter {key}"
        ))),
        None => Ok(()),
    }
}

type Outcome = Result<(Value, Vec<PendingFetch>), ApiError>;

fn base_and_table(world: &World, base: &str, table: &str) -> Result<(usize, usize), ApiError> {
    let base_index = world
        .base_index(base)
        .ok_or_else(ApiError::model_not_found_or_forbidden)?;
    let table_index = world.bases[base_index]
        .table_index(table)
        .ok_or_else(|| ApiError::table_not_found(table))?;
    Ok((base_index, table_index))
}

fn dispatch(
    shared: &Shared,
    grant: &TokenGrant,
    endpoint: &Endpoint,
    query: &[(String, String)],
    body: &Bytes,
) -> Outcome {
    let no_fetches = |value: Value| Ok((value, Vec::new()));
    match endpoint {
        Endpoint::Whoami => {
            let world = read(&shared.world);
            let owner = &world.users[world.owner as usize];
            no_fetches(json!({"id": owner.id, "email": owner.email}))
        }
        Endpoint::ListBases => {
            for (key, _) in query {
                if key != "offset" {
                    return Err(ApiError::invalid_request(format!(
                        "unknown parameter {key}"
                    )));
                }
            }
            let world = read(&shared.world);
            let bases: Vec<Value> = world
                .bases
                .iter()
                .filter(|base| grant.may_use_base(&base.id))
                .map(|base| json!({"id": base.id, "name": base.name, "permissionLevel": "create"}))
                .collect();
            no_fetches(json!({"bases": bases}))
        }
        Endpoint::GetSchema { base } => {
            let include_visible = match query {
                [] => false,
                [(key, value)] if key == "include" || key == "include[]" => {
                    if value != "visibleFieldIds" {
                        return Err(ApiError::invalid_request(
                            "include only supports visibleFieldIds",
                        ));
                    }
                    true
                }
                [(key, _), ..] => {
                    return Err(ApiError::invalid_request(format!(
                        "unknown parameter {key}"
                    )));
                }
            };
            let world = read(&shared.world);
            let base_index = world
                .base_index(base)
                .ok_or_else(ApiError::meta_not_found)?;
            no_fetches(render::schema_json(
                &world.bases[base_index],
                include_visible,
            ))
        }
        Endpoint::CreateBase => {
            require_no_query(query)?;
            let spec = parse_body(body)?;
            let mut world = write(&shared.world);
            let base_index = schema::create_base(&mut world, &spec)?;
            let base = &world.bases[base_index];
            let mut value = render::schema_json(base, false);
            value["id"] = json!(base.id);
            no_fetches(value)
        }
        Endpoint::CreateTable { base } => {
            require_no_query(query)?;
            let spec = parse_body(body)?;
            let mut world = write(&shared.world);
            let base_index = world
                .base_index(base)
                .ok_or_else(ApiError::meta_not_found)?;
            let table_index = schema::create_table(&mut world, base_index, &spec)?;
            no_fetches(render::table_json(
                &world.bases[base_index].tables[table_index],
                false,
            ))
        }
        Endpoint::UpdateTable { base, table } => {
            require_no_query(query)?;
            let spec = parse_body(body)?;
            let mut world = write(&shared.world);
            let (base_index, table_index) = base_and_table(&world, base, table)?;
            schema::update_table(&mut world, base_index, table_index, &spec)?;
            no_fetches(render::table_json(
                &world.bases[base_index].tables[table_index],
                false,
            ))
        }
        Endpoint::CreateField { base, table } => {
            require_no_query(query)?;
            let spec = parse_body(body)?;
            let mut world = write(&shared.world);
            let base_index = world
                .base_index(base)
                .ok_or_else(ApiError::meta_not_found)?;
            let table_index = world.bases[base_index]
                .table_index_by_id(table)
                .ok_or_else(|| ApiError::table_not_found(table))?;
            let slot = schema::create_field(&mut world, base_index, table_index, &spec)?;
            no_fetches(render::field_json(
                &world.bases[base_index].tables[table_index].fields[slot],
            ))
        }
        Endpoint::UpdateField { base, table, field } => {
            require_no_query(query)?;
            let spec = parse_body(body)?;
            let mut world = write(&shared.world);
            let base_index = world
                .base_index(base)
                .ok_or_else(ApiError::meta_not_found)?;
            let table_index = world.bases[base_index]
                .table_index_by_id(table)
                .ok_or_else(|| ApiError::table_not_found(table))?;
            let slot = world.bases[base_index].tables[table_index]
                .field_slot(field)
                .ok_or_else(|| ApiError::field_not_found(field))?;
            schema::update_field(&mut world, base_index, table_index, slot, &spec)?;
            no_fetches(render::field_json(
                &world.bases[base_index].tables[table_index].fields[slot],
            ))
        }
        Endpoint::ListRecords { base, table } => {
            let params = ListParams::from_query(query)?;
            list(shared, base, table, &params)
        }
        Endpoint::ListRecordsPost { base, table } => {
            let body = if body.is_empty() {
                json!({})
            } else {
                parse_body(body)?
            };
            let params = ListParams::from_body(&body, query)?;
            list(shared, base, table, &params)
        }
        Endpoint::GetRecord {
            base,
            table,
            record,
        } => {
            if let Some((key, _)) = query.iter().find(|(key, _)| {
                !matches!(
                    key.as_str(),
                    "cellFormat" | "returnFieldsByFieldId" | "timeZone" | "userLocale"
                )
            }) {
                return Err(ApiError::invalid_request(format!(
                    "parameter {key} is not supported when getting a record"
                )));
            }
            let params = ListParams::from_query(query)?;
            let world = read(&shared.world);
            let (base_index, table_index) = base_and_table(&world, base, table)?;
            let reader = shared.reader(&world, base_index);
            let options = listing::render_options(&reader, table_index, &params)?;
            let record = reader.base.tables[table_index]
                .record(record)
                .ok_or_else(ApiError::record_not_found)?;
            no_fetches(reader.record_json(table_index, record, &options))
        }
        Endpoint::ListComments {
            base,
            table,
            record,
        } => {
            let world = read(&shared.world);
            let (base_index, table_index) = base_and_table(&world, base, table)?;
            let table = &world.bases[base_index].tables[table_index];
            table
                .record(record)
                .ok_or_else(ApiError::record_not_found)?;
            let comments = table.comments.get(record).map_or(&[][..], Vec::as_slice);
            no_fetches(comments::list_page(&world, comments, query)?)
        }
        Endpoint::CreateComment {
            base,
            table,
            record,
        } => {
            require_no_query(query)?;
            let body = parse_body(body)?;
            let mut world = write(&shared.world);
            let (base_index, table_index) = base_and_table(&world, base, table)?;
            let target = &world.bases[base_index].tables[table_index];
            target
                .record(record)
                .ok_or_else(ApiError::record_not_found)?;
            let existing = target.comments.get(record).map_or(&[][..], Vec::as_slice);
            let new = comments::parse_create(&body, existing)?;
            let author = world.owner;
            let comment = comments::add(
                &mut world,
                base_index,
                table_index,
                record,
                author,
                new,
                now_ms(),
            );
            shared
                .counters
                .update(|counters| counters.comments_created += 1);
            no_fetches(comments::comment_json(&world, &comment))
        }
        Endpoint::CreateRecords { base, table } => {
            require_no_query(query)?;
            create(shared, base, table, &parse_body(body)?)
        }
        Endpoint::UpdateRecords {
            base,
            table,
            replace,
        } => {
            require_no_query(query)?;
            update_batch(shared, base, table, *replace, &parse_body(body)?)
        }
        Endpoint::UpdateRecord {
            base,
            table,
            record,
            replace,
        } => {
            require_no_query(query)?;
            update_single(shared, base, table, record, *replace, &parse_body(body)?)
        }
        Endpoint::DeleteRecords { base, table } => {
            let mut ids = Vec::new();
            for (key, value) in query {
                if key == "records[]"
                    || key == "records"
                    || (key.starts_with("records[") && key.ends_with(']'))
                {
                    ids.push(value.clone());
                } else {
                    return Err(ApiError::invalid_request(format!(
                        "unknown parameter {key}"
                    )));
                }
            }
            if ids.is_empty() {
                return Err(ApiError::invalid_request("records[] is required"));
            }
            let mut world = write(&shared.world);
            let (base_index, table_index) = base_and_table(&world, base, table)?;
            write::delete_records(&mut world, base_index, table_index, &ids)?;
            shared.counters.written(&ids);
            let deleted: Vec<Value> = ids
                .iter()
                .map(|id| json!({"id": id, "deleted": true}))
                .collect();
            no_fetches(json!({"records": deleted}))
        }
        Endpoint::DeleteRecord {
            base,
            table,
            record,
        } => {
            require_no_query(query)?;
            let mut world = write(&shared.world);
            let (base_index, table_index) = base_and_table(&world, base, table)?;
            write::delete_records(
                &mut world,
                base_index,
                table_index,
                std::slice::from_ref(record),
            )?;
            shared.counters.written(std::slice::from_ref(record));
            no_fetches(json!({"id": record, "deleted": true}))
        }
        Endpoint::UploadAttachment {
            base,
            record,
            field,
        } => {
            require_no_query(query)?;
            upload(shared, base, record, field, &parse_body(body)?)
        }
    }
}

fn list(shared: &Shared, base: &str, table: &str, params: &ListParams) -> Outcome {
    let world = read(&shared.world);
    let (base_index, table_index) = base_and_table(&world, base, table)?;
    let reader = shared.reader(&world, base_index);
    if params.offset.is_some() && lock(&shared.faults).offset_request_expires_iterators() {
        lock(&shared.iterators).expire_all();
    }
    let page = listing::list_page(
        &reader,
        table_index,
        params,
        &shared.iterators,
        shared.settings.iterator_ttl,
        Instant::now(),
    )?;
    Ok((page, Vec::new()))
}

fn write_context(world: &World, typecast: bool) -> WriteContext {
    WriteContext {
        typecast,
        now_ms: now_ms(),
        user: world.owner,
    }
}

fn render_written(
    shared: &Shared,
    world: &World,
    base_index: usize,
    table_index: usize,
    ids: &[String],
    by_field_id: bool,
) -> Vec<Value> {
    let reader = shared.reader(world, base_index);
    let options = RenderOptions {
        by_field_id,
        ..RenderOptions::default()
    };
    let table = &reader.base.tables[table_index];
    ids.iter()
        .filter_map(|id| table.record(id))
        .map(|record| reader.record_json(table_index, record, &options))
        .collect()
}

fn create(shared: &Shared, base: &str, table: &str, body: &Value) -> Outcome {
    allow_keys(
        body,
        &["records", "fields", "typecast", "returnFieldsByFieldId"],
    )?;
    let typecast = optional_bool(body, "typecast")?;
    let by_field_id = optional_bool(body, "returnFieldsByFieldId")?;
    let single = body.get("records").is_none();
    let inputs: Vec<Map<String, Value>> = if single {
        vec![fields_object(body.get("fields"))?]
    } else {
        let records = body["records"]
            .as_array()
            .ok_or_else(|| ApiError::invalid_request("records must be an array"))?;
        if records.len() > write::MAX_RECORDS_PER_REQUEST {
            return Err(ApiError::unprocessable(
                "INVALID_RECORDS",
                format!(
                    "A maximum of {} records can be created per request but you have provided {}.",
                    write::MAX_RECORDS_PER_REQUEST,
                    records.len()
                ),
            ));
        }
        records
            .iter()
            .map(|record| {
                allow_keys(record, &["fields"])?;
                fields_object(record.get("fields"))
            })
            .collect::<Result<_, _>>()?
    };
    let mut world = write(&shared.world);
    let (base_index, table_index) = base_and_table(&world, base, table)?;
    let context = write_context(&world, typecast);
    let outcome = write::create_records(&mut world, base_index, table_index, &inputs, context)?;
    shared.counters.written(&outcome.record_ids);
    let records = render_written(
        shared,
        &world,
        base_index,
        table_index,
        &outcome.record_ids,
        by_field_id,
    );
    let value = if single {
        records.into_iter().next().unwrap_or(Value::Null)
    } else {
        json!({"records": records})
    };
    Ok((value, outcome.fetches))
}

fn update_batch(shared: &Shared, base: &str, table: &str, replace: bool, body: &Value) -> Outcome {
    allow_keys(
        body,
        &[
            "records",
            "typecast",
            "returnFieldsByFieldId",
            "performUpsert",
        ],
    )?;
    let typecast = optional_bool(body, "typecast")?;
    let by_field_id = optional_bool(body, "returnFieldsByFieldId")?;
    let merge_on = match body.get("performUpsert") {
        None | Some(Value::Null) => None,
        Some(upsert) => {
            allow_keys(upsert, &["fieldsToMergeOn"])?;
            Some(
                upsert
                    .get("fieldsToMergeOn")
                    .and_then(Value::as_array)
                    .cloned()
                    .ok_or_else(|| {
                        ApiError::invalid_request("performUpsert.fieldsToMergeOn must be an array")
                    })?,
            )
        }
    };
    let records = body
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid_request("records must be an array"))?;
    if records.len() > write::MAX_RECORDS_PER_REQUEST {
        return Err(ApiError::unprocessable(
            "INVALID_RECORDS",
            format!(
                "A maximum of {} records can be updated per request but you have provided {}.",
                write::MAX_RECORDS_PER_REQUEST,
                records.len()
            ),
        ));
    }
    let inputs = records
        .iter()
        .map(|record| {
            allow_keys(record, &["id", "fields"])?;
            let id = match record.get("id") {
                None | Some(Value::Null) => None,
                Some(Value::String(id)) => Some(id.clone()),
                Some(_) => return Err(ApiError::invalid_request("record ids must be strings")),
            };
            Ok(UpdateInput {
                id,
                fields: fields_object(record.get("fields"))?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let mut world = write(&shared.world);
    let (base_index, table_index) = base_and_table(&world, base, table)?;
    let context = write_context(&world, typecast);
    let outcome = write::update_records(
        &mut world,
        base_index,
        table_index,
        &inputs,
        replace,
        merge_on.as_deref(),
        context,
    )?;
    shared.counters.written(&outcome.record_ids);
    let records = render_written(
        shared,
        &world,
        base_index,
        table_index,
        &outcome.record_ids,
        by_field_id,
    );
    let mut value = json!({"records": records});
    if merge_on.is_some() {
        value["createdRecords"] = json!(outcome.created);
        value["updatedRecords"] = json!(outcome.updated);
    }
    Ok((value, outcome.fetches))
}

fn update_single(
    shared: &Shared,
    base: &str,
    table: &str,
    record: &str,
    replace: bool,
    body: &Value,
) -> Outcome {
    allow_keys(body, &["fields", "typecast", "returnFieldsByFieldId"])?;
    let typecast = optional_bool(body, "typecast")?;
    let by_field_id = optional_bool(body, "returnFieldsByFieldId")?;
    let input = UpdateInput {
        id: Some(record.to_owned()),
        fields: fields_object(body.get("fields"))?,
    };
    let mut world = write(&shared.world);
    let (base_index, table_index) = base_and_table(&world, base, table)?;
    let context = write_context(&world, typecast);
    let outcome = write::update_records(
        &mut world,
        base_index,
        table_index,
        &[input],
        replace,
        None,
        context,
    )?;
    shared.counters.written(&outcome.record_ids);
    let records = render_written(
        shared,
        &world,
        base_index,
        table_index,
        &outcome.record_ids,
        by_field_id,
    );
    Ok((
        records.into_iter().next().unwrap_or(Value::Null),
        outcome.fetches,
    ))
}

fn upload(shared: &Shared, base: &str, record: &str, field: &str, body: &Value) -> Outcome {
    allow_keys(body, &["contentType", "file", "filename"])?;
    let text = |key: &str| {
        body.get(key).and_then(Value::as_str).ok_or_else(|| {
            ApiError::invalid_request(format!("{key} is required and must be a string"))
        })
    };
    let content_type = text("contentType")?.to_owned();
    let filename = text("filename")?.to_owned();
    let encoded = text("file")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| ApiError::invalid_request("file must be base64-encoded"))?;
    if bytes.len() > UPLOAD_LIMIT_BYTES {
        return Err(ApiError::too_large(format!(
            "uploadAttachment accepts files of at most {UPLOAD_LIMIT_BYTES} bytes; this one is {} bytes",
            bytes.len()
        )));
    }
    let dimensions = content::png_dimensions(&bytes);
    let size = bytes.len() as u64;
    let source = shared.scratch.store(Bytes::from(bytes)).map_err(|error| {
        ApiError::typed(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SERVER_ERROR",
            error.to_string(),
        )
    })?;
    let mut world = write(&shared.world);
    let base_index = world
        .base_index(base)
        .ok_or_else(ApiError::model_not_found_or_forbidden)?;
    let table_index = world.bases[base_index]
        .table_of_record(record)
        .ok_or_else(ApiError::record_not_found)?;
    let slot = world.bases[base_index].tables[table_index]
        .field_slot_by_key(field)
        .ok_or_else(|| ApiError::unknown_field_name(field))?;
    let attachment_id = world.ids.next(super::ids::IdKind::Attachment);
    world.content.insert(
        attachment_id.clone(),
        Arc::new(ContentEntry {
            size,
            mime: content_type.clone(),
            source,
        }),
    );
    let attachment = Attachment {
        id: attachment_id,
        filename,
        mime: content_type,
        state: AttachmentState::Ready {
            size,
            width: dimensions.map(|(width, _)| width),
            height: dimensions.map(|(_, height)| height),
        },
    };
    write::append_attachment(
        &mut world,
        base_index,
        table_index,
        record,
        slot,
        attachment,
        now_ms(),
    )?;
    shared.counters.written([&record.to_owned()]);
    let reader = shared.reader(&world, base_index);
    let table = &reader.base.tables[table_index];
    let stored = table
        .record(record)
        .ok_or_else(ApiError::record_not_found)?;
    let field_id = table.fields[slot].id.clone();
    let cell = reader
        .cell_value(table_index, stored, slot, 0)
        .unwrap_or(json!([]));
    let mut fields = Map::new();
    fields.insert(field_id, cell);
    let value = json!({
        "id": stored.id,
        "createdTime": super::time::format_iso_ms(stored.created_ms),
        "fields": fields,
    });
    Ok((value, Vec::new()))
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves attachment content, the fake's stand-in for the content host. Never rate-limited.
async fn download(shared: &Arc<Shared>, rest: &str) -> Response {
    shared.counters.request(Route::AttachmentDownload, None);
    let (decision, expire_now) = {
        let mut faults = lock(&shared.faults);
        (faults.decide(true), faults.download_expires_urls())
    };
    if expire_now {
        shared.signer.expire_all();
    }
    if let Some(status) = decision.status {
        let error = injected_status(shared, status);
        return plain(error.status, "Service temporarily unavailable");
    }
    let attachment_id = match shared.signer.check(rest, now_ms()) {
        UrlCheck::Valid { attachment_id } => attachment_id,
        UrlCheck::Expired => {
            shared.counters.update(|counters| counters.url_expired += 1);
            return plain(StatusCode::GONE, "Gone: this attachment URL has expired");
        }
        UrlCheck::Invalid => return plain(StatusCode::NOT_FOUND, "Not Found"),
    };
    if lock(&shared.faults).faults().is_missing(&attachment_id) {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    }
    let entry = read(&shared.world).content.get(&attachment_id).cloned();
    let Some(entry) = entry else {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    };
    let seed = read(&shared.world).seed;
    let counters = shared.clone();
    let size = entry.size;
    let stream = content::stream_content(entry.source.clone(), seed, size).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            let sent = chunk.len() as u64;
            counters
                .counters
                .update(|counters| counters.attachment_bytes_served += sent);
        }
    });
    let mut response = if decision.reset {
        shared.counters.update(|counters| counters.resets += 1);
        // Send about half of the content, then cut the connection.
        let limit = size / 2;
        let truncated = futures::stream::unfold(
            (stream.boxed(), 0u64, false),
            move |(mut stream, mut sent, done)| async move {
                if done {
                    return None;
                }
                if sent >= limit {
                    return Some((Err(connection_reset()), (stream, sent, true)));
                }
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        let take = ((limit - sent) as usize).min(chunk.len());
                        sent += take as u64;
                        Some((Ok(chunk.slice(..take)), (stream, sent, false)))
                    }
                    Some(Err(error)) => Some((Err(error), (stream, sent, true))),
                    None => Some((Err(connection_reset()), (stream, sent, true))),
                }
            },
        );
        Response::new(Body::from_stream(truncated))
    } else {
        Response::new(Body::from_stream(stream))
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&entry.mime) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&size.to_string()) {
        headers.insert(header::CONTENT_LENGTH, value);
    }
    response
}

/// Downloads a `{url}` attachment after the write that named it has been answered.
pub(crate) async fn fetch_attachment_task(shared: Arc<Shared>, fetch: PendingFetch) {
    if !shared.settings.url_fetch_delay.is_zero() {
        tokio::time::sleep(shared.settings.url_fetch_delay).await;
    }
    let fails = lock(&shared.faults).faults().url_fetch_fails(&fetch.url);
    let fetched = match fails {
        true => None,
        false => fetch_bytes(&shared.http, &fetch.url).await,
    };
    let stored = fetched.and_then(|(bytes, mime)| {
        let dimensions = content::png_dimensions(&bytes);
        let size = bytes.len() as u64;
        let source = shared.scratch.store(bytes).ok()?;
        Some((source, mime, size, dimensions))
    });
    {
        let mut world = write(&shared.world);
        let ok = stored.is_some();
        if let Some((source, mime, size, _)) = &stored {
            let mime = mime.clone().unwrap_or_default();
            world.content.insert(
                fetch.attachment_id.clone(),
                Arc::new(ContentEntry {
                    size: *size,
                    mime,
                    source: source.clone(),
                }),
            );
        }
        let cell = world.base_index(&fetch.base_id).and_then(|base_index| {
            let base = &mut world.bases[base_index];
            let table_index = base.table_index_by_id(&fetch.table_id)?;
            let table = &mut base.tables[table_index];
            let slot = table.field_slot(&fetch.field_id)?;
            let record = table.record_mut(&fetch.record_id)?;
            Some((record, slot))
        });
        if let Some((record, slot)) = cell
            && let Some(Cell::Attachments(attachments)) = record.cell_mut(slot)
        {
            match &stored {
                Some((_, mime, size, dimensions)) => {
                    if let Some(attachment) = attachments
                        .iter_mut()
                        .find(|attachment| attachment.id == fetch.attachment_id)
                    {
                        if let Some(mime) = mime {
                            attachment.mime = mime.clone();
                        }
                        attachment.state = AttachmentState::Ready {
                            size: *size,
                            width: dimensions.map(|(width, _)| width),
                            height: dimensions.map(|(_, height)| height),
                        };
                    }
                }
                None => {
                    // Airtable drops an attachment it could not fetch, without telling anyone.
                    attachments.retain(|attachment| attachment.id != fetch.attachment_id);
                    let remaining = attachments.clone();
                    record.set_cell(slot, Some(Cell::Attachments(remaining)));
                }
            }
        }
        drop(world);
        shared.counters.update(|counters| {
            if ok {
                counters.url_fetches_ok += 1;
            } else {
                counters.url_fetches_failed += 1;
            }
        });
    }
    shared.pending_fetches.fetch_sub(1, Ordering::SeqCst);
    shared.fetch_done.notify_waiters();
}

async fn fetch_bytes(http: &reqwest::Client, url: &str) -> Option<(Bytes, Option<String>)> {
    let response = http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_FETCH_BYTES)
    {
        return None;
    }
    let mime = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or(value).trim().to_owned())
        .filter(|value| !value.is_empty());
    let mut stream = response.bytes_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.ok()?;
        buffer.extend_from_slice(&chunk);
        if buffer.len() as u64 > MAX_FETCH_BYTES {
            return None;
        }
    }
    Some((Bytes::from(buffer), mime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_like_airtable() {
        assert_eq!(
            match_endpoint(&Method::GET, "/v0/appA/Table%2F1"),
            Some(Endpoint::ListRecords {
                base: "appA".into(),
                table: "Table/1".into()
            })
        );
        assert_eq!(
            match_endpoint(&Method::POST, "/v0/appA/recB/fldC/uploadAttachment"),
            Some(Endpoint::UploadAttachment {
                base: "appA".into(),
                record: "recB".into(),
                field: "fldC".into()
            })
        );
        assert!(matches!(
            match_endpoint(&Method::POST, "/v0/appA/tblB/listRecords"),
            Some(Endpoint::ListRecordsPost { .. })
        ));
        assert_eq!(match_endpoint(&Method::GET, "/v0/meta/nothing"), None);
        assert_eq!(match_endpoint(&Method::GET, "/v1/appA/tblB"), None);
        assert_eq!(match_endpoint(&Method::GET, "/v0/appA/"), None);
    }

    #[test]
    fn query_pairs_are_decoded() {
        let pairs = parse_query(Some(
            "fields%5B%5D=Na+me&sort%5B0%5D%5Bfield%5D=a%26b&empty",
        ));
        assert_eq!(pairs[0], ("fields[]".to_owned(), "Na me".to_owned()));
        assert_eq!(pairs[1], ("sort[0][field]".to_owned(), "a&b".to_owned()));
        assert_eq!(pairs[2], ("empty".to_owned(), String::new()));
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%e6%97%a5", false), "日");
    }
}
