//! Backing up one Airtable base into a snapshot: the schema as the meta API returned it, every
//! record of every selected table as canonical JSON lines, and every attachment's content.
//!
//! A base becomes this tree, built with the types of `crate::layout` (docs/FORMAT.md,
//! "Airtable snapshots"):
//!
//! ```text
//! schema.json                      the meta API's answer, verbatim (keys sorted)
//! tables/<table id>.jsonl          one record per line, sorted by record id
//! attachments/<c>/<attachment id>  content; <c> is the id's fourth character
//! comments/<table id>.jsonl        the comments of each record that has some, sorted by record id
//! ```
//!
//! Records are listed page by page (the client paces at the rate limit) and spilled into a
//! temporary SQLite database, then streamed out in id order, so memory stays flat whatever the
//! table's size. Attachments are downloaded while the listing goes on, a few at a time, and
//! streamed through the chunker; one that the previous snapshot of the base already holds
//! (same id and size) is not downloaded again.
//!
//! Comments: the listing asks each record's `commentCount`, and the comments of every record
//! with one above 0 are read while the listing goes on, a few records at a time, through the
//! same paced client (the `comments` module). A token without the comments scope costs one
//! refused request and a warning; the snapshot then says it holds no comments.

mod comments;
pub(crate) mod records;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::airtable::{
    AirtableError, Attachment, BaseSchema, Client, ClientCounters, ListRecordsOptions, Record,
    TableSchema,
};
use crate::config::{FieldRef, TableFilter};
use crate::id::{BlobId, SnapshotId};
use crate::layout::{
    self, AttachmentMeta, AttachmentsMeta, LayoutJson, SnapshotSummary, TableMeta, TablesMeta,
};
use crate::progress::Progress;
use crate::repo::pack::BlobKind;
use crate::repo::snapshot::{Node, NodeKind, Snapshot, Tree};
use crate::repo::{BlobWriter, RepoError, Repository, WriterStats};
use records::RecordSpill;

pub use crate::layout::CommentsSkipped;
use comments::Comments;

/// What to back up from one base.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The base (`app…`).
    pub base_id: String,
    /// Which tables to back up (by name or id; by default all).
    pub tables: TableFilter,
    /// Fields to leave out.
    pub exclude_fields: Vec<FieldRef>,
    /// Download attachment content (otherwise only their metadata is kept).
    pub attachments: bool,
    /// Back up record comments (`--no-comments` and `comments: false` turn it off).
    pub comments: bool,
    /// Attachment downloads at once.
    pub attachment_concurrency: usize,
    /// Tags stored in the snapshot.
    pub tags: Vec<String>,
    /// The base's name, when the caller knows it (from one listing of the bases for several);
    /// otherwise the backup lists the bases to learn it.
    pub base_name: Option<String>,
}

impl BackupOptions {
    /// Everything in `base_id`, attachments included, 8 downloads at once.
    pub fn new(base_id: impl Into<String>) -> Self {
        BackupOptions {
            base_id: base_id.into(),
            tables: TableFilter::default(),
            exclude_fields: Vec::new(),
            attachments: true,
            comments: true,
            attachment_concurrency: 8,
            tags: Vec::new(),
            base_name: None,
        }
    }

    /// The options the config file gives `base` (tables, fields, attachments), or `None`
    /// when it does not list it.
    pub fn from_config(config: &crate::config::Config, base: &str) -> Option<BackupOptions> {
        let entry = config.base(base)?;
        let mut o = BackupOptions::new(base);
        o.tables = entry.tables.clone();
        o.exclude_fields = entry.exclude_fields.clone();
        let attachments = config.attachments_for(entry);
        o.attachments = attachments.download;
        o.attachment_concurrency = attachments.concurrency;
        o.comments = config.comments_for(entry);
        Some(o)
    }

    /// The ids of the table's fields to back up, and of those left out, in schema order.
    fn fields_to_list(&self, table: &TableSchema) -> (Vec<String>, Vec<String>) {
        let (listed, excluded): (Vec<_>, Vec<_>) = table.fields.iter().partition(|f| {
            !self
                .exclude_fields
                .iter()
                .any(|r| r.matches(&table.id, &table.name, &f.id, &f.name))
        });
        let ids = |fields: Vec<&crate::airtable::FieldSchema>| {
            fields.into_iter().map(|f| f.id.clone()).collect()
        };
        (ids(listed), ids(excluded))
    }

