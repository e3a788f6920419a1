//! Reading: bases, schemas and records.
//!
//! Records are listed a page at a time by a [`RecordPager`] (or the stream it turns into), so a
//! table of any size is read in bounded memory: the pager holds one page plus the set of record
//! ids it has already handed out. Every listing asks for `returnFieldsByFieldId=true` and pages of
//! 100, and switches from `GET` to `POST …/listRecords` when the URL would pass Airtable's
//! 16,000-character limit. When Airtable expires the listing iterator
//! (`LIST_RECORDS_ITERATOR_NOT_AVAILABLE`), the pager starts the table again from the first page
//! and skips the records it already returned, so callers see every record once.

use std::collections::HashSet;

use bytes::Bytes;
use futures::Stream;
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Call, Client, Host};
use super::error::AirtableError;
use super::model::{Base, BaseSchema, ListRecordsOptions, Record, WhoAmI};

/// URLs longer than this go as `POST …/listRecords` instead (Airtable's limit is 16,000).
pub const MAX_URL_LEN: usize = 16_000;

/// The largest page Airtable serves.
pub const MAX_PAGE_SIZE: u32 = 100;

#[derive(Deserialize)]
struct BasesPage {
    bases: Vec<Base>,
    #[serde(default)]
    offset: Option<String>,
}

#[derive(Deserialize)]
struct RecordsPage {
    records: Vec<ListedRecord>,
    #[serde(default)]
    offset: Option<String>,
}

/// A record of a listing, with the `commentCount` asked for by
/// [`ListRecordsOptions::comment_count`] (kept apart so [`Record`] stays what is stored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedRecord {
    id: String,
    created_time: String,
    #[serde(default)]
    fields: serde_json::Map<String, Value>,
    #[serde(default)]
    comment_count: Option<u64>,
}

impl ListedRecord {
    fn split(self) -> (Record, u64) {
        let record = Record {
            id: self.id,
            created_time: self.created_time,
            fields: self.fields,
        };
        (record, self.comment_count.unwrap_or(0))
    }
}

/// The largest page of comments Airtable serves (and its default).
pub const MAX_COMMENTS_PAGE_SIZE: u32 = 100;

#[derive(Deserialize)]
struct CommentsPage {
    comments: Vec<Value>,
    #[serde(default)]
    offset: Option<String>,
}

impl Client {
    /// Every base the token can see (`GET /v0/meta/bases`, following `offset`).
    pub async fn list_bases(&self) -> Result<Vec<Base>, AirtableError> {
        let mut bases = Vec::new();
        let mut offset: Option<String> = None;
        loop {
            let mut url = self.url(Host::Api, &["v0", "meta", "bases"]);
            if let Some(offset) = &offset {
                url.query_pairs_mut().append_pair("offset", offset);
            }
            let page: BasesPage = self
                .execute_json(Call {
                    operation: "list bases",
                    method: Method::GET,
                    url,
                    body: None,
                    base: None,
                    scope: "schema.bases:read",
                    not_found: "the list of bases".to_owned(),
                    idempotent: true,
                })
                .await?;
            bases.extend(page.bases);
            match page.offset {
                Some(next) => offset = Some(next),
                None => return Ok(bases),
            }
        }
    }

    /// The schema of a base (`GET /v0/meta/bases/{baseId}/tables`), raw and typed.
    pub async fn base_schema(&self, base_id: &str) -> Result<BaseSchema, AirtableError> {
        let operation = "read the base schema";
        let raw: Value = self
            .execute_json(Call {
                operation,
                method: Method::GET,
                url: self.url(Host::Api, &["v0", "meta", "bases", base_id, "tables"]),
                body: None,
                base: Some(base_id),
                scope: "schema.bases:read",
                not_found: format!("base `{base_id}`"),
                idempotent: true,
            })
            .await?;
        BaseSchema::from_raw(raw)
            .map_err(|source| AirtableError::InvalidResponse { operation, source })
    }

    /// The user behind the token (`GET /v0/meta/whoami`): a cheap check that the token works.
    pub async fn whoami(&self) -> Result<WhoAmI, AirtableError> {
        self.execute_json(Call {
            operation: "identify the token's user",
            method: Method::GET,
            url: self.url(Host::Api, &["v0", "meta", "whoami"]),
            body: None,
            base: None,
            scope: "(any)",
            not_found: "the whoami endpoint".to_owned(),
            idempotent: true,
        })
        .await
    }

