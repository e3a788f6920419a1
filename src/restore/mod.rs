//! Restoring a snapshot into a base: plan, then apply, then verify.
//!
//! 1. **Plan** ([`plan`]): tables and fields to create, every conversion, every loss. Fixed
//!    by the first run and kept in the journal, so a resumed run does exactly the same.
//! 2. **Schema**: the base (created in a workspace, or given), the tables with every
//!    non-link field, then the link fields, one per pair, renaming the inverse Airtable makes.
//!    Everything is found by name before it is created, so a crash between a create and its
//!    journal entry creates nothing twice.
//! 3. **Records** (pass 1): upserts of 10 records keyed on the original record id, without
//!    typecast, links or attachments. The old → new id map goes to the journal.
//! 4. **Attachments**: `uploadAttachment` for files up to 5 MB, one request each, in cell
//!    order; larger files through a staging store that signs URLs, written by URL and checked
//!    by re-reading. A half-filled cell is re-read before uploading more.
//! 5. **Links** (pass 2): `PATCH` of the created side of each pair, 10 records per request;
//!    Airtable fills the inverse.
//! 6. **Verify** ([`verify`]): the target is listed again and compared with the snapshot.
//!
//! Every request goes through the client's per-base pacer, a few in flight so the 5
//! requests/s budget is used whole without a 429.

pub mod journal;
pub mod plan;
pub mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::airtable::{
    AirtableError, Attachment, BaseSchema, Client, MAX_RECORDS_PER_WRITE, MAX_UPLOAD_BYTES,
    NameDescriptionUpdate, NewField, NewRecord, NewTable, Record, RecordUpdate,
};
use crate::backend::{Backend, BackendError};
use crate::progress::Progress;
use crate::stored::{StoredBase, StoredError, StoredFile};
pub use journal::{Journal, JournalError};
pub use plan::{Plan, Role};
pub use verify::Fidelity;

/// Requests in flight at once during the write passes. The pacer keeps the rate; this only
/// hides each request's latency.
const WRITE_CONCURRENCY: usize = 4;

/// How long a staged file's signed URL stays valid.
const STAGING_URL_TTL: Duration = Duration::from_secs(6 * 3600);

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
         live base (`restore --in-place`) is not supported yet"
    )]
    SameBase(String),
}

/// What the snapshot holds that the restore writes, counted before writing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Workload {
    /// Records to create.
    pub records: u64,
    /// Records with at least one link cell to write in pass 2.
    pub link_records: u64,
    /// Attachments to upload directly (≤ 5 MB).
    pub uploads: u64,
    /// Attachments over 5 MB (through staging, or not restored without it).
    pub large: u64,
    /// Bytes of all attachments to restore.
    pub attachment_bytes: u64,
    /// Attachments whose content the snapshot lacks.
    pub missing: u64,
    /// Schema requests (tables, fields, links, renames).
    pub schema_requests: u64,
}

