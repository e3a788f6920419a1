//! `airback diff` and `airback history` (issue 14): a bad night in the fake's zoo base found
//! record by record between two snapshots and against the live base, without an API request
//! between snapshots; the skipping of shared blobs checked against a full comparison; a
//! record's history; bad input.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use airback::airtable::NewRecord;
use airback::backup::{BackupOptions, backup_base};
use airback::diff::{DiffOptions, diff_snapshots};
use airback::history::{Event, HistoryOptions, record_history};
use airback::{NoProgress, SnapshotId, StoredBase};
use airback_fake::{FakeAirtable, FakeOptions, LargeParams, Preset};
use serde_json::{Map, Value, json};

use crate::cli::airback_with;
use crate::support::{FakeSetup, field_id};

async fn snapshot(s: &FakeSetup, base: &str) -> SnapshotId {
    backup_base(
        &s.repo,
        &s.client,
        &BackupOptions::new(base),
        Arc::new(NoProgress),
    )
    .await
    .unwrap()
    .snapshot_id
}

async fn open(s: &FakeSetup, id: SnapshotId) -> StoredBase {
    let manifest = s.repo.load_snapshot(&id).await.unwrap();
    StoredBase::open(&s.repo, id, manifest).await.unwrap()
}

/// Runs the binary on the setup's repository (its own cache), against the fake.
async fn cli(s: &FakeSetup, args: &[&str]) -> (i32, String, String) {
    let repo = s.dir.path().join("repo");
    let mut all = vec!["--repo", repo.to_str().unwrap()];
    all.extend_from_slice(args);
    airback_with(&s.fake, &s.dir.path().join("cli-cache"), &all).await
}

