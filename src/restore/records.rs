//! Pass 1, the records: every record of the planned tables as upserts of 10 records keyed on
//! the original record id (written into the source id field), a few requests in flight,
//! tables in the [write order](super::order), so that each create request also carries:
//!
//! - the record's links to tables already written (Airtable fills the inverse side); only
//!   the link fields the order defers (self-links, cycles) wait for the links pass;
//! - its attachment cells as `{url, filename}`, when the original base still holds every file
//!   of the cell with the same id and size ([`originals`](super::originals)); the verification
//!   finds any file Airtable failed to fetch and uploads it. Other cells wait for the
//!   attachments pass.
//!
//! Upserts make a resent batch harmless, and records the journal already maps are not sent
//! again. When Airtable refuses a batch, its records are written one at a time, and the one
//! refused is reported instead of stopping the restore. The old → new record id map, whether
//! each record's links are all written, and the cells written by URL go to the journal in one
//! transaction per batch.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};

use super::journal::Created;
use super::originals::FreshUrls;
use super::{RestoreError, Role, Run, WRITE_CONCURRENCY, cell_attachments, non_empty, plan};
use crate::airtable::{AirtableError, MAX_RECORDS_PER_WRITE, NewRecord, Record};

/// What a table's create requests write, in target ids.
struct TableWrite {
    /// (original field, target field, conversion) of the plain cells.
    cells: Vec<(String, String, plan::Conversion)>,
    /// (original field, target field) of the created link sides written in the create.
    links: Vec<(String, String)>,
    /// Original ids of the created link sides the links pass writes.
    deferred: Vec<String>,
    /// (original field, target field) of the attachment fields.
    attachments: Vec<(String, String)>,
    /// The target's source id field, the upsert key.
    merge_on: String,
}

/// One record's create, with what the journal keeps of it.
struct Prepared {
    record: NewRecord,
    created: Created,
    /// Links to records the restore did not create.
    unmapped: u64,
    /// Files written by URL.
    by_url: u64,
}

impl Run<'_> {
    /// Pass 1: every record, with its links to tables already written and its files by URL
    /// where the original holds them, as idempotent upserts.
    pub(super) async fn records(&mut self) -> Result<(), RestoreError> {
        self.progress
            .phase("records", Some(self.report.workload.records));
        let plan = self.plan.clone();
        let attachment_fields = |table: &plan::TablePlan| -> Vec<String> {
            table
                .fields
                .iter()
                .filter(|f| f.role == Role::Attachments)
                .map(|f| f.source_id.clone())
                .collect()
        };
        let mut prefetch = self.url_source().map(|originals| {
            originals.prefetch(
                self.order
                    .tables
                    .iter()
                    .filter_map(|t| plan.table(t))
                    .map(|t| (t.source_id.clone(), attachment_fields(t)))
                    .filter(|(_, fields)| !fields.is_empty())
                    .collect(),
            )
        });
        let mut unmapped_by_table: Vec<(String, u64)> = Vec::new();
        for table_id in self.order.tables.clone() {
            let Some(table) = plan.table(&table_id) else {
                continue;
            };
            let Some(stored_table) = self.stored.table(&table.source_id) else {
                continue;
            };
            let fresh = match &mut prefetch {
                Some(prefetch) => prefetch.take(&table_id, &attachment_fields(table)).await,
                None => FreshUrls::default(),
            };
            let layout = self.table_write(table);
            let journal = self.journal.clone();
            let pending = self.stored.records(stored_table).try_filter_map(|record| {
                let journal = journal.clone();
                async move {
                    Ok(match journal.target_of(&record.id) {
                        Ok(Some(_)) => None,
                        _ => Some(record),
                    })
                }
            });
            let (mut written, mut unmapped, mut by_url) = (0u64, 0u64, 0u64);
            let mut refused = Vec::new();
            {
                let (client, base) = (self.client, self.base_id.clone());
                let (table_target, this, layout, fresh) = (
                    self.targets[&table_id].table.clone(),
                    &*self,
                    &layout,
                    &fresh,
                );
                let batches = pending
                    .try_chunks(MAX_RECORDS_PER_WRITE)
                    .map_err(|e| RestoreError::from(e.1))
                    .map_ok(|batch| {
                        let (base, table_target) = (base.clone(), table_target.clone());
                        async move {
                            let mut prepared = Vec::with_capacity(batch.len());
                            for record in &batch {
                                prepared.push(this.prepare(layout, fresh, record).await?);
                            }
                            write_batch(client, &base, &table_target, &layout.merge_on, prepared)
                                .await
                        }
                    })
                    .try_buffered(WRITE_CONCURRENCY);
                let mut batches = std::pin::pin!(batches);
                while let Some(outcome) = batches.next().await {
                    let outcome = outcome?;
                    refused.extend(outcome.refused);
                    self.journal.add_created(&outcome.created)?;
                    written += outcome.created.len() as u64;
                    unmapped += outcome.unmapped;
                    by_url += outcome.by_url;
                    self.progress.items(outcome.created.len() as u64);
                }
            }
            self.report.problems.extend(refused);
            self.report.records_written += written;
            self.report.attachments_by_url += by_url;
            unmapped_by_table.push((table.source_name.clone(), unmapped));
        }
        for (table, unmapped) in unmapped_by_table.into_iter().filter(|(_, n)| *n > 0) {
            self.report.problems.push(format!(
                "table `{table}`: {unmapped} links point to records that are not in the restore"
            ));
        }
        let total = self.journal.record_count()?;
        self.report.records_resumed = total.saturating_sub(self.report.records_written);
        self.progress.items(self.report.records_resumed);
        Ok(())
    }

    /// The fields of `table` its create requests write.
    fn table_write(&self, table: &plan::TablePlan) -> TableWrite {
        let ids = &self.targets[&table.source_id];
        let target = |source: &str| ids.fields.get(source).cloned();
        let planned = |id: &str| self.plan.table(id).is_some();
        let own_links = self
            .plan
            .links
            .iter()
            .filter(|l| l.table == table.source_id);
        TableWrite {
            cells: table
                .fields
                .iter()
                .filter(|f| f.role == Role::Cells)
                .filter_map(|f| Some((f.source_id.clone(), target(&f.source_id)?, f.conversion)))
                .collect(),
            links: own_links
                .clone()
                .filter(|l| self.order.in_create(&l.field) && planned(&l.linked_table))
                .filter_map(|l| Some((l.field.clone(), target(&l.field)?)))
                .collect(),
            deferred: own_links
                .filter(|l| !self.order.in_create(&l.field))
                .map(|l| l.field.clone())
                .collect(),
            attachments: table
                .fields
                .iter()
                .filter(|f| f.role == Role::Attachments)
                .filter_map(|f| Some((f.source_id.clone(), target(&f.source_id)?)))
                .collect(),
            merge_on: ids.source_id_field.clone(),
        }
    }

    /// The create of one record: its cells, its links to records already created, and its
    /// attachment cells whose every file has a fresh URL of the same size.
    async fn prepare(
        &self,
        layout: &TableWrite,
        fresh: &FreshUrls,
        record: &Record,
    ) -> Result<Prepared, RestoreError> {
        let mut fields = Map::new();
        for (source, target, conversion) in &layout.cells {
            if let Some(value) = record
                .fields
                .get(source)
                .and_then(|c| plan::convert(*conversion, c))
            {
                fields.insert(target.clone(), value);
            }
        }
        let mut unmapped = 0;
        for (source, target) in &layout.links {
            let Some(Value::Array(linked)) = record.fields.get(source) else {
                continue;
            };
            let mut mapped = Vec::with_capacity(linked.len());
            for id in linked.iter().filter_map(Value::as_str) {
                match self.journal.target_of(id)? {
                    Some(new) => mapped.push(Value::String(new)),
                    None => unmapped += 1,
                }
            }
            if !mapped.is_empty() {
                fields.insert(target.clone(), Value::Array(mapped));
            }
        }
        let mut url_cells = Vec::new();
        let mut by_url = 0;
        if !fresh.by_id.is_empty() {
            for (source, target) in &layout.attachments {
                let mut cell = Vec::new();
                let mut complete = true;
                for attachment in cell_attachments(record.fields.get(source)) {
                    let Some(file) = self.stored.attachment(&attachment.id).await? else {
                        continue; // not in the snapshot: counted as missing
                    };
                    match fresh.url(&attachment.id, file.size) {
                        Some(url) => {
                            cell.push(json!({"url": url, "filename": attachment.filename}))
                        }
                        None => complete = false,
                    }
                }
                if complete && !cell.is_empty() {
                    by_url += cell.len() as u64;
                    url_cells.push((source.clone(), cell.len() as u64));
                    fields.insert(target.clone(), Value::Array(cell));
                }
            }
        }
        let links_done = !layout
            .deferred
            .iter()
            .any(|f| non_empty(record.fields.get(f)));
        fields.insert(layout.merge_on.clone(), Value::String(record.id.clone()));
        Ok(Prepared {
            record: NewRecord { fields },
            created: Created {
                source: record.id.clone(),
                target: String::new(),
                links_done,
                url_cells,
            },
            unmapped,
            by_url,
        })
    }
}

