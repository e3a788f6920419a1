//! The layout of an Airtable snapshot (docs/FORMAT.md, "Airtable snapshots"), as types: the
//! names of the root tree's nodes, the fan-out of attachments into subtrees, the JSON kept in
//! each node's `meta`, and the manifest's `source` and `summary`. The backup builds its tree
//! with the constructors here, and every reader (`stored.rs`, `snapshots.rs`, the CLI's
//! `snapshots` and `show`, `check`, `repair`) parses with the types here, so this module is
//! the one place that knows the layout:
//!
//! ```text
//! schema.json                      the meta API's answer                  (no meta)
//! tables/                          TablesMeta
//!   <table id>.jsonl               records, one per line                  TableMeta
//! attachments/                     AttachmentsMeta
//!   <c>/                           c = attachment_group(id)               AttachmentsMeta
//!     <attachment id>              the attachment's bytes                 AttachmentMeta
//! comments/                        only when comments were backed up      CommentsDirMeta
//!   <table id>.jsonl               one line per record with comments      CommentsMeta
//! ```
//!
//! Everything is stored as a [`serde_json::Value`], whose objects keep their keys sorted, so
//! the bytes do not depend on the order of the fields below. Readers ignore keys they do not
//! know and take JSON they cannot parse as absent ([`LayoutJson::from_json`] gives `None`),
//! as they always have: a snapshot stays readable by the code that wrote it and by later code.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::id::BlobId;
use crate::repo::pack::BlobKind;
use crate::repo::snapshot::{Node, NodeKind, Snapshot, Tree};

/// The root tree's file holding the base schema (`GET /v0/meta/bases/{base}/tables`).
pub(crate) const SCHEMA_FILE: &str = "schema.json";
/// The root tree's folder of table files.
pub(crate) const TABLES_DIR: &str = "tables";
/// The root tree's folder of attachment groups.
pub(crate) const ATTACHMENTS_DIR: &str = "attachments";
/// The root tree's folder of comment files (absent when comments were not backed up).
pub(crate) const COMMENTS_DIR: &str = "comments";
/// The extension of a table file (and of a comments file).
const TABLE_FILE_EXTENSION: &str = ".jsonl";
/// [`Source::kind`] of an Airtable base snapshot.
pub(crate) const SOURCE_KIND: &str = "airtable-base";

/// Layout JSON: written as a [`Value`] (object keys sorted), read leniently.
pub(crate) trait LayoutJson: Serialize + DeserializeOwned {
    /// The value to store.
    fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("layout types serialize")
    }

    /// The stored value parsed, unknown keys ignored; `None` when it is not of this type.
    fn from_json(value: &Value) -> Option<Self> {
        Self::deserialize(value).ok()
    }
}

/// The `meta` of a table file (`tables/<table id>.jsonl`), e.g.
/// `{"excluded_fields": ["fldXXXXXXXXXXXXXX"], "id": "tblXXXXXXXXXXXXXX", "name": "Tasks",
/// "records": 120}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableMeta {
    /// The table's id (`tbl…`).
    pub id: String,
    /// The table's name when it was backed up.
    pub name: String,
    /// How many records (lines) the file holds.
    pub records: u64,
    /// The ids of the table's fields that the backup left out (`exclude_fields`), in schema
    /// order: their cells are not in the file, and exports and restores leave them out.
    ///
    /// Snapshots written before this list existed hold a number here (how many fields were
    /// left out, not which): it reads as an empty list, so nothing is left out that the
    /// records do not show; those fields come back empty. A missing key reads the same way.
    #[serde(default, deserialize_with = "field_ids")]
    pub excluded_fields: Vec<String>,
}

impl LayoutJson for TableMeta {}

/// `excluded_fields`: a list of field ids, or (older snapshots) a count, which names none.
fn field_ids<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Number(_) | Value::Null => Ok(Vec::new()),
        ids => Vec::<String>::deserialize(ids).map_err(serde::de::Error::custom),
    }
}

