//! The SQLite export: one table per Airtable table with a column per field, a link table per
//! link field, the attachments with their bytes as BLOBs, and the schema and manifest as tables
//! of their own (docs/EXPORT.md, "SQLite"). Names stay as close to Airtable's as SQL allows
//! (quoted identifiers hold any character but NUL); only case-insensitive clashes and names
//! SQLite reserves are changed.
//!
//! Records are inserted as they stream, in one transaction; attachment bytes are written into
//! BLOBs opened for incremental I/O, so no attachment is ever held whole in memory. The
//! database is built in a temporary file next to the destination, without a journal (a failed
//! export deletes the file), and renamed into place by the caller.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, MAIN_DB, params, params_from_iter};
use serde_json::Value;

use super::ExportError;
use super::plan::{Layout, Slot, TableLayout};
use super::source::Source;
use crate::progress::Progress;

/// The largest value SQLite stores (its default `SQLITE_MAX_LENGTH`); larger attachments are
/// listed without their content.
const MAX_BLOB: u64 = 1_000_000_000;

const MANIFEST: &str = "_airback_manifest";
const TABLES: &str = "_airback_tables";
const FIELDS: &str = "_airback_fields";
const LINKS: &str = "_airback_links";
const ATTACHMENTS: &str = "_airback_attachments";
const COMMENTS: &str = "_airback_comments";

/// Writes the database at `path` (an empty file). Returns its size.
pub(super) fn write(
    source: &Source,
    layout: &Layout,
    manifest: &Value,
    path: &Path,
    progress: &dyn Progress,
) -> Result<u64, ExportError> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA page_size = 16384;",
    )?;
    let tx = conn.transaction()?;
    let mut names = SqlNames::default();
    for reserved in [MANIFEST, TABLES, FIELDS, LINKS, ATTACHMENTS, COMMENTS] {
        names.reserve(reserved);
    }
    tx.execute_batch(&format!(
        "CREATE TABLE {MANIFEST} (key TEXT PRIMARY KEY, value TEXT);
         CREATE TABLE {TABLES} (
             table_id TEXT PRIMARY KEY, name TEXT NOT NULL, sql_table TEXT NOT NULL UNIQUE,
             description TEXT, primary_field_id TEXT, records INTEGER NOT NULL,
             position INTEGER NOT NULL);
         CREATE TABLE {FIELDS} (
             table_id TEXT NOT NULL, field_id TEXT NOT NULL, name TEXT, type TEXT,
             description TEXT, options TEXT, is_primary INTEGER NOT NULL,
             sql_column TEXT NOT NULL, position INTEGER NOT NULL,
             PRIMARY KEY (table_id, field_id));
         CREATE TABLE {LINKS} (
             sql_table TEXT PRIMARY KEY, table_id TEXT NOT NULL, field_id TEXT NOT NULL,
             linked_table_id TEXT, linked_sql_table TEXT);
         CREATE TABLE {ATTACHMENTS} (
             id TEXT PRIMARY KEY, table_id TEXT NOT NULL, sql_table TEXT NOT NULL,
             record_id TEXT NOT NULL, field_id TEXT NOT NULL, filename TEXT, type TEXT,
             size INTEGER NOT NULL, width INTEGER, height INTEGER, path TEXT NOT NULL,
             content BLOB, note TEXT);
         CREATE TABLE {COMMENTS} (
             id TEXT PRIMARY KEY, table_id TEXT NOT NULL, sql_table TEXT NOT NULL,
             record_id TEXT NOT NULL, position INTEGER NOT NULL, author_id TEXT,
             author_name TEXT, author_email TEXT, text TEXT, created_time TEXT,
             last_updated_time TEXT, parent_comment_id TEXT, mentioned TEXT);"
    ))?;

    // The manifest, one row per key; the schema as the meta API returned it.
    {
        let mut insert = tx.prepare(&format!("INSERT INTO {MANIFEST} VALUES (?1, ?2)"))?;
        if let Some(map) = manifest.as_object() {
            for (key, value) in map {
                insert.execute(params![key, text_of(value)])?;
            }
        }
        insert.execute(params![
            "schema",
            serde_json::to_string(&source.base.schema.raw).expect("JSON values serialize")
        ])?;
    }

    // Every table's SQL name first: link tables name the tables they point to.
    let sql_tables: Vec<String> = layout
        .tables
        .iter()
        .map(|t| names.claim(&t.table.name))
        .collect();
    let mut plans = Vec::new();
    for (position, (table, sql_table)) in layout.tables.iter().zip(&sql_tables).enumerate() {
        plans.push(create_table(
            &tx,
            source,
            layout,
            table,
            sql_table,
            &sql_tables,
            position,
            &mut names,
        )?);
    }

    for (table, plan) in layout.tables.iter().zip(&plans) {
        progress.phase(&table.table.name, None);
        insert_records(&tx, source, layout, table, plan, progress)?;
    }

    insert_comments(&tx, source, layout, &sql_tables)?;
    insert_attachments(&tx, source, layout, &sql_tables, progress)?;
    for plan in &plans {
        for link in &plan.links {
            tx.execute_batch(&format!(
                "CREATE INDEX {} ON {} (linked_record_id);",
                quote(&format!("{} linked_record_id", link.sql_table)),
                quote(&link.sql_table)
            ))?;
        }
    }
    tx.commit()?;
    conn.close().map_err(|(_, e)| e)?;
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| ExportError::write(path.display().to_string(), e))
}

