//! Record comments (issue 15, acceptance 4): snapshots hold every comment for one request per
//! page of comments of the records that have some, `--no-comments` and a token without the
//! comments scope leave them out, and export and restore carry them.

use std::collections::HashMap;
use std::sync::Arc;

use crate::support::FakeSetup;
use airback::backup::{BackupOptions, BackupSummary, CommentsSkipped, backup_base};
use airback::progress::NoProgress;
use airback::stored::StoredBase;
use airback_fake::{FakeOptions, Preset, Route};
use serde_json::Value;

/// A zoo base (whose generator comments a few records), attachments left out for speed.
async fn zoo() -> FakeSetup {
    FakeSetup::start(FakeOptions::unlimited(Preset::Zoo)).await
}

fn options(s: &FakeSetup) -> BackupOptions {
    let mut options = BackupOptions::new(&s.base);
    options.attachments = false;
    options
}

async fn backup_with(s: &FakeSetup, options: &BackupOptions) -> (BackupSummary, StoredBase) {
    let summary = backup_base(&s.repo, &s.client, options, Arc::new(NoProgress))
        .await
        .unwrap();
    (summary.clone(), open(s, &summary).await)
}

async fn open(s: &FakeSetup, summary: &BackupSummary) -> StoredBase {
    let manifest = s.repo.load_snapshot(&summary.snapshot_id).await.unwrap();
    StoredBase::open(&s.repo, summary.snapshot_id, manifest)
        .await
        .unwrap()
}