impl TableMeta {
    /// Sets `records` in a stored table meta to `records`, keeping every other key as it is
    /// (including ones this version does not know). Leaves a meta without `records` alone.
    pub(crate) fn set_records(meta: &mut Value, records: u64) {
        if let Some(object) = meta.as_object_mut()
            && let Some(value) = object.get_mut("records")
        {
            *value = records.into();
        }
    }
}

/// The `meta` of the `tables/` folder: `{"tables": 3}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TablesMeta {
    /// How many table files the folder holds.
    pub tables: u64,
}

impl LayoutJson for TablesMeta {}

/// The `meta` of the `attachments/` folder and of each of its groups: `{"attachments": 80}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AttachmentsMeta {
    /// How many attachments the folder holds (in all its groups, for `attachments/`).
    pub attachments: u64,
}

impl LayoutJson for AttachmentsMeta {}

/// The `meta` of an attachment file (`attachments/<c>/<attachment id>`), e.g.
/// `{"filename": "logo.png", "type": "image/png"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AttachmentMeta {
    /// The filename Airtable gave when it was backed up.
    pub filename: String,
    /// Its MIME type (`null` when Airtable gave none).
    #[serde(rename = "type")]
    pub content_type: Option<String>,
}

impl LayoutJson for AttachmentMeta {}

/// The `meta` of a comments file (`comments/<table id>.jsonl`), e.g. `{"comments": 7, "id":
/// "tblXXXXXXXXXXXXXX", "records": 3}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CommentsMeta {
    /// The table's id (`tbl…`).
    pub id: String,
    /// How many records (lines) the file holds: those with at least one comment.
    pub records: u64,
    /// How many comments, in all.
    pub comments: u64,
}

impl LayoutJson for CommentsMeta {}

/// The `meta` of the `comments/` folder: `{"comments": 7}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CommentsDirMeta {
    /// How many comments its files hold, in all.
    pub comments: u64,
}

impl LayoutJson for CommentsDirMeta {}

/// Why a snapshot holds no comments although the base may have some (the summary's
/// `comments_skipped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommentsSkipped {
    /// `--no-comments`, or `comments: false` in the configuration.
    TurnedOff,
    /// The token lacks the `data.recordComments:read` scope.
    NoScope,
}

impl CommentsSkipped {
    /// The reason, for people.
    pub fn describe(self) -> &'static str {
        match self {
            CommentsSkipped::TurnedOff => {
                "comments were turned off (--no-comments or `comments: false`)"
            }
            CommentsSkipped::NoScope => {
                "the token lacks the data.recordComments:read scope; comments are not in this \
                 snapshot (add the scope, or pass --no-comments to stop this warning)"
            }
        }
    }
}

/// A snapshot manifest's `source` for an Airtable base, e.g. `{"base_id":
/// "appXXXXXXXXXXXXXX", "base_name": "CRM", "kind": "airtable-base"}`. Its strings borrow
/// from the manifest it is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Source<'a> {
    /// [`SOURCE_KIND`]. Readers do not require it: a `source` with a `base_id` is a base's.
    #[serde(default)]
    pub kind: &'a str,
    /// The base (`app…`).
    pub base_id: &'a str,
    /// The base's name when it was backed up (its id when its name could not be read).
    #[serde(default)]
    pub base_name: &'a str,
}

