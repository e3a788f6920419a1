//! The fake's world: workspaces, users, bases, tables, fields, records and attachment content.
//!
//! Everything lives in one [`World`] behind a lock in the server. Records are stored compactly:
//! each keeps only its non-empty cells, keyed by the field's slot in its table (fields are never
//! deleted, so slots are stable). Computed values are not stored; `render` derives them when a
//! record is read. Attachment bytes are not stored in cells either: a cell holds attachment
//! metadata and the [`ContentEntry`] map says where the bytes come from.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use super::formula::Expr;
use super::ids::{IdGen, IdKind};

/// Field types the fake knows, named as the API names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldType {
    SingleLineText,
    Email,
    Url,
    MultilineText,
    RichText,
    PhoneNumber,
    Number,
    Percent,
    Currency,
    Duration,
    Rating,
    Checkbox,
    Date,
    DateTime,
    SingleSelect,
    MultipleSelects,
    SingleCollaborator,
    MultipleCollaborators,
    MultipleAttachments,
    Barcode,
    MultipleRecordLinks,
    Formula,
    Rollup,
    MultipleLookupValues,
    Count,
    AutoNumber,
    CreatedTime,
    LastModifiedTime,
    CreatedBy,
    LastModifiedBy,
    Button,
    AiText,
    ExternalSyncSource,
    ManualSort,
    /// A type the fake does not model, passed through as stored.
    Other(String),
}

impl FieldType {
    const NAMED: [(&'static str, FieldType); 34] = [
        ("singleLineText", FieldType::SingleLineText),
        ("email", FieldType::Email),
        ("url", FieldType::Url),
        ("multilineText", FieldType::MultilineText),
        ("richText", FieldType::RichText),
        ("phoneNumber", FieldType::PhoneNumber),
        ("number", FieldType::Number),
        ("percent", FieldType::Percent),
        ("currency", FieldType::Currency),
        ("duration", FieldType::Duration),
        ("rating", FieldType::Rating),
        ("checkbox", FieldType::Checkbox),
        ("date", FieldType::Date),
        ("dateTime", FieldType::DateTime),
        ("singleSelect", FieldType::SingleSelect),
        ("multipleSelects", FieldType::MultipleSelects),
        ("singleCollaborator", FieldType::SingleCollaborator),
        ("multipleCollaborators", FieldType::MultipleCollaborators),
        ("multipleAttachments", FieldType::MultipleAttachments),
        ("barcode", FieldType::Barcode),
        ("multipleRecordLinks", FieldType::MultipleRecordLinks),
        ("formula", FieldType::Formula),
        ("rollup", FieldType::Rollup),
        ("multipleLookupValues", FieldType::MultipleLookupValues),
        ("count", FieldType::Count),
        ("autoNumber", FieldType::AutoNumber),
        ("createdTime", FieldType::CreatedTime),
        ("lastModifiedTime", FieldType::LastModifiedTime),
        ("createdBy", FieldType::CreatedBy),
        ("lastModifiedBy", FieldType::LastModifiedBy),
        ("button", FieldType::Button),
        ("aiText", FieldType::AiText),
        ("externalSyncSource", FieldType::ExternalSyncSource),
        ("manualSort", FieldType::ManualSort),
    ];

    pub(crate) fn parse(name: &str) -> FieldType {
        FieldType::NAMED
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, field_type)| field_type.clone())
            .unwrap_or_else(|| FieldType::Other(name.to_owned()))
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            FieldType::Other(name) => name,
            known => FieldType::NAMED
                .iter()
                .find(|(_, field_type)| field_type == known)
                .map(|(name, _)| *name)
                .unwrap_or("unknown"),
        }
    }

    /// Whether cells of this type accept values through the records API.
    pub(crate) fn is_writable(&self) -> bool {
        matches!(
            self,
            FieldType::SingleLineText
                | FieldType::Email
                | FieldType::Url
                | FieldType::MultilineText
                | FieldType::RichText
                | FieldType::PhoneNumber
                | FieldType::Number
                | FieldType::Percent
                | FieldType::Currency
                | FieldType::Duration
                | FieldType::Rating
                | FieldType::Checkbox
                | FieldType::Date
                | FieldType::DateTime
                | FieldType::SingleSelect
                | FieldType::MultipleSelects
                | FieldType::SingleCollaborator
                | FieldType::MultipleCollaborators
                | FieldType::MultipleAttachments
                | FieldType::Barcode
                | FieldType::MultipleRecordLinks
        )
    }

    /// Whether the meta API can create a field of this type. Exactly the writable ones.
    pub(crate) fn is_creatable(&self) -> bool {
        self.is_writable()
    }

    /// Whether a created table may start with a field of this type (its primary field).
    pub(crate) fn is_valid_created_primary(&self) -> bool {
        matches!(
            self,
            FieldType::SingleLineText
                | FieldType::MultilineText
                | FieldType::Date
                | FieldType::DateTime
                | FieldType::PhoneNumber
                | FieldType::Email
                | FieldType::Url
                | FieldType::Number
                | FieldType::Currency
                | FieldType::Percent
                | FieldType::Duration
                | FieldType::Barcode
        )
    }
}

