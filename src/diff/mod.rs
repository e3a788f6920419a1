//! `airback diff`: what changed in a base between two snapshots, or between a snapshot and the
//! live base.
//!
//! A diff has a schema half (`schema.rs`: tables and fields added, removed, renamed, changed)
//! and a record half: per table, the records added, removed and changed, with each changed
//! field's value before and after. Both sides are streams of records sorted by id, merged like
//! two sorted lists, so memory does not grow with the base:
//!
//! - a snapshot's table is read through [`StoredBase::records_not_in`], which skips the runs of
//!   blobs both snapshots share without reading them, so the cost of a diff between snapshots
//!   follows the size of the change, not of the base (and no request reaches Airtable);
//! - the live base is listed through the API (`live.rs`, paced like a snapshot), its records
//!   put in the snapshot's canonical form and sorted in a temporary database.
//!
//! Cells are compared the way Airtable means them ([`CellKind`]): links as sets of record
//! ids, attachments by id and filename, empty cells (absent, `null`, `[]`, `false`, `""`) as
//! equal. Computed fields are compared too, and marked. Only fields both sides have are
//! compared; added and removed fields are in the schema half.
//!
//! [`TableMerge`] is the building block `restore --in-place` plans from.

mod live;
mod schema;

use std::collections::HashMap;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use serde_json::Value;

use crate::airtable::{AirtableError, BaseSchema, Client, FieldSchema, Record, TableSchema};
use crate::stored::{StoredBase, StoredError, StoredTable};
pub(crate) use live::LiveBase;
pub use schema::{FieldChanged, FieldRef, FieldRenamed, SchemaDiff, TableRef};

/// Why a diff failed.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// Reading a snapshot failed.
    #[error(transparent)]
    Stored(#[from] StoredError),
    /// Reading the live base failed.
    #[error(transparent)]
    Airtable(#[from] AirtableError),
    /// Bad input; the message says what to do.
    #[error("{0}")]
    Invalid(String),
    /// The temporary database that sorts the live records failed.
    #[error("cannot sort the live records: {0}")]
    Spill(String),
}

/// What to compare.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Only these tables (ids or names, matched ignoring case); all when empty.
    pub tables: Vec<String>,
    /// Records `restore --in-place` created again: old id → new id. Links are compared
    /// through it, so a link to the new record equals the link to the old one (the records
    /// themselves are still listed as removed and added).
    pub recreated: HashMap<String, String>,
}

/// What changed between two states of a base. Its JSON form is a contract for scripts (the
/// keys are listed in the README).
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// The base.
    pub base: String,
    /// The older snapshot's id.
    pub from: String,
    /// The newer snapshot's id, or `live`.
    pub to: String,
    /// What changed in the schema.
    pub schema: SchemaDiff,
    /// The tables with records added, removed or changed, in schema order.
    pub tables: Vec<TableDiff>,
    /// Record counts over all tables.
    pub summary: DiffSummary,
}

impl Diff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.schema.is_empty() && self.tables.is_empty()
    }
}

/// The records of one table that changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableDiff {
    /// `tbl…`
    pub id: String,
    /// The table's (newer) name.
    pub name: String,
    /// Records only the newer side has.
    pub added: Vec<String>,
    /// Records only the older side has.
    pub removed: Vec<String>,
    /// Records both sides have, with different cells.
    pub changed: Vec<RecordChange>,
}

/// A record whose cells changed.
#[derive(Debug, Clone, Serialize)]
pub struct RecordChange {
    /// `rec…`
    pub id: String,
    /// The fields that changed, in schema order.
    pub fields: Vec<FieldChange>,
}

/// One changed cell.
#[derive(Debug, Clone, Serialize)]
pub struct FieldChange {
    /// `fld…`
    pub id: String,
    /// The field's (newer) name.
    pub name: String,
    /// The value before (`null` when empty).
    pub before: Value,
    /// The value after (`null` when empty).
    pub after: Value,
    /// A computed field (formula, rollup, lookup, …): it changes when what it reads changes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub computed: bool,
}

