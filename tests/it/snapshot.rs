//! `airback snapshot` against the fake Airtable: completeness (every record, every attachment's
//! bytes), incremental runs, and faults.

use std::sync::Arc;
use std::time::Duration;

use crate::support::FakeSetup;
use airback::backup::{BackupOptions, BackupSummary, backup_base};
use airback::check::{CheckOptions, check};
use airback::progress::NoProgress;
use airback::repo::Repository;
use airback::repo::{NodeKind, Tree};
use airback_fake::{FakeOptions, Preset};
use serde_json::Value;

/// A snapshot as `airback snapshot` takes it: leftover packs adopted (and lost ones found)
/// first.
pub(crate) async fn snapshot(s: &FakeSetup) -> BackupSummary {
    s.repo.adopt_unindexed_packs().await.unwrap();
    backup_base(
        &s.repo,
        &s.client,
        &BackupOptions::new(&s.base),
        Arc::new(NoProgress),
    )
    .await
    .unwrap()
}

async fn read_file(repo: &Repository, content: &[airback::id::BlobId]) -> Vec<u8> {
    let mut out = Vec::new();
    for id in content {
        out.extend(repo.read_blob(id).await.unwrap());
    }
    out
}

async fn subtree(repo: &Repository, tree: &Tree, name: &str) -> Tree {
    match &tree.nodes.iter().find(|n| n.name == name).unwrap().kind {
        NodeKind::Dir { subtree } => repo.load_tree(subtree).await.unwrap(),
        NodeKind::File { .. } => panic!("{name} is a file"),
    }
}

/// Strips what a snapshot deliberately leaves out: the expiring URLs of attachment objects
/// (in attachment fields and lookups of them). Other URLs (buttons, URL fields) are data.
fn without_urls(value: &Value) -> Value {
    let is_attachment = value
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| id.starts_with("att"));
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !(is_attachment && (*k == "url" || *k == "thumbnails")))
                .map(|(k, v)| (k.clone(), without_urls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_urls).collect()),
        other => other.clone(),
    }
}

