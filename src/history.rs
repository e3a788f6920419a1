//! `airback history`: one record through a base's snapshots, oldest first: when it was first
//! seen, each snapshot where its cells changed (with the fields that changed), when it was
//! removed, and when it came back.
//!
//! Built on the diff engine, and like it, its cost follows the change, not the base. Between
//! two consecutive snapshots a table file with the same blobs needs no reading at all;
//! otherwise only the records [`StoredBase::records_not_in`] yields are candidates (a record
//! inside a run of blobs both files share is the same in both). Table files are sorted by
//! record id, so a search stops at the first id past the record's. Only the first snapshot
//! that is looked at is searched table by table, up to the record's id.
//!
//! Without a base, every base of the repository is searched this way, and the record must be
//! in the snapshots of exactly one.

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::airtable::Record;
use crate::diff::{Compared, FieldChange, same_name};
use crate::id::SnapshotId;
use crate::repo::snapshot::Snapshot;
use crate::repo::{RepoError, Repository};
use crate::snapshots;
use crate::stored::{StoredBase, StoredError, StoredTable};

/// Why a history could not be told.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Reading a snapshot failed.
    #[error(transparent)]
    Stored(#[from] StoredError),
    /// Listing the snapshots failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// No snapshot holds the record.
    #[error("{0}")]
    NotFound(String),
    /// Bad input (an unknown field, records of several bases); the message says what to do.
    #[error("{0}")]
    Invalid(String),
}

/// What to tell.
#[derive(Debug, Clone, Default)]
pub struct HistoryOptions {
    /// The record's base; every base of the repository is searched when `None`.
    pub base: Option<String>,
    /// Only changes to these fields (ids or names, names ignoring case); all when empty.
    pub fields: Vec<String>,
}

/// One record's history. Its JSON form is documented in the README.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// `rec…`
    pub record: String,
    /// The record's base.
    pub base: String,
    /// The record's table (`tbl…`).
    pub table: String,
    /// The table's name in the latest snapshot that has it.
    pub table_name: String,
    /// How many snapshots of the base were looked at.
    pub snapshots: usize,
    /// The snapshots where the record appeared, changed or disappeared, oldest first.
    pub changes: Vec<HistoryChange>,
}

/// What happened to the record in one snapshot, compared with the snapshot before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// First seen, or seen again after it was removed.
    Added,
    /// Some cells changed.
    Changed,
    /// Gone.
    Removed,
}

/// The record in one snapshot where something happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryChange {
    /// The snapshot's id.
    pub snapshot: String,
    /// When the snapshot was taken (RFC 3339).
    pub time: String,
    /// What happened.
    pub event: Event,
    /// The cells that changed: for `added` every non-empty cell (before `null`), for
    /// `removed` every cell it had (after `null`).
    pub fields: Vec<FieldChange>,
    /// The record's cells in this snapshot, by field id (`null` when removed); only the
    /// selected fields with `--field`.
    pub value: Option<Map<String, Value>>,
}

