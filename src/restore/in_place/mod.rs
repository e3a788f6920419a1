//! `restore --in-place`: the snapshot's own base, the live one, brought back to the snapshot's
//! state within a selection (tables, records, fields), so that every link from other bases,
//! automation, interface and form keeps pointing at the base people use.
//!
//! 1. **Safety snapshot** of the live base (tagged `before-undo`) unless turned off, so the
//!    undo can be undone; it is also what the plan reads the live state from (no second
//!    listing). A resumed run (the journal holds an unfinished round) takes none and lists the
//!    live tables through the API instead.
//! 2. **Plan**, per table, from the snapshot and the live records merged by id (the diff's
//!    [`TableMerge`]; with a safety snapshot, only what the two snapshots do not share is
//!    read): records deleted since (to create again), records created since (to delete with
//!    `--delete-new`), and records whose writable cells differ. Records created by an earlier,
//!    interrupted round are recognised (the journal's old → new map, else equal plain cells),
//!    so nothing is created twice whether or not the journal kept up.
//! 3. **Schema** (`schema.rs`): tables and fields deleted since are created again (renamed
//!    ones are matched by id).
//! 4. **Apply** (`apply.rs`; cells compared and built in `cells.rs`), every table's deletions, then creations (plain cells; the old → new map goes
//!    to the journal), then one `PATCH` per record with the cells that differ, links pointed at
//!    the new ids, attachment cells cut to the files they keep; then uploads of the files
//!    missing. 10 records per request, computed fields never written, unchanged records never
//!    named in a request. Of a link pair, only one side is written (Airtable mirrors the other).
//! 5. **Comments** (`comments.rs`): the comments the snapshot holds that the live records
//!    lack (records created again, comments deleted since) are created again.
//! 6. **Verify**: the records written are read again (by `RECORD_ID()`) and compared with the
//!    snapshot the same way the plan compared them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::plan::{self, Conversion, convert};
use super::{Journal, RestoreError, Role, StoredAttachment, cell_attachments, records_formula};
use crate::airtable::{
    AirtableError, BaseSchema, Client, FieldSchema, MAX_RECORDS_PER_WRITE, MAX_UPLOAD_BYTES,
    NameDescriptionUpdate, NewField, NewRecord, NewTable, Record, RecordUpdate, TableSchema,
};
use crate::backup::{BackupOptions, backup_base};
use crate::diff::{
    CellKind, Diff, DiffSummary, FieldChange, FieldRef, LiveBase, Pair, RecordChange, SchemaDiff,
    TableDiff, TableMerge, TableRef, link_id, normalized,
};
use crate::progress::{NoProgress, Progress};
use crate::stored::{StoredBase, StoredError, StoredTable};

mod apply;
mod cells;
mod comments;
mod schema;

use apply::{Apply, plan_report, verify};
use cells::{LinkState, Writes, content_key, create_cells, record_writes};
use schema::{FieldWrite, earlier_table, new_table, plan_fields};

/// The tag of the snapshot taken before an in-place restore writes anything.
pub const SAFETY_TAG: &str = "before-undo";

/// Records per `RECORD_ID()` formula when reading written records back.
const VERIFY_CHUNK: usize = 50;

/// What to bring back, and how.
#[derive(Debug, Clone, Default)]
pub struct InPlaceOptions {
    /// Only these tables (ids or names); all the snapshot holds when empty.
    pub tables: Vec<String>,
    /// Only these records (ids as in the snapshot), and the links to and from them.
    pub records: Vec<String>,
    /// Only these fields' cells (ids or names); records are then neither created nor deleted.
    pub fields: Vec<String>,
    /// Delete the records created since the snapshot (in the selection).
    pub delete_new: bool,
    /// Plan only: read, write nothing.
    pub dry_run: bool,
    /// The journal database (in memory when `None`: no resume).
    pub journal: Option<PathBuf>,
    /// Read what was written again and compare it with the snapshot.
    pub verify: bool,
    /// The safety snapshot to take first (the live base's backup options, tagged
    /// [`SAFETY_TAG`]); `None` for `--no-safety-snapshot`.
    pub safety_snapshot: Option<BackupOptions>,
}

