//! Restoring a snapshot into a base: plan, then apply, then verify.
//!
//! 1. **Plan** (`plan`): tables and fields to create, every conversion, every loss. Fixed
//!    by the first run and kept in the journal, so a resumed run does exactly the same.
//! 2. **Schema** (`schema.rs`): the base (created in a workspace, or given), the tables with
//!    every non-link field, then the link fields, one per pair, renaming the inverse Airtable
//!    makes. Everything is found by name before it is created, so a crash between a create
//!    and its journal entry creates nothing twice.
//! 3. **Records** (pass 1, `records.rs`): upserts of 10 records keyed on the original record
//!    id, without typecast, tables in the `order.rs` order so that each create carries the
//!    record's links to tables already written, and its attachment cells as `{url, filename}`
//!    when the original base still gives their URLs (`originals.rs`). The old → new id map
//!    goes to the journal.
//! 4. **Attachments** (`attachments.rs`): the cells not written by URL: `uploadAttachment`
//!    for files up to 5 MB, one request each, in cell order; larger files through a staging
//!    store that signs URLs, written by URL and checked by re-reading (`staged.rs`, after the
//!    links). A half-filled cell is re-read before uploading more.
//! 5. **Links** (pass 2, `links.rs`): `PATCH` of the links a cycle deferred (self-links,
//!    rings of tables), 10 records per request; Airtable fills the inverse.
//! 6. **Comments** (`comments.rs`): each record comment created again on its new record,
//!    oldest first, its text prefixed with the original author and time.
//! 7. **Verify** (`verify.rs`): the target is listed again and compared with the snapshot;
//!    attachment cells not equal yet are settled by `repair.rs` (Airtable drops a URL it
//!    cannot fetch without a word).
//!
//! Every request goes through the client's per-base pacer, a few in flight so the 5
//! requests/s budget is used whole without a 429. The `journal` keeps what each step did,
//! so that the same command resumes an interrupted restore.
//!
//! This file holds the public types, the state the passes share (`Run`), the order of the
//! steps ([`restore`], which also runs the base and schema steps again after a request whose
//! outcome is unknown), the count of the work before any request, and the reading of stored
//! attachment cells that several passes share.

mod attachments;
mod comments;
mod in_place;
mod journal;
mod links;
mod order;
mod originals;
mod plan;
mod records;
mod repair;
mod schema;
mod staged;
mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::airtable::{AirtableError, BaseSchema, Client, MAX_RECORDS_PER_WRITE, MAX_UPLOAD_BYTES};
use crate::backend::{Backend, BackendError};
use crate::progress::Progress;
use crate::stored::{StoredBase, StoredError, StoredFile};
pub use in_place::{InPlaceCheck, InPlaceOptions, InPlaceReport, SAFETY_TAG, restore_in_place};
pub use journal::{Journal, JournalError};
use order::WriteOrder;
use originals::Originals;
pub(crate) use plan::writable_type;
pub use plan::{Plan, Role, SOURCE_ID_FIELD};
pub use verify::Fidelity;

/// Requests in flight at once during the write passes. The pacer keeps the rate; this only
/// hides each request's latency.
const WRITE_CONCURRENCY: usize = 4;

/// Where to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An existing base (typically a new, empty one).
    Base(String),
    /// A new base, created in this workspace with this name (default: the original name plus
    /// "(restored …)").
    Workspace {
        /// `wsp…`
        id: String,
        /// The new base's name.
        name: Option<String>,
    },
}

/// What to restore, where, how.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The target.
    pub target: Target,
    /// Only these tables (ids or names); all when empty.
    pub tables: Vec<String>,
    /// Staging for attachments over 5 MB (must be able to sign URLs, e.g. S3).
    pub staging: Option<Backend>,
    /// Plan only; write nothing.
    pub dry_run: bool,
    /// The journal database (in memory when `None`: no resume).
    pub journal: Option<PathBuf>,
    /// Re-read the target and compare it with the snapshot at the end.
    pub verify: bool,
}

impl RestoreOptions {
    /// Restore everything into `target`, with a journal at `journal`, and verify.
    pub fn new(target: Target, journal: Option<PathBuf>) -> RestoreOptions {
        RestoreOptions {
            target,
            tables: Vec::new(),
            staging: None,
            dry_run: false,
            journal,
            verify: true,
        }
    }
}