    /// The entries of `tables` and `exclude_fields` not marked optional that match nothing in
    /// `tables` (the base's schema), each described for people. A misspelled or renamed table
    /// would otherwise be left out of every snapshot without a word.
    fn unmatched_entries(&self, tables: &[TableSchema]) -> Vec<String> {
        let quoted = |s: &str| serde_json::to_string(s).expect("strings serialize");
        let mut out = Vec::new();
        for (key, list) in [
            ("tables.include", &self.tables.include),
            ("tables.exclude", &self.tables.exclude),
        ] {
            for entry in list.iter().filter(|e| !e.optional) {
                if !tables.iter().any(|t| entry.matches(&t.id, &t.name)) {
                    out.push(format!(
                        "`{key}` entry `{entry}` matches no table (by id or exact name); \
                         correct it (a table id such as tblXXXXXXXXXXXXXX survives renames) or \
                         write `{{table: {}, optional: true}}` if it may be absent",
                        quoted(&entry.table)
                    ));
                }
            }
        }
        for entry in self.exclude_fields.iter().filter(|e| !e.optional) {
            let in_tables: Vec<&TableSchema> = tables
                .iter()
                .filter(|t| entry.matches_table(&t.id, &t.name))
                .collect();
            let found = in_tables.iter().any(|t| {
                t.fields
                    .iter()
                    .any(|f| entry.matches(&t.id, &t.name, &f.id, &f.name))
            });
            if found {
                continue;
            }
            let what = if in_tables.is_empty() {
                format!("no table `{}`", entry.table)
            } else {
                format!("table `{}` has no field `{}`", entry.table, entry.field)
            };
            out.push(format!(
                "`exclude_fields` entry `{entry}` matches no field ({what}, by id or exact \
                 name); correct it (ids such as tblXXXXXXXXXXXXXX.fldXXXXXXXXXXXXXX survive \
                 renames) or write `{{table: {}, field: {}, optional: true}}` if it may be absent",
                quoted(&entry.table),
                quoted(&entry.field)
            ));
        }
        out
    }
}

/// What a backup did; `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    /// The new snapshot.
    pub snapshot_id: SnapshotId,
    /// The base.
    pub base_id: String,
    /// Its name.
    pub base_name: String,
    /// Tables backed up.
    pub tables: usize,
    /// Records backed up.
    pub records: u64,
    /// Distinct attachments referenced by the records.
    pub attachments: u64,
    /// Attachments downloaded by this run.
    pub attachments_downloaded: u64,
    /// Attachments reused from the previous snapshot without downloading.
    pub attachments_reused: u64,
    /// Attachment bytes downloaded.
    pub attachment_bytes_downloaded: u64,
    /// Bytes written to the repository (packs, index files, snapshot).
    pub bytes_added: u64,
    /// Objects written to the repository.
    pub objects_written: u64,
    /// Airtable API requests (retries included, attachment downloads not).
    pub api_requests: u64,
    /// Retried requests and downloads.
    pub retries: u64,
    /// 429 answers received (should be 0).
    pub rate_limited: u64,
    /// Wall time.
    pub duration_secs: f64,
    /// Whether some content could not be read, or a filter entry matched nothing (`warnings`);
    /// the snapshot is then marked partial.
    pub partial: bool,
    /// What could not be read.
    pub problems: Vec<String>,
    /// Filter entries (`tables`, `exclude_fields`) that matched nothing in the base; they are
    /// among the saved snapshot's `problems` too.
    pub warnings: Vec<String>,
    /// Record comments stored.
    pub comments: u64,
    /// Why the snapshot holds no comments, when it does not hold them: turned off, or the
    /// token lacks the comments scope (a warning, not a problem: the snapshot is not partial).
    pub comments_skipped: Option<CommentsSkipped>,
}

/// Why a backup failed. A backup that fails leaves no snapshot (and a valid repository).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Airtable refused or failed.
    #[error("cannot back up base {base}")]
    Airtable {
        /// The base.
        base: String,
        /// What went wrong.
        #[source]
        source: AirtableError,
    },
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The temporary record store failed.
    #[error("temporary record store: {0}")]
    Spill(String),
}

/// What a run's attachment downloads gathered; the download tasks share it.
#[derive(Default)]
struct Attachments {
    /// Previous snapshot's attachments: id → (size, content).
    previous: HashMap<String, (u64, Vec<BlobId>)>,
    /// The attachment ids met so far: each is stored once, however many cells cite it.
    seen: HashSet<String>,
    /// The nodes of the attachments stored or reused, by id.
    nodes: BTreeMap<String, Node>,
    /// The attachments that could not be downloaded, described for people.
    problems: Vec<String>,
    downloaded: u64,
    reused: u64,
    /// Bytes downloaded.
    bytes: u64,
}