/// The history of `record`: its value in each snapshot of its base where it changed.
pub async fn record_history(
    repo: &Repository,
    record: &str,
    options: &HistoryOptions,
) -> Result<History, HistoryError> {
    if !record.starts_with("rec") {
        return Err(HistoryError::Invalid(format!(
            "`{record}` is not a record id; give one that starts with `rec`"
        )));
    }
    let all = snapshots::list(repo).await?;
    let mut bases: Vec<String> = Vec::new();
    for (_, snapshot) in &all {
        if let Some(base) = snapshots::base_id(snapshot)
            && !bases.iter().any(|b| b == base)
        {
            bases.push(base.to_owned());
        }
    }
    if let Some(base) = &options.base {
        if !bases.contains(base) {
            return Err(HistoryError::NotFound(format!(
                "the repository holds no snapshot of base {base}; `airback snapshots` lists them"
            )));
        }
        bases = vec![base.clone()];
    }
    let mut found = Vec::new();
    for base in &bases {
        let of_base: Vec<&(SnapshotId, Snapshot)> = all
            .iter()
            .filter(|(_, s)| snapshots::base_id(s) == Some(base.as_str()))
            .collect();
        if let Some(history) = scan_base(repo, record, base, &of_base, &options.fields).await? {
            found.push(history);
        }
    }
    match found.len() {
        0 => Err(HistoryError::NotFound(format!(
            "no snapshot {} holds record {record}; check the id (`airback export` shows a \
             snapshot's records)",
            match &options.base {
                Some(base) => format!("of base {base}"),
                None => "of any base".to_owned(),
            }
        ))),
        1 => Ok(found.remove(0)),
        _ => Err(HistoryError::Invalid(format!(
            "record {record} is in snapshots of {} bases ({}); give --base appXXXXXXXXXXXXXX",
            found.len(),
            found
                .iter()
                .map(|h| h.base.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The record where it was last seen: its table and its cells.
struct Seen {
    table: String,
    record: Record,
}

/// The history of `record` through `snaps` (one base's snapshots, oldest first), or `None`
/// when none of them holds it.
async fn scan_base(
    repo: &Repository,
    record: &str,
    base: &str,
    snaps: &[&(SnapshotId, Snapshot)],
    fields: &[String],
) -> Result<Option<History>, HistoryError> {
    let mut previous: Option<StoredBase> = None;
    let mut seen: Option<Seen> = None;
    // The record's table, once known (a record never moves to another table).
    let mut table: Option<(String, String)> = None;
    let mut changes = Vec::new();
    let mut fields_matched = vec![false; fields.len()];
    for (id, snapshot) in snaps {
        let current = StoredBase::open(repo, *id, snapshot.clone()).await?;
        let candidates: Vec<&StoredTable> = match &table {
            Some((known, _)) => current.table(known).into_iter().collect(),
            None => current.tables.iter().collect(),
        };
        let mut now: Option<Seen> = None;
        for stored in candidates {
            if let Some(record) =
                find_in(previous.as_ref(), &current, stored, seen.as_ref(), record).await?
            {
                now = Some(Seen {
                    table: stored.id.clone(),
                    record,
                });
                break;
            }
        }
        if let Some(now) = &now {
            let name = current
                .schema
                .table(&now.table)
                .map_or_else(String::new, |t| t.name.clone());
            table = Some((now.table.clone(), name));
        }
        let event = match (&seen, &now) {
            (None, None) => None,
            (None, Some(_)) => Some(Event::Added),
            (Some(_), None) => Some(Event::Removed),
            (Some(_), Some(_)) => Some(Event::Changed),
        };
        if let Some(event) = event {
            let last = previous.as_ref().unwrap_or(&current);
            let compared = compared(last, &current, seen.as_ref(), now.as_ref(), fields);
            let compared = match compared {
                Some((compared, matched)) => {
                    for (slot, hit) in fields_matched.iter_mut().zip(matched) {
                        *slot |= hit;
                    }
                    compared
                }
                None => Compared::default(),
            };
            let empty = |id: &str| Record {
                id: id.to_owned(),
                created_time: String::new(),
                fields: Map::new(),
            };
            let before = seen
                .as_ref()
                .map_or_else(|| empty(record), |s| s.record.clone());
            let after = now
                .as_ref()
                .map_or_else(|| empty(record), |s| s.record.clone());
            let changed = compared.changes(&before, &after);
            if event != Event::Changed || !changed.is_empty() {
                let value = now
                    .as_ref()
                    .map(|s| selected(&s.record.fields, &compared, fields.is_empty()));
                changes.push(HistoryChange {
                    snapshot: id.to_string(),
                    time: snapshot.time.clone(),
                    event,
                    fields: changed,
                    value,
                });
            }
        }
        seen = now;
        previous = Some(current);
    }
    let Some((table, table_name)) = table else {
        return Ok(None);
    };
    if let Some((given, _)) = fields.iter().zip(&fields_matched).find(|(_, hit)| !**hit) {
        return Err(HistoryError::Invalid(format!(
            "no field `{given}` in table {table_name} ({table}) of record {record}; give a \
             field's id or name"
        )));
    }
    Ok(Some(History {
        record: record.to_owned(),
        base: base.to_owned(),
        table,
        table_name,
        snapshots: snaps.len(),
        changes,
    }))
}

/// The record in `stored`, a table of `current`, reading as little as it can: nothing when
/// the table file is the one of `previous`, else what the two files do not share.
async fn find_in(
    previous: Option<&StoredBase>,
    current: &StoredBase,
    stored: &StoredTable,
    seen: Option<&Seen>,
    record: &str,
) -> Result<Option<Record>, HistoryError> {
    let seen_here = seen.filter(|s| s.table == stored.id);
    let Some((previous, before)) = previous.and_then(|p| Some((p, p.table(&stored.id)?))) else {
        // A first snapshot, or a table the previous one did not hold: search it.
        return find(current.records(stored), record).await;
    };
    if before.content() == stored.content() {
        return Ok(seen_here.map(|s| s.record.clone()));
    }
    if let Some(found) = find(current.records_not_in(stored, before), record).await? {
        return Ok(Some(found));
    }
    let Some(seen) = seen_here else {
        // Not among what changed, and not there before: not there.
        return Ok(None);
    };
    // Not among what changed in this file: either inside a run both files share (the same as
    // before), or gone, and then it is among what changed in the previous file.
    if find(previous.records_not_in(before, stored), record)
        .await?
        .is_some()
    {
        Ok(None)
    } else {
        Ok(Some(seen.record.clone()))
    }
}

/// The record `id` in a stream sorted by id; stops at the first id past it.
async fn find(
    mut records: BoxStream<'static, Result<Record, StoredError>>,
    id: &str,
) -> Result<Option<Record>, HistoryError> {
    while let Some(record) = records.next().await {
        let record = record?;
        match record.id.as_str().cmp(id) {
            std::cmp::Ordering::Less => continue,
            std::cmp::Ordering::Equal => return Ok(Some(record)),
            std::cmp::Ordering::Greater => return Ok(None),
        }
    }
    Ok(None)
}

/// The fields to compare between the two versions, restricted to `fields` when given, and
/// which of `fields` matched one. `None` when neither version's table is in its schema.
fn compared(
    previous: &StoredBase,
    current: &StoredBase,
    before: Option<&Seen>,
    after: Option<&Seen>,
    fields: &[String],
) -> Option<(Compared, Vec<bool>)> {
    // When the record came or went, one side's table stands for both.
    let table = after.or(before)?.table.as_str();
    let new = current
        .schema
        .table(table)
        .or_else(|| previous.schema.table(table))?;
    let old = if before.is_some() {
        previous.schema.table(table).unwrap_or(new)
    } else {
        new
    };
    let new = if after.is_some() { new } else { old };
    let mut excluded = Vec::new();
    for base in [previous, current] {
        if let Some(stored) = base.table(table) {
            excluded.extend(stored.excluded_fields.iter().cloned());
        }
    }
    let mut compared = Compared::new(old, new, &excluded);
    let mut matched = vec![false; fields.len()];
    if !fields.is_empty() {
        let mut ids: Vec<&str> = Vec::new();
        for field in old.fields.iter().chain(&new.fields) {
            for (given, hit) in fields.iter().zip(matched.iter_mut()) {
                if *given == field.id || same_name(given, &field.name) {
                    *hit = true;
                    ids.push(&field.id);
                }
            }
        }
        compared.retain(|id, _| ids.contains(&id));
    }
    Some((compared, matched))
}

/// The cells `compared` keeps with `--field`, or all of them.
fn selected(cells: &Map<String, Value>, compared: &Compared, all: bool) -> Map<String, Value> {
    cells
        .iter()
        .filter(|(id, _)| all || compared.has(id))
        .map(|(id, value)| (id.clone(), value.clone()))
        .collect()
}
