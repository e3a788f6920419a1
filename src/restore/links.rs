//! Pass 2, the links a cycle deferred: the records pass writes every link whose target
//! already exists in the create request, so only self-links and the links of a table that
//! closes a ring of tables are left (see `order.rs`), plus those of records an older run
//! created without links. A `PATCH` of the created side, 10 records per request, a few in
//! flight; Airtable fills the inverse. A `PATCH` sets the whole cell, so a resent request
//! changes nothing.
//!
//! It relies on every record having been created (the journal's old → new record id map from
//! pass 1) and on the link field ids the schema step found. A link to a record outside the
//! restore is counted and reported. Records whose links are written are marked in the
//! journal (by pass 1 when its create wrote them all), so that a resumed run skips them.

use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use super::{RestoreError, Run, WRITE_CONCURRENCY, non_empty};
use crate::airtable::{MAX_RECORDS_PER_WRITE, RecordUpdate};

impl Run<'_> {
    /// Pass 2: the created side of every link pair, 10 records per request.
    pub(super) async fn links(&mut self) -> Result<(), RestoreError> {
        self.progress
            .phase("links", Some(self.report.workload.link_records));
        let plan = self.plan.clone();
        for table in &plan.tables {
            let link_fields: Vec<String> = self
                .plan
                .links
                .iter()
                .filter(|l| l.table == table.source_id)
                .map(|l| l.field.clone())
                .collect();
            if link_fields.is_empty() {
                continue;
            }
            let Some(stored_table) = self.stored.table(&table.source_id) else {
                continue;
            };
            let ids = &self.targets[&table.source_id].clone();
            let journal = &self.journal.clone();
            let link_fields = &link_fields;
            let order = &self.order;
            let (client, base) = (self.client, &self.base_id.clone());
            // The same pipeline as pass 1: the records that still need their links, mapped to
            // the new ids, 10 per PATCH, a few PATCHes in flight.
            let updates = self
                .stored
                .records(stored_table)
                .map_err(RestoreError::from)
                .try_filter_map(|record| async move {
                    if !link_fields.iter().any(|f| non_empty(record.fields.get(f))) {
                        return Ok(None);
                    }
                    let Some((target, false)) = journal.target_and_links_done(&record.id)? else {
                        return Ok(None);
                    };
                    let mut fields = Map::new();
                    let mut unmapped = 0u64;
                    for field in link_fields {
                        let Some(Value::Array(linked)) = record.fields.get(field) else {
                            continue;
                        };
                        let mut mapped = Vec::new();
                        for id in linked.iter().filter_map(Value::as_str) {
                            match journal.target_of(id)? {
                                Some(new) => mapped.push(Value::String(new)),
                                // Pass 1 counted those of the links it wrote.
                                None if !order.in_create(field) => unmapped += 1,
                                None => {}
                            }
                        }
                        if let Some(target_field) = ids.fields.get(field) {
                            fields.insert(target_field.clone(), Value::Array(mapped));
                        }
                    }
                    Ok(Some((
                        record.id,
                        RecordUpdate { id: target, fields },
                        unmapped,
                    )))
                })
                .try_chunks(MAX_RECORDS_PER_WRITE)
                .map_err(|e| e.1)
                .map_ok(|batch| async move {
                    let mut sources = Vec::with_capacity(batch.len());
                    let mut updates = Vec::with_capacity(batch.len());
                    let mut unmapped = 0;
                    for (source, update, missing) in batch {
                        sources.push(source);
                        updates.push(update);
                        unmapped += missing;
                    }
                    client
                        .update_records(base, &ids.table, &updates, false)
                        .await?;
                    Ok::<_, RestoreError>((sources, unmapped))
                })
                .try_buffered(WRITE_CONCURRENCY);
            let mut updates = std::pin::pin!(updates);
            let mut unmapped = 0u64;
            let mut written = 0u64;
            while let Some(done) = updates.next().await {
                let (sources, missing) = done?;
                self.journal.set_links_done(&sources)?;
                unmapped += missing;
                written += sources.len() as u64;
                self.progress.items(sources.len() as u64);
            }
            self.report.link_records_written += written;
            if unmapped > 0 {
                self.report.problems.push(format!(
                    "table `{}`: {unmapped} links point to records that are not in the restore",
                    table.source_name
                ));
            }
        }
        Ok(())
    }
}
