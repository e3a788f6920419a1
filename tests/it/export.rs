//! `airback export` end to end on snapshots of the fake's zoo base: the packages are read by
//! other tools (Python's tarfile and zipfile, `tar -tf`, `unzip -t`, the `sqlite3` shell) and
//! checked against the fake's records and attachment bytes; names are safe; the same export
//! twice gives the same bytes; errors are clear and leave nothing behind.
//!
//! The tools are checked for first; `.ci/run` installs the ones a bare system lacks.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use airback::airtable::{Client, ClientOptions, Token};
use airback::backup::{BackupOptions, backup_base};
use airback::progress::NoProgress;
use airback_fake::{FakeAirtable, FakeOptions, Preset};
use serde_json::Value;

use crate::support::{files_below, new_repo, small_options};

/// A zoo base, backed up once into a repository with small chunks (so the 6 MB attachment
/// spans hundreds of blobs).
struct Zoo {
    fake: FakeAirtable,
    dir: tempfile::TempDir,
    repo: String,
    snapshot: String,
}

async fn zoo(attachments: bool) -> Zoo {
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Zoo))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo").to_str().unwrap().to_owned();
    let repo = new_repo(&location, &small_options()).await;
    let client = Client::new(
        Token::new(fake.token()).unwrap(),
        ClientOptions::default().with_url(&fake.url()),
    )
    .unwrap();
    let mut options = BackupOptions::new(fake.bases()[0].id.clone());
    options.attachments = attachments;
    let summary = backup_base(&repo, &client, &options, Arc::new(NoProgress))
        .await
        .unwrap();
    Zoo {
        fake,
        dir,
        repo: location,
        snapshot: summary.snapshot_id.to_hex(),
    }
}

impl Zoo {
    fn base(&self) -> String {
        self.fake.bases()[0].id.clone()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `airback export --repo … ARGS` and returns (code, stdout bytes, stderr).
    fn export(&self, args: &[&str]) -> (i32, Vec<u8>, String) {
        self.export_env(args, &[])
    }

    /// [`Zoo::export`] with more environment variables.
    fn export_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, Vec<u8>, String) {
        let out = crate::support::std_command(env!("CARGO_BIN_EXE_airback"))
            .arg("export")
            .args(args)
            .args(["--repo", &self.repo])
            .envs(env.iter().copied())
            .env("AIRBACK_CACHE_DIR", self.dir.path().join("cache"))
            .env_remove("AIRBACK_REPO")
            .stdin(Stdio::null())
            .output()
            .expect("the airback binary runs");
        (
            out.status.code().unwrap_or(-1),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Exports to `name` in the test's folder, which must succeed.
    fn export_to(&self, name: &str, extra: &[&str]) -> PathBuf {
        let path = self.path(name);
        let mut args = vec![&self.snapshot[..12], "-o", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (code, out, err) = self.export(&args);
        assert_eq!(code, 0, "{}{err}", String::from_utf8_lossy(&out));
        path
    }

    /// Exports the snapshot to `name` with environment variables `env`; must succeed.
    fn export_with(&self, name: &str, env: &[(&str, &str)]) -> PathBuf {
        let path = self.path(name);
        let (code, _, err) = self.export_env(&[&self.snapshot, "-o", path.to_str().unwrap()], env);
        assert_eq!(code, 0, "{err}");
        path
    }

    /// Every attachment id in the fake's records (attachment fields and lookups).
    fn attachment_ids(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for (_, records) in self.records() {
            for record in records {
                collect_attachments(&record["fields"], &mut ids);
            }
        }
        ids
    }

    /// Table id → its records, as the fake holds them.
    fn records(&self) -> Vec<(String, Vec<Value>)> {
        let base = self.base();
        self.fake.schema_json(&base)["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let id = t["id"].as_str().unwrap().to_owned();
                let records = self.fake.records_json(&base, &id);
                (id, records)
            })
            .collect()
    }

    /// What export_check.py compares a package with: record ids per table, attachment bytes.
    fn expected_dir(&self) -> PathBuf {
        let dir = self.path("expected");
        std::fs::create_dir_all(dir.join("attachments")).unwrap();
        let records: BTreeMap<String, Vec<String>> = self
            .records()
            .into_iter()
            .map(|(table, records)| {
                let ids = records
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_owned())
                    .collect();
                (table, ids)
            })
            .collect();
        std::fs::write(
            dir.join("records.json"),
            serde_json::to_vec(&records).unwrap(),
        )
        .unwrap();
        for id in self.attachment_ids() {
            let bytes = self.fake.attachment_content(&id).unwrap();
            std::fs::write(dir.join("attachments").join(&id), bytes).unwrap();
        }
        std::fs::write(
            dir.join("comments.json"),
            serde_json::to_vec(&self.comments()).unwrap(),
        )
        .unwrap();
        dir
    }

    /// Table id → record id → its comments (oldest first), for the tables with comments.
    fn comments(&self) -> BTreeMap<String, BTreeMap<String, Vec<Value>>> {
        let base = self.base();
        self.records()
            .into_iter()
            .map(|(table, _)| {
                let records: BTreeMap<String, Vec<Value>> = self
                    .fake
                    .comment_counts(&base, &table)
                    .into_iter()
                    .map(|(record, _)| {
                        let comments = self.fake.comments(&base, &table, &record);
                        (record, comments)
                    })
                    .collect();
                (table, records)
            })
            .filter(|(_, records)| !records.is_empty())
            .collect()
    }

    fn total_records(&self) -> usize {
        self.records().iter().map(|(_, r)| r.len()).sum()
    }
}

fn collect_attachments(value: &Value, ids: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(id) = map.get("id").and_then(Value::as_str)
                && id.starts_with("att")
                && map.contains_key("filename")
            {
                ids.insert(id.to_owned());
                return;
            }
            map.values().for_each(|v| collect_attachments(v, ids));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_attachments(v, ids)),
        _ => {}
    }
}

