//! The attachments pass: every attachment cell's files, in cell order, a few cells at a time.
//! Files up to 5 MB go through `uploadAttachment`, one request each; larger ones are written
//! to the staging store, whose signed URL Airtable fetches (checked afterwards, in
//! `staged.rs`). A cell an earlier run started, or one after an upload whose outcome is
//! unknown, is re-read and cut back to the plan's prefix before anything more is added, so no
//! file lands twice.
//!
//! It relies on the journal's old → new record id map from pass 1 and on the target field ids
//! of the schema step, and records in the journal how far each cell got.

use std::time::Duration;

use futures::TryStreamExt;
use serde_json::{Map, Value, json};

use super::{
    RestoreError, Role, Run, StoredAttachment, TargetIds, WRITE_CONCURRENCY, cell_attachments,
    is_unknown_outcome, non_empty, restorable,
};
use crate::airtable::{Attachment, MAX_UPLOAD_BYTES, RecordUpdate};
use crate::stored::StoredFile;

/// How long a staged file's signed URL stays valid.
const STAGING_URL_TTL: Duration = Duration::from_secs(6 * 3600);

/// An attachment cell in the target, with the original record and field it restores.
pub(super) struct CellRef<'a> {
    pub(super) table: &'a str,
    pub(super) record: &'a str,
    pub(super) field: &'a str,
    pub(super) source_record: &'a str,
    pub(super) source_field: &'a str,
}

/// One attachment to put in a cell.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) attachment: StoredAttachment,
    pub(super) file: StoredFile,
}

#[derive(Debug, Default)]
struct CellOutcome {
    uploaded: u64,
    staged: u64,
    problems: Vec<String>,
}

