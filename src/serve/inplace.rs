//! Restoring one record or one table in place from the web page: the plan first (a dry run of
//! `restore --in-place` that reads the live base and writes nothing, whose changes the page
//! shows for confirmation), then the restore itself as a job in the base's lane, so it never
//! runs beside a snapshot of the same base and lands in the job history with its log.
//!
//! The restore takes a safety snapshot first (tagged `before-undo`), with the base's backup
//! options from the configuration, so the undo can be undone. Only bases in the
//! configuration can be restored: the service's token is meant for them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::browse::resolve;
use super::http::{AppState, error, internal, queued};
use crate::restore::{InPlaceOptions, RestoreError, restore_in_place};
use crate::snapshots;
use crate::stored::StoredBase;

/// What to bring back: one record, or one table, of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// The snapshot's full id (the handlers resolve prefixes).
    #[serde(default)]
    pub snapshot: String,
    /// The table (id or name); with `record`, the record's table.
    #[serde(default)]
    pub table: Option<String>,
    /// The record (`rec…`, as in the snapshot).
    #[serde(default)]
    pub record: Option<String>,
}

impl RestoreRequest {
    /// Checks that it names exactly one thing to restore.
    fn validate(&self) -> Result<(), String> {
        match (&self.table, &self.record) {
            (None, None) => Err(
                "say what to restore: {\"record\": \"rec…\"} or {\"table\": \"tbl…\"}".to_owned(),
            ),
            (_, Some(r)) if !r.starts_with("rec") => Err(format!(
                "`{r}` is not a record id; give one that starts with `rec`"
            )),
            _ => Ok(()),
        }
    }

    /// The in-place options for this request.
    pub fn options(&self) -> InPlaceOptions {
        InPlaceOptions {
            tables: self.table.iter().cloned().collect(),
            records: self.record.iter().cloned().collect(),
            verify: true,
            ..InPlaceOptions::default()
        }
    }

    /// One line saying what it restores.
    pub fn describe(&self) -> String {
        let short = self.snapshot.get(..8).unwrap_or(&self.snapshot);
        match (&self.record, &self.table) {
            (Some(r), _) => format!("record {r} from snapshot {short}"),
            (None, Some(t)) => format!("table {t} from snapshot {short}"),
            (None, None) => format!("nothing from snapshot {short}"),
        }
    }
}

/// Resolves the snapshot and checks the request; the opened snapshot or the answer to give.
async fn prepare(
    state: &AppState,
    spec: &str,
    request: &mut RestoreRequest,
) -> Result<StoredBase, Response> {
    request
        .validate()
        .map_err(|m| error(StatusCode::BAD_REQUEST, m))?;
    let repo = state.service.runner.repo();
    let (id, snapshot) = resolve(state, spec).await?;
    let base = snapshots::base_id(&snapshot).unwrap_or_default().to_owned();
    if state.service.config.base(&base).is_none() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "base {base} is not in the configuration file; the service restores only the \
                 bases it backs up (its token is meant for them)"
            ),
        ));
    }
    request.snapshot = id.to_string();
    StoredBase::open(repo, id, snapshot).await.map_err(internal)
}

/// `POST /api/snapshots/{id}/restore/plan` with `{"record": …}` or `{"table": …}`: what the
/// restore would change in the live base (a dry run: the live records are read, nothing is
/// written). The answer's `changes` is a diff from the live base to the snapshot.
pub(super) async fn plan(
    State(state): State<Arc<AppState>>,
    Path(spec): Path<String>,
    Json(mut request): Json<RestoreRequest>,
) -> Response {
    let _reading = state.service.runner.reading().await;
    let stored = match prepare(&state, &spec, &mut request).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let options = InPlaceOptions {
        dry_run: true,
        ..request.options()
    };
    let report = restore_in_place(
        &stored,
        state.service.runner.client(),
        &options,
        Arc::new(crate::progress::NoProgress),
    )
    .await;
    match report {
        Ok(report) => {
            let created = match created_cells(&stored, &report.changes).await {
                Ok(c) => c,
                Err(e) => return internal(e),
            };
            Json(json!({
                "request": request,
                "base": stored.base_id(),
                "plan": report,
                "created": created,
            }))
            .into_response()
        }
        Err(RestoreError::Invalid(m)) => error(StatusCode::BAD_REQUEST, m),
        Err(e) => internal(e),
    }
}

/// The most records created again whose cells the confirmation shows.
const SHOWN_CREATED: usize = 50;

/// The writable cells of the records the plan creates again (the first [`SHOWN_CREATED`]),
/// as the snapshot holds them, by field name in schema order: what the confirmation shows
/// for a record that does not exist in the live base (computed cells are Airtable's to fill).
async fn created_cells(
    stored: &StoredBase,
    changes: &crate::diff::Diff,
) -> Result<Vec<serde_json::Value>, crate::stored::StoredError> {
    use futures::StreamExt;
    let mut out = Vec::new();
    for table in &changes.tables {
        if table.added.is_empty() || out.len() >= SHOWN_CREATED {
            continue;
        }
        let (Some(stored_table), Some(schema)) =
            (stored.table(&table.id), stored.schema.table(&table.id))
        else {
            continue;
        };
        let wanted: std::collections::HashSet<&str> =
            table.added.iter().map(String::as_str).collect();
        let mut records = stored.records(stored_table);
        while let Some(record) = records.next().await {
            let record = record?;
            if !wanted.contains(record.id.as_str()) {
                continue;
            }
            let cells: Vec<serde_json::Value> = schema
                .fields
                .iter()
                .filter(|f| {
                    crate::restore::writable_type(&f.field_type)
                        || f.field_type == "multipleRecordLinks"
                })
                .filter_map(|f| {
                    record
                        .fields
                        .get(&f.id)
                        .map(|v| json!({"id": f.id, "name": f.name, "value": v}))
                })
                .collect();
            out.push(json!({"table": table.id, "id": record.id, "fields": cells}));
            if out.len() >= SHOWN_CREATED {
                break;
            }
        }
    }
    Ok(out)
}

/// `POST /api/snapshots/{id}/restore` with `{"record": …}` or `{"table": …}`: queues the
/// restore in the base's lane; 202 with the job's id.
pub(super) async fn apply(
    State(state): State<Arc<AppState>>,
    Path(spec): Path<String>,
    Json(mut request): Json<RestoreRequest>,
) -> Response {
    let stored = {
        let _reading = state.service.runner.reading().await;
        match prepare(&state, &spec, &mut request).await {
            Ok(s) => s,
            Err(answer) => return answer,
        }
    };
    queued(
        state
            .service
            .scheduler
            .enqueue_restore(stored.base_id(), request),
    )
}