/// How one table's records go in: its SQL name, column names, and link tables.
struct TablePlan {
    sql_table: String,
    sql_columns: Vec<String>,
    links: Vec<LinkPlan>,
}

struct LinkPlan {
    field_id: String,
    sql_table: String,
}

#[allow(clippy::too_many_arguments)]
fn create_table(
    tx: &rusqlite::Transaction<'_>,
    source: &Source,
    layout: &Layout,
    table: &TableLayout,
    sql_table: &str,
    sql_tables: &[String],
    position: usize,
    names: &mut SqlNames,
) -> Result<TablePlan, ExportError> {
    let schema = source
        .base
        .schema
        .tables
        .iter()
        .find(|t| t.id == table.table.id);
    let mut columns = SqlNames::default();
    columns.reserve("id");
    columns.reserve("created_time");
    let sql_columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| columns.claim(&c.key))
        .collect();
    let mut definition = format!(
        "CREATE TABLE {} (id TEXT PRIMARY KEY, created_time TEXT NOT NULL",
        quote(sql_table)
    );
    for (column, sql_column) in table.columns.iter().zip(&sql_columns) {
        let options = field_options(source, &table.table.id, &column.field_id);
        definition.push_str(&format!(
            ", {} {}",
            quote(sql_column),
            sql_type(column.field_type.as_deref(), options)
        ));
    }
    definition.push(')');
    tx.execute_batch(&definition)?;

    tx.execute(
        &format!("INSERT INTO {TABLES} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            table.table.id,
            table.table.name,
            sql_table,
            schema.and_then(|s| s.description.clone()),
            schema.map(|s| s.primary_field_id.clone()),
            table.records as i64,
            position as i64,
        ],
    )?;
    let mut links = Vec::new();
    for (index, (column, sql_column)) in table.columns.iter().zip(&sql_columns).enumerate() {
        let field = schema.and_then(|s| s.fields.iter().find(|f| f.id == column.field_id));
        tx.execute(
            &format!("INSERT INTO {FIELDS} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                table.table.id,
                column.field_id,
                column.name,
                column.field_type,
                field.and_then(|f| f.description.clone()),
                field
                    .and_then(|f| f.options.as_ref())
                    .map(|o| serde_json::to_string(o).expect("JSON values serialize")),
                schema.is_some_and(|s| s.primary_field_id == column.field_id),
                sql_column,
                index as i64,
            ],
        )?;
        if column.field_type.as_deref() != Some("multipleRecordLinks") {
            continue;
        }
        let linked_table_id = field
            .and_then(|f| f.options.as_ref())
            .and_then(|o| o.get("linkedTableId"))
            .and_then(Value::as_str);
        let linked_sql_table = linked_table_id.and_then(|id| {
            layout
                .tables
                .iter()
                .position(|t| t.table.id == id)
                .map(|i| sql_tables[i].clone())
        });
        let link_table = names.claim(&format!("{sql_table}__{sql_column}"));
        tx.execute_batch(&format!(
            "CREATE TABLE {} (record_id TEXT NOT NULL, linked_record_id TEXT NOT NULL, \
             position INTEGER NOT NULL, PRIMARY KEY (record_id, position))",
            quote(&link_table)
        ))?;
        tx.execute(
            &format!("INSERT INTO {LINKS} VALUES (?1, ?2, ?3, ?4, ?5)"),
            params![
                link_table,
                table.table.id,
                column.field_id,
                linked_table_id,
                linked_sql_table
            ],
        )?;
        links.push(LinkPlan {
            field_id: column.field_id.clone(),
            sql_table: link_table,
        });
    }
    Ok(TablePlan {
        sql_table: sql_table.to_owned(),
        sql_columns,
        links,
    })
}

