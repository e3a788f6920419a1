//! Erasure: after `rewrite --exclude-attachment` (or `--exclude-record`) and `forget
//! --prune`, no object in storage holds the content, searched in every blob's plaintext.

use std::path::Path;

use airback::internals::pack_plaintexts;
use airback::repo::{CacheChoice, Repository};
use airback_fake::{FakeOptions, Preset};
use serde_json::{Map, Value, json};

use crate::support::{self, FakeSetup, airback};

/// Eight 64-byte windows of `content`, spread over it.
fn needles(content: &[u8]) -> Vec<Vec<u8>> {
    (0..8)
        .map(|i| {
            let at = i * (content.len() - 64) / 7;
            content[at..at + 64].to_vec()
        })
        .collect()
}

/// The storage objects (`data/…`) whose blobs' plaintext holds one of `needles`; also every
/// other object searched raw (index files, snapshots, locks hold no attachment bytes, but
/// an unencrypted repository's would show them).
async fn holders(location: &str, needles: &[Vec<u8>]) -> Vec<String> {
    let backend = support::open_backend(location);
    let repo = Repository::open(backend.clone(), CacheChoice::Memory, support::password())
        .await
        .unwrap();
    let mut found = Vec::new();
    let contains = |hay: &[u8]| {
        needles
            .iter()
            .any(|n| hay.windows(n.len()).any(|w| w == n.as_slice()))
    };
    for entry in backend.list("data/").await.unwrap() {
        let id = entry.name.rsplit('/').next().unwrap().parse().unwrap();
        let plain = pack_plaintexts(&repo, &id).await.unwrap();
        if plain.iter().any(|b| contains(b)) {
            found.push(format!("data/{}", entry.name));
        }
    }
    for rel in support::files_below(Path::new(location)) {
        if rel.starts_with("data") {
            continue;
        }
        if contains(&std::fs::read(Path::new(location).join(&rel)).unwrap()) {
            found.push(rel.display().to_string());
        }
    }
    found
}

/// The demo base's Projects table id, its `Brief` attachment field, `Notes` and a record.
fn projects(s: &FakeSetup) -> (String, String, String, Vec<Value>) {
    let schema = s.fake.schema_json(&s.base);
    let table = schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Projects")
        .unwrap()
        .clone();
    let field = |name: &str| support::field_id(&table, name);
    let id = table["id"].as_str().unwrap().to_owned();
    let records = s.fake.records_json(&s.base, &id);
    (id, field("Brief"), field("Notes"), records)
}