    /// One record, cells keyed by field id.
    pub async fn get_record(
        &self,
        base_id: &str,
        table: &str,
        record_id: &str,
    ) -> Result<Record, AirtableError> {
        let mut url = self.url(Host::Api, &["v0", base_id, table, record_id]);
        url.query_pairs_mut()
            .append_pair("returnFieldsByFieldId", "true");
        self.execute_json(Call {
            operation: "read a record",
            method: Method::GET,
            url,
            body: None,
            base: Some(base_id),
            scope: "data.records:read",
            not_found: format!("record `{record_id}` in table `{table}` of base `{base_id}`"),
            idempotent: true,
        })
        .await
    }

    /// Every comment of a record (`GET /v0/{base}/{table}/{record}/comments`, following
    /// `offset`), oldest first, each exactly as Airtable sent it (`id`, `text`, `author`,
    /// `createdTime`, `lastUpdatedTime`, `mentioned`, `parentCommentId`, ...). Airtable lists
    /// newest first; this reverses that. Needs the `data.recordComments:read` scope.
    pub async fn list_comments(
        &self,
        base_id: &str,
        table: &str,
        record_id: &str,
    ) -> Result<Vec<Value>, AirtableError> {
        let mut comments = Vec::new();
        let mut offset: Option<String> = None;
        loop {
            let mut url = self.url(Host::Api, &["v0", base_id, table, record_id, "comments"]);
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("pageSize", &MAX_COMMENTS_PAGE_SIZE.to_string());
                if let Some(offset) = &offset {
                    query.append_pair("offset", offset);
                }
            }
            let page: CommentsPage = self
                .execute_json(Call {
                    operation: "list comments",
                    method: Method::GET,
                    url,
                    body: None,
                    base: Some(base_id),
                    scope: "data.recordComments:read",
                    not_found: format!(
                        "record `{record_id}` in table `{table}` of base `{base_id}`"
                    ),
                    idempotent: true,
                })
                .await?;
            comments.extend(page.comments);
            match page.offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        comments.reverse();
        Ok(comments)
    }

    /// A pager over the records of `table` (an id or a name). Nothing is sent until the first
    /// [`RecordPager::next_page`].
    pub fn list_records(
        &self,
        base_id: &str,
        table: &str,
        options: ListRecordsOptions,
    ) -> RecordPager {
        RecordPager {
            client: self.clone(),
            base_id: base_id.to_owned(),
            table: table.to_owned(),
            options,
            offset: None,
            done: false,
            seen: HashSet::new(),
            restarts: 0,
            restarts_without_progress: 0,
            seen_at_restart: 0,
            pages: 0,
        }
    }

    async fn fetch_records_page(
        &self,
        base_id: &str,
        table: &str,
        options: &ListRecordsOptions,
        offset: Option<&str>,
    ) -> Result<RecordsPage, AirtableError> {
        let page_size = options
            .page_size
            .unwrap_or(MAX_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE);
        let mut url = self.url(Host::Api, &["v0", base_id, table]);
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("returnFieldsByFieldId", "true")
                .append_pair("pageSize", &page_size.to_string());
            for field in &options.fields {
                query.append_pair("fields[]", field);
            }
            if let Some(view) = &options.view {
                query.append_pair("view", view);
            }
            if let Some(formula) = &options.filter_by_formula {
                query.append_pair("filterByFormula", formula);
            }
            if options.comment_count {
                query.append_pair("recordMetadata[]", "commentCount");
            }
            if let Some(offset) = offset {
                query.append_pair("offset", offset);
            }
        }
        let (method, url, body) = if url.as_str().len() > MAX_URL_LEN {
            let mut body = json!({
                "returnFieldsByFieldId": true,
                "pageSize": page_size,
            });
            if !options.fields.is_empty() {
                body["fields"] = json!(options.fields);
            }
            if let Some(view) = &options.view {
                body["view"] = json!(view);
            }
            if let Some(formula) = &options.filter_by_formula {
                body["filterByFormula"] = json!(formula);
            }
            if options.comment_count {
                body["recordMetadata"] = json!(["commentCount"]);
            }
            if let Some(offset) = offset {
                body["offset"] = json!(offset);
            }
            let post_url: Url = self.url(Host::Api, &["v0", base_id, table, "listRecords"]);
            (Method::POST, post_url, Some(Bytes::from(body.to_string())))
        } else {
            (Method::GET, url, None)
        };
        self.execute_json(Call {
            operation: "list records",
            method,
            url,
            body,
            base: Some(base_id),
            scope: "data.records:read",
            not_found: format!("table `{table}` in base `{base_id}`"),
            // Listing reads, even as a POST.
            idempotent: true,
        })
        .await
    }
}

