//! `restore --in-place` against the fake Airtable: a bad night in the zoo base (cells edited in
//! several tables, records added and deleted, a link removed, an attachment added) undone in
//! the live base, checked by this test's own reading of the base (every writable cell,
//! attachments by content hash and filename, links as sets through the old → new map); a
//! single record brought back alone; SIGKILLs in the middle; a second run that writes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use airback::airtable::{NewRecord, RecordUpdate};
use airback::backup::{BackupOptions, backup_base};
use airback::id::SnapshotId;
use airback::progress::NoProgress;
use airback::restore::{InPlaceOptions, InPlaceReport, restore_in_place};
use airback::stored::StoredBase;
use airback_fake::{FakeCounters, FakeOptions, Preset, Route};
use serde_json::{Map, Value, json};

use crate::support::{FakeSetup, WRITABLE};

async fn snapshot(s: &FakeSetup) -> StoredBase {
    let summary = backup_base(
        &s.repo,
        &s.client,
        &BackupOptions::new(&s.base),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    open(s, summary.snapshot_id).await
}

async fn open(s: &FakeSetup, id: SnapshotId) -> StoredBase {
    let snapshot = s.repo.load_snapshot(&id).await.unwrap();
    StoredBase::open(&s.repo, id, snapshot).await.unwrap()
}

fn options(s: &FakeSetup) -> InPlaceOptions {
    InPlaceOptions {
        delete_new: true,
        journal: Some(s.dir.path().join("journal.sqlite")),
        verify: true,
        safety_snapshot: Some(BackupOptions::new(&s.base)),
        ..InPlaceOptions::default()
    }
}

async fn undo(s: &FakeSetup, stored: &StoredBase, options: &InPlaceOptions) -> InPlaceReport {
    restore_in_place(stored, &s.client, options, Arc::new(NoProgress))
        .await
        .unwrap()
}

/// The base's tables as the fake holds them: table id → (schema, records).
fn state(s: &FakeSetup) -> BTreeMap<String, (Value, Vec<Value>)> {
    let schema = s.fake.schema_json(&s.base);
    schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let id = t["id"].as_str().unwrap().to_owned();
            let records = s.fake.records_json(&s.base, &id);
            (id, (t.clone(), records))
        })
        .collect()
}

fn empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::Array(items)) => items.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

