//! `airback restore` against the fake Airtable: a zoo snapshot rebuilt in a fresh base and
//! compared with the original field by field (by this test's own reading of both bases, not by
//! restore's verifier), older snapshots, and SIGKILLs in the middle of a restore.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{FakeSetup, WRITABLE};
use airback::backend::{Backend, BackendOptions};
use airback::backup::{BackupOptions, backup_base};
use airback::id::SnapshotId;
use airback::progress::NoProgress;
use airback::restore::SOURCE_ID_FIELD;
use airback::restore::{RestoreError, RestoreOptions, RestoreReport, Target, restore};
use airback::stored::StoredBase;
use airback_fake::{FakeAirtable, FakeOptions, Preset};
use serde_json::{Value, json};

use crate::support::s3::S3Server;

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

async fn restore_into(
    s: &FakeSetup,
    stored: &StoredBase,
    target: &str,
    staging: Option<Backend>,
) -> Result<RestoreReport, RestoreError> {
    let mut options = RestoreOptions::new(
        Target::Base(target.to_owned()),
        Some(s.dir.path().join("journal.sqlite")),
    );
    options.staging = staging;
    restore(
        stored,
        &s.client,
        &options,
        Arc::new(airback::progress::NoProgress),
    )
    .await
}

/// What this test found comparing the two bases.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub(crate) writable_cells: u64,
    pub(crate) writable_equal: u64,
    pub(crate) links: u64,
    pub(crate) links_equal: u64,
    pub(crate) files: u64,
    pub(crate) files_equal: u64,
    pub(crate) computed_fields: u64,
    pub(crate) computed_with_description: u64,
    pub(crate) differences: Vec<String>,
}

fn by_name<'a>(items: &'a Value, name: &str) -> Option<&'a Value> {
    items
        .as_array()?
        .iter()
        .find(|item| item["name"].as_str() == Some(name))
}