/// What an in-place restore did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct InPlaceReport {
    /// The snapshot brought back.
    pub snapshot: String,
    /// The base (the snapshot's own).
    pub base: String,
    /// Only planned.
    pub dry_run: bool,
    /// The snapshot of the live base taken before writing, if any.
    pub safety_snapshot: Option<String>,
    /// The changes, from the live base (`from: "live"`) to the snapshot: records it creates
    /// again are `added` (old ids), records it deletes `removed`, cells it writes `changed`.
    pub changes: Diff,
    /// Records deleted since the snapshot and created again: old id → new id.
    pub recreated: BTreeMap<String, String>,
    /// Records created.
    pub records_created: u64,
    /// Records whose cells were written.
    pub records_updated: u64,
    /// Records deleted (`--delete-new`).
    pub records_deleted: u64,
    /// Files uploaded.
    pub attachments_uploaded: u64,
    /// Fields created again.
    pub fields_created: u64,
    /// Tables created again.
    pub tables_created: u64,
    /// Write requests (create, update, delete, upload, field); planned ones with `dry_run`.
    pub write_requests: u64,
    /// API requests this run made (reads included).
    pub requests: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Seconds from start to end.
    pub seconds: f64,
    /// What could not be brought back, one line each (exit code 3 when not empty).
    pub problems: Vec<String>,
    /// The comparison after writing.
    pub verified: Option<InPlaceCheck>,
    /// Record comments created again (on records created again, and those live records lost
    /// since the snapshot), one request each; not in `write_requests` (a dry run does not
    /// count them: it would have to list the live comments).
    pub comments_created: u64,
    /// Who they were created as (the token's user); the API cannot set their author or time.
    pub comments_author: Option<String>,
}

/// The records written, read again.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InPlaceCheck {
    /// Records read again.
    pub records: u64,
    /// Writable cells that still differ from the snapshot.
    pub cells_differing: u64,
    /// Records that should exist and were not found (or should be gone and were found).
    pub records_wrong: u64,
    /// A few of the differences, one line each.
    pub examples: Vec<String>,
}

impl InPlaceReport {
    /// Whether everything selected was brought back and verified equal.
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty()
            && self
                .verified
                .as_ref()
                .is_none_or(|v| v.cells_differing == 0 && v.records_wrong == 0)
    }
}

/// One table's work.
#[derive(Debug, Default)]
struct TableWork {
    /// The live table's id: the snapshot's, or that of the table created again (empty until
    /// created).
    id: String,
    /// The snapshot's table id.
    source: String,
    name: String,
    /// A table deleted since: created again first.
    new_table: Option<NewTable>,
    fields: Vec<FieldWrite>,
    /// Snapshot records to create again.
    recreate: Vec<Record>,
    /// Snapshot record and its live counterpart (same id, or the record an earlier round
    /// created for it), differing somewhere.
    pairs: Vec<(Record, Record)>,
    /// Live records to delete.
    delete: Vec<String>,
    /// Snapshot records deleted since that this run does not create again (outside
    /// `--record`, or with `--field`): links to them are left out.
    gone: Vec<String>,
}

