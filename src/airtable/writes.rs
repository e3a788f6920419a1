//! Writing: records (in batches of at most 10), tables, fields, bases and attachment uploads.
//!
//! Writes share the per-base pacing of reads. Updates (`PATCH`) are idempotent and retried like
//! reads. Creations are not: a create that timed out may have created the records, so it is
//! retried only when Airtable surely did not apply it (no connection, or a 429/503 answer), and
//! otherwise fails with [`AirtableError::WriteOutcomeUnknown`]. Callers that need exactly-once
//! creation must reconcile after that error (restore does, by listing the target table). Writes
//! of more than 10 records are split into requests of 10, sent one after the other; if one
//! fails, the earlier ones stay applied, so callers that must know exactly what exists after a
//! failure should pass at most 10 records per call.

use base64::Engine;
use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Call, Client, Host};
use super::error::AirtableError;
use super::model::{
    CreatedBase, FieldSchema, NameDescriptionUpdate, NewField, NewRecord, NewTable, Record,
    RecordUpdate, TableSchema,
};

/// Records per create or update request, Airtable's maximum.
pub const MAX_RECORDS_PER_WRITE: usize = 10;

/// The largest file `uploadAttachment` takes, in bytes before base64 encoding. Airtable says
/// "5 MB" without saying which; this is the stricter reading, 5,000,000 bytes.
pub const MAX_UPLOAD_BYTES: usize = 5_000_000;

#[derive(Deserialize)]
struct RecordsAnswer {
    records: Vec<Record>,
}

/// How a batch of record writes is sent.
struct RecordWrite {
    operation: &'static str,
    method: Method,
    idempotent: bool,
    /// `performUpsert`, for upserts.
    upsert: Option<Value>,
}

fn json_body(value: &impl serde::Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("request bodies serialize"))
}

impl Client {
    /// Creates records, at most 10 per request (more are split; see the module docs). Cells may
    /// be keyed by field id or name; the answer is keyed by field id.
    pub async fn create_records(
        &self,
        base_id: &str,
        table: &str,
        records: &[NewRecord],
        typecast: bool,
    ) -> Result<Vec<Record>, AirtableError> {
        let write = RecordWrite {
            operation: "create records",
            method: Method::POST,
            idempotent: false,
            upsert: None,
        };
        self.write_records(base_id, table, records, typecast, write)
            .await
    }

    /// Changes the given cells of existing records (`PATCH`), at most 10 per request (more are
    /// split).
    pub async fn update_records(
        &self,
        base_id: &str,
        table: &str,
        updates: &[RecordUpdate],
        typecast: bool,
    ) -> Result<Vec<Record>, AirtableError> {
        let write = RecordWrite {
            operation: "update records",
            method: Method::PATCH,
            idempotent: true,
            upsert: None,
        };
        self.write_records(base_id, table, updates, typecast, write)
            .await
    }

    /// Creates or updates records matched on `merge_on` (1 to 3 field ids or names), at most 10
    /// per request (more are split). A record whose merge fields match no existing record is
    /// created, one that matches one record updates it. Unlike [`Client::create_records`] this is
    /// idempotent, so it is retried after an unknown outcome: sending the same batch twice
    /// creates nothing twice.
    pub async fn upsert_records(
        &self,
        base_id: &str,
        table: &str,
        records: &[NewRecord],
        merge_on: &[&str],
        typecast: bool,
    ) -> Result<Vec<Record>, AirtableError> {
        let write = RecordWrite {
            operation: "upsert records",
            method: Method::PATCH,
            idempotent: true,
            upsert: Some(json!({ "fieldsToMergeOn": merge_on })),
        };
        self.write_records(base_id, table, records, typecast, write)
            .await
    }

    /// Creates a comment on a record (`POST /v0/{base}/{table}/{record}/comments`), as a reply
    /// to `parent` when given: the comment as Airtable answered it. Its author is the token's
    /// user and its time now; the API cannot set either. Not idempotent: an unknown outcome is
    /// [`AirtableError::WriteOutcomeUnknown`]. Needs the `data.recordComments:write` scope.
    pub async fn create_comment(
        &self,
        base_id: &str,
        table: &str,
        record_id: &str,
        text: &str,
        parent: Option<&str>,
    ) -> Result<Value, AirtableError> {
        let mut body = json!({ "text": text });
        if let Some(parent) = parent {
            body["parentCommentId"] = json!(parent);
        }
        self.execute_json(Call {
            operation: "create a comment",
            method: Method::POST,
            url: self.url(Host::Api, &["v0", base_id, table, record_id, "comments"]),
            body: Some(json_body(&body)),
            base: Some(base_id),
            scope: "data.recordComments:write",
            not_found: format!("record `{record_id}` in table `{table}` of base `{base_id}`"),
            idempotent: false,
        })
        .await
    }

    /// Sends `records` in batches of at most 10, in order; returns the records as answered.
    async fn write_records<T: serde::Serialize>(
        &self,
        base_id: &str,
        table: &str,
        records: &[T],
        typecast: bool,
        write: RecordWrite,
    ) -> Result<Vec<Record>, AirtableError> {
        let mut written = Vec::with_capacity(records.len());
        for batch in records.chunks(MAX_RECORDS_PER_WRITE) {
            let mut body = json!({
                "records": batch,
                "typecast": typecast,
                "returnFieldsByFieldId": true,
            });
            if let Some(upsert) = &write.upsert {
                body["performUpsert"] = upsert.clone();
            }
            let answer: RecordsAnswer = self
                .execute_json(Call {
                    operation: write.operation,
                    method: write.method.clone(),
                    url: self.url(Host::Api, &["v0", base_id, table]),
                    body: Some(json_body(&body)),
                    base: Some(base_id),
                    scope: "data.records:write",
                    not_found: format!("table `{table}` in base `{base_id}`"),
                    idempotent: write.idempotent,
                })
                .await?;
            written.extend(answer.records);
        }
        Ok(written)
    }

