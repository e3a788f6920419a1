//! Verifying a restore: the target base is listed again and every restored cell is compared
//! with what the snapshot says it should hold, giving a fidelity report by table and by field
//! type. URL uploads fail silently and writes can be refused per record, so a restore is only
//! trusted once this comparison passes.
//!
//! The target's records are spilled into a temporary SQLite file keyed by the original record
//! id (from the source id field), then the snapshot is streamed past them, so memory stays flat.
//!
//! An attachment cell that is not yet equal (Airtable may still be fetching a file written by
//! URL, or have dropped it) is not counted at once: it is returned as [`Unsettled`], which
//! `repair.rs` settles (waits for, or writes again) before [`Fidelity::add_files`] counts it.

use std::collections::BTreeMap;

use futures::StreamExt;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use super::attachments::Planned;
use super::journal::Journal;
use super::plan::{self, FieldPlan, Role};
use super::{RestoreError, Run};
use crate::airtable::{Attachment, ListRecordsOptions};
use crate::stored::StoredBase;

/// Examples of differences kept per table.
const EXAMPLES: usize = 10;

/// Cell counts of one group (a table, a field type, or everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CellStats {
    /// Non-empty backed-up cells that restore writes.
    pub cells: u64,
    /// Of those, equal in the target.
    pub equal: u64,
    /// Of those, different or missing in the target.
    pub different: u64,
    /// Backed-up values that cannot be written (error values, skipped fields, files not in the
    /// snapshot or over 5 MB without staging, links to records not restored).
    pub not_restorable: u64,
}

impl CellStats {
    fn add(&mut self, other: &CellStats) {
        self.cells += other.cells;
        self.equal += other.equal;
        self.different += other.different;
        self.not_restorable += other.not_restorable;
    }

    /// `equal / cells` in percent (100 when there is nothing to compare).
    pub fn percent(&self) -> f64 {
        if self.cells == 0 {
            100.0
        } else {
            100.0 * self.equal as f64 / self.cells as f64
        }
    }
}

/// One table's comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableFidelity {
    /// The table's name in the target.
    pub name: String,
    /// Records in the snapshot.
    pub records_expected: u64,
    /// Records found in the target with an original id from the snapshot.
    pub records_found: u64,
    /// Snapshot records missing from the target.
    pub missing: u64,
    /// Target records sharing an original id with another one.
    pub duplicates: u64,
    /// Target records without an original id (added by someone else).
    pub extra: u64,
    /// Cells.
    pub cells: CellStats,
    /// Attachments (each file counts once; equal means same name and size, same position).
    pub attachments: CellStats,
    /// A few differences, to show the user.
    pub examples: Vec<String>,
}

/// The whole comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Fidelity {
    /// By table.
    pub tables: Vec<TableFidelity>,
    /// By original field type.
    pub by_type: BTreeMap<String, CellStats>,
    /// All cells.
    pub cells: CellStats,
    /// All attachments.
    pub attachments: CellStats,
    /// Records in the snapshot, found, missing, duplicated.
    pub records_expected: u64,
    /// Found.
    pub records_found: u64,
    /// Missing.
    pub missing: u64,
    /// Duplicated.
    pub duplicates: u64,
}

/// An attachment cell the listing found different or still being fetched, with what it
/// should hold.
#[derive(Debug, Clone)]
pub(super) struct Unsettled {
    /// Its table's index in [`Fidelity::tables`].
    pub(super) table: usize,
    /// The field's original type and name.
    pub(super) source_type: String,
    pub(super) field_name: String,
    /// Original table, record and field ids.
    pub(super) source_table: String,
    pub(super) source_record: String,
    pub(super) source_field: String,
    /// Target table, record and field ids.
    pub(super) target_table: String,
    pub(super) target_record: String,
    pub(super) target_field: String,
    /// The files it should hold, in order.
    pub(super) expected: Vec<Planned>,
    /// Files of the snapshot's cell that cannot be written.
    pub(super) not_restorable: u64,
    /// What the target holds now.
    pub(super) found: Vec<Attachment>,
}

