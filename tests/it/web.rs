//! The web page of `airback serve` in a real browser: Debian's chromium driven by Playwright
//! (`tests/web/flow.mjs`) against `serve` on the fake's demo base. Two snapshots differ by a
//! changed and a deleted record; the browser sees the base, opens a snapshot, a table, a
//! search and a record's history, compares the two snapshots, takes a snapshot now and sees
//! it appear, and restores the deleted record in place through the confirmation. This test
//! then finds the record back in the fake with its cells. Screenshots of each page are kept
//! in `<target>/tmp/web-screenshots/` (`.ci/run` prints where).
//!
//! Needs `node`, `chromium` and the `playwright-core` npm package, which `.ci/run` installs
//! (the package into `~/.cache/airback-web-test`); `AIRBACK_CHROMIUM` and
//! `AIRBACK_PLAYWRIGHT` (the package's folder) point elsewhere.

use std::path::{Path, PathBuf};

use airback::{BackupOptions, NoProgress, backup_base};
use airback_fake::{FakeOptions, Preset};
use serde_json::{Map, Value, json};

use crate::serve::Served;
use crate::support::{FakeSetup, WRITABLE};

/// What the browser test runs with.
struct Tools {
    node: PathBuf,
    chromium: PathBuf,
    playwright: PathBuf,
}