fn field_options<'a>(source: &'a Source, table_id: &str, field_id: &str) -> Option<&'a Value> {
    source
        .base
        .schema
        .tables
        .iter()
        .find(|t| t.id == table_id)?
        .fields
        .iter()
        .find(|f| f.id == field_id)?
        .options
        .as_ref()
}

fn insert_records(
    tx: &rusqlite::Transaction<'_>,
    source: &Source,
    layout: &Layout,
    table: &TableLayout,
    plan: &TablePlan,
    progress: &dyn Progress,
) -> Result<(), ExportError> {
    let mut sql = format!("INSERT INTO {} (id, created_time", quote(&plan.sql_table));
    for column in &plan.sql_columns {
        sql.push_str(", ");
        sql.push_str(&quote(column));
    }
    sql.push_str(") VALUES (?1, ?2");
    for i in 0..plan.sql_columns.len() {
        sql.push_str(&format!(", ?{}", i + 3));
    }
    sql.push(')');
    let mut insert = tx.prepare(&sql)?;
    let mut link_inserts = plan
        .links
        .iter()
        .map(|l| {
            tx.prepare(&format!(
                "INSERT INTO {} VALUES (?1, ?2, ?3)",
                quote(&l.sql_table)
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut values: Vec<SqlValue> = Vec::with_capacity(plan.sql_columns.len() + 2);
    let mut batch = 0u64;
    for record in source.records(&table.table) {
        let record = layout.prepare(record.map_err(super::records_of(&table.table))?);
        values.clear();
        values.push(SqlValue::Text(record.id.clone()));
        values.push(SqlValue::Text(record.created_time.clone()));
        for column in &table.columns {
            values.push(
                record
                    .fields
                    .get(&column.field_id)
                    .map_or(SqlValue::Null, sql_value),
            );
        }
        insert.execute(params_from_iter(values.iter()))?;
        for (link, statement) in plan.links.iter().zip(&mut link_inserts) {
            let Some(Value::Array(items)) = record.fields.get(&link.field_id) else {
                continue;
            };
            for (position, item) in items.iter().enumerate() {
                // The API gives record ids; tolerate `{"id": …}` objects too.
                let linked = item
                    .as_str()
                    .or_else(|| item.get("id").and_then(Value::as_str));
                if let Some(linked) = linked {
                    statement.execute(params![record.id, linked, position as i64])?;
                }
            }
        }
        batch += 1;
        if batch == 1000 {
            progress.items(batch);
            batch = 0;
        }
    }
    progress.items(batch);
    Ok(())
}

/// Every record comment, in `_airback_comments`: `position` orders a record's comments,
/// oldest first; `mentioned` is JSON text.
fn insert_comments(
    tx: &rusqlite::Transaction<'_>,
    source: &Source,
    layout: &Layout,
    sql_tables: &[String],
) -> Result<(), ExportError> {
    let mut insert = tx.prepare(&format!(
        "INSERT OR REPLACE INTO {COMMENTS} (id, table_id, sql_table, record_id, position, \
         author_id, author_name, author_email, text, created_time, last_updated_time, \
         parent_comment_id, mentioned) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?;
    for (table, sql_table) in layout.tables.iter().zip(sql_tables) {
        if source.base.comment_count(&table.table.id) == 0 {
            continue;
        }
        for item in source.comments(&table.table.id) {
            let item = item.map_err(ExportError::reading(format!(
                "the comments of table `{}`",
                table.table.name
            )))?;
            for (position, comment) in item.comments.iter().enumerate() {
                let text = |value: &Value| value.as_str().map(str::to_owned);
                let author = &comment["author"];
                insert.execute(params![
                    text(&comment["id"]),
                    table.table.id,
                    sql_table,
                    item.record,
                    position as i64,
                    text(&author["id"]),
                    text(&author["name"]),
                    text(&author["email"]),
                    text(&comment["text"]),
                    text(&comment["createdTime"]),
                    text(&comment["lastUpdatedTime"]),
                    text(&comment["parentCommentId"]),
                    comment
                        .get("mentioned")
                        .filter(|m| !m.is_null())
                        .map(Value::to_string),
                ])?;
            }
        }
        source.check_stop()?;
    }
    Ok(())
}

fn insert_attachments(
    tx: &rusqlite::Transaction<'_>,
    source: &Source,
    layout: &Layout,
    sql_tables: &[String],
    progress: &dyn Progress,
) -> Result<(), ExportError> {
    let mut insert = tx.prepare(&format!(
        "INSERT INTO {ATTACHMENTS} (id, table_id, sql_table, record_id, field_id, filename, \
         type, size, width, height, path, content, note) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, zeroblob(?12), ?13)"
    ))?;
    tracing::debug!("export: records inserted");
    progress.bytes_expected(layout.attachment_bytes());
    for entry in &layout.files {
        debug_assert!(matches!(layout.paths.get(&entry.id), Some(Slot::File(_))));
        source.check_stop()?;
        let size = entry.file.size;
        let fits = size <= MAX_BLOB;
        let text = |key: &str| entry.object.get(key).and_then(Value::as_str);
        let number = |key: &str| entry.object.get(key).and_then(Value::as_i64);
        insert.execute(params![
            entry.id,
            layout.tables[entry.table].table.id,
            sql_tables[entry.table],
            entry.record_id,
            entry.field_id,
            text("filename").or(entry.file.filename.as_deref()),
            text("type").or(entry.file.content_type.as_deref()),
            size as i64,
            number("width"),
            number("height"),
            entry.path,
            if fits { size as i64 } else { 0 },
            (!fits).then_some(
                "larger than SQLite's largest value (1 GB); the tar, zip and dir exports hold it"
            ),
        ])?;
        if !fits {
            progress.bytes(size);
            continue;
        }
        let row = tx.last_insert_rowid();
        let mut blob = tx.blob_open(MAIN_DB, ATTACHMENTS, "content", row, false)?;
        let mut written = 0u64;
        for chunk in source.file_bytes(&entry.file) {
            let chunk = chunk.map_err(ExportError::reading(format!(
                "attachment {} ({})",
                entry.id, entry.path
            )))?;
            written += chunk.len() as u64;
            if written > size {
                break;
            }
            blob.write_all(&chunk)
                .map_err(|e| ExportError::write(format!("attachment {}", entry.id), e))?;
            progress.bytes(chunk.len() as u64);
        }
        if written != size {
            return Err(ExportError::Internal(format!(
                "attachment {} has {written} bytes, not the {size} its tree node says",
                entry.id
            )));
        }
    }
    Ok(())
}

/// A cell as an SQL value: numbers and booleans as numbers, strings as text, lists and objects
/// (selections, links, attachments, collaborators, error values) as JSON text.
fn sql_value(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => n.as_f64().map_or(SqlValue::Null, SqlValue::Real),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(serde_json::to_string(other).expect("JSON values serialize")),
    }
}

/// A manifest value as text: strings as they are, anything else as JSON.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).expect("JSON values serialize"),
    }
}

/// The declared type of a field's column, which gives it SQLite's matching affinity. Computed
/// fields take their result's type; multi-valued and structured fields hold JSON text.
fn sql_type(field_type: Option<&str>, options: Option<&Value>) -> &'static str {
    match field_type.unwrap_or("") {
        "checkbox" | "autoNumber" | "count" | "rating" => "INTEGER",
        "number" | "percent" | "currency" | "duration" => "REAL",
        "formula" | "rollup" => {
            let result = options.and_then(|o| o.get("result"));
            let result_type = result.and_then(|r| r.get("type")).and_then(Value::as_str);
            match result_type {
                Some("formula" | "rollup") | None => "",
                inner => sql_type(inner, result.and_then(|r| r.get("options"))),
            }
        }
        "" => "",
        // Text, dates (ISO 8601 text), selections, and JSON for everything structured.
        _ => "TEXT",
    }
}

/// `"name"` with inner quotes doubled.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQL names for tables or columns: Airtable's names with NUL and other control characters
/// replaced, the `sqlite_` prefix SQLite reserves avoided, and clashes (SQLite compares names
/// without regard to case) resolved with ` (2)`, ` (3)`, … in the order names are claimed.
#[derive(Default)]
struct SqlNames {
    taken: HashSet<String>,
}

impl SqlNames {
    fn reserve(&mut self, name: &str) {
        self.taken.insert(name.to_lowercase());
    }

    fn claim(&mut self, name: &str) -> String {
        let mut base: String = name
            .chars()
            .map(|c| if c.is_control() { '_' } else { c })
            .collect();
        if base.trim().is_empty() {
            base = "_".to_owned();
        }
        if base.to_lowercase().starts_with("sqlite_") {
            base.insert(0, '_');
        }
        let mut candidate = base.clone();
        let mut n = 2u64;
        while !self.taken.insert(candidate.to_lowercase()) {
            candidate = format!("{base} ({n})");
            n += 1;
        }
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sql_names_avoid_clashes_and_reserved_prefixes() {
        let mut names = SqlNames::default();
        names.reserve(ATTACHMENTS);
        assert_eq!(names.claim("Everything 🦓"), "Everything 🦓");
        assert_eq!(names.claim("everything 🦓"), "everything 🦓 (2)");
        assert_eq!(names.claim("sqlite_master"), "_sqlite_master");
        assert_eq!(names.claim("a\0b"), "a_b");
        assert_eq!(names.claim(""), "_");
        assert_eq!(
            names.claim("_AIRBACK_attachments"),
            "_AIRBACK_attachments (2)"
        );
        assert_eq!(
            quote("Links / Refs \"quoted\""),
            "\"Links / Refs \"\"quoted\"\"\""
        );
    }

    #[test]
    fn types_follow_fields_and_results() {
        assert_eq!(sql_type(Some("number"), None), "REAL");
        assert_eq!(sql_type(Some("checkbox"), None), "INTEGER");
        assert_eq!(sql_type(Some("multipleSelects"), None), "TEXT");
        assert_eq!(sql_type(None, None), "");
        let options = json!({"result": {"type": "number", "options": {"precision": 0}}});
        assert_eq!(sql_type(Some("formula"), Some(&options)), "REAL");
        assert_eq!(sql_type(Some("rollup"), None), "");
    }

    #[test]
    fn values_keep_their_kind() {
        assert_eq!(sql_value(&json!(3)), SqlValue::Integer(3));
        assert_eq!(sql_value(&json!(2.5)), SqlValue::Real(2.5));
        assert_eq!(sql_value(&json!(true)), SqlValue::Integer(1));
        assert_eq!(sql_value(&json!("x")), SqlValue::Text("x".into()));
        assert_eq!(
            sql_value(&json!(["a", "b"])),
            SqlValue::Text(r#"["a","b"]"#.into())
        );
        assert_eq!(
            sql_value(&json!({"error": "#ERROR!"})),
            SqlValue::Text(r##"{"error":"#ERROR!"}"##.into())
        );
    }
}
