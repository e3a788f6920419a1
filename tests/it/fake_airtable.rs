//! The fake Airtable pinned against the real API's strict behaviours, with raw `reqwest`.
//!
//! Each test would fail against a lax fake: it checks the status *and* the error type, and
//! where a write must not happen it checks the state afterwards. Timing-sensitive tests use
//! short penalties and TTLs so the module stays fast.

use std::time::{Duration, Instant};

use airback_fake::{
    FakeAirtable, FakeOptions, Faults, Preset, Route, UPLOAD_LIMIT_BYTES, is_airtable_id,
};
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

struct Api {
    fake: FakeAirtable,
    http: reqwest::Client,
}

impl Api {
    async fn start(options: FakeOptions) -> Api {
        let fake = FakeAirtable::start(options).await.expect("fake starts");
        Api {
            fake,
            http: reqwest::Client::new(),
        }
    }

    async fn unlimited(preset: Preset) -> Api {
        Api::start(FakeOptions::unlimited(preset)).await
    }

    fn base(&self) -> String {
        self.fake.bases()[0].id.clone()
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.fake.url()))
            .bearer_auth(self.fake.token());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request is answered");
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    fn schema(&self, base: &str) -> Value {
        self.fake.schema_json(base)
    }

    /// (table id, field ids by name) for a table named `table`.
    fn table(&self, base: &str, table: &str) -> (String, Map<String, Value>) {
        let schema = self.schema(base);
        let table = schema["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|candidate| candidate["name"] == table)
            .unwrap_or_else(|| panic!("no table {table}"))
            .clone();
        let fields = table["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|field| {
                (
                    field["name"].as_str().unwrap().to_owned(),
                    field["id"].clone(),
                )
            })
            .collect();
        (table["id"].as_str().unwrap().to_owned(), fields)
    }

    /// Every record of a table through the API, following offsets.
    async fn list_all(&self, base: &str, table: &str, extra: &str) -> Vec<Value> {
        let mut records = Vec::new();
        let mut offset: Option<String> = None;
        loop {
            let mut path = format!("/v0/{base}/{table}?returnFieldsByFieldId=true{extra}");
            if let Some(offset) = &offset {
                path.push_str(&format!("&offset={offset}"));
            }
            let (status, page) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            records.extend(page["records"].as_array().unwrap().iter().cloned());
            match page["offset"].as_str() {
                Some(next) => offset = Some(next.to_owned()),
                None => return records,
            }
        }
    }
}

fn error_type(body: &Value) -> String {
    match &body["error"] {
        Value::String(bare) => bare.clone(),
        object => object["type"].as_str().unwrap_or_default().to_owned(),
    }
}

fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|record| record["id"].as_str().unwrap().to_owned())
        .collect()
}

fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> &'a str {
    fields[name]
        .as_str()
        .unwrap_or_else(|| panic!("no field {name}"))
}

/// Replaces every attachment URL (they embed the port and the expiry) with a placeholder.
fn without_urls(value: &Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(key, value)| {
                    let value = if key == "url" {
                        json!("<url>")
                    } else {
                        without_urls(value)
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_urls).collect()),
        other => other.clone(),
    }
}

#[tokio::test]
async fn ids_are_17_characters_with_real_prefixes() {
    let api = Api::unlimited(Preset::Zoo).await;
    let base = api.base();
    assert!(is_airtable_id(&base, "app"));
    assert!(is_airtable_id(&api.fake.workspace_id(), "wsp"));
    let token = api.fake.token();
    let (token_id, secret) = token.split_once('.').unwrap();
    assert!(token_id.starts_with("pat") && token_id.len() == 17 && secret.len() == 64);
    let schema = api.schema(&base);
    let mut checked_attachments = 0;
    for table in schema["tables"].as_array().unwrap() {
        assert!(is_airtable_id(table["id"].as_str().unwrap(), "tbl"));
        for view in table["views"].as_array().unwrap() {
            assert!(is_airtable_id(view["id"].as_str().unwrap(), "viw"));
        }
        for field in table["fields"].as_array().unwrap() {
            assert!(is_airtable_id(field["id"].as_str().unwrap(), "fld"));
            for choice in field["options"]["choices"].as_array().into_iter().flatten() {
                assert!(
                    is_airtable_id(choice["id"].as_str().unwrap(), "sel"),
                    "{choice}"
                );
            }
        }
        for record in api.list_all(&base, table["id"].as_str().unwrap(), "").await {
            assert!(is_airtable_id(record["id"].as_str().unwrap(), "rec"));
            for value in record["fields"].as_object().unwrap().values() {
                for item in value.as_array().into_iter().flatten() {
                    if let Some(id) = item.get("id").and_then(Value::as_str) {
                        let prefix = &id[..3];
                        assert!(["att", "usr"].contains(&prefix), "{item}");
                        assert!(is_airtable_id(id, prefix));
                        checked_attachments += usize::from(prefix == "att");
                    }
                }
            }
        }
    }
    assert!(checked_attachments > 10);
}

#[tokio::test]
async fn missing_or_wrong_tokens_are_401() {
    let api = Api::unlimited(Preset::Demo).await;
    let url = format!("{}/v0/meta/bases", api.fake.url());
    let response = api.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        error_type(&response.json().await.unwrap()),
        "AUTHENTICATION_REQUIRED"
    );
    let response = api
        .http
        .get(&url)
        .bearer_auth("patXXXXXXXXXXXXXX.nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.fake.counters().unauthorized, 2);
}

#[tokio::test]
async fn unknown_bases_tables_records_and_routes_answer_like_airtable() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (status, body) = api.get("/v0/appAAAAAAAAAAAAAA/Projects").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_type(&body), "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND");
    let (status, body) = api.get("/v0/meta/bases/appAAAAAAAAAAAAAA/tables").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"error": {"type": "NOT_FOUND"}}));
    let (status, body) = api.get(&format!("/v0/{base}/No%20such%20table")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_type(&body), "MODEL_ID_NOT_FOUND");
    let (status, body) = api
        .get(&format!("/v0/{base}/Projects/recAAAAAAAAAAAAAA"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["message"], "Record not found");
    let (status, body) = api.get("/v0/meta/nothing/here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"error": "NOT_FOUND"}));
    let (status, _) = api.get(&format!("/v0/{base}/Projects?pagesize=10")).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown query parameters are rejected"
    );
}