/// (table id, table name) of every table of the base.
fn tables(s: &FakeSetup) -> Vec<(String, String)> {
    s.fake.schema_json(&s.base)["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The fake's comments: table id → record id → comments, oldest first.
fn fake_comments(s: &FakeSetup) -> HashMap<String, HashMap<String, Vec<Value>>> {
    tables(s)
        .into_iter()
        .map(|(table, _)| {
            let records = s
                .fake
                .comment_counts(&s.base, &table)
                .into_iter()
                .map(|(record, _)| {
                    let comments = s.fake.comments(&s.base, &table, &record);
                    (record, comments)
                })
                .collect();
            (table, records)
        })
        .collect()
}

/// More comments than the zoo's: two on a record of a second table, and 105 on one record
/// (two pages of comments).
fn add_comments(s: &FakeSetup) -> (String, String) {
    let (links, _) = tables(s)[1].clone();
    let records = s.fake.records_json(&s.base, &links);
    let users = s.fake.users();
    let ada = users[1]["id"].as_str().unwrap();
    let record = records[0]["id"].as_str().unwrap();
    s.fake
        .add_comment(&s.base, &links, record, Some(ada), "first, by Ada")
        .unwrap();
    s.fake
        .add_comment(&s.base, &links, record, None, "second, by the owner")
        .unwrap();
    let busy = records[1]["id"].as_str().unwrap().to_owned();
    for n in 0..105 {
        s.fake
            .add_comment(&s.base, &links, &busy, Some(ada), &format!("note {n}"))
            .unwrap();
    }
    (links, busy)
}

fn listing_requests(s: &FakeSetup) -> u64 {
    let counters = s.fake.counters();
    counters.requests(Route::ListRecords) + counters.requests(Route::ListRecordsPost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_holds_every_comment_for_one_request_per_page_of_them() {
    let s = zoo().await;
    let (links, busy) = add_comments(&s);
    let expected = fake_comments(&s);
    let total: usize = expected
        .values()
        .flat_map(|r| r.values())
        .map(Vec::len)
        .sum();
    assert!(total > 110, "{total}");
    // Both sides from the fake's state: a listing page per 100 records of each table (one
    // for an empty table), a comments page per 100 comments of each record that has some.
    let pages: u64 = tables(&s)
        .iter()
        .map(|(table, _)| {
            let records = s.fake.record_count(&s.base, table).unwrap() as u64;
            records.div_ceil(100).max(1)
        })
        .sum();
    let comment_pages: u64 = expected
        .values()
        .flat_map(|r| r.values())
        .map(|c| (c.len() as u64).div_ceil(100))
        .sum();
    let records_with_comments = expected.values().map(|r| r.len() as u64).sum::<u64>();
    assert_eq!(
        comment_pages,
        records_with_comments + 1,
        "one record has 105"
    );

    let (lists_before, comments_before) = (
        listing_requests(&s),
        s.fake.counters().requests(Route::ListComments),
    );
    let (first, stored) = backup_with(&s, &options(&s)).await;
    assert!(!first.partial, "{first:?}");
    let listed = listing_requests(&s) - lists_before;
    let commented = s.fake.counters().requests(Route::ListComments) - comments_before;
    assert_eq!(listed, pages);
    assert_eq!(commented, comment_pages);
    assert_eq!(listed + commented, pages + records_with_comments + 1);
    assert_eq!(first.comments, total as u64);
    assert_eq!(first.comments_skipped, None);

    // Every comment, oldest first, exactly as the API gave it.
    assert!(stored.has_comments());
    for (table, records) in &expected {
        let held = stored.comments_by_record(table).await.unwrap();
        assert_eq!(&held, records, "table {table}");
        let count: usize = records.values().map(Vec::len).sum();
        assert_eq!(stored.comment_count(table), count as u64);
    }
    // The stored records carry no commentCount: their lines are what they were.
    let links_table = stored.table(&links).unwrap().clone();
    use futures::TryStreamExt;
    let records: Vec<_> = stored.records(&links_table).try_collect().await.unwrap();
    assert!(records.iter().any(|r| r.id == busy));

    // Nothing changed: the comment files are the same blobs.
    let (second, again) = backup_with(&s, &options(&s)).await;
    assert_eq!(second.comments, first.comments);
    let files = |stored: &StoredBase| {
        let mut out = Vec::new();
        for (table, _) in tables(&s) {
            out.push((table.clone(), stored.comment_count(&table)));
        }
        out
    };
    assert_eq!(files(&stored), files(&again));
    let blobs_before = comment_blobs(&s, &first).await;
    assert_eq!(comment_blobs(&s, &second).await, blobs_before);

    // A new comment on a zoo record: that table's file changes, the other table's does not.
    let (everything, _) = tables(&s)[0].clone();
    let (record, _) = s.fake.comment_counts(&s.base, &everything)[0].clone();
    s.fake
        .add_comment(&s.base, &everything, &record, None, "one more")
        .unwrap();
    let (third, _) = backup_with(&s, &options(&s)).await;
    assert_eq!(third.comments, first.comments + 1);
    let blobs_after = comment_blobs(&s, &third).await;
    assert_eq!(blobs_after[&links], blobs_before[&links]);
    assert_ne!(blobs_after[&everything], blobs_before[&everything]);
}

/// The blobs of each comments file of a snapshot, by table id.
async fn comment_blobs(
    s: &FakeSetup,
    summary: &BackupSummary,
) -> HashMap<String, Vec<airback::id::BlobId>> {
    use airback::repo::NodeKind;
    let manifest = s.repo.load_snapshot(&summary.snapshot_id).await.unwrap();
    let root = s.repo.load_tree(&manifest.tree).await.unwrap();
    let dir = root.nodes.iter().find(|n| n.name == "comments").unwrap();
    let NodeKind::Dir { subtree } = &dir.kind else {
        panic!("comments is a file")
    };
    s.repo
        .load_tree(subtree)
        .await
        .unwrap()
        .nodes
        .into_iter()
        .map(|node| match node.kind {
            NodeKind::File { content, .. } => {
                (node.name.trim_end_matches(".jsonl").to_owned(), content)
            }
            NodeKind::Dir { .. } => panic!("a folder in comments/"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_can_be_turned_off_and_a_token_without_their_scope_skips_them() {
    let s = zoo().await;
    // --no-comments: no comment request, and the snapshot says they were turned off.
    let mut off = options(&s);
    off.comments = false;
    let before = s.fake.counters().requests(Route::ListComments);
    let (summary, stored) = backup_with(&s, &off).await;
    assert_eq!(s.fake.counters().requests(Route::ListComments), before);
    assert_eq!(summary.comments_skipped, Some(CommentsSkipped::TurnedOff));
    assert!(!stored.has_comments());
    assert_eq!(stored.snapshot.summary["comments_skipped"], "turned_off");

    // A token without data.recordComments:read: the binary warns once, the snapshot is saved
    // (not partial, exit 0) and says why it has no comments.
    let token = s
        .fake
        .add_token(&["data.records:read", "schema.bases:read"], None);
    let before = s.fake.counters().requests(Route::ListComments);
    let out = s
        .command(&["snapshot", "--base", &s.base, "--no-attachments", "--json"])
        .env("AIRTABLE_TOKEN", &token)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("lacks the data.recordComments:read scope"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].starts_with("warning: base "), "{stderr}");
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["comments_skipped"], "no_scope", "{result:#}");
    assert_eq!(result["partial"], false);
    assert_eq!(result["outcome"], "ok");
    // One refused request per record read at once at most, not one per record.
    let refused = s.fake.counters().requests(Route::ListComments) - before;
    assert!((1..=4).contains(&refused), "{refused}");

    // The listing says why each snapshot holds no comments.
    let out = s.command(&["snapshots", "--json"]).output().await.unwrap();
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut skipped: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["comments_skipped"].as_str().unwrap())
        .collect();
    skipped.sort();
    assert_eq!(skipped, ["no_scope", "turned_off"], "{rows:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_hold_every_comment_in_json_and_in_sqlite() {
    use airback::export::{ExportFormat, ExportOptions, Output, export};
    let s = zoo().await;
    add_comments(&s);
    let expected = fake_comments(&s);
    let total: usize = expected
        .values()
        .flat_map(|r| r.values())
        .map(Vec::len)
        .sum();
    let (_, stored) = backup_with(&s, &options(&s)).await;

    // A folder: comments/<table>.json next to the tables, named in the manifest.
    let dir = s.dir.path().join("export-dir");
    let summary = export(
        &stored,
        ExportOptions::new(ExportFormat::Dir, Output::Path(dir.clone())),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(summary.comments, total as u64);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["comments"]["count"], total);
    assert_eq!(manifest["comments"]["backed_up"], true);
    let mut files = 0;
    for table in manifest["tables"].as_array().unwrap() {
        let id = table["id"].as_str().unwrap();
        let Some(records) = expected.get(id).filter(|r| !r.is_empty()) else {
            assert!(table["comments"].is_null(), "{table}");
            continue;
        };
        files += 1;
        let path = table["comments"].as_str().unwrap();
        assert!(
            path.starts_with("comments/") && path.ends_with(".json"),
            "{path}"
        );
        let doc: Vec<Value> =
            serde_json::from_slice(&std::fs::read(dir.join(path)).unwrap()).unwrap();
        let got: HashMap<String, Vec<Value>> = doc
            .iter()
            .map(|item| {
                (
                    item["record"].as_str().unwrap().to_owned(),
                    item["comments"].as_array().unwrap().clone(),
                )
            })
            .collect();
        assert_eq!(&got, records, "{path}");
    }
    assert_eq!(files, expected.values().filter(|r| !r.is_empty()).count());
    assert!(files >= 3, "{files}");

    // SQLite: one row per comment, in order, with its author and times.
    let db = s.dir.path().join("export.sqlite");
    export(
        &stored,
        ExportOptions::new(ExportFormat::Sqlite, Output::Path(db.clone())),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM _airback_comments", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, total as i64);
    for (table, records) in &expected {
        for (record, comments) in records {
            let mut query = conn
                .prepare(
                    "SELECT id, text, author_name, author_email, created_time, \
                     parent_comment_id, mentioned FROM _airback_comments \
                     WHERE table_id = ?1 AND record_id = ?2 ORDER BY position",
                )
                .unwrap();
            let got: Vec<Value> = query
                .query_map([table, record], |row| {
                    Ok(serde_json::json!({
                        "id": row.get::<_, String>(0)?,
                        "text": row.get::<_, String>(1)?,
                        "author": row.get::<_, String>(2)?,
                        "email": row.get::<_, String>(3)?,
                        "createdTime": row.get::<_, String>(4)?,
                        "parent": row.get::<_, Option<String>>(5)?,
                        "mentioned": row.get::<_, Option<String>>(6)?,
                    }))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let want: Vec<Value> = comments
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "id": c["id"], "text": c["text"], "author": c["author"]["name"],
                        "email": c["author"]["email"], "createdTime": c["createdTime"],
                        "parent": c.get("parentCommentId"),
                        "mentioned": c.get("mentioned").map(Value::to_string),
                    })
                })
                .collect();
            assert_eq!(got, want, "{record}");
        }
    }
    let mentioned: i64 = conn
        .query_row(
            "SELECT count(*) FROM _airback_comments WHERE mentioned IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mentioned, 1);
}

/// An empty-preset base ("Table 1", 3 records) with comments on two records: a thread of
/// three on the first (Ada, then Grace's reply mentioning Alan, then the owner) and one on the
/// third. Returns (table id, record ids).
async fn commented_base() -> (FakeSetup, String, Vec<String>) {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Empty)).await;
    let (table, _) = tables(&s)[0].clone();
    let records: Vec<String> = s
        .fake
        .records_json(&s.base, &table)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let users = s.fake.users();
    let user = |i: usize| users[i]["id"].as_str().unwrap().to_owned();
    let first = s
        .fake
        .add_comment(
            &s.base,
            &table,
            &records[0],
            Some(&user(1)),
            "first, by Ada",
        )
        .unwrap();
    s.fake
        .add_reply(
            &s.base,
            &table,
            &records[0],
            Some(&user(2)),
            &format!("a reply for @[{}]", user(3)),
            first["id"].as_str(),
        )
        .unwrap();
    s.fake
        .add_comment(&s.base, &table, &records[0], None, "third, by the owner")
        .unwrap();
    s.fake
        .add_comment(&s.base, &table, &records[2], Some(&user(4)), "only one")
        .unwrap();
    (s, table, records)
}

/// The record of the target base restored from original record `source`: (table id, id).
fn restored_record(s: &FakeSetup, base: &str, source: &str) -> (String, String) {
    let schema = s.fake.schema_json(base);
    for table in schema["tables"].as_array().unwrap() {
        let Some(field) = table["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == airback::restore::SOURCE_ID_FIELD)
        else {
            continue;
        };
        let table_id = table["id"].as_str().unwrap();
        for record in s.fake.records_json(base, table_id) {
            if record["fields"][field["id"].as_str().unwrap()] == source {
                return (
                    table_id.to_owned(),
                    record["id"].as_str().unwrap().to_owned(),
                );
            }
        }
    }
    panic!("record {source} was not restored into {base}")
}

/// What a restored copy of `original` must look like: created by the token's user, its text
/// the original author and time, then the original text.
fn assert_restored(s: &FakeSetup, copy: &Value, original: &Value) {
    let author = &original["author"];
    let prefix = format!(
        "{} ({}), {}: ",
        author["name"].as_str().unwrap(),
        author["email"].as_str().unwrap(),
        original["createdTime"].as_str().unwrap()
    );
    let text = copy["text"].as_str().unwrap();
    assert_eq!(
        text.strip_prefix(&prefix),
        original["text"].as_str(),
        "{copy:#}"
    );
    assert_eq!(copy["author"], s.fake.users()[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_creates_every_comment_again_in_order_once() {
    use airback::restore::{RestoreOptions, Target, restore};
    let (s, table, records) = commented_base().await;
    let (_, stored) = backup_with(&s, &options(&s)).await;
    let target = s.fake.add_empty_base("Restored").id;
    let journal = s.dir.path().join("journal.sqlite");
    let restore_options = RestoreOptions::new(Target::Base(target.clone()), Some(journal.clone()));
    let run = || restore(&stored, &s.client, &restore_options, Arc::new(NoProgress));

    let created_before = s.fake.counters().comments_created;
    let report = run().await.unwrap();
    assert_eq!(report.workload.comments, 4);
    assert_eq!(report.comments_written, 4);
    assert_eq!(
        report.comments_author.as_deref(),
        s.fake.users()[0]["email"].as_str()
    );
    assert_eq!(s.fake.counters().comments_created - created_before, 4);
    assert!(
        report
            .plan
            .losses
            .iter()
            .any(|l| l.what.contains("comments are restored as the token's user")),
        "{:?}",
        report.plan.losses
    );
    for source in [&records[0], &records[2]] {
        let originals = s.fake.comments(&s.base, &table, source);
        let (new_table, new_id) = restored_record(&s, &target, source);
        let copies = s.fake.comments(&target, &new_table, &new_id);
        assert_eq!(copies.len(), originals.len(), "{source}");
        for (copy, original) in copies.iter().zip(&originals) {
            assert_restored(&s, copy, original);
        }
        if source == &records[0] {
            // The reply is a reply to the copy of its parent.
            assert_eq!(copies[1]["parentCommentId"], copies[0]["id"]);
            assert!(copies[1]["mentioned"].is_object(), "{:#}", copies[1]);
        }
    }
    let (new_table, new_id) = restored_record(&s, &target, &records[1]);
    assert!(s.fake.comments(&target, &new_table, &new_id).is_empty());

    // The same restore again: the journal has every comment, none is created.
    let again = run().await.unwrap();
    assert_eq!(again.comments_written, 0);
    assert_eq!(s.fake.counters().comments_created - created_before, 4);

    // A create the journal did not confirm (a crash after the request): the record's comments
    // are read, and the comment found there is not created twice.
    let conn = rusqlite::Connection::open(&journal).unwrap();
    let pending = conn
        .execute("UPDATE comments SET target = NULL WHERE rowid = 1", [])
        .unwrap();
    assert_eq!(pending, 1);
    let before = s.fake.counters().requests(Route::ListComments);
    let resumed = run().await.unwrap();
    assert_eq!(resumed.comments_written, 0);
    assert_eq!(s.fake.counters().comments_created - created_before, 4);
    assert_eq!(s.fake.counters().requests(Route::ListComments) - before, 1);
    let unconfirmed: i64 = conn
        .query_row(
            "SELECT count(*) FROM comments WHERE target IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unconfirmed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_restore_brings_back_deleted_records_and_lost_comments() {
    use airback::restore::{InPlaceOptions, restore_in_place};
    let (s, table, records) = commented_base().await;
    let (_, stored) = backup_with(&s, &options(&s)).await;
    let originals: Vec<Vec<Value>> = records
        .iter()
        .map(|r| s.fake.comments(&s.base, &table, r))
        .collect();
    // Since the snapshot: the commented first record deleted, the third's comment deleted.
    s.client
        .delete_records(&s.base, &table, std::slice::from_ref(&records[0]))
        .await
        .unwrap();
    let lost = originals[2][0]["id"].as_str().unwrap();
    assert!(s.fake.delete_comment(&s.base, &table, &records[2], lost));

    let in_place = InPlaceOptions {
        verify: true,
        journal: Some(s.dir.path().join("in-place.sqlite")),
        safety_snapshot: Some(options(&s)),
        ..InPlaceOptions::default()
    };
    let report = restore_in_place(&stored, &s.client, &in_place, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.comments_created, 4);
    let new_id = report.recreated[&records[0]].clone();
    let copies = s.fake.comments(&s.base, &table, &new_id);
    assert_eq!(copies.len(), 3);
    for (copy, original) in copies.iter().zip(&originals[0]) {
        assert_restored(&s, copy, original);
    }
    assert_eq!(copies[1]["parentCommentId"], copies[0]["id"]);
    let third = s.fake.comments(&s.base, &table, &records[2]);
    assert_eq!(third.len(), 1);
    assert_restored(&s, &third[0], &originals[2][0]);

    // Again: everything is there, nothing is created.
    let again = restore_in_place(&stored, &s.client, &in_place, Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(again.comments_created, 0);
    assert_eq!(s.fake.comments(&s.base, &table, &new_id).len(), 3);
    assert_eq!(s.fake.comments(&s.base, &table, &records[2]).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_out_a_record_drops_its_comments() {
    let (s, table, records) = commented_base().await;
    let (first, stored) = backup_with(&s, &options(&s)).await;
    assert_eq!(stored.comment_count(&table), 4);
    let out = s
        .command(&[
            "rewrite",
            "latest",
            "--exclude-record",
            &records[0],
            "--json",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    let id: airback::id::SnapshotId = report["rewritten"][0]["snapshot"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(id, first.snapshot_id);
    let manifest = s.repo.load_snapshot(&id).await.unwrap();
    assert_eq!(manifest.summary["comments"], 1);
    let rewritten = StoredBase::open(&s.repo, id, manifest).await.unwrap();
    let left = rewritten.comments_by_record(&table).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[&records[2]],
        s.fake.comments(&s.base, &table, &records[2])
    );
    assert_eq!(rewritten.comment_count(&table), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_may_not_write_comments_restores_the_records_and_names_the_comments() {
    use airback::airtable::{Client, ClientOptions, Token};
    use airback::restore::{RestoreOptions, Target, restore};
    let (s, _, records) = commented_base().await;
    let (_, stored) = backup_with(&s, &options(&s)).await;
    let target = s.fake.add_empty_base("Restored").id;
    let token = s.fake.add_token(
        &[
            "data.records:read",
            "data.records:write",
            "schema.bases:read",
            "schema.bases:write",
            "data.recordComments:read",
        ],
        None,
    );
    let client = Client::new(
        Token::new(token).unwrap(),
        ClientOptions::default().with_url(&s.fake.url()),
    )
    .unwrap();
    let report = restore(
        &stored,
        &client,
        &RestoreOptions::new(Target::Base(target.clone()), None),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(report.comments_written, 0);
    assert_eq!(s.fake.counters().comments_created, 0);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.starts_with("4 comments are not restored")
                && p.contains("data.recordComments:write")),
        "{:?}",
        report.problems
    );
    assert!(!report.is_complete());
    for record in &records {
        restored_record(&s, &target, record);
    }
}
