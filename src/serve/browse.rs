//! The web page's views of the repository, as JSON: a base's snapshots, a snapshot's tables,
//! a table's records (paged and searched), a record's history, the diff between two snapshots
//! or a snapshot and the live base, and an export to download. Each reads the repository
//! under the runner's read gate, so retention's prune never removes a pack a view is reading;
//! only the live diff talks to Airtable (through the service's shared, paced client).
//!
//! Snapshots are named by id or unique prefix, like on the command line. Errors are JSON
//! `{"error": …}` with 404 for what does not exist, 400 for bad input, and 500 with a message
//! scrubbed of secrets for the rest.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{AppState, error, internal};
use crate::diff::{DiffError, DiffOptions, diff_live, diff_snapshots};
use crate::export::{ExportFormat, ExportOptions, Output, export};
use crate::history::{HistoryError, HistoryOptions, record_history};
use crate::layout::SnapshotSummary;
use crate::snapshots::{self, ResolveError};
use crate::stored::StoredBase;

/// Exports prepared at once.
static EXPORTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Records per page when the page does not say.
const PAGE: usize = 50;
/// The most records one page may ask for.
const MAX_PAGE: usize = 500;

/// A snapshot as the lists show it: the keys of `airback snapshots --json` and `short_id`.
fn snapshot_json(id: &crate::id::SnapshotId, s: &crate::repo::snapshot::Snapshot) -> Value {
    let summary = SnapshotSummary::of(s);
    json!({
        "id": id.to_string(),
        "short_id": id.short(),
        "time": s.time,
        "base_id": snapshots::base_id(s),
        "base_name": crate::layout::Source::of(s).map(|source| source.base_name),
        "hostname": s.hostname,
        "tags": s.tags,
        "partial": s.partial,
        "problems": s.problems,
        "tables": summary.tables,
        "records": summary.records,
        "attachments": summary.attachments,
        "attachment_bytes": summary.attachment_bytes,
        "comments": summary.comments,
        "comments_skipped": summary.comments_skipped,
        "size": summary.size,
    })
}