impl<'a> Source<'a> {
    /// The source of a snapshot of base `base_id`.
    pub(crate) fn airtable_base(base_id: &'a str, base_name: &'a str) -> Source<'a> {
        Source {
            kind: SOURCE_KIND,
            base_id,
            base_name,
        }
    }

    /// The value to store as the manifest's `source`.
    pub(crate) fn to_json(self) -> Value {
        serde_json::to_value(self).expect("layout types serialize")
    }

    /// A stored `source` parsed, unknown keys ignored; `None` when it is not a base's.
    pub(crate) fn from_json(value: &'a Value) -> Option<Source<'a>> {
        Source::deserialize(value).ok()
    }

    /// The snapshot's source, if it is an Airtable base's.
    pub(crate) fn of(snapshot: &'a Snapshot) -> Option<Source<'a>> {
        Source::from_json(&snapshot.source)
    }
}

/// The base a snapshot belongs to (its source's `base_id`).
pub(crate) fn base_id(snapshot: &Snapshot) -> Option<&str> {
    Source::of(snapshot).map(|s| s.base_id)
}

/// A snapshot manifest's `summary`, e.g. `{"attachment_bytes": 1048576, "attachments": 80,
/// "records": 1200, "size": 1310720, "tables": 3}`. Informative only: listings show it.
/// A missing key reads as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct SnapshotSummary {
    /// Tables backed up.
    pub tables: u64,
    /// Records in all tables.
    pub records: u64,
    /// Attachments stored.
    pub attachments: u64,
    /// Their bytes.
    pub attachment_bytes: u64,
    /// Bytes of every file of the snapshot (schema, tables, attachments, comments) before
    /// deduplication and compression.
    pub size: u64,
    /// Record comments stored (0 in snapshots written before comments were backed up).
    pub comments: u64,
    /// Why the snapshot holds no comments, when they were not backed up; absent when they
    /// were (and in snapshots written before comments were backed up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comments_skipped: Option<CommentsSkipped>,
}

impl LayoutJson for SnapshotSummary {}

impl SnapshotSummary {
    /// The snapshot's summary; zeros when it has none.
    pub(crate) fn of(snapshot: &Snapshot) -> SnapshotSummary {
        SnapshotSummary::from_json(&snapshot.summary).unwrap_or_default()
    }
}

/// The name of table `table_id`'s file in `tables/`.
pub(crate) fn table_file(table_id: &str) -> String {
    format!("{table_id}{TABLE_FILE_EXTENSION}")
}

/// Whether a file name is a table file's (JSON lines of records).
pub(crate) fn is_table_file(name: &str) -> bool {
    name.ends_with(TABLE_FILE_EXTENSION)
}

/// The group (subtree of `attachments/`) that holds an attachment: the fourth character of its
/// id (the first after `att`), `_` for an id shorter than that. One new attachment thus
/// rewrites one small subtree, not one tree listing every attachment.
pub(crate) fn attachment_group(attachment_id: &str) -> String {
    attachment_id
        .chars()
        .nth(3)
        .map_or_else(|| "_".to_owned(), String::from)
}

/// The root tree's `schema.json` node.
pub(crate) fn schema_file(root: &Tree) -> Option<&Node> {
    root.nodes.iter().find(|n| n.name == SCHEMA_FILE)
}

/// The `tables/` folder of a root tree.
pub(crate) fn tables_dir(root: &Tree) -> Option<BlobId> {
    subtree(root, TABLES_DIR)
}

/// The `comments/` folder of a root tree; `None` when the snapshot holds no comments.
pub(crate) fn comments_dir(root: &Tree) -> Option<BlobId> {
    subtree(root, COMMENTS_DIR)
}

/// The `attachments/` folder of a root tree.
pub(crate) fn attachments_dir(root: &Tree) -> Option<BlobId> {
    subtree(root, ATTACHMENTS_DIR)
}

fn subtree(tree: &Tree, name: &str) -> Option<BlobId> {
    tree.nodes
        .iter()
        .find_map(|n| match (&n.kind, n.name == name) {
            (NodeKind::Dir { subtree }, true) => Some(*subtree),
            _ => None,
        })
}

