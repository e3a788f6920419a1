//! The text of a table in a package: a JSON document (the API's record shape, cells keyed by
//! field name) and a CSV file (RFC 4180). Both are rendered record by record, so a table of
//! any size streams through a small buffer, and both are byte-for-byte the same every time for
//! the same snapshot. The conventions are documented in docs/EXPORT.md, "Tables".
//!
//! [`TableText`] drives the rendering for the package writer: it reads a table's records from
//! the source as it is asked for text, gives their attachment objects the paths of the
//! layout, and yields the text in chunks of about 64 KiB, optionally rendering the CSV into a
//! [`Capture`] (kept in memory up to a bound) alongside the JSON.

use bytes::Bytes;
use serde_json::{Value, json};

use super::plan::{Layout, TableLayout};
use super::source::Source;
use super::{ExportError, records_of};
use crate::airtable::Record;
use crate::progress::Progress;
use crate::stored::StoredError;

/// One column of an exported table: a field of the schema, or a field id found in records
/// that the schema does not list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    /// `fld…`: how records key the cell.
    pub field_id: String,
    /// The key in the JSON records and the CSV header: the field's name, or (when two fields
    /// share a name, or the field is not in the schema) a name made unique with the id.
    pub key: String,
    /// The field's name in the schema.
    pub name: Option<String>,
    /// The field's type in the schema.
    pub field_type: Option<String>,
}

/// Calls `visit` on every attachment object in `value`, depth first.
pub(crate) fn for_each_attachment<'v>(value: &'v Value, visit: &mut impl FnMut(&'v Value)) {
    if crate::airtable::attachment_id(value).is_some() {
        visit(value);
        return;
    }
    match value {
        Value::Array(items) => items.iter().for_each(|v| for_each_attachment(v, visit)),
        Value::Object(map) => map.values().for_each(|v| for_each_attachment(v, visit)),
        _ => {}
    }
}

/// Gives every attachment object in `value` the `path` of its file in the package, where
/// `path_of` knows one (attachments whose content the snapshot lacks get none).
pub(crate) fn add_paths(value: &mut Value, path_of: &impl Fn(&str) -> Option<String>) {
    if let Some(id) = crate::airtable::attachment_id(value) {
        if let Some(path) = path_of(id)
            && let Value::Object(map) = value
        {
            map.insert("path".to_owned(), Value::String(path));
        }
        return;
    }
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| add_paths(v, path_of)),
        Value::Object(map) => map.values_mut().for_each(|v| add_paths(v, path_of)),
        _ => {}
    }
}

/// The start of a table's JSON document, up to the opening bracket of `records`.
pub(crate) fn json_header(table_id: &str, table_name: &str, columns: &[Column]) -> Vec<u8> {
    let fields: Vec<Value> = columns
        .iter()
        .map(|c| json!({"id": c.field_id, "name": c.name, "type": c.field_type, "key": c.key}))
        .collect();
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"table\":");
    write_json(&mut out, &json!({"id": table_id, "name": table_name}));
    out.extend_from_slice(b",\n\"fields\":");
    write_json(&mut out, &Value::Array(fields));
    out.extend_from_slice(b",\n\"records\":[");
    out
}

/// One record of a table's JSON document, on a line of its own, preceded by a comma unless it
/// is the first. Cells come in column order; empty cells are absent, as in the API.
pub(crate) fn json_record(out: &mut Vec<u8>, record: &Record, columns: &[Column], first: bool) {
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(b"\n{\"id\":");
    write_json(out, &record.id);
    out.extend_from_slice(b",\"createdTime\":");
    write_json(out, &record.created_time);
    out.extend_from_slice(b",\"fields\":{");
    let mut first_cell = true;
    for column in columns {
        let Some(value) = record.fields.get(&column.field_id) else {
            continue;
        };
        if !first_cell {
            out.push(b',');
        }
        first_cell = false;
        write_json(out, &column.key);
        out.push(b':');
        write_json(out, value);
    }
    out.extend_from_slice(b"}}");
}

/// The end of a table's JSON document.
pub(crate) const JSON_FOOTER: &[u8] = b"\n]}\n";