/// The snapshot `spec` names (id or unique prefix), or the answer to give instead: 404 when
/// there is none, 400 when the prefix is ambiguous.
pub(super) async fn resolve(
    state: &AppState,
    spec: &str,
) -> Result<(crate::id::SnapshotId, crate::repo::snapshot::Snapshot), Response> {
    match snapshots::resolve(state.service.runner.repo(), spec, None).await {
        Ok(found) => Ok(found),
        Err(e @ ResolveError::NotFound(_)) => Err(error(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ ResolveError::Ambiguous(..)) => Err(error(StatusCode::BAD_REQUEST, e.to_string())),
        Err(e) => Err(internal(e)),
    }
}

/// Opens the snapshot `spec` names, or the answer to give instead.
async fn open(state: &AppState, spec: &str) -> Result<StoredBase, Response> {
    let (id, snapshot) = resolve(state, spec).await?;
    StoredBase::open(state.service.runner.repo(), id, snapshot)
        .await
        .map_err(internal)
}

/// `GET /api/bases/{base}/snapshots`: the base's snapshots, newest first.
pub(super) async fn base_snapshots(
    State(state): State<Arc<AppState>>,
    Path(base): Path<String>,
) -> Response {
    let _reading = state.service.runner.reading().await;
    match snapshots::list(state.service.runner.repo()).await {
        Ok(all) => {
            let list: Vec<Value> = all
                .iter()
                .rev()
                .filter(|(_, s)| snapshots::base_id(s) == Some(base.as_str()))
                .map(|(id, s)| snapshot_json(id, s))
                .collect();
            Json(json!({"base": base, "snapshots": list})).into_response()
        }
        Err(e) => internal(e),
    }
}

/// `GET /api/snapshots/{id}`: the snapshot, its tables with their fields.
pub(super) async fn snapshot(
    State(state): State<Arc<AppState>>,
    Path(spec): Path<String>,
) -> Response {
    let _reading = state.service.runner.reading().await;
    let stored = match open(&state, &spec).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let tables: Vec<Value> = stored
        .tables
        .iter()
        .map(|t| {
            let schema = stored.schema.table(&t.id);
            json!({
                "id": t.id,
                "name": t.name,
                "records": t.records,
                "comments": stored.comment_count(&t.id),
                "primary_field": schema.map(|s| s.primary_field_id.clone()),
                "fields": schema.map(fields_json).unwrap_or_default(),
            })
        })
        .collect();
    let mut answer = snapshot_json(&stored.id, &stored.snapshot);
    answer["table_list"] = json!(tables);
    Json(answer).into_response()
}

fn fields_json(table: &crate::airtable::TableSchema) -> Vec<Value> {
    table
        .fields
        .iter()
        .map(|f| json!({"id": f.id, "name": f.name, "type": f.field_type}))
        .collect()
}

/// The query of a records page.
#[derive(Deserialize)]
pub(super) struct RecordsQuery {
    /// Only records whose id or some cell contains this text (ignoring case).
    q: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// Whether `record` matches the search `needle` (lowercase): its id, or any text in its
/// cells.
fn matches(record: &crate::airtable::Record, needle: &str) -> bool {
    fn value_matches(v: &Value, needle: &str) -> bool {
        match v {
            Value::String(s) => s.to_lowercase().contains(needle),
            Value::Number(n) => n.to_string().contains(needle),
            Value::Array(items) => items.iter().any(|i| value_matches(i, needle)),
            Value::Object(map) => map.values().any(|i| value_matches(i, needle)),
            _ => false,
        }
    }
    record.id.to_lowercase().contains(needle)
        || record.fields.values().any(|v| value_matches(v, needle))
}

/// `GET /api/snapshots/{id}/tables/{table}/records?q=&offset=&limit=`: one page of the
/// table's records in stored order, only those matching `q` when given. The table file is
/// read as a stream; only the page is kept.
pub(super) async fn records(
    State(state): State<Arc<AppState>>,
    Path((spec, table)): Path<(String, String)>,
    Query(q): Query<RecordsQuery>,
) -> Response {
    let _reading = state.service.runner.reading().await;
    let stored = match open(&state, &spec).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let Some(stored_table) = stored
        .tables
        .iter()
        .find(|t| t.id == table || t.name.eq_ignore_ascii_case(&table))
        .cloned()
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!("snapshot {} holds no table {table}", stored.id.short()),
        );
    };
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let needle =
        q.q.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
    let mut page = Vec::new();
    let mut matched = 0usize;
    let mut all = stored.records(&stored_table);
    while let Some(record) = all.next().await {
        let record = match record {
            Ok(r) => r,
            Err(e) => return internal(e),
        };
        if needle.as_deref().is_some_and(|n| !matches(&record, n)) {
            continue;
        }
        if matched >= offset && page.len() < limit {
            page.push(json!({
                "id": record.id,
                "createdTime": record.created_time,
                "fields": record.fields,
            }));
        }
        matched += 1;
    }
    let schema = stored.schema.table(&stored_table.id);
    let links = match schema {
        Some(schema) => match link_names(&stored, schema, &page).await {
            Ok(links) => links,
            Err(e) => return internal(e),
        },
        None => serde_json::Map::new(),
    };
    Json(json!({
        "snapshot": stored.id.to_string(),
        "table": stored_table.id,
        "name": stored_table.name,
        "primary_field": schema.map(|s| s.primary_field_id.clone()),
        "fields": schema.map(fields_json).unwrap_or_default(),
        "total": stored_table.records,
        "matched": matched,
        "offset": offset,
        "limit": limit,
        "records": page,
        "links": links,
    }))
    .into_response()
}