/// The root tree of a snapshot: the schema file, `tables/`, `attachments/` and, when
/// comments were backed up, `comments/`.
pub(crate) fn root_tree(
    schema: (u64, Vec<BlobId>),
    tables: (BlobId, TablesMeta),
    attachments: (BlobId, AttachmentsMeta),
    comments: Option<(BlobId, CommentsDirMeta)>,
) -> Tree {
    let (size, content) = schema;
    let comments = comments.map(|(subtree, meta)| Node {
        name: COMMENTS_DIR.into(),
        kind: NodeKind::Dir { subtree },
        meta: meta.to_json(),
    });
    let mut nodes = vec![
        Node {
            name: SCHEMA_FILE.into(),
            kind: NodeKind::File {
                size,
                blob_kind: BlobKind::Meta,
                content,
            },
            meta: Value::Null,
        },
        Node {
            name: TABLES_DIR.into(),
            kind: NodeKind::Dir { subtree: tables.0 },
            meta: tables.1.to_json(),
        },
        Node {
            name: ATTACHMENTS_DIR.into(),
            kind: NodeKind::Dir {
                subtree: attachments.0,
            },
            meta: attachments.1.to_json(),
        },
    ];
    nodes.extend(comments);
    Tree::new(nodes)
}

/// The node of a table's comments file in `comments/` (named like its table file).
pub(crate) fn comments_node(meta: &CommentsMeta, size: u64, content: Vec<BlobId>) -> Node {
    meta_file_node(&meta.id, size, content, meta.to_json())
}

/// The node of a table file in `tables/`.
pub(crate) fn table_node(meta: &TableMeta, size: u64, content: Vec<BlobId>) -> Node {
    meta_file_node(&meta.id, size, content, meta.to_json())
}

/// A `<table id>.jsonl` file of meta blobs with its node meta.
fn meta_file_node(table_id: &str, size: u64, content: Vec<BlobId>, meta: Value) -> Node {
    Node {
        name: table_file(table_id),
        kind: NodeKind::File {
            size,
            blob_kind: BlobKind::Meta,
            content,
        },
        meta,
    }
}

/// The node of an attachment file in its group.
pub(crate) fn attachment_node(
    id: &str,
    meta: &AttachmentMeta,
    size: u64,
    content: Vec<BlobId>,
) -> Node {
    Node {
        name: id.to_owned(),
        kind: NodeKind::File {
            size,
            blob_kind: BlobKind::Data,
            content,
        },
        meta: meta.to_json(),
    }
}

