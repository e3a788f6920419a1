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
//! 3. **Schema**: fields deleted since are created again (renamed ones are matched by id).
//! 4. **Apply**, every table's deletions, then creations (plain cells; the old → new map goes
//!    to the journal), then one `PATCH` per record with the cells that differ, links pointed at
//!    the new ids, attachment cells cut to the files they keep; then uploads of the files
//!    missing. 10 records per request, computed fields never written, unchanged records never
//!    named in a request. Of a link pair, only one side is written (Airtable mirrors the other).
//! 5. **Verify**: the records written are read again (by `RECORD_ID()`) and compared with the
//!    snapshot the same way the plan compared them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::plan::{Conversion, convert};
use super::{Journal, RestoreError, Role, StoredAttachment, cell_attachments};
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

/// How one snapshot field is written back.
#[derive(Debug, Clone)]
struct FieldWrite {
    /// The snapshot's field id.
    source: String,
    /// The live field id (the same unless created again).
    target: String,
    name: String,
    kind: CellKind,
    conversion: Conversion,
    /// For links: whether this side of the pair is written (Airtable mirrors the other).
    write: bool,
    /// Still to create (the live base lacks it).
    create: Option<NewField>,
    /// For links: the inverse field in the linked table, which Airtable keeps in step.
    inverse: Option<String>,
    /// A link field of a table created again: created after the tables.
    link: Option<LinkCreate>,
}

/// A link field to create in a table created again.
#[derive(Debug, Clone)]
struct LinkCreate {
    /// Name and description (its type and linked table are added when it is created).
    field: NewField,
    /// The linked table's id in the snapshot.
    linked: String,
    /// The name the inverse had in the snapshot, given to the one Airtable creates.
    inverse_name: Option<String>,
}

/// What link cells are resolved and compared through.
#[derive(Debug, Default)]
struct LinkState {
    /// Old → new ids of the records created again (this round and earlier ones).
    id_map: HashMap<String, String>,
    /// Snapshot records deleted since and not created again: links to them are left out.
    gone: HashSet<String>,
    /// (record, link field) → the records Airtable added to that cell when they were created
    /// with the other side of the pair filled in.
    mirrored: HashMap<(String, String), Vec<String>>,
}

impl LinkState {
    /// A linked record's id now: the new id of a record created again, `None` for one that is
    /// gone or still to be created (`pending`).
    fn resolve(&self, id: &str, pending: &HashSet<String>) -> Option<String> {
        if let Some(new) = self.id_map.get(id) {
            return Some(new.clone());
        }
        (!self.gone.contains(id) && !pending.contains(id)).then(|| id.to_owned())
    }