fn link_set(
    value: Option<&Value>,
    map: &BTreeMap<String, String>,
    gone: &[String],
) -> HashSet<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .filter(|id| !gone.iter().any(|g| g == id))
                .map(|id| map.get(id).cloned().unwrap_or_else(|| id.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The files of a cell as (filename, BLAKE3 of the content), sorted.
fn files(s: &FakeSetup, value: Option<&Value>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|a| {
                    let id = a["id"].as_str().unwrap();
                    let content = s.fake.attachment_content(id).unwrap_or_default();
                    (
                        a["filename"].as_str().unwrap().to_owned(),
                        blake3::hash(&content).to_hex().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Compares the live base with `before` (the state the snapshot holds), every writable cell,
/// through `map` (old → new record ids); tables and fields are matched by name (a table or
/// field created again has a new id). Returns the differences, one line each.
fn differences(
    s: &FakeSetup,
    before: &BTreeMap<String, (Value, Vec<Value>)>,
    map: &BTreeMap<String, String>,
    gone: &[String],
) -> Vec<String> {
    let now = state(s);
    let mut out = Vec::new();
    for (table, (schema, records)) in before {
        let Some((now_schema, now_records)) =
            now.values().find(|(t, _)| t["name"] == schema["name"])
        else {
            out.push(format!("{table}: no table named {}", schema["name"]));
            continue;
        };
        let live: HashMap<&str, &Value> = now_records
            .iter()
            .map(|r| (r["id"].as_str().unwrap(), r))
            .collect();
        if live.len() != records.len() {
            out.push(format!(
                "{table}: {} records, the snapshot has {}",
                live.len(),
                records.len()
            ));
        }
        for record in records {
            let old = record["id"].as_str().unwrap();
            let id = map.get(old).map(String::as_str).unwrap_or(old);
            let Some(now) = live.get(id) else {
                out.push(format!("{table} {old}: missing"));
                continue;
            };
            for field in schema["fields"].as_array().unwrap() {
                let fid = field["id"].as_str().unwrap();
                let kind = field["type"].as_str().unwrap();
                if kind != "multipleRecordLinks"
                    && kind != "multipleAttachments"
                    && !WRITABLE.contains(&kind)
                {
                    continue;
                }
                let Some(now_field) = now_schema["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["name"] == field["name"])
                else {
                    out.push(format!("{table}: no field named {}", field["name"]));
                    continue;
                };
                let now_id = now_field["id"].as_str().unwrap();
                let (want, have) = (record["fields"].get(fid), now["fields"].get(now_id));
                let equal = match kind {
                    "multipleRecordLinks" => link_set(want, map, gone) == link_set(have, map, gone),
                    "multipleAttachments" => files(s, want) == files(s, have),
                    _ => (empty(want) && empty(have)) || want == have,
                };
                if !equal {
                    out.push(format!("{table} {old} {fid} ({kind}): {want:?} → {have:?}"));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn writes(counters: &FakeCounters) -> u64 {
    [
        Route::CreateRecords,
        Route::UpdateRecords,
        Route::DeleteRecords,
        Route::UploadAttachment,
        Route::CreateField,
        Route::CreateTable,
        Route::UpdateField,
    ]
    .iter()
    .map(|r| counters.requests(*r))
    .sum()
}

fn field(schema: &Value, table: &str, name: &str) -> String {
    let table = schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == table)
        .unwrap();
    crate::support::field_id(table, name)
}

fn table_id(schema: &Value, name: &str) -> String {
    schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

const EVERYTHING: &str = "Everything 🦓";
const REFS: &str = "Links / Refs \"quoted\"";

/// What the bad night did, for the assertions.
struct Night {
    everything: String,
    refs: String,
    edited: Vec<String>,
    added: Vec<String>,
    deleted: Vec<String>,
    unlinked: String,
    attached: String,
}

impl Night {
    /// The records the night changed (each once).
    fn changed(&self) -> u64 {
        let all: HashSet<&String> = self
            .edited
            .iter()
            .chain(&self.added)
            .chain(&self.deleted)
            .chain([&self.unlinked, &self.attached])
            .collect();
        all.len() as u64
    }
}

/// A bad night: cells edited in two tables, two records added, three deleted (two with files,
/// all linked from the other table), a link removed, a file added.
async fn bad_night(s: &FakeSetup) -> Night {
    let schema = s.fake.schema_json(&s.base);
    let everything = table_id(&schema, EVERYTHING);
    let refs = table_id(&schema, REFS);
    let name = field(&schema, EVERYTHING, "Name");
    let number = field(&schema, EVERYTHING, "Number");
    let files = field(&schema, EVERYTHING, "Files");
    let partner = field(&schema, EVERYTHING, "Partner ⇄");
    let code = field(&schema, REFS, "Code");
    let records = s.fake.records_json(&s.base, &everything);
    let ids: Vec<String> = records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    // Deleted: records with files and partners.
    let with_files_and_links: Vec<String> = records
        .iter()
        .filter(|r| !empty(r["fields"].get(&files)) && !empty(r["fields"].get(&partner)))
        // uploadAttachment takes files up to 5 MB; larger ones need staging (not in place).
        .filter(|r| {
            r["fields"][&files]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["size"].as_u64().unwrap() <= 5 * 1024 * 1024)
        })
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .take(2)
        .collect();
    assert_eq!(
        with_files_and_links.len(),
        2,
        "the zoo has records with files and links"
    );
    let ref_records = s.fake.records_json(&s.base, &refs);
    let ref_ids: Vec<String> = ref_records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let linked_ref = ref_records
        .iter()
        .find(|r| {
            r["fields"].as_object().unwrap().values().any(|v| {
                v.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x.as_str().is_some_and(|x| x.starts_with("rec")))
                })
            })
        })
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .unwrap();
    let mut deleted = with_files_and_links.clone();
    deleted.push(linked_ref.clone());
    // Edited: cells in both tables.
    let edit: Vec<String> = ids
        .iter()
        .filter(|id| !deleted.contains(id))
        .take(3)
        .cloned()
        .collect();
    let mut updates = Vec::new();
    for (i, id) in edit.iter().enumerate() {
        let mut fields = Map::new();
        fields.insert(name.clone(), json!(format!("overwritten {i}")));
        fields.insert(number.clone(), json!(i as f64 + 1000.5));
        updates.push(RecordUpdate {
            id: id.clone(),
            fields,
        });
    }
    s.client
        .update_records(&s.base, &everything, &updates, false)
        .await
        .unwrap();
    let ref_edit = ref_ids
        .iter()
        .find(|id| **id != linked_ref)
        .unwrap()
        .clone();
    let mut fields = Map::new();
    fields.insert(code.clone(), json!("CLEARED?"));
    s.client
        .update_records(
            &s.base,
            &refs,
            &[RecordUpdate {
                id: ref_edit.clone(),
                fields,
            }],
            false,
        )
        .await
        .unwrap();
    // A link removed.
    let unlinked = ids
        .iter()
        .find(|id| {
            !deleted.contains(id)
                && records
                    .iter()
                    .find(|r| r["id"] == id.as_str())
                    .is_some_and(|r| !empty(r["fields"].get(&partner)))
        })
        .unwrap()
        .clone();
    let mut fields = Map::new();
    fields.insert(partner.clone(), json!([]));
    s.client
        .update_records(
            &s.base,
            &everything,
            &[RecordUpdate {
                id: unlinked.clone(),
                fields,
            }],
            false,
        )
        .await
        .unwrap();
    // A file added.
    let attached = ids
        .iter()
        .find(|id| !deleted.contains(id) && **id != unlinked)
        .unwrap()
        .clone();
    s.fake
        .add_attachment(
            &s.base,
            &everything,
            &attached,
            &files,
            "night.txt",
            b"added at night".to_vec(),
        )
        .unwrap();
    // Two records added.
    let mut fields = Map::new();
    fields.insert(name.clone(), json!("new at night"));
    let created = s
        .client
        .create_records(
            &s.base,
            &everything,
            &[
                NewRecord {
                    fields: fields.clone(),
                },
                NewRecord { fields },
            ],
            false,
        )
        .await
        .unwrap();
    let added = created.into_iter().map(|r| r.id).collect();
    // Three records deleted.
    s.client
        .delete_records(&s.base, &everything, &with_files_and_links)
        .await
        .unwrap();
    s.client
        .delete_records(&s.base, &refs, std::slice::from_ref(&linked_ref))
        .await
        .unwrap();
    let mut edited = edit;
    edited.push(ref_edit);
    Night {
        everything,
        refs,
        edited,
        added,
        deleted,
        unlinked,
        attached,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_night_is_undone_in_the_live_base_with_few_requests() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await;
    let before = state(&s);
    let stored = snapshot(&s).await;
    let night = bad_night(&s).await;
    assert!(!differences(&s, &before, &BTreeMap::new(), &[]).is_empty());
    let surviving: Vec<String> = before
        .values()
        .flat_map(|(_, records)| records.iter())
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .filter(|id| !night.deleted.contains(id))
        .collect();

    // A dry run writes nothing and counts the write requests the real run makes.
    let before_dry = s.fake.counters();
    let mut dry = options(&s);
    dry.dry_run = true;
    let plan = undo(&s, &stored, &dry).await;
    assert_eq!(writes(&s.fake.counters()) - writes(&before_dry), 0);
    assert!(plan.safety_snapshot.is_none());
    assert_eq!(plan.changes.summary.added, night.deleted.len() as u64);
    assert_eq!(plan.changes.summary.removed, night.added.len() as u64);

    let at_start = s.fake.counters();
    let report = undo(&s, &stored, &options(&s)).await;
    let at_end = s.fake.counters();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.safety_snapshot.is_some());
    assert_eq!(
        plan.write_requests, report.write_requests,
        "{:#?}",
        plan.changes
    );
    // Every deleted record is back, mapped old → new.
    let mut recreated: Vec<&String> = report.recreated.keys().collect();
    recreated.sort();
    let mut deleted: Vec<&String> = night.deleted.iter().collect();
    deleted.sort();
    assert_eq!(recreated, deleted);
    let diffs = differences(&s, &before, &report.recreated, &[]);
    assert!(
        diffs.is_empty(),
        "the live base differs from the snapshot:\n{}",
        diffs.join("\n")
    );
    // Surviving records kept their ids (checked by `differences` through the map, which holds
    // only the deleted ones), and the records added at night are gone.
    for id in &night.added {
        assert!(
            !state(&s)[&night.everything]
                .1
                .iter()
                .any(|r| r["id"] == id.as_str()),
            "{id} was not deleted"
        );
    }
    assert!(
        surviving
            .iter()
            .all(|id| !report.recreated.contains_key(id))
    );
    // Requests: at most 2 × the changed records + schema requests + 10.
    let write_requests = writes(&at_end) - writes(&at_start);
    eprintln!(
        "undo: {write_requests} write requests for {} changed records ({} created again, {} \
         updated, {} deleted, {} files uploaded)",
        night.changed(),
        report.records_created,
        report.records_updated,
        report.records_deleted,
        report.attachments_uploaded
    );
    assert_eq!(write_requests, report.write_requests);
    assert!(
        write_requests <= 2 * night.changed() + 10,
        "{write_requests} write requests for {} changed records",
        night.changed()
    );
    // Only the records the night touched (and the ones created again) were named in writes.
    let touched: HashSet<&String> = at_end
        .records_written
        .iter()
        .filter(|(id, n)| at_start.records_written.get(*id) != Some(*n))
        .map(|(id, _)| id)
        .collect();
    let expected: HashSet<&String> = night
        .edited
        .iter()
        .chain(&night.added)
        .chain(report.recreated.values())
        .chain([&night.unlinked, &night.attached])
        .collect();
    let extra: Vec<_> = touched.difference(&expected).collect();
    // Records that linked to a deleted one lost that link when it was deleted: they change too.
    for id in &extra {
        let linked_to_deleted = before.values().flat_map(|(_, r)| r.iter()).any(|r| {
            r["id"] == id.as_str()
                && r["fields"].as_object().unwrap().values().any(|v| {
                    v.as_array().is_some_and(|a| {
                        a.iter().any(|x| {
                            x.as_str()
                                .is_some_and(|x| night.deleted.iter().any(|d| d == x))
                        })
                    })
                })
        });
        assert!(
            linked_to_deleted,
            "{id} was written but the night did not change it: {}",
            serde_json::to_string_pretty(&report.changes).unwrap()
        );
    }
    let verified = report.verified.as_ref().unwrap();
    assert_eq!(verified.cells_differing, 0, "{:?}", verified.examples);
    assert_eq!(verified.records_wrong, 0, "{:?}", verified.examples);

    // `diff A --live` after the undo: no writable cell differs in a surviving record, and the
    // only records removed and added are the ones created again (old and new ids).
    let diff = airback::diff::diff_live(
        &stored,
        &s.client,
        &airback::diff::DiffOptions {
            recreated: report.recreated.clone().into_iter().collect(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut removed: Vec<&String> = diff.tables.iter().flat_map(|t| &t.removed).collect();
    let mut added: Vec<&String> = diff.tables.iter().flat_map(|t| &t.added).collect();
    removed.sort();
    added.sort();
    let mut new_ids: Vec<&String> = report.recreated.values().collect();
    new_ids.sort();
    assert_eq!(removed, deleted);
    assert_eq!(added, new_ids);
    for table in &diff.tables {
        for record in &table.changed {
            let writable: Vec<_> = record.fields.iter().filter(|f| !f.computed).collect();
            assert!(writable.is_empty(), "{}: {writable:?}", record.id);
        }
    }

    // Run again: nothing to write.
    let again = undo(&s, &stored, &options(&s)).await;
    let after_again = s.fake.counters();
    assert_eq!(
        writes(&after_again) - writes(&at_end),
        0,
        "{:?}",
        again.changes
    );
    assert_eq!(
        again.records_created + again.records_updated + again.records_deleted,
        0
    );
    let _ = night.refs;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_comes_back_alone_with_its_links() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await;
    let before = state(&s);
    let stored = snapshot(&s).await;
    let night = bad_night(&s).await;
    let target = night.deleted[0].clone();
    let at_start = s.fake.counters();
    let mut opts = options(&s);
    opts.records = vec![target.clone()];
    let report = undo(&s, &stored, &opts).await;
    let at_end = s.fake.counters();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let new = report
        .recreated
        .get(&target)
        .expect("the record is created again")
        .clone();
    assert_eq!(report.recreated.len(), 1);
    // Only the record itself was named in write requests (its links were written from its
    // side; Airtable mirrored them into the linked records).
    let touched: Vec<&String> = at_end
        .records_written
        .iter()
        .filter(|(id, n)| at_start.records_written.get(*id) != Some(*n))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(touched, [&new]);
    // The record equals the snapshot's, links included (the other deleted ones stay deleted).
    let everything = &before[&night.everything];
    let one: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::from([(
        night.everything.clone(),
        (
            everything.0.clone(),
            everything
                .1
                .iter()
                .filter(|r| r["id"] == target.as_str())
                .cloned()
                .collect(),
        ),
    )]);
    let diffs: Vec<String> = differences(&s, &one, &report.recreated, &night.deleted[1..])
        .into_iter()
        .filter(|d| !d.contains(" records, the snapshot has "))
        .collect();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // Everything else the night did is still there.
    assert!(
        state(&s)[&night.everything]
            .1
            .iter()
            .any(|r| r["id"] == night.added[0].as_str())
    );
}

async fn run_json(s: &FakeSetup, args: &[&str]) -> Value {
    let out = s.command(args).arg("--json").output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_restore_killed_at_random_moments_finishes_without_duplicates() {
    let mut options = FakeOptions {
        preset: Preset::Large,
        ..FakeOptions::default()
    };
    options.large = "tables=2,records=200,attachments=24,min=2000,max=200000"
        .parse()
        .unwrap();
    let s = FakeSetup::start(options).await;
    let before = state(&s);
    let snapshot = run_json(&s, &["snapshot", "--base", &s.base]).await;
    let snapshot_id = snapshot["snapshot_id"].as_str().unwrap().to_owned();

    // The night: 80 records deleted (links to them go with them), 40 edited, 10 added.
    let tables: Vec<String> = before.keys().cloned().collect();
    let name = crate::support::field_id(&before[&tables[0]].0, "Name");
    let ids = |t: usize| -> Vec<String> {
        before[&tables[t]]
            .1
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (first, second) = (ids(0), ids(1));
    s.client
        .delete_records(&s.base, &tables[0], &first[..60])
        .await
        .unwrap();
    s.client
        .delete_records(&s.base, &tables[1], &second[..20])
        .await
        .unwrap();
    let edits: Vec<RecordUpdate> = first[60..100]
        .iter()
        .map(|id| RecordUpdate {
            id: id.clone(),
            fields: Map::from_iter([(name.clone(), json!(format!("edited {id}")))]),
        })
        .collect();
    s.client
        .update_records(&s.base, &tables[0], &edits, false)
        .await
        .unwrap();
    let added: Vec<NewRecord> = (0..10)
        .map(|i| NewRecord {
            fields: Map::from_iter([(name.clone(), json!(format!("added {i}")))]),
        })
        .collect();
    s.client
        .create_records(&s.base, &tables[0], &added, false)
        .await
        .unwrap();

    // Killed three times, then run to the end; without --delete-new, so a record created
    // twice would stay and show.
    let args = ["restore", &snapshot_id, "--in-place"];
    let mut rng = fastrand::Rng::with_seed(14);
    let moments = [
        rng.u64(1_000..3_000),
        rng.u64(1_500..5_000),
        rng.u64(1_000..4_000),
    ];
    for (round, wait) in moments.iter().enumerate() {
        let mut child = s.command(&args).arg("--quiet").spawn().unwrap();
        let finished =
            tokio::time::timeout(std::time::Duration::from_millis(*wait), child.wait()).await;
        assert!(
            finished.is_err(),
            "round {round}: the restore ended before the kill"
        );
        child.start_kill().unwrap(); // SIGKILL
        let _ = child.wait().await;
    }
    let report = run_json(&s, &args).await;
    let recreated: BTreeMap<String, String> =
        serde_json::from_value(report["recreated"].clone()).unwrap();
    assert_eq!(recreated.len(), 80, "{report:#}");
    eprintln!(
        "kills after {moments:?} ms; the last round created {} of the 80 records",
        report["records_created"]
    );
    assert!(
        report["records_created"].as_u64().unwrap() < 80,
        "the kills came after some records were created again"
    );
    // No record twice: the snapshot's records plus the 10 added at night, no more.
    let now = state(&s);
    assert_eq!(now[&tables[0]].1.len(), 200 + 10);
    assert_eq!(now[&tables[1]].1.len(), 200);
    // Then the night's additions go too, and the base equals the snapshot.
    let report = run_json(&s, &["restore", &snapshot_id, "--in-place", "--delete-new"]).await;
    assert_eq!(report["records_deleted"], 10, "{report:#}");
    assert_eq!(report["records_created"], 0, "{report:#}");
    let diffs = differences(&s, &before, &recreated, &[]);
    assert!(
        diffs.is_empty(),
        "kills after {moments:?} ms:\n{}",
        diffs.join("\n")
    );
    // A further run writes nothing.
    let at = s.fake.counters();
    let report = run_json(
        &s,
        &[
            "restore",
            &snapshot_id,
            "--in-place",
            "--delete-new",
            "--no-safety-snapshot",
        ],
    )
    .await;
    assert_eq!(writes(&s.fake.counters()) - writes(&at), 0, "{report:#}");
    assert_eq!(report["write_requests"], 0);
    // `airback diff A --live` reads the journal's map: links to the recreated records are
    // links to the old ones, and only the recreated records are listed, as removed and added.
    let diff = run_json(&s, &["diff", &snapshot_id, "--live"]).await;
    let listed = |key: &str| -> Vec<String> {
        let mut ids: Vec<String> = diff["tables"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t[key].as_array().unwrap().iter())
            .map(|id| id.as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let mut old: Vec<String> = recreated.keys().cloned().collect();
    let mut new: Vec<String> = recreated.values().cloned().collect();
    old.sort();
    new.sort();
    assert_eq!(listed("removed"), old);
    assert_eq!(listed("added"), new);
    for table in diff["tables"].as_array().unwrap() {
        for record in table["changed"].as_array().unwrap() {
            for field in record["fields"].as_array().unwrap() {
                assert_eq!(field["computed"], true, "{record:#}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_deleted_since_is_created_again_with_its_cells() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await;
    let before = state(&s);
    let stored = snapshot(&s).await;
    let schema = s.fake.schema_json(&s.base);
    let everything = table_id(&schema, EVERYTHING);
    let phone = field(&schema, EVERYTHING, "Phone ☎");
    s.fake.delete_field(&s.base, &everything, &phone).unwrap();
    let with_phone = before[&everything]
        .1
        .iter()
        .filter(|r| !empty(r["fields"].get(&phone)))
        .count();
    assert!(with_phone > 0, "the zoo has phone numbers");

    let report = undo(&s, &stored, &options(&s)).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.fields_created, 1);
    let added = &report.changes.schema.fields_added;
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].name, "Phone ☎");
    let new_id = added[0].id.clone();
    assert_ne!(new_id, phone);
    // Every record has its phone number back, in the new field.
    let now: HashMap<String, Value> = s
        .fake
        .records_json(&s.base, &everything)
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r))
        .collect();
    for record in &before[&everything].1 {
        let id = record["id"].as_str().unwrap();
        assert_eq!(
            record["fields"].get(&phone),
            now[id]["fields"].get(&new_id),
            "{id}"
        );
    }
    assert_eq!(report.records_updated, with_phone as u64);
    let verified = report.verified.unwrap();
    assert_eq!(verified.cells_differing, 0, "{:?}", verified.examples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_deleted_since_is_created_again_with_its_records_and_links() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await;
    let before = state(&s);
    let stored = snapshot(&s).await;
    let schema = s.fake.schema_json(&s.base);
    let refs = table_id(&schema, REFS);
    s.fake.delete_table(&s.base, &refs).unwrap();
    assert!(!state(&s).contains_key(&refs));

    let mut dry = options(&s);
    dry.dry_run = true;
    let plan = undo(&s, &stored, &dry).await;
    assert_eq!(plan.changes.schema.tables_added.len(), 1);

    let report = undo(&s, &stored, &options(&s)).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.tables_created, 1);
    assert_eq!(report.recreated.len(), before[&refs].1.len());
    assert_eq!(plan.write_requests, report.write_requests);
    // Every table equals the snapshot again, the deleted one and the links to it included
    // (the link field of "Everything" that went with the table is back under its name).
    let diffs = differences(&s, &before, &report.recreated, &[]);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let verified = report.verified.unwrap();
    assert_eq!(verified.cells_differing, 0, "{:?}", verified.examples);
    // A second run finds the table and its records: nothing to write.
    let at = s.fake.counters();
    let again = undo(&s, &stored, &options(&s)).await;
    assert_eq!(
        writes(&s.fake.counters()) - writes(&at),
        0,
        "{:?}",
        again.changes
    );
}