/// How a rollup combines the looked-up values. The API does not expose this, so it is internal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregate {
    Sum,
    Average,
    Max,
    ArrayJoin,
}

/// Internal behaviour of computed fields beyond what `options` shows.
#[derive(Debug, Clone)]
pub(crate) enum Behaviour {
    Plain,
    Formula(Expr),
    Rollup(Aggregate),
    Button {
        label: String,
        url_prefix: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) field_type: FieldType,
    pub(crate) description: Option<String>,
    /// Options in the API's read format; `None` is left out of the schema, while
    /// `Some(Value::Null)` is rendered as `"options": null` (manualSort does that).
    pub(crate) options: Option<Value>,
    pub(crate) behaviour: Behaviour,
}

impl Field {
    fn option_str(&self, key: &str) -> Option<&str> {
        self.options.as_ref()?.get(key)?.as_str()
    }

    /// For link fields: the table the links point to.
    pub(crate) fn linked_table_id(&self) -> Option<&str> {
        self.option_str("linkedTableId")
    }

    /// For link fields: the field holding the other side, absent for self-links.
    pub(crate) fn inverse_link_field_id(&self) -> Option<&str> {
        self.option_str("inverseLinkFieldId")
    }

    /// For lookups, rollups and counts: the link field in the same table they follow.
    pub(crate) fn record_link_field_id(&self) -> Option<&str> {
        self.option_str("recordLinkFieldId")
    }

    /// For lookups and rollups: the field read in the linked table.
    pub(crate) fn field_id_in_linked_table(&self) -> Option<&str> {
        self.option_str("fieldIdInLinkedTable")
    }

