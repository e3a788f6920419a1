//! Backing up one Airtable base into a snapshot: the schema as the meta API returned it, every
//! record of every selected table as canonical JSON lines, and every attachment's content.
//!
//! A base becomes this tree, built with the types of [`crate::layout`] (docs/FORMAT.md,
//! "Airtable snapshots"):
//!
//! ```text
//! schema.json                      the meta API's answer, verbatim (keys sorted)
//! tables/<table id>.jsonl          one record per line, sorted by record id
//! attachments/<c>/<attachment id>  content; <c> is the id's fourth character
//! ```
//!
//! Records are listed page by page (the client paces at the rate limit) and spilled into a
//! temporary SQLite database, then streamed out in id order, so memory stays flat whatever the
//! table's size. Attachments are downloaded while the listing goes on, a few at a time, and
//! streamed through the chunker; one that the previous snapshot of the base already holds
//! (same id and size) is not downloaded again.

mod records;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::airtable::{AirtableError, Attachment, Client, ListRecordsOptions, Record, TableSchema};
use crate::config::{FieldRef, TableFilter};
use crate::id::{BlobId, SnapshotId};
use crate::layout::{
    self, AttachmentMeta, AttachmentsMeta, LayoutJson, SnapshotSummary, TableMeta, TablesMeta,
};
use crate::repo::pack::BlobKind;
use crate::repo::snapshot::{Node, NodeKind, Snapshot, Tree};
use crate::repo::{BlobWriter, RepoError, Repository};
use records::RecordSpill;

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
    /// Attachment downloads at once.
    pub attachment_concurrency: usize,
    /// Tags stored in the snapshot.
    pub tags: Vec<String>,
}