/// What one batch wrote.
struct BatchOutcome {
    created: Vec<Created>,
    refused: Vec<String>,
    unmapped: u64,
    by_url: u64,
}

/// Upserts one batch; when Airtable refuses it, writes its records one at a time and reports
/// the one refused.
async fn write_batch(
    client: &crate::airtable::Client,
    base: &str,
    table: &str,
    merge_on: &str,
    prepared: Vec<Prepared>,
) -> Result<BatchOutcome, RestoreError> {
    let merge = [merge_on];
    let records: Vec<NewRecord> = prepared.iter().map(|p| p.record.clone()).collect();
    let mut outcome = BatchOutcome {
        created: Vec::new(),
        refused: Vec::new(),
        unmapped: prepared.iter().map(|p| p.unmapped).sum(),
        by_url: 0,
    };
    let written = match client
        .upsert_records(base, table, &records, &merge, false)
        .await
    {
        Ok(written) => written,
        Err(AirtableError::InvalidRequest { .. }) => {
            let mut written = Vec::new();
            for p in &prepared {
                match client
                    .upsert_records(base, table, std::slice::from_ref(&p.record), &merge, false)
                    .await
                {
                    Ok(one) => written.extend(one),
                    Err(AirtableError::InvalidRequest { api, .. }) => outcome.refused.push(
                        format!("record {} was refused by Airtable: {api}", p.created.source),
                    ),
                    Err(e) => return Err(e.into()),
                }
            }
            written
        }
        Err(e) => return Err(e.into()),
    };
    let targets = target_ids(&written, merge_on);
    for p in prepared {
        if let Some(target) = targets.get(p.created.source.as_str()) {
            outcome.by_url += p.by_url;
            outcome.created.push(Created {
                target: (*target).to_owned(),
                ..p.created
            });
        }
    }
    Ok(outcome)
}

/// Original id → new id of the written records, through the source id field.
fn target_ids<'a>(written: &'a [Record], source_field: &str) -> HashMap<&'a str, &'a str> {
    written
        .iter()
        .filter_map(|r| Some((r.fields.get(source_field)?.as_str()?, r.id.as_str())))
        .collect()
}