/// The CSV header row: `id`, `createdTime`, then the column keys.
pub(crate) fn csv_header(columns: &[Column]) -> Vec<u8> {
    let mut out = Vec::new();
    csv_text(&mut out, "id");
    out.push(b',');
    csv_text(&mut out, "createdTime");
    for column in columns {
        out.push(b',');
        csv_text(&mut out, &column.key);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// One CSV row. A cell is empty when the record has no value; a string is written as it is;
/// a number or boolean as JSON writes it (`12.5`, `true`); anything else (lists, objects:
/// selections, links, attachments, collaborators, error values) as compact JSON.
pub(crate) fn csv_record(out: &mut Vec<u8>, record: &Record, columns: &[Column]) {
    csv_text(out, &record.id);
    out.push(b',');
    csv_text(out, &record.created_time);
    for column in columns {
        out.push(b',');
        match record.fields.get(&column.field_id) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => csv_text(out, text),
            Some(other) => {
                let text = serde_json::to_string(other).expect("JSON values serialize");
                csv_text(out, &text);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// A CSV field: quoted (quotes doubled) when it holds a comma, a quote, CR or LF, or starts or
/// ends with white space (which some readers would trim).
fn csv_text(out: &mut Vec<u8>, text: &str) {
    let needs_quotes = text.contains([',', '"', '\r', '\n'])
        || text.starts_with(char::is_whitespace)
        || text.ends_with(char::is_whitespace);
    if !needs_quotes {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    out.push(b'"');
    for part in text.split_inclusive('"') {
        out.extend_from_slice(part.as_bytes());
        if part.ends_with('"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(&mut *out, value).expect("writing JSON to memory cannot fail");
}

/// Records rendered into one chunk before it is handed to the package.
const TEXT_CHUNK: usize = 64 * 1024;

/// Rendered text, kept up to `cap` bytes, and its length in any case.
pub(super) struct Capture {
    cap: usize,
    bytes: Vec<u8>,
    pub(super) len: u64,
    overflowed: bool,
}

impl Capture {
    pub(super) fn new(cap: usize) -> Capture {
        Capture {
            cap,
            bytes: Vec::new(),
            len: 0,
            overflowed: false,
        }
    }

    pub(super) fn push(&mut self, text: &[u8]) {
        self.len += text.len() as u64;
        if self.overflowed {
            return;
        }
        if self.bytes.len() + text.len() > self.cap {
            self.overflowed = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(text);
        }
    }

    /// The text, if all of it was kept.
    pub(super) fn take(&mut self) -> Option<Vec<u8>> {
        (!self.overflowed).then(|| std::mem::take(&mut self.bytes))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextKind {
    Json,
    Csv,
}

/// A table's JSON or CSV text, in chunks of about [`TEXT_CHUNK`] bytes, read from the
/// snapshot as they are asked for. Optionally renders the CSV into a [`Capture`] alongside
/// the JSON, and reports records to the progress.
pub(super) struct TableText<'a> {
    records: Box<dyn Iterator<Item = Result<Record, StoredError>> + 'a>,
    layout: &'a Layout,
    table: &'a TableLayout,
    kind: TextKind,
    csv: Option<&'a mut Capture>,
    progress: Option<&'a dyn Progress>,
    started: bool,
    done: bool,
    first: bool,
}

impl<'a> TableText<'a> {
    pub(super) fn new(
        source: &'a Source,
        layout: &'a Layout,
        table: &'a TableLayout,
        kind: TextKind,
        csv: Option<&'a mut Capture>,
        progress: Option<&'a dyn Progress>,
    ) -> TableText<'a> {
        TableText {
            records: Box::new(source.records(&table.table)),
            layout,
            table,
            kind,
            csv,
            progress,
            started: false,
            done: false,
            first: true,
        }
    }
}

impl Iterator for TableText<'_> {
    type Item = Result<Bytes, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let table = self.table;
        let columns = &table.columns;
        let mut out = Vec::with_capacity(TEXT_CHUNK + 4096);
        if !self.started {
            self.started = true;
            match self.kind {
                TextKind::Json => out = json_header(&table.table.id, &table.table.name, columns),
                TextKind::Csv => out = csv_header(columns),
            }
            if let Some(csv) = self.csv.as_deref_mut() {
                csv.push(&csv_header(columns));
            }
        }
        let mut rendered = 0;
        let mut row = Vec::new();
        while out.len() < TEXT_CHUNK {
            match self.records.next() {
                Some(Ok(record)) => {
                    let record = self.layout.prepare(record);
                    match self.kind {
                        TextKind::Json => json_record(&mut out, &record, columns, self.first),
                        TextKind::Csv => csv_record(&mut out, &record, columns),
                    }
                    if let Some(csv) = self.csv.as_deref_mut() {
                        row.clear();
                        csv_record(&mut row, &record, columns);
                        csv.push(&row);
                    }
                    self.first = false;
                    rendered += 1;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(records_of(&table.table)(e)));
                }
                None => {
                    if self.kind == TextKind::Json {
                        out.extend_from_slice(JSON_FOOTER);
                    }
                    self.done = true;
                    break;
                }
            }
        }
        if let Some(progress) = self.progress {
            progress.items(rendered);
        }
        Some(Ok(Bytes::from(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<Column> {
        vec![
            Column {
                field_id: "fldB".into(),
                key: "Name".into(),
                name: Some("Name".into()),
                field_type: Some("singleLineText".into()),
            },
            Column {
                field_id: "fldA".into(),
                key: "Files".into(),
                name: Some("Files".into()),
                field_type: Some("multipleAttachments".into()),
            },
            Column {
                field_id: "fldC".into(),
                key: "n".into(),
                name: Some("n".into()),
                field_type: Some("number".into()),
            },
        ]
    }

    fn record() -> Record {
        serde_json::from_value(json!({
            "id": "rec1", "createdTime": "2026-01-01T00:00:00.000Z",
            "fields": {
                "fldA": [{"id": "attX", "filename": "a,b.txt", "size": 3}],
                "fldB": "He said \"hi\",\nthen left",
                "fldC": 12.5,
            }
        }))
        .unwrap()
    }

    #[test]
    fn json_records_follow_the_columns_and_parse_back() {
        let mut rec = record();
        for value in rec.fields.values_mut() {
            add_paths(value, &|id: &str| {
                (id == "attX").then(|| "attachments/T/rec1/a,b.txt".into())
            });
        }
        let mut doc = json_header("tbl1", "T", &columns());
        json_record(&mut doc, &rec, &columns(), true);
        json_record(&mut doc, &rec, &columns(), false);
        doc.extend_from_slice(JSON_FOOTER);
        let text = String::from_utf8(doc.clone()).unwrap();
        // Name first (column order), not Files (key order).
        assert!(text.contains(r#""fields":{"Name":"#), "{text}");
        let parsed: Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(parsed["table"]["name"], "T");
        assert_eq!(parsed["fields"][1]["id"], "fldA");
        assert_eq!(parsed["records"].as_array().unwrap().len(), 2);
        assert_eq!(
            parsed["records"][0]["fields"]["Files"][0]["path"],
            "attachments/T/rec1/a,b.txt"
        );
        // An empty table is valid JSON too.
        let mut empty = json_header("tbl1", "T", &columns());
        empty.extend_from_slice(JSON_FOOTER);
        let parsed: Value = serde_json::from_slice(&empty).unwrap();
        assert_eq!(parsed["records"], json!([]));
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut out = csv_header(&columns());
        csv_record(&mut out, &record(), &columns());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "id,createdTime,Name,Files,n\r\n\
             rec1,2026-01-01T00:00:00.000Z,\"He said \"\"hi\"\",\nthen left\",\
             \"[{\"\"filename\"\":\"\"a,b.txt\"\",\"\"id\"\":\"\"attX\"\",\"\"size\"\":3}]\",12.5\r\n"
        );
        let mut out = Vec::new();
        csv_text(&mut out, " padded");
        csv_text(&mut out, "plain");
        assert_eq!(out, b"\" padded\"plain");
    }

    #[test]
    fn attachment_objects_are_found_in_lookups_too() {
        let cell = json!([
            {"id": "attA", "filename": "x"},
            {"id": "attB"},
            {"nested": [{"id": "attC", "filename": "y"}]}
        ]);
        let mut ids = Vec::new();
        for_each_attachment(&cell, &mut |v| {
            ids.push(crate::airtable::attachment_id(v).unwrap().to_owned())
        });
        assert_eq!(ids, ["attA", "attC"]);
    }
}