/// The primary field's text of each record the page's link cells point at, by record id,
/// read from the same snapshot (one pass over each linked table, stopping once all are
/// found), so the page shows names rather than `rec…` ids.
async fn link_names(
    stored: &StoredBase,
    schema: &crate::airtable::TableSchema,
    page: &[Value],
) -> Result<serde_json::Map<String, Value>, crate::stored::StoredError> {
    let mut wanted: std::collections::BTreeMap<String, std::collections::HashSet<String>> =
        std::collections::BTreeMap::new();
    for field in schema
        .fields
        .iter()
        .filter(|f| f.field_type == "multipleRecordLinks")
    {
        let Some(linked) = field
            .options
            .as_ref()
            .and_then(|o| o.get("linkedTableId"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        for record in page {
            if let Some(ids) = record["fields"][&field.id].as_array() {
                let set = wanted.entry(linked.to_owned()).or_default();
                set.extend(ids.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
    }
    let mut names = serde_json::Map::new();
    for (table_id, mut ids) in wanted {
        let (Some(table), Some(table_schema)) =
            (stored.table(&table_id), stored.schema.table(&table_id))
        else {
            continue;
        };
        let primary = table_schema.primary_field_id.clone();
        let mut records = stored.records(table);
        while !ids.is_empty()
            && let Some(record) = records.next().await
        {
            let record = record?;
            if ids.remove(&record.id) {
                let name = match record.fields.get(&primary) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                names.insert(record.id, Value::String(name));
            }
        }
    }
    Ok(names)
}

/// The query of a record's history.
#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    base: Option<String>,
}

/// `GET /api/records/{record}/history?base=`: the record across the base's snapshots (the
/// JSON of `airback history --json`).
pub(super) async fn history(
    State(state): State<Arc<AppState>>,
    Path(record): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let _reading = state.service.runner.reading().await;
    let options = HistoryOptions {
        base: q.base.filter(|b| !b.is_empty()),
        fields: Vec::new(),
    };
    match record_history(state.service.runner.repo(), &record, &options).await {
        Ok(h) => Json(h).into_response(),
        Err(HistoryError::NotFound(m)) => error(StatusCode::NOT_FOUND, m),
        Err(HistoryError::Invalid(m)) => error(StatusCode::BAD_REQUEST, m),
        Err(e) => internal(e),
    }
}

/// The query of a diff.
#[derive(Deserialize)]
pub(super) struct DiffQuery {
    /// The older snapshot.
    from: String,
    /// The newer snapshot, or `live`.
    to: String,
}

/// `GET /api/diff?from=A&to=B` (or `to=live`): the JSON of `airback diff --json`.
pub(super) async fn diff(
    State(state): State<Arc<AppState>>,
    Query(q): Query<DiffQuery>,
) -> Response {
    let _reading = state.service.runner.reading().await;
    let from = match open(&state, &q.from).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let options = DiffOptions::default();
    let result = if q.to == "live" {
        if state.service.config.base(from.base_id()).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "base {} is not in the configuration file, so the service has no token \
                     meant for it; compare two snapshots instead",
                    from.base_id()
                ),
            );
        }
        diff_live(&from, state.service.runner.client(), &options).await
    } else {
        let to = match open(&state, &q.to).await {
            Ok(s) => s,
            Err(answer) => return answer,
        };
        diff_snapshots(&from, &to, &options).await
    };
    match result {
        Ok(d) => Json(d).into_response(),
        Err(DiffError::Invalid(m)) => error(StatusCode::BAD_REQUEST, m),
        Err(e) => internal(e),
    }
}

/// The query of an export.
#[derive(Deserialize)]
pub(super) struct ExportQuery {
    /// `zip` or `sqlite`.
    format: String,
}

/// `GET /api/snapshots/{id}/export?format=zip|sqlite`: the export as a download. It is
/// written to a temporary file in the state directory first (a zip's directory and an SQLite
/// database are written out of order), then streamed; the file is removed once sent.
pub(super) async fn download(
    State(state): State<Arc<AppState>>,
    Path(spec): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Response {
    let (format, extension, mime) = match q.format.as_str() {
        "zip" => (ExportFormat::Zip, "zip", "application/zip"),
        "sqlite" => (ExportFormat::Sqlite, "sqlite", "application/vnd.sqlite3"),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown export format `{other}`; ask for `zip` or `sqlite`"),
            );
        }
    };
    // Each export is a whole package on disk before its first byte is sent: a few at a time.
    let Ok(_slot) = EXPORTS.try_acquire() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "two exports are being prepared already; download again when one is done",
        );
    };
    let file = {
        let _reading = state.service.runner.reading().await;
        let stored = match open(&state, &spec).await {
            Ok(s) => s,
            Err(answer) => return answer,
        };
        let dir = state.service.state_dir.join("exports");
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return internal(format!("cannot create {}: {e}", dir.display()));
        }
        let temp = match tempfile::Builder::new()
            .prefix("export-")
            .suffix(&format!(".{extension}"))
            .tempfile_in(&dir)
        {
            Ok(t) => t.into_temp_path(),
            Err(e) => return internal(format!("cannot create a file in {}: {e}", dir.display())),
        };
        let mut options = ExportOptions::new(format, Output::Path(temp.to_path_buf()));
        options.force = true;
        if let Err(e) = export(&stored, options, Arc::new(crate::progress::NoProgress)).await {
            return internal(e);
        }
        // ASCII only: a header's filename cannot carry more without RFC 5987 encoding.
        let base_name: String = crate::export::names::safe_name(stored.base_name(), 80)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!("{base_name}-{}.{extension}", stored.id.short());
        (temp, name)
    };
    let (temp, name) = file;
    let opened = match tokio::fs::File::open(&temp).await {
        Ok(f) => f,
        Err(e) => return internal(format!("cannot read the export: {e}")),
    };
    let size = opened.metadata().await.map(|m| m.len()).ok();
    // The temporary path lives as long as the stream: dropped (and the file removed) when the
    // body has been sent or the client went away.
    let body = futures::stream::unfold((opened, temp), |(mut file, temp)| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                    (file, temp),
                ))
            }
            Err(e) => Some((Err(e), (file, temp))),
        }
    });
    let mut answer = Body::from_stream(body).into_response();
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(mime));
    if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(size) = size {
        headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(size));
    }
    answer
}