/// Why a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Reading the snapshot failed.
    #[error(transparent)]
    Stored(#[from] StoredError),
    /// Airtable refused or failed.
    #[error(transparent)]
    Airtable(#[from] AirtableError),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The staging store failed.
    #[error("the staging location failed: {0}")]
    Staging(#[from] BackendError),
    /// Bad input or a target that does not fit; the message says what to do.
    #[error("{0}")]
    Invalid(String),
    /// `Target::Base` is the base the snapshot was taken from.
    #[error(
        "{0} is the base this snapshot was taken from; restoring into it would add a copy of \
         every table next to the live ones. Restore into a new base with --workspace \
         wspXXXXXXXXXXXXXX (or into another, empty base with --to-base); restoring over the \
         live base is `restore --in-place`"
    )]
    SameBase(String),
}

/// What the snapshot holds that the restore writes, counted before writing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Workload {
    /// Records to create.
    pub records: u64,
    /// Records with a link cell that waits for pass 2 (a self-link or a cycle); every other
    /// link is written in the create request.
    pub link_records: u64,
    /// Attachments to upload directly (≤ 5 MB) when the original base cannot give their URLs.
    pub uploads: u64,
    /// Attachments over 5 MB (by URL from the original or through staging, else not
    /// restored).
    pub large: u64,
    /// Attachments that can be written by URL in the create requests, the original base
    /// being readable (a file it no longer holds is uploaded instead).
    pub by_url: u64,
    /// Bytes of all attachments to restore.
    pub attachment_bytes: u64,
    /// Attachments whose content the snapshot lacks.
    pub missing: u64,
    /// Schema requests (tables, fields, links, renames).
    pub schema_requests: u64,
    /// Record comments to create (one request each).
    pub comments: u64,
}

impl Workload {
    /// The least time the restore can take at 5 requests/s: records/50 s + link updates/50 s
    /// + one request per upload and schema change, at 5 a second (files by URL cost none).
    pub fn floor_seconds(&self) -> f64 {
        let requests = self.records.div_ceil(MAX_RECORDS_PER_WRITE as u64)
            + self.link_records.div_ceil(MAX_RECORDS_PER_WRITE as u64)
            + self.uploads
            + self.large.saturating_sub(self.by_url)
            + self.schema_requests
            + self.comments;
        requests as f64 / 5.0
    }
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The snapshot restored.
    pub snapshot: String,
    /// The target base.
    pub base_id: Option<String>,
    /// Whether restore created the base.
    pub created_base: bool,
    /// Only planned.
    pub dry_run: bool,
    /// The plan.
    pub plan: Plan,
    /// What the snapshot holds to write.
    pub workload: Workload,
    /// Records created (or updated by a resumed run) in this run.
    pub records_written: u64,
    /// Records already in the journal from an earlier run.
    pub records_resumed: u64,
    /// Files uploaded directly.
    pub attachments_uploaded: u64,
    /// Files written through staging.
    pub attachments_staged: u64,
    /// Records whose links were written.
    pub link_records_written: u64,
    /// API requests this run made, and how long it took.
    pub requests: u64,
    /// 429 answers this run received (0 unless something else shares the base's budget).
    pub rate_limited: u64,
    /// Requests retried after a failure.
    pub retries: u64,
    /// Seconds from start to end (verification included).
    pub seconds: f64,
    /// Seconds of the apply phase (schema, records, attachments, links), for the rate.
    pub apply_seconds: f64,
    /// Requests of the apply phase.
    pub apply_requests: u64,
    /// The floor for this workload at 5 requests/s.
    pub floor_seconds: f64,
    /// Things not restored, one line each (exit code 3 when not empty).
    pub problems: Vec<String>,
    /// The comparison of the target with the snapshot.
    pub fidelity: Option<Fidelity>,
    /// Files written as `{url, filename}` with URLs from the original base.
    pub attachments_by_url: u64,
    /// Files the verification found missing or wrong (Airtable dropped a URL it could not
    /// fetch) and wrote again.
    pub attachments_repaired: u64,
    /// Requests on the original base (its attachment URLs; its own budget, not counted in
    /// `requests`).
    pub original_requests: u64,
    /// Record comments created in this run.
    pub comments_written: u64,
    /// Who they were created as (the token's user); the API cannot set their author or time.
    pub comments_author: Option<String>,
}