/// Brings `stored`'s own base back to the snapshot's state within the selection.
pub async fn restore_in_place(
    stored: &StoredBase,
    client: &Client,
    options: &InPlaceOptions,
    progress: Arc<dyn Progress>,
) -> Result<InPlaceReport, RestoreError> {
    let started = Instant::now();
    let at_start = client.counters();
    let base = stored.base_id().to_owned();
    if base.is_empty() {
        return Err(RestoreError::Invalid(format!(
            "snapshot {} is not a snapshot of an Airtable base",
            stored.id.short()
        )));
    }
    let available: Vec<TableSchema> = stored
        .schema
        .tables
        .iter()
        .filter(|t| stored.table(&t.id).is_some())
        .cloned()
        .collect();
    let selected =
        super::plan::select_tables(&available, &options.tables).map_err(RestoreError::Invalid)?;

    let journal_path = if options.dry_run {
        None
    } else {
        options.journal.as_deref()
    };
    let journal = Journal::open(
        journal_path,
        &format!("in-place|snapshot:{}|base:{base}", stored.id),
    )?;
    if journal.finished()? {
        journal.restart()?;
    }
    let resumed = journal.state()?.plan.is_some();

    // The live state: the safety snapshot when one is taken now, else the API.
    progress.phase("reading the live base", None);
    let safety = match (&options.safety_snapshot, resumed || options.dry_run) {
        (Some(backup), false) => Some(take_safety_snapshot(stored, client, backup).await?),
        _ => None,
    };
    if !options.dry_run && !resumed {
        let fixed = json!({"safety_snapshot": safety.as_ref().map(|s| s.id.to_string())});
        journal.set_plan(&fixed.to_string())?;
    }
    let live_schema = match &safety {
        Some(s) => s.schema.clone(),
        None => client.base_schema(&base).await?,
    };
    let live = LiveBase::new(client, &base, live_schema.clone());

    let mut problems = Vec::new();
    let mut links = LinkState {
        id_map: journal.record_map()?.into_iter().collect(),
        ..LinkState::default()
    };
    let records: HashSet<&str> = options.records.iter().map(String::as_str).collect();
    let mut work = Vec::new();
    // Snapshot records deleted since that an earlier round created again: old → new.
    let mut adopted = Vec::new();
    // Selected tables deleted since (created again now, or by an earlier round).
    let recreated_tables: HashSet<String> = selected
        .iter()
        .filter(|id| !live_schema.tables.iter().any(|t| t.id == **id))
        .cloned()
        .collect();
    for table_id in &selected {
        let table = stored
            .table(table_id)
            .expect("selected among stored tables");
        let schema = stored
            .schema
            .table(table_id)
            .expect("stored tables are in the schema");
        let selected_record = |id: &str| records.is_empty() || records.contains(id);
        let (live_table, by_name) = match live_schema.tables.iter().find(|t| t.id == *table_id) {
            Some(t) => (t, false),
            None => match earlier_table(stored, schema, &live_schema) {
                Some(t) => (t, true),
                None => {
                    if !options.fields.is_empty() {
                        problems.push(format!(
                            "table `{}` was deleted since the snapshot; it is created again \
                             only without --field",
                            schema.name
                        ));
                        continue;
                    }
                    let mut tw =
                        new_table(stored, table, &selected, &recreated_tables, &live_schema);
                    let mut all = stored.records(table);
                    while let Some(record) = all.next().await {
                        let record = record?;
                        if selected_record(&record.id) {
                            tw.recreate.push(record);
                        } else {
                            tw.gone.push(record.id);
                        }
                    }
                    work.push(tw);
                    continue;
                }
            },
        };
        let fields = plan_fields(
            stored,
            schema,
            live_table,
            by_name,
            &table.excluded_fields,
            &selected,
            &recreated_tables,
            options,
            &mut problems,
        );
        let mut merge: TableMerge<RestoreError> = match safety
            .as_ref()
            .and_then(|s| s.table(&live_table.id).map(|t| (s, t)))
        {
            Some((safety, safe)) if safe.excluded_fields == table.excluded_fields => {
                TableMerge::new(
                    from_stored(stored.records_not_in(table, safe)),
                    from_stored(safety.records_not_in(safe, table)),
                )
            }
            _ => TableMerge::new(
                from_stored(stored.records(table)),
                live.records(&live_table.id)
                    .await
                    .map_err(diff_error)?
                    .map_err(diff_error)
                    .boxed(),
            ),
        };
        let mut tw = TableWork {
            id: live_table.id.clone(),
            source: table_id.clone(),
            name: live_table.name.clone(),
            fields,
            ..TableWork::default()
        };
        let mut removed = Vec::new();
        let mut added: Vec<Record> = Vec::new();
        while let Some(pair) = merge.next().await? {
            match pair {
                Pair::Removed(s) if selected_record(&s.id) => removed.push(s),
                Pair::Removed(s) => tw.gone.push(s.id),
                Pair::Added(l) => added.push(l),
                Pair::Both(s, l) => {
                    if selected_record(&s.id)
                        && !record_writes(&tw.fields, &s, &l, &links).is_empty()
                    {
                        tw.pairs.push((s, l));
                    }
                }
            }
        }
        // Records an earlier round created: by the journal's map, else by equal plain cells.
        let mut by_id: HashMap<String, Record> =
            added.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut by_content: HashMap<String, Vec<String>> = HashMap::new();
        for record in by_id.values() {
            by_content
                .entry(content_key(&tw.fields, record, false))
                .or_default()
                .push(record.id.clone());
        }
        for list in by_content.values_mut() {
            list.sort();
        }
        for s in removed {
            let earlier = match links.id_map.get(&s.id) {
                Some(new) if by_id.contains_key(new) => Some(new.clone()),
                _ => by_content
                    .get_mut(&content_key(&tw.fields, &s, true))
                    .and_then(|ids| {
                        while let Some(id) = ids.pop() {
                            if by_id.contains_key(&id) {
                                return Some(id);
                            }
                        }
                        None
                    }),
            };
            match earlier.and_then(|id| by_id.remove(&id)) {
                Some(live_record) => {
                    adopted.push((s.id.clone(), live_record.id.clone()));
                    links.id_map.insert(s.id.clone(), live_record.id.clone());
                    if !options.dry_run {
                        journal.add_records(&[(s.id.clone(), live_record.id.clone())])?;
                    }
                    tw.pairs.push((s, live_record));
                }
                None if options.fields.is_empty() => tw.recreate.push(s),
                None => {
                    problems.push(format!(
                        "record {} of table `{}` was deleted since the snapshot; it is created \
                         again only without --field",
                        s.id, tw.name
                    ));
                    tw.gone.push(s.id);
                }
            }
        }
        if options.delete_new && options.fields.is_empty() {
            let mut new: Vec<String> = by_id.into_keys().filter(|id| selected_record(id)).collect();
            new.sort();
            tw.delete = new;
        }
        work.push(tw);
    }

    let mut report = InPlaceReport {
        snapshot: stored.id.to_string(),
        base: base.clone(),
        dry_run: options.dry_run,
        safety_snapshot: safety.as_ref().map(|s| s.id.to_string()),
        changes: Diff {
            base: base.clone(),
            from: "live".into(),
            to: stored.id.to_string(),
            schema: SchemaDiff::default(),
            tables: Vec::new(),
            summary: DiffSummary::default(),
        },
        recreated: adopted.into_iter().collect(),
        records_created: 0,
        records_updated: 0,
        records_deleted: 0,
        attachments_uploaded: 0,
        fields_created: 0,
        tables_created: 0,
        write_requests: 0,
        requests: 0,
        rate_limited: 0,
        seconds: 0.0,
        problems,
        verified: None,
        comments_created: 0,
        comments_author: None,
    };

    if options.dry_run {
        plan_report(&work, links, &mut report);
    } else {
        let mut apply = Apply {
            stored,
            client,
            base: &base,
            journal: &journal,
            links,
            report: &mut report,
            progress: progress.clone(),
        };
        apply.run(&mut work).await?;
        let links = apply.links;
        comments::restore_comments(
            stored,
            client,
            &base,
            safety.as_ref(),
            &work,
            options,
            &mut report,
        )
        .await?;
        if options.verify {
            progress.phase("verify", None);
            report.verified = Some(verify(&live, &work, &links).await?);
        }
        journal.set_finished()?;
    }
    progress.finish();
    let at_end = client.counters();
    report.requests = at_end.requests - at_start.requests;
    report.rate_limited = at_end.rate_limited - at_start.rate_limited;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn diff_error(e: crate::diff::DiffError) -> RestoreError {
    match e {
        crate::diff::DiffError::Stored(e) => RestoreError::Stored(e),
        crate::diff::DiffError::Airtable(e) => RestoreError::Airtable(e),
        other => RestoreError::Invalid(other.to_string()),
    }
}

fn from_stored(
    records: BoxStream<'static, Result<Record, StoredError>>,
) -> BoxStream<'static, Result<Record, RestoreError>> {
    records.map_err(RestoreError::from).boxed()
}