impl BackupOptions {
    /// Everything in `base_id`, attachments included, 8 downloads at once.
    pub fn new(base_id: impl Into<String>) -> Self {
        BackupOptions {
            base_id: base_id.into(),
            tables: TableFilter::default(),
            exclude_fields: Vec::new(),
            attachments: true,
            attachment_concurrency: 8,
            tags: Vec::new(),
        }
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

/// Reports the progress of a snapshot or an export; the CLI draws bars with it. Every method
/// has a no-op default.
pub trait Progress: Send + Sync {
    /// A table starts.
    fn table(&self, _name: &str) {}
    /// `n` more records were read (snapshot) or written (export).
    fn records(&self, _n: u64) {}
    /// Attachments of `bytes` bytes are on their way.
    fn attachment_queued(&self, _bytes: u64) {}
    /// `n` more attachment bytes were stored (snapshot) or written (export).
    fn attachment_bytes(&self, _n: u64) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

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

/// Shared state of one run's attachment downloads.
struct Attachments {
    /// Previous snapshot's attachments: id → (size, content).
    previous: HashMap<String, (u64, Vec<BlobId>)>,
    seen: HashSet<String>,
    nodes: BTreeMap<String, Node>,
    problems: Vec<String>,
    downloaded: u64,
    reused: u64,
    bytes: u64,
}

/// Backs up one base and commits a snapshot.
pub async fn backup_base(
    repo: &Repository,
    client: &Client,
    options: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupSummary, BackupError> {
    let start = Instant::now();
    let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let base = options.base_id.clone();
    let airtable = |source| BackupError::Airtable {
        base: base.clone(),
        source,
    };
    let counters_before = client.counters();
    let writer = repo.writer();
    let stats_before = writer.stats();
    repo.adopt_unindexed_packs().await?;

    let base_name = match client.list_bases().await {
        Ok(bases) => bases.into_iter().find(|b| b.id == base).map(|b| b.name),
        // Airtable or the network is down: the schema read would fail the same way.
        Err(e) if e.is_transient() => return Err(airtable(e)),
        Err(e) => {
            tracing::warn!("cannot list bases to learn the base's name: {e}");
            None
        }
    }
    .unwrap_or_else(|| base.clone());
    let schema = client.base_schema(&base).await.map_err(airtable)?;
    let warnings = options.unmatched_entries(&schema.tables);
    let schema_bytes = serde_json::to_vec_pretty(&schema.raw).expect("JSON values serialize");
    let schema_len = schema_bytes.len() as u64;
    let schema_content = writer.save_bytes(BlobKind::Meta, schema_bytes).await?;

    let previous = previous_attachments(repo, &base).await;
    let state = Arc::new(Mutex::new(Attachments {
        previous,
        seen: HashSet::new(),
        nodes: BTreeMap::new(),
        problems: Vec::new(),
        downloaded: 0,
        reused: 0,
        bytes: 0,
    }));
    let permits = Arc::new(Semaphore::new(options.attachment_concurrency.max(1)));
    let mut downloads: JoinSet<()> = JoinSet::new();

    let mut table_nodes = Vec::new();
    let mut total_records = 0u64;
    let tables: Vec<&TableSchema> = schema
        .tables
        .iter()
        .filter(|t| options.tables.allows(&t.id, &t.name))
        .collect();
    // Listing runs ahead of processing: the next page is requested while one is processed, and
    // the next table's listing starts as soon as the last page of a table arrives, while that
    // table is sorted and stored. Listing thus runs at the pacer's rate.
    let start_listing = |table: &TableSchema| {
        let (fields, _) = options.fields_to_list(table);
        let list_options = ListRecordsOptions {
            fields: if fields.len() < table.fields.len() {
                fields
            } else {
                Vec::new()
            },
            ..ListRecordsOptions::default()
        };
        prefetch(client.list_records(&base, &table.id, list_options))
    };
    let mut upcoming = tables.first().map(|t| start_listing(t));
    for (position, table) in tables.iter().enumerate() {
        progress.table(&table.name);
        let (_, excluded_fields) = options.fields_to_list(table);
        let spill = RecordSpill::new().map_err(BackupError::Spill)?;
        let mut pages = upcoming
            .take()
            .expect("each table's listing is started before it");
        let mut count = 0u64;
        while let Some(page) = pages.recv().await {
            let page = page.map_err(airtable)?;
            count += page.len() as u64;
            progress.records(page.len() as u64);
            if options.attachments {
                for record in &page {
                    for (field, cell) in &record.fields {
                        for attachment in records::attachments_in(cell)
                            .into_iter()
                            .filter_map(|a| serde_json::from_value::<Attachment>(a.clone()).ok())
                        {
                            queue_attachment(
                                &state,
                                &permits,
                                &mut downloads,
                                client,
                                repo,
                                &writer,
                                &base,
                                &table.id,
                                record,
                                field,
                                attachment,
                                &progress,
                            );
                        }
                    }
                }
            }
            let lines: Vec<(String, Vec<u8>)> = page
                .iter()
                .map(|r| (r.id.clone(), records::canonical_line(r)))
                .collect();
            spill.insert(lines).await.map_err(BackupError::Spill)?;
        }
        upcoming = tables.get(position + 1).map(|t| start_listing(t));
        let mut saver = writer.file(BlobKind::Meta);
        let size = spill.stream_sorted(&mut saver).await?;
        let (content, _) = saver.finish().await?;
        total_records += count;
        let meta = TableMeta {
            id: table.id.clone(),
            name: table.name.clone(),
            records: count,
            excluded_fields,
        };
        table_nodes.push(layout::table_node(&meta, size, content));
    }
    while let Some(joined) = downloads.join_next().await {
        if let Err(e) = joined {
            return Err(RepoError::Internal(format!("attachment task failed: {e}")).into());
        }
    }

    let (attachment_nodes, problems, downloaded, reused, attachment_bytes) = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        (
            std::mem::take(&mut st.nodes),
            std::mem::take(&mut st.problems),
            st.downloaded,
            st.reused,
            st.bytes,
        )
    };
    let attachment_count = attachment_nodes.len() as u64;
    let attachment_total: u64 = attachment_nodes
        .values()
        .map(|n| match n.kind {
            NodeKind::File { size, .. } => size,
            NodeKind::Dir { .. } => 0,
        })
        .sum();
    let table_total: u64 = table_nodes
        .iter()
        .map(|n| match n.kind {
            NodeKind::File { size, .. } => size,
            NodeKind::Dir { .. } => 0,
        })
        .sum();
    let attachments_dir = save_fanout(&writer, attachment_nodes).await?;
    let tables_count = table_nodes.len();
    let tables_dir = save_tree(&writer, Tree::new(table_nodes)).await?;
    let root = layout::root_tree(
        (schema_len, schema_content),
        (
            tables_dir,
            TablesMeta {
                tables: tables_count as u64,
            },
        ),
        (
            attachments_dir,
            AttachmentsMeta {
                attachments: attachment_count,
            },
        ),
    );
    let root_id = save_tree(&writer, root).await?;
    let stats = writer.flush().await?;

    let partial = !problems.is_empty() || !warnings.is_empty();
    let summary_json = SnapshotSummary {
        tables: tables_count as u64,
        records: total_records,
        attachments: attachment_count,
        attachment_bytes: attachment_total,
        size: schema_len + table_total + attachment_total,
    }
    .to_json();
    let snapshot = Snapshot {
        version: 1,
        time,
        hostname: crate::repo::lock::hostname(),
        program: format!("airback {}", env!("CARGO_PKG_VERSION")),
        tree: root_id,
        source: layout::Source::airtable_base(&base, &base_name).to_json(),
        tags: options.tags.clone(),
        partial,
        problems: problems.iter().chain(&warnings).cloned().collect(),
        summary: summary_json,
    };
    let snapshot_bytes = crate::codec::encode_json_file(&snapshot).len() as u64;
    let snapshot_id = repo.save_snapshot(&snapshot).await?;
    let counters = client.counters();
    // `requests` counts paced API calls only; attachment downloads are counted apart.
    let requests = counters.requests - counters_before.requests;
    Ok(BackupSummary {
        snapshot_id,
        base_id: base,
        base_name,
        tables: tables_count,
        records: total_records,
        attachments: attachment_count,
        attachments_downloaded: downloaded,
        attachments_reused: reused,
        attachment_bytes_downloaded: attachment_bytes,
        bytes_added: stats.pack_bytes_written - stats_before.pack_bytes_written
            + stats.index_bytes_written
            - stats_before.index_bytes_written
            + snapshot_bytes,
        objects_written: stats.packs_written - stats_before.packs_written
            + stats.index_files_written
            - stats_before.index_files_written
            + 1,
        api_requests: requests,
        retries: counters.retries - counters_before.retries,
        rate_limited: counters.rate_limited - counters_before.rate_limited,
        duration_secs: start.elapsed().as_secs_f64(),
        partial,
        problems,
        warnings,
    })
}

/// Lists pages in a task of its own, one page ahead of the consumer.
fn prefetch(
    mut pager: crate::airtable::RecordPager,
) -> tokio::sync::mpsc::Receiver<Result<Vec<Record>, AirtableError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let next = pager.next_page().await.transpose();
            let Some(page) = next else { break };
            let failed = page.is_err();
            if tx.send(page).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}

#[allow(clippy::too_many_arguments)]
fn queue_attachment(
    state: &Arc<Mutex<Attachments>>,
    permits: &Arc<Semaphore>,
    downloads: &mut JoinSet<()>,
    client: &Client,
    repo: &Repository,
    writer: &BlobWriter,
    base: &str,
    table: &str,
    record: &Record,
    field: &str,
    attachment: Attachment,
    progress: &Arc<dyn Progress>,
) {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    if !st.seen.insert(attachment.id.clone()) {
        return;
    }
    if let (Some((size, content)), Some(expected)) =
        (st.previous.get(&attachment.id), attachment.size)
        && *size == expected
        && content
            .iter()
            .all(|b| repo.has_blob(b, BlobKind::Data).unwrap_or(false))
    {
        let node = attachment_node(&attachment, *size, content.clone());
        st.nodes.insert(attachment.id.clone(), node);
        st.reused += 1;
        return;
    }
    drop(st);
    progress.attachment_queued(attachment.size.unwrap_or(0));
    let (state, permits, client, writer, progress) = (
        state.clone(),
        permits.clone(),
        client.clone(),
        writer.clone(),
        progress.clone(),
    );
    let (base, table, record_id, field) = (
        base.to_owned(),
        table.to_owned(),
        record.id.clone(),
        field.to_owned(),
    );
    downloads.spawn(async move {
        let _permit = permits.acquire_owned().await;
        let result = download(
            &client,
            &writer,
            &base,
            &table,
            &record_id,
            &field,
            &attachment,
            &progress,
        )
        .await;
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok((content, size)) => {
                st.downloaded += 1;
                st.bytes += size;
                st.nodes.insert(
                    attachment.id.clone(),
                    attachment_node(&attachment, size, content),
                );
            }
            Err(e) => st.problems.push(format!(
                "attachment {} (`{}`) of record {record_id} in table {table}: {}",
                attachment.id,
                attachment.filename,
                without_urls(&e)
            )),
        }
    });
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

#[allow(clippy::too_many_arguments)]
async fn download(
    client: &Client,
    writer: &BlobWriter,
    base: &str,
    table: &str,
    record_id: &str,
    field: &str,
    attachment: &Attachment,
    progress: &Arc<dyn Progress>,
) -> Result<(Vec<BlobId>, u64), String> {
    let body = client
        .download_attachment(base, table, record_id, field, attachment)
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = Box::pin(body.into_stream());
    let mut saver = writer.file(BlobKind::Data);
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| e.to_string())?;
        progress.attachment_bytes(piece.len() as u64);
        saver.push(&piece).await.map_err(|e| e.to_string())?;
    }
    saver.finish().await.map_err(|e| e.to_string())
}