/// Lists one table a page at a time, with `returnFieldsByFieldId=true`, pages of 100 and a
/// `POST …/listRecords` when the `GET` URL would pass [`MAX_URL_LEN`]. When Airtable expires the
/// listing iterator, the pager lists the table again from the start and skips records it already
/// returned, so every record comes out once.
///
/// Memory stays bounded by one page plus one record id per record returned (to drop duplicates
/// after a restart). A failed [`next_page`](RecordPager::next_page) (after the client's own
/// retries) may be called again: it asks for the same page.
#[derive(Debug)]
pub struct RecordPager {
    client: Client,
    base_id: String,
    table: String,
    options: ListRecordsOptions,
    offset: Option<String>,
    done: bool,
    seen: HashSet<String>,
    restarts: u32,
    /// Restarts in a row that found no record not returned before.
    restarts_without_progress: u32,
    /// `seen.len()` at the last restart.
    seen_at_restart: usize,
    pages: u64,
}

impl RecordPager {
    /// The next page of records not returned before, or `None` when the table is done. Pages
    /// are never empty.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Record>>, AirtableError> {
        Ok(self
            .next_page_with_comment_counts()
            .await?
            .map(|page| page.into_iter().map(|(record, _)| record).collect()))
    }

    /// Like [`RecordPager::next_page`], each record with its number of comments: what
    /// Airtable said when [`ListRecordsOptions::comment_count`] is set, 0 otherwise.
    pub async fn next_page_with_comment_counts(
        &mut self,
    ) -> Result<Option<Vec<(Record, u64)>>, AirtableError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let page = match self
                .client
                .fetch_records_page(
                    &self.base_id,
                    &self.table,
                    &self.options,
                    self.offset.as_deref(),
                )
                .await
            {
                Ok(page) => page,
                Err(AirtableError::IteratorExpired { .. }) => {
                    self.restart()?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            self.pages += 1;
            self.offset = page.offset;
            self.done = self.offset.is_none();
            let records: Vec<(Record, u64)> = page
                .records
                .into_iter()
                .filter(|record| self.seen.insert(record.id.clone()))
                .map(ListedRecord::split)
                .collect();
            if !records.is_empty() {
                return Ok(Some(records));
            }
        }
    }

    fn restart(&mut self) -> Result<(), AirtableError> {
        self.restarts += 1;
        if self.seen.len() > self.seen_at_restart {
            self.restarts_without_progress = 0;
        }
        self.restarts_without_progress += 1;
        self.seen_at_restart = self.seen.len();
        if self.restarts_without_progress > self.client.inner.options.max_listing_restarts {
            return Err(AirtableError::ListingRestartedTooOften {
                base: self.base_id.clone(),
                table: self.table.clone(),
                restarts: self.restarts - 1,
            });
        }
        tracing::warn!(
            base = %self.base_id,
            table = %self.table,
            returned = self.seen.len(),
            restarts = self.restarts,
            "airtable expired the listing iterator; listing the table again and skipping records already read"
        );
        self.offset = None;
        Ok(())
    }

    /// How many times the listing started over after an expired iterator.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// How many pages were fetched (duplicates included).
    pub fn pages_fetched(&self) -> u64 {
        self.pages
    }

    /// How many distinct records were returned so far.
    pub fn records_returned(&self) -> usize {
        self.seen.len()
    }

    /// The pager as a stream of pages; it ends after the last page or the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Vec<Record>, AirtableError>> + Send {
        futures::stream::try_unfold(self, |mut pager| async move {
            Ok(pager.next_page().await?.map(|page| (page, pager)))
        })
    }
}