/// Record counts of a diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiffSummary {
    /// Records added.
    pub added: u64,
    /// Records removed.
    pub removed: u64,
    /// Records changed.
    pub changed: u64,
}

/// How a field's cells are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CellKind {
    /// Written as they are read.
    Plain,
    /// `multipleRecordLinks`: a set of record ids.
    Links,
    /// `multipleAttachments`: a list of attachments, compared by id and filename.
    Attachments,
    /// Computed by Airtable; never written.
    Computed,
}

impl CellKind {
    /// The kind of a field's cells. Unknown types count as computed: they are compared, never
    /// written.
    pub(crate) fn of(field: &FieldSchema) -> CellKind {
        match field.field_type.as_str() {
            "multipleRecordLinks" => CellKind::Links,
            "multipleAttachments" => CellKind::Attachments,
            // Writable as read: the types restore creates as themselves.
            kind if crate::restore::writable_type(kind) => CellKind::Plain,
            _ => CellKind::Computed,
        }
    }
}

/// A cell in the form it is compared in: empty cells are `Null`, links a sorted id list,
/// attachments `[{id, filename}]` in cell order.
pub(crate) fn normalized(kind: CellKind, cell: Option<&Value>) -> Value {
    let Some(cell) = cell else {
        return Value::Null;
    };
    match cell {
        Value::Null | Value::Bool(false) => return Value::Null,
        Value::Array(items) if items.is_empty() => return Value::Null,
        Value::String(s) if s.is_empty() => return Value::Null,
        _ => {}
    }
    match kind {
        CellKind::Links => {
            let mut ids: Vec<&str> = cell
                .as_array()
                .map(|items| items.iter().filter_map(link_id).collect())
                .unwrap_or_default();
            ids.sort_unstable();
            ids.dedup();
            Value::from(ids)
        }
        CellKind::Attachments => Value::Array(
            cell.as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|a| {
                            serde_json::json!({
                                "id": a.get("id").cloned().unwrap_or(Value::Null),
                                "filename": a.get("filename").cloned().unwrap_or(Value::Null),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        CellKind::Plain | CellKind::Computed => cell.clone(),
    }
}

/// A linked record's id: a plain string (`returnFieldsByFieldId` answers), or `{id}`.
pub(crate) fn link_id(item: &Value) -> Option<&str> {
    item.as_str()
        .or_else(|| item.get("id").and_then(Value::as_str))
}

/// The fields of one table that both sides have, in schema order, with how they compare.
#[derive(Debug, Clone, Default)]
pub(crate) struct Compared {
    fields: Vec<(String, String, CellKind)>,
    recreated: HashMap<String, String>,
}

impl Compared {
    /// The fields of `after` that `before` has too, minus `excluded` (fields a backup left
    /// out: their cells are in neither side).
    pub(crate) fn new(before: &TableSchema, after: &TableSchema, excluded: &[String]) -> Compared {
        let fields = after
            .fields
            .iter()
            .filter(|f| before.fields.iter().any(|b| b.id == f.id))
            .filter(|f| !excluded.contains(&f.id))
            .map(|f| (f.id.clone(), f.name.clone(), CellKind::of(f)))
            .collect();
        Compared {
            fields,
            recreated: HashMap::new(),
        }
    }

    /// Compares links through `recreated` (old → new record ids).
    pub(crate) fn with_recreated(mut self, recreated: &HashMap<String, String>) -> Compared {
        self.recreated = recreated.clone();
        self
    }

    fn same(&self, kind: CellKind, old: Option<&Value>, new: Option<&Value>) -> bool {
        if kind == CellKind::Links && !self.recreated.is_empty() {
            let map = |cell: Option<&Value>| -> Value {
                let ids: Vec<Value> = cell
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(link_id)
                            .map(|id| {
                                Value::from(self.recreated.get(id).map_or(id, String::as_str))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                normalized(kind, Some(&Value::Array(ids)))
            };
            return map(old) == map(new);
        }
        normalized(kind, old) == normalized(kind, new)
    }

    /// Whether field `id` is compared.
    pub(crate) fn has(&self, id: &str) -> bool {
        self.fields.iter().any(|(f, _, _)| f == id)
    }

    /// Keeps only the fields for which `keep(id, name)` holds.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str, &str) -> bool) {
        self.fields.retain(|(id, name, _)| keep(id, name));
    }

    /// The cells that differ between two versions of a record.
    pub(crate) fn changes(&self, before: &Record, after: &Record) -> Vec<FieldChange> {
        self.fields
            .iter()
            .filter_map(|(id, name, kind)| {
                let (old, new) = (before.fields.get(id), after.fields.get(id));
                if self.same(*kind, old, new) {
                    return None;
                }
                Some(FieldChange {
                    id: id.clone(),
                    name: name.clone(),
                    before: old.cloned().unwrap_or(Value::Null),
                    after: new.cloned().unwrap_or(Value::Null),
                    computed: *kind == CellKind::Computed,
                })
            })
            .collect()
    }
}

/// One step of merging two record streams sorted by id.
#[derive(Debug)]
pub(crate) enum Pair {
    /// Only the older side has it.
    Removed(Record),
    /// Only the newer side has it.
    Added(Record),
    /// Both sides have it (maybe equal).
    Both(Record, Record),
}

/// Two streams of one table's records, sorted by id, merged.
pub(crate) struct TableMerge<E> {
    before: BoxStream<'static, Result<Record, E>>,
    after: BoxStream<'static, Result<Record, E>>,
    next_before: Option<Record>,
    next_after: Option<Record>,
    started: bool,
}

impl<E> TableMerge<E> {
    pub(crate) fn new(
        before: BoxStream<'static, Result<Record, E>>,
        after: BoxStream<'static, Result<Record, E>>,
    ) -> TableMerge<E> {
        TableMerge {
            before,
            after,
            next_before: None,
            next_after: None,
            started: false,
        }
    }

    /// The next pair, in id order, or `None` at the end of both streams.
    pub(crate) async fn next(&mut self) -> Result<Option<Pair>, E> {
        if !self.started {
            self.started = true;
            self.next_before = self.before.next().await.transpose()?;
            self.next_after = self.after.next().await.transpose()?;
        }
        let pair = match (self.next_before.take(), self.next_after.take()) {
            (None, None) => return Ok(None),
            (Some(b), None) => {
                self.next_before = self.before.next().await.transpose()?;
                Pair::Removed(b)
            }
            (None, Some(a)) => {
                self.next_after = self.after.next().await.transpose()?;
                Pair::Added(a)
            }
            (Some(b), Some(a)) => match b.id.cmp(&a.id) {
                std::cmp::Ordering::Less => {
                    self.next_after = Some(a);
                    self.next_before = self.before.next().await.transpose()?;
                    Pair::Removed(b)
                }
                std::cmp::Ordering::Greater => {
                    self.next_before = Some(b);
                    self.next_after = self.after.next().await.transpose()?;
                    Pair::Added(a)
                }
                std::cmp::Ordering::Equal => {
                    self.next_before = self.before.next().await.transpose()?;
                    self.next_after = self.after.next().await.transpose()?;
                    Pair::Both(b, a)
                }
            },
        };
        Ok(Some(pair))
    }
}

/// Whether two table or field names are the same, ignoring case (in any script, not only
/// ASCII).
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// The selected table ids among both schemas: `names` (ids or names, ignoring case) or all.
pub(crate) fn select_tables(
    before: &BaseSchema,
    after: &BaseSchema,
    names: &[String],
) -> Result<Option<Vec<String>>, DiffError> {
    if names.is_empty() {
        return Ok(None);
    }
    let all: Vec<&TableSchema> = before.tables.iter().chain(&after.tables).collect();
    let mut ids = Vec::new();
    for name in names {
        let found = all
            .iter()
            .find(|t| t.id == *name)
            .or_else(|| all.iter().find(|t| same_name(&t.name, name)))
            .ok_or_else(|| {
                let known: Vec<&str> = before.tables.iter().map(|t| t.name.as_str()).collect();
                DiffError::Invalid(format!(
                    "no table `{name}` in this base (its tables: {}); give a table's id or name",
                    known.join(", ")
                ))
            })?;
        if !ids.contains(&found.id) {
            ids.push(found.id.clone());
        }
    }
    Ok(Some(ids))
}

/// One side of a diff: a snapshot, or the live base (listed once, lazily, table by table).
enum Side<'a> {
    Stored(&'a StoredBase),
    Live(&'a LiveBase),
}

impl Side<'_> {
    fn schema(&self) -> &BaseSchema {
        match self {
            Side::Stored(s) => &s.schema,
            Side::Live(l) => &l.schema,
        }
    }

    /// Whether the side holds `table`'s records (a backup may leave tables out).
    fn has_table(&self, table: &str) -> bool {
        match self {
            Side::Stored(s) => s.table(table).is_some(),
            Side::Live(l) => l.schema.tables.iter().any(|t| t.id == table),
        }
    }
}

/// Compares two snapshots of one base. Reads only the repository, and of each table only what
/// the two snapshots do not share. A table one snapshot's backup left out (a table filter) is
/// not compared: its records are neither added nor removed.
pub async fn diff_snapshots(
    from: &StoredBase,
    to: &StoredBase,
    options: &DiffOptions,
) -> Result<Diff, DiffError> {
    if from.base_id() != to.base_id() {
        return Err(DiffError::Invalid(format!(
            "snapshot {} is of base {} and snapshot {} of base {}; diff compares two snapshots \
             of the same base",
            from.id.short(),
            from.base_id(),
            to.id.short(),
            to.base_id()
        )));
    }
    compare(from, Side::Stored(to), to.id.to_string(), options).await
}

/// Compares a snapshot with its base as it is now, listed through the API (one schema request
/// and a page of 100 records per request, paced like a snapshot).
pub async fn diff_live(
    from: &StoredBase,
    client: &Client,
    options: &DiffOptions,
) -> Result<Diff, DiffError> {
    let live = LiveBase::read_schema(client, from.base_id()).await?;
    compare(from, Side::Live(&live), "live".to_owned(), options).await
}

async fn compare(
    from: &StoredBase,
    to: Side<'_>,
    to_name: String,
    options: &DiffOptions,
) -> Result<Diff, DiffError> {
    let selected = select_tables(&from.schema, to.schema(), &options.tables)?;
    let wanted = |id: &str| {
        selected
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|s| s == id))
    };
    let schema = schema::compare(&from.schema, to.schema(), selected.as_deref());
    let mut tables = Vec::new();
    // Tables in the older schema's order, then the ones added since.
    let mut order: Vec<String> = from.schema.tables.iter().map(|t| t.id.clone()).collect();
    let added: Vec<String> = to
        .schema()
        .tables
        .iter()
        .filter(|t| !order.contains(&t.id))
        .map(|t| t.id.clone())
        .collect();
    order.extend(added);
    for table_id in order.iter().filter(|id| wanted(id)) {
        let before = from.table(table_id);
        let after_has = to.has_table(table_id);
        // A table in a side's schema whose records that side does not hold was left out of
        // its backup (a table filter): nothing is known of its records there, so they are
        // neither added nor removed.
        let left_out = match (before, after_has) {
            (None, true) => from.schema.tables.iter().any(|t| t.id == *table_id),
            (Some(_), false) => to.schema().tables.iter().any(|t| t.id == *table_id),
            _ => false,
        };
        if left_out {
            continue;
        }
        let diff = match (before, after_has) {
            (None, false) => continue,
            (Some(stored), true) => table_diff(from, stored, &to, &options.recreated).await?,
            (Some(stored), false) => {
                let mut diff = TableDiff {
                    id: stored.id.clone(),
                    name: stored.name.clone(),
                    ..TableDiff::default()
                };
                let mut records = from.records(stored);
                while let Some(record) = records.next().await {
                    diff.removed.push(record?.id);
                }
                diff
            }
            (None, true) => {
                let mut diff = TableDiff {
                    id: table_id.clone(),
                    name: table_name(to.schema(), table_id),
                    ..TableDiff::default()
                };
                let mut records = side_records(&to, table_id, None).await?;
                while let Some(record) = records.next().await {
                    diff.added.push(record?.id);
                }
                diff
            }
        };
        if !diff.added.is_empty() || !diff.removed.is_empty() || !diff.changed.is_empty() {
            tables.push(diff);
        }
    }
    let mut summary = DiffSummary::default();
    for table in &tables {
        summary.added += table.added.len() as u64;
        summary.removed += table.removed.len() as u64;
        summary.changed += table.changed.len() as u64;
    }
    Ok(Diff {
        base: from.base_id().to_owned(),
        from: from.id.to_string(),
        to: to_name,
        schema,
        tables,
        summary,
    })
}

fn table_name(schema: &BaseSchema, id: &str) -> String {
    schema
        .tables
        .iter()
        .find(|t| t.id == id)
        .map(|t| t.name.clone())
        .unwrap_or_default()
}

/// The records of `table` on side `side`; for a snapshot compared with `other`, only those
/// not certainly shared with it.
async fn side_records(
    side: &Side<'_>,
    table: &str,
    other: Option<&StoredTable>,
) -> Result<BoxStream<'static, Result<Record, DiffError>>, DiffError> {
    Ok(match side {
        Side::Stored(stored) => {
            let Some(this) = stored.table(table) else {
                return Ok(futures::stream::empty().boxed());
            };
            match other {
                Some(other) => stored.records_not_in(this, other),
                None => stored.records(this),
            }
            .map(|r| r.map_err(DiffError::from))
            .boxed()
        }
        Side::Live(live) => live.records(table).await?,
    })
}

async fn table_diff(
    from: &StoredBase,
    stored: &StoredTable,
    to: &Side<'_>,
    recreated: &HashMap<String, String>,
) -> Result<TableDiff, DiffError> {
    let before_schema = from
        .schema
        .tables
        .iter()
        .find(|t| t.id == stored.id)
        .expect("stored tables are in the schema");
    let after_schema = to
        .schema()
        .tables
        .iter()
        .find(|t| t.id == stored.id)
        .expect("the side has the table");
    let mut excluded = stored.excluded_fields.clone();
    let (before, after) = match to {
        Side::Stored(other) => {
            let other_table = other.table(&stored.id).expect("the side has the table");
            excluded.extend(other_table.excluded_fields.iter().cloned());
            if stored.content() == other_table.content() {
                // The same file: nothing changed.
                return Ok(TableDiff::default());
            }
            (
                from.records_not_in(stored, other_table)
                    .map(|r| r.map_err(DiffError::from))
                    .boxed(),
                side_records(to, &stored.id, Some(stored)).await?,
            )
        }
        Side::Live(_) => (
            from.records(stored)
                .map(|r| r.map_err(DiffError::from))
                .boxed(),
            side_records(to, &stored.id, None).await?,
        ),
    };
    let compared = Compared::new(before_schema, after_schema, &excluded).with_recreated(recreated);
    let mut diff = TableDiff {
        id: stored.id.clone(),
        name: after_schema.name.clone(),
        ..TableDiff::default()
    };
    let mut merge = TableMerge::new(before, after);
    while let Some(pair) = merge.next().await? {
        match pair {
            Pair::Removed(r) => diff.removed.push(r.id),
            Pair::Added(r) => diff.added.push(r.id),
            Pair::Both(b, a) => {
                let fields = compared.changes(&b, &a);
                if !fields.is_empty() {
                    diff.changed.push(RecordChange { id: a.id, fields });
                }
            }
        }
    }
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str, fields: Value) -> Record {
        Record {
            id: id.into(),
            created_time: "2026-01-01T00:00:00.000Z".into(),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn cells_compare_the_way_airtable_means_them() {
        let links = CellKind::Links;
        assert_eq!(
            normalized(links, Some(&json!(["recB", "recA"]))),
            normalized(links, Some(&json!(["recA", "recB"])))
        );
        assert_eq!(
            normalized(CellKind::Plain, Some(&json!(false))),
            Value::Null
        );
        assert_eq!(normalized(CellKind::Plain, Some(&json!([]))), Value::Null);
        assert_eq!(normalized(CellKind::Plain, None), Value::Null);
        let att = CellKind::Attachments;
        assert_eq!(
            normalized(
                att,
                Some(&json!([{"id": "att1", "filename": "a", "size": 1}]))
            ),
            normalized(
                att,
                Some(&json!([{"id": "att1", "filename": "a", "url": "u"}]))
            )
        );
        assert_ne!(
            normalized(att, Some(&json!([{"id": "att1", "filename": "a"}]))),
            normalized(att, Some(&json!([{"id": "att1", "filename": "b"}])))
        );
    }

    #[test]
    fn tables_are_selected_by_name_ignoring_case_beyond_ascii() {
        let schema = BaseSchema::from_raw(json!({"tables": [
            {"id": "tblA", "name": "Таблица Ä", "primaryFieldId": "fld1", "fields": [
                {"id": "fld1", "name": "Name", "type": "singleLineText"},
            ]},
        ]}))
        .unwrap();
        let selected = select_tables(&schema, &schema, &["таблица ä".to_owned()]).unwrap();
        assert_eq!(selected, Some(vec!["tblA".to_owned()]));
        assert!(select_tables(&schema, &schema, &["tblB".to_owned()]).is_err());
    }

    #[tokio::test]
    async fn merging_pairs_records_by_id() {
        let before = vec![
            record("rec1", json!({"fldA": 1})),
            record("rec2", json!({"fldA": 2})),
            record("rec4", json!({"fldA": 4})),
        ];
        let after = vec![
            record("rec2", json!({"fldA": 3})),
            record("rec3", json!({"fldA": 3})),
            record("rec4", json!({"fldA": 4})),
        ];
        let stream = |v: Vec<Record>| futures::stream::iter(v.into_iter().map(Ok::<_, ()>)).boxed();
        let mut merge = TableMerge::new(stream(before), stream(after));
        let mut seen = Vec::new();
        while let Some(pair) = merge.next().await.unwrap() {
            seen.push(match pair {
                Pair::Removed(r) => format!("-{}", r.id),
                Pair::Added(r) => format!("+{}", r.id),
                Pair::Both(b, a) => format!("={}{}", b.id, a.id == b.id),
            });
        }
        assert_eq!(seen, ["-rec1", "=rec2true", "+rec3", "=rec4true"]);
    }

    #[test]
    fn computed_fields_are_marked_and_only_shared_fields_compared() {
        let table = |fields: Value| -> TableSchema {
            serde_json::from_value(
                json!({"id": "tbl1", "name": "T", "primaryFieldId": "fldA", "fields": fields}),
            )
            .unwrap()
        };
        let before = table(json!([
            {"id": "fldA", "name": "A", "type": "number"},
            {"id": "fldF", "name": "F", "type": "formula"},
            {"id": "fldOld", "name": "Old", "type": "number"},
        ]));
        let after = table(json!([
            {"id": "fldA", "name": "A", "type": "number"},
            {"id": "fldF", "name": "F", "type": "formula"},
        ]));
        let compared = Compared::new(&before, &after, &[]);
        let changes = compared.changes(
            &record("rec1", json!({"fldA": 1, "fldF": 2, "fldOld": 1})),
            &record("rec1", json!({"fldA": 2, "fldF": 4})),
        );
        assert_eq!(changes.len(), 2);
        assert!(!changes[0].computed);
        assert_eq!(changes[0].before, json!(1));
        assert!(changes[1].computed);
    }
}