/// Panics with what to install when a tool the test reads packages with is missing.
fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is needed to read the exports; install it (.ci/run does: apt-get install {tool})"
    );
}

fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn python_check(kind: &str, package: &Path, expected: &Path) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/export_check.py");
    let (ok, out, err) = run(
        "python3",
        &[
            script,
            kind,
            package.to_str().unwrap(),
            expected.to_str().unwrap(),
        ],
    );
    assert!(
        ok,
        "Python's {kind} reader rejected {}: {err}",
        package.display()
    );
    serde_json::from_str(out.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_and_zip_exports_are_complete_safe_and_deterministic() {
    for tool in ["python3", "tar", "unzip"] {
        need(tool);
    }
    let zoo = zoo(true).await;
    let expected = zoo.expected_dir();
    let attachments = zoo.attachment_ids().len();
    assert!(attachments >= 15, "{attachments}");

    let tar = zoo.export_to("a.tar", &[]);
    let zip = zoo.export_to("a.zip", &[]);
    let comments = zoo.comments();
    let comment_count: usize = comments
        .values()
        .flat_map(|r| r.values())
        .map(Vec::len)
        .sum();
    assert!(comment_count >= 5, "{comment_count}");
    for (kind, package) in [("tar", &tar), ("zip", &zip)] {
        let summary = python_check(kind, package, &expected);
        assert_eq!(summary["records"], zoo.total_records(), "{kind}");
        assert_eq!(summary["attachments"], attachments, "{kind}");
        assert_eq!(summary["comments"], comment_count, "{kind}");
    }

    let (ok, listing, err) = run("tar", &["-tf", tar.to_str().unwrap()]);
    assert!(ok, "tar -tf: {err}");
    let names: Vec<&str> = listing.lines().collect();
    // manifest, schema, JSON and CSV per table, comments of the tables with some, one file
    // per attachment.
    assert_eq!(
        names.len(),
        2 + 2 * 5 + comments.len() + attachments,
        "{listing}"
    );
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with('/') && !n.contains(".."))
    );
    let (ok, out, err) = run("unzip", &["-t", zip.to_str().unwrap()]);
    assert!(
        ok && out.contains("No errors detected"),
        "unzip -t: {out}{err}"
    );

    // The same export again, in another process: the same bytes. Also through a pipe, and
    // with tables rendered twice instead of kept in memory (as large tables are).
    let tar_again = zoo.export_to("b.tar", &["--format", "tar"]);
    let zip_again = zoo.export_to("b.zip", &[]);
    let tar_streamed = zoo.export_with("c.tar", &[("AIRBACK_EXPORT_TEXT_BUFFER", "1000")]);
    let zip_streamed = zoo.export_with("c.zip", &[("AIRBACK_EXPORT_TEXT_BUFFER", "0")]);
    assert!(std::fs::read(&tar).unwrap() == std::fs::read(&tar_streamed).unwrap());
    assert!(std::fs::read(&zip).unwrap() == std::fs::read(&zip_streamed).unwrap());
    assert!(std::fs::read(&tar).unwrap() == std::fs::read(&tar_again).unwrap());
    assert!(std::fs::read(&zip).unwrap() == std::fs::read(&zip_again).unwrap());
    let (code, streamed, err) = zoo.export(&["latest", "--base", &zoo.base(), "-o", "-", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        streamed == std::fs::read(&tar).unwrap(),
        "-o - differs from -o FILE"
    );
    let summary: Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(summary["attachments"], attachments);
    assert_eq!(summary["format"], "tar");

    // A folder holds the same files with the same bytes.
    let dir = zoo.export_to("folder", &["--format", "dir"]);
    let mut in_tar = BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_str().unwrap().to_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        in_tar.insert(name, bytes);
    }
    let in_dir: Vec<String> = files_below(&dir)
        .iter()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(in_dir, in_tar.keys().cloned().collect::<Vec<_>>());
    for (name, bytes) in &in_tar {
        assert!(std::fs::read(dir.join(name)).unwrap() == *bytes, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_names_become_safe_and_the_json_keeps_the_originals() {
    let zoo = zoo(true).await;
    let dir = zoo.export_to("out", &["--format", "dir"]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let everything = &manifest["tables"][0];
    assert_eq!(everything["name"], "Everything 🦓");
    let doc: Value = serde_json::from_slice(
        &std::fs::read(dir.join(everything["json"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    // The record with the unsafe filenames.
    let files = doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["fields"]["Files"].as_array())
        .find(|files| files.iter().any(|f| f["filename"] == "../x"))
        .expect("the zoo's unsafe filenames");
    let mut by_original = BTreeMap::new();
    for f in files {
        let path = f["path"].as_str().unwrap();
        let name = path.rsplit('/').next().unwrap();
        assert!(dir.join(path).is_file(), "{path}");
        assert!(
            !name.starts_with('.') && !name.contains(['/', '\\', '\0', '\n', '\t', '\u{1}']),
            "{name:?}"
        );
        assert!(name.len() <= 255, "{} bytes", name.len());
        by_original.insert(f["filename"].as_str().unwrap().to_owned(), name.to_owned());
    }
    assert_eq!(by_original["CON"], "_CON");
    assert_eq!(by_original["/etc/passwd"], "_etc_passwd");
    assert_eq!(by_original["a\u{1}b\tc\nd.txt"], "a_b_c_d.txt");
    assert_eq!(by_original["nul\u{0}byte.bin"], "nul_byte.bin");
    assert_eq!(
        by_original["résumé 📄 \"final\".pdf"],
        "résumé 📄 _final_.pdf"
    );
    let long = &by_original[&format!("{}.txt", "long-".repeat(60))];
    assert!(long.len() == 255 && long.ends_with(".txt"), "{long}");
    let distinct: BTreeSet<String> = by_original.values().map(|n| n.to_lowercase()).collect();
    assert_eq!(distinct.len(), files.len(), "{by_original:?}");
    // Table names: `/` and `"` replaced in file names, kept in the manifest.
    assert_eq!(manifest["tables"][1]["name"], "Links / Refs \"quoted\"");
    assert_eq!(
        manifest["tables"][1]["csv"],
        "tables/Links _ Refs _quoted_.csv"
    );
    // Nothing at all outside the folder: every file is below it and safe.
    for file in files_below(&dir) {
        for part in file.iter() {
            let part = part.to_str().unwrap();
            assert!(
                part != ".." && !part.starts_with('.') && !part.ends_with([' ', '.']),
                "{part}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_export_answers_counts_joins_and_holds_the_bytes() {
    need("sqlite3");
    let zoo = zoo(true).await;
    let db = zoo.export_to("zoo.sqlite", &[]);
    let sql = |query: &str| -> String {
        let (ok, out, err) = run("sqlite3", &[db.to_str().unwrap(), query]);
        assert!(ok, "sqlite3 {query}: {err}");
        out.trim_end().to_owned()
    };
    let base = zoo.base();
    let schema = zoo.fake.schema_json(&base);

    // One table per Airtable table, with its record count.
    for table in schema["tables"].as_array().unwrap() {
        let id = table["id"].as_str().unwrap();
        let sql_table = sql(&format!(
            "SELECT sql_table FROM _airback_tables WHERE table_id = '{id}'"
        ));
        let count = sql(&format!(
            "SELECT count(*) FROM \"{}\"",
            sql_table.replace('"', "\"\"")
        ));
        assert_eq!(
            count,
            zoo.fake.record_count(&base, id).unwrap().to_string(),
            "{sql_table}"
        );
    }

    // A join through the link table of `Partner ⇄` gives the fake's links, in cell order.
    let everything = &schema["tables"][0];
    let partner = everything["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Partner ⇄")
        .unwrap();
    let partner_id = partner["id"].as_str().unwrap();
    let link_table = sql(&format!(
        "SELECT sql_table FROM _airback_links WHERE field_id = '{partner_id}'"
    ));
    assert_eq!(link_table, "Everything 🦓__Partner ⇄");
    let joined = sql(&format!(
        "SELECT e.id, r.\"Code\" FROM \"Everything 🦓\" e \
         JOIN \"{link_table}\" l ON l.record_id = e.id \
         JOIN \"Links / Refs \"\"quoted\"\"\" r ON r.id = l.linked_record_id \
         ORDER BY e.id, l.position"
    ));
    let (_, refs) = &zoo.records()[1];
    let code_field = schema["tables"][1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Code")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code_of = |rec: &str| {
        refs.iter().find(|r| r["id"] == rec).unwrap()["fields"][&code_field]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut everything_records = zoo.records()[0].1.clone();
    everything_records.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let mut expected = Vec::new();
    for record in &everything_records {
        for linked in record["fields"][partner_id]
            .as_array()
            .into_iter()
            .flatten()
        {
            expected.push(format!(
                "{}|{}",
                record["id"].as_str().unwrap(),
                code_of(linked.as_str().unwrap())
            ));
        }
    }
    assert!(expected.len() >= 4, "{expected:?}");
    assert_eq!(joined, expected.join("\n"));

    // Multi-valued cells are JSON; the schema and manifest are tables too.
    let multi = sql("SELECT \"Multiple selects\" FROM \"Everything 🦓\" \
         WHERE json_array_length(\"Multiple selects\") = 3");
    assert!(multi.contains("three, with comma"), "{multi}");
    assert_eq!(
        sql("SELECT value FROM _airback_manifest WHERE key = 'format'"),
        "airback-export"
    );
    let fields: usize = sql("SELECT count(*) FROM _airback_fields").parse().unwrap();
    let in_schema: usize = schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["fields"].as_array().unwrap().len())
        .sum();
    assert_eq!(fields, in_schema);

    // Every attachment's bytes, as a BLOB.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let ids = zoo.attachment_ids();
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM _airback_attachments", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored as usize, ids.len());
    for id in &ids {
        let content: Vec<u8> = conn
            .query_row(
                "SELECT content FROM _airback_attachments WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            Some(content) == zoo.fake.attachment_content(id),
            "attachment {id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_without_attachment_content_exports_metadata_and_names_what_is_missing() {
    let zoo = zoo(false).await;
    let path = zoo.path("meta.tar");
    let (code, _, err) = zoo.export(&[&zoo.snapshot, "-o", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("have no content in this snapshot"), "{err}");
    let mut archive = tar::Archive::new(std::fs::File::open(&path).unwrap());
    let mut manifest = None;
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_str().unwrap().to_owned();
        if name == "manifest.json" {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            manifest = Some(serde_json::from_slice::<Value>(&bytes).unwrap());
        }
        names.push(name);
    }
    assert!(
        names.iter().all(|n| !n.starts_with("attachments/")),
        "{names:?}"
    );
    let manifest = manifest.unwrap();
    let missing: BTreeSet<String> = manifest["attachments"]["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(missing, zoo.attachment_ids());
    assert_eq!(manifest["attachments"]["files"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear_and_leave_nothing_behind() {
    let zoo = zoo(true).await;
    let out = zoo.path("out");
    std::fs::create_dir(&out).unwrap();
    let target = out.join("x.tar");
    let target_arg = target.to_str().unwrap();

    // Wrong usage: exit code 2 and a message that says what to do.
    let (code, _, err) = zoo.export(&["latest", "-o", "-", "--format", "zip"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("only tar can be written to standard output"),
        "{err}"
    );
    let (code, _, err) = zoo.export(&["latest", "-o", out.join("x.rar").to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--format"), "{err}");
    let (code, _, err) = zoo.export(&["latest", "-o", target_arg, "--format", "7z"]);
    assert_eq!(code, 2, "{err}");

    // An existing file is replaced only with --force.
    std::fs::write(&target, b"precious").unwrap();
    let (code, _, err) = zoo.export(&["latest", "-o", target_arg]);
    assert_eq!(code, 1);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    let (code, _, err) = zoo.export(&["latest", "-o", target_arg, "--force"]);
    assert_eq!(code, 0, "{err}");
    assert_ne!(std::fs::read(&target).unwrap(), b"precious");

    // --force never replaces a folder that is not an export.
    let folder = zoo.path("notes");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("todo.txt"), b"keep").unwrap();
    let (code, _, err) = zoo.export(&[
        "latest",
        "--format",
        "dir",
        "-o",
        folder.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("holds no earlier airback export"), "{err}");
    assert!(folder.join("todo.txt").exists());

    // A damaged repository (a data pack gone): the export fails, names the problem, and
    // leaves no file behind.
    let packs = files_below(&zoo.path("repo/data"));
    let largest = packs
        .iter()
        .max_by_key(|p| {
            std::fs::metadata(zoo.path("repo/data").join(p))
                .unwrap()
                .len()
        })
        .unwrap();
    std::fs::remove_file(zoo.path("repo/data").join(largest)).unwrap();
    for (name, format) in [
        ("y.tar", "tar"),
        ("y.zip", "zip"),
        ("y.db", "sqlite"),
        ("y", "dir"),
    ] {
        let path = out.join(name);
        let (code, _, err) =
            zoo.export(&["latest", "--format", format, "-o", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{format}: {err}");
        assert!(err.contains("error:"), "{err}");
        assert!(
            !path.exists(),
            "{format}: a failed export left {}",
            path.display()
        );
    }
    let left: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        left,
        vec![target.clone()],
        "temporary files were left behind"
    );

    // On a stream, a failure leaves the archive without its end, so readers notice.
    let (code, streamed, _) = zoo.export(&["latest", "-o", "-"]);
    assert_eq!(code, 1);
    assert!(!streamed.is_empty());
    assert!(
        !streamed.ends_with(&[0u8; 1024]),
        "the stream has an end-of-archive marker"
    );
    let mut tar = Command::new("tar")
        .args(["-tf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    let _ = tar.stdin.take().unwrap().write_all(&streamed);
    assert!(
        !tar.wait().unwrap().success(),
        "tar took a truncated stream for complete"
    );
}

/// Issue 10, defect 4: `--force` onto a FIFO replaced it with a regular file, and its reader
/// got nothing. A FIFO takes the archive as a stream (tar and zip; without `--force`, as it
/// replaces nothing), stays a FIFO, and its reader gets the whole archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_gets_the_whole_archive_and_stays_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let zoo = zoo(true).await;
    let tar_file = std::fs::read(zoo.export_to("file.tar", &[])).unwrap();
    let zip_file = zoo.export_to("file.zip", &[]);
    for (name, extra) in [
        ("pipe.tar", vec!["--force"]),
        ("pipe", vec![]),
        ("zip-pipe", vec!["--format", "zip", "--force"]),
    ] {
        let fifo = zoo.path(name);
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success(), "mkfifo {}", fifo.display());
        // The reader: opening waits for the writer, reading ends when the writer closes.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader_path = fifo.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let read =
                std::fs::File::open(&reader_path).and_then(|mut f| f.read_to_end(&mut bytes));
            let _ = tx.send(read.map(|_| bytes));
        });
        let mut args = vec!["latest", "-o", fifo.to_str().unwrap()];
        args.extend(extra);
        let (code, out, err) = zoo.export(&args);
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "{name}: the FIFO was replaced by {kind:?}");
        assert_eq!(code, 0, "{name}: {}{err}", String::from_utf8_lossy(&out));
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the reader got the end of the stream")
            .unwrap();
        if name.contains("zip") {
            // A zip stream has data descriptors instead of sizes in its headers: the same
            // entries with the same bytes as the zip file, not the same archive bytes.
            let entries = |bytes: Vec<u8>| {
                let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
                (0..zip.len())
                    .map(|i| {
                        let mut entry = zip.by_index(i).unwrap();
                        let mut data = Vec::new();
                        entry.read_to_end(&mut data).unwrap();
                        (entry.name().unwrap().into_owned(), data)
                    })
                    .collect::<Vec<_>>()
            };
            let expected = entries(std::fs::read(&zip_file).unwrap());
            assert!(expected.len() > 20);
            assert!(entries(got) == expected, "{name}: the zip stream differs");
        } else {
            assert!(
                got == tar_file,
                "{name}: the reader got {} bytes",
                got.len()
            );
            let mut archive = tar::Archive::new(&got[..]);
            assert!(archive.entries().unwrap().count() > 20);
        }
    }

    // A folder or a database cannot be a stream: refused (usage), the FIFO left alone and
    // never opened (its reader would wait forever).
    let fifo = zoo.path("pipe");
    for format in ["dir", "sqlite"] {
        let args = [
            "latest",
            "--format",
            format,
            "-o",
            fifo.to_str().unwrap(),
            "--force",
        ];
        let (code, _, err) = zoo.export(&args);
        assert_eq!(code, 2, "{format}: {err}");
        assert!(
            err.contains("FIFO") && err.contains("--format tar"),
            "{err}"
        );
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }
}

/// Makes a character device like `/dev/null` (1:3) at `path`, if this process may (root, and
/// a file system that allows device nodes); else says why not.
fn scratch_null_device(path: &Path) -> Result<(), String> {
    let out = Command::new("mknod")
        .arg(path)
        .args(["c", "1", "3"])
        .output()
        .map_err(|e| format!("mknod cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mknod failed (not root?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(b"x"))
        .map_err(|e| format!("the file system does not allow device nodes: {e}"))
}

/// Issue 10, defect 4: as root, `export -o /dev/null --force` replaced `/dev/null` with a
/// regular file. A character device takes the archive as a stream and stays a device; the
/// test uses a scratch device node, not the machine's `/dev/null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_character_device_is_written_to_and_never_replaced() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let zoo = zoo(true).await;
    let null = zoo.path("null");
    if let Err(why) = scratch_null_device(&null) {
        eprintln!("skipped: no scratch character device: {why}");
        return;
    }
    let rdev = std::fs::metadata(&null).unwrap().rdev();
    let still_a_device = || {
        let meta = std::fs::symlink_metadata(&null).unwrap();
        meta.file_type().is_char_device() && meta.rdev() == rdev
    };
    // Through a symbolic link too, as `/dev/stdout` is one.
    let link = zoo.path("link.tar");
    std::os::unix::fs::symlink(&null, &link).unwrap();
    for (path, extra) in [
        (&null, vec!["--format", "tar", "--force"]),
        // Without --format (a stream is a tar, as for `-o -`) and without --force (nothing
        // is replaced).
        (&null, vec![]),
        (&null, vec!["--format", "zip", "--force"]),
        (&link, vec!["--force"]),
    ] {
        let mut args = vec!["latest", "-o", path.to_str().unwrap()];
        args.extend(extra.iter().copied());
        let (code, _, err) = zoo.export(&args);
        assert!(still_a_device(), "{args:?} replaced the device");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{args:?} replaced the link"
        );
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    for format in ["dir", "sqlite"] {
        let args = [
            "latest",
            "--format",
            format,
            "-o",
            null.to_str().unwrap(),
            "--force",
        ];
        let (code, _, err) = zoo.export(&args);
        assert_eq!(code, 2, "{format}: {err}");
        assert!(err.contains("character device"), "{err}");
        assert!(still_a_device());
    }
    // Nothing was left next to it.
    let mut names: Vec<String> = std::fs::read_dir(zoo.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["cache", "link.tar", "null", "repo"]);
}

/// `--force` through a symbolic link replaces the file it points to, not the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_through_a_symbolic_link_replaces_its_file_not_the_link() {
    let zoo = zoo(true).await;
    let real = zoo.path("real.tar");
    std::fs::write(&real, b"old").unwrap();
    let link = zoo.path("link.tar");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (code, _, err) = zoo.export(&["latest", "-o", link.to_str().unwrap(), "--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), real);
    let mut archive = tar::Archive::new(std::fs::File::open(&real).unwrap());
    assert!(archive.entries().unwrap().count() > 20);
}

/// Issue 10, defect 4: `--force` into a folder holding an earlier export deleted the files
/// the user had added there. Only what the earlier export wrote (as its manifest and tables
/// say) is replaced or removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_into_an_earlier_export_replaces_only_what_it_wrote() {
    let zoo = zoo(true).await;
    let fresh = zoo.export_to("fresh", &["--format", "dir"]);
    let out = zoo.export_to("out", &["--format", "dir"]);
    let exported = files_below(&out);
    assert_eq!(exported, files_below(&fresh));
    let first_table = exported
        .iter()
        .find(|p| p.starts_with("attachments"))
        .and_then(|p| p.iter().nth(1))
        .unwrap()
        .to_owned();

    // The user's files: beside the export, in its folders, in a folder of their own.
    let table_folder = Path::new("attachments").join(&first_table);
    let mine = [
        PathBuf::from("notes.txt"),
        PathBuf::from("tables/my-query.csv"),
        table_folder.join("my-scans/scan.pdf"),
    ];
    for path in &mine {
        std::fs::create_dir_all(out.join(path).parent().unwrap()).unwrap();
        std::fs::write(out.join(path), format!("mine: {}", path.display())).unwrap();
    }
    // The earlier export's files: one changed, and a table (with an attachment) that the
    // new export does not have.
    std::fs::write(out.join("schema.json"), b"old").unwrap();
    let manifest_path = out.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["tables"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": "tblGone", "name": "Gone", "json": "tables/Gone.json", "csv": "tables/Gone.csv",
            "attachments": "attachments/Gone",
        }));
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let gone_json = "{\"table\":{\"id\":\"tblGone\",\"name\":\"Gone\"},\n\"fields\":[],\n\
         \"records\":[\n{\"id\":\"recGone\",\"createdTime\":\"2026-01-01T00:00:00.000Z\",\
         \"fields\":{\"Files\":[{\"filename\":\"old.bin\",\"id\":\"attGone\",\
         \"path\":\"attachments/Gone/recGone/old.bin\",\"size\":3}]}}\n]}\n";
    std::fs::write(out.join("tables/Gone.json"), gone_json).unwrap();
    std::fs::write(out.join("tables/Gone.csv"), b"id\r\n").unwrap();
    std::fs::create_dir_all(out.join("attachments/Gone/recGone")).unwrap();
    std::fs::write(out.join("attachments/Gone/recGone/old.bin"), b"old").unwrap();

    let (code, _, err) = zoo.export(&[
        "latest",
        "--format",
        "dir",
        "-o",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(code, 0, "{err}");
    for path in &mine {
        assert_eq!(
            std::fs::read_to_string(out.join(path)).ok(),
            Some(format!("mine: {}", path.display())),
            "the user's {} was not kept",
            path.display()
        );
    }
    // Everything else is the new export, file for file, byte for byte.
    let mut expected = exported.clone();
    expected.extend(mine.iter().cloned());
    expected.sort();
    assert_eq!(files_below(&out), expected);
    for path in &exported {
        assert!(
            std::fs::read(out.join(path)).unwrap() == std::fs::read(fresh.join(path)).unwrap(),
            "{} was not replaced",
            path.display()
        );
    }
    assert!(
        !out.join("attachments/Gone").exists(),
        "an emptied folder was left"
    );
    // No temporary folder left, inside or beside it.
    let hidden = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
    };
    assert_eq!(hidden(&out) + hidden(zoo.dir.path()), 0);
}