impl Attachments {
    /// Whether `attachment` is to be downloaded: it was not met before in this run, and the
    /// previous snapshot does not hold it (same id and size, every blob still stored). One the
    /// previous snapshot holds gets that snapshot's node.
    fn claim(&mut self, attachment: &Attachment, repo: &Repository) -> bool {
        if !self.seen.insert(attachment.id.clone()) {
            return false;
        }
        if let (Some((size, content)), Some(expected)) =
            (self.previous.get(&attachment.id), attachment.size)
            && *size == expected
            && content
                .iter()
                .all(|b| repo.has_blob(b, BlobKind::Data).unwrap_or(false))
        {
            let node = attachment_node(attachment, *size, content.clone());
            self.nodes.insert(attachment.id.clone(), node);
            self.reused += 1;
            return false;
        }
        true
    }

    /// Records how `fetch` ended: the attachment's node, or a problem.
    fn fetched(&mut self, fetch: &Fetch, result: Result<(Vec<BlobId>, u64), String>) {
        let attachment = &fetch.attachment;
        match result {
            Ok((content, size)) => {
                self.downloaded += 1;
                self.bytes += size;
                self.nodes.insert(
                    attachment.id.clone(),
                    attachment_node(attachment, size, content),
                );
            }
            Err(e) => self.problems.push(format!(
                "attachment {} (`{}`) of record {} in table {}: {}",
                attachment.id,
                attachment.filename,
                fetch.record_id,
                fetch.table,
                without_urls(&e)
            )),
        }
    }
}

/// Locks the run's attachments; a download task that panicked leaves them usable.
fn lock(attachments: &Mutex<Attachments>) -> MutexGuard<'_, Attachments> {
    attachments.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tables a run stored.
struct StoredTables {
    /// Their files' nodes, in schema order.
    nodes: Vec<Node>,
    /// Their ids, in the same order.
    ids: Vec<String>,
    /// The records in them.
    records: u64,
}

/// The pages of a table's listing, as [`prefetch`] hands them over: each record with its
/// number of comments (0 when comments are not asked for).
type Pages = tokio::sync::mpsc::Receiver<Result<Vec<(Record, u64)>, AirtableError>>;

/// One backup of one base ([`backup_base`]): what its steps need, the counters the summary
/// starts from, and the attachment downloads that run while the records are listed.
struct BaseRun<'a> {
    repo: &'a Repository,
    /// Counts this base's requests apart from other bases backed up at the same time.
    client: Client,
    options: &'a BackupOptions,
    progress: Arc<dyn Progress>,
    writer: BlobWriter,
    /// The snapshot's time: when the run started.
    time: String,
    started: Instant,
    counters_before: ClientCounters,
    stats_before: WriterStats,
    attachments: Arc<Mutex<Attachments>>,
    /// One per download allowed at once (`attachment_concurrency`).
    permits: Arc<Semaphore>,
    /// Attachment downloads and comment reads under way.
    downloads: JoinSet<()>,
    /// The comments read so far, shared with the tasks that read them.
    comments: Arc<Mutex<Comments>>,
    /// One per record whose comments may be read at once.
    comment_permits: Arc<Semaphore>,
}