/// Asserts that the snapshot holds exactly the fake's records and every attachment's bytes.
pub(crate) async fn assert_complete(s: &FakeSetup, summary: &BackupSummary) {
    let snapshot = s.repo.load_snapshot(&summary.snapshot_id).await.unwrap();
    assert!(!snapshot.partial, "{:?}", snapshot.problems);
    let root = s.repo.load_tree(&snapshot.tree).await.unwrap();
    let schema = s.fake.schema_json(&s.base);
    let tables = subtree(&s.repo, &root, "tables").await;
    let mut attachment_ids = Vec::new();
    for table in schema["tables"].as_array().unwrap() {
        let table_id = table["id"].as_str().unwrap();
        let node = tables
            .nodes
            .iter()
            .find(|n| n.name == format!("{table_id}.jsonl"))
            .unwrap();
        let NodeKind::File { content, .. } = &node.kind else {
            panic!()
        };
        let bytes = read_file(&s.repo, content).await;
        let lines: Vec<Value> = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "records are sorted by id");
        let mut expected = s.fake.records_json(&s.base, table_id);
        expected.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        assert_eq!(lines.len(), expected.len(), "table {table_id}");
        for (got, want) in lines.iter().zip(&expected) {
            assert_eq!(got["id"], want["id"]);
            assert_eq!(got["createdTime"], want["createdTime"]);
            assert_eq!(
                got["fields"],
                without_urls(&want["fields"]),
                "record {}",
                want["id"]
            );
        }
        for line in &lines {
            for cell in line["fields"].as_object().unwrap().values() {
                for a in cell.as_array().into_iter().flatten() {
                    if let Some(id) = a["id"].as_str().filter(|id| id.starts_with("att")) {
                        attachment_ids.push(id.to_string());
                    }
                }
            }
        }
    }
    let by_group = subtree(&s.repo, &root, "attachments").await;
    let mut stored = std::collections::HashMap::new();
    for group in &by_group.nodes {
        let NodeKind::Dir { subtree } = group.kind else {
            panic!()
        };
        for node in s.repo.load_tree(&subtree).await.unwrap().nodes {
            stored.insert(node.name.clone(), node);
        }
    }
    attachment_ids.sort();
    attachment_ids.dedup();
    assert!(!attachment_ids.is_empty());
    assert_eq!(stored.len(), attachment_ids.len());
    for id in &attachment_ids {
        let NodeKind::File { content, .. } = &stored[id].kind else {
            panic!()
        };
        let bytes = read_file(&s.repo, content).await;
        assert_eq!(
            Some(bytes),
            s.fake.attachment_content(id),
            "attachment {id}"
        );
    }
    let report = check(
        &s.repo,
        &CheckOptions {
            read_data: true,
            subset: None,
        },
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zoo_snapshot_holds_every_record_and_attachment_then_reuses_them() {
    let s = FakeSetup::start(FakeOptions {
        preset: Preset::Zoo,
        penalty: Duration::from_secs(2),
        ..FakeOptions::default()
    })
    .await;
    let first = snapshot(&s).await;
    assert_eq!(first.rate_limited, 0);
    // The floor: list bases + schema, then one request per page of 100 records per table.
    let schema = s.fake.schema_json(&s.base);
    let pages: u64 = schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let records = s
                .fake
                .record_count(&s.base, t["id"].as_str().unwrap())
                .unwrap() as u64;
            records.div_ceil(100).max(1)
        })
        .sum();
    // Plus one request per record with comments (the zoo's have fewer than 100 each).
    let commented: u64 = schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            s.fake
                .comment_counts(&s.base, t["id"].as_str().unwrap())
                .len() as u64
        })
        .sum();
    assert!(commented > 0);
    assert_eq!(first.api_requests, 2 + pages + commented + first.retries);
    assert!(first.attachments_downloaded > 0);
    assert_complete(&s, &first).await;

    // Nothing changed: no download, almost nothing written.
    let second = snapshot(&s).await;
    assert_eq!(second.attachments_downloaded, 0);
    assert_eq!(second.attachments_reused, first.attachments_downloaded);
    assert!(
        second.objects_written <= 5,
        "{} objects",
        second.objects_written
    );
    assert!(
        second.bytes_added * 200 <= first.bytes_added,
        "{} of {}",
        second.bytes_added,
        first.bytes_added
    );
    assert_complete(&s, &second).await;

    // A changed record and a new attachment: only that attachment is downloaded.
    let schema = s.fake.schema_json(&s.base);
    let (table, field) = schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| {
            t["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["type"] == "multipleAttachments")
                .map(|f| {
                    (
                        t["id"].as_str().unwrap().to_string(),
                        f["id"].as_str().unwrap().to_string(),
                    )
                })
        })
        .unwrap();
    let record = s.fake.records_json(&s.base, &table)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.fake
        .add_attachment(
            &s.base,
            &table,
            &record,
            &field,
            "new.bin",
            vec![7u8; 300_000],
        )
        .unwrap();
    let third = snapshot(&s).await;
    assert_eq!(third.attachments_downloaded, 1);
    assert_complete(&s, &third).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_survives_faults() {
    let s = FakeSetup::start(FakeOptions {
        preset: Preset::Zoo,
        rate_limit: None,
        token_rate_limit: None,
        faults: "503=0.05,502=0.02,reset=0.02,iterexpire=3,urlexpire=4,seed=11"
            .parse()
            .unwrap(),
        ..FakeOptions::default()
    })
    .await;
    let summary = snapshot(&s).await;
    assert!(summary.retries > 0, "faults were injected");
    s.fake.set_faults(Default::default());
    assert_complete(&s, &summary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_tables_and_fields_are_left_out() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let schema = s.fake.schema_json(&s.base);
    let tables = schema["tables"].as_array().unwrap();
    let (kept, dropped) = (&tables[0], &tables[1]);
    let field = kept["fields"].as_array().unwrap().last().unwrap();
    let mut options = BackupOptions::new(&s.base);
    options.tables.exclude = vec![dropped["name"].as_str().unwrap().into()];
    options.exclude_fields = vec![airback::config::FieldRef {
        table: kept["name"].as_str().unwrap().to_string(),
        field: field["name"].as_str().unwrap().to_string(),
        optional: false,
    }];
    let summary = backup_base(&s.repo, &s.client, &options, Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(summary.tables, tables.len() - 1);
    assert!(
        summary.warnings.is_empty() && !summary.partial,
        "every filter entry matched: {summary:?}"
    );
    let snapshot = s.repo.load_snapshot(&summary.snapshot_id).await.unwrap();
    let root = s.repo.load_tree(&snapshot.tree).await.unwrap();
    let tree = subtree(&s.repo, &root, "tables").await;
    assert!(
        !tree
            .nodes
            .iter()
            .any(|n| n.name.starts_with(dropped["id"].as_str().unwrap()))
    );
    let node = tree
        .nodes
        .iter()
        .find(|n| n.name.starts_with(kept["id"].as_str().unwrap()))
        .unwrap();
    let NodeKind::File { content, .. } = &node.kind else {
        panic!()
    };
    let text = String::from_utf8(read_file(&s.repo, content).await).unwrap();
    assert!(
        !text.contains(field["id"].as_str().unwrap()),
        "excluded field present"
    );
}

/// Attachments that cannot be downloaded: the snapshot is still saved, marked partial, names
/// each missing attachment, and holds everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_attachments_make_a_partial_snapshot_that_names_them() {
    let s = FakeSetup::start(FakeOptions {
        preset: Preset::Zoo,
        rate_limit: None,
        token_rate_limit: None,
        faults: "missing=0.3,seed=5".parse().unwrap(),
        ..FakeOptions::default()
    })
    .await;
    let summary = snapshot(&s).await;
    assert!(summary.partial);
    assert!(!summary.problems.is_empty());
    let faults = s.fake.faults();
    let snapshot = s.repo.load_snapshot(&summary.snapshot_id).await.unwrap();
    assert!(snapshot.partial);
    assert_eq!(snapshot.problems, summary.problems);
    for problem in &summary.problems {
        let id = problem.split_whitespace().nth(1).unwrap();
        assert!(faults.is_missing(id), "{problem}");
    }
    // Only what was downloaded is in the snapshot.
    assert_eq!(summary.attachments, summary.attachments_downloaded);
    let report = check(
        &s.repo,
        &CheckOptions {
            read_data: true,
            subset: None,
        },
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
}

/// Reads the `manifest.json`, table JSON and CSV files of a tar, zip or dir export (not the
/// attachments), by path.
fn export_texts(
    format: airback::export::ExportFormat,
    path: &std::path::Path,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    use airback::export::ExportFormat;
    use std::io::Read;
    let wanted = |name: &str| name == "manifest.json" || name.starts_with("tables/");
    let mut out = std::collections::BTreeMap::new();
    match format {
        ExportFormat::Tar => {
            let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
            for entry in archive.entries().unwrap() {
                let mut entry = entry.unwrap();
                let name = entry.path().unwrap().to_string_lossy().into_owned();
                if wanted(&name) {
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes).unwrap();
                    out.insert(name, bytes);
                }
            }
        }
        ExportFormat::Zip => {
            let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
            for i in 0..archive.len() {
                let mut file = archive.by_index(i).unwrap();
                let name = file.name().unwrap().into_owned();
                if wanted(&name) {
                    let mut bytes = Vec::new();
                    file.read_to_end(&mut bytes).unwrap();
                    out.insert(name, bytes);
                }
            }
        }
        ExportFormat::Dir => {
            for file in crate::support::files_below(path) {
                let name = file.to_string_lossy().replace('\\', "/");
                if wanted(&name) {
                    out.insert(name, std::fs::read(path.join(&file)).unwrap());
                }
            }
        }
        ExportFormat::Sqlite => panic!("a SQLite export is not a package"),
    }
    out
}

/// A field left out by `exclude_fields` stays out of everything made from the snapshot: no
/// JSON key or CSV column in tar, zip and folder exports, no SQLite column, no field in a
/// restored base. (The backup used to record the excluded fields as a count where readers
/// expect their ids, so exports and restores brought the field back, empty.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_fields_stay_out_of_exports_and_restores() {
    use airback::export::{ExportFormat, ExportOptions, Output, export};
    use airback::restore::{RestoreOptions, Target, restore};
    use airback::stored::StoredBase;

    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let schema = s.fake.schema_json(&s.base);
    let table = &schema["tables"][0];
    let (table_id, table_name) = (
        table["id"].as_str().unwrap(),
        table["name"].as_str().unwrap(),
    );
    let fields = table["fields"].as_array().unwrap();
    let excluded = fields.iter().find(|f| f["name"] == "Notes").unwrap();
    let excluded_id = excluded["id"].as_str().unwrap();
    let primary = table["primaryFieldId"].as_str().unwrap();
    let kept = fields.iter().find(|f| f["id"] == primary).unwrap()["name"]
        .as_str()
        .unwrap();
    assert!(
        s.fake
            .records_json(&s.base, table_id)
            .iter()
            .any(|r| r["fields"].get(excluded_id).is_some()),
        "the field to exclude has values"
    );

    let mut options = BackupOptions::new(&s.base);
    options.exclude_fields = vec![airback::config::FieldRef {
        table: table_name.to_owned(),
        field: "Notes".to_owned(),
        optional: false,
    }];
    let summary = backup_base(&s.repo, &s.client, &options, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(!summary.partial, "{summary:?}");
    let snapshot = s.repo.load_snapshot(&summary.snapshot_id).await.unwrap();
    let stored = StoredBase::open(&s.repo, summary.snapshot_id, snapshot)
        .await
        .unwrap();

    for format in ExportFormat::ALL {
        let path = s.dir.path().join(format!("export-{format}"));
        let options = ExportOptions::new(format, Output::Path(path.clone()));
        export(&stored, options, Arc::new(NoProgress))
            .await
            .unwrap_or_else(|e| panic!("{format} export: {e}"));
        if format == ExportFormat::Sqlite {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let sql_table: String = conn
                .query_row(
                    "SELECT sql_table FROM _airback_tables WHERE table_id = ?1",
                    [table_id],
                    |row| row.get(0),
                )
                .unwrap();
            let mut info = conn
                .prepare(&format!(
                    "PRAGMA table_info(\"{}\")",
                    sql_table.replace('"', "\"\"")
                ))
                .unwrap();
            let columns: Vec<String> = info
                .query_map([], |row| row.get::<_, String>(1))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(columns.iter().any(|c| c == kept), "{columns:?}");
            assert!(!columns.iter().any(|c| c == "Notes"), "sqlite: {columns:?}");
            let listed: i64 = conn
                .query_row(
                    "SELECT count(*) FROM _airback_fields WHERE field_id = ?1",
                    [excluded_id],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(
                listed, 0,
                "sqlite: the excluded field is listed in _airback_fields"
            );
            continue;
        }
        let files = export_texts(format, &path);
        let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        let entry = manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == table_id)
            .unwrap();
        let json: Value = serde_json::from_slice(&files[entry["json"].as_str().unwrap()]).unwrap();
        let ids: Vec<&str> = json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&primary), "{format}: {ids:?}");
        assert!(
            !ids.contains(&excluded_id),
            "{format} JSON lists the field: {ids:?}"
        );
        for record in json["records"].as_array().unwrap() {
            assert!(
                record["fields"].get("Notes").is_none(),
                "{format}: {record}"
            );
        }
        let csv = String::from_utf8(files[entry["csv"].as_str().unwrap()].clone()).unwrap();
        let header: Vec<&str> = csv
            .lines()
            .next()
            .unwrap()
            .trim_start_matches('\u{feff}')
            .split(',')
            .map(|c| c.trim_matches('"'))
            .collect();
        assert!(header.contains(&kept), "{format}: {header:?}");
        assert!(
            !header.contains(&"Notes"),
            "{format} CSV header: {header:?}"
        );
    }

    let target = s.fake.add_empty_base("Restored").id;
    let options = RestoreOptions::new(
        Target::Base(target.clone()),
        Some(s.dir.path().join("journal.sqlite")),
    );
    let report = restore(
        &stored,
        &s.client,
        &options,
        Arc::new(airback::progress::NoProgress),
    )
    .await
    .unwrap();
    let restored = s.fake.schema_json(&target);
    let names: Vec<&str> = restored["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == table_name)
        .unwrap()["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&kept), "{names:?}");
    assert!(
        !names.contains(&"Notes"),
        "restore created the field: {names:?}"
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
