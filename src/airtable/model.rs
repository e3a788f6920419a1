//! The serde types for what Airtable sends and accepts.
//!
//! Cell values stay raw JSON ([`serde_json::Value`]): the backup stores them as they came and
//! the restore writes them back, so the client never interprets a cell. The base schema is kept
//! twice, as the exact JSON Airtable returned ([`BaseSchema::raw`], stored verbatim in
//! snapshots) and as a typed view ([`BaseSchema::tables`]) that ignores keys it does not know.
//! Field types are strings, not an enum, because Airtable adds new ones at any time.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A base the token can see, from `GET /v0/meta/bases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Base {
    /// `app…`
    pub id: String,
    /// The base's name.
    pub name: String,
    /// `none`, `read`, `comment`, `edit` or `create`.
    #[serde(default)]
    pub permission_level: Option<String>,
}

/// A base's schema, from `GET /v0/meta/bases/{baseId}/tables`.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseSchema {
    /// The response body exactly as Airtable returned it (`{"tables":[…]}`).
    pub raw: Value,
    /// The typed view of `raw`.
    pub tables: Vec<TableSchema>,
}

impl BaseSchema {
    /// Builds the typed view of a raw schema response.
    pub fn from_raw(raw: Value) -> Result<BaseSchema, serde_json::Error> {
        #[derive(Deserialize)]
        struct Tables {
            tables: Vec<TableSchema>,
        }
        let Tables { tables } = Tables::deserialize(&raw)?;
        Ok(BaseSchema { raw, tables })
    }

    /// The table with this id or name (ids first).
    pub fn table(&self, id_or_name: &str) -> Option<&TableSchema> {
        self.tables
            .iter()
            .find(|t| t.id == id_or_name)
            .or_else(|| self.tables.iter().find(|t| t.name == id_or_name))
    }
}

/// One table of a base schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableSchema {
    /// `tbl…`
    pub id: String,
    /// The table's name.
    pub name: String,
    /// The table's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The id of the primary field.
    pub primary_field_id: String,
    /// The fields, in the order Airtable lists them.
    #[serde(default)]
    pub fields: Vec<FieldSchema>,
    /// The views.
    #[serde(default)]
    pub views: Vec<ViewSchema>,
}

impl TableSchema {
    /// The field with this id or name (ids first).
    pub fn field(&self, id_or_name: &str) -> Option<&FieldSchema> {
        self.fields
            .iter()
            .find(|f| f.id == id_or_name)
            .or_else(|| self.fields.iter().find(|f| f.name == id_or_name))
    }
}

/// One field of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldSchema {
    /// `fld…`
    pub id: String,
    /// The field's name.
    pub name: String,
    /// The field type, e.g. `singleLineText`, `multipleRecordLinks`, or one not yet known.
    #[serde(rename = "type")]
    pub field_type: String,
    /// The field's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The type's options, raw (absent or null for many types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
}

impl FieldSchema {
    /// For a link field, the id of the inverse field Airtable created in the linked table.
    pub fn inverse_link_field_id(&self) -> Option<&str> {
        self.options.as_ref()?.get("inverseLinkFieldId")?.as_str()
    }
}

/// One view of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewSchema {
    /// `viw…`
    pub id: String,
    /// The view's name.
    pub name: String,
    /// `grid`, `form`, `calendar`, `gallery`, `kanban`, `timeline`, `block`, ...
    #[serde(rename = "type")]
    pub view_type: String,
    /// Visible fields, for grid views when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_field_ids: Option<Vec<String>>,
}

/// A record as Airtable returns it, cells keyed by field id (the client always asks for
/// `returnFieldsByFieldId`). Empty cells are absent from `fields`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// `rec…`
    pub id: String,
    /// When the record was created, ISO 8601 UTC as Airtable wrote it.
    pub created_time: String,
    /// The non-empty cells, raw.
    #[serde(default)]
    pub fields: Map<String, Value>,
}

impl Record {
    /// The attachments in a field of this record (empty if the cell is empty or holds something
    /// else).
    pub fn attachments(&self, field: &str) -> Vec<Attachment> {
        self.fields
            .get(field)
            .map(Attachment::list_from_cell)
            .unwrap_or_default()
    }
}

/// A record to create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewRecord {
    /// Cells keyed by field id or name.
    pub fields: Map<String, Value>,
}

/// A change to an existing record (`PATCH`: only the given cells change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordUpdate {
    /// `rec…`
    pub id: String,
    /// The cells to set, keyed by field id or name; `null` clears a cell.
    pub fields: Map<String, Value>,
}

