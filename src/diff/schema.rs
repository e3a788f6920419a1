//! The schema half of a diff: tables and fields added, removed, renamed (same id, new name) and
//! changed (type or options). Pure.

use serde::Serialize;
use serde_json::Value;

use crate::airtable::{BaseSchema, FieldSchema};

/// A table, by id and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableRef {
    /// `tbl…`
    pub id: String,
    /// Its name (the newer one when it was renamed).
    pub name: String,
}

/// A field added or removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldRef {
    /// The table's id.
    pub table: String,
    /// `fld…`
    pub id: String,
    /// The field's name.
    pub name: String,
    /// The field's type.
    #[serde(rename = "type")]
    pub field_type: String,
}

/// A field whose name changed (same id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldRenamed {
    /// The table's id.
    pub table: String,
    /// `fld…`
    pub id: String,
    /// The new name.
    pub name: String,
    /// The old name.
    pub before: String,
}

/// A field whose type or options changed (same id).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChanged {
    /// The table's id.
    pub table: String,
    /// `fld…`
    pub id: String,
    /// The field's (newer) name.
    pub name: String,
    /// `{"type", "options"}` before.
    pub before: Value,
    /// `{"type", "options"}` after.
    pub after: Value,
}

/// What changed in the schema.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SchemaDiff {
    /// Tables only the newer side has.
    pub tables_added: Vec<TableRef>,
    /// Tables only the older side has.
    pub tables_removed: Vec<TableRef>,
    /// Fields only the newer side has (in tables both sides have).
    pub fields_added: Vec<FieldRef>,
    /// Fields only the older side has (in tables both sides have).
    pub fields_removed: Vec<FieldRef>,
    /// Fields with a new name.
    pub fields_renamed: Vec<FieldRenamed>,
    /// Fields with a new type or new options.
    pub fields_changed: Vec<FieldChanged>,
    /// Tables with a new name (text output only: the JSON keys are fixed).
    #[serde(skip)]
    pub tables_renamed: Vec<(TableRef, String)>,
}

impl SchemaDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.tables_added.is_empty()
            && self.tables_removed.is_empty()
            && self.fields_added.is_empty()
            && self.fields_removed.is_empty()
            && self.fields_renamed.is_empty()
            && self.fields_changed.is_empty()
            && self.tables_renamed.is_empty()
    }
}

/// Compares `before` with `after`, within the tables `selected` (ids; every table when `None`).
pub(crate) fn compare(
    before: &BaseSchema,
    after: &BaseSchema,
    selected: Option<&[String]>,
) -> SchemaDiff {
    let wanted = |id: &str| selected.is_none_or(|ids| ids.iter().any(|s| s == id));
    let mut diff = SchemaDiff::default();
    for old in before.tables.iter().filter(|t| wanted(&t.id)) {
        let Some(new) = after.tables.iter().find(|t| t.id == old.id) else {
            diff.tables_removed.push(TableRef {
                id: old.id.clone(),
                name: old.name.clone(),
            });
            continue;
        };
        if new.name != old.name {
            diff.tables_renamed.push((
                TableRef {
                    id: new.id.clone(),
                    name: new.name.clone(),
                },
                old.name.clone(),
            ));
        }
        for field in &old.fields {
            match new.fields.iter().find(|f| f.id == field.id) {
                None => diff.fields_removed.push(field_ref(&old.id, field)),
                Some(now) => {
                    if now.name != field.name {
                        diff.fields_renamed.push(FieldRenamed {
                            table: old.id.clone(),
                            id: field.id.clone(),
                            name: now.name.clone(),
                            before: field.name.clone(),
                        });
                    }
                    if now.field_type != field.field_type || !same_options(field, now) {
                        diff.fields_changed.push(FieldChanged {
                            table: old.id.clone(),
                            id: field.id.clone(),
                            name: now.name.clone(),
                            before: type_and_options(field),
                            after: type_and_options(now),
                        });
                    }
                }
            }
        }
        for field in &new.fields {
            if !old.fields.iter().any(|f| f.id == field.id) {
                diff.fields_added.push(field_ref(&new.id, field));
            }
        }
    }
    for new in after.tables.iter().filter(|t| wanted(&t.id)) {
        if !before.tables.iter().any(|t| t.id == new.id) {
            diff.tables_added.push(TableRef {
                id: new.id.clone(),
                name: new.name.clone(),
            });
        }
    }
    diff
}

fn field_ref(table: &str, field: &FieldSchema) -> FieldRef {
    FieldRef {
        table: table.to_owned(),
        id: field.id.clone(),
        name: field.name.clone(),
        field_type: field.field_type.clone(),
    }
}

fn options(field: &FieldSchema) -> Value {
    match &field.options {
        None => Value::Null,
        Some(Value::Object(o)) if o.is_empty() => Value::Null,
        Some(v) => v.clone(),
    }
}

fn same_options(a: &FieldSchema, b: &FieldSchema) -> bool {
    options(a) == options(b)
}

fn type_and_options(field: &FieldSchema) -> Value {
    serde_json::json!({"type": field.field_type, "options": options(field)})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(value: Value) -> BaseSchema {
        BaseSchema::from_raw(value).unwrap()
    }

    #[test]
    fn finds_added_removed_renamed_and_changed_tables_and_fields() {
        let before = schema(json!({"tables": [
            {"id": "tblA", "name": "A", "primaryFieldId": "fld1", "fields": [
                {"id": "fld1", "name": "Name", "type": "singleLineText"},
                {"id": "fld2", "name": "Count", "type": "number", "options": {"precision": 0}},
                {"id": "fld3", "name": "Gone", "type": "checkbox", "options": {"icon": "check", "color": "greenBright"}},
            ]},
            {"id": "tblB", "name": "B", "primaryFieldId": "fld9", "fields": [
                {"id": "fld9", "name": "Name", "type": "singleLineText"},
            ]},
        ]}));
        let after = schema(json!({"tables": [
            {"id": "tblA", "name": "A2", "primaryFieldId": "fld1", "fields": [
                {"id": "fld1", "name": "Title", "type": "singleLineText"},
                {"id": "fld2", "name": "Count", "type": "number", "options": {"precision": 2}},
                {"id": "fld4", "name": "New", "type": "email"},
            ]},
            {"id": "tblC", "name": "C", "primaryFieldId": "fld8", "fields": [
                {"id": "fld8", "name": "Name", "type": "singleLineText"},
            ]},
        ]}));
        let diff = compare(&before, &after, None);
        assert_eq!(diff.tables_added[0].id, "tblC");
        assert_eq!(diff.tables_removed[0].id, "tblB");
        assert_eq!(diff.tables_renamed[0].1, "A");
        assert_eq!(diff.fields_added.len(), 1);
        assert_eq!(diff.fields_added[0].id, "fld4");
        assert_eq!(diff.fields_removed[0].id, "fld3");
        assert_eq!(diff.fields_renamed[0].name, "Title");
        assert_eq!(diff.fields_renamed[0].before, "Name");
        assert_eq!(diff.fields_changed.len(), 1);
        assert_eq!(diff.fields_changed[0].after["options"]["precision"], 2);
        assert!(compare(&before, &before, None).is_empty());
        let only_b = compare(&before, &after, Some(&["tblB".to_owned()]));
        assert_eq!(only_b.tables_removed.len(), 1);
        assert!(only_b.fields_added.is_empty());
    }
}
