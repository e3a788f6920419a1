//! Records on their way into a snapshot: the canonical JSON line of a record, and a temporary
//! SQLite store that sorts a table's records by id without holding them in memory.

use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};
use serde_json::{Map, Value};

use crate::airtable::Record;
use crate::repo::{FileSaver, RepoError};

/// The record as one line of canonical JSON: `{"createdTime","fields","id"}` with object keys
/// sorted at every level, fields keyed by field id, and attachment objects (in attachment
/// fields and in lookups of them) stripped of their expiring `url` and `thumbnails`. The same
/// record always gives the same bytes.
pub(crate) fn canonical_line(record: &Record) -> Vec<u8> {
    let fields: Map<String, Value> = record
        .fields
        .iter()
        .map(|(field, value)| (field.clone(), strip_urls(value)))
        .collect();
    let mut line = Map::new();
    line.insert(
        "createdTime".into(),
        Value::String(record.created_time.clone()),
    );
    line.insert("fields".into(), Value::Object(fields));
    line.insert("id".into(), Value::String(record.id.clone()));
    // serde_json's Map is a BTreeMap here (no `preserve_order`), so keys come out sorted; the
    // unit test below fails if a dependency ever turns that feature on.
    let mut bytes = serde_json::to_vec(&Value::Object(line)).expect("JSON values serialize");
    bytes.push(b'\n');
    bytes
}

/// Whether a cell value is an attachment object (`{"id": "att…", "filename", …}`).
pub(super) fn is_attachment(value: &Value) -> bool {
    crate::airtable::attachment_id(value).is_some()
}

/// Every attachment object in a cell (an attachment field, or a lookup of one).
pub(super) fn attachments_in(cell: &Value) -> Vec<&Value> {
    match cell {
        Value::Array(items) => items.iter().flat_map(attachments_in).collect(),
        value if is_attachment(value) => vec![value],
        _ => Vec::new(),
    }
}

fn strip_urls(cell: &Value) -> Value {
    match cell {
        Value::Array(items) => Value::Array(items.iter().map(strip_urls).collect()),
        Value::Object(object) if is_attachment(cell) => {
            let mut object = object.clone();
            object.remove("url");
            object.remove("thumbnails");
            Value::Object(object)
        }
        other => other.clone(),
    }
}

/// A table's records, spilled to a temporary database and read back sorted by id.
pub(crate) struct RecordSpill {
    conn: Arc<Mutex<Connection>>,
    _dir: tempfile::TempDir,
}

impl RecordSpill {
    pub(crate) fn new() -> Result<RecordSpill, String> {
        let dir = tempfile::Builder::new()
            .prefix("airback-records-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let conn =
            Connection::open(dir.path().join("records.sqlite")).map_err(|e| e.to_string())?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -8000;
             CREATE TABLE r (id TEXT PRIMARY KEY, line BLOB NOT NULL) WITHOUT ROWID;",
        )
        .map_err(|e| e.to_string())?;
        Ok(RecordSpill {
            conn: Arc::new(Mutex::new(conn)),
            _dir: dir,
        })
    }

    /// Stores a page of (record id, line). A record listed twice keeps its last line.
    pub(crate) async fn insert(&self, lines: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            let tx = conn.transaction()?;
            {
                let mut stmt =
                    tx.prepare_cached("INSERT OR REPLACE INTO r (id, line) VALUES (?1, ?2)")?;
                for (id, line) in &lines {
                    stmt.execute(params![id, line])?;
                }
            }
            tx.commit()
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    /// Up to 2000 (record id, line) pairs in record-id order, after the id `after` (`""`: from
    /// the start).
    pub(crate) async fn batch_after(&self, after: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        let conn = self.conn.clone();
        let from = after.to_owned();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            let mut stmt =
                conn.prepare_cached("SELECT id, line FROM r WHERE id > ?1 ORDER BY id LIMIT 2000")?;
            let rows = stmt.query_map(params![from], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("temporary record store: {e}"))
    }

    /// Streams every line in record-id order into `saver`; returns the bytes written.
    pub(super) async fn stream_sorted(&self, saver: &mut FileSaver) -> Result<u64, RepoError> {
        let mut after = String::new();
        let mut total = 0u64;
        loop {
            let batch = self
                .batch_after(&after)
                .await
                .map_err(RepoError::Internal)?;
            let Some((last, _)) = batch.last() else { break };
            after = last.clone();
            let mut bytes = Vec::new();
            for (_, line) in &batch {
                bytes.extend_from_slice(line);
            }
            total += bytes.len() as u64;
            saver.push(&bytes).await?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_canonical_and_drop_expiring_urls() {
        let fields_a: Map<String, Value> = serde_json::from_str(
            r#"{"fldB": 2, "fldA": {"z": 1, "a": 2}, "fldBtn": {"label": "Go", "url": "https://keep.me"}, "fldAtt": [{"id": "attX", "url": "https://x", "thumbnails": {}, "filename": "a.png", "size": 3}]}"#,
        )
        .unwrap();
        let fields_b: Map<String, Value> = serde_json::from_str(
            r#"{"fldAtt": [{"size": 3, "filename": "a.png", "url": "https://other", "id": "attX"}], "fldA": {"a": 2, "z": 1}, "fldB": 2, "fldBtn": {"url": "https://keep.me", "label": "Go"}}"#,
        )
        .unwrap();
        let record = |fields| Record {
            id: "rec1".into(),
            created_time: "2026-01-01T00:00:00.000Z".into(),
            fields,
        };
        let a = canonical_line(&record(fields_a));
        let b = canonical_line(&record(fields_b));
        assert_eq!(a, b);
        assert_eq!(
            String::from_utf8(a).unwrap(),
            "{\"createdTime\":\"2026-01-01T00:00:00.000Z\",\"fields\":{\"fldA\":{\"a\":2,\"z\":1},\"fldAtt\":[{\"filename\":\"a.png\",\"id\":\"attX\",\"size\":3}],\"fldB\":2,\"fldBtn\":{\"label\":\"Go\",\"url\":\"https://keep.me\"}},\"id\":\"rec1\"}\n"
        );
    }
}
