//! The original base, when it is still readable: fresh URLs of the attachments it still
//! holds, so that the records pass writes them as `{url, filename}` in the create request
//! and Airtable fetches them, instead of one `uploadAttachment` request per file.
//!
//! Reading the original costs requests on the original base's own 5 requests/s budget (its
//! attachment fields only, pages of 100), counted apart from the target's. A task lists the
//! tables in the order the records pass needs them while the target is written, and hands
//! each table's URLs over as it finishes; a URL older than [`STALE_AFTER`] is fetched again
//! (Airtable's download URLs expire after about two hours). An attachment counts only when
//! its id and size are those of the snapshot. Airtable drops a URL it cannot fetch without
//! saying so; the verification finds such files and uploads them (`verify.rs`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::airtable::{Attachment, Client, ListRecordsOptions};

/// How old a table's URLs may be when they are written (Airtable's expire after about two
/// hours; the fetch happens later, so a margin is kept).
pub(super) const STALE_AFTER: Duration = Duration::from_secs(60 * 60);

/// The original base as a source of attachment URLs.
#[derive(Clone)]
pub(super) struct Originals {
    /// A client counting apart from the target's.
    pub(super) client: Client,
    /// The original base.
    pub(super) base: String,
    /// Attachment fields the original still has (original ids).
    pub(super) fields: HashSet<String>,
}

/// A readable attachment of the original: its fresh URL and size.
#[derive(Debug, Clone)]
pub(super) struct Fresh {
    pub(super) url: String,
    pub(super) size: u64,
}

/// A table's fresh URLs, by attachment id, and when they were read.
#[derive(Debug, Clone, Default)]
pub(super) struct FreshUrls {
    pub(super) by_id: HashMap<String, Fresh>,
    pub(super) read_at: Option<Instant>,
}

impl FreshUrls {
    /// The URL of `id` when the original holds it with this size.
    pub(super) fn url(&self, id: &str, size: u64) -> Option<&str> {
        self.by_id
            .get(id)
            .filter(|f| f.size == size)
            .map(|f| f.url.as_str())
    }

    fn is_stale(&self) -> bool {
        self.read_at.is_none_or(|at| at.elapsed() > STALE_AFTER)
    }
}

impl Originals {
    /// The original base if this token can still read it (one schema request there), with
    /// the attachment fields it still has.
    pub(super) async fn open(client: &Client, base: &str) -> Option<Originals> {
        let client = client.counting_apart();
        match client.base_schema(base).await {
            Ok(schema) => Some(Originals {
                fields: schema
                    .tables
                    .iter()
                    .flat_map(|t| &t.fields)
                    .filter(|f| f.field_type == "multipleAttachments")
                    .map(|f| f.id.clone())
                    .collect(),
                client,
                base: base.to_owned(),
            }),
            Err(e) => {
                tracing::info!(
                    "restore: the original base {base} is not readable ({e}); files are uploaded"
                );
                None
            }
        }
    }

    /// Lists `fields` (attachment fields) of `table` in the original. A table or field the
    /// original lost gives no URLs rather than an error: those files are uploaded.
    pub(super) async fn fresh_urls(&self, table: &str, fields: &[String]) -> FreshUrls {
        let fields: Vec<String> = fields
            .iter()
            .filter(|f| self.fields.contains(*f))
            .cloned()
            .collect();
        let mut urls = FreshUrls {
            by_id: HashMap::new(),
            read_at: Some(Instant::now()),
        };
        if fields.is_empty() {
            return urls;
        }
        let options = ListRecordsOptions {
            fields: fields.clone(),
            ..ListRecordsOptions::default()
        };
        let mut pager = self.client.list_records(&self.base, table, options);
        loop {
            match pager.next_page().await {
                Ok(Some(page)) => {
                    for record in page {
                        for field in &fields {
                            for a in record.attachments(field) {
                                add(&mut urls, a);
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(
                        "restore: reading table {table} of the original base failed ({e}); its files are uploaded"
                    );
                    break;
                }
            }
        }
        urls
    }

    /// The fresh URL of one attachment, read from its record (a repair of a file over 5 MB).
    pub(super) async fn fresh_url(
        &self,
        table: &str,
        record: &str,
        field: &str,
        id: &str,
    ) -> Option<Fresh> {
        let record = self
            .client
            .get_record(&self.base, table, record)
            .await
            .ok()?;
        let found = record.attachments(field).into_iter().find(|a| a.id == id)?;
        Some(Fresh {
            url: found.url,
            size: found.size?,
        })
    }

    /// Starts listing the attachment fields of `tables` (original id, fields), in order,
    /// while the caller goes on; each table's URLs arrive on its own channel.
    pub(super) fn prefetch(&self, tables: Vec<(String, Vec<String>)>) -> Prefetch {
        let mut waiting = HashMap::new();
        let mut senders = Vec::new();
        for (table, fields) in tables {
            let (send, receive) = oneshot::channel();
            waiting.insert(table.clone(), receive);
            senders.push((table, fields, send));
        }
        let this = self.clone();
        let task = tokio::spawn(async move {
            for (table, fields, send) in senders {
                let urls = this.fresh_urls(&table, &fields).await;
                if send.send(urls).is_err() {
                    return;
                }
            }
        });
        Prefetch {
            originals: self.clone(),
            waiting,
            task,
        }
    }
}

fn add(urls: &mut FreshUrls, attachment: Attachment) {
    if let Some(size) = attachment.size {
        urls.by_id.insert(
            attachment.id,
            Fresh {
                url: attachment.url,
                size,
            },
        );
    }
}

/// The URLs being listed ahead of the records pass; the listing stops when this is dropped.
pub(super) struct Prefetch {
    originals: Originals,
    waiting: HashMap<String, oneshot::Receiver<FreshUrls>>,
    task: JoinHandle<()>,
}

impl Prefetch {
    /// The URLs of `table` (empty when it was not asked for), fetched again when stale.
    pub(super) async fn take(&mut self, table: &str, fields: &[String]) -> FreshUrls {
        let Some(receive) = self.waiting.remove(table) else {
            return FreshUrls::default();
        };
        match receive.await {
            Ok(urls) if !urls.is_stale() => urls,
            _ => self.originals.fresh_urls(table, fields).await,
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