    /// Deletes records, at most 10 per request (more are split). Not retried after an unknown
    /// outcome: a deleted record cannot be deleted again, so the caller re-reads instead.
    pub async fn delete_records(
        &self,
        base_id: &str,
        table: &str,
        ids: &[String],
    ) -> Result<(), AirtableError> {
        for batch in ids.chunks(MAX_RECORDS_PER_WRITE) {
            let mut url = self.url(Host::Api, &["v0", base_id, table]);
            {
                let mut query = url.query_pairs_mut();
                for id in batch {
                    query.append_pair("records[]", id);
                }
            }
            let _: Value = self
                .execute_json(Call {
                    operation: "delete records",
                    method: Method::DELETE,
                    url,
                    body: None,
                    base: Some(base_id),
                    scope: "data.records:write",
                    not_found: format!("a record of table `{table}` in base `{base_id}`"),
                    idempotent: false,
                })
                .await?;
        }
        Ok(())
    }

    /// Creates a table; its first field becomes the primary field.
    pub async fn create_table(
        &self,
        base_id: &str,
        table: &NewTable,
    ) -> Result<TableSchema, AirtableError> {
        self.execute_json(Call {
            operation: "create a table",
            method: Method::POST,
            url: self.url(Host::Api, &["v0", "meta", "bases", base_id, "tables"]),
            body: Some(json_body(table)),
            base: Some(base_id),
            scope: "schema.bases:write",
            not_found: format!("base `{base_id}`"),
            idempotent: false,
        })
        .await
    }

    /// Renames a table or changes its description.
    pub async fn update_table(
        &self,
        base_id: &str,
        table_id: &str,
        update: &NameDescriptionUpdate,
    ) -> Result<TableSchema, AirtableError> {
        self.execute_json(Call {
            operation: "update a table",
            method: Method::PATCH,
            url: self.url(
                Host::Api,
                &["v0", "meta", "bases", base_id, "tables", table_id],
            ),
            body: Some(json_body(update)),
            base: Some(base_id),
            scope: "schema.bases:write",
            not_found: format!("table `{table_id}` in base `{base_id}`"),
            idempotent: true,
        })
        .await
    }

    /// Creates a field. For a link field the answer's options carry the `inverseLinkFieldId` of
    /// the field Airtable created in the linked table.
    pub async fn create_field(
        &self,
        base_id: &str,
        table_id: &str,
        field: &NewField,
    ) -> Result<FieldSchema, AirtableError> {
        self.execute_json(Call {
            operation: "create a field",
            method: Method::POST,
            url: self.url(
                Host::Api,
                &["v0", "meta", "bases", base_id, "tables", table_id, "fields"],
            ),
            body: Some(json_body(field)),
            base: Some(base_id),
            scope: "schema.bases:write",
            not_found: format!("table `{table_id}` in base `{base_id}`"),
            idempotent: false,
        })
        .await
    }

    /// Renames a field or changes its description.
    pub async fn update_field(
        &self,
        base_id: &str,
        table_id: &str,
        field_id: &str,
        update: &NameDescriptionUpdate,
    ) -> Result<FieldSchema, AirtableError> {
        self.execute_json(Call {
            operation: "update a field",
            method: Method::PATCH,
            url: self.url(
                Host::Api,
                &[
                    "v0", "meta", "bases", base_id, "tables", table_id, "fields", field_id,
                ],
            ),
            body: Some(json_body(update)),
            base: Some(base_id),
            scope: "schema.bases:write",
            not_found: format!("field `{field_id}` in table `{table_id}` of base `{base_id}`"),
            idempotent: true,
        })
        .await
    }

    /// Creates a base in a workspace, with at least one table.
    pub async fn create_base(
        &self,
        workspace_id: &str,
        name: &str,
        tables: &[NewTable],
    ) -> Result<CreatedBase, AirtableError> {
        let body = json!({ "name": name, "workspaceId": workspace_id, "tables": tables });
        self.execute_json(Call {
            operation: "create a base",
            method: Method::POST,
            url: self.url(Host::Api, &["v0", "meta", "bases"]),
            body: Some(json_body(&body)),
            base: None,
            scope: "schema.bases:write",
            not_found: format!("workspace `{workspace_id}`"),
            idempotent: false,
        })
        .await
    }

    /// Appends a file to an attachment cell through the content host's `uploadAttachment`
    /// (base64 in JSON). Files over [`MAX_UPLOAD_BYTES`] are refused before sending. Returns the
    /// record with the whole cell (keyed by field id).
    pub async fn upload_attachment(
        &self,
        base_id: &str,
        record_id: &str,
        field: &str,
        content_type: &str,
        filename: &str,
        bytes: &[u8],
    ) -> Result<Record, AirtableError> {
        if bytes.len() > MAX_UPLOAD_BYTES {
            return Err(AirtableError::UploadTooLarge {
                filename: filename.to_owned(),
                size: bytes.len(),
                limit: MAX_UPLOAD_BYTES,
            });
        }
        let body: Value = json!({
            "contentType": content_type,
            "file": base64::engine::general_purpose::STANDARD.encode(bytes),
            "filename": filename,
        });
        self.execute_json(Call {
            operation: "upload an attachment",
            method: Method::POST,
            url: self.url(
                Host::Content,
                &["v0", base_id, record_id, field, "uploadAttachment"],
            ),
            body: Some(json_body(&body)),
            base: Some(base_id),
            scope: "data.records:write",
            not_found: format!("field `{field}` of record `{record_id}` in base `{base_id}`"),
            idempotent: false,
        })
        .await
    }
}
