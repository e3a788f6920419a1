//! Pass 1, the records: every record of the planned tables, without typecast, links or
//! attachments, as upserts of 10 records keyed on the original record id (written into the
//! source id field), a few requests in flight. Upserts make a resent batch harmless; records
//! the journal already maps are not sent again. When Airtable refuses a batch, its records are
//! written one at a time, and the one refused is reported instead of stopping the restore.
//!
//! It relies on `Run::targets` from the schema step, and writes the old → new record id map
//! into the journal, which the attachment and link passes read.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use super::{RestoreError, Role, Run, WRITE_CONCURRENCY, plan};
use crate::airtable::{AirtableError, MAX_RECORDS_PER_WRITE, NewRecord, Record};

impl Run<'_> {
    /// Pass 1: every record, without links and attachments, as idempotent upserts.
    pub(super) async fn records(&mut self) -> Result<(), RestoreError> {
        self.progress
            .phase("records", Some(self.report.workload.records));
        let plan = self.plan.clone();
        for table in &plan.tables {
            let Some(stored_table) = self.stored.table(&table.source_id) else {
                continue;
            };
            let ids = self.targets[&table.source_id].clone();
            let writable: Vec<(String, String, plan::Conversion)> = table
                .fields
                .iter()
                .filter(|f| f.role == Role::Cells)
                .filter_map(|f| {
                    Some((
                        f.source_id.clone(),
                        ids.fields.get(&f.source_id)?.clone(),
                        f.conversion,
                    ))
                })
                .collect();
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
            let merge_on = ids.source_id_field.clone();
            let client = self.client;
            let base = self.base_id.clone();
            let table_id = ids.table.clone();
            let batches = pending
                .try_chunks(MAX_RECORDS_PER_WRITE)
                .map_err(|e| RestoreError::from(e.1))
                .map_ok(|batch| {
                    let records: Vec<NewRecord> = batch
                        .iter()
                        .map(|record| {
                            let mut fields = Map::new();
                            for (source, target, conversion) in &writable {
                                if let Some(value) = record
                                    .fields
                                    .get(source)
                                    .and_then(|c| plan::convert(*conversion, c))
                                {
                                    fields.insert(target.clone(), value);
                                }
                            }
                            fields.insert(merge_on.clone(), Value::String(record.id.clone()));
                            NewRecord { fields }
                        })
                        .collect();
                    let sources: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
                    let merge_on = merge_on.clone();
                    let base = base.clone();
                    let table_id = table_id.clone();
                    async move {
                        let merge = [merge_on.as_str()];
                        match client
                            .upsert_records(&base, &table_id, &records, &merge, false)
                            .await
                        {
                            Ok(written) => {
                                Ok((pair_ids(&sources, &written, &merge_on), Vec::new()))
                            }
                            // One bad record fails its whole batch: write them one at a time to
                            // find it, and report it instead of stopping the restore.
                            Err(AirtableError::InvalidRequest { .. }) => {
                                let mut pairs = Vec::new();
                                let mut refused = Vec::new();
                                for (record, source) in records.iter().zip(&sources) {
                                    match client
                                        .upsert_records(
                                            &base,
                                            &table_id,
                                            std::slice::from_ref(record),
                                            &merge,
                                            false,
                                        )
                                        .await
                                    {
                                        Ok(written) => pairs.extend(pair_ids(
                                            std::slice::from_ref(source),
                                            &written,
                                            &merge_on,
                                        )),
                                        Err(AirtableError::InvalidRequest { api, .. }) => {
                                            refused.push(format!(
                                                "record {source} was refused by Airtable: {api}"
                                            ));
                                        }
                                        Err(e) => return Err(e.into()),
                                    }
                                }
                                Ok((pairs, refused))
                            }
                            Err(e) => Err(RestoreError::from(e)),
                        }
                    }
                })
                .try_buffered(WRITE_CONCURRENCY);
            let mut batches = std::pin::pin!(batches);
            let mut written = 0u64;
            while let Some(outcome) = batches.next().await {
                let (pairs, refused) = outcome?;
                self.report.problems.extend(refused);
                self.journal.add_records(&pairs)?;
                written += pairs.len() as u64;
                self.progress.items(pairs.len() as u64);
            }
            self.report.records_written += written;
        }
        let total = self.journal.record_count()?;
        self.report.records_resumed = total.saturating_sub(self.report.records_written);
        self.progress.items(self.report.records_resumed);
        Ok(())
    }
}

/// (original id, new id) for each written record, matched through the source id field.
fn pair_ids(sources: &[String], written: &[Record], source_field: &str) -> Vec<(String, String)> {
    let by_source: HashMap<&str, &str> = written
        .iter()
        .filter_map(|r| Some((r.fields.get(source_field)?.as_str()?, r.id.as_str())))
        .collect();
    sources
        .iter()
        .enumerate()
        .filter_map(|(index, source)| {
            let target = by_source
                .get(source.as_str())
                .copied()
                .or_else(|| written.get(index).map(|r| r.id.as_str()))?;
            Some((source.clone(), target.to_owned()))
        })
        .collect()
}