fn attachment_node(attachment: &Attachment, size: u64, content: Vec<BlobId>) -> Node {
    let meta = AttachmentMeta {
        filename: attachment.filename.clone(),
        content_type: attachment.content_type.clone(),
    };
    layout::attachment_node(&attachment.id, &meta, size, content)
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

/// The attachments of the base's latest snapshot, to skip downloading them again. Reads the
/// repository itself (not only the cache), so a deleted cache costs no downloads.
async fn previous_attachments(
    repo: &Repository,
    base: &str,
) -> HashMap<String, (u64, Vec<BlobId>)> {
    let mut out = HashMap::new();
    let Ok(Some((_, snapshot))) = crate::snapshots::latest(repo, Some(base)).await else {
        return out;
    };
    let Ok(root) = repo.load_tree(&snapshot.tree).await else {
        return out;
    };
    let Some(subtree) = layout::attachments_dir(&root) else {
        return out;
    };
    let Ok(dirs) = repo.load_tree(&subtree).await else {
        return out;
    };
    for dir in dirs.nodes {
        let NodeKind::Dir { subtree } = dir.kind else {
            continue;
        };
        let Ok(group) = repo.load_tree(&subtree).await else {
            continue;
        };
        for node in group.nodes {
            if let NodeKind::File { size, content, .. } = node.kind {
                out.insert(node.name, (size, content));
            }
        }
    }
    out
}