impl Workload {
    /// The least time the restore can take at 5 requests/s: records/50 s + link updates/50 s
    /// + one request per upload and schema change, at 5 a second.
    pub fn floor_seconds(&self) -> f64 {
        let requests = self.records.div_ceil(MAX_RECORDS_PER_WRITE as u64)
            + self.link_records.div_ceil(MAX_RECORDS_PER_WRITE as u64)
            + self.uploads
            + self.large
            + self.schema_requests;
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
    /// The target's schema when this run has just read it (used once, by the schema step).
    target_schema: Option<BaseSchema>,
    base_id: String,
    targets: HashMap<String, TargetIds>,
    progress: Arc<dyn Progress>,
    report: RestoreReport,
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

    let mut target_schema = None;
    let plan = match &state.plan {
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
            plan::build(&stored.schema, &selected, &excluded, &taken)
        }
    };
    let workload = scan(stored, &plan, options.staging.is_some()).await?;
    tracing::debug!("restore: workload {workload:?}");
    let mut report = RestoreReport {
        snapshot: stored.id.to_string(),
        base_id: match &options.target {
            Target::Base(b) => Some(b.clone()),
            Target::Workspace { .. } => state.base_id.clone(),
        },
        created_base: false,
        dry_run: options.dry_run,
        floor_seconds: workload.floor_seconds(),
        workload,
        plan: plan.clone(),
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
    };
    if report.workload.large > 0 && options.staging.is_none() {
        report.problems.push(format!(
            "{} attachments over 5 MB are not restored: pass --staging s3://bucket/prefix to \
             restore them, or get them with `airback export`",
            report.workload.large
        ));
    }
    if report.workload.missing > 0 {
        report.problems.push(format!(
            "{} attachments are not in the snapshot (they could not be downloaded when it was \
             taken)",
            report.workload.missing
        ));
    }
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
        target_schema,
        base_id: String::new(),
        targets: HashMap::new(),
        progress,
        report,
    };
    // The apply phase (what the write rate is measured over) starts with the first request
    // that writes or prepares writing; planning and counting above are local.
    let apply_started = Instant::now();
    let apply_requests_at_start = client.counters().requests;
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
    run.report.apply_seconds = apply_started.elapsed().as_secs_f64();
    run.report.apply_requests = client.counters().requests - apply_requests_at_start;
    if options.verify {
        run.progress
            .phase("verify", Some(run.report.workload.records));
        let fidelity = verify::verify(&run).await?;
        run.report.fidelity = Some(fidelity);
    }
    run.journal.set_finished()?;
    run.progress.finish();
    let at_end = client.counters();
    run.report.requests = at_end.requests - requests_at_start;
    run.report.rate_limited = at_end.rate_limited - at_start.rate_limited;
    run.report.retries = at_end.retries - at_start.retries;
    run.report.seconds = started.elapsed().as_secs_f64();
    Ok(run.report)
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
async fn scan(stored: &StoredBase, plan: &Plan, staging: bool) -> Result<Workload, RestoreError> {
    let mut work = Workload::default();
    for table in &plan.tables {
        let Some(stored_table) = stored.table(&table.source_id) else {
            continue;
        };
        work.schema_requests += 1;
        let link_fields: Vec<&str> = plan
            .links
            .iter()
            .filter(|l| l.table == table.source_id)
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
                            if staging {
                                work.attachment_bytes += file.size;
                            }
                        }
                        Some(file) => {
                            work.uploads += 1;
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
}

/// An attachment cell in the target, with the original record and field it restores.
struct CellRef<'a> {
    table: &'a str,
    record: &'a str,
    field: &'a str,
    source_record: &'a str,
    source_field: &'a str,
}

/// One attachment to put in a cell.
#[derive(Debug, Clone)]
struct Planned {
    attachment: StoredAttachment,
    file: StoredFile,
}

