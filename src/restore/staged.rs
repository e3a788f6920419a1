//! Settling the staged files, after the attachments pass: waits until Airtable has fetched
//! every file written by URL from the staging store, checks that it is in its cell with its
//! name and size, and deletes it from the staging store.
//!
//! It relies on the journal's list of staged files, which outlives a run, so that a resumed
//! run settles what an interrupted one staged. A file Airtable did not store is reported, and
//! its cell marked unfinished in the journal so that the next run writes it again.

use std::time::Duration;

use super::{RestoreError, Run};

impl Run<'_> {
    /// Waits until Airtable has fetched every staged file, checks it, and removes it from the
    /// staging location.
    pub(super) async fn settle_staged(&mut self) -> Result<(), RestoreError> {
        let Some(staging) = &self.options.staging else {
            return Ok(());
        };
        let staged = self.journal.staged()?;
        if staged.is_empty() {
            return Ok(());
        }
        self.progress
            .phase("staged files", Some(staged.len() as u64));
        for (path, source_record, field) in staged {
            let attachment_id = path.rsplit('/').next().unwrap_or_default().to_owned();
            let expected = self.stored.attachment(&attachment_id).await?;
            // Field ids are unique within a base: the field says which table the record is in.
            let table = self.plan.tables.iter().find(|t| t.field(&field).is_some());
            let (Some(record_id), Some(table), Some(file)) =
                (self.journal.target_of(&source_record)?, table, expected)
            else {
                continue;
            };
            let ids = &self.targets[&table.source_id];
            let field_id = ids.fields.get(&field).cloned().unwrap_or_default();
            let mut verified = false;
            for attempt in 0..30u32 {
                let record = self
                    .client
                    .get_record(&self.base_id, &ids.table, &record_id)
                    .await?;
                let found = record.attachments(&field_id).into_iter().find(|a| {
                    a.filename == file.filename.clone().unwrap_or_default()
                        && a.size == Some(file.size)
                });
                if found.is_some() {
                    verified = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500) * (attempt + 1).min(10)).await;
            }
            if !verified {
                self.report.problems.push(format!(
                    "attachment {attachment_id} ({} bytes) of record {source_record} was written by URL, but Airtable did not store it; run the restore again after checking that the staging URL is reachable from the internet",
                    file.size
                ));
                self.journal.set_cell(&source_record, &field, 0, false)?;
            }
            staging.delete(&path).await?;
            self.journal.remove_staged(&path)?;
            self.progress.items(1);
        }
        Ok(())
    }
}