impl Unsettled {
    /// Whether every file is there, in order, with its name and size.
    pub(super) fn is_equal(&self) -> bool {
        self.found.len() == self.expected.len() && self.equal_prefix() == self.expected.len()
    }

    /// How many files from the start are there with their name and size.
    pub(super) fn equal_prefix(&self) -> usize {
        self.found
            .iter()
            .zip(&self.expected)
            .take_while(|(have, want)| {
                have.filename == want.attachment.filename && have.size == Some(want.file.size)
            })
            .count()
    }

    /// Counts the cell in `fidelity` as it is now.
    pub(super) fn count_in(&self, fidelity: &mut Fidelity) {
        let found: Vec<(&str, Option<u64>)> = self
            .found
            .iter()
            .map(|a| (a.filename.as_str(), a.size))
            .collect();
        let equal = match found.len() > self.expected.len() {
            true => 0,
            false => self
                .expected
                .iter()
                .zip(&found)
                .filter(|(want, have)| {
                    **have == (want.attachment.filename.as_str(), Some(want.file.size))
                })
                .count(),
        };
        let expected = self.expected.len() as u64;
        fidelity.add_files(
            self.table,
            &self.source_type,
            (expected, equal as u64, self.not_restorable),
            || {
                format!(
                    "record {}, field `{}`: {equal} of {expected} files match",
                    self.source_record, self.field_name
                )
            },
        );
    }

    /// Whether Airtable is still fetching a file of the cell (listed without a size).
    pub(super) fn is_pending(&self) -> bool {
        self.found.iter().any(|a| a.size.is_none())
    }
}

impl Fidelity {
    /// Counts one attachment cell: `expected` files, `equal` of them in place.
    pub(super) fn add_files(
        &mut self,
        table: usize,
        source_type: &str,
        (expected, equal, not_restorable): (u64, u64, u64),
        example: impl FnOnce() -> String,
    ) {
        let result = &mut self.tables[table];
        let files = CellStats {
            cells: expected,
            equal,
            different: expected - equal,
            not_restorable,
        };
        result.attachments.add(&files);
        self.attachments.add(&files);
        let mut delta = CellStats {
            not_restorable: u64::from(not_restorable > 0),
            ..CellStats::default()
        };
        if expected > 0 {
            delta.cells = 1;
            if equal == expected {
                delta.equal = 1;
            } else {
                delta.different = 1;
                if result.examples.len() < EXAMPLES {
                    result.examples.push(example());
                }
            }
        }
        result.cells.add(&delta);
        self.cells.add(&delta);
        self.by_type
            .entry(source_type.to_owned())
            .or_default()
            .add(&delta);
    }

    /// Every record once, every restorable cell and file equal.
    pub fn is_perfect(&self) -> bool {
        self.missing == 0
            && self.duplicates == 0
            && self.cells.different == 0
            && self.attachments.different == 0
    }
}