fn cells(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

/// Deletes records through the API, as a collaborator would.
async fn delete(fake: &FakeAirtable, base: &str, table: &str, ids: &[&str]) {
    let query: Vec<String> = ids.iter().map(|id| format!("records%5B%5D={id}")).collect();
    let response = reqwest::Client::new()
        .delete(format!(
            "{}/v0/{base}/{table}?{}",
            fake.url(),
            query.join("&")
        ))
        .bearer_auth(fake.token())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

fn record_ids(fake: &FakeAirtable, base: &str, table: &str) -> Vec<String> {
    let mut ids: Vec<String> = fake
        .records_json(base, table)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// table id -> record id -> field name -> `V`.
type ByField<V> = BTreeMap<String, BTreeMap<String, BTreeMap<String, V>>>;

/// What the bad night did, as the diff must report it.
#[derive(Default)]
struct Expected {
    /// table id -> record id -> writable fields changed (by name) -> (before, after) when the
    /// test pins the values.
    changed: ByField<Option<(Value, Value)>>,
    added: BTreeMap<String, BTreeSet<String>>,
    removed: BTreeMap<String, BTreeSet<String>>,
}

impl Expected {
    fn change(&mut self, table: &str, record: &str, field: &str, values: Option<(Value, Value)>) {
        self.changed
            .entry(table.into())
            .or_default()
            .entry(record.into())
            .or_default()
            .insert(field.into(), values);
    }
}

/// The zoo's tables, in schema order: Everything, Links / Refs, Таблица, Blank, Synced.
fn tables(fake: &FakeAirtable, base: &str) -> Vec<Value> {
    fake.schema_json(base)["tables"].as_array().unwrap().clone()
}

/// A bad night in the zoo: cells edited in three tables, records added in two, records
/// deleted (one with attachments that another record links to, one a link target), a link
/// removed, an attachment added. Returns what a diff must find.
async fn bad_night(s: &FakeSetup) -> Expected {
    let (fake, base) = (&s.fake, s.base.as_str());
    let tables = tables(fake, base);
    let (everything, refs, scripts, blank) = (&tables[0], &tables[1], &tables[2], &tables[3]);
    let id = |t: &Value| t["id"].as_str().unwrap().to_owned();
    let (ev, rf, sc, bl) = (id(everything), id(refs), id(scripts), id(blank));
    // Records in creation order, as the zoo made them.
    let by_creation = |table: &str| -> Vec<Value> { fake.records_json(base, table) };
    let ev_records = by_creation(&ev);
    let rf_records = by_creation(&rf);
    let sc_records = by_creation(&sc);
    let rec = |records: &[Value], i: usize| records[i]["id"].as_str().unwrap().to_owned();
    let cell = |records: &[Value], i: usize, field: &str| {
        records[i]["fields"]
            .get(field)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut expected = Expected::default();

    let name = field_id(everything, "Name");
    let number = field_id(everything, "Number");
    let partner = field_id(everything, "Partner ⇄");
    let parent = field_id(everything, "Parent (self-link)");
    let files = field_id(everything, "Files");
    let code = field_id(refs, "Code");
    let amount = field_id(refs, "Amount");
    let inverse = field_id(refs, "Everything 🦓");
    let cyrillic = field_id(scripts, "Имя");

    // Cells edited in three tables.
    let edits = [
        (&ev, &ev_records, 5, &name, json!("Renamed at 3 am")),
        (&ev, &ev_records, 6, &number, json!(-1234.5)),
        (&rf, &rf_records, 2, &code, json!("C-XXX")),
        (&rf, &rf_records, 4, &amount, json!(99)),
        (&sc, &sc_records, 0, &cyrillic, json!("Пётр")),
    ];
    let names = ["Name", "Number", "Code", "Amount", "Имя"];
    for ((table, records, i, field, value), field_name) in edits.into_iter().zip(names) {
        let before = cell(records, i, field);
        fake.update_record_fields(
            base,
            table,
            &rec(records, i),
            cells(json!({ field.as_str(): value.clone() })),
        )
        .unwrap();
        expected.change(table, &rec(records, i), field_name, Some((before, value)));
    }
    // A link removed: Everything #1 links Refs #1 and #2; it keeps #1.
    fake.update_record_fields(
        base,
        &ev,
        &rec(&ev_records, 1),
        cells(json!({ partner.as_str(): [rec(&rf_records, 1)] })),
    )
    .unwrap();
    expected.change(&ev, &rec(&ev_records, 1), "Partner ⇄", None);
    expected.change(&rf, &rec(&rf_records, 2), "Everything 🦓", None);
    // An attachment added to Everything #7.
    fake.add_attachment(
        base,
        &ev,
        &rec(&ev_records, 7),
        &files,
        "added.txt",
        b"added at night".to_vec(),
    )
    .unwrap();
    expected.change(&ev, &rec(&ev_records, 7), "Files", None);
    // Records added in two tables.
    for (table, fields) in [
        (&ev, json!({ name.as_str(): "New animal" })),
        (&bl, json!({ field_id(blank, "Name"): "New blank" })),
    ] {
        let created = s
            .client
            .create_records(
                base,
                table,
                &[NewRecord {
                    fields: cells(fields),
                }],
                false,
            )
            .await
            .unwrap();
        expected
            .added
            .entry(table.clone())
            .or_default()
            .insert(created[0].id.clone());
    }
    // Records deleted: Everything #0 (two attachments; Everything #1's parent; links Refs #0)
    // and Refs #3 (linked from Everything #3).
    delete(fake, base, &ev, &[&rec(&ev_records, 0)]).await;
    delete(fake, base, &rf, &[&rec(&rf_records, 3)]).await;
    expected
        .removed
        .entry(ev.clone())
        .or_default()
        .insert(rec(&ev_records, 0));
    expected
        .removed
        .entry(rf.clone())
        .or_default()
        .insert(rec(&rf_records, 3));
    // What the deletions do to the records that linked them (links stay symmetric).
    expected.change(&ev, &rec(&ev_records, 1), "Parent (self-link)", None);
    expected.change(&ev, &rec(&ev_records, 3), "Partner ⇄", None);
    expected.change(&rf, &rec(&rf_records, 0), "Everything 🦓", None);
    let _ = (parent, inverse);
    expected
}

/// Checks a diff's JSON against what the bad night did: exactly these records added, removed
/// and changed in writable cells; other changed cells are all computed ones.
fn assert_matches(diff: &Value, expected: &Expected) {
    let mut added = BTreeMap::new();
    let mut removed = BTreeMap::new();
    let mut changed: ByField<(Value, Value)> = BTreeMap::new();
    for table in diff["tables"].as_array().unwrap() {
        let id = table["id"].as_str().unwrap().to_owned();
        let set = |key: &str| -> BTreeSet<String> {
            table[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        if !set("added").is_empty() {
            added.insert(id.clone(), set("added"));
        }
        if !set("removed").is_empty() {
            removed.insert(id.clone(), set("removed"));
        }
        for record in table["changed"].as_array().unwrap() {
            let mut writable = BTreeMap::new();
            for field in record["fields"].as_array().unwrap() {
                if field.get("computed") == Some(&json!(true)) {
                    continue;
                }
                writable.insert(
                    field["name"].as_str().unwrap().to_owned(),
                    (field["before"].clone(), field["after"].clone()),
                );
            }
            if !writable.is_empty() {
                changed
                    .entry(id.clone())
                    .or_default()
                    .insert(record["id"].as_str().unwrap().to_owned(), writable);
            }
        }
    }
    assert_eq!(added, expected.added, "added records");
    assert_eq!(removed, expected.removed, "removed records");
    fn names<V>(m: &ByField<V>) -> Vec<(String, String, Vec<String>)> {
        m.iter()
            .flat_map(|(t, records)| {
                records.iter().map(move |(r, fields)| {
                    (
                        t.clone(),
                        r.clone(),
                        fields.keys().cloned().collect::<Vec<_>>(),
                    )
                })
            })
            .collect()
    }
    assert_eq!(
        names(&changed),
        names(&expected.changed),
        "records with changed writable cells, and their fields"
    );
    for (table, records) in &expected.changed {
        for (record, fields) in records {
            for (field, values) in fields {
                if let Some((before, after)) = values {
                    let got = &changed[table][record][field];
                    assert_eq!(&got.0, before, "{record} {field} before");
                    assert_eq!(&got.1, after, "{record} {field} after");
                }
            }
        }
    }
    let count =
        |m: &BTreeMap<String, BTreeSet<String>>| m.values().map(BTreeSet::len).sum::<usize>();
    assert_eq!(diff["summary"]["added"], json!(count(&expected.added)));
    assert_eq!(diff["summary"]["removed"], json!(count(&expected.removed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_finds_a_bad_night_between_snapshots_and_live_without_api_requests() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await;
    let a = snapshot(&s, &s.base).await;
    let expected = bad_night(&s).await;
    let b = snapshot(&s, &s.base).await;

    // Between snapshots: the repository only.
    let requests = s.fake.counters().api_requests();
    let (code, out, err) = cli(
        &s,
        &["diff", &a.to_string()[..10], &b.to_string(), "--json"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        s.fake.counters().api_requests(),
        requests,
        "a diff between snapshots made API requests"
    );
    let between: Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = between
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["base", "from", "schema", "summary", "tables", "to"],
        "the JSON keys are a contract (listed sorted)"
    );
    assert_eq!(between["base"], json!(s.base));
    assert_eq!(between["from"], json!(a.to_string()));
    assert_eq!(between["to"], json!(b.to_string()));
    assert!(
        between["schema"]["fields_added"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_matches(&between, &expected);
    // Computed cells that changed are marked: a rollup over the edited amount, for one.
    let everything = &between["tables"][0];
    assert!(
        everything["changed"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["fields"].as_array().unwrap())
            .any(|f| f["computed"] == json!(true) && f["name"] == json!("Last modified")),
        "{everything}"
    );

    // Against the live base, before anything else changes: the same, record for record.
    let (code, out, err) = cli(&s, &["diff", &a.to_string(), "--live", "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let live: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(live["to"], json!("live"));
    assert_eq!(live["tables"], between["tables"]);
    assert_eq!(live["schema"], between["schema"]);
    assert_eq!(live["summary"], between["summary"]);
    assert!(
        s.fake.counters().api_requests() > requests,
        "--live read the base"
    );

    // The text: a summary per table first, then the details.
    let (code, text, err) = cli(&s, &["diff", &a.to_string(), &b.to_string()]).await;
    assert_eq!(code, 0, "{text}{err}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("base "), "{text}");
    assert!(lines[1].starts_with(" Everything 🦓"), "{text}");
    assert!(lines[1].contains("+1 −1 ~"), "{text}");
    assert!(
        text.contains("4 tables changed: 2 records added, 2 removed"),
        "{text}"
    );
    assert!(
        text.contains("      Name: \"") && text.contains("\" → \"Renamed at 3 am\""),
        "{text}"
    );
    assert!(text.contains("Last modified (computed): "), "{text}");
    assert!(
        text.contains("Files: ") && text.contains("added.txt]"),
        "{text}"
    );

    // `latest` is the latest snapshot of the other side's base; one table only.
    let (code, out, err) = cli(
        &s,
        &[
            "diff",
            &a.to_string(),
            "latest",
            "--table",
            "links / refs \"quoted\"",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let only: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(only["to"], json!(b.to_string()));
    assert_eq!(only["tables"].as_array().unwrap().len(), 1);
    assert_eq!(only["tables"][0], between["tables"][1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_refuses_bad_input_with_usage_errors() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let a = snapshot(&s, &s.base).await.to_string();
    let other = s.fake.add_empty_base("Other base");
    let c = snapshot(&s, &other.id).await.to_string();

    let (code, _, err) = cli(&s, &["diff", &a, &a, "--table", "Nope"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no table `Nope`"), "{err}");

    let (code, _, err) = cli(&s, &["diff", &a, &c]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("same base"), "{err}");

    let (code, _, err) = cli(&s, &["diff", &a, &a, "--live"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not both"), "{err}");

    let (code, _, err) = cli(&s, &["diff", &a]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--live"), "{err}");

    let (code, _, err) = cli(&s, &["diff", "ffffffff", &a]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no snapshot matches `ffffffff`"), "{err}");

    // `latest` alone is ambiguous with two bases in the repository.
    let (code, _, err) = cli(&s, &["diff", "latest", "--live"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--base"), "{err}");
    let (code, out, err) = cli(
        &s,
        &["diff", "latest", "--live", "--base", &s.base, "--json"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let live: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        live["summary"],
        json!({"added": 0, "removed": 0, "changed": 0})
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// The records of one stored table, by id.
async fn all_records(base: &StoredBase, table: &str) -> BTreeMap<String, Map<String, Value>> {
    use futures::StreamExt;
    let stored = base.table(table).unwrap();
    let mut records = base.records(stored);
    let mut out = BTreeMap::new();
    while let Some(record) = records.next().await {
        let record = record.unwrap();
        out.insert(record.id, record.fields);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_shared_blobs_finds_what_a_full_comparison_finds() {
    let options = FakeOptions {
        large: LargeParams {
            tables: 1,
            records_per_table: 3_000,
            attachments: 0,
            ..LargeParams::default()
        },
        ..FakeOptions::unlimited(Preset::Large)
    };
    let s = FakeSetup::start(options).await;
    let table = tables(&s.fake, &s.base)[0].clone();
    let table_id = table["id"].as_str().unwrap().to_owned();
    let text_field = table["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["type"] == json!("singleLineText") || f["type"] == json!("multilineText"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = snapshot(&s, &s.base).await;
    let ids = record_ids(&s.fake, &s.base, &table_id);
    let mut rng = fastrand::Rng::with_seed(14);
    // Edits at random places, a few deletions, a few new records.
    for _ in 0..40 {
        let id = &ids[rng.usize(..ids.len())];
        s.fake
            .update_record_fields(
                &s.base,
                &table_id,
                id,
                cells(json!({ text_field.as_str(): format!("edited {}", rng.u32(..)) })),
            )
            .unwrap();
    }
    let gone: Vec<&str> = (0..5)
        .map(|_| ids[rng.usize(..ids.len())].as_str())
        .collect();
    let mut gone_unique = gone.clone();
    gone_unique.sort_unstable();
    gone_unique.dedup();
    delete(&s.fake, &s.base, &table_id, &gone_unique).await;
    s.client
        .create_records(
            &s.base,
            &table_id,
            &[NewRecord {
                fields: cells(json!({ text_field.as_str(): "new" })),
            }],
            false,
        )
        .await
        .unwrap();
    let b = snapshot(&s, &s.base).await;
    let (from, to) = (open(&s, a).await, open(&s, b).await);
    assert_eq!(from.table(&table_id).unwrap().records, 3_000);

    let diff = diff_snapshots(&from, &to, &DiffOptions::default())
        .await
        .unwrap();
    let before = all_records(&from, &table_id).await;
    let after = all_records(&to, &table_id).await;
    let naive_added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let naive_removed: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let naive_changed: Vec<&String> = before
        .iter()
        .filter(|(k, v)| after.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(naive_changed.len() >= 30, "{}", naive_changed.len());
    let got = &diff.tables[0];
    assert_eq!(got.added.iter().collect::<Vec<_>>(), naive_added);
    assert_eq!(got.removed.iter().collect::<Vec<_>>(), naive_removed);
    assert_eq!(
        got.changed.iter().map(|r| &r.id).collect::<Vec<_>>(),
        naive_changed
    );
    // Equal snapshots compare equal without a record read.
    let same = diff_snapshots(&to, &to, &DiffOptions::default())
        .await
        .unwrap();
    assert!(same.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_each_change_of_a_record_from_first_seen_to_removed() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await;
    let scripts = tables(&s.fake, &s.base)[2].clone();
    let table = scripts["id"].as_str().unwrap().to_owned();
    let (cyrillic, japanese) = (field_id(&scripts, "Имя"), field_id(&scripts, "名前"));
    let records = s.fake.records_json(&s.base, &table);
    let record = records[0]["id"].as_str().unwrap().to_owned();
    let other = records[1]["id"].as_str().unwrap().to_owned();
    let edit = |id: &str, field: &str, value: &str| {
        s.fake
            .update_record_fields(&s.base, &table, id, cells(json!({ field: value })))
            .unwrap();
    };

    let s1 = snapshot(&s, &s.base).await;
    edit(&record, &cyrillic, "Пётр");
    let s2 = snapshot(&s, &s.base).await;
    edit(&other, &cyrillic, "someone else");
    let s3 = snapshot(&s, &s.base).await;
    edit(&record, &japanese, "大阪");
    let s4 = snapshot(&s, &s.base).await;
    let _ = s3;
    let history = record_history(&s.repo, &record, &HistoryOptions::default())
        .await
        .unwrap();
    assert_eq!(history.base, s.base);
    assert_eq!(history.table, table);
    assert_eq!(history.snapshots, 4);
    let events: Vec<(Event, String)> = history
        .changes
        .iter()
        .map(|c| (c.event, c.snapshot.clone()))
        .collect();
    assert_eq!(
        events,
        [
            (Event::Added, s1.to_string()),
            (Event::Changed, s2.to_string()),
            (Event::Changed, s4.to_string()),
        ]
    );
    let names = |i: usize| -> Vec<&str> {
        history.changes[i]
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .collect()
    };
    assert_eq!(names(1), ["Имя"]);
    assert_eq!(history.changes[1].fields[0].before, json!("Иван"));
    assert_eq!(history.changes[1].fields[0].after, json!("Пётр"));
    assert_eq!(names(2), ["名前"]);
    assert_eq!(
        history.changes[2].value.as_ref().unwrap()[&cyrillic],
        json!("Пётр")
    );

    // Removed, then only changes to one field; by name, through the binary.
    delete(&s.fake, &s.base, &table, &[&record]).await;
    let s5 = snapshot(&s, &s.base).await;
    let (code, out, err) = cli(&s, &["history", &record, "--field", "имя", "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    let events: Vec<(&str, &str)> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["event"].as_str().unwrap(),
                c["snapshot"].as_str().unwrap(),
            )
        })
        .collect();
    let (s1, s2, s5) = (s1.to_string(), s2.to_string(), s5.to_string());
    assert_eq!(
        events,
        [
            ("added", s1.as_str()),
            ("changed", s2.as_str()),
            ("removed", s5.as_str())
        ]
    );
    assert_eq!(json["changes"][2]["value"], Value::Null);
    assert_eq!(json["table"], json!(table));

    let (code, text, err) = cli(&s, &["history", &record]).await;
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.contains("Имя: \"Иван\" → \"Пётр\""), "{text}");
    assert!(text.contains("removed"), "{text}");

    let (code, _, err) = cli(&s, &["history", &record, "--field", "Nope"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no field `Nope`"), "{err}");
    let (code, _, err) = cli(&s, &["history", "recNOTHEREXXXXXXX"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no snapshot of any base holds record"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_a_backup_left_out_are_neither_added_nor_removed() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await;
    let everything = tables(&s.fake, &s.base)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut options = BackupOptions::new(&s.base);
    options.tables.include = vec![everything.as_str().into()];
    let filtered = backup_base(&s.repo, &s.client, &options, Arc::new(NoProgress))
        .await
        .unwrap()
        .snapshot_id;
    let full = snapshot(&s, &s.base).await;
    let (filtered, full) = (open(&s, filtered).await, open(&s, full).await);
    assert_eq!(filtered.tables.len(), 1);

    let live = airback::diff_live(&filtered, &s.client, &DiffOptions::default())
        .await
        .unwrap();
    assert!(live.is_empty(), "{:?}", live.tables);
    for (a, b) in [(&filtered, &full), (&full, &filtered)] {
        let diff = diff_snapshots(a, b, &DiffOptions::default()).await.unwrap();
        assert!(diff.is_empty(), "{:?}", diff.tables);
    }
}