fn in_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// The tools, or a panic saying how to get them.
fn tools() -> Tools {
    let how = "the browser test needs node, Debian's chromium and the playwright-core npm \
               package: run `bash .ci/run` once (it installs them), or set AIRBACK_CHROMIUM \
               and AIRBACK_PLAYWRIGHT (the playwright-core folder)";
    let node = in_path(&["node"]).unwrap_or_else(|| panic!("no `node` in PATH; {how}"));
    let chromium = std::env::var_os("AIRBACK_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| in_path(&["chromium", "chromium-browser"]))
        .unwrap_or_else(|| panic!("no chromium found; {how}"));
    let playwright = std::env::var_os("AIRBACK_PLAYWRIGHT")
        .map(PathBuf::from)
        .or_else(|| {
            dirs::home_dir().map(|h| h.join(".cache/airback-web-test/node_modules/playwright-core"))
        })
        .filter(|p| p.join("index.mjs").is_file())
        .unwrap_or_else(|| panic!("playwright-core is not installed; {how}"));
    Tools {
        node,
        chromium,
        playwright,
    }
}

/// The record of `table` with `field` = `value` in the fake.
fn find(setup: &FakeSetup, table: &str, field: &str, value: &str) -> Vec<Value> {
    setup
        .fake
        .records_json(&setup.base, table)
        .into_iter()
        .filter(|r| r["fields"][field] == value)
        .collect()
}

/// The record's writable cells and links; attachments by filename and size.
fn writable_cells(record: &Value, types: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (field, value) in record["fields"].as_object().unwrap() {
        let kind = types.get(field).and_then(Value::as_str).unwrap_or("");
        if WRITABLE.contains(&kind) || kind == "multipleRecordLinks" {
            out.insert(field.clone(), value.clone());
        } else if kind == "multipleAttachments" {
            let files: Vec<Value> = value
                .as_array()
                .unwrap()
                .iter()
                .map(|a| json!([a["filename"], a["size"]]))
                .collect();
            out.insert(field.clone(), Value::Array(files));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_browses_compares_snapshots_and_restores_a_deleted_record() {
    let tools = tools();
    let setup = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let base = setup.base.clone();
    let schema = setup.fake.schema_json(&base);
    let tasks = schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Tasks")
        .expect("the demo base has a Tasks table")
        .clone();
    let table = tasks["id"].as_str().unwrap().to_owned();
    let title = tasks["primaryFieldId"].as_str().unwrap().to_owned();
    let types: Map<String, Value> = tasks["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_owned(), f["type"].clone()))
        .collect();

    // The first snapshot, then a record deleted and another renamed, then the second.
    let options = BackupOptions::new(&base);
    let progress = std::sync::Arc::new(NoProgress);
    backup_base(&setup.repo, &setup.client, &options, progress.clone())
        .await
        .unwrap();
    let records = setup.fake.records_json(&base, &table);
    assert!(records.len() > 3, "the demo's Tasks table is too small");
    let deleted = records[0].clone();
    let deleted_id = deleted["id"].as_str().unwrap().to_owned();
    let deleted_title = deleted["fields"][&title].as_str().unwrap().to_owned();
    let changed_id = records[1]["id"].as_str().unwrap().to_owned();
    let changed_title = format!(
        "{} (renamed)",
        records[1]["fields"][&title].as_str().unwrap()
    );
    let answer = reqwest::Client::new()
        .delete(format!(
            "{}/v0/{base}/{table}/{deleted_id}",
            setup.fake.url()
        ))
        .bearer_auth(setup.fake.token())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    let mut cells = Map::new();
    cells.insert(title.clone(), json!(changed_title));
    setup
        .fake
        .update_record_fields(&base, &table, &changed_id, cells)
        .unwrap();
    backup_base(&setup.repo, &setup.client, &options, progress)
        .await
        .unwrap();
    let count_before = setup.fake.record_count(&base, &table).unwrap();

    let config = format!("bases:\n  - id: {base}\n    schedule: \"15 3 * * *\"\n");
    let served = Served::start(&setup, &config, &[]).await;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web/flow.mjs");
    let out = tokio::process::Command::new(&tools.node)
        .arg(&flow)
        .env("AIRBACK_URL", &served.url)
        .env("BASE", &base)
        .env("DELETED", &deleted_id)
        .env("CHANGED", &changed_id)
        .env("CHANGED_TITLE", &changed_title)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &tools.chromium)
        .env("PLAYWRIGHT", &tools.playwright)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the browser flow failed (screenshots in {}):\n{stdout}\n{stderr}",
        shots.display()
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(result["snapshots"], 3, "{result}");

    // The deleted record is back in the fake, once, with its cells (under a new id: the API
    // cannot choose ids); the table has one record more.
    let back = find(&setup, &table, &title, &deleted_title);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_ne!(back[0]["id"], deleted["id"]);
    assert_eq!(
        writable_cells(&back[0], &types),
        writable_cells(&deleted, &types)
    );
    assert_eq!(
        setup.fake.record_count(&base, &table),
        Some(count_before + 1)
    );
    // The renamed record was not touched.
    assert_eq!(find(&setup, &table, &title, &changed_title).len(), 1);

    // A screenshot of every page, each a real image.
    let mut names: Vec<String> = std::fs::read_dir(&shots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 12, "{names:?}");
    for name in &names {
        let bytes = std::fs::read(shots.join(name)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
            "{name}"
        );
    }
    eprintln!("screenshots of the web page: {}", shots.display());

    let (code, stderr) = served.terminate().await;
    assert_eq!(code, 0, "{stderr}");
}

/// The page's API without a browser: the page's files without the access token and with a
/// strict Content Security Policy, everything else behind it; records paged (every record
/// once over the pages) and searched; both downloads real packages with no temporary file
/// left behind; the restore endpoints behind the CSRF token, refusing bad requests, and a
/// plan of nothing for an unchanged record; no answer holds the Airtable token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_api_pages_searches_downloads_and_guards() {
    use crate::serve::{json, send};

    let setup = FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    let base = setup.base.clone();
    let summary = backup_base(
        &setup.repo,
        &setup.client,
        &BackupOptions::new(&base),
        std::sync::Arc::new(NoProgress),
    )
    .await
    .unwrap();
    let token_file = setup.dir.path().join("serve-token");
    std::fs::write(&token_file, "s3cret-access-token\n").unwrap();
    let config = format!("bases:\n  - id: {base}\n");
    let served = Served::start(
        &setup,
        &config,
        &["--auth-token-file", token_file.to_str().unwrap()],
    )
    .await;
    let mut seen = Vec::new();
    let bearer = "Bearer s3cret-access-token";

    // The page's files need no token and hold no data; the data does.
    for (path, kind) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
    ] {
        let answer = served.get(path).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        let headers = answer.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"));
        seen.push(answer.text().await.unwrap());
    }
    let short = summary.snapshot_id.short();
    for path in [
        format!("/api/bases/{base}/snapshots"),
        format!("/api/snapshots/{short}"),
        format!("/api/snapshots/{short}/export?format=zip"),
        "/app.js/../api/jobs".to_owned(),
    ] {
        let (status, body) = send(served.get(&path), &mut seen).await;
        assert_eq!(status, 401, "{path}: {body}");
    }

    // Another site's page cannot make the service work, even with the token (an image or a
    // no-cors fetch would carry a session cookie's twin: the browser's own headers).
    for (name, value) in [
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Site", "same-site"),
        ("Origin", "http://evil.example"),
        ("Origin", "null"),
    ] {
        let (status, body) = send(
            served
                .get(&format!("/api/snapshots/{short}/export?format=zip"))
                .header("Authorization", bearer)
                .header(name, value),
            &mut seen,
        )
        .await;
        assert_eq!(status, 403, "{name}: {value}: {body}");
        assert!(body.contains("another site"), "{body}");
    }
    let answer = served
        .get("/")
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the page itself may be linked to");
    let own_origin = served.url.clone();
    let (status, body) = send(
        served
            .get(&format!("/api/bases/{base}/snapshots"))
            .header("Authorization", bearer)
            .header("Origin", &own_origin)
            .header("Sec-Fetch-Site", "same-origin"),
        &mut seen,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The snapshot and its tables, by a short id.
    let (status, body) = send(
        served
            .get(&format!("/api/bases/{base}/snapshots"))
            .header("Authorization", bearer),
        &mut seen,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let list = json(&body);
    assert_eq!(list["snapshots"][0]["id"], summary.snapshot_id.to_string());
    let (status, body) = send(
        served
            .get(&format!("/api/snapshots/{short}"))
            .header("Authorization", bearer),
        &mut seen,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let snapshot = json(&body);
    let tasks = snapshot["table_list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Tasks")
        .unwrap()
        .clone();
    let table = tasks["id"].as_str().unwrap().to_owned();
    let in_fake: Vec<Value> = setup.fake.records_json(&base, &table);
    assert_eq!(tasks["records"].as_u64(), Some(in_fake.len() as u64));

    // Every record once over pages of 7.
    let mut ids = Vec::new();
    let mut offset = 0;
    loop {
        let (status, body) = send(
            served
                .get(&format!(
                    "/api/snapshots/{short}/tables/{table}/records?offset={offset}&limit=7"
                ))
                .header("Authorization", bearer),
            &mut seen,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let page = json(&body);
        assert_eq!(page["matched"].as_u64(), Some(in_fake.len() as u64));
        let records = page["records"].as_array().unwrap();
        assert!(records.len() <= 7);
        if records.is_empty() {
            break;
        }
        ids.extend(records.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        offset += records.len();
    }
    let mut expected: Vec<String> = in_fake
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    let mut got = ids.clone();
    got.sort();
    assert_eq!(got, expected);

    // Link cells come with the linked records' names (their primary field in the snapshot).
    let (status, body) = send(
        served
            .get(&format!("/api/snapshots/{short}/tables/{table}/records"))
            .header("Authorization", bearer),
        &mut seen,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let page = json(&body);
    let schema = setup.fake.schema_json(&base);
    let mut names = Map::new();
    for t in schema["tables"].as_array().unwrap() {
        let primary = t["primaryFieldId"].as_str().unwrap();
        for r in setup.fake.records_json(&base, t["id"].as_str().unwrap()) {
            names.insert(
                r["id"].as_str().unwrap().to_owned(),
                r["fields"][primary].clone(),
            );
        }
    }
    let link_fields: Vec<String> = tasks["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] == "multipleRecordLinks")
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    let mut linked = 0;
    for record in page["records"].as_array().unwrap() {
        for field in &link_fields {
            for id in record["fields"][field].as_array().into_iter().flatten() {
                let id = id.as_str().unwrap();
                assert_eq!(page["links"][id], names[id], "{id}");
                linked += 1;
            }
        }
    }
    assert!(linked > 0, "the demo's Tasks link to Projects");

    // A search: a word of one record's title, in other case; every match holds it.
    let primary = tasks["primary_field"].as_str().unwrap();
    let title = in_fake[3]["fields"][primary].as_str().unwrap();
    let word = title.split(' ').next().unwrap().to_uppercase();
    let (status, body) = send(
        served
            .get(&format!(
                "/api/snapshots/{short}/tables/Tasks/records?q={word}"
            ))
            .header("Authorization", bearer),
        &mut seen,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let found = json(&body);
    let matching = in_fake
        .iter()
        .filter(|r| r.to_string().to_uppercase().contains(&word))
        .count();
    assert!(found["matched"].as_u64().unwrap() >= 1);
    assert!(found["matched"].as_u64().unwrap() as usize <= matching);
    assert!(
        found["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.to_string().to_uppercase().contains(&word)),
        "{found}"
    );
    assert!(
        found["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == in_fake[3]["id"])
    );

    // Both downloads are real packages; no temporary file stays behind.
    for (format, magic) in [
        ("zip", b"PK\x03\x04".as_slice()),
        ("sqlite", b"SQLite format 3\0".as_slice()),
    ] {
        let answer = served
            .get(&format!("/api/snapshots/{short}/export?format={format}"))
            .header("Authorization", bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{format}");
        let disposition = answer.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            disposition.starts_with("attachment; filename=\"")
                && disposition.ends_with(&format!("{short}.{format}\"")),
            "{disposition}"
        );
        let bytes = answer.bytes().await.unwrap();
        assert!(bytes.starts_with(magic), "{format}");
        let file = setup.dir.path().join(format!("download.{format}"));
        std::fs::write(&file, &bytes).unwrap();
        let listed = if format == "zip" {
            std::process::Command::new("unzip")
                .arg("-l")
                .arg(&file)
                .output()
                .unwrap()
        } else {
            std::process::Command::new("sqlite3")
                .arg(&file)
                .arg("SELECT name FROM sqlite_master WHERE type = 'table';")
                .output()
                .unwrap()
        };
        let text = String::from_utf8_lossy(&listed.stdout);
        assert!(listed.status.success() && text.contains("Tasks"), "{text}");
    }
    let exports = setup.dir.path().join("state/exports");
    let left: Vec<_> = std::fs::read_dir(&exports).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let (status, body) = send(
        served
            .get(&format!("/api/snapshots/{short}/export?format=rar"))
            .header("Authorization", bearer),
        &mut seen,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`zip` or `sqlite`"), "{body}");

    // Restores: the CSRF token first; bad requests say what to send; an unchanged record
    // plans nothing.
    let plan_path = format!("/api/snapshots/{short}/restore/plan");
    let record = in_fake[2]["id"].as_str().unwrap();
    let (status, body) = send(
        served
            .post(&plan_path)
            .header("Authorization", bearer)
            .json(&json!({"record": record})),
        &mut seen,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = send(
        served
            .post(&format!("/api/snapshots/{short}/restore"))
            .header("Authorization", bearer)
            .json(&json!({"record": record})),
        &mut seen,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let token = {
        let (status, body) = send(
            served.get("/api/session").header("Authorization", bearer),
            &mut seen,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        json(&body)["csrf_token"].as_str().unwrap().to_owned()
    };
    for (request, expected) in [
        (json!({}), "say what to restore"),
        (json!({"record": "tbl123"}), "is not a record id"),
    ] {
        let (status, body) = send(
            served
                .post(&plan_path)
                .header("Authorization", bearer)
                .header("X-CSRF-Token", &token)
                .json(&request),
            &mut seen,
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(expected), "{body}");
    }
    let (status, body) = send(
        served
            .post(&plan_path)
            .header("Authorization", bearer)
            .header("X-CSRF-Token", &token)
            .json(&json!({"record": record, "table": table})),
        &mut seen,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let plan = json(&body);
    assert_eq!(plan["plan"]["dry_run"], true, "{plan}");
    assert_eq!(
        plan["plan"]["changes"]["summary"],
        json!({"added": 0, "removed": 0, "changed": 0}),
        "{plan}"
    );
    assert_eq!(plan["plan"]["write_requests"], 0, "{plan}");
    assert_eq!(plan["created"], json!([]));

    let secret = setup.fake.token();
    for answer in &seen {
        assert!(
            !answer.contains(&secret),
            "an answer holds the Airtable token"
        );
        assert!(!answer.contains(crate::support::TEST_PASSWORD));
    }
    let (code, stderr) = served.terminate().await;
    assert_eq!(code, 0, "{stderr}");
}
