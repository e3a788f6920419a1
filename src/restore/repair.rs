//! Settling the attachment cells the verification found unequal: files written by URL that
//! Airtable is still fetching are waited for, and files it dropped (it does so silently when
//! a URL cannot be fetched) or stored with another size are written again, by upload up to
//! 5 MB, else by a fresh URL from the original base or through staging, until every file is
//! there or a file cannot be written at all.
//!
//! It relies on the cells `verify.rs` returns (what each should hold and what the listing
//! found), and reads back only the cells it waits for, by `RECORD_ID()`, 50 records per
//! request; an upload's answer already holds the cell. Each cell is counted in the fidelity
//! report once settled, or as different when it never is.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};

use super::attachments::{CellRef, Planned};
use super::verify::{Fidelity, Unsettled};
use super::{RestoreError, Run, is_unknown_outcome, records_formula};
use crate::airtable::{ListRecordsOptions, MAX_UPLOAD_BYTES};

/// Rounds of waiting and writing again before a cell counts as different.
const ROUNDS: u32 = 10;

/// Records per `RECORD_ID()` formula when reading cells back (well under the URL limit).
const READ_CHUNK: usize = 50;

/// Where a cell stands after one repair.
enum Repaired {
    /// Every file is there.
    Equal,
    /// Airtable is fetching a file, or the outcome of a write is unknown: read it again.
    Waiting,
    /// A file cannot be written again (the reason is in the report's problems).
    GivenUp,
}

