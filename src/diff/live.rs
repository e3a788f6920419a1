//! The live base as the other side of a diff: its schema (one request), and each table's
//! records listed through the API (pages of 100, paced like a snapshot), put in the snapshot's
//! canonical form (attachment URLs dropped) and sorted by id in a temporary SQLite database,
//! so they merge with a snapshot's table however large the table is.

use futures::StreamExt;
use futures::stream::BoxStream;

use super::DiffError;
use crate::airtable::{BaseSchema, Client, ListRecordsOptions, Record};
use crate::backup::records::{RecordSpill, canonical_line};

/// A base read through the API.
pub(crate) struct LiveBase {
    client: Client,
    /// `app…`
    pub(crate) base: String,
    /// The schema as it is now.
    pub(crate) schema: BaseSchema,
}

impl LiveBase {
    /// The base with a schema already read.
    pub(crate) fn new(client: &Client, base: &str, schema: BaseSchema) -> LiveBase {
        LiveBase {
            client: client.clone(),
            base: base.to_owned(),
            schema,
        }
    }

    /// Reads the base's schema (one request).
    pub(crate) async fn read_schema(client: &Client, base: &str) -> Result<LiveBase, DiffError> {
        let schema = client.base_schema(base).await?;
        Ok(LiveBase {
            client: client.clone(),
            base: base.to_owned(),
            schema,
        })
    }

    /// Every record of `table` as it is now, sorted by id. The whole table is listed before
    /// the first record comes out.
    pub(crate) async fn records(
        &self,
        table: &str,
    ) -> Result<BoxStream<'static, Result<Record, DiffError>>, DiffError> {
        self.records_matching(table, None).await
    }

    /// The records of `table` for which `formula` holds (all when `None`), sorted by id.
    pub(crate) async fn records_matching(
        &self,
        table: &str,
        formula: Option<String>,
    ) -> Result<BoxStream<'static, Result<Record, DiffError>>, DiffError> {
        let spill = RecordSpill::new().map_err(DiffError::Spill)?;
        let options = ListRecordsOptions {
            filter_by_formula: formula,
            ..ListRecordsOptions::default()
        };
        let mut pager = self.client.list_records(&self.base, table, options);
        while let Some(page) = pager.next_page().await? {
            let lines = page
                .iter()
                .map(|r| (r.id.clone(), canonical_line(r)))
                .collect();
            spill.insert(lines).await.map_err(DiffError::Spill)?;
        }
        Ok(sorted(spill))
    }
}

/// The spill's records in id order, 2000 lines read at a time.
fn sorted(spill: RecordSpill) -> BoxStream<'static, Result<Record, DiffError>> {
    futures::stream::unfold(
        (
            spill,
            String::new(),
            Vec::<Record>::new().into_iter(),
            false,
        ),
        |(spill, mut after, mut batch, mut done)| async move {
            loop {
                if let Some(record) = batch.next() {
                    return Some((Ok(record), (spill, after, batch, done)));
                }
                if done {
                    return None;
                }
                let lines = match spill.batch_after(&after).await {
                    Ok(lines) => lines,
                    Err(e) => {
                        done = true;
                        return Some((Err(DiffError::Spill(e)), (spill, after, batch, done)));
                    }
                };
                let (last, _) = lines.last()?;
                after = last.clone();
                let parsed: Result<Vec<Record>, _> = lines
                    .iter()
                    .map(|(_, line)| serde_json::from_slice::<Record>(line))
                    .collect();
                match parsed {
                    Ok(records) => batch = records.into_iter(),
                    Err(e) => {
                        done = true;
                        return Some((
                            Err(DiffError::Spill(format!(
                                "a stored line is not a record: {e}"
                            ))),
                            (spill, after, batch, done),
                        ));
                    }
                }
            }
        },
    )
    .boxed()
}