/// Compares the target of `run` with its snapshot. Attachment cells that are not equal yet
/// are returned apart, uncounted.
pub(super) async fn verify(run: &Run<'_>) -> Result<(Fidelity, Vec<Unsettled>), RestoreError> {
    let (stored, client, base_id, plan) = (run.stored, run.client, &run.base_id, &run.plan);
    let (targets, journal) = (&run.targets, &*run.journal);
    let staging = run.options.staging.is_some() || run.url_source().is_some();
    let progress = &*run.progress;
    let mut unsettled = Vec::new();
    let sql = |e: rusqlite::Error| RestoreError::Journal(e.into());
    let mut fidelity = Fidelity::default();
    let dir = tempfile::tempdir()
        .map_err(|e| RestoreError::Invalid(format!("cannot create a temporary directory: {e}")))?;
    let spill = Connection::open(dir.path().join("verify.sqlite")).map_err(sql)?;
    spill
        .execute_batch(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
             CREATE TABLE target(source TEXT PRIMARY KEY, id TEXT NOT NULL, record TEXT NOT NULL,
                                 copies INTEGER NOT NULL);",
        )
        .map_err(sql)?;
    for table in &plan.tables {
        let (Some(target_ids), Some(stored_table)) = (
            targets.get(&table.source_id),
            stored.table(&table.source_id),
        ) else {
            continue;
        };
        let (table_id, source_field, field_ids) = (
            &target_ids.table,
            &target_ids.source_id_field,
            &target_ids.fields,
        );
        let mut result = TableFidelity {
            name: table.name.clone(),
            ..TableFidelity::default()
        };
        spill.execute("DELETE FROM target", []).map_err(sql)?;
        let mut pager = client.list_records(base_id, table_id, ListRecordsOptions::default());
        while let Some(page) = pager.next_page().await? {
            // One transaction per page: the spill is a scratch file, but row-by-row commits
            // would still cost a journal write each.
            let tx = spill.unchecked_transaction().map_err(sql)?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO target(source, id, record, copies) VALUES (?1, ?2, ?3, 1)
                         ON CONFLICT(source) DO UPDATE SET copies = copies + 1",
                    )
                    .map_err(sql)?;
                for record in page {
                    let Some(source) = record.fields.get(source_field).and_then(Value::as_str)
                    else {
                        result.extra += 1;
                        continue;
                    };
                    let text = serde_json::to_string(&record.fields).expect("JSON serializes");
                    insert
                        .execute(params![source, record.id, text])
                        .map_err(sql)?;
                }
            }
            tx.commit().map_err(sql)?;
        }
        result.duplicates = spill
            .query_row("SELECT COALESCE(SUM(copies - 1), 0) FROM target", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(sql)? as u64;

        let table_index = fidelity.tables.len();
        fidelity.tables.push(TableFidelity::default());
        let mut settled = Vec::new();
        let mut records = stored.records(stored_table);
        while let Some(record) = records.next().await {
            let record = record?;
            result.records_expected += 1;
            progress.items(1);
            let found: Option<(String, String)> = spill
                .prepare_cached("SELECT id, record FROM target WHERE source = ?1")
                .map_err(sql)?
                .query_row(params![record.id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(sql)?;
            let Some((target_id, found)) = found else {
                result.missing += 1;
                if result.examples.len() < EXAMPLES {
                    result
                        .examples
                        .push(format!("record {} is missing", record.id));
                }
                continue;
            };
            result.records_found += 1;
            let target: serde_json::Map<String, Value> =
                serde_json::from_str(&found).unwrap_or_default();
            for field in &table.fields {
                let source_cell = record.fields.get(&field.source_id);
                let target_cell = field_ids
                    .get(&field.source_id)
                    .and_then(|id| target.get(id));
                let outcome =
                    compare(stored, journal, field, source_cell, target_cell, staging).await?;
                let mut delta = CellStats::default();
                match outcome {
                    Outcome::Nothing => {}
                    Outcome::NotRestorable => delta.not_restorable = 1,
                    Outcome::Equal => {
                        delta.cells = 1;
                        delta.equal = 1;
                    }
                    Outcome::Different => {
                        delta.cells = 1;
                        delta.different = 1;
                        if result.examples.len() < EXAMPLES {
                            result.examples.push(format!(
                                "record {}, field `{}`: expected {}, found {}",
                                record.id,
                                field.name,
                                short(source_cell),
                                short(target_cell)
                            ));
                        }
                    }
                    Outcome::Files {
                        expected,
                        not_restorable,
                    } => {
                        let cell = Unsettled {
                            table: table_index,
                            source_type: field.source_type.clone(),
                            field_name: field.name.clone(),
                            source_table: table.source_id.clone(),
                            source_record: record.id.clone(),
                            source_field: field.source_id.clone(),
                            target_table: table_id.clone(),
                            target_record: target_id.clone(),
                            target_field: field_ids
                                .get(&field.source_id)
                                .cloned()
                                .unwrap_or_default(),
                            found: target_cell
                                .map(Attachment::list_from_cell)
                                .unwrap_or_default(),
                            expected,
                            not_restorable,
                        };
                        if cell.is_equal() || cell.target_field.is_empty() {
                            settled.push(cell);
                        } else {
                            unsettled.push(cell);
                        }
                        continue;
                    }
                }
                fidelity
                    .by_type
                    .entry(field.source_type.clone())
                    .or_default()
                    .add(&delta);
                result.cells.add(&delta);
            }
        }
        fidelity.records_expected += result.records_expected;
        fidelity.records_found += result.records_found;
        fidelity.missing += result.missing;
        fidelity.duplicates += result.duplicates;
        fidelity.cells.add(&result.cells);
        fidelity.attachments.add(&result.attachments);
        fidelity.tables[table_index] = result;
        for cell in settled {
            cell.count_in(&mut fidelity);
        }
    }
    Ok((fidelity, unsettled))
}

enum Outcome {
    /// Empty in the snapshot and nothing to compare.
    Nothing,
    NotRestorable,
    Equal,
    Different,
    Files {
        expected: Vec<Planned>,
        not_restorable: u64,
    },
}

async fn compare(
    stored: &StoredBase,
    journal: &Journal,
    field: &FieldPlan,
    source: Option<&Value>,
    target: Option<&Value>,
    staging: bool,
) -> Result<Outcome, RestoreError> {
    let source = source.filter(|v| !v.is_null());
    match field.role {
        Role::Skipped => Ok(if source.is_some() {
            Outcome::NotRestorable
        } else {
            Outcome::Nothing
        }),
        Role::Cells => {
            let expected = source.and_then(|cell| plan::convert(field.conversion, cell));
            Ok(match (source, expected) {
                (None, _) => Outcome::Nothing,
                (Some(_), None) => Outcome::NotRestorable,
                (Some(_), Some(expected)) => match target {
                    Some(found) if contains(&expected, found) => Outcome::Equal,
                    _ => Outcome::Different,
                },
            })
        }
        Role::Link | Role::Inverse => {
            let Some(Value::Array(linked)) = source else {
                return Ok(Outcome::Nothing);
            };
            let mut expected = Vec::new();
            let mut unmapped = false;
            for id in linked.iter().filter_map(Value::as_str) {
                match journal.target_of(id)? {
                    Some(new) => expected.push(new),
                    None => unmapped = true,
                }
            }
            let found: Vec<String> = target
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let equal = if field.role == Role::Link {
                expected == found
            } else {
                let mut a = expected.clone();
                let mut b = found.clone();
                a.sort();
                b.sort();
                a == b
            };
            Ok(if expected.is_empty() && unmapped {
                Outcome::NotRestorable
            } else if equal {
                Outcome::Equal
            } else {
                Outcome::Different
            })
        }
        Role::Attachments => {
            if source.is_none() {
                return Ok(Outcome::Nothing);
            }
            let mut expected = Vec::new();
            let mut not_restorable = 0;
            for attachment in super::cell_attachments(source) {
                match stored.attachment(&attachment.id).await? {
                    Some(file) if super::restorable(&file, staging) => {
                        expected.push(Planned { attachment, file });
                    }
                    _ => not_restorable += 1,
                }
            }
            Ok(Outcome::Files {
                expected,
                not_restorable,
            })
        }
    }
}

/// Whether `found` holds `expected`: numbers compared as numbers, objects on the keys of
/// `expected` only (a collaborator written as `{id}` reads back with its name and email).
fn contains(expected: &Value, found: &Value) -> bool {
    match (expected, found) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| contains(x, y))
        }
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .all(|(key, value)| b.get(key).is_some_and(|other| contains(value, other))),
        (a, b) => a == b,
    }
}

fn short(value: Option<&Value>) -> String {
    let text = value
        .map(Value::to_string)
        .unwrap_or_else(|| "nothing".into());
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collaborators_and_numbers_compare_on_what_was_written() {
        assert!(contains(
            &json!({"id": "usr1"}),
            &json!({"id": "usr1", "name": "A"})
        ));
        assert!(!contains(&json!({"id": "usr1"}), &json!({"id": "usr2"})));
        assert!(contains(&json!(2.5), &json!(2.5000000000001)));
        assert!(!contains(&json!(2.5), &json!(2.6)));
        assert!(!contains(&json!(["a"]), &json!(["a", "b"])));
    }
}