/// Backs up one base and commits a snapshot.
///
/// The caller adopts leftover packs first ([`Repository::adopt_unindexed_packs`]), once per
/// run, before the first base: that also finds the indexed packs storage has lost, so that
/// this backup stores their content again instead of referring to it. Adopting while another
/// backup writes to the same repository could adopt that backup's packs as they are uploaded.
pub async fn backup_base(
    repo: &Repository,
    client: &Client,
    options: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupSummary, BackupError> {
    backup_base_with(repo, &repo.writer(), client, options, progress).await
}

/// [`backup_base`] through `writer`, which other bases backed up at the same time share: one
/// set of open packs, uploads and processing budget for all of them, so memory does not grow
/// with the number of bases at once. The summary counts this base's work only (a pack is
/// counted for the base that filled it).
pub async fn backup_base_with(
    repo: &Repository,
    writer: &BlobWriter,
    client: &Client,
    options: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupSummary, BackupError> {
    let mut run = BaseRun::new(repo, writer, client, options, progress);
    let base_name = run.base_name().await?;
    let (schema, schema_file) = run.save_schema().await?;
    let warnings = options.unmatched_entries(&schema.tables);
    run.load_previous_attachments().await;
    let tables = run.save_tables(&schema.tables).await?;
    let mut attachments = run.finish_downloads().await?;
    let comments = std::mem::take(&mut *comments::lock(&run.comments));
    let stored_comments = comments.save(&run.writer, &tables.ids).await?;
    let attachment_bytes = attachments.nodes.values().map(file_size).sum();
    let comment_bytes: u64 = stored_comments
        .as_ref()
        .map_or(0, |(nodes, _)| nodes.iter().map(file_size).sum());
    let contents = SnapshotSummary {
        tables: tables.nodes.len() as u64,
        records: tables.records,
        attachments: attachments.nodes.len() as u64,
        attachment_bytes,
        size: schema_file.0
            + tables.nodes.iter().map(file_size).sum::<u64>()
            + attachment_bytes
            + comment_bytes,
        comments: stored_comments
            .as_ref()
            .map_or(0, |(_, meta)| meta.comments),
        comments_skipped: comments.skipped,
    };
    attachments.problems.extend(comments.problems);
    let nodes = std::mem::take(&mut attachments.nodes);
    let stored_attachments = attachment_contents(&nodes);
    let root = run
        .save_trees(schema_file, tables.nodes, nodes, stored_comments)
        .await?;
    let summary = run
        .commit(root, contents, attachments, base_name, warnings)
        .await?;
    remember_latest(
        repo,
        options.base_id.as_str(),
        LatestOfBase {
            snapshot: summary.snapshot_id,
            tree: root,
            attachments: stored_attachments,
        },
    )
    .await;
    Ok(summary)
}

impl<'a> BaseRun<'a> {
    fn new(
        repo: &'a Repository,
        writer: &BlobWriter,
        client: &'a Client,
        options: &'a BackupOptions,
        progress: Arc<dyn Progress>,
    ) -> Self {
        let started = Instant::now();
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let writer = writer.counting_apart();
        BaseRun {
            repo,
            // Its own counters: other bases may be backed up at the same time.
            client: client.counting_apart(),
            options,
            progress,
            time,
            started,
            counters_before: ClientCounters::default(),
            stats_before: writer.stats(),
            writer,
            attachments: Arc::default(),
            permits: Arc::new(Semaphore::new(options.attachment_concurrency.max(1))),
            downloads: JoinSet::new(),
            comments: Arc::new(Mutex::new(Comments::new(options.comments))),
            comment_permits: Arc::new(Semaphore::new(comments::CONCURRENCY)),
        }
    }

    /// The base's id.
    fn base(&self) -> &'a str {
        &self.options.base_id
    }

    /// Airtable's `source` as the error of this base's backup.
    fn airtable(&self, source: AirtableError) -> BackupError {
        BackupError::Airtable {
            base: self.base().to_owned(),
            source,
        }
    }

    /// The base's name as the list of bases gives it; its id when the list does not name it.
    async fn base_name(&self) -> Result<String, BackupError> {
        if let Some(name) = &self.options.base_name {
            return Ok(name.clone());
        }
        let name = match self.client.list_bases().await {
            Ok(bases) => bases
                .into_iter()
                .find(|b| b.id == self.base())
                .map(|b| b.name),
            // Airtable or the network is down: the schema read would fail the same way.
            Err(e) if e.is_transient() => return Err(self.airtable(e)),
            Err(e) => {
                tracing::warn!("cannot list bases to learn the base's name: {e}");
                None
            }
        };
        Ok(name.unwrap_or_else(|| self.base().to_owned()))
    }

    /// Reads the base's schema and stores it as the meta API returned it: the schema, and the
    /// stored file's size and content.
    async fn save_schema(&self) -> Result<(BaseSchema, (u64, Vec<BlobId>)), BackupError> {
        let schema = self
            .client
            .base_schema(self.base())
            .await
            .map_err(|e| self.airtable(e))?;
        let bytes = serde_json::to_vec_pretty(&schema.raw).expect("JSON values serialize");
        let size = bytes.len() as u64;
        let content = self.writer.save_bytes(BlobKind::Meta, bytes).await?;
        Ok((schema, (size, content)))
    }

    /// Learns the previous snapshot's attachments, which the run reuses instead of downloading.
    async fn load_previous_attachments(&self) {
        let previous = previous_attachments(self.repo, self.base()).await;
        lock(&self.attachments).previous = previous;
    }

    /// Lists and stores every table the options select, in schema order.
    ///
    /// Listing runs ahead of processing: the next page is requested while one is processed,
    /// and the next table's listing starts as soon as the last page of a table arrives, while
    /// that table is sorted and stored. Listing thus runs at the pacer's rate.
    async fn save_tables(&mut self, tables: &[TableSchema]) -> Result<StoredTables, BackupError> {
        let tables: Vec<&TableSchema> = tables
            .iter()
            .filter(|t| self.options.tables.allows(&t.id, &t.name))
            .collect();
        let mut stored = StoredTables {
            nodes: Vec::new(),
            ids: Vec::new(),
            records: 0,
        };
        let mut upcoming = tables.first().map(|t| self.start_listing(t));
        for (position, table) in tables.iter().enumerate() {
            let pages = upcoming
                .take()
                .expect("each table's listing is started before it");
            let (spill, records) = self.spill_table(table, pages).await?;
            upcoming = tables.get(position + 1).map(|t| self.start_listing(t));
            stored
                .nodes
                .push(self.save_table(table, spill, records).await?);
            stored.ids.push(table.id.clone());
            stored.records += records;
        }
        Ok(stored)
    }

    /// Starts listing `table`'s records, with the fields to back up only.
    fn start_listing(&self, table: &TableSchema) -> Pages {
        let (fields, _) = self.options.fields_to_list(table);
        let list_options = ListRecordsOptions {
            fields: if fields.len() < table.fields.len() {
                fields
            } else {
                Vec::new()
            },
            comment_count: self.options.comments,
            ..ListRecordsOptions::default()
        };
        prefetch(
            self.client
                .list_records(self.base(), &table.id, list_options),
        )
    }

    /// Reads `table`'s pages into a spill and queues the attachments they cite: the spill and
    /// the records read.
    async fn spill_table(
        &mut self,
        table: &TableSchema,
        mut pages: Pages,
    ) -> Result<(RecordSpill, u64), BackupError> {
        self.progress.phase(&table.name, None);
        let spill = RecordSpill::new().map_err(BackupError::Spill)?;
        let mut count = 0u64;
        while let Some(page) = pages.recv().await {
            let page = page.map_err(|e| self.airtable(e))?;
            count += page.len() as u64;
            self.progress.items(page.len() as u64);
            for (record, _) in page.iter().filter(|(_, count)| *count > 0) {
                self.queue_comments(&table.id, &record.id);
            }
            let page: Vec<Record> = page.into_iter().map(|(record, _)| record).collect();
            if self.options.attachments {
                self.queue_attachments(&table.id, &page);
            }
            let lines: Vec<(String, Vec<u8>)> = page
                .iter()
                .map(|r| (r.id.clone(), records::canonical_line(r)))
                .collect();
            spill.insert(lines).await.map_err(BackupError::Spill)?;
        }
        Ok((spill, count))
    }

    /// Stores the spilled records of `table` in id order: the table file's node.
    async fn save_table(
        &self,
        table: &TableSchema,
        spill: RecordSpill,
        records: u64,
    ) -> Result<Node, BackupError> {
        let (_, excluded_fields) = self.options.fields_to_list(table);
        let mut saver = self.writer.file(BlobKind::Meta);
        let size = spill.stream_sorted(&mut saver).await?;
        let (content, _) = saver.finish().await?;
        let meta = TableMeta {
            id: table.id.clone(),
            name: table.name.clone(),
            records,
            excluded_fields,
        };
        Ok(layout::table_node(&meta, size, content))
    }

    /// Queues every attachment the records of `page` (of table `table`) cite.
    fn queue_attachments(&mut self, table: &str, page: &[Record]) {
        for record in page {
            for (field, cell) in &record.fields {
                for attachment in records::attachments_in(cell)
                    .into_iter()
                    .filter_map(|a| serde_json::from_value::<Attachment>(a.clone()).ok())
                {
                    self.queue_attachment(table, record, field, attachment);
                }
            }
        }
    }

    /// Stores `attachment` unless this run already has it ([`Attachments::claim`]): a task of
    /// its own downloads it when a permit is free.
    fn queue_attachment(
        &mut self,
        table: &str,
        record: &Record,
        field: &str,
        attachment: Attachment,
    ) {
        if !lock(&self.attachments).claim(&attachment, self.repo) {
            return;
        }
        self.progress.bytes_expected(attachment.size.unwrap_or(0));
        let fetch = Fetch {
            client: self.client.clone(),
            writer: self.writer.clone(),
            progress: self.progress.clone(),
            base: self.base().to_owned(),
            table: table.to_owned(),
            record_id: record.id.clone(),
            field: field.to_owned(),
            attachment,
        };
        let (attachments, permits) = (self.attachments.clone(), self.permits.clone());
        self.downloads.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = fetch.download().await;
            lock(&attachments).fetched(&fetch, result);
        });
    }

    /// Reads the comments of record `record` of table `table` in a task of its own, unless an
    /// earlier read found that the token may not read comments.
    fn queue_comments(&mut self, table: &str, record: &str) {
        if !comments::lock(&self.comments).wanted() {
            return;
        }
        let (client, base) = (self.client.clone(), self.base().to_owned());
        let (table, record) = (table.to_owned(), record.to_owned());
        let (comments, permits) = (self.comments.clone(), self.comment_permits.clone());
        self.downloads.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if !comments::lock(&comments).wanted() {
                return;
            }
            let result = client.list_comments(&base, &table, &record).await;
            comments::lock(&comments).read(&table, &record, result);
        });
    }

    /// Waits for the attachment downloads (and comment reads): what the downloads and the
    /// reuse gathered.
    async fn finish_downloads(&mut self) -> Result<Attachments, BackupError> {
        while let Some(joined) = self.downloads.join_next().await {
            if let Err(e) = joined {
                return Err(RepoError::Internal(format!(
                    "attachment download or comment read failed: {e}"
                ))
                .into());
            }
        }
        Ok(std::mem::take(&mut *lock(&self.attachments)))
    }

    /// Saves the snapshot's trees (docs/FORMAT.md): the root's id.
    async fn save_trees(
        &self,
        schema_file: (u64, Vec<BlobId>),
        tables: Vec<Node>,
        attachments: BTreeMap<String, Node>,
        comments: Option<(Vec<Node>, layout::CommentsDirMeta)>,
    ) -> Result<BlobId, BackupError> {
        let attachments_meta = AttachmentsMeta {
            attachments: attachments.len() as u64,
        };
        let attachments_dir = save_fanout(&self.writer, attachments).await?;
        let tables_meta = TablesMeta {
            tables: tables.len() as u64,
        };
        let tables_dir = save_tree(&self.writer, Tree::new(tables)).await?;
        let comments_dir = match comments {
            Some((nodes, meta)) => Some((save_tree(&self.writer, Tree::new(nodes)).await?, meta)),
            None => None,
        };
        let root = layout::root_tree(
            schema_file,
            (tables_dir, tables_meta),
            (attachments_dir, attachments_meta),
            comments_dir,
        );
        Ok(save_tree(&self.writer, root).await?)
    }

    /// Makes what the run stored durable, then saves the snapshot of tree `root` (which holds
    /// `contents`) and sums the run up. Attachment problems and filter `warnings` make it
    /// partial.
    async fn commit(
        &self,
        root: BlobId,
        contents: SnapshotSummary,
        attachments: Attachments,
        base_name: String,
        warnings: Vec<String>,
    ) -> Result<BackupSummary, BackupError> {
        let stats = self.writer.flush().await?;
        let partial = !attachments.problems.is_empty() || !warnings.is_empty();
        let snapshot = Snapshot {
            version: 1,
            time: self.time.clone(),
            hostname: crate::repo::lock::hostname(),
            program: format!("airback {}", env!("CARGO_PKG_VERSION")),
            tree: root,
            source: layout::Source::airtable_base(self.base(), &base_name).to_json(),
            tags: self.options.tags.clone(),
            partial,
            problems: attachments
                .problems
                .iter()
                .chain(&warnings)
                .cloned()
                .collect(),
            summary: contents.to_json(),
            rewritten: None,
            copy_of: None,
        };
        let snapshot_bytes = crate::codec::encode_file(
            self.repo.crypto(),
            crate::crypto::ObjectKind::Snapshot,
            &snapshot,
        )
        .len() as u64;
        let snapshot_id = self.repo.save_snapshot(&snapshot).await?;
        let (counters, before) = (self.client.counters(), &self.counters_before);
        let (stored, stored_before) = (&stats, &self.stats_before);
        Ok(BackupSummary {
            snapshot_id,
            base_id: self.base().to_owned(),
            base_name,
            tables: contents.tables as usize,
            records: contents.records,
            attachments: contents.attachments,
            attachments_downloaded: attachments.downloaded,
            attachments_reused: attachments.reused,
            attachment_bytes_downloaded: attachments.bytes,
            bytes_added: stored.pack_bytes_written - stored_before.pack_bytes_written
                + stored.index_bytes_written
                - stored_before.index_bytes_written
                + snapshot_bytes,
            objects_written: stored.packs_written - stored_before.packs_written
                + stored.index_files_written
                - stored_before.index_files_written
                + 1,
            // `requests` counts paced API calls only; attachment downloads are counted apart.
            api_requests: counters.requests - before.requests,
            retries: counters.retries - before.retries,
            rate_limited: counters.rate_limited - before.rate_limited,
            duration_secs: self.started.elapsed().as_secs_f64(),
            partial,
            problems: attachments.problems,
            warnings,
            comments: contents.comments,
            comments_skipped: contents.comments_skipped,
        })
    }
}