impl RestoreReport {
    /// Whether everything restorable was restored and verified equal.
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty() && self.fidelity.as_ref().is_none_or(Fidelity::is_perfect)
    }
}

/// Per-table ids in the target.
#[derive(Debug, Default, Clone)]
struct TargetIds {
    table: String,
    /// Original field id → target field id.
    fields: HashMap<String, String>,
    source_id_field: String,
}

/// State shared by the passes of one run.
struct Run<'a> {
    stored: &'a StoredBase,
    client: &'a Client,
    options: &'a RestoreOptions,
    journal: Arc<Journal>,
    plan: Arc<Plan>,
    /// The order of the records pass, and the links it leaves for pass 2.
    order: WriteOrder,
    /// The original base, when it is readable (attachment URLs).
    originals: Option<Originals>,
    /// The target's schema when this run has just read it (used once, by the schema step).
    target_schema: Option<BaseSchema>,
    base_id: String,
    targets: HashMap<String, TargetIds>,
    progress: Arc<dyn Progress>,
    report: RestoreReport,
}

impl Run<'_> {
    /// The original base as a source of attachment URLs: only when it is readable and the
    /// restore verifies (the verification is what finds a URL Airtable failed to fetch).
    fn url_source(&self) -> Option<&Originals> {
        self.originals.as_ref().filter(|_| self.options.verify)
    }

    /// Requests made so far on the original base (they count in the shared counters too).
    fn original_requests(&self) -> u64 {
        self.originals
            .as_ref()
            .map_or(0, |o| o.client.counters().requests)
    }
}