/// Takes the safety snapshot under a writer lock, as `airback snapshot` does, and opens it.
async fn take_safety_snapshot(
    stored: &StoredBase,
    client: &Client,
    backup: &BackupOptions,
) -> Result<StoredBase, RestoreError> {
    let repo = stored.repository();
    let mut backup = backup.clone();
    backup.base_id = stored.base_id().to_owned();
    if !backup.tags.iter().any(|t| t == SAFETY_TAG) {
        backup.tags.push(SAFETY_TAG.to_owned());
    }
    let safety_error =
        |e: String| RestoreError::Invalid(format!("cannot take the safety snapshot: {e}"));
    let lock = repo
        .lock_writer("restore --in-place")
        .await
        .map_err(|e| safety_error(e.to_string()))?;
    repo.adopt_unindexed_packs()
        .await
        .map_err(|e| safety_error(e.to_string()))?;
    let summary = backup_base(repo, client, &backup, Arc::new(NoProgress)).await;
    lock.release()
        .await
        .map_err(|e| safety_error(e.to_string()))?;
    let summary = summary.map_err(|e| safety_error(e.to_string()))?;
    if summary.partial {
        return Err(safety_error(
            "it is partial (some attachments could not be downloaded); run `airback snapshot` \
             to see why, or pass --no-safety-snapshot"
                .into(),
        ));
    }
    let snapshot = repo
        .load_snapshot(&summary.snapshot_id)
        .await
        .map_err(StoredError::from)?;
    Ok(StoredBase::open(repo, summary.snapshot_id, snapshot).await?)
}