/// Lists pages in a task of its own, one page ahead of the consumer.
fn prefetch(mut pager: crate::airtable::RecordPager) -> Pages {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let next = pager.next_page_with_comment_counts().await.transpose();
            let Some(page) = next else { break };
            let failed = page.is_err();
            if tx.send(page).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}

/// One attachment to download, where it sits, and what a download task needs to store it.
struct Fetch {
    client: Client,
    writer: BlobWriter,
    progress: Arc<dyn Progress>,
    base: String,
    table: String,
    record_id: String,
    field: String,
    attachment: Attachment,
}

impl Fetch {
    /// Downloads the attachment into the repository: its content and size.
    async fn download(&self) -> Result<(Vec<BlobId>, u64), String> {
        let body = self
            .client
            .download_attachment(
                &self.base,
                &self.table,
                &self.record_id,
                &self.field,
                &self.attachment,
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = Box::pin(body.into_stream());
        let mut saver = self.writer.file(BlobKind::Data);
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| e.to_string())?;
            self.progress.bytes(piece.len() as u64);
            saver.push(&piece).await.map_err(|e| e.to_string())?;
        }
        saver.finish().await.map_err(|e| e.to_string())
    }
}
/// `text` with every URL cut to its scheme and host. Attachment URLs carry a signature (in
/// the path or the query) that lets anyone download the file for hours, and problems are kept
/// in snapshots and exports: they name the attachment by id and filename instead.
pub fn without_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let after = &rest[start + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || "`'\"()<>[]{},".contains(c))
            .unwrap_or(after.len());
        let url = &after[..end];
        let host_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let host = &url[..host_end];
        out.push_str(&rest[..start + 3]);
        out.push_str(host.rsplit_once('@').map_or(host, |(_, host)| host));
        if host_end < url.len() {
            out.push_str("/…");
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn attachment_node(attachment: &Attachment, size: u64, content: Vec<BlobId>) -> Node {
    let meta = AttachmentMeta {
        filename: attachment.filename.clone(),
        content_type: attachment.content_type.clone(),
    };
    layout::attachment_node(&attachment.id, &meta, size, content)
}

/// The size of a file node; a directory counts nothing.
fn file_size(node: &Node) -> u64 {
    match node.kind {
        NodeKind::File { size, .. } => size,
        NodeKind::Dir { .. } => 0,
    }
}

/// Saves a tree as one metadata blob.
async fn save_tree(writer: &BlobWriter, tree: Tree) -> Result<BlobId, RepoError> {
    let bytes = serde_json::to_vec(&tree).expect("trees serialize");
    writer.save_blob(BlobKind::Meta, bytes).await
}

/// Saves attachment nodes in subtrees keyed by [`layout::attachment_group`], so that a new
/// attachment rewrites one small subtree, not one tree listing every attachment.
async fn save_fanout(
    writer: &BlobWriter,
    nodes: BTreeMap<String, Node>,
) -> Result<BlobId, RepoError> {
    let mut groups: BTreeMap<String, Vec<Node>> = BTreeMap::new();
    for (id, node) in nodes {
        groups
            .entry(layout::attachment_group(&id))
            .or_default()
            .push(node);
    }
    let mut dirs = Vec::new();
    for (key, nodes) in groups {
        let meta = AttachmentsMeta {
            attachments: nodes.len() as u64,
        };
        let subtree = save_tree(writer, Tree::new(nodes)).await?;
        dirs.push(layout::attachment_group_node(key, subtree, meta));
    }
    save_tree(writer, Tree::new(dirs)).await
}

/// What the local cache remembers of the latest snapshot of a base this cache saw (key
/// `latest:<base id>`): the next run of the base reuses its attachments without listing
/// `snapshots/` or reading its trees. Only a hint: an attachment is reused only if every blob
/// of it is still stored in a live pack (`Attachments::claim`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LatestOfBase {
    snapshot: SnapshotId,
    /// The snapshot's root tree.
    tree: BlobId,
    /// Its attachments: id → (size, content).
    attachments: HashMap<String, (u64, Vec<BlobId>)>,
}