/// Restores `stored` as `options` say. The snapshot's own base is refused as a
/// [`Target::Base`] ([`RestoreError::SameBase`]).
pub async fn restore(
    stored: &StoredBase,
    client: &Client,
    options: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport, RestoreError> {
    if let Target::Base(base) = &options.target
        && base == stored.base_id()
    {
        return Err(RestoreError::SameBase(base.clone()));
    }
    let started = Instant::now();
    let at_start = client.counters();
    let requests_at_start = at_start.requests;
    let available: Vec<_> = stored
        .schema
        .tables
        .iter()
        .filter(|t| stored.table(&t.id).is_some())
        .cloned()
        .collect();
    let selected =
        plan::select_tables(&available, &options.tables).map_err(RestoreError::Invalid)?;
    let run_key = run_key(stored, &options.target, &options.tables);
    let journal_path = if options.dry_run {
        None
    } else {
        options.journal.as_deref()
    };
    tracing::debug!("restore: opening the journal {journal_path:?}");
    let journal = Arc::new(Journal::open(journal_path, &run_key)?);
    let state = journal.state()?;
    tracing::debug!(
        "restore: journal open; plan known: {}",
        state.plan.is_some()
    );

    let (plan, target_schema) =
        journal_or_new_plan(stored, client, options, state.plan.as_deref(), &selected).await?;
    let order = order::write_order(&plan);
    let has_files = plan
        .tables
        .iter()
        .any(|t| t.fields.iter().any(|f| f.role == Role::Attachments));
    let originals = match has_files {
        true => Originals::open(client, stored.base_id()).await,
        false => None,
    };
    let workload = scan(
        stored,
        &plan,
        &order,
        options.staging.is_some(),
        originals.is_some() && options.verify,
    )
    .await?;
    tracing::debug!("restore: workload {workload:?}");
    let mut report = RestoreReport::new(
        stored,
        options,
        state.base_id.clone(),
        plan.clone(),
        workload,
    );
    if options.dry_run {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    if state.plan.is_none() {
        journal.set_plan(&serde_json::to_string(&plan).expect("plans serialize"))?;
    }

    let mut run = Run {
        stored,
        client,
        options,
        journal,
        plan: Arc::new(plan),
        order,
        originals,
        target_schema,
        base_id: String::new(),
        targets: HashMap::new(),
        progress,
        report,
    };
    // The apply phase (what the write rate is measured over) starts with the first request
    // that writes or prepares writing; planning and counting above are local.
    let apply_started = Instant::now();
    let apply_requests_at_start = client.counters().requests - run.original_requests();
    // Creating a base, a table or a field is not idempotent: when a connection is cut after
    // the request was sent, nobody knows whether it happened. Both steps find what exists by
    // name before creating anything, so they are simply run again.
    let mut fresh = state.plan.is_none();
    let mut attempts = 0;
    loop {
        match run.base(state.base_id.clone(), fresh).await {
            Err(e) if is_unknown_outcome(&e) && attempts < 3 => attempts += 1,
            other => break other?,
        }
        fresh = false;
    }
    loop {
        match run.schema().await {
            Err(e) if is_unknown_outcome(&e) && attempts < 6 => attempts += 1,
            other => break other?,
        }
    }
    run.records().await?;
    run.attachments().await?;
    run.links().await?;
    run.settle_staged().await?;
    run.comments().await?;
    run.report.apply_seconds = apply_started.elapsed().as_secs_f64();
    run.report.apply_requests =
        client.counters().requests - apply_requests_at_start - run.original_requests();
    if options.verify {
        run.progress
            .phase("verify", Some(run.report.workload.records));
        let (mut fidelity, unsettled) = verify::verify(&run).await?;
        run.repair(&mut fidelity, unsettled).await?;
        run.report.fidelity = Some(fidelity);
    }
    run.journal.set_finished()?;
    run.progress.finish();
    let at_end = client.counters();
    // The original base's requests (attachment URLs) count in the shared counters too.
    run.report.original_requests = run.original_requests();
    run.report.requests = at_end.requests - requests_at_start - run.report.original_requests;
    run.report.rate_limited = at_end.rate_limited - at_start.rate_limited;
    run.report.retries = at_end.retries - at_start.retries;
    run.report.seconds = started.elapsed().as_secs_f64();
    Ok(run.report)
}

/// The plan the journal holds (a resumed restore keeps its first plan), or a new one. A new
/// plan into an existing base reads that base's schema, which is returned too: the schema step
/// starts from it.
async fn journal_or_new_plan(
    stored: &StoredBase,
    client: &Client,
    options: &RestoreOptions,
    journal_plan: Option<&str>,
    selected: &[String],
) -> Result<(Plan, Option<BaseSchema>), RestoreError> {
    let mut target_schema = None;
    let plan = match journal_plan {
        Some(text) => serde_json::from_str::<Plan>(text).map_err(|e| {
            RestoreError::Invalid(format!(
                "the journal's plan is unreadable ({e}); delete {} to start over",
                options
                    .journal
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ))
        })?,
        None => {
            let taken: Vec<String> = match &options.target {
                Target::Base(base) => {
                    let schema = client.base_schema(base).await?;
                    let names = schema.tables.iter().map(|t| t.name.clone()).collect();
                    // The schema step starts from it: nothing is written in between.
                    target_schema = Some(schema);
                    names
                }
                Target::Workspace { .. } => Vec::new(),
            };
            let excluded: Vec<String> = stored
                .tables
                .iter()
                .flat_map(|t| t.excluded_fields.iter().cloned())
                .collect();
            plan::build(&stored.schema, selected, &excluded, &taken)
        }
    };
    Ok((plan, target_schema))
}

impl RestoreReport {
    /// The report of a restore that has written nothing yet, with the problems the workload
    /// shows already (attachments too large to upload, or missing from the snapshot).
    fn new(
        stored: &StoredBase,
        options: &RestoreOptions,
        journal_base_id: Option<String>,
        plan: Plan,
        workload: Workload,
    ) -> RestoreReport {
        let mut report = RestoreReport {
            snapshot: stored.id.to_string(),
            base_id: match &options.target {
                Target::Base(b) => Some(b.clone()),
                Target::Workspace { .. } => journal_base_id,
            },
            created_base: false,
            dry_run: options.dry_run,
            floor_seconds: workload.floor_seconds(),
            workload,
            plan,
            records_written: 0,
            records_resumed: 0,
            attachments_uploaded: 0,
            attachments_staged: 0,
            link_records_written: 0,
            requests: 0,
            rate_limited: 0,
            retries: 0,
            seconds: 0.0,
            apply_seconds: 0.0,
            apply_requests: 0,
            problems: Vec::new(),
            fidelity: None,
            attachments_by_url: 0,
            attachments_repaired: 0,
            original_requests: 0,
            comments_written: 0,
            comments_author: None,
        };
        let large_lost = report.workload.large.saturating_sub(report.workload.by_url);
        if large_lost > 0 && options.staging.is_none() {
            report.problems.push(format!(
                "{large_lost} attachments over 5 MB are not restored: pass --staging \
                 s3://bucket/prefix to restore them, or get them with `airback export`"
            ));
        }
        if report.workload.missing > 0 {
            report.problems.push(format!(
                "{} attachments are not in the snapshot (they could not be downloaded when it was \
                 taken)",
                report.workload.missing
            ));
        }
        report
    }
}

fn is_unknown_outcome(error: &RestoreError) -> bool {
    matches!(
        error,
        RestoreError::Airtable(AirtableError::WriteOutcomeUnknown { .. })
    )
}

/// The journal key of a restore: the snapshot, the target and the table selection.
fn run_key(stored: &StoredBase, target: &Target, tables: &[String]) -> String {
    let target = match target {
        Target::Base(base) => format!("base:{base}"),
        Target::Workspace { id, name } => {
            format!("workspace:{id}:{}", name.as_deref().unwrap_or(""))
        }
    };
    format!(
        "snapshot:{}|{target}|tables:{}",
        stored.id,
        tables.join(",")
    )
}

/// Counts the work by reading the snapshot (local, no requests).
/// `by_url`: the original base can give the files' URLs.
async fn scan(
    stored: &StoredBase,
    plan: &Plan,
    order: &WriteOrder,
    staging: bool,
    by_url: bool,
) -> Result<Workload, RestoreError> {
    let mut work = Workload::default();
    for table in &plan.tables {
        let Some(stored_table) = stored.table(&table.source_id) else {
            continue;
        };
        work.schema_requests += 1;
        work.comments += stored.comment_count(&table.source_id);
        let link_fields: Vec<&str> = plan
            .links
            .iter()
            .filter(|l| l.table == table.source_id && !order.in_create(&l.field))
            .map(|l| l.field.as_str())
            .collect();
        let attachment_fields: Vec<&str> = table
            .fields
            .iter()
            .filter(|f| f.role == Role::Attachments)
            .map(|f| f.source_id.as_str())
            .collect();
        let mut records = stored.records(stored_table);
        while let Some(record) = records.next().await {
            let record = record?;
            work.records += 1;
            if link_fields.iter().any(|f| non_empty(record.fields.get(*f))) {
                work.link_records += 1;
            }
            for field in &attachment_fields {
                for attachment in cell_attachments(record.fields.get(*field)) {
                    match stored.attachment(&attachment.id).await? {
                        None => work.missing += 1,
                        Some(file) if file.size as usize > MAX_UPLOAD_BYTES => {
                            work.large += 1;
                            work.by_url += u64::from(by_url);
                            if staging || by_url {
                                work.attachment_bytes += file.size;
                            }
                        }
                        Some(file) => {
                            match by_url {
                                true => work.by_url += 1,
                                false => work.uploads += 1,
                            }
                            work.attachment_bytes += file.size;
                        }
                    }
                }
            }
        }
    }
    for link in &plan.links {
        work.schema_requests += 1 + u64::from(link.inverse.is_some());
    }
    Ok(work)
}

/// The formula that selects these records by id: `OR(RECORD_ID()='rec…',…)` (record ids
/// need no quoting).
fn records_formula<S: AsRef<str>>(ids: &[S]) -> String {
    let terms: Vec<String> = ids
        .iter()
        .map(|id| format!("RECORD_ID()='{}'", id.as_ref()))
        .collect();
    format!("OR({})", terms.join(","))
}

fn non_empty(cell: Option<&Value>) -> bool {
    match cell {
        None | Some(Value::Null) => false,
        Some(Value::Array(items)) => !items.is_empty(),
        Some(_) => true,
    }
}

/// Whether a stored file can be put back: directly up to 5 MB, larger ones only with staging.
fn restorable(file: &StoredFile, staging: bool) -> bool {
    staging || file.size as usize <= MAX_UPLOAD_BYTES
}

/// The attachment objects of a stored cell (id, filename, size, type).
fn cell_attachments(cell: Option<&Value>) -> Vec<StoredAttachment> {
    cell.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    Some(StoredAttachment {
                        id: item.get("id")?.as_str()?.to_owned(),
                        filename: item
                            .get("filename")
                            .and_then(Value::as_str)
                            .unwrap_or("file")
                            .to_owned(),
                        content_type: item
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("application/octet-stream")
                            .to_owned(),
                        size: item.get("size").and_then(Value::as_u64),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
struct StoredAttachment {
    id: String,
    filename: String,
    content_type: String,
    size: Option<u64>,
}