/// The id of `value` if it is an attachment object: an object whose `id` starts with `att` and
/// that has a `filename` (in attachment fields and in lookups of them; docs/FORMAT.md).
pub fn attachment_id(value: &Value) -> Option<&str> {
    let object = value.as_object()?;
    let id = object.get("id")?.as_str()?;
    (id.starts_with("att") && object.contains_key("filename")).then_some(id)
}

/// An attachment object from a `multipleAttachments` cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// `att…`
    pub id: String,
    /// The download URL; it expires after a few hours.
    pub url: String,
    /// The file name (not unique).
    #[serde(default)]
    pub filename: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// MIME type.
    #[serde(default, rename = "type")]
    pub content_type: Option<String>,
    /// Image width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u64>,
    /// Image height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
}

impl Attachment {
    /// Reads the attachment objects of a cell; values that are not attachment objects are
    /// skipped.
    pub fn list_from_cell(cell: &Value) -> Vec<Attachment> {
        cell.as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| Attachment::deserialize(item).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Options for listing records. The client always sets `returnFieldsByFieldId=true` and pages
/// of 100.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRecordsOptions {
    /// Only these fields (ids or names); empty means all.
    pub fields: Vec<String>,
    /// Only the records of this view, in its order.
    pub view: Option<String>,
    /// Only records for which this formula is truthy.
    pub filter_by_formula: Option<String>,
    /// Records per page, 1..=100 (default 100).
    pub page_size: Option<u32>,
    /// Ask for each record's number of comments (`recordMetadata[]=commentCount`); read it
    /// with [`RecordPager::next_page_with_comment_counts`](super::RecordPager::next_page_with_comment_counts).
    pub comment_count: bool,
}

/// A field to create, in Airtable's write format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewField {
    /// The field's name.
    pub name: String,
    /// The field type (a creatable one).
    #[serde(rename = "type")]
    pub field_type: String,
    /// The description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The options in write format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
}

/// A table to create; the first field becomes the primary field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTable {
    /// The table's name.
    pub name: String,
    /// The description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The fields, primary first.
    pub fields: Vec<NewField>,
}

/// A rename or new description for a table or field; `None` leaves that part unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameDescriptionUpdate {
    /// The new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The new description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The answer to creating a base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedBase {
    /// `app…`
    pub id: String,
    /// The created tables.
    pub tables: Vec<TableSchema>,
}

/// The answer to `GET /v0/meta/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// `usr…`
    pub id: String,
    /// The token's scopes (sent for OAuth tokens only).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The user's email, with the `user.email:read` scope.
    #[serde(default)]
    pub email: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_keeps_raw_and_types_it() {
        let raw = json!({"tables":[{
            "id":"tblAAAAAAAAAAAAAA","name":"T","primaryFieldId":"fldAAAAAAAAAAAAAA",
            "fields":[
                {"id":"fldAAAAAAAAAAAAAA","name":"Name","type":"singleLineText"},
                {"id":"fldBBBBBBBBBBBBBB","name":"L","type":"multipleRecordLinks",
                 "options":{"linkedTableId":"tblAAAAAAAAAAAAAA","inverseLinkFieldId":"fldCCCCCCCCCCCCCC"}},
                {"id":"fldDDDDDDDDDDDDDD","name":"?","type":"somethingNew","options":null,"extra":1}
            ],
            "views":[{"id":"viwAAAAAAAAAAAAAA","name":"Grid view","type":"grid"}],
            "someNewKey": true
        }]});
        let schema = BaseSchema::from_raw(raw.clone()).unwrap();
        assert_eq!(schema.raw, raw);
        let table = schema.table("T").unwrap();
        assert_eq!(table.fields.len(), 3);
        assert_eq!(
            table.field("L").unwrap().inverse_link_field_id(),
            Some("fldCCCCCCCCCCCCCC")
        );
        assert_eq!(table.field("?").unwrap().field_type, "somethingNew");
    }

    #[test]
    fn attachments_from_a_cell() {
        let record: Record = serde_json::from_value(json!({
            "id":"recAAAAAAAAAAAAAA","createdTime":"2024-01-01T00:00:00.000Z",
            "fields":{"fldA":[{"id":"attAAAAAAAAAAAAAA","url":"https://x/y","filename":"a.png",
                               "size":3,"type":"image/png","width":1,"height":1}],
                      "fldB":"text"}
        }))
        .unwrap();
        let attachments = record.attachments("fldA");
        assert_eq!(attachments.len(), 1);
        assert_eq!(attachments[0].size, Some(3));
        assert!(record.attachments("fldB").is_empty());
        assert!(record.attachments("fldC").is_empty());
    }
}