impl Run<'_> {
    /// Attachments: every cell's files, in order.
    pub(super) async fn attachments(&mut self) -> Result<(), RestoreError> {
        let total = self.report.workload.uploads
            + if self.options.staging.is_some() {
                self.report.workload.large
            } else {
                0
            };
        self.progress.phase("attachments", Some(total));
        let plan = self.plan.clone();
        for table in &plan.tables {
            let fields: Vec<String> = table
                .fields
                .iter()
                .filter(|f| f.role == Role::Attachments)
                .map(|f| f.source_id.clone())
                .collect();
            if fields.is_empty() {
                continue;
            }
            let Some(stored_table) = self.stored.table(&table.source_id) else {
                continue;
            };
            let ids = self.targets[&table.source_id].clone();
            let this = &*self;
            let cells = this
                .stored
                .records(stored_table)
                .map_err(RestoreError::from)
                .map_ok(|record| {
                    futures::stream::iter(
                        fields
                            .iter()
                            .filter(|f| non_empty(record.fields.get(f.as_str())))
                            .map(|f| {
                                Ok::<_, RestoreError>((
                                    record.id.clone(),
                                    f.clone(),
                                    cell_attachments(record.fields.get(f.as_str())),
                                ))
                            })
                            .collect::<Vec<_>>(),
                    )
                })
                .try_flatten()
                .map_ok(|(record, field, attachments)| {
                    let ids = &ids;
                    async move { this.fill_cell(ids, &record, &field, attachments).await }
                })
                .try_buffer_unordered(WRITE_CONCURRENCY);
            let outcomes: Vec<CellOutcome> = cells.try_collect().await?;
            for outcome in outcomes {
                self.report.attachments_uploaded += outcome.uploaded;
                self.report.attachments_staged += outcome.staged;
                self.report.problems.extend(outcome.problems);
            }
        }
        Ok(())
    }

    /// Fills one attachment cell, resuming where an earlier run stopped.
    async fn fill_cell(
        &self,
        ids: &TargetIds,
        source_record: &str,
        field: &str,
        attachments: Vec<StoredAttachment>,
    ) -> Result<CellOutcome, RestoreError> {
        let mut outcome = CellOutcome::default();
        let journal_state = self.journal.cell(source_record, field)?;
        if let Some((_, true)) = journal_state {
            return Ok(outcome);
        }
        let Some(record_id) = self.journal.target_of(source_record)? else {
            outcome.problems.push(format!(
                "record {source_record} was not created, so its attachments were not restored"
            ));
            return Ok(outcome);
        };
        let Some(field_id) = ids.fields.get(field).cloned() else {
            return Ok(outcome);
        };
        // What goes in the cell, in order: files the snapshot holds and that can be written.
        let mut planned = Vec::new();
        for attachment in attachments {
            let Some(file) = self.stored.attachment(&attachment.id).await? else {
                continue; // counted in the workload's `missing`
            };
            if !restorable(&file, self.options.staging.is_some()) {
                continue; // reported once for the run
            }
            planned.push(Planned { attachment, file });
        }
        // A cell an earlier run started may hold more than the journal says: re-read it.
        let cell = CellRef {
            table: &ids.table,
            record: &record_id,
            field: &field_id,
            source_record,
            source_field: field,
        };
        let mut current = match journal_state {
            Some(_) => self.reconcile_cell(&cell, &planned).await?,
            None => Vec::new(),
        };
        self.journal
            .set_cell(source_record, field, current.len() as u64, false)?;
        let mut unknown_outcomes = 0;
        while current.len() < planned.len() {
            let index = current.len();
            let written = self.add_to_cell(&cell, &current, &planned[index]).await;
            match written {
                Ok((cell_now, staged)) => {
                    if staged {
                        outcome.staged += 1;
                    } else {
                        outcome.uploaded += 1;
                    }
                    current = cell_now;
                    if current.len() <= index {
                        return Err(RestoreError::Invalid(format!(
                            "Airtable did not keep the file `{}` added to record {record_id}; \
                             run the restore again",
                            planned[index].attachment.filename
                        )));
                    }
                    self.journal
                        .set_cell(source_record, field, current.len() as u64, false)?;
                    self.progress.items(1);
                }
                // The upload may or may not have happened (a connection cut after sending):
                // the cell itself says.
                Err(e) if is_unknown_outcome(&e) && unknown_outcomes < 5 => {
                    unknown_outcomes += 1;
                    current = self.reconcile_cell(&cell, &planned).await?;
                    self.journal
                        .set_cell(source_record, field, current.len() as u64, false)?;
                }
                Err(e) => return Err(e),
            }
        }
        self.journal
            .set_cell(source_record, field, planned.len() as u64, true)?;
        Ok(outcome)
    }

    /// Re-reads a cell and keeps the files that match the plan's prefix (same name, and same
    /// size once Airtable knows it); anything after them is removed. Returns what stays.
    async fn reconcile_cell(
        &self,
        cell: &CellRef<'_>,
        planned: &[Planned],
    ) -> Result<Vec<Attachment>, RestoreError> {
        let record = self
            .client
            .get_record(&self.base_id, cell.table, cell.record)
            .await?;
        let mut current = record.attachments(cell.field);
        let matching = current
            .iter()
            .zip(planned)
            .take_while(|(have, want)| {
                have.filename == want.attachment.filename
                    && have.size.is_none_or(|size| size == want.file.size)
            })
            .count();
        if matching < current.len() {
            current.truncate(matching);
            self.set_cell(cell, &current, None).await?;
        }
        Ok(current)
    }

    /// Appends one file to a cell: directly up to 5 MB, else through staging. Returns the cell
    /// as Airtable answered and whether the file went through staging.
    pub(super) async fn add_to_cell(
        &self,
        cell: &CellRef<'_>,
        current: &[Attachment],
        want: &Planned,
    ) -> Result<(Vec<Attachment>, bool), RestoreError> {
        if want.file.size as usize <= MAX_UPLOAD_BYTES {
            let bytes = self.stored.read_file(&want.file).await?;
            let record = self
                .client
                .upload_attachment(
                    &self.base_id,
                    cell.record,
                    cell.field,
                    &want.attachment.content_type,
                    &want.attachment.filename,
                    &bytes,
                )
                .await?;
            return Ok((record.attachments(cell.field), false));
        }
        let added = self.stage(cell, want).await?;
        let written = self.set_cell(cell, current, Some(added)).await?;
        Ok((written, true))
    }

    /// Puts a file in the staging store and returns the `{url, filename}` that writes it.
    pub(super) async fn stage(
        &self,
        cell: &CellRef<'_>,
        want: &Planned,
    ) -> Result<Value, RestoreError> {
        let Some(staging) = &self.options.staging else {
            return Err(RestoreError::Invalid("a large file needs --staging".into()));
        };
        let path = format!("airback-staging/{}/{}", self.stored.id, want.attachment.id);
        staging
            .write_stream(&path, self.stored.file_bytes(&want.file))
            .await?;
        self.journal
            .add_staged(&path, cell.source_record, cell.source_field)?;
        let url = staging.presign_read(&path, STAGING_URL_TTL).await?;
        Ok(json!({"url": url, "filename": want.attachment.filename}))
    }

    /// Sets a cell to `keep` (by id) plus, optionally, one new `{url, filename}` object. A
    /// `PATCH` replaces the whole cell, so sending it twice leaves one copy: it is idempotent.
    pub(super) async fn set_cell(
        &self,
        cell: &CellRef<'_>,
        keep: &[Attachment],
        added: Option<Value>,
    ) -> Result<Vec<Attachment>, RestoreError> {
        let mut value: Vec<Value> = keep.iter().map(|a| json!({"id": a.id})).collect();
        value.extend(added);
        self.write_cell(cell, value).await
    }

    /// Sets a cell to `items`: `{id}` keeps a file of the cell, `{url, filename}` adds one.
    pub(super) async fn write_cell(
        &self,
        cell: &CellRef<'_>,
        value: Vec<Value>,
    ) -> Result<Vec<Attachment>, RestoreError> {
        let update = RecordUpdate {
            id: cell.record.to_owned(),
            fields: Map::from_iter([(cell.field.to_owned(), Value::Array(value))]),
        };
        let written = self
            .client
            .update_records(&self.base_id, cell.table, &[update], false)
            .await?;
        Ok(written
            .first()
            .map(|r| r.attachments(cell.field))
            .unwrap_or_default())
    }
}