fn names_of(cell: Option<&Value>) -> Vec<String> {
    cell.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|v| v["id"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Compares base `to` with base `from` as the fake holds them, every table and field by name.
/// `expected` optionally replaces the source records (for older snapshots).
pub(crate) fn compare_bases(
    fake: &FakeAirtable,
    from: &str,
    to: &str,
    with_large: bool,
) -> Comparison {
    let mut c = Comparison::default();
    let source_schema = fake.schema_json(from);
    let target_schema = fake.schema_json(to);
    // Old → new record ids, over all tables.
    let mut new_id: HashMap<String, String> = HashMap::new();
    let mut tables = Vec::new();
    for table in source_schema["tables"].as_array().unwrap() {
        let name = table["name"].as_str().unwrap();
        let target = by_name(&target_schema["tables"], name)
            .unwrap_or_else(|| panic!("table `{name}` is missing from the target"));
        let source_id_field = by_name(&target["fields"], SOURCE_ID_FIELD).expect("source id field")
            ["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let source_records = fake.records_json(from, table["id"].as_str().unwrap());
        let target_records = fake.records_json(to, target["id"].as_str().unwrap());
        assert_eq!(
            source_records.len(),
            target_records.len(),
            "record count of `{name}`"
        );
        let mut target_by_source: BTreeMap<String, Value> = BTreeMap::new();
        for record in target_records {
            let source = record["fields"][&source_id_field]
                .as_str()
                .expect("every restored record has its original id")
                .to_owned();
            new_id.insert(source.clone(), record["id"].as_str().unwrap().to_owned());
            assert!(
                target_by_source.insert(source, record).is_none(),
                "a record of `{name}` was created twice"
            );
        }
        tables.push((
            table.clone(),
            target.clone(),
            source_records,
            target_by_source,
        ));
    }
    for (table, target, source_records, target_by_source) in &tables {
        for field in table["fields"].as_array().unwrap() {
            let kind = field["type"].as_str().unwrap();
            let name = field["name"].as_str().unwrap();
            if kind == "manualSort" {
                continue;
            }
            let target_field = by_name(&target["fields"], name)
                .unwrap_or_else(|| panic!("field `{name}` is missing"));
            let (sid, tid) = (
                field["id"].as_str().unwrap(),
                target_field["id"].as_str().unwrap(),
            );
            let computed = !WRITABLE.contains(&kind)
                && kind != "multipleRecordLinks"
                && kind != "multipleAttachments";
            if computed {
                c.computed_fields += 1;
                let description = target_field["description"].as_str().unwrap_or("");
                let formula = field["options"]["formula"].as_str();
                if description.contains(kind)
                    && formula.is_none_or(|f| !f.is_empty() && description.contains("Formula:"))
                {
                    c.computed_with_description += 1;
                }
            }
            for record in source_records {
                let old = record["id"].as_str().unwrap();
                let restored = &target_by_source[old];
                let (a, b) = (record["fields"].get(sid), restored["fields"].get(tid));
                match kind {
                    k if WRITABLE.contains(&k) => {
                        if a.is_none() {
                            continue;
                        }
                        c.writable_cells += 1;
                        let equal = match k {
                            "singleCollaborator" => {
                                a.unwrap()["id"] == b.unwrap_or(&Value::Null)["id"]
                            }
                            "multipleCollaborators" => names_of(a) == names_of(b),
                            _ => a == b,
                        };
                        if equal {
                            c.writable_equal += 1;
                        } else {
                            c.differences
                                .push(format!("{name} of {old}: {a:?} vs {b:?}"));
                        }
                    }
                    "multipleRecordLinks" => {
                        let Some(Value::Array(links)) = a else {
                            continue;
                        };
                        let mut want: Vec<String> = links
                            .iter()
                            .map(|l| new_id[l.as_str().unwrap()].clone())
                            .collect();
                        let mut have: Vec<String> = b
                            .and_then(Value::as_array)
                            .map(|l| l.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                            .unwrap_or_default();
                        want.sort();
                        have.sort();
                        c.links += 1;
                        if want == have {
                            c.links_equal += 1;
                        } else {
                            c.differences.push(format!("link {name} of {old}"));
                        }
                    }
                    "multipleAttachments" => {
                        let want: Vec<&Value> = a
                            .and_then(Value::as_array)
                            .map(|v| v.iter().collect())
                            .unwrap_or_default();
                        let have: Vec<&Value> = b
                            .and_then(Value::as_array)
                            .map(|v| v.iter().collect())
                            .unwrap_or_default();
                        let want: Vec<&Value> = want
                            .into_iter()
                            .filter(|w| with_large || w["size"].as_u64().unwrap() <= 5_000_000)
                            .collect();
                        assert_eq!(want.len(), have.len(), "files of {old} in {name}");
                        for (w, h) in want.iter().zip(&have) {
                            c.files += 1;
                            let same = w["filename"] == h["filename"]
                                && fake.attachment_content(w["id"].as_str().unwrap())
                                    == fake.attachment_content(h["id"].as_str().unwrap());
                            if same {
                                c.files_equal += 1;
                            } else {
                                c.differences
                                    .push(format!("file {} of {old}", w["filename"]));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zoo_snapshot_is_restored_cell_for_cell_at_real_rate_limits() {
    let s = FakeSetup::start(FakeOptions {
        preset: Preset::Zoo,
        ..FakeOptions::default()
    })
    .await;
    let stored = snapshot(&s).await;
    let s3 = S3Server::start().await;
    let staging = Backend::open(&s3.location("staging"), &BackendOptions::default()).unwrap();
    let before = s.fake.counters();
    // Into a new base, as `restore --workspace` does.
    let mut options = RestoreOptions::new(
        Target::Workspace {
            id: s.fake.workspace_id(),
            name: Some("Restored zoo".into()),
        },
        Some(s.dir.path().join("journal.sqlite")),
    );
    options.staging = Some(staging.clone());
    let report = restore(&stored, &s.client, &options, Arc::new(NoProgress))
        .await
        .unwrap();
    s.fake.wait_for_url_fetches().await;
    let after = s.fake.counters();
    let target = report.base_id.clone().unwrap();
    assert!(report.created_base);

    let c = compare_bases(&s.fake, &s.base, &target, true);
    eprintln!("zoo restore compared by the test: {c:?}");
    assert!(c.differences.is_empty(), "{:#?}", c.differences);
    assert!(c.writable_cells > 150, "{c:?}");
    assert_eq!(c.writable_equal, c.writable_cells);
    assert!(c.links >= 10, "{c:?}");
    assert_eq!(c.links_equal, c.links);
    assert!(c.files >= 12, "{c:?}");
    assert_eq!(c.files_equal, c.files, "every file byte-equal, in order");
    assert!(c.computed_fields >= 15, "{c:?}");
    assert_eq!(c.computed_with_description, c.computed_fields);
    // The original base is readable: every file, the one over 5 MB too, went by URL in the
    // create requests, none through staging or uploads.
    assert_eq!(report.attachments_by_url, c.files, "{report:#?}");
    assert_eq!(
        (report.attachments_staged, report.attachments_uploaded),
        (0, 0)
    );
    assert!(staging.list("airback-staging/").await.unwrap().is_empty());
    // Requests on the target: at most 1.3 × the least the API allows (a create per 10
    // records of each table, one request per table and one per link field).
    // Every API request but those on the original base (the bases listing and the base's
    // creation name no base, and count here).
    let on_original =
        |c: &airback_fake::FakeCounters| c.requests_per_base.get(&s.base).copied().unwrap_or(0);
    // Comments are created one request each (the API has no batch), beside the bound.
    let comments = |c: &airback_fake::FakeCounters| c.requests(airback_fake::Route::CreateComment);
    let comment_requests = comments(&after) - comments(&before);
    assert_eq!(comment_requests, report.comments_written);
    assert!(report.comments_written >= 6, "{report:#?}");
    let target_requests = (after.api_requests() - on_original(&after))
        - (before.api_requests() - on_original(&before));
    let schema = &stored.schema;
    let least: u64 = schema
        .tables
        .iter()
        .map(|t| {
            let records = stored.table(&t.id).unwrap().records;
            let links = t
                .fields
                .iter()
                .filter(|f| f.field_type == "multipleRecordLinks")
                .count() as u64;
            records.div_ceil(10) + 1 + links
        })
        .sum();
    eprintln!(
        "zoo restore: {target_requests} requests on the target (report: {}; {comment_requests} \
         of them create comments), least {least}, {} on the original",
        report.requests, report.original_requests
    );
    assert_eq!(target_requests, report.requests, "the report counts them");
    let target_requests = target_requests - comment_requests;
    assert!(
        target_requests as f64 <= 1.3 * least as f64,
        "{target_requests} requests on the target, more than 1.3 × {least}"
    );
    assert_eq!(s.fake.counters().rate_limited, 0, "no 429");
    let fidelity = report.fidelity.as_ref().unwrap();
    assert!(fidelity.is_perfect(), "{fidelity:#?}");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.plan.losses.iter().any(|l| l.what.contains("view")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_airtable_fails_to_fetch_by_url_are_written_again_until_every_one_is_there() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await;
    let stored = snapshot(&s).await;
    // Airtable drops about a third of the files written by URL, without a word.
    s.fake.set_faults("urlfail=0.35,seed=4".parse().unwrap());
    let options = RestoreOptions::new(
        Target::Workspace {
            id: s.fake.workspace_id(),
            name: Some("Dropped files".into()),
        },
        None,
    );
    let report = restore(&stored, &s.client, &options, Arc::new(NoProgress))
        .await
        .unwrap();
    s.fake.wait_for_url_fetches().await;
    let counters = s.fake.counters();
    s.fake.set_faults(Default::default());
    eprintln!(
        "by URL {}, fetches failed {}, repaired {}",
        report.attachments_by_url, counters.url_fetches_failed, report.attachments_repaired
    );
    assert!(report.attachments_by_url >= 17, "{report:#?}");
    assert!(counters.url_fetches_failed >= 3, "{counters:?}");
    // Each dropped file was written again once (the one over 5 MB goes by URL again, and may
    // be dropped again), and nothing else was.
    assert_eq!(report.attachments_repaired, counters.url_fetches_failed);
    let c = compare_bases(&s.fake, &s.base, report.base_id.as_deref().unwrap(), true);
    assert!(c.differences.is_empty(), "{:#?}", c.differences);
    assert_eq!((c.files_equal, c.files), (17, 17));
    assert!(report.fidelity.as_ref().unwrap().is_perfect());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_snapshot_restores_the_older_state() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await;
    let first = snapshot(&s).await;
    let schema = s.fake.schema_json(&s.base);
    let table = &schema["tables"][0];
    let table_id = table["id"].as_str().unwrap().to_owned();
    let name_field = by_name(&table["fields"], "Name").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = s.fake.records_json(&s.base, &table_id)[0].clone();
    let old_name = record["fields"][&name_field].clone();
    s.fake
        .update_record_fields(
            &s.base,
            &table_id,
            record["id"].as_str().unwrap(),
            serde_json::Map::from_iter([(
                name_field.clone(),
                json!("changed after the first snapshot"),
            )]),
        )
        .unwrap();
    let second = snapshot(&s).await;
    assert_ne!(first.id, second.id);

    let target = s.fake.add_empty_base("Older").id;
    let report = restore_into(&s, &first, &target, None).await.unwrap();
    assert!(report.fidelity.unwrap().missing == 0);
    let target_schema = s.fake.schema_json(&target);
    let target_table = by_name(&target_schema["tables"], table["name"].as_str().unwrap()).unwrap();
    let target_name = by_name(&target_table["fields"], "Name").unwrap()["id"]
        .as_str()
        .unwrap();
    let source_id = by_name(&target_table["fields"], SOURCE_ID_FIELD).unwrap()["id"]
        .as_str()
        .unwrap();
    let restored = s
        .fake
        .records_json(&target, target_table["id"].as_str().unwrap())
        .into_iter()
        .find(|r| r["fields"][source_id] == record["id"])
        .unwrap();
    assert_eq!(restored["fields"][target_name], old_name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_restore_run_twice_changes_nothing_the_second_time() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await;
    let stored = snapshot(&s).await;
    let target = s.fake.add_empty_base("Twice").id;
    // A token that cannot read the original base: files are uploaded, as when the original
    // is gone.
    let scopes = [
        "data.records:read",
        "data.records:write",
        "schema.bases:read",
        "schema.bases:write",
    ];
    let token = s.fake.add_token(&scopes, Some(&[target.as_str()]));
    let s = FakeSetup {
        client: crate::support::client_for(&s.fake, &token),
        ..s
    };
    let first = restore_into(&s, &stored, &target, None).await.unwrap();
    assert!(first.records_written > 0);
    assert_eq!(first.attachments_by_url, 0);
    assert!(first.attachments_uploaded >= 12, "{first:#?}");
    let second = restore_into(&s, &stored, &target, None).await.unwrap();
    assert_eq!(second.records_written, 0, "everything was in the journal");
    assert_eq!(second.attachments_uploaded, 0);
    assert_eq!(second.link_records_written, 0);
    let c = compare_bases(&s.fake, &s.base, &target, false);
    assert!(c.differences.is_empty(), "{:#?}", c.differences);
    // Without staging, the file over 5 MB is reported, not restored.
    assert!(
        second.problems.iter().any(|p| p.contains("over 5 MB")),
        "{:?}",
        second.problems
    );
}

/// Runs the airback binary against the fake, with the test's cache directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_at_random_moments_finishes_without_duplicates() {
    let mut options = FakeOptions {
        preset: Preset::Large,
        ..FakeOptions::default()
    };
    options.large = "tables=2,records=200,attachments=24,min=2000,max=200000"
        .parse()
        .unwrap();
    let s = FakeSetup::start(options).await;
    let out = s
        .command(&["snapshot", "--base", &s.base, "--quiet"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let workspace = s.fake.workspace_id();
    let restore_args = [
        "restore",
        "latest",
        "--workspace",
        &workspace,
        "--name",
        "Killed and resumed",
    ];
    let mut rng = fastrand::Rng::with_seed(5);
    // Moments spread over the schema, records, attachments and links passes (a full run takes
    // about 20 s at 5 requests/s).
    let moments = [
        rng.u64(1_500..4_000),
        rng.u64(4_000..8_000),
        rng.u64(2_000..10_000),
    ];
    for (round, wait) in moments.iter().enumerate() {
        let mut child = s.command(&restore_args).arg("--quiet").spawn().unwrap();
        let finished = tokio::time::timeout(Duration::from_millis(*wait), child.wait()).await;
        assert!(
            finished.is_err(),
            "round {round}: the restore ended before the kill"
        );
        child.start_kill().unwrap(); // SIGKILL
        let _ = child.wait().await;
    }
    let out = s
        .command(&restore_args)
        .arg("--json")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        report["records_resumed"].as_u64().unwrap() > 0,
        "the kills came after some records"
    );
    let target = report["base_id"].as_str().unwrap();
    let named: Vec<_> = s
        .fake
        .bases()
        .into_iter()
        .filter(|b| b.name == "Killed and resumed")
        .collect();
    assert_eq!(named.len(), 1, "one base was created");
    let c = compare_bases(&s.fake, &s.base, target, true);
    eprintln!("killed restore compared by the test: {c:?}, kills after {moments:?} ms");
    assert!(c.differences.is_empty(), "{:#?}", c.differences);
    assert_eq!(c.writable_cells, c.writable_equal);
    assert!(c.links > 100 && c.links == c.links_equal, "{c:?}");
    assert!(c.files >= 20 && c.files == c.files_equal, "{c:?}");
    assert_eq!(report["fidelity"]["duplicates"], 0);
    assert_eq!(report["fidelity"]["missing"], 0);
    assert_eq!(
        s.fake.counters().rate_limited,
        0,
        "no 429 across four processes"
    );
}

/// Progress on a standard error that is not a terminal: a line as each pass starts, naming
/// the pass and its work, under the `restore` label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_writes_a_line_per_pass_when_stderr_is_not_a_terminal() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let out = s
        .command(&["snapshot", "--base", &s.base, "--quiet"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let workspace = s.fake.workspace_id();
    let args = [
        "restore",
        "latest",
        "--workspace",
        &workspace,
        "--name",
        "Progress",
    ];
    let out = s.command(&args).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let passes: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("restore: "))
        .map(|l| l.split(" (").next().unwrap())
        .collect();
    assert_eq!(
        passes,
        ["schema", "records", "attachments", "links", "verify"],
        "{err}"
    );
    assert!(
        err.lines()
            .filter(|l| l.starts_with("restore: "))
            .all(|l| l.ends_with(" to do)")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_prints_the_plan_and_writes_nothing() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await;
    let out = s
        .command(&["snapshot", "--base", &s.base, "--quiet"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let target = s.fake.add_empty_base("Dry").id;
    let before = s.fake.schema_json(&target);
    let out = s
        .command(&[
            "restore",
            "latest",
            "--to-base",
            &target,
            "--dry-run",
            "--json",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s.fake.schema_json(&target), before, "nothing was written");
    let tables = report["plan"]["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 5);
    let everything = &tables[0]["fields"];
    let formula = everything
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Formula: text")
        .unwrap();
    assert_eq!(formula["target_type"], "multilineText");
    assert!(
        formula["description"]
            .as_str()
            .unwrap()
            .contains("Formula: {Name}")
    );
    assert_eq!(
        report["workload"]["large"], 1,
        "the file over 5 MB is counted"
    );
    assert!(report["plan"]["losses"].to_string().contains("manualSort"));

    // A second base with the name a --workspace restore would use is refused, not adopted.
    let out = s
        .command(&[
            "restore",
            "latest",
            "--workspace",
            &s.fake.workspace_id(),
            "--name",
            "Dry",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains(&target),
        "{err}"
    );
    assert_eq!(
        s.fake.schema_json(&target),
        before,
        "the existing base was not touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_through_server_errors_and_cut_connections_creates_nothing_twice() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await;
    let stored = snapshot(&s).await;
    let target = s.fake.add_empty_base("Faulty").id;
    // Cut connections come after Airtable applied the request, so creates, upserts and uploads
    // all meet "did it happen?" situations.
    s.fake
        .set_faults("503=0.05,502=0.03,reset=0.15,seed=11".parse().unwrap());
    let mut outcome = None;
    for _ in 0..5 {
        match restore_into(&s, &stored, &target, None).await {
            Ok(report) => {
                outcome = Some(report);
                break;
            }
            // What a user would do: run the same command again.
            Err(e) => eprintln!("restore stopped: {e}"),
        }
    }
    let report = outcome.expect("the restore finished within 5 runs");
    s.fake.set_faults(Default::default());
    let counters = s.fake.counters();
    assert!(
        counters.resets >= 1 && counters.resets + counters.faults_503 + counters.faults_502 >= 3,
        "{counters:?}"
    );
    s.fake.wait_for_url_fetches().await;
    let c = compare_bases(&s.fake, &s.base, &target, true);
    assert!(c.differences.is_empty(), "{:#?}", c.differences);
    assert_eq!(c.writable_equal, c.writable_cells);
    assert_eq!(c.files_equal, c.files);
    assert!(c.files >= 12);
    let fidelity = report.fidelity.as_ref().unwrap();
    assert_eq!((fidelity.missing, fidelity.duplicates), (0, 0));
    // No table or field was created twice either.
    let schema = s.fake.schema_json(&target);
    let names: Vec<&str> = schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        6,
        "Table 1 and the five restored tables: {names:?}"
    );
    // The default "Table 1" of the base is left alone, and the plan says so.
    assert!(
        report.plan.notes.iter().any(|n| n.contains("`Table 1`")),
        "{:?}",
        report.plan.notes
    );
    for table in schema["tables"].as_array().unwrap() {
        for field in table["fields"].as_array().unwrap() {
            let name = field["name"].as_str().unwrap();
            assert!(
                !name.ends_with(" 2") || name.contains("airback"),
                "field `{name}` looks created twice"
            );
        }
    }
}