fn latest_key(base: &str) -> String {
    format!("latest:{base}")
}

/// The size and content of each attachment node, by attachment id.
fn attachment_contents(nodes: &BTreeMap<String, Node>) -> HashMap<String, (u64, Vec<BlobId>)> {
    nodes
        .iter()
        .filter_map(|(id, node)| match &node.kind {
            NodeKind::File { size, content, .. } => Some((id.clone(), (*size, content.clone()))),
            _ => None,
        })
        .collect()
}

/// Records `latest` as the base's latest snapshot in the local cache, on a blocking thread
/// (about 150 bytes an attachment to serialize and write). A cache that cannot be written
/// costs the next run a listing of `snapshots/` and the reading of a few trees.
async fn remember_latest(repo: &Repository, base: &str, latest: LatestOfBase) {
    let (repo, base) = (repo.clone(), base.to_owned());
    let written = tokio::task::spawn_blocking(move || {
        let text = serde_json::to_string(&latest).expect("the latest snapshot serializes");
        if let Err(e) = repo.cache().set_value(&latest_key(&base), &text) {
            tracing::debug!("cannot remember the latest snapshot of {base} in the cache: {e}");
        }
    })
    .await;
    if let Err(e) = written {
        tracing::debug!("cannot remember the latest snapshot in the cache: {e}");
    }
}