impl Run<'_> {
    /// Finds or creates the target base. `fresh`: this is the run's first attempt.
    async fn base(&mut self, journaled: Option<String>, fresh: bool) -> Result<(), RestoreError> {
        let (workspace, name) = match &self.options.target {
            Target::Base(base) => {
                self.base_id = base.clone();
                self.journal.set_base(base)?;
                return Ok(());
            }
            Target::Workspace { id, name } => (id.clone(), name.clone()),
        };
        if let Some(base) = journaled {
            self.base_id = base;
            return Ok(());
        }
        let name = name.unwrap_or_else(|| default_base_name(self.stored));
        // A run that crashed right after creating the base left no id in the journal: the
        // base is found by its name (which this run chose).
        let same_name: Vec<_> = self
            .client
            .list_bases()
            .await?
            .into_iter()
            .filter(|b| b.name == name)
            .collect();
        if fresh && !same_name.is_empty() {
            return Err(RestoreError::Invalid(format!(
                "a base named `{name}` already exists ({}); pass --name with another name, or \
                 --to-base {} to restore into it",
                same_name[0].id, same_name[0].id
            )));
        }
        if same_name.len() == 1 {
            // An earlier attempt of this run created it and crashed before the journal heard.
            self.base_id = same_name[0].id.clone();
        } else if same_name.len() > 1 {
            return Err(RestoreError::Invalid(format!(
                "{} bases are named `{name}`; pass --to-base with the one this restore created",
                same_name.len()
            )));
        } else {
            let tables: Vec<NewTable> = self.plan.tables.iter().map(new_table).collect();
            if tables.is_empty() {
                return Err(RestoreError::Invalid("no table to restore".into()));
            }
            let created = self.client.create_base(&workspace, &name, &tables).await?;
            self.base_id = created.id;
            self.report.created_base = true;
        }
        self.journal.set_base(&self.base_id)?;
        self.report.base_id = Some(self.base_id.clone());
        Ok(())
    }

    /// Finds or creates every table, field and link field.
    async fn schema(&mut self) -> Result<(), RestoreError> {
        let total = self.plan.tables.len() + self.plan.links.len();
        self.progress.phase("schema", Some(total as u64));
        let mut schema = match self.target_schema.take() {
            Some(schema) => schema,
            None => self.client.base_schema(&self.base_id).await?,
        };
        let mut changed = false;
        for table in &self.plan.tables {
            match find_table(&schema, &table.name) {
                None => {
                    self.client
                        .create_table(&self.base_id, &new_table(table))
                        .await?;
                    changed = true;
                }
                Some(existing) => {
                    let missing: Vec<NewField> = new_table(table)
                        .fields
                        .into_iter()
                        .filter(|f| {
                            existing
                                .fields
                                .iter()
                                .all(|e| !e.name.eq_ignore_ascii_case(&f.name))
                        })
                        .collect();
                    let table_id = existing.id.clone();
                    for field in missing {
                        self.client
                            .create_field(&self.base_id, &table_id, &field)
                            .await?;
                        changed = true;
                    }
                }
            }
            self.progress.items(1);
        }
        if changed {
            schema = self.client.base_schema(&self.base_id).await?;
        }
        for table in &self.plan.tables {
            let target = find_table(&schema, &table.name).ok_or_else(|| {
                RestoreError::Invalid(format!(
                    "table `{}` vanished from the target base",
                    table.name
                ))
            })?;
            let mut ids = TargetIds {
                table: target.id.clone(),
                ..TargetIds::default()
            };
            for field in table.fields.iter().filter(|f| f.created_with_table()) {
                if let Some(found) = find_field(target, &field.name) {
                    ids.fields.insert(field.source_id.clone(), found.id.clone());
                }
            }
            ids.source_id_field = find_field(target, &table.source_id_field)
                .map(|f| f.id.clone())
                .ok_or_else(|| {
                    RestoreError::Invalid(format!(
                        "the target table `{}` lacks its `{}` field",
                        table.name, table.source_id_field
                    ))
                })?;
            self.targets.insert(table.source_id.clone(), ids);
        }

        // Links: one side per pair; the inverse Airtable creates is renamed.
        for link in &self.plan.links {
            let (Some(source_table), Some(linked_table)) = (
                self.plan.table(&link.table),
                self.plan.table(&link.linked_table),
            ) else {
                continue;
            };
            let table_id = self.targets[&link.table].table.clone();
            let linked_id = self.targets[&link.linked_table].table.clone();
            let existing = find_table(&schema, &source_table.name)
                .and_then(|t| find_field(t, &link.name))
                .cloned();
            let (field, created) = match existing {
                Some(field) => (field, false),
                None => {
                    let new = NewField {
                        name: link.name.clone(),
                        field_type: "multipleRecordLinks".into(),
                        description: link.description.clone(),
                        options: Some(json!({ "linkedTableId": linked_id })),
                    };
                    (
                        self.client
                            .create_field(&self.base_id, &table_id, &new)
                            .await?,
                        true,
                    )
                }
            };
            if let Some(ids) = self.targets.get_mut(&link.table) {
                ids.fields.insert(link.field.clone(), field.id.clone());
            }
            if let (Some((inverse_source, name, description)), Some(inverse_id)) =
                (&link.inverse, field.inverse_link_field_id())
            {
                // A link created now has an inverse with Airtable's default name; one found
                // (a resumed run) may already carry the backed-up name.
                let renamed = !created
                    && find_table(&schema, &linked_table.name)
                        .and_then(|t| t.fields.iter().find(|f| f.id == inverse_id))
                        .is_some_and(|f| {
                            f.name == *name
                                && f.description.as_deref().unwrap_or("")
                                    == description.as_deref().unwrap_or("")
                        });
                if !renamed {
                    let update = NameDescriptionUpdate {
                        name: Some(name.clone()),
                        description: description.clone(),
                    };
                    self.client
                        .update_field(&self.base_id, &linked_id, inverse_id, &update)
                        .await?;
                }
                if let Some(ids) = self.targets.get_mut(&link.linked_table) {
                    ids.fields
                        .insert(inverse_source.clone(), inverse_id.to_owned());
                }
            }
            self.progress.items(1);
        }
        Ok(())
    }

    /// Pass 1: every record, without links and attachments, as idempotent upserts.
    async fn records(&mut self) -> Result<(), RestoreError> {
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

    /// Attachments: every cell's files, in order.
    async fn attachments(&mut self) -> Result<(), RestoreError> {
        let total = self.report.workload.uploads
            + if self.options.staging.is_some() {
                self.report.workload.large
            } else {
                0
            };
        self.progress.phase("attachments", Some(total));
        let plan = self.plan.clone();
        for table in &plan.tables {
            let fields: Vec<String> = table
                .fields
                .iter()
                .filter(|f| f.role == Role::Attachments)
                .map(|f| f.source_id.clone())
                .collect();
            if fields.is_empty() {
                continue;
            }
            let Some(stored_table) = self.stored.table(&table.source_id) else {
                continue;
            };
            let ids = self.targets[&table.source_id].clone();
            let this = &*self;
            let cells = this
                .stored
                .records(stored_table)
                .map_err(RestoreError::from)
                .map_ok(|record| {
                    futures::stream::iter(
                        fields
                            .iter()
                            .filter(|f| non_empty(record.fields.get(f.as_str())))
                            .map(|f| {
                                Ok::<_, RestoreError>((
                                    record.id.clone(),
                                    f.clone(),
                                    cell_attachments(record.fields.get(f.as_str())),
                                ))
                            })
                            .collect::<Vec<_>>(),
                    )
                })
                .try_flatten()
                .map_ok(|(record, field, attachments)| {
                    let ids = &ids;
                    async move { this.fill_cell(ids, &record, &field, attachments).await }
                })
                .try_buffer_unordered(WRITE_CONCURRENCY);
            let outcomes: Vec<CellOutcome> = cells.try_collect().await?;
            for outcome in outcomes {
                self.report.attachments_uploaded += outcome.uploaded;
                self.report.attachments_staged += outcome.staged;
                self.report.problems.extend(outcome.problems);
            }
        }
        Ok(())
    }

    /// Fills one attachment cell, resuming where an earlier run stopped.
    async fn fill_cell(
        &self,
        ids: &TargetIds,
        source_record: &str,
        field: &str,
        attachments: Vec<StoredAttachment>,
    ) -> Result<CellOutcome, RestoreError> {
        let mut outcome = CellOutcome::default();
        let journal_state = self.journal.cell(source_record, field)?;
        if let Some((_, true)) = journal_state {
            return Ok(outcome);
        }
        let Some(record_id) = self.journal.target_of(source_record)? else {
            outcome.problems.push(format!(
                "record {source_record} was not created, so its attachments were not restored"
            ));
            return Ok(outcome);
        };
        let Some(field_id) = ids.fields.get(field).cloned() else {
            return Ok(outcome);
        };
        // What goes in the cell, in order: files the snapshot holds and that can be written.
        let mut planned = Vec::new();
        for attachment in attachments {
            let Some(file) = self.stored.attachment(&attachment.id).await? else {
                continue; // counted in the workload's `missing`
            };
            if !restorable(&file, self.options.staging.is_some()) {
                continue; // reported once for the run
            }
            planned.push(Planned { attachment, file });
        }
        // A cell an earlier run started may hold more than the journal says: re-read it.
        let cell = CellRef {
            table: &ids.table,
            record: &record_id,
            field: &field_id,
            source_record,
            source_field: field,
        };
        let mut current = match journal_state {
            Some(_) => self.reconcile_cell(&cell, &planned).await?,
            None => Vec::new(),
        };
        self.journal
            .set_cell(source_record, field, current.len() as u64, false)?;
        let mut unknown_outcomes = 0;
        while current.len() < planned.len() {
            let index = current.len();
            let written = self.add_to_cell(&cell, &current, &planned[index]).await;
            match written {
                Ok((cell_now, staged)) => {
                    if staged {
                        outcome.staged += 1;
                    } else {
                        outcome.uploaded += 1;
                    }
                    current = cell_now;
                    if current.len() <= index {
                        return Err(RestoreError::Invalid(format!(
                            "Airtable did not keep the file `{}` added to record {record_id}; \
                             run the restore again",
                            planned[index].attachment.filename
                        )));
                    }
                    self.journal
                        .set_cell(source_record, field, current.len() as u64, false)?;
                    self.progress.items(1);
                }
                // The upload may or may not have happened (a connection cut after sending):
                // the cell itself says.
                Err(e) if is_unknown_outcome(&e) && unknown_outcomes < 5 => {
                    unknown_outcomes += 1;
                    current = self.reconcile_cell(&cell, &planned).await?;
                    self.journal
                        .set_cell(source_record, field, current.len() as u64, false)?;
                }
                Err(e) => return Err(e),
            }
        }
        self.journal
            .set_cell(source_record, field, planned.len() as u64, true)?;
        Ok(outcome)
    }

    /// Re-reads a cell and keeps the files that match the plan's prefix (same name, and same
    /// size once Airtable knows it); anything after them is removed. Returns what stays.
    async fn reconcile_cell(
        &self,
        cell: &CellRef<'_>,
        planned: &[Planned],
    ) -> Result<Vec<Attachment>, RestoreError> {
        let record = self
            .client
            .get_record(&self.base_id, cell.table, cell.record)
            .await?;
        let mut current = record.attachments(cell.field);
        let matching = current
            .iter()
            .zip(planned)
            .take_while(|(have, want)| {
                have.filename == want.attachment.filename
                    && have.size.is_none_or(|size| size == want.file.size)
            })
            .count();
        if matching < current.len() {
            current.truncate(matching);
            self.set_cell(cell, &current, None).await?;
        }
        Ok(current)
    }

    /// Appends one file to a cell: directly up to 5 MB, else through staging. Returns the cell
    /// as Airtable answered and whether the file went through staging.
    async fn add_to_cell(
        &self,
        cell: &CellRef<'_>,
        current: &[Attachment],
        want: &Planned,
    ) -> Result<(Vec<Attachment>, bool), RestoreError> {
        if want.file.size as usize <= MAX_UPLOAD_BYTES {
            let bytes = self.stored.read_file(&want.file).await?;
            let record = self
                .client
                .upload_attachment(
                    &self.base_id,
                    cell.record,
                    cell.field,
                    &want.attachment.content_type,
                    &want.attachment.filename,
                    &bytes,
                )
                .await?;
            return Ok((record.attachments(cell.field), false));
        }
        let Some(staging) = &self.options.staging else {
            return Err(RestoreError::Invalid("a large file needs --staging".into()));
        };
        let path = format!("airback-staging/{}/{}", self.stored.id, want.attachment.id);
        staging
            .write_stream(&path, self.stored.file_bytes(&want.file))
            .await?;
        self.journal
            .add_staged(&path, cell.source_record, cell.source_field)?;
        let url = staging.presign_read(&path, STAGING_URL_TTL).await?;
        let added = json!({"url": url, "filename": want.attachment.filename});
        let written = self.set_cell(cell, current, Some(added)).await?;
        Ok((written, true))
    }

    /// Sets a cell to `keep` (by id) plus, optionally, one new `{url, filename}` object. A
    /// `PATCH` replaces the whole cell, so sending it twice leaves one copy: it is idempotent.
    async fn set_cell(
        &self,
        cell: &CellRef<'_>,
        keep: &[Attachment],
        added: Option<Value>,
    ) -> Result<Vec<Attachment>, RestoreError> {
        let mut value: Vec<Value> = keep.iter().map(|a| json!({"id": a.id})).collect();
        value.extend(added);
        let update = RecordUpdate {
            id: cell.record.to_owned(),
            fields: Map::from_iter([(cell.field.to_owned(), Value::Array(value))]),
        };
        let written = self
            .client
            .update_records(&self.base_id, cell.table, &[update], false)
            .await?;
        Ok(written
            .first()
            .map(|r| r.attachments(cell.field))
            .unwrap_or_default())
    }

    /// Pass 2: the created side of every link pair, 10 records per request.
    async fn links(&mut self) -> Result<(), RestoreError> {
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
                                None => unmapped += 1,
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

    /// Waits until Airtable has fetched every staged file, checks it, and removes it from the
    /// staging location.
    async fn settle_staged(&mut self) -> Result<(), RestoreError> {
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

#[derive(Debug, Default)]
struct CellOutcome {
    uploaded: u64,
    staged: u64,
    problems: Vec<String>,
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

fn default_base_name(stored: &StoredBase) -> String {
    let original = if stored.base_name().is_empty() {
        stored.base_id()
    } else {
        stored.base_name()
    };
    format!("{original} (restored {})", stored.id.short())
}

/// The create request of a planned table: its fields created with the table, then the source
/// id field.
fn new_table(table: &plan::TablePlan) -> NewTable {
    let mut fields: Vec<NewField> = table
        .fields
        .iter()
        .filter(|f| f.created_with_table())
        .filter_map(|f| {
            Some(NewField {
                name: f.name.clone(),
                field_type: f.target_type.clone()?,
                description: f.description.clone().filter(|d| !d.is_empty()),
                options: f.options.clone(),
            })
        })
        .collect();
    fields.push(NewField {
        name: table.source_id_field.clone(),
        field_type: "singleLineText".into(),
        description: Some(
            "The record's id in the backed-up base, written by airback restore so that a \
             resumed restore never creates a record twice. Delete this field when the restore \
             is done."
                .into(),
        ),
        options: None,
    });
    NewTable {
        name: table.name.clone(),
        description: table.description.clone().filter(|d| !d.is_empty()),
        fields,
    }
}

fn find_table<'s>(schema: &'s BaseSchema, name: &str) -> Option<&'s crate::airtable::TableSchema> {
    schema
        .tables
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
}

fn find_field<'t>(
    table: &'t crate::airtable::TableSchema,
    name: &str,
) -> Option<&'t crate::airtable::FieldSchema> {
    table
        .fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
}