/// The node of an attachment group (named by [`attachment_group`]) in `attachments/`.
pub(crate) fn attachment_group_node(group: String, subtree: BlobId, meta: AttachmentsMeta) -> Node {
    Node {
        name: group,
        kind: NodeKind::Dir { subtree },
        meta: meta.to_json(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The bytes written are those of the string-keyed JSON written before these types.
    #[test]
    fn stored_json_keeps_its_bytes() {
        let table = TableMeta {
            id: "tblA".into(),
            name: "Tasks".into(),
            records: 3,
            excluded_fields: vec!["fldB".into()],
        };
        assert_eq!(
            serde_json::to_string(&table.to_json()).unwrap(),
            r#"{"excluded_fields":["fldB"],"id":"tblA","name":"Tasks","records":3}"#
        );
        let attachment = AttachmentMeta {
            filename: "a.png".into(),
            content_type: None,
        };
        assert_eq!(
            attachment.to_json(),
            json!({"filename": "a.png", "type": null})
        );
        assert_eq!(
            serde_json::to_string(&Source::airtable_base("appX", "CRM").to_json()).unwrap(),
            r#"{"base_id":"appX","base_name":"CRM","kind":"airtable-base"}"#
        );
        let summary = SnapshotSummary {
            tables: 1,
            records: 2,
            attachments: 3,
            attachment_bytes: 4,
            size: 5,
            comments: 6,
            comments_skipped: None,
        };
        assert_eq!(
            serde_json::to_string(&summary.to_json()).unwrap(),
            r#"{"attachment_bytes":4,"attachments":3,"comments":6,"records":2,"size":5,"tables":1}"#
        );
        let skipped = SnapshotSummary {
            comments_skipped: Some(CommentsSkipped::NoScope),
            ..SnapshotSummary::default()
        };
        assert_eq!(skipped.to_json()["comments_skipped"], json!("no_scope"));
        assert_eq!(
            SnapshotSummary::from_json(&skipped.to_json()),
            Some(skipped)
        );
        assert_eq!(
            CommentsMeta {
                id: "tblA".into(),
                records: 1,
                comments: 2
            }
            .to_json(),
            json!({"comments": 2, "id": "tblA", "records": 1})
        );
        assert_eq!(TablesMeta { tables: 2 }.to_json(), json!({"tables": 2}));
        assert_eq!(
            AttachmentsMeta { attachments: 2 }.to_json(),
            json!({"attachments": 2})
        );
    }

    #[test]
    fn an_old_count_of_excluded_fields_names_none() {
        for old in [json!(2), json!(null)] {
            let meta = json!({"id": "tblA", "name": "T", "records": 1, "excluded_fields": old});
            assert_eq!(
                TableMeta::from_json(&meta).unwrap().excluded_fields,
                Vec::<String>::new()
            );
        }
        let missing = json!({"id": "tblA", "name": "T", "records": 1});
        assert!(
            TableMeta::from_json(&missing)
                .unwrap()
                .excluded_fields
                .is_empty()
        );
    }

    #[test]
    fn readers_ignore_unknown_keys() {
        let meta = json!({"id": "tblA", "name": "T", "records": 1, "excluded_fields": ["fldX"],
                          "later": {"anything": true}});
        let table = TableMeta::from_json(&meta).unwrap();
        assert_eq!(table.excluded_fields, ["fldX"]);
        let source = json!({"kind": "airtable-base", "base_id": "appX", "base_name": "N", "x": 1});
        assert_eq!(Source::from_json(&source).unwrap().base_id, "appX");
        assert!(Source::from_json(&json!({"kind": "other"})).is_none());
        assert_eq!(
            SnapshotSummary::from_json(&json!({"records": 5, "new": 1})).unwrap(),
            SnapshotSummary {
                records: 5,
                ..SnapshotSummary::default()
            }
        );
    }

    #[test]
    fn base_id_borrows_the_sources() {
        let mut snapshot = Snapshot {
            version: 1,
            time: String::new(),
            hostname: String::new(),
            program: String::new(),
            tree: BlobId::of(b""),
            source: Source::airtable_base("appX", "N").to_json(),
            tags: Vec::new(),
            partial: false,
            problems: Vec::new(),
            summary: Value::Null,
            rewritten: None,
            copy_of: None,
        };
        assert_eq!(base_id(&snapshot), Some("appX"));
        assert_eq!(Source::of(&snapshot).unwrap().base_name, "N");
        assert_eq!(SnapshotSummary::of(&snapshot), SnapshotSummary::default());
        snapshot.source = json!({"kind": "other"});
        assert_eq!(base_id(&snapshot), None);
    }

    #[test]
    fn set_records_changes_that_key_only() {
        let mut meta = json!({"id": "tblA", "records": 9, "excluded_fields": 2, "x": 1});
        TableMeta::set_records(&mut meta, 4);
        assert_eq!(
            meta,
            json!({"id": "tblA", "records": 4, "excluded_fields": 2, "x": 1})
        );
        let mut other = json!({"filename": "a"});
        TableMeta::set_records(&mut other, 4);
        assert_eq!(other, json!({"filename": "a"}));
    }

    #[test]
    fn attachments_fan_out_by_their_fourth_character() {
        assert_eq!(attachment_group("attQ1234567890123"), "Q");
        assert_eq!(attachment_group("at"), "_");
        assert_eq!(table_file("tblA"), "tblA.jsonl");
        assert!(is_table_file(&table_file("tblA")));
    }
}