impl Run<'_> {
    /// Settles `cells` and counts each in `fidelity`.
    pub(super) async fn repair(
        &mut self,
        fidelity: &mut Fidelity,
        mut cells: Vec<Unsettled>,
    ) -> Result<(), RestoreError> {
        let mut staged = false;
        for round in 0..ROUNDS {
            let mut waiting = Vec::new();
            for mut cell in std::mem::take(&mut cells) {
                let state = if cell.is_equal() {
                    Repaired::Equal
                } else if cell.is_pending() {
                    Repaired::Waiting
                } else {
                    staged |= cell.expected[cell.equal_prefix()..]
                        .iter()
                        .any(|p| p.file.size as usize > MAX_UPLOAD_BYTES);
                    self.repair_cell(&mut cell).await?
                };
                match state {
                    Repaired::Waiting => waiting.push(cell),
                    Repaired::Equal | Repaired::GivenUp => cell.count_in(fidelity),
                }
            }
            if waiting.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250) * (round + 1)).await;
            self.read_again(&mut waiting).await?;
            cells = waiting;
        }
        for cell in cells {
            cell.count_in(fidelity);
        }
        if staged {
            self.settle_staged().await?;
        }
        Ok(())
    }

    /// Writes the cell's missing files again: files up to 5 MB by upload (appended), larger
    /// ones by a fresh URL from the original or through staging; then, when the order is not
    /// the snapshot's or the cell holds something else, one `PATCH` puts every file in place.
    async fn repair_cell(&mut self, cell: &mut Unsettled) -> Result<Repaired, RestoreError> {
        let (table, record, field) = (
            cell.target_table.clone(),
            cell.target_record.clone(),
            cell.target_field.clone(),
        );
        let (source_record, source_field) = (cell.source_record.clone(), cell.source_field.clone());
        let target = CellRef {
            table: &table,
            record: &record,
            field: &field,
            source_record: &source_record,
            source_field: &source_field,
        };
        let outcome: Result<Repaired, RestoreError> = async {
            // Each expected file: the id of a file of the cell equal to it, if any.
            let mut used = vec![false; cell.found.len()];
            let mut slots: Vec<Option<Value>> = cell
                .expected
                .iter()
                .map(|want| {
                    let (index, have) = cell.found.iter().enumerate().find(|(i, have)| {
                        !used[*i]
                            && have.filename == want.attachment.filename
                            && have.size == Some(want.file.size)
                    })?;
                    used[index] = true;
                    Some(json!({"id": have.id}))
                })
                .collect();
            for (slot, want) in slots.iter_mut().zip(&cell.expected) {
                if slot.is_some() {
                    continue;
                }
                if want.file.size as usize <= MAX_UPLOAD_BYTES {
                    let before: Vec<String> = cell.found.iter().map(|a| a.id.clone()).collect();
                    let bytes = self.stored.read_file(&want.file).await?;
                    let written = self
                        .client
                        .upload_attachment(
                            &self.base_id,
                            &record,
                            &field,
                            &want.attachment.content_type,
                            &want.attachment.filename,
                            &bytes,
                        )
                        .await?;
                    cell.found = written.attachments(&field);
                    let added = cell.found.iter().find(|a| !before.contains(&a.id));
                    *slot = added.map(|a| json!({"id": a.id}));
                } else if let Some(fresh) = self.large_file_url(cell, want).await {
                    *slot = Some(json!({"url": fresh, "filename": want.attachment.filename}));
                } else if self.options.staging.is_some() {
                    *slot = Some(self.stage(&target, want).await?);
                } else {
                    self.report.problems.push(format!(
                        "attachment {} ({} bytes) of record {} is not in the restored base: it is \
                         over 5 MB and the original base no longer holds it; pass --staging \
                         s3://bucket/prefix to restore it",
                        want.attachment.id, want.file.size, cell.source_record
                    ));
                    return Ok(Repaired::GivenUp);
                }
                self.report.attachments_repaired += 1;
            }
            let wanted: Vec<Value> = slots.into_iter().flatten().collect();
            let in_place = wanted.len() == cell.found.len()
                && wanted
                    .iter()
                    .zip(&cell.found)
                    .all(|(w, have)| w.get("id").and_then(Value::as_str) == Some(&have.id));
            if !in_place {
                cell.found = self.write_cell(&target, wanted).await?;
            }
            Ok(if cell.is_equal() {
                Repaired::Equal
            } else {
                Repaired::Waiting
            })
        }
        .await;
        match outcome {
            // The write may or may not have happened: the cell read again says.
            Err(e) if is_unknown_outcome(&e) => Ok(Repaired::Waiting),
            other => other,
        }
    }

    /// A fresh URL of a file over 5 MB from the original base, if it still holds the file.
    async fn large_file_url(&self, cell: &Unsettled, want: &Planned) -> Option<String> {
        let originals = self.originals.as_ref()?;
        let fresh = originals
            .fresh_url(
                &cell.source_table,
                &cell.source_record,
                &cell.source_field,
                &want.attachment.id,
            )
            .await?;
        (fresh.size == want.file.size).then_some(fresh.url)
    }

    /// Reads the cells of `waiting` again, 50 records per request.
    async fn read_again(&self, waiting: &mut [Unsettled]) -> Result<(), RestoreError> {
        let mut by_table: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, cell) in waiting.iter().enumerate() {
            by_table.entry(&cell.target_table).or_default().push(index);
        }
        let mut found = HashMap::new();
        for (table, indexes) in by_table {
            let mut records: Vec<&str> = indexes
                .iter()
                .map(|i| waiting[*i].target_record.as_str())
                .collect();
            records.sort_unstable();
            records.dedup();
            let mut fields: Vec<String> = indexes
                .iter()
                .map(|i| waiting[*i].target_field.clone())
                .collect();
            fields.sort_unstable();
            fields.dedup();
            for chunk in records.chunks(READ_CHUNK) {
                let formula = records_formula(chunk);
                let options = ListRecordsOptions {
                    fields: fields.clone(),
                    filter_by_formula: Some(formula),
                    ..ListRecordsOptions::default()
                };
                let mut pager = self.client.list_records(&self.base_id, table, options);
                while let Some(page) = pager.next_page().await? {
                    found.extend(page.into_iter().map(|r| (r.id.clone(), r)));
                }
            }
        }
        for cell in waiting.iter_mut() {
            if let Some(record) = found.get(&cell.target_record) {
                cell.found = record.attachments(&cell.target_field);
            }
        }
        Ok(())
    }
}