    /// Notes what Airtable mirrors when `record` is created with these link cells.
    fn created(&mut self, fields: &[FieldWrite], record: &str, cells: &Map<String, Value>) {
        for f in fields.iter().filter(|f| f.kind == CellKind::Links) {
            let (Some(inverse), Some(ids)) = (&f.inverse, cells.get(&f.target)) else {
                continue;
            };
            for id in ids.as_array().into_iter().flatten().filter_map(link_id) {
                self.mirrored
                    .entry((id.to_owned(), inverse.clone()))
                    .or_default()
                    .push(record.to_owned());
            }
        }
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

/// The linked table of a link field (its snapshot id).
fn linked_table(field: &FieldSchema) -> &str {
    field
        .options
        .as_ref()
        .and_then(|o| o.get("linkedTableId"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The name a table deleted since is created again with: its own, or with " (restored)" when
/// another table of the snapshot now has that name.
fn new_table_name(stored: &StoredBase, table: &TableSchema, live: &BaseSchema) -> String {
    let taken = live.tables.iter().any(|t| {
        t.name.eq_ignore_ascii_case(&table.name)
            && stored.schema.tables.iter().any(|s| s.id == t.id)
    });
    if taken {
        format!("{} (restored)", table.name)
    } else {
        table.name.clone()
    }
}

/// The table an earlier round created again for `table` (deleted since): a live table with the
/// name it is created with that the snapshot does not have.
fn earlier_table<'a>(
    stored: &StoredBase,
    table: &TableSchema,
    live: &'a BaseSchema,
) -> Option<&'a TableSchema> {
    let name = new_table_name(stored, table, live);
    live.tables
        .iter()
        .find(|t| t.name == name && !stored.schema.tables.iter().any(|s| s.id == t.id))
}

/// A table deleted since, to create again: its fields as `restore` plans them (computed ones as
/// static copies), the link fields created afterwards from this side (or, between two tables
/// both created again, from the one first in the schema), every record to create again.
fn new_table(
    stored: &StoredBase,
    table: &StoredTable,
    selected: &[String],
    recreated: &HashSet<String>,
    live: &BaseSchema,
) -> TableWork {
    let schema = stored
        .schema
        .table(&table.id)
        .expect("stored tables are in the schema");
    let all: Vec<String> = stored.schema.tables.iter().map(|t| t.id.clone()).collect();
    let name = new_table_name(stored, schema, live);
    let plan = super::plan::build(&stored.schema, &all, &table.excluded_fields, &[]);
    let planned = plan.table(&table.id).expect("the table is planned");
    let mut fields = Vec::new();
    let mut new_fields = Vec::new();
    for fp in &planned.fields {
        let Some(field) = schema.fields.iter().find(|f| f.id == fp.source_id) else {
            continue;
        };
        let mut write = FieldWrite {
            source: fp.source_id.clone(),
            // Until created, the source id stands in for the new one.
            target: fp.source_id.clone(),
            name: fp.name.clone(),
            kind: CellKind::Plain,
            conversion: fp.conversion,
            write: true,
            create: None,
            inverse: field.inverse_link_field_id().map(str::to_owned),
            link: None,
        };
        match fp.role {
            Role::Cells | Role::Attachments => {
                if fp.role == Role::Attachments {
                    write.kind = CellKind::Attachments;
                }
                new_fields.push(NewField {
                    name: fp.name.clone(),
                    field_type: fp.target_type.clone().unwrap_or_default(),
                    description: fp.description.clone(),
                    options: fp.options.clone(),
                });
            }
            Role::Link | Role::Inverse => {
                write.kind = CellKind::Links;
                let linked = linked_table(field).to_owned();
                let position = |table_id: &str, field_id: &str| {
                    let t = stored.schema.tables.iter().position(|t| t.id == table_id);
                    let f = t.and_then(|t| {
                        stored.schema.tables[t]
                            .fields
                            .iter()
                            .position(|f| f.id == field_id)
                    });
                    (t.unwrap_or(usize::MAX), f.unwrap_or(usize::MAX))
                };
                let other_side_creates = recreated.contains(&linked)
                    && selected.contains(&linked)
                    && write.inverse.as_deref().is_some_and(|inverse| {
                        position(&linked, inverse) < position(&table.id, &field.id)
                    });
                if other_side_creates {
                    write.write = false;
                } else {
                    let inverse_name = write.inverse.as_deref().and_then(|inverse| {
                        stored
                            .schema
                            .table(&linked)
                            .and_then(|t| t.fields.iter().find(|f| f.id == inverse))
                            .map(|f| f.name.clone())
                    });
                    write.link = Some(LinkCreate {
                        field: NewField {
                            name: field.name.clone(),
                            field_type: "multipleRecordLinks".into(),
                            description: field.description.clone(),
                            options: None,
                        },
                        linked,
                        inverse_name,
                    });
                }
            }
            Role::Skipped => continue,
        }
        fields.push(write);
    }
    TableWork {
        id: String::new(),
        source: table.id.clone(),
        name: name.clone(),
        new_table: Some(NewTable {
            name,
            description: schema.description.clone(),
            fields: new_fields,
        }),
        fields,
        ..TableWork::default()
    }
}

/// The fields of one table and how each is written back; problems for the ones that cannot be.
#[allow(clippy::too_many_arguments)]
fn plan_fields(
    stored: &StoredBase,
    schema: &TableSchema,
    live: &TableSchema,
    by_name: bool,
    excluded: &[String],
    selected_tables: &[String],
    recreated_tables: &HashSet<String>,
    options: &InPlaceOptions,
    problems: &mut Vec<String>,
) -> Vec<FieldWrite> {
    let mut fields = Vec::new();
    for field in &schema.fields {
        let kind = CellKind::of(field);
        if kind == CellKind::Computed || excluded.contains(&field.id) {
            continue;
        }
        if !options.fields.is_empty()
            && !options
                .fields
                .iter()
                .any(|f| *f == field.id || f.eq_ignore_ascii_case(&field.name))
        {
            continue;
        }
        let conversion = match field.field_type.as_str() {
            "singleCollaborator" => Conversion::Collaborator,
            "multipleCollaborators" => Conversion::Collaborators,
            _ => Conversion::AsIs,
        };
        let mut write = FieldWrite {
            source: field.id.clone(),
            target: field.id.clone(),
            name: field.name.clone(),
            kind,
            conversion,
            write: true,
            create: None,
            inverse: field.inverse_link_field_id().map(str::to_owned),
            link: None,
        };
        let now = match by_name {
            false => live.fields.iter().find(|f| f.id == field.id),
            true => live.fields.iter().find(|f| f.name == field.name),
        };
        if let Some(now) = now {
            write.target = now.id.clone();
        }
        match now {
            None => {
                if kind == CellKind::Links && recreated_tables.contains(linked_table(field)) {
                    // Its pair is created from the table created again.
                    continue;
                }
                if kind == CellKind::Links {
                    problems.push(format!(
                        "link field `{}` of table `{}` was deleted since the snapshot; restore \
                         --in-place does not create link fields: restore the table into a new \
                         base",
                        field.name, schema.name
                    ));
                    continue;
                }
                let Some(options) = super::plan::write_options_of(field) else {
                    continue;
                };
                let taken = live
                    .fields
                    .iter()
                    .any(|f| f.name.eq_ignore_ascii_case(&field.name));
                write.create = Some(NewField {
                    name: if taken {
                        format!("{} (restored)", field.name)
                    } else {
                        field.name.clone()
                    },
                    field_type: field.field_type.clone(),
                    description: field.description.clone(),
                    options,
                });
            }
            Some(now) if now.field_type != field.field_type => {
                if matches!(now.field_type.as_str(), "singleLineText" | "multilineText")
                    && kind == CellKind::Plain
                {
                    write.conversion = Conversion::Text;
                } else {
                    problems.push(format!(
                        "field `{}` of table `{}` is a {} now and was a {} in the snapshot; its \
                         cells are not written back",
                        now.name, schema.name, now.field_type, field.field_type
                    ));
                    continue;
                }
            }
            Some(_) => {}
        }
        if kind == CellKind::Links {
            write.write = writes_link_side(stored, schema, field, selected_tables, options);
        }
        fields.push(write);
    }
    fields
}

/// Whether restore writes this side of a link pair: always for `--record` (the record's own
/// cells carry every link to and from it) and for links without an inverse; else the side
/// that comes first in the schema among the selected tables.
fn writes_link_side(
    stored: &StoredBase,
    table: &TableSchema,
    field: &FieldSchema,
    selected_tables: &[String],
    options: &InPlaceOptions,
) -> bool {
    if !options.records.is_empty() {
        return true;
    }
    let Some(inverse) = field.inverse_link_field_id() else {
        return true;
    };
    let linked = field
        .options
        .as_ref()
        .and_then(|o| o.get("linkedTableId"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !selected_tables.iter().any(|t| t == linked) {
        return true;
    }
    let position = |table_id: &str, field_id: &str| {
        let t = stored.schema.tables.iter().position(|t| t.id == table_id);
        let f = t.and_then(|t| {
            stored.schema.tables[t]
                .fields
                .iter()
                .position(|f| f.id == field_id)
        });
        (t.unwrap_or(usize::MAX), f.unwrap_or(usize::MAX))
    };
    position(&table.id, &field.id) <= position(linked, inverse)
}

/// The plain writable cells of a record, as a key: equal keys mean a record an earlier round
/// created from this snapshot record (`snapshot_side` reads source field ids, else targets).
fn content_key(fields: &[FieldWrite], record: &Record, snapshot_side: bool) -> String {
    let cells: Vec<Value> = fields
        .iter()
        .filter(|f| f.kind == CellKind::Plain)
        .map(|f| {
            let id = if snapshot_side { &f.source } else { &f.target };
            normalized(f.kind, record.fields.get(id))
        })
        .collect();
    Value::Array(cells).to_string()
}

/// What to write so that `live` holds `snapshot`'s writable cells: the cells to `PATCH`
/// (keyed by target field id) and the files to upload afterwards (field, attachment).
#[derive(Debug, Default)]
struct Writes {
    patch: Map<String, Value>,
    uploads: Vec<(String, StoredAttachment)>,
    /// The source field ids concerned (for the report).
    fields: Vec<String>,
}

impl Writes {
    fn is_empty(&self) -> bool {
        self.patch.is_empty() && self.uploads.is_empty()
    }
}

fn record_writes(
    fields: &[FieldWrite],
    snapshot: &Record,
    live: &Record,
    links: &LinkState,
) -> Writes {
    let mut writes = Writes::default();
    for f in fields {
        let want = snapshot.fields.get(&f.source);
        let have = live.fields.get(&f.target);
        match f.kind {
            CellKind::Plain => {
                let differs = match f.conversion {
                    Conversion::Text => {
                        let text = want.and_then(|v| convert(Conversion::Text, v));
                        normalized(CellKind::Plain, text.as_ref())
                            != normalized(CellKind::Plain, have)
                    }
                    _ => normalized(f.kind, want) != normalized(f.kind, have),
                };
                if differs {
                    let value = want
                        .and_then(|v| convert(f.conversion, v))
                        .unwrap_or(Value::Null);
                    writes.patch.insert(f.target.clone(), value);
                    writes.fields.push(f.source.clone());
                }
            }
            CellKind::Links if f.write => {
                let none = HashSet::new();
                let wanted: Vec<String> = want
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(link_id)
                            .filter_map(|id| links.resolve(id, &none))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut has: Vec<Value> =
                    have.and_then(Value::as_array).cloned().unwrap_or_default();
                if let Some(more) = links.mirrored.get(&(live.id.clone(), f.target.clone())) {
                    has.extend(more.iter().map(|id| Value::from(id.as_str())));
                }
                let want = normalized(CellKind::Links, Some(&Value::from(wanted.clone())));
                if want != normalized(CellKind::Links, Some(&Value::Array(has))) {
                    writes.patch.insert(f.target.clone(), Value::from(wanted));
                    writes.fields.push(f.source.clone());
                }
            }
            CellKind::Attachments => {
                let (keep, upload, changed) = reconcile_attachments(want, have);
                if changed {
                    writes.patch.insert(
                        f.target.clone(),
                        Value::Array(keep.into_iter().map(|id| json!({"id": id})).collect()),
                    );
                }
                if changed || !upload.is_empty() {
                    writes.fields.push(f.source.clone());
                }
                writes
                    .uploads
                    .extend(upload.into_iter().map(|a| (f.target.clone(), a)));
            }
            CellKind::Links | CellKind::Computed => {}
        }
    }
    writes
}

/// An attachment cell's files: the live ones to keep (in the snapshot's order), the snapshot's
/// files to upload, and whether the cell must be cut to the kept ones first. A live file is
/// kept for a snapshot file with its id, or for one with the same filename and size that is not
/// in the live cell by id (the copy an earlier upload made).
fn reconcile_attachments(
    want: Option<&Value>,
    have: Option<&Value>,
) -> (Vec<String>, Vec<StoredAttachment>, bool) {
    let want = cell_attachments(want);
    let have: Vec<(String, String, Option<u64>)> = have
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|a| {
                    Some((
                        a.get("id")?.as_str()?.to_owned(),
                        a.get("filename")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        a.get("size").and_then(Value::as_u64),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let wanted_ids: HashSet<&str> = want.iter().map(|a| a.id.as_str()).collect();
    let mut used = vec![false; have.len()];
    let mut keep = Vec::new();
    let mut upload = Vec::new();
    for a in &want {
        let found = have
            .iter()
            .position(|(id, _, _)| *id == a.id)
            .filter(|&i| !used[i])
            .or_else(|| {
                have.iter().enumerate().position(|(i, (id, name, size))| {
                    !used[i]
                        && !wanted_ids.contains(id.as_str())
                        && *name == a.filename
                        && (a.size.is_none() || *size == a.size)
                })
            });
        match found {
            Some(i) => {
                used[i] = true;
                keep.push(have[i].0.clone());
            }
            None => upload.push(a.clone()),
        }
    }
    let live_order: Vec<&str> = have.iter().map(|(id, _, _)| id.as_str()).collect();
    let changed = live_order.len() != keep.len()
        || live_order.iter().zip(&keep).any(|(a, b)| *a != b.as_str());
    (keep, upload, changed)
}

/// Fills the report of a dry run: the changes and the write requests they take, by
/// simulating the real run's order (creations table by table, 10 at a time, then updates), with
/// the old ids standing in for the new ones.
fn plan_report(work: &[TableWork], mut links: LinkState, report: &mut InPlaceReport) {
    let mut requests = 0u64;
    links.gone = work.iter().flat_map(|tw| tw.gone.iter().cloned()).collect();
    let mut pending: HashSet<String> = work
        .iter()
        .flat_map(|tw| tw.recreate.iter().map(|r| r.id.clone()))
        .collect();
    let mut created: Vec<Vec<(&Record, Record)>> = Vec::new();
    for tw in work {
        if tw.new_table.is_some() {
            requests += 1;
            report.changes.schema.tables_added.push(TableRef {
                id: tw.source.clone(),
                name: tw.name.clone(),
            });
        }
        for f in &tw.fields {
            if let Some(link) = &f.link {
                requests += 1 + u64::from(link.inverse_name.is_some());
            }
        }
        let created_fields: Vec<&FieldWrite> =
            tw.fields.iter().filter(|f| f.create.is_some()).collect();
        requests += created_fields.len() as u64;
        for f in &created_fields {
            report.changes.schema.fields_added.push(FieldRef {
                table: tw.id.clone(),
                id: f.source.clone(),
                name: f.name.clone(),
                field_type: f
                    .create
                    .as_ref()
                    .map(|c| c.field_type.clone())
                    .unwrap_or_default(),
            });
        }
        requests += (tw.delete.len() as u64).div_ceil(MAX_RECORDS_PER_WRITE as u64);
        let mut table = Vec::new();
        for batch in tw.recreate.chunks(MAX_RECORDS_PER_WRITE) {
            requests += 1;
            let cells: Vec<Map<String, Value>> = batch
                .iter()
                .map(|r| create_cells(&tw.fields, r, &links, &pending))
                .collect();
            for (source, cells) in batch.iter().zip(cells) {
                pending.remove(&source.id);
                links.created(&tw.fields, &source.id, &cells);
                table.push((
                    source,
                    Record {
                        id: source.id.clone(),
                        created_time: String::new(),
                        fields: cells,
                    },
                ));
            }
        }
        created.push(table);
    }
    for (tw, created) in work.iter().zip(created) {
        let mut diff = table_diff(tw);
        let mut updates = 0u64;
        for (s, l) in tw
            .pairs
            .iter()
            .map(|(s, l)| (s, l))
            .chain(created.iter().map(|(s, l)| (*s, l)))
        {
            let writes = record_writes(&tw.fields, s, l, &links);
            if writes.is_empty() {
                continue;
            }
            if !writes.patch.is_empty() {
                updates += 1;
            }
            requests += writes.uploads.len() as u64;
            if !tw.recreate.iter().any(|r| r.id == s.id) {
                diff.changed.push(change(&tw.fields, s, l, &writes));
            }
        }
        requests += updates.div_ceil(MAX_RECORDS_PER_WRITE as u64);
        push_table(report, diff);
    }
    report.write_requests = requests;
}

fn table_diff(tw: &TableWork) -> TableDiff {
    TableDiff {
        id: tw.id.clone(),
        name: tw.name.clone(),
        added: tw.recreate.iter().map(|r| r.id.clone()).collect(),
        removed: tw.delete.clone(),
        changed: Vec::new(),
    }
}

fn push_table(report: &mut InPlaceReport, diff: TableDiff) {
    if diff.added.is_empty() && diff.removed.is_empty() && diff.changed.is_empty() {
        return;
    }
    report.changes.summary.added += diff.added.len() as u64;
    report.changes.summary.removed += diff.removed.len() as u64;
    report.changes.summary.changed += diff.changed.len() as u64;
    report.changes.tables.push(diff);
}

fn change(fields: &[FieldWrite], s: &Record, l: &Record, writes: &Writes) -> RecordChange {
    RecordChange {
        id: l.id.clone(),
        fields: fields
            .iter()
            .filter(|f| writes.fields.contains(&f.source))
            .map(|f| FieldChange {
                id: f.target.clone(),
                name: f.name.clone(),
                before: l.fields.get(&f.target).cloned().unwrap_or(Value::Null),
                after: s.fields.get(&f.source).cloned().unwrap_or(Value::Null),
                computed: false,
            })
            .collect(),
    }
}

/// The cells a deleted record is created again with, keyed by target field id: the plain
/// writable ones, converted, and the links (either side of a pair) to records that exist:
/// surviving ones and ones already created again, but not those still `pending`. Files and
/// links to pending records follow in the update pass.
fn create_cells(
    fields: &[FieldWrite],
    record: &Record,
    links: &LinkState,
    pending: &HashSet<String>,
) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|f| {
            let cell = record.fields.get(&f.source)?;
            let value = match f.kind {
                CellKind::Plain => convert(f.conversion, cell)?,
                CellKind::Links => {
                    let ids: Vec<String> = cell
                        .as_array()?
                        .iter()
                        .filter_map(link_id)
                        .filter_map(|id| links.resolve(id, pending))
                        .collect();
                    if ids.is_empty() {
                        return None;
                    }
                    Value::from(ids)
                }
                CellKind::Attachments | CellKind::Computed => return None,
            };
            Some((f.target.clone(), value))
        })
        .collect()
}

/// The requests of a real run.
struct Apply<'a> {
    stored: &'a StoredBase,
    client: &'a Client,
    base: &'a str,
    journal: &'a Journal,
    links: LinkState,
    report: &'a mut InPlaceReport,
    progress: Arc<dyn Progress>,
}

impl Apply<'_> {
    async fn run(&mut self, work: &mut [TableWork]) -> Result<(), RestoreError> {
        self.tables(work).await?;
        // Fields deleted since, before any record needs them.
        for tw in work.iter_mut() {
            for f in &mut tw.fields {
                if let Some(new) = f.create.take() {
                    let created = self.client.create_field(self.base, &tw.id, &new).await?;
                    self.report.write_requests += 1;
                    self.report.fields_created += 1;
                    self.report.changes.schema.fields_added.push(FieldRef {
                        table: tw.id.clone(),
                        id: created.id.clone(),
                        name: created.name.clone(),
                        field_type: created.field_type.clone(),
                    });
                    f.target = created.id;
                }
            }
        }
        self.progress.phase("deleting new records", None);
        for tw in work.iter() {
            if tw.delete.is_empty() {
                continue;
            }
            self.client
                .delete_records(self.base, &tw.id, &tw.delete)
                .await?;
            self.report.write_requests +=
                (tw.delete.len() as u64).div_ceil(MAX_RECORDS_PER_WRITE as u64);
            self.report.records_deleted += tw.delete.len() as u64;
        }
        self.progress.phase("creating deleted records", None);
        let pending: HashSet<String> = work
            .iter()
            .flat_map(|tw| tw.recreate.iter().map(|r| r.id.clone()))
            .collect();
        self.links.gone = work.iter().flat_map(|tw| tw.gone.iter().cloned()).collect();
        let mut created: Vec<Vec<(Record, Record)>> = Vec::new();
        for tw in work.iter() {
            created.push(self.create(tw, &pending).await?);
        }
        // Records deleted since and not created again (outside the selection, or refused):
        // links to them are left out.
        self.links.gone = gone(work, &self.links.id_map);
        self.progress.phase("writing cells", None);
        let mut uploads = Vec::new();
        for (tw, created) in work.iter().zip(created) {
            let mut diff = table_diff(tw);
            diff.added.retain(|id| self.links.id_map.contains_key(id));
            let mut updates = Vec::new();
            for (s, l) in tw.pairs.iter().chain(created.iter()) {
                let writes = record_writes(&tw.fields, s, l, &self.links);
                if writes.is_empty() {
                    continue;
                }
                if !self.links.id_map.contains_key(&s.id) || s.id == l.id {
                    diff.changed.push(change(&tw.fields, s, l, &writes));
                }
                if !writes.patch.is_empty() {
                    updates.push(RecordUpdate {
                        id: l.id.clone(),
                        fields: writes.patch,
                    });
                }
                for (field, attachment) in writes.uploads {
                    uploads.push((l.id.clone(), field, attachment));
                }
            }
            self.update(&tw.name, &tw.id, &updates).await?;
            push_table(self.report, diff);
        }
        self.progress
            .phase("uploading files", Some(uploads.len() as u64));
        for (record, field, attachment) in uploads {
            self.upload(&record, &field, &attachment).await?;
            self.progress.items(1);
        }
        Ok(())
    }

    /// Tables deleted since: each created again with its non-link fields, then their link
    /// fields, whose inverses (named as in the snapshot) Airtable creates in the linked tables.
    async fn tables(&mut self, work: &mut [TableWork]) -> Result<(), RestoreError> {
        for tw in work.iter_mut() {
            let Some(new) = tw.new_table.take() else {
                continue;
            };
            let created = self.client.create_table(self.base, &new).await?;
            self.report.write_requests += 1;
            self.report.tables_created += 1;
            self.report.changes.schema.tables_added.push(TableRef {
                id: created.id.clone(),
                name: created.name.clone(),
            });
            tw.id = created.id.clone();
            for f in &mut tw.fields {
                if let Some(now) = created.fields.iter().find(|c| c.name == f.name) {
                    f.target = now.id.clone();
                }
            }
        }
        let table_ids: HashMap<String, String> = work
            .iter()
            .map(|tw| (tw.source.clone(), tw.id.clone()))
            .collect();
        let mut inverses = Vec::new();
        for tw in work.iter_mut() {
            for f in &mut tw.fields {
                let Some(link) = f.link.take() else {
                    continue;
                };
                let linked = table_ids.get(&link.linked).unwrap_or(&link.linked).clone();
                let mut new = link.field;
                new.options = Some(json!({ "linkedTableId": linked }));
                let created = self.client.create_field(self.base, &tw.id, &new).await?;
                self.report.write_requests += 1;
                self.report.fields_created += 1;
                f.target = created.id.clone();
                if let Some(inverse) = created.inverse_link_field_id() {
                    inverses.push((
                        linked,
                        f.inverse.clone(),
                        inverse.to_owned(),
                        link.inverse_name,
                    ));
                }
            }
        }
        for (table, source, inverse, name) in inverses {
            // The inverse side's field, in a table created again, gets its id.
            if let Some(f) = work
                .iter_mut()
                .filter(|tw| tw.id == table)
                .flat_map(|tw| tw.fields.iter_mut())
                .find(|f| Some(&f.source) == source.as_ref())
            {
                f.target = inverse.clone();
            }
            if let Some(name) = name {
                let update = NameDescriptionUpdate {
                    name: Some(name),
                    description: None,
                };
                self.report.write_requests += 1;
                if let Err(e) = self
                    .client
                    .update_field(self.base, &table, &inverse, &update)
                    .await
                {
                    self.report.problems.push(format!(
                        "the inverse of a link field created again keeps Airtable's name: {e}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Creates a table's deleted records again (plain cells only), 10 per request; a batch
    /// Airtable refuses is sent again one record at a time and the refused one reported.
    async fn create(
        &mut self,
        tw: &TableWork,
        pending: &HashSet<String>,
    ) -> Result<Vec<(Record, Record)>, RestoreError> {
        let mut out = Vec::new();
        for batch in tw.recreate.chunks(MAX_RECORDS_PER_WRITE) {
            let records: Vec<NewRecord> = batch
                .iter()
                .map(|r| NewRecord {
                    fields: create_cells(&tw.fields, r, &self.links, pending),
                })
                .collect();
            self.report.write_requests += 1;
            let answered = match self
                .client
                .create_records(self.base, &tw.id, &records, false)
                .await
            {
                Ok(answered) => answered.into_iter().map(Some).collect(),
                Err(e) if refused(&e) => {
                    let mut one_by_one = Vec::new();
                    for (source, record) in batch.iter().zip(&records) {
                        self.report.write_requests += 1;
                        match self
                            .client
                            .create_records(self.base, &tw.id, std::slice::from_ref(record), false)
                            .await
                        {
                            Ok(mut answer) => one_by_one.push(answer.pop()),
                            Err(e) if refused(&e) => {
                                self.report.problems.push(format!(
                                    "record {} of table `{}` could not be created again: {e}",
                                    source.id, tw.name
                                ));
                                one_by_one.push(None);
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    one_by_one
                }
                Err(e) => return Err(e.into()),
            };
            let mut pairs = Vec::new();
            for ((source, sent), new) in batch.iter().zip(&records).zip(answered) {
                let Some(new) = new else { continue };
                pairs.push((source.id.clone(), new.id.clone()));
                self.links.id_map.insert(source.id.clone(), new.id.clone());
                self.links.created(&tw.fields, &new.id, &sent.fields);
                self.report
                    .recreated
                    .insert(source.id.clone(), new.id.clone());
                self.report.records_created += 1;
                out.push((source.clone(), new));
            }
            self.journal.add_records(&pairs)?;
        }
        Ok(out)
    }

    /// Writes the changed cells, 10 records per request; a refused batch goes one by one.
    async fn update(
        &mut self,
        table_name: &str,
        table: &str,
        updates: &[RecordUpdate],
    ) -> Result<(), RestoreError> {
        for batch in updates.chunks(MAX_RECORDS_PER_WRITE) {
            self.report.write_requests += 1;
            match self
                .client
                .update_records(self.base, table, batch, false)
                .await
            {
                Ok(_) => self.report.records_updated += batch.len() as u64,
                Err(e) if refused(&e) => {
                    for update in batch {
                        self.report.write_requests += 1;
                        match self
                            .client
                            .update_records(self.base, table, std::slice::from_ref(update), false)
                            .await
                        {
                            Ok(_) => self.report.records_updated += 1,
                            Err(e) if refused(&e) => self.report.problems.push(format!(
                                "the cells of record {} of table `{table_name}` could not be \
                                 written back: {e}",
                                update.id
                            )),
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn upload(
        &mut self,
        record: &str,
        field: &str,
        attachment: &StoredAttachment,
    ) -> Result<(), RestoreError> {
        let Some(file) = self.stored.attachment(&attachment.id).await? else {
            self.report.problems.push(format!(
                "file {} ({}) of record {record} is not in the snapshot (it could not be \
                 downloaded when the snapshot was taken)",
                attachment.id, attachment.filename
            ));
            return Ok(());
        };
        if file.size as usize > MAX_UPLOAD_BYTES {
            self.report.problems.push(format!(
                "file {} ({}, {} bytes) of record {record} is over 5 MB, which \
                 restore --in-place cannot upload; get it with `airback export`",
                attachment.id, attachment.filename, file.size
            ));
            return Ok(());
        }
        let bytes = self.stored.read_file(&file).await?;
        self.report.write_requests += 1;
        self.client
            .upload_attachment(
                self.base,
                record,
                field,
                &attachment.content_type,
                &attachment.filename,
                &bytes,
            )
            .await?;
        self.report.attachments_uploaded += 1;
        Ok(())
    }
}

/// Snapshot records deleted since that are not (or could not be) created again: links to
/// them are left out.
fn gone(work: &[TableWork], id_map: &HashMap<String, String>) -> HashSet<String> {
    work.iter()
        .flat_map(|tw| tw.recreate.iter().map(|r| &r.id).chain(&tw.gone))
        .filter(|id| !id_map.contains_key(*id))
        .cloned()
        .collect()
}

/// Whether Airtable refused a write for its content (a 422), as opposed to failing.
fn refused(error: &AirtableError) -> bool {
    matches!(error, AirtableError::InvalidRequest { .. })
}

/// Reads the records written again and compares them with the snapshot.
async fn verify(
    live: &LiveBase,
    work: &[TableWork],
    links: &LinkState,
) -> Result<InPlaceCheck, RestoreError> {
    let mut check = InPlaceCheck::default();
    // Read back, the live cells hold what Airtable mirrored.
    let links = LinkState {
        id_map: links.id_map.clone(),
        gone: links.gone.clone(),
        mirrored: HashMap::new(),
    };
    let id_map = &links.id_map;
    for tw in work {
        // Live id → the snapshot record it must equal.
        let mut expected: HashMap<String, &Record> = HashMap::new();
        for (s, l) in &tw.pairs {
            expected.insert(l.id.clone(), s);
        }
        for s in &tw.recreate {
            if let Some(new) = id_map.get(&s.id) {
                expected.insert(new.clone(), s);
            }
        }
        let mut ids: Vec<&String> = expected.keys().chain(tw.delete.iter()).collect();
        ids.sort();
        let deleted: HashSet<&String> = tw.delete.iter().collect();
        let mut found = HashSet::new();
        for chunk in ids.chunks(VERIFY_CHUNK) {
            let formula = format!(
                "OR({})",
                chunk
                    .iter()
                    .map(|id| format!("RECORD_ID()='{id}'"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let mut records = live
                .records_matching(&tw.id, Some(formula))
                .await
                .map_err(diff_error)?;
            while let Some(record) = records.next().await {
                let record = record.map_err(diff_error)?;
                found.insert(record.id.clone());
                check.records += 1;
                if deleted.contains(&record.id) {
                    check.records_wrong += 1;
                    push_example(
                        &mut check,
                        format!("{} {}: still there", tw.name, record.id),
                    );
                    continue;
                }
                let Some(s) = expected.get(&record.id) else {
                    continue;
                };
                let writes = record_writes(&tw.fields, s, &record, &links);
                let differing = writes.fields.len() as u64;
                if differing > 0 {
                    check.cells_differing += differing;
                    let names: Vec<&str> = tw
                        .fields
                        .iter()
                        .filter(|f| writes.fields.contains(&f.source))
                        .map(|f| f.name.as_str())
                        .collect();
                    push_example(
                        &mut check,
                        format!("{} {}: {} differ", tw.name, record.id, names.join(", ")),
                    );
                }
            }
        }
        for id in expected.keys() {
            if !found.contains(id) {
                check.records_wrong += 1;
                push_example(&mut check, format!("{} {id}: not found", tw.name));
            }
        }
    }
    Ok(check)
}

fn push_example(check: &mut InPlaceCheck, line: String) {
    if check.examples.len() < 10 {
        check.examples.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_are_kept_by_id_or_by_an_earlier_copy_and_uploaded_otherwise() {
        let want = json!([
            {"id": "att1", "filename": "a.png", "size": 3},
            {"id": "att2", "filename": "b.png", "size": 4},
        ]);
        // Unchanged.
        let (keep, upload, changed) = reconcile_attachments(Some(&want), Some(&want));
        assert_eq!(keep, ["att1", "att2"]);
        assert!(upload.is_empty() && !changed);
        // One removed since, one added since: cut to att1, upload b.png.
        let have = json!([
            {"id": "att1", "filename": "a.png", "size": 3},
            {"id": "att9", "filename": "new.png", "size": 9},
        ]);
        let (keep, upload, changed) = reconcile_attachments(Some(&want), Some(&have));
        assert_eq!(keep, ["att1"]);
        assert_eq!(upload.len(), 1);
        assert_eq!(upload[0].filename, "b.png");
        assert!(changed);
        // A copy an earlier round uploaded counts as the file.
        let have = json!([
            {"id": "att1", "filename": "a.png", "size": 3},
            {"id": "attC", "filename": "b.png", "size": 4},
        ]);
        let (keep, upload, changed) = reconcile_attachments(Some(&want), Some(&have));
        assert_eq!(keep, ["att1", "attC"]);
        assert!(upload.is_empty() && !changed);
        // An empty live cell: everything uploaded, nothing to cut.
        let (keep, upload, changed) = reconcile_attachments(Some(&want), None);
        assert!(keep.is_empty() && !changed);
        assert_eq!(upload.len(), 2);
    }

    fn field(source: &str, kind: CellKind) -> FieldWrite {
        FieldWrite {
            source: source.into(),
            target: source.into(),
            name: source.into(),
            kind,
            conversion: Conversion::AsIs,
            write: true,
            create: None,
            inverse: None,
            link: None,
        }
    }

    fn record(id: &str, fields: Value) -> Record {
        Record {
            id: id.into(),
            created_time: String::new(),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn writes_name_only_cells_that_differ_and_point_links_at_new_ids() {
        let fields = [
            field("fldA", CellKind::Plain),
            field("fldB", CellKind::Plain),
            field("fldL", CellKind::Links),
        ];
        let snapshot = record(
            "rec1",
            json!({"fldA": "x", "fldB": 2, "fldL": ["recOld", "recKept"]}),
        );
        let live = record("rec1", json!({"fldA": "x", "fldL": ["recKept"]}));
        let map = LinkState {
            id_map: HashMap::from([("recOld".to_owned(), "recNew".to_owned())]),
            ..LinkState::default()
        };
        let writes = record_writes(&fields, &snapshot, &live, &map);
        assert_eq!(
            Value::Object(writes.patch.clone()),
            json!({"fldB": 2, "fldL": ["recNew", "recKept"]})
        );
        // Once written, nothing differs (links as sets).
        let after = record(
            "rec1",
            json!({"fldA": "x", "fldB": 2, "fldL": ["recKept", "recNew"]}),
        );
        assert!(record_writes(&fields, &snapshot, &after, &map).is_empty());
        // A cell emptied since the snapshot's empty value: nothing to write either way.
        let cleared = record(
            "rec1",
            json!({"fldA": "x", "fldB": 2, "fldL": ["recKept", "recNew"], "fldZ": 1}),
        );
        assert!(record_writes(&fields, &snapshot, &cleared, &map).is_empty());
        // A cell filled since the snapshot (where it was empty) is cleared.
        let filled = record(
            "rec1",
            json!({"fldA": "x", "fldB": 2, "fldL": ["recKept", "recNew"]}),
        );
        let empty_snapshot = record("rec1", json!({"fldB": 2, "fldL": ["recOld", "recKept"]}));
        let writes = record_writes(&fields, &empty_snapshot, &filled, &map);
        assert_eq!(Value::Object(writes.patch), json!({"fldA": null}));
        // Empty link cells on both sides are equal (an empty list is not a change).
        let no_links = record("rec1", json!({"fldA": "x"}));
        assert!(record_writes(&fields, &no_links, &no_links, &map).is_empty());
        // Links to records that are gone are left out.
        let gone = LinkState {
            gone: HashSet::from(["recKept".to_owned()]),
            ..map
        };
        let writes = record_writes(&fields, &snapshot, &after, &gone);
        assert_eq!(Value::Object(writes.patch), json!({"fldL": ["recNew"]}));
        // A link Airtable mirrored when a record was created with the other side counts.
        let mut mirrored = LinkState {
            id_map: HashMap::from([("recOld".to_owned(), "recNew".to_owned())]),
            ..LinkState::default()
        };
        mirrored
            .mirrored
            .insert(("rec1".into(), "fldL".into()), vec!["recNew".into()]);
        assert!(record_writes(&fields, &snapshot, &live_with_b(), &mirrored).is_empty());
    }

    fn live_with_b() -> Record {
        record("rec1", json!({"fldA": "x", "fldB": 2, "fldL": ["recKept"]}))
    }
}