/// `snapshot` through the binary needs the fake's address.
async fn with_fake(s: &FakeSetup, args: &[&str]) -> (i32, String, String) {
    crate::cli::airback_with(&s.fake, s.dir.path(), args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_out_attachment_leaves_the_storage_after_forget_prune() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let repo = s.dir.path().join("repo");
    let repo_loc = repo.to_str().unwrap();
    let (table, brief, notes, records) = projects(&s);
    let secret = support::random_bytes(300_000, 99);
    let holder = records[0]["id"].as_str().unwrap();
    // A large file beside it, in the same packs: the 300 KB freed are then far below prune's
    // 5 % threshold, so only the erasure request makes prune rewrite the pack.
    s.fake
        .add_attachment(
            &s.base,
            &table,
            records[2]["id"].as_str().unwrap(),
            &brief,
            "archive.bin",
            support::random_bytes(20_000_000, 98),
        )
        .unwrap();
    s.fake
        .add_attachment(
            &s.base,
            &table,
            holder,
            &brief,
            "leaked.pdf",
            secret.clone(),
        )
        .unwrap();
    let attachment = s
        .fake
        .records_json(&s.base, &table)
        .into_iter()
        .find(|r| r["id"] == holder)
        .unwrap()["fields"][&brief]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["filename"] == "leaked.pdf")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for round in 0..4 {
        let mut fields = Map::new();
        fields.insert(notes.clone(), json!(format!("round {round}")));
        s.fake
            .update_record_fields(&s.base, &table, records[1]["id"].as_str().unwrap(), fields)
            .unwrap();
        let (code, _, err) = with_fake(
            &s,
            &["snapshot", "--repo", repo_loc, "--base", &s.base, "--quiet"],
        )
        .await;
        assert_eq!(code, 0, "{err}");
    }
    let needles = needles(&secret);
    let before = holders(repo_loc, &needles).await;
    assert!(
        !before.is_empty(),
        "the search must find the attachment before erasure"
    );

    let (code, out, err) = airback(
        s.dir.path(),
        &[
            "rewrite",
            "--repo",
            repo_loc,
            "--exclude-attachment",
            &attachment,
            "--forget-originals",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["rewritten"].as_array().unwrap().len(), 4, "{report}");
    assert!(report["erase"].as_u64().unwrap() > 0, "{report}");
    // Rewritten but not yet pruned: the bytes are still there.
    assert!(!holders(repo_loc, &needles).await.is_empty());

    let (code, out, err) = airback(
        s.dir.path(),
        &[
            "forget",
            "--repo",
            repo_loc,
            "--keep-last",
            "10",
            "--prune",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let forget: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(forget["removed"], 0, "{forget}");
    let after = holders(repo_loc, &needles).await;
    assert!(
        after.is_empty(),
        "the attachment's bytes are still in {after:?}"
    );

    // What is left is whole: check, and an export without the attachment but with the rest.
    let (code, out, err) =
        airback(s.dir.path(), &["check", "--repo", repo_loc, "--read-data"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) =
        airback(s.dir.path(), &["snapshots", "--repo", repo_loc, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 4);
    let export_dir = s.dir.path().join("export");
    let exported =
        crate::support::export_to_dir(s.dir.path(), repo_loc, "latest", &export_dir).await;
    assert_eq!(exported["missing_attachments"], 0, "{exported}");
    assert_eq!(
        exported["attachments"], list[3]["attachments"],
        "{exported}"
    );
    let tables = std::fs::read_dir(&export_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect::<Vec<_>>();
    let all = tables
        .iter()
        .filter(|p| p.is_file())
        .map(|p| std::fs::read(p).unwrap())
        .collect::<Vec<_>>();
    assert!(
        all.iter().all(|b| !b
            .windows(attachment.len())
            .any(|w| w == attachment.as_bytes())),
        "the rewritten snapshot still names the attachment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_refuses_nothing_to_exclude_and_a_selector_that_matches_nothing() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let repo = s.dir.path().join("repo");
    let repo_loc = repo.to_str().unwrap();
    let (code, _, err) = with_fake(
        &s,
        &["snapshot", "--repo", repo_loc, "--base", &s.base, "--quiet"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let before = support::contents(&repo);
    let (code, _, err) = airback(s.dir.path(), &["rewrite", "--repo", repo_loc]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs something to leave out"), "{err}");
    let (code, _, err) = airback(
        s.dir.path(),
        &[
            "rewrite",
            "--repo",
            repo_loc,
            "--exclude-record",
            "recNOSUCHRECORD00",
        ],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("record recNOSUCHRECORD00 is in none"), "{err}");
    let after = support::contents(&repo);
    let changed: Vec<_> = after
        .keys()
        .filter(|k| !k.starts_with("locks") && before.get(*k) != after.get(*k))
        .collect();
    // A refused rewrite may leave packs of work it did before finding the miss, never a
    // snapshot or an index change.
    assert!(changed.iter().all(|k| k.starts_with("data")), "{changed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_out_record_and_field_are_gone_from_exports_of_the_rewrite() {
    let s = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let repo = s.dir.path().join("repo");
    let repo_loc = repo.to_str().unwrap();
    let (table, _, notes, records) = projects(&s);
    // A needle in one record's text, and another in a field every record has.
    let person = records[0]["id"].as_str().unwrap().to_owned();
    let mut fields = Map::new();
    fields.insert(
        notes.clone(),
        json!("call Jane Roe-4711 about her contract"),
    );
    s.fake
        .update_record_fields(&s.base, &table, &person, fields)
        .unwrap();
    let (code, _, err) = with_fake(
        &s,
        &["snapshot", "--repo", repo_loc, "--base", &s.base, "--quiet"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = airback(
        s.dir.path(),
        &[
            "rewrite",
            "latest",
            "--repo",
            repo_loc,
            "--exclude-record",
            &person,
            "--exclude-field",
            "Projects.Notes",
            "--forget-originals",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["rewritten"][0]["records"], 1, "{report}");
    assert_eq!(
        report["rewritten"][0]["fields"].as_array().unwrap().len(),
        1,
        "{report}"
    );

    let (code, out, err) =
        airback(s.dir.path(), &["snapshots", "--repo", repo_loc, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "the original is forgotten"
    );
    assert!(
        list[0]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "rewritten"),
        "{list}"
    );
    let export_dir = s.dir.path().join("export");
    let exported =
        crate::support::export_to_dir(s.dir.path(), repo_loc, "latest", &export_dir).await;
    let before: u64 = s.fake.schema_json(&s.base)["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            s.fake
                .record_count(&s.base, t["id"].as_str().unwrap())
                .unwrap() as u64
        })
        .sum();
    assert_eq!(exported["records"], before - 1, "{exported}");
    for path in support::files_below(&export_dir) {
        let bytes = std::fs::read(export_dir.join(&path)).unwrap();
        for needle in [person.as_bytes(), b"Roe-4711".as_slice()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} still holds {:?}",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    let (code, out, err) =
        airback(s.dir.path(), &["check", "--repo", repo_loc, "--read-data"]).await;
    assert_eq!(code, 0, "{out}{err}");
}