#[tokio::test]
async fn restricted_tokens_are_403_and_see_only_their_bases() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let other = api.fake.add_empty_base("Other");
    let reader = api.fake.add_token(
        &["data.records:read", "schema.bases:read"],
        Some(&[base.as_str()]),
    );
    let call = |method: Method, path: String, body: Option<Value>| {
        let mut request = api
            .http
            .request(method, format!("{}{path}", api.fake.url()))
            .bearer_auth(&reader);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, _) = call(Method::GET, format!("/v0/{base}/Projects"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(
        Method::POST,
        format!("/v0/{base}/Projects"),
        Some(json!({"records": [{"fields": {}}]})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no write scope");
    assert_eq!(error_type(&body), "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND");
    let (status, _) = call(Method::GET, format!("/v0/{}/Table%201", other.id), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "base not granted");
    let (_, bases) = call(Method::GET, "/v0/meta/bases".to_owned(), None).await;
    assert_eq!(bases["bases"].as_array().unwrap().len(), 1);
    assert_eq!(bases["bases"][0]["permissionLevel"], "create");
}

#[tokio::test]
async fn page_size_over_100_is_422_and_pages_cover_every_record_once() {
    let mut options = FakeOptions::unlimited(Preset::Large);
    options.large = "tables=1,records=250,attachments=5".parse().unwrap();
    let api = Api::start(options).await;
    let base = api.base();
    let (table, _) = api.table(&base, "Table 1");
    let (status, body) = api.get(&format!("/v0/{base}/{table}?pageSize=101")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_type(&body), "INVALID_REQUEST_UNKNOWN");
    let (status, _) = api
        .post(
            &format!("/v0/{base}/{table}/listRecords"),
            json!({"pageSize": 101}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, page) = api.get(&format!("/v0/{base}/{table}?pageSize=100")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["records"].as_array().unwrap().len(), 100);
    let offset = page["offset"].as_str().unwrap();
    let (iterator, next) = offset.split_once('/').unwrap();
    assert!(
        is_airtable_id(iterator, "itr") && is_airtable_id(next, "rec"),
        "{offset}"
    );

    let records = api.list_all(&base, &table, "&pageSize=100").await;
    let mut unique = ids(&records);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 250);
    assert_eq!(api.fake.record_count(&base, &table), Some(250));
    let default_pages = api.list_all(&base, &table, "").await;
    assert_eq!(default_pages.len(), 250, "pageSize defaults to 100");
}

/// An offset names a position in a live iterator (`itr…/rec…`): replaying it (a client retrying
/// after a dropped connection) returns the same page; an offset the iterator never handed out,
/// or any offset after the iterators expired, is `LIST_RECORDS_ITERATOR_NOT_AVAILABLE`.
#[tokio::test]
async fn offsets_can_be_replayed_while_their_iterator_lives() {
    let mut options = FakeOptions::unlimited(Preset::Large);
    options.large = "tables=1,records=250,attachments=5".parse().unwrap();
    let api = Api::start(options).await;
    let base = api.base();
    let (table, _) = api.table(&base, "Table 1");
    let (_, first) = api.get(&format!("/v0/{base}/{table}")).await;
    let offset = first["offset"].as_str().unwrap().to_owned();
    let (status, second) = api
        .get(&format!("/v0/{base}/{table}?offset={offset}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, replayed) = api
        .get(&format!("/v0/{base}/{table}?offset={offset}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ids(second["records"].as_array().unwrap()),
        ids(replayed["records"].as_array().unwrap())
    );
    assert_eq!(second["offset"], replayed["offset"]);

    let (iterator, _) = offset.split_once('/').unwrap();
    let first_id = first["records"][0]["id"].as_str().unwrap();
    let (status, body) = api
        .get(&format!("/v0/{base}/{table}?offset={iterator}/{first_id}"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_type(&body), "LIST_RECORDS_ITERATOR_NOT_AVAILABLE");

    api.fake.expire_iterators();
    let (status, body) = api
        .get(&format!("/v0/{base}/{table}?offset={offset}"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_type(&body), "LIST_RECORDS_ITERATOR_NOT_AVAILABLE");
}

#[tokio::test]
async fn order_is_shuffled_without_view_or_sort() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (tasks, fields) = api.table(&base, "Tasks");
    let creation_order = ids(&api.fake.records_json(&base, &tasks));
    let listed = ids(&api.list_all(&base, &tasks, "").await);
    assert_eq!(listed.len(), creation_order.len());
    assert_ne!(
        listed, creation_order,
        "no view and no sort: arbitrary order"
    );
    let in_view = ids(&api.list_all(&base, &tasks, "&view=Grid%20view").await);
    assert_eq!(in_view, creation_order, "a view lists in its own order");
    let sorted = api
        .list_all(
            &base,
            &tasks,
            "&sort%5B0%5D%5Bfield%5D=Title&sort%5B0%5D%5Bdirection%5D=desc",
        )
        .await;
    let title = field(&fields, "Title");
    let titles: Vec<String> = sorted
        .iter()
        .map(|record| record["fields"][title].as_str().unwrap().to_lowercase())
        .collect();
    let mut expected = titles.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(titles, expected);
}

#[tokio::test]
async fn empty_cells_are_omitted_from_fields() {
    let api = Api::unlimited(Preset::Zoo).await;
    let base = api.base();
    let (blank, fields) = api.table(&base, "Blank ⬜");
    let records = api.list_all(&base, &blank, "").await;
    let empty = records
        .iter()
        .filter(|record| record["fields"] == json!({}))
        .count();
    assert_eq!(empty, 3, "records without values read as fields: {{}}");
    let filled: Vec<&Value> = records
        .iter()
        .filter(|record| record["fields"] != json!({}))
        .collect();
    assert_eq!(filled.len(), 1);
    let id = filled[0]["id"].as_str().unwrap();
    let (status, written) = api
        .patch(
            &format!("/v0/{base}/{blank}/{id}"),
            json!({"fields": {"Name": "", "Notes": "x", "Tags": []}, "returnFieldsByFieldId": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!(written["fields"], json!({field(&fields, "Notes"): "x"}));
}

#[tokio::test]
async fn fields_by_id_and_fields_filter() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (projects, fields) = api.table(&base, "Projects");
    let (_, page) = api
        .get(&format!(
            "/v0/{base}/{projects}?fields%5B%5D=Name&fields%5B%5D=Budget"
        ))
        .await;
    for record in page["records"].as_array().unwrap() {
        let keys: Vec<&String> = record["fields"].as_object().unwrap().keys().collect();
        assert!(
            keys.iter().all(|key| *key == "Name" || *key == "Budget"),
            "{keys:?}"
        );
    }
    let (_, page) = api
        .get(&format!("/v0/{base}/{projects}?returnFieldsByFieldId=1"))
        .await;
    let name = field(&fields, "Name");
    assert!(page["records"][0]["fields"][name].is_string());
    let (status, body) = api
        .get(&format!("/v0/{base}/{projects}?fields%5B%5D=Nope"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_type(&body), "UNKNOWN_FIELD_NAME");
    let (status, _) = api
        .get(&format!(
            "/v0/{base}/{projects}/{}?fields%5B%5D=Name",
            page["records"][0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "get record takes no fields[]"
    );
}

#[tokio::test]
async fn more_than_ten_records_per_write_is_422() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (tasks, _) = api.table(&base, "Tasks");
    let before = api.fake.record_count(&base, &tasks).unwrap();
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"fields": {"Title": format!("t{i}")}}))
        .collect();
    let (status, body) = api
        .post(&format!("/v0/{base}/{tasks}"), json!({"records": eleven}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_type(&body), "INVALID_RECORDS");
    assert_eq!(api.fake.record_count(&base, &tasks).unwrap(), before);
    let existing = ids(&api.fake.records_json(&base, &tasks));
    let updates: Vec<Value> = existing[..11]
        .iter()
        .map(|id| json!({"id": id, "fields": {"Title": "x"}}))
        .collect();
    let (status, body) = api
        .patch(&format!("/v0/{base}/{tasks}"), json!({"records": updates}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_type(&body), "INVALID_RECORDS");
    let query: Vec<String> = existing[..11]
        .iter()
        .map(|id| format!("records%5B%5D={id}"))
        .collect();
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/v0/{base}/{tasks}?{}", query.join("&")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api.fake.record_count(&base, &tasks).unwrap(), before);
    let ten: Vec<Value> = (0..10)
        .map(|i| json!({"fields": {"Title": format!("t{i}")}}))
        .collect();
    let (status, body) = api
        .post(&format!("/v0/{base}/{tasks}"), json!({"records": ten}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["records"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn computed_fields_reject_writes() {
    let api = Api::unlimited(Preset::Zoo).await;
    let base = api.base();
    let schema = api.schema(&base);
    let table = &schema["tables"][0];
    let table_id = table["id"].as_str().unwrap();
    let record = api.fake.records_json(&base, table_id)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let computed = [
        "formula",
        "rollup",
        "multipleLookupValues",
        "count",
        "autoNumber",
        "createdTime",
        "lastModifiedTime",
        "createdBy",
        "lastModifiedBy",
        "button",
        "aiText",
        "manualSort",
    ];
    let mut tried = 0;
    for field in table["fields"].as_array().unwrap() {
        if !computed.contains(&field["type"].as_str().unwrap()) {
            continue;
        }
        tried += 1;
        let name = field["name"].as_str().unwrap();
        let (status, body) = api
            .patch(
                &format!("/v0/{base}/{table_id}/{record}"),
                json!({"fields": {name: "x"}}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        assert_eq!(error_type(&body), "INVALID_VALUE_FOR_COLUMN", "{name}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("computed")
        );
    }
    assert!(tried >= 15, "the zoo has every computed type ({tried})");
    let (status, body) = api
        .patch(
            &format!("/v0/{base}/{table_id}/{record}"),
            json!({"fields": {"No such field": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_type(&body), "UNKNOWN_FIELD_NAME");
}

#[tokio::test]
async fn wrongly_typed_values_are_rejected_without_typecast() {
    let api = Api::unlimited(Preset::Zoo).await;
    let base = api.base();
    let (table, _) = api.table(&base, "Everything 🦓");
    let cases = [
        json!({"Number": "12"}),
        json!({"Rating ♥": 0}),
        json!({"Rating ♥": 11}),
        json!({"Checked?": "yes"}),
        json!({"Date": "2024-13-01"}),
        json!({"Date & time": "tomorrow"}),
        json!({"Collaborator": {"id": "usrAAAAAAAAAAAAAA"}}),
        json!({"Partner ⇄": ["recAAAAAAAAAAAAAA"]}),
        json!({"Barcode": "123"}),
        json!({"Files": [{"filename": "no-url.txt"}]}),
    ];
    for fields in cases {
        let (status, body) = api
            .post(&format!("/v0/{base}/{table}"), json!({"fields": fields}))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{fields} -> {body}"
        );
    }
    let (status, body) = api
        .post(
            &format!("/v0/{base}/{table}"),
            json!({"fields": {"Number": "12", "Checked?": "yes"}, "typecast": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fields"]["Number"], 12);
    assert_eq!(body["fields"]["Checked?"], true);
}

#[tokio::test]
async fn unknown_select_options_need_typecast() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (tasks, _) = api.table(&base, "Tasks");
    let (status, body) = api
        .post(
            &format!("/v0/{base}/{tasks}"),
            json!({"fields": {"Title": "t", "Tags": ["design", "brand new"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_type(&body), "INVALID_MULTIPLE_CHOICE_OPTIONS");
    let (status, body) = api
        .post(
            &format!("/v0/{base}/{tasks}"),
            json!({"fields": {"Title": "t", "Tags": ["design", "brand new"]}, "typecast": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fields"]["Tags"], json!(["design", "brand new"]));
    let schema = api.schema(&base);
    let tags = schema["tables"][1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|field| field["name"] == "Tags")
        .unwrap()
        .clone();
    let choice = tags["options"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|choice| choice["name"] == "brand new")
        .unwrap();
    assert!(is_airtable_id(choice["id"].as_str().unwrap(), "sel"));
}

#[tokio::test]
async fn a_batch_with_one_bad_record_writes_nothing() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (tasks, fields) = api.table(&base, "Tasks");
    let before = api.fake.records_json(&base, &tasks);
    let (status, _) = api
        .post(
            &format!("/v0/{base}/{tasks}"),
            json!({"records": [
                {"fields": {"Title": "ok 1"}},
                {"fields": {"Title": "ok 2", "Tags": ["design"]}},
                {"fields": {"Title": "bad", "Priority": 9}},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api
        .patch(
            &format!("/v0/{base}/{tasks}"),
            json!({"records": [
                {"id": before[0]["id"], "fields": {"Title": "changed"}},
                {"id": before[1]["id"], "fields": {"Tags": ["not a choice"]}},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let after = api.fake.records_json(&base, &tasks);
    assert_eq!(after, before, "nothing changed");
    let title = field(&fields, "Title");
    assert_ne!(after[0]["fields"][title], "changed");
}

#[tokio::test]
async fn non_creatable_field_types_and_bad_options_are_422() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (projects, _) = api.table(&base, "Projects");
    let path = format!("/v0/meta/bases/{base}/tables/{projects}/fields");
    for field_type in [
        "formula",
        "rollup",
        "multipleLookupValues",
        "count",
        "autoNumber",
        "createdTime",
        "lastModifiedTime",
        "createdBy",
        "lastModifiedBy",
        "button",
        "aiText",
        "externalSyncSource",
    ] {
        let (status, body) = api
            .post(
                &path,
                json!({"name": format!("new {field_type}"), "type": field_type}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field_type}");
        assert_eq!(
            error_type(&body),
            "UNSUPPORTED_FIELD_TYPE_FOR_CREATE",
            "{field_type}"
        );
    }
    let (tasks, _) = api.table(&base, "Tasks");
    let (status, body) = api
        .post(
            &path,
            json!({"name": "Single link", "type": "multipleRecordLinks", "options": {"linkedTableId": tasks, "prefersSingleRecordLink": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_type(&body), "INVALID_FIELD_TYPE_OPTIONS_FOR_CREATE");
    let (status, body) = api
        .post(&path, json!({"name": "Amount", "type": "number"}))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "number needs precision"
    );
    assert_eq!(error_type(&body), "INVALID_FIELD_TYPE_OPTIONS_FOR_CREATE");
    let (status, body) = api
        .post(&path, json!({"name": "name", "type": "singleLineText"}))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "names are unique ignoring case"
    );
    assert_eq!(error_type(&body), "DUPLICATE_OR_EMPTY_FIELD_NAME");
    let (status, field) = api
        .post(&path, json!({"name": "Amount", "type": "number", "options": {"precision": 2}, "description": "d"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(field["options"], json!({"precision": 2}));
    assert_eq!(field["description"], "d");
}

#[tokio::test]
async fn link_fields_create_their_inverse_and_stay_symmetric() {
    let api = Api::unlimited(Preset::Empty).await;
    let base = api.base();
    let (table_one, _) = api.table(&base, "Table 1");
    let (status, other) = api
        .post(
            &format!("/v0/meta/bases/{base}/tables"),
            json!({"name": "Other", "fields": [{"name": "Label", "type": "singleLineText"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{other}");
    let other_id = other["id"].as_str().unwrap().to_owned();
    assert_eq!(other["views"][0]["name"], "Grid view");
    let (status, link) = api
        .post(
            &format!("/v0/meta/bases/{base}/tables/{table_one}/fields"),
            json!({"name": "Others", "type": "multipleRecordLinks", "options": {"linkedTableId": other_id}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{link}");
    let inverse_id = link["options"]["inverseLinkFieldId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, other_fields) = api.table(&base, "Other");
    assert_eq!(
        other_fields["Table 1"],
        json!(inverse_id),
        "the inverse is named after the source table"
    );
    let schema = api.schema(&base);
    let inverse = schema["tables"][1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|field| field["id"] == json!(inverse_id))
        .unwrap()
        .clone();
    assert_eq!(inverse["options"]["inverseLinkFieldId"], link["id"]);
    assert_eq!(inverse["options"]["linkedTableId"], json!(table_one));

    let (_, created) = api
        .post(
            &format!("/v0/{base}/{other_id}"),
            json!({"records": [{"fields": {"Label": "a"}}, {"fields": {"Label": "b"}}]}),
        )
        .await;
    let (a, b) = (
        created["records"][0]["id"].clone(),
        created["records"][1]["id"].clone(),
    );
    let row = api.fake.records_json(&base, &table_one)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let link_id = link["id"].as_str().unwrap().to_owned();
    let (status, _) = api
        .patch(
            &format!("/v0/{base}/{table_one}/{row}"),
            json!({"fields": {"Others": [a, b]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let inverse_of = |records: Vec<Value>, id: &Value| {
        records
            .into_iter()
            .find(|record| record["id"] == *id)
            .unwrap()["fields"][&inverse_id]
            .clone()
    };
    assert_eq!(
        inverse_of(api.fake.records_json(&base, &other_id), &a),
        json!([row])
    );
    assert_eq!(
        inverse_of(api.fake.records_json(&base, &other_id), &b),
        json!([row])
    );
    // Writing the inverse side updates the forward side too.
    let (status, _) = api
        .patch(
            &format!("/v0/{base}/{other_id}/{}", b.as_str().unwrap()),
            json!({"fields": {"Table 1": []}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let forward = api.fake.records_json(&base, &table_one)[0]["fields"][&link_id].clone();
    assert_eq!(forward, json!([a]));
    // A self-link has no inverse.
    let (_, own) = api
        .post(
            &format!("/v0/meta/bases/{base}/tables/{table_one}/fields"),
            json!({"name": "Related", "type": "multipleRecordLinks", "options": {"linkedTableId": table_one}}),
        )
        .await;
    assert!(own["options"].get("inverseLinkFieldId").is_none(), "{own}");
    // Links cannot be created inline with a table.
    let (status, body) = api
        .post(
            &format!("/v0/meta/bases/{base}/tables"),
            json!({"name": "Inline", "fields": [
                {"name": "Name", "type": "singleLineText"},
                {"name": "L", "type": "multipleRecordLinks", "options": {"linkedTableId": other_id}},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn rate_limit_locks_the_base_for_the_penalty() {
    let options = FakeOptions {
        preset: Preset::Demo,
        rate_limit: Some(5),
        token_rate_limit: None,
        penalty: Duration::from_secs(2),
        ..FakeOptions::default()
    };
    let api = Api::start(options).await;
    let base = api.base();
    let other = api.fake.add_empty_base("Other");
    let path = format!("/v0/{base}/Projects?pageSize=1");
    // Six requests at once: five get through, one goes over the limit.
    let answers = futures::future::join_all((0..6).map(|_| api.get(&path))).await;
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::TOO_MANY_REQUESTS)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(refused.len(), 1, "{answers:?}");
    assert_eq!(
        *refused[0],
        json!({"error": {"type": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded. Please try again later"}})
    );
    assert_eq!(
        api.get(&format!("/v0/{}/Table%201", other.id)).await.0,
        StatusCode::OK,
        "other bases are unaffected"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        api.get(&path).await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "still locked after the window passed"
    );
    assert_eq!(
        api.get(&format!("/v0/meta/bases/{base}/tables")).await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "every route of the base"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        api.get(&path).await.0,
        StatusCode::OK,
        "unlocked after the penalty"
    );
    let counters = api.fake.counters();
    assert_eq!(counters.rate_limited, 3);
    assert_eq!(counters.requests(Route::ListRecords), 9);
}

#[tokio::test]
async fn a_triggered_penalty_locks_a_base_even_with_limits_off() {
    let options = FakeOptions {
        penalty: Duration::from_secs(1),
        ..FakeOptions::unlimited(Preset::Demo)
    };
    let api = Api::start(options).await;
    let base = api.base();
    api.fake.trigger_rate_limit(&base);
    assert_eq!(
        api.get(&format!("/v0/{base}/Projects")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(
        api.get(&format!("/v0/{base}/Projects")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_token_limit_spans_bases() {
    let options = FakeOptions {
        preset: Preset::Empty,
        rate_limit: None,
        token_rate_limit: Some(3),
        penalty: Duration::from_secs(5),
        ..FakeOptions::default()
    };
    let api = Api::start(options).await;
    let bases: Vec<String> = (0..4)
        .map(|i| api.fake.add_empty_base(&format!("B{i}")).id)
        .collect();
    let mut statuses = Vec::new();
    for base in &bases {
        statuses.push(api.get(&format!("/v0/{base}/Table%201")).await.0);
    }
    assert_eq!(statuses[..3], [StatusCode::OK; 3]);
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn attachment_downloads_are_not_rate_limited() {
    let options = FakeOptions {
        preset: Preset::Demo,
        rate_limit: Some(5),
        token_rate_limit: Some(50),
        penalty: Duration::from_secs(30),
        ..FakeOptions::default()
    };
    let api = Api::start(options).await;
    let base = api.base();
    let (projects, fields) = api.table(&base, "Projects");
    let brief = field(&fields, "Brief");
    let urls: Vec<String> = api
        .fake
        .records_json(&base, &projects)
        .iter()
        .flat_map(|record| {
            record["fields"][brief]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|attachment| attachment["url"].as_str().unwrap().to_owned())
        .collect();
    assert!(urls.len() >= 4);
    for round in 0..3 {
        for url in &urls {
            let response = api.http.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "round {round}");
            response.bytes().await.unwrap();
        }
    }
    assert_eq!(
        api.get(&format!("/v0/{base}/{projects}")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        api.fake.counters().requests(Route::AttachmentDownload),
        3 * urls.len() as u64
    );
    assert_eq!(api.fake.counters().rate_limited, 0);
}

#[tokio::test]
async fn attachment_urls_expire_after_their_ttl_and_on_demand() {
    let options = FakeOptions {
        url_ttl: Duration::from_secs(1),
        ..FakeOptions::unlimited(Preset::Demo)
    };
    let api = Api::start(options).await;
    let base = api.base();
    let (contacts, fields) = api.table(&base, "Contacts");
    let avatar = field(&fields, "Avatar");
    let record = api.list_all(&base, &contacts, "&view=Grid%20view").await[0].clone();
    let attachment = &record["fields"][avatar][0];
    let url = attachment["url"].as_str().unwrap();
    let response = api.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.content_length(), attachment["size"].as_u64());
    assert_eq!(
        response.bytes().await.unwrap().len() as u64,
        attachment["size"].as_u64().unwrap()
    );
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(
        api.http.get(url).send().await.unwrap().status(),
        StatusCode::GONE
    );

    let fresh =
        api.list_all(&base, &contacts, "&view=Grid%20view").await[0]["fields"][avatar][0]["url"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_eq!(
        api.http.get(&fresh).send().await.unwrap().status(),
        StatusCode::OK
    );
    api.fake.expire_attachment_urls();
    assert_eq!(
        api.http.get(&fresh).send().await.unwrap().status(),
        StatusCode::GONE
    );
    let thumbnail = record["fields"][avatar][0]["thumbnails"]["small"]["url"]
        .as_str()
        .unwrap();
    assert_eq!(
        api.http.get(thumbnail).send().await.unwrap().status(),
        StatusCode::GONE
    );
    assert_eq!(api.fake.counters().url_expired, 3);
    let tampered = fresh.replace("/file/", "/full/");
    assert_eq!(
        api.http.get(&tampered).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // The fault spec can force the expiry at the n-th download.
    api.fake.set_faults("urlexpire=2".parse().unwrap());
    let fresh =
        api.list_all(&base, &contacts, "&view=Grid%20view").await[0]["fields"][avatar][0]["url"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_eq!(
        api.http.get(&fresh).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        api.http.get(&fresh).send().await.unwrap().status(),
        StatusCode::GONE
    );
}

#[tokio::test]
async fn iterators_expire_on_demand_after_inactivity_and_by_fault_spec() {
    let options = FakeOptions {
        iterator_ttl: Duration::from_millis(600),
        ..FakeOptions::unlimited(Preset::Demo)
    };
    let api = Api::start(options).await;
    let base = api.base();
    async fn first_page(api: &Api, base: &str) -> String {
        let (_, page) = api.get(&format!("/v0/{base}/Tasks?pageSize=10")).await;
        page["offset"].as_str().unwrap().to_owned()
    }
    let offset = first_page(&api, &base).await;
    let (status, _) = api
        .get(&format!("/v0/{base}/Tasks?pageSize=10&offset={offset}"))
        .await;
    assert_eq!(status, StatusCode::OK, "a fresh offset works");

    let offset = first_page(&api, &base).await;
    api.fake.expire_iterators();
    let (status, body) = api
        .get(&format!("/v0/{base}/Tasks?pageSize=10&offset={offset}"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({"error": {"type": "LIST_RECORDS_ITERATOR_NOT_AVAILABLE"}})
    );

    let offset = first_page(&api, &base).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, body) = api
        .get(&format!("/v0/{base}/Tasks?pageSize=10&offset={offset}"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_type(&body), "LIST_RECORDS_ITERATOR_NOT_AVAILABLE");

    api.fake.set_faults("iterexpire=2".parse().unwrap());
    let offset = first_page(&api, &base).await;
    let (status, page) = api
        .get(&format!("/v0/{base}/Tasks?pageSize=10&offset={offset}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let next = page["offset"].as_str().unwrap();
    let (status, _) = api
        .get(&format!("/v0/{base}/Tasks?pageSize=10&offset={next}"))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the second offset request finds its iterator gone"
    );
    assert_eq!(api.fake.counters().iterator_expired, 3);
}

fn png(width: u32, height: u32, total: usize) -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
    bytes.extend_from_slice(b"IHDR");
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.resize(total, 7);
    bytes
}

#[tokio::test]
async fn upload_attachment_appends_and_enforces_5_mb() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (projects, fields) = api.table(&base, "Projects");
    let brief = field(&fields, "Brief").to_owned();
    let record = api.fake.records_json(&base, &projects)[1].clone();
    let record_id = record["id"].as_str().unwrap();
    let existing = record["fields"][&brief].as_array().unwrap().clone();
    assert!(!existing.is_empty());
    let bytes = png(64, 48, 3_000);
    let body = json!({
        "contentType": "image/png",
        "file": base64::engine::general_purpose::STANDARD.encode(&bytes),
        "filename": "upload.png",
    });
    let (status, response) = api
        .post(
            &format!("/v0/{base}/{record_id}/Brief/uploadAttachment"),
            body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["id"], record["id"]);
    let cell = response["fields"][&brief].as_array().unwrap();
    assert_eq!(cell.len(), existing.len() + 1, "appended");
    assert_eq!(
        cell[..existing.len()]
            .iter()
            .map(|a| &a["id"])
            .collect::<Vec<_>>(),
        existing.iter().map(|a| &a["id"]).collect::<Vec<_>>()
    );
    let uploaded = cell.last().unwrap();
    assert_eq!(uploaded["filename"], "upload.png");
    assert_eq!(uploaded["size"], 3_000);
    assert_eq!(uploaded["type"], "image/png");
    assert_eq!(
        (uploaded["width"].clone(), uploaded["height"].clone()),
        (json!(64), json!(48))
    );
    let downloaded = api
        .http
        .get(uploaded["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(downloaded.as_ref(), bytes.as_slice());

    let limit = vec![1u8; UPLOAD_LIMIT_BYTES];
    let over = vec![1u8; UPLOAD_LIMIT_BYTES + 1];
    let upload = |content: &[u8]| json!({"contentType": "application/octet-stream", "file": base64::engine::general_purpose::STANDARD.encode(content), "filename": "big.bin"});
    let (status, body) = api
        .post(
            &format!("/v0/{base}/{record_id}/{brief}/uploadAttachment"),
            upload(&over),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, _) = api
        .post(
            &format!("/v0/{base}/{record_id}/{brief}/uploadAttachment"),
            upload(&limit),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "exactly 5 MB is accepted");
    let (status, _) = api
        .post(
            &format!("/v0/{base}/recAAAAAAAAAAAAAA/{brief}/uploadAttachment"),
            upload(b"x"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn url_attachments_are_fetched_after_the_response() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (projects, fields) = api.table(&base, "Projects");
    let brief = field(&fields, "Brief").to_owned();
    let records = api.fake.records_json(&base, &projects);
    let source = records[0]["fields"][&brief][0].clone();
    let target = records[5]["id"].as_str().unwrap();
    assert!(records[5]["fields"].get(&brief).is_none());
    let (status, written) = api
        .patch(
            &format!("/v0/{base}/{projects}/{target}"),
            json!({"fields": {"Brief": [
                {"url": source["url"], "filename": "copied.pdf"},
                {"url": "http://127.0.0.1:9/unreachable.png"},
            ]}, "returnFieldsByFieldId": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{written}");
    let pending = written["fields"][&brief].as_array().unwrap();
    assert_eq!(pending.len(), 2);
    assert!(
        pending[0].get("size").is_none(),
        "not fetched yet: {}",
        pending[0]
    );
    assert_eq!(pending[0]["url"], source["url"]);
    assert_eq!(pending[1]["filename"], "unreachable.png");
    api.fake.wait_for_url_fetches().await;
    let after = api.fake.records_json(&base, &projects)[5]["fields"][&brief].clone();
    let after = after.as_array().unwrap();
    assert_eq!(
        after.len(),
        1,
        "the failed fetch silently disappeared: {after:?}"
    );
    assert_eq!(after[0]["id"], pending[0]["id"]);
    assert_eq!(after[0]["filename"], "copied.pdf");
    assert_eq!(after[0]["size"], source["size"]);
    let copied = api
        .fake
        .attachment_content(after[0]["id"].as_str().unwrap())
        .unwrap();
    let original = api
        .fake
        .attachment_content(source["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(copied, original);
    let counters = api.fake.counters();
    assert_eq!(
        (counters.url_fetches_ok, counters.url_fetches_failed),
        (1, 1)
    );
}

#[tokio::test]
async fn generation_is_deterministic_per_seed() {
    let options = |seed| FakeOptions {
        seed,
        ..FakeOptions::unlimited(Preset::Zoo)
    };
    let one = Api::start(options(5)).await;
    let two = Api::start(options(5)).await;
    let three = Api::start(options(6)).await;
    assert_eq!(one.fake.token(), two.fake.token());
    assert_eq!(one.fake.bases(), two.fake.bases());
    assert_ne!(one.fake.bases(), three.fake.bases());
    let base = one.base();
    let schema = one.schema(&base);
    assert_eq!(schema, two.schema(&base));
    for table in schema["tables"].as_array().unwrap() {
        let id = table["id"].as_str().unwrap();
        let left: Vec<Value> = one
            .fake
            .records_json(&base, id)
            .iter()
            .map(without_urls)
            .collect();
        let right: Vec<Value> = two
            .fake
            .records_json(&base, id)
            .iter()
            .map(without_urls)
            .collect();
        assert_eq!(left, right);
    }
    let zoo = &schema["tables"][0]["id"];
    let first = &one.fake.records_json(&base, zoo.as_str().unwrap())[0];
    let files = first["fields"]
        .as_object()
        .unwrap()
        .values()
        .find(|value| value[0]["filename"] == "photo.png")
        .unwrap();
    let id = files[0]["id"].as_str().unwrap();
    assert_eq!(
        one.fake.attachment_content(id),
        two.fake.attachment_content(id),
        "same bytes"
    );
}

#[tokio::test]
async fn computed_values_are_consistent() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (projects, pf) = api.table(&base, "Projects");
    let (tasks, tf) = api.table(&base, "Tasks");
    let project_records = api.fake.records_json(&base, &projects);
    let task_records = api.fake.records_json(&base, &tasks);
    for project in &project_records {
        let fields = &project["fields"];
        let links = fields[field(&pf, "Tasks")]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(fields[field(&pf, "Task count")], json!(links.len()));
        let expected = format!(
            "{} ({})",
            fields[field(&pf, "Name")].as_str().unwrap(),
            fields[field(&pf, "Status")].as_str().unwrap()
        );
        assert_eq!(fields[field(&pf, "Summary")], json!(expected));
        let total: f64 = task_records
            .iter()
            .filter(|task| links.contains(&task["id"]))
            .map(|task| {
                task["fields"][field(&tf, "Estimate (hours)")]
                    .as_f64()
                    .unwrap_or(0.0)
            })
            .sum();
        assert_eq!(
            fields[field(&pf, "Total estimate")].as_f64().unwrap(),
            total
        );
    }
    let mut numbers = Vec::new();
    for task in &task_records {
        let fields = &task["fields"];
        assert_eq!(fields[field(&tf, "Created")], task["createdTime"]);
        numbers.push(fields[field(&tf, "#")].as_u64().unwrap());
        if let Some(project) = fields[field(&tf, "Project")].as_array() {
            let linked = project_records
                .iter()
                .find(|p| p["id"] == project[0])
                .unwrap();
            assert_eq!(
                fields[field(&tf, "Project status")],
                json!([linked["fields"][field(&pf, "Status")]])
            );
            assert!(
                linked["fields"][field(&pf, "Tasks")]
                    .as_array()
                    .unwrap()
                    .contains(&task["id"]),
                "links are symmetric"
            );
        }
    }
    assert!(numbers.windows(2).all(|pair| pair[1] == pair[0] + 1));
    let (_, created) = api
        .post(
            &format!("/v0/{base}/{tasks}"),
            json!({"fields": {"Title": "new"}}),
        )
        .await;
    assert_eq!(created["fields"]["#"], json!(numbers.last().unwrap() + 1));
    assert_eq!(created["fields"]["Created"], created["createdTime"]);

    let zoo = Api::unlimited(Preset::Zoo).await;
    let zoo_base = zoo.base();
    let (everything, zf) = zoo.table(&zoo_base, "Everything 🦓");
    let first = &zoo.fake.records_json(&zoo_base, &everything)[0]["fields"];
    assert_eq!(
        first[field(&zf, "Formula NaN")],
        json!({"specialValue": "NaN"})
    );
    assert_eq!(
        first[field(&zf, "Formula Infinity")],
        json!({"specialValue": "Infinity"})
    );
    assert_eq!(
        first[field(&zf, "Formula #ERROR!")],
        json!({"error": "#ERROR!"})
    );
    let empty_record = &zoo.fake.records_json(&zoo_base, &everything)[9]["fields"];
    assert_eq!(
        empty_record[field(&zf, "Rollup: average (NaN when empty)")],
        json!({"specialValue": "NaN"})
    );
    assert_eq!(empty_record[field(&zf, "Count: partners")], json!(0));
    assert!(empty_record.get(field(&zf, "Name")).is_none());
}

#[tokio::test]
async fn put_clears_unsent_fields_and_upsert_merges() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (contacts, cf) = api.table(&base, "Contacts");
    let record = api.fake.records_json(&base, &contacts)[0].clone();
    let id = record["id"].as_str().unwrap();
    let (status, put) = api
        .call(
            Method::PUT,
            &format!("/v0/{base}/{contacts}/{id}"),
            Some(json!({"fields": {"Name": "Only name"}, "returnFieldsByFieldId": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let remaining: Vec<&String> = put["fields"].as_object().unwrap().keys().collect();
    assert_eq!(
        remaining,
        vec![field(&cf, "Name")],
        "PUT cleared the rest, links included"
    );

    let (status, upserted) = api
        .patch(
            &format!("/v0/{base}/{contacts}"),
            json!({
                "performUpsert": {"fieldsToMergeOn": ["Name"]},
                "records": [
                    {"fields": {"Name": "Only name", "Email": "merged@example.org"}},
                    {"fields": {"Name": "Brand new", "Email": "new@example.org"}},
                ],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{upserted}");
    assert_eq!(upserted["updatedRecords"], json!([id]));
    assert_eq!(upserted["createdRecords"].as_array().unwrap().len(), 1);
    let (status, body) = api
        .patch(
            &format!("/v0/{base}/{contacts}"),
            json!({"performUpsert": {"fieldsToMergeOn": ["Projects"]}, "records": [{"fields": {"Name": "x"}}]}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "links cannot be merge keys: {body}"
    );
}

#[tokio::test]
async fn list_records_post_matches_get() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (tasks, tf) = api.table(&base, "Tasks");
    let (_, by_get) = api
        .get(&format!("/v0/{base}/{tasks}?view=Grid%20view&fields%5B%5D=Title&returnFieldsByFieldId=true&pageSize=7"))
        .await;
    let (status, by_post) = api
        .post(
            &format!("/v0/{base}/{tasks}/listRecords"),
            json!({"view": "Grid view", "fields": ["Title"], "returnFieldsByFieldId": true, "pageSize": 7}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_get["records"], by_post["records"]);
    let (status, second) = api
        .post(
            &format!("/v0/{base}/{tasks}/listRecords"),
            json!({"view": "Grid view", "fields": [field(&tf, "Title")], "returnFieldsByFieldId": true, "pageSize": 7, "offset": by_post["offset"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["records"].as_array().unwrap().len(), 7);
    assert_ne!(second["records"][0]["id"], by_post["records"][0]["id"]);
    let (status, _) = api
        .post(
            &format!("/v0/{base}/{tasks}/listRecords"),
            json!({"nonsense": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let counters = api.fake.counters();
    assert_eq!(counters.requests(Route::ListRecordsPost), 3);
    assert_eq!(counters.requests(Route::ListRecords), 1);
}

#[tokio::test]
async fn the_zoo_has_every_awkward_case() {
    let api = Api::unlimited(Preset::Zoo).await;
    let base = api.base();
    let schema = api.schema(&base);
    let tables = schema["tables"].as_array().unwrap();
    let names: Vec<&str> = tables
        .iter()
        .map(|table| table["name"].as_str().unwrap())
        .collect();
    assert!(names.iter().any(|name| name.contains('🦓')));
    assert!(
        names
            .iter()
            .any(|name| name.contains('/') && name.contains('"'))
    );
    assert!(names.iter().any(|name| name.contains("表格")));
    let types: Vec<&str> = tables
        .iter()
        .flat_map(|table| table["fields"].as_array().unwrap())
        .map(|field| field["type"].as_str().unwrap())
        .collect();
    for expected in [
        "singleLineText",
        "email",
        "url",
        "multilineText",
        "richText",
        "phoneNumber",
        "number",
        "percent",
        "currency",
        "duration",
        "rating",
        "checkbox",
        "date",
        "dateTime",
        "singleSelect",
        "multipleSelects",
        "singleCollaborator",
        "multipleCollaborators",
        "multipleAttachments",
        "barcode",
        "multipleRecordLinks",
        "formula",
        "rollup",
        "multipleLookupValues",
        "count",
        "autoNumber",
        "createdTime",
        "lastModifiedTime",
        "createdBy",
        "lastModifiedBy",
        "button",
        "aiText",
        "externalSyncSource",
        "manualSort",
    ] {
        assert!(types.contains(&expected), "missing {expected}");
    }
    // Primary fields that cannot be created: a formula and an auto number.
    let primary_type = |table: &Value| {
        let primary = &table["primaryFieldId"];
        table["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|field| field["id"] == *primary)
            .unwrap()["type"]
            .clone()
    };
    assert_eq!(primary_type(&tables[1]), "formula");
    assert_eq!(primary_type(&tables[2]), "autoNumber");
    // The table with a slash and quotes in its name is reachable by name.
    let encoded = "Links%20%2F%20Refs%20%22quoted%22";
    let (status, page) = api.get(&format!("/v0/{base}/{encoded}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");

    let (everything, zf) = api.table(&base, "Everything 🦓");
    let files = field(&zf, "Files");
    let attachments: Vec<Value> = api
        .fake
        .records_json(&base, &everything)
        .iter()
        .flat_map(|record| {
            record["fields"][files]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let filenames: Vec<&str> = attachments
        .iter()
        .map(|a| a["filename"].as_str().unwrap())
        .collect();
    for unsafe_name in ["../x", "CON", "/etc/passwd", ".."] {
        assert!(filenames.contains(&unsafe_name), "{unsafe_name}");
    }
    assert!(
        filenames
            .iter()
            .any(|name| name.chars().any(char::is_control))
    );
    assert!(filenames.iter().any(|name| name.len() > 255));
    assert!(
        attachments
            .iter()
            .any(|a| a["size"].as_u64().unwrap() > 5 * 1024 * 1024)
    );
    // Identical bytes under different attachment ids, across records and tables.
    let photo = attachments
        .iter()
        .find(|a| a["filename"] == "photo.png")
        .unwrap();
    let (refs, rf) = api.table(&base, "Links / Refs \"quoted\"");
    let copy = api.fake.records_json(&base, &refs)[0]["fields"][field(&rf, "Files")][0].clone();
    assert_ne!(copy["id"], photo["id"]);
    let photo_bytes = api
        .http
        .get(photo["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let copy_bytes = api
        .http
        .get(copy["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(photo_bytes, copy_bytes);
    assert_eq!(photo_bytes.len() as u64, photo["size"].as_u64().unwrap());
    assert_eq!(&photo_bytes[1..4], b"PNG");
    // The big one streams completely.
    let big = attachments
        .iter()
        .find(|a| a["size"].as_u64().unwrap() > 5 * 1024 * 1024)
        .unwrap();
    let big_bytes = api
        .http
        .get(big["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(big_bytes.len() as u64, big["size"].as_u64().unwrap());
}

#[tokio::test]
async fn bases_are_created_in_the_workspace_and_schema_updates_apply() {
    let api = Api::unlimited(Preset::Empty).await;
    let empty = api.fake.add_empty_base("Restore target");
    let (table_one, fields) = api.table(&empty.id, "Table 1");
    assert_eq!(
        fields.keys().collect::<Vec<_>>(),
        ["Assignee", "Attachments", "Name", "Notes", "Status"]
    );
    assert_eq!(api.fake.records_json(&empty.id, &table_one).len(), 3);

    let workspace = api.fake.workspace_id();
    let (status, body) = api
        .post(
            "/v0/meta/bases",
            json!({"name": "No tables", "workspaceId": workspace, "tables": []}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, created) = api
        .post(
            "/v0/meta/bases",
            json!({"name": "Fresh", "workspaceId": workspace, "tables": [
                {"name": "People", "description": "who", "fields": [
                    {"name": "Name", "type": "singleLineText"},
                    {"name": "Born", "type": "date", "options": {"dateFormat": {"name": "iso"}}},
                    {"name": "Mood", "type": "singleSelect", "options": {"choices": [{"name": "ok", "color": "blueLight2"}]}},
                ]},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let base = created["id"].as_str().unwrap().to_owned();
    assert!(is_airtable_id(&base, "app"));
    assert_eq!(
        created["tables"][0]["fields"][1]["options"]["dateFormat"],
        json!({"name": "iso", "format": "YYYY-MM-DD"})
    );
    assert!(
        api.fake
            .bases()
            .iter()
            .any(|info| info.id == base && info.name == "Fresh")
    );
    let table = created["tables"][0]["id"].as_str().unwrap();
    assert_eq!(
        api.fake.records_json(&base, table).len(),
        0,
        "API-created tables start empty"
    );
    let (status, page) = api.get(&format!("/v0/{base}/{table}")).await;
    assert_eq!((status, page), (StatusCode::OK, json!({"records": []})));

    let (status, renamed) = api
        .patch(
            &format!("/v0/meta/bases/{base}/tables/{table}"),
            json!({"name": "Humans", "description": "renamed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (renamed["name"].clone(), renamed["description"].clone()),
        (json!("Humans"), json!("renamed"))
    );
    let field_id = created["tables"][0]["fields"][0]["id"].as_str().unwrap();
    let (status, field) = api
        .patch(
            &format!("/v0/meta/bases/{base}/tables/{table}/fields/{field_id}"),
            json!({"name": "Full name", "description": "d"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(field["name"], "Full name");
    let (status, _) = api
        .patch(
            &format!("/v0/meta/bases/{base}/tables/{table}/fields/{field_id}"),
            json!({"name": "born"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "duplicate name");
    let (status, _) = api
        .patch(
            &format!("/v0/meta/bases/{base}/tables/{table}/fields/{field_id}"),
            json!({"options": {"precision": 1}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "options of a text field cannot change"
    );
    let counters = api.fake.counters();
    assert_eq!(counters.requests(Route::CreateBase), 2);
    assert_eq!(counters.requests(Route::UpdateField), 3);
    assert_eq!(counters.requests(Route::UpdateTable), 1);
}

#[tokio::test]
async fn injected_5xx_answers_have_real_bodies() {
    let options = FakeOptions {
        faults: "503=1".parse().unwrap(),
        ..FakeOptions::unlimited(Preset::Demo)
    };
    let api = Api::start(options).await;
    let base = api.base();
    let (status, body) = api.get(&format!("/v0/{base}/Projects")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_type(&body), "RETRIABLE_ERROR");
    api.fake.set_faults("502=1".parse().unwrap());
    let (status, _) = api
        .post(
            &format!("/v0/{base}/Tasks"),
            json!({"fields": {"Title": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        api.fake.record_count(&base, "Tasks"),
        Some(30),
        "a 5xx happens before the write"
    );
    api.fake.set_faults(Faults::none());
    assert_eq!(
        api.get(&format!("/v0/{base}/Projects")).await.0,
        StatusCode::OK
    );
    let counters = api.fake.counters();
    assert_eq!(
        (
            counters.faults_503,
            counters.faults_502,
            counters.faults_injected()
        ),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn resets_are_errors_on_the_client_side() {
    let options = FakeOptions {
        faults: "reset=1".parse().unwrap(),
        ..FakeOptions::unlimited(Preset::Demo)
    };
    let api = Api::start(options).await;
    let base = api.base();
    let url = format!("{}/v0/{base}/Tasks", api.fake.url());
    let outcome = match api
        .http
        .get(&url)
        .bearer_auth(api.fake.token())
        .send()
        .await
    {
        Ok(response) => response.bytes().await.map(|_| ()),
        Err(error) => Err(error),
    };
    assert!(outcome.is_err(), "reqwest must see the cut connection");
    // A reset write still took effect: the response was lost, not the request.
    let before = api.fake.record_count(&base, "Tasks").unwrap();
    let response = api
        .http
        .post(&url)
        .bearer_auth(api.fake.token())
        .json(&json!({"fields": {"Title": "written"}}))
        .send()
        .await;
    if let Ok(response) = response {
        assert!(response.json::<Value>().await.is_err());
    }
    assert_eq!(api.fake.record_count(&base, "Tasks").unwrap(), before + 1);
    // Downloads are cut too.
    let (projects, fields) = api.table(&base, "Projects");
    let attachment =
        api.fake.records_json(&base, &projects)[0]["fields"][field(&fields, "Brief")][0].clone();
    let response = api
        .http
        .get(attachment["url"].as_str().unwrap())
        .send()
        .await;
    let downloaded = match response {
        Ok(response) => response.bytes().await.map(|bytes| bytes.len()),
        Err(error) => Err(error),
    };
    assert!(downloaded.is_err(), "{downloaded:?}");
    assert_eq!(api.fake.counters().resets, 3);
}

#[tokio::test]
async fn slow_responses_are_delayed() {
    let options = FakeOptions {
        faults: "slow=1:300ms,seed=3".parse().unwrap(),
        ..FakeOptions::unlimited(Preset::Demo)
    };
    let api = Api::start(options).await;
    let started = Instant::now();
    let (status, _) = api.get("/v0/meta/bases").await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(api.fake.counters().slow, 1);
}

#[tokio::test]
async fn fault_specs_parse_and_report_errors() {
    let faults: Faults = "503=0.05,502=0.02,reset=0.02,slow=0.01:2s,seed=7"
        .parse()
        .unwrap();
    assert_eq!(
        (faults.p503, faults.p502, faults.reset, faults.slow),
        (0.05, 0.02, 0.02, 0.01)
    );
    assert_eq!(faults.slow_delay, Duration::from_secs(2));
    assert_eq!(faults.seed, 7);
    let error = "503=0.05,bogus=1".parse::<Faults>().unwrap_err();
    assert!(error.to_string().contains("bogus"), "{error}");
    let api = Api::start(FakeOptions {
        faults: faults.clone(),
        ..FakeOptions::unlimited(Preset::Empty)
    })
    .await;
    assert_eq!(api.fake.faults(), faults);
}

#[tokio::test]
async fn billing_limit_blocks_data_routes_only() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    api.fake.set_billing_limit_exceeded(true);
    let (status, body) = api.get(&format!("/v0/{base}/Projects")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_type(&body), "PUBLIC_API_BILLING_LIMIT_EXCEEDED");
    assert_eq!(
        api.get(&format!("/v0/meta/bases/{base}/tables")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn direct_access_validates_and_keeps_links_symmetric() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (tasks, tf) = api.table(&base, "Tasks");
    let (projects, pf) = api.table(&base, "Projects");
    let task = api.fake.records_json(&base, &tasks)[9].clone();
    assert!(
        task["fields"].get(field(&tf, "Project")).is_none(),
        "the tenth task has no project"
    );
    let project = api.fake.records_json(&base, &projects)[2]["id"].clone();
    let mut fields = Map::new();
    fields.insert("Project".to_owned(), json!([project]));
    api.fake
        .update_record_fields(&base, &tasks, task["id"].as_str().unwrap(), fields)
        .unwrap();
    let linked = api.fake.records_json(&base, &projects)[2]["fields"][field(&pf, "Tasks")].clone();
    assert!(linked.as_array().unwrap().contains(&task["id"]));
    let mut bad = Map::new();
    bad.insert("#".to_owned(), json!(1));
    let error = api
        .fake
        .update_record_fields(&base, &tasks, task["id"].as_str().unwrap(), bad)
        .unwrap_err();
    assert!(
        error.to_string().contains("INVALID_VALUE_FOR_COLUMN"),
        "{error}"
    );

    api.fake
        .add_attachment(
            &base,
            &projects,
            project.as_str().unwrap(),
            "Brief",
            "notes.txt",
            b"hello".to_vec(),
        )
        .unwrap();
    let cell = api.fake.records_json(&base, &projects)[2]["fields"][field(&pf, "Brief")].clone();
    let added = cell.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (
            added["filename"].clone(),
            added["size"].clone(),
            added["type"].clone()
        ),
        (json!("notes.txt"), json!(5), json!("text/plain"))
    );
    let body = api
        .http
        .get(added["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.as_ref(), b"hello");
    let banner = api.fake.banner_json();
    assert_eq!(banner["url"], json!(api.fake.url()));
    assert_eq!(banner["bases"][0]["id"], json!(base));
    assert_eq!(banner["workspace"], json!(api.fake.workspace_id()));
}

#[tokio::test]
async fn large_preset_streams_generated_attachments() {
    let mut options = FakeOptions::unlimited(Preset::Large);
    options.large = "tables=2,records=300,attachments=40,min=1000,max=3000000"
        .parse()
        .unwrap();
    let api = Api::start(options).await;
    let base = api.base();
    let (table, fields) = api.table(&base, "Table 1");
    let (second, _) = api.table(&base, "Table 2");
    assert_eq!(api.fake.record_count(&base, &table), Some(300));
    assert_eq!(api.fake.record_count(&base, &second), Some(300));
    let files = field(&fields, "Files");
    let records = api.list_all(&base, &table, "").await;
    let attachments: Vec<Value> = records
        .iter()
        .flat_map(|record| {
            record["fields"][files]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert!(!attachments.is_empty());
    let biggest = attachments
        .iter()
        .max_by_key(|a| a["size"].as_u64().unwrap())
        .unwrap();
    let url = biggest["url"].as_str().unwrap();
    let first = api
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let second_download = api
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(first.len() as u64, biggest["size"].as_u64().unwrap());
    assert_eq!(first, second_download, "generated bytes are stable");
    assert_eq!(
        api.fake.counters().attachment_bytes_served,
        2 * first.len() as u64
    );
}

#[tokio::test]
async fn shutdown_releases_the_port() {
    let api = Api::unlimited(Preset::Empty).await;
    let url = format!("{}/v0/meta/bases", api.fake.url());
    let token = api.fake.token();
    assert_eq!(
        api.http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    api.fake.shutdown().await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(&url).bearer_auth(&token).send().await.is_err());
}

#[tokio::test]
async fn standalone_serves_with_the_seeds_token() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let options = FakeOptions {
        seed: 9,
        ..FakeOptions::unlimited(Preset::Empty)
    };
    let server = tokio::spawn(airback_fake::serve_standalone(addr, options.clone()));
    let twin = FakeAirtable::start(options).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v0/meta/bases");
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(response) = http.get(&url).bearer_auth(twin.token()).send().await {
            answer = Some(response.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = answer.expect("the standalone server answers");
    assert_eq!(
        answer["bases"][0]["id"],
        json!(twin.bases()[0].id),
        "same seed, same world"
    );
    server.abort();
}

/// `airback fake-airtable` prints one JSON line with its URL, token and bases, then serves.
#[cfg(feature = "fake")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_airtable_command_prints_one_json_line_and_serves() {
    use tokio::io::AsyncBufReadExt;
    let mut child = crate::support::command(env!("CARGO_BIN_EXE_airback"))
        .args([
            "fake-airtable",
            "--listen",
            "127.0.0.1:0",
            "--preset",
            "zoo",
            "--seed",
            "3",
            "--rate",
            "5",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .unwrap();
    let banner: Value = serde_json::from_str(&line).unwrap();
    let url = banner["url"].as_str().unwrap();
    let token = banner["token"].as_str().unwrap();
    let base = banner["bases"][0]["id"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(is_airtable_id(base, "app"));
    let schema: Value = reqwest::Client::new()
        .get(format!("{url}/v0/meta/bases/{base}/tables"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(schema["tables"].as_array().unwrap().len() > 1, "{schema}");
    child.kill().await.unwrap();
}

/// `records_written` counts the records each successful write names: created, updated,
/// deleted, given a file; never a linked record whose inverse cell Airtable mirrored, never a
/// refused write.
#[tokio::test]
async fn write_counters_name_the_records_each_write_touched() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    let (tasks, _) = api.table(&base, "Tasks");
    let existing = ids(&api.fake.records_json(&base, &tasks));
    let (status, body) = api
        .post(
            &format!("/v0/{base}/{tasks}"),
            json!({"records": [{"fields": {"Title": "a"}}, {"fields": {"Title": "b"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let created = ids(body["records"].as_array().unwrap());
    let (status, _) = api
        .patch(
            &format!("/v0/{base}/{tasks}"),
            json!({"records": [{"id": existing[0], "fields": {"Title": "x"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Refused: an unknown field. Counts nothing.
    let (status, _) = api
        .patch(
            &format!("/v0/{base}/{tasks}"),
            json!({"records": [{"id": existing[1], "fields": {"No such field": "x"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/v0/{base}/{tasks}?records%5B%5D={}", created[1]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let written = api.fake.counters().records_written;
    let expected: std::collections::BTreeMap<String, u64> = [
        (created[0].clone(), 1),
        (created[1].clone(), 2),
        (existing[0].clone(), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(written, expected);
}

/// `peak_api_requests_per_second` is the most API requests received within any one second,
/// downloads left out.
#[tokio::test]
async fn the_peak_request_rate_counts_api_requests_within_one_second() {
    let api = Api::unlimited(Preset::Demo).await;
    let base = api.base();
    assert_eq!(api.fake.counters().peak_api_requests_per_second, 0);
    for _ in 0..7 {
        let (status, _) = api.get(&format!("/v0/meta/bases/{base}/tables")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let peak = api.fake.counters().peak_api_requests_per_second;
    // Seven requests in well under a second (a slow machine may spread them over two).
    assert!((4..=7).contains(&peak), "{peak}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _) = api.get(&format!("/v0/meta/bases/{base}/tables")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.fake.counters().peak_api_requests_per_second, peak);
}

#[tokio::test]
async fn comments_list_newest_first_in_pages_and_are_created_as_the_token_user() {
    let api = Api::unlimited(Preset::Zoo).await;
    let base = api.base();
    let (table, _) = api.table(&base, "Everything 🦓");
    // The zoo's comments: listings count them with recordMetadata[]=commentCount only.
    let (status, page) = api
        .get(&format!("/v0/{base}/{table}?recordMetadata[]=commentCount"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let counted: Vec<(String, u64)> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["commentCount"].as_u64().unwrap(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let mut expected: Vec<(String, u64)> = api
        .fake
        .comment_counts(&base, &table)
        .into_iter()
        .map(|(id, n)| (id, n as u64))
        .collect();
    let mut sorted = counted.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);
    assert!(expected.iter().any(|(_, n)| *n == 3), "{expected:?}");
    let (_, plain) = api.get(&format!("/v0/{base}/{table}")).await;
    assert!(plain["records"][0].get("commentCount").is_none());

    // The thread of three: newest first, with a reply and a mention.
    let (record, _) = expected.iter().find(|(_, n)| *n == 3).unwrap().clone();
    let path = format!("/v0/{base}/{table}/{record}/comments");
    let (status, listed) = api.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let listed = listed["comments"].as_array().unwrap().clone();
    let mut oldest_first = api.fake.comments(&base, &table, &record);
    assert_eq!(oldest_first.len(), 3);
    oldest_first.reverse();
    assert_eq!(listed, oldest_first);
    assert!(
        listed
            .iter()
            .all(|c| is_airtable_id(c["id"].as_str().unwrap(), "com"))
    );
    let reply = listed
        .iter()
        .find(|c| c.get("parentCommentId").is_some())
        .unwrap();
    let mentioned = api.fake.users()[2]["id"].as_str().unwrap().to_owned();
    assert_eq!(reply["mentioned"][&mentioned]["type"], "user");
    assert_eq!(reply["lastUpdatedTime"], Value::Null);

    // Pages of 2 with an offset; 101 is too many.
    let (_, first) = api.get(&format!("{path}?pageSize=2")).await;
    assert_eq!(first["comments"].as_array().unwrap().len(), 2);
    let offset = first["offset"].as_str().unwrap().to_owned();
    let (_, second) = api.get(&format!("{path}?pageSize=2&offset={offset}")).await;
    assert_eq!(second["comments"].as_array().unwrap().len(), 1);
    assert!(second.get("offset").is_none());
    assert_eq!(second["comments"][0], listed[2]);
    let (status, body) = api.get(&format!("{path}?pageSize=101")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Create: the token's user is the author; a reply names an existing parent.
    let (status, created) = api
        .post(
            &path,
            json!({"text": "new one", "parentCommentId": listed[0]["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["author"], api.fake.users()[0]);
    assert_eq!(created["parentCommentId"], listed[0]["id"]);
    let (status, body) = api
        .post(
            &path,
            json!({"text": "x", "parentCommentId": "comAAAAAAAAAAAAAA"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = api.post(&path, json!({"text": ""})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api.fake.comments(&base, &table, &record).len(), 4);
    assert_eq!(api.fake.counters().comments_created, 1);
    assert_eq!(api.fake.counters().requests(Route::CreateComment), 3);

    // Unknown records are 404; a token without the comment scopes is 403.
    let (status, _) = api
        .get(&format!("/v0/{base}/{table}/recAAAAAAAAAAAAAA/comments"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let reader = api.fake.add_token(&["data.records:read"], None);
    for method in [Method::GET, Method::POST] {
        let response = api
            .http
            .request(method, format!("{}{path}", api.fake.url()))
            .bearer_auth(&reader)
            .json(&json!({"text": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    // Deleting the record deletes its comments.
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/v0/{base}/{table}/{record}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(api.fake.comments(&base, &table, &record).is_empty());
}