/// The cache's record of the base's latest snapshot, read and parsed on a blocking thread.
async fn cached_latest(repo: &Repository, base: &str) -> Option<LatestOfBase> {
    let (repo, key) = (repo.clone(), latest_key(base));
    tokio::task::spawn_blocking(move || {
        repo.cache()
            .get_value(&key)
            .ok()
            .flatten()
            .and_then(|text| serde_json::from_str::<LatestOfBase>(&text).ok())
    })
    .await
    .ok()
    .flatten()
}

/// The attachments of the base's latest snapshot, to skip downloading them again. The local
/// cache's record of the latest snapshot this cache saw of the base comes first (no request);
/// without one, the repository itself is read (not only the cache: a deleted cache costs no
/// downloads), and what it gives is remembered for the next run. A snapshot of the base that
/// another process saved since is not seen: its attachments are downloaded again, which costs
/// time, never correctness.
async fn previous_attachments(
    repo: &Repository,
    base: &str,
) -> HashMap<String, (u64, Vec<BlobId>)> {
    if let Some(latest) = cached_latest(repo, base).await {
        return latest.attachments;
    }
    let Ok(Some((snapshot_id, snapshot))) = crate::snapshots::latest(repo, Some(base)).await else {
        return HashMap::new();
    };
    let (attachments, complete) = stored_attachments(repo, &snapshot.tree).await;
    if complete {
        remember_latest(
            repo,
            base,
            LatestOfBase {
                snapshot: snapshot_id,
                tree: snapshot.tree,
                attachments: attachments.clone(),
            },
        )
        .await;
    }
    attachments
}

/// The attachments in the snapshot tree `root`, read from the repository, and whether every
/// tree could be read (only then is the result remembered).
async fn stored_attachments(
    repo: &Repository,
    root: &BlobId,
) -> (HashMap<String, (u64, Vec<BlobId>)>, bool) {
    let mut out = HashMap::new();
    let Ok(root) = repo.load_tree(root).await else {
        return (out, false);
    };
    let Some(subtree) = layout::attachments_dir(&root) else {
        return (out, true);
    };
    let Ok(dirs) = repo.load_tree(&subtree).await else {
        return (out, false);
    };
    let mut complete = true;
    for dir in dirs.nodes {
        let NodeKind::Dir { subtree } = dir.kind else {
            continue;
        };
        let Ok(group) = repo.load_tree(&subtree).await else {
            complete = false;
            continue;
        };
        for node in group.nodes {
            if let NodeKind::File { size, content, .. } = node.kind {
                out.insert(node.name, (size, content));
            }
        }
    }
    (out, complete)
}