    /// For selects: the names of the choices.
    pub(crate) fn choice_names(&self) -> Vec<&str> {
        self.options
            .as_ref()
            .and_then(|options| options.get("choices"))
            .and_then(Value::as_array)
            .map(|choices| {
                choices
                    .iter()
                    .filter_map(|choice| choice["name"].as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn has_choice(&self, name: &str) -> bool {
        self.choice_names().contains(&name)
    }

    /// Adds a select choice (typecast does this), with a fresh `sel` id and no colour.
    pub(crate) fn add_choice(&mut self, ids: &mut IdGen, name: &str) {
        let id = ids.next(IdKind::Choice);
        let options = self.options.get_or_insert_with(|| json!({"choices": []}));
        if let Some(choices) = options.get_mut("choices").and_then(Value::as_array_mut) {
            choices.push(json!({"id": id, "name": name}));
        }
    }

    /// For rating fields: the maximum.
    pub(crate) fn rating_max(&self) -> u64 {
        self.options
            .as_ref()
            .and_then(|options| options["max"].as_u64())
            .unwrap_or(5)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct View {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) view_type: String,
}

/// An attachment in a cell. Its bytes are in [`World::content`] under the same id.
#[derive(Debug, Clone)]
pub(crate) struct Attachment {
    pub(crate) id: String,
    pub(crate) filename: String,
    pub(crate) mime: String,
    pub(crate) state: AttachmentState,
}

#[derive(Debug, Clone)]
pub(crate) enum AttachmentState {
    Ready {
        size: u64,
        width: Option<u32>,
        height: Option<u32>,
    },
    /// Written by `{url}` and not fetched yet: reads show the source URL and no size.
    Pending { source_url: String },
}

/// A stored, non-empty cell value.
#[derive(Debug, Clone)]
pub(crate) enum Cell {
    /// Any value kept in the API's read format.
    Json(Value),
    /// Linked record ids, in order.
    Links(Vec<String>),
    /// Collaborators, as indexes into [`World::users`] (compact: large bases have many).
    Users(Vec<u16>),
    Attachments(Vec<Attachment>),
}

#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) id: String,
    pub(crate) created_ms: i64,
    pub(crate) modified_ms: i64,
    pub(crate) auto_number: u64,
    pub(crate) created_by: u16,
    pub(crate) modified_by: u16,
    /// Non-empty cells by field slot, sorted by slot.
    pub(crate) cells: Vec<(u16, Cell)>,
}

impl Record {
    pub(crate) fn new(id: String, created_ms: i64, auto_number: u64, user: u16) -> Record {
        Record {
            id,
            created_ms,
            modified_ms: created_ms,
            auto_number,
            created_by: user,
            modified_by: user,
            cells: Vec::new(),
        }
    }

    pub(crate) fn cell(&self, slot: usize) -> Option<&Cell> {
        self.cells
            .binary_search_by_key(&(slot as u16), |(key, _)| *key)
            .ok()
            .map(|index| &self.cells[index].1)
    }

    pub(crate) fn cell_mut(&mut self, slot: usize) -> Option<&mut Cell> {
        match self
            .cells
            .binary_search_by_key(&(slot as u16), |(key, _)| *key)
        {
            Ok(index) => Some(&mut self.cells[index].1),
            Err(_) => None,
        }
    }

    /// Stores `cell` (or clears the slot for `None`). Empty values are never stored.
    pub(crate) fn set_cell(&mut self, slot: usize, cell: Option<Cell>) {
        let cell = cell.filter(|cell| !cell_is_empty(cell));
        match (
            self.cells
                .binary_search_by_key(&(slot as u16), |(key, _)| *key),
            cell,
        ) {
            (Ok(index), Some(cell)) => self.cells[index].1 = cell,
            (Ok(index), None) => {
                self.cells.remove(index);
            }
            (Err(index), Some(cell)) => self.cells.insert(index, (slot as u16, cell)),
            (Err(_), None) => {}
        }
    }

    pub(crate) fn links(&self, slot: usize) -> &[String] {
        match self.cell(slot) {
            Some(Cell::Links(links)) => links,
            _ => &[],
        }
    }
}

/// Whether a value counts as empty, so it is left out of `fields`.
pub(crate) fn json_is_empty(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn cell_is_empty(cell: &Cell) -> bool {
    match cell {
        Cell::Json(value) => json_is_empty(value),
        Cell::Links(links) => links.is_empty(),
        Cell::Users(users) => users.is_empty(),
        Cell::Attachments(attachments) => attachments.is_empty(),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) primary_field_id: String,
    pub(crate) fields: Vec<Field>,
    pub(crate) views: Vec<View>,
    /// Records by slot; deleted records leave `None` so slots (and list iterators) stay valid.
    pub(crate) records: Vec<Option<Record>>,
    pub(crate) record_slots: HashMap<String, u32>,
    pub(crate) live_records: usize,
    pub(crate) next_auto_number: u64,
    /// Comments by record id, oldest first; records without comments have no entry.
    pub(crate) comments: HashMap<String, Vec<Comment>>,
}

/// A comment on a record.
#[derive(Debug, Clone)]
pub(crate) struct Comment {
    pub(crate) id: String,
    /// Index in [`World::users`].
    pub(crate) author: u16,
    /// The text, mentions written `@[usrXXXXXXXXXXXXXX]`.
    pub(crate) text: String,
    pub(crate) created_ms: i64,
    /// When it was edited; `None` when never.
    pub(crate) updated_ms: Option<i64>,
    pub(crate) parent: Option<String>,
}

impl Table {
    pub(crate) fn new(
        id: String,
        name: String,
        description: Option<String>,
        grid_view_id: String,
    ) -> Table {
        Table {
            id,
            name,
            description,
            primary_field_id: String::new(),
            fields: Vec::new(),
            views: vec![View {
                id: grid_view_id,
                name: "Grid view".to_owned(),
                view_type: "grid".to_owned(),
            }],
            records: Vec::new(),
            record_slots: HashMap::new(),
            live_records: 0,
            next_auto_number: 1,
            comments: HashMap::new(),
        }
    }

    pub(crate) fn field_slot(&self, field_id: &str) -> Option<usize> {
        self.fields.iter().position(|field| field.id == field_id)
    }

    /// A field by id, or else by exact name, as record writes and `fields[]` accept both.
    pub(crate) fn field_slot_by_key(&self, key: &str) -> Option<usize> {
        self.field_slot(key)
            .or_else(|| self.fields.iter().position(|field| field.name == key))
    }

    pub(crate) fn field_by_id(&self, field_id: &str) -> Option<&Field> {
        self.fields.iter().find(|field| field.id == field_id)
    }

    pub(crate) fn primary_slot(&self) -> usize {
        self.field_slot(&self.primary_field_id).unwrap_or(0)
    }

    pub(crate) fn has_field_named(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|field| field.name.eq_ignore_ascii_case(name))
    }

    pub(crate) fn record(&self, record_id: &str) -> Option<&Record> {
        let slot = *self.record_slots.get(record_id)?;
        self.records[slot as usize].as_ref()
    }

    pub(crate) fn record_mut(&mut self, record_id: &str) -> Option<&mut Record> {
        let slot = *self.record_slots.get(record_id)?;
        self.records[slot as usize].as_mut()
    }

    pub(crate) fn push_record(&mut self, record: Record) {
        self.record_slots
            .insert(record.id.clone(), self.records.len() as u32);
        self.records.push(Some(record));
        self.live_records += 1;
    }

    pub(crate) fn remove_record(&mut self, record_id: &str) -> Option<Record> {
        let slot = self.record_slots.remove(record_id)?;
        self.live_records -= 1;
        self.comments.remove(record_id);
        self.records[slot as usize].take()
    }

    /// Live records in creation order.
    pub(crate) fn live(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().flatten()
    }

    /// How many comments a record has.
    pub(crate) fn comment_count(&self, record_id: &str) -> usize {
        self.comments.get(record_id).map_or(0, Vec::len)
    }

    pub(crate) fn next_auto_number(&mut self) -> u64 {
        let number = self.next_auto_number;
        self.next_auto_number += 1;
        number
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Base {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) tables: Vec<Table>,
}

impl Base {
    /// A table by id, or else by exact name (URLs may use either).
    pub(crate) fn table_index(&self, id_or_name: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|table| table.id == id_or_name)
            .or_else(|| {
                self.tables
                    .iter()
                    .position(|table| table.name == id_or_name)
            })
    }

    pub(crate) fn table_index_by_id(&self, table_id: &str) -> Option<usize> {
        self.tables.iter().position(|table| table.id == table_id)
    }

    /// The table holding `record_id`, for routes that name only the record.
    pub(crate) fn table_of_record(&self, record_id: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|table| table.record_slots.contains_key(record_id))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) email: String,
    pub(crate) name: String,
}

impl User {
    pub(crate) fn to_json(&self) -> Value {
        json!({"id": self.id, "email": self.email, "name": self.name})
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Workspace {
    pub(crate) id: String,
}

/// Where an attachment's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum ContentSource {
    /// Derived on the fly from the world seed and `key`; attachments sharing a key share bytes.
    /// `image` makes the bytes start like a PNG of that size.
    Generated {
        key: u64,
        image: Option<(u32, u32)>,
    },
    Memory(Bytes),
    /// Spilled to a file in the fake's scratch directory.
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub(crate) struct ContentEntry {
    pub(crate) size: u64,
    pub(crate) mime: String,
    pub(crate) source: ContentSource,
}

/// Everything the fake knows.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) ids: IdGen,
    pub(crate) users: Vec<User>,
    /// Index in `users` of the token's owner, who is the author of API writes.
    pub(crate) owner: u16,
    pub(crate) workspaces: Vec<Workspace>,
    pub(crate) bases: Vec<Base>,
    /// Attachment bytes by attachment id.
    pub(crate) content: HashMap<String, Arc<ContentEntry>>,
}

impl World {
    pub(crate) fn new(seed: u64) -> World {
        let mut ids = IdGen::new(seed);
        let people = [
            ("Fake Owner", "owner@example.com"),
            ("Ada Lovelace", "ada@example.com"),
            ("Grace Hopper", "grace@example.com"),
            ("Alan Turing", "alan@example.com"),
            ("Katherine Johnson", "katherine@example.com"),
        ];
        let users = people
            .iter()
            .map(|(name, email)| User {
                id: ids.next(IdKind::User),
                email: (*email).to_owned(),
                name: (*name).to_owned(),
            })
            .collect();
        let workspaces = vec![Workspace {
            id: ids.next(IdKind::Workspace),
        }];
        World {
            seed,
            ids,
            users,
            owner: 0,
            workspaces,
            bases: Vec::new(),
            content: HashMap::new(),
        }
    }

    pub(crate) fn base_index(&self, base_id: &str) -> Option<usize> {
        self.bases.iter().position(|base| base.id == base_id)
    }

    pub(crate) fn user_index(&self, id_or_email: &str) -> Option<u16> {
        self.users
            .iter()
            .position(|user| user.id == id_or_email || user.email.eq_ignore_ascii_case(id_or_email))
            .map(|index| index as u16)
    }

    /// A new, empty table with a fresh id and its default grid view.
    pub(crate) fn new_table(&mut self, name: &str, description: Option<String>) -> Table {
        let id = self.ids.next(IdKind::Table);
        let view_id = self.ids.next(IdKind::View);
        Table::new(id, name.to_owned(), description, view_id)
    }

    /// A field with a fresh id.
    pub(crate) fn new_field(
        &mut self,
        name: &str,
        field_type: FieldType,
        options: Option<Value>,
    ) -> Field {
        Field {
            id: self.ids.next(IdKind::Field),
            name: name.to_owned(),
            field_type,
            description: None,
            options,
            behaviour: Behaviour::Plain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_type_names_round_trip() {
        for (name, field_type) in FieldType::NAMED.iter() {
            assert_eq!(FieldType::parse(name), *field_type);
            assert_eq!(field_type.name(), *name);
        }
        assert_eq!(FieldType::parse("somethingNew").name(), "somethingNew");
        assert!(!FieldType::Formula.is_creatable());
        assert!(FieldType::MultipleRecordLinks.is_creatable());
    }

    #[test]
    fn records_never_store_empty_cells() {
        let mut record = Record::new("recAAAAAAAAAAAAAA".into(), 0, 1, 0);
        record.set_cell(3, Some(Cell::Json(json!("x"))));
        record.set_cell(1, Some(Cell::Json(json!(false))));
        record.set_cell(2, Some(Cell::Links(vec![])));
        assert_eq!(record.cells.len(), 1);
        record.set_cell(3, Some(Cell::Json(json!(""))));
        assert!(record.cells.is_empty());
    }
}
