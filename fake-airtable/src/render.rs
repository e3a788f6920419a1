//! Turning the stored world into API JSON: records (with computed values derived on the fly)
//! and schema objects.
//!
//! Computed fields are never stored. A formula is evaluated over the record's other cells, a
//! lookup or rollup follows the link field into the linked table, a count counts links, and the
//! created/modified time, user and auto number come from the record's metadata. Empty values
//! are left out of `fields`, as Airtable does.

use serde_json::{Map, Value, json};

use super::content::{UrlSigner, Variant};
use super::formula::{self, FValue, number_to_json};
use super::state::{
    Aggregate, Attachment, AttachmentState, Base, Behaviour, Cell, Field, FieldType, Record, Table,
    World,
};
use super::time::format_iso_ms;

/// Deepest chain of computed fields followed (formula of a lookup of a rollup ...).
const MAX_DEPTH: u8 = 6;

/// Where attachment URLs point and until when they are valid.
pub(crate) struct UrlContext<'a> {
    pub(crate) signer: &'a UrlSigner,
    pub(crate) base_url: &'a str,
    pub(crate) expires_ms: i64,
}

/// How `fields` is rendered.
#[derive(Debug, Clone, Default)]
pub(crate) struct RenderOptions {
    pub(crate) by_field_id: bool,
    /// Only these field slots (`fields[]`), in table order.
    pub(crate) only_slots: Option<Vec<usize>>,
    /// `cellFormat=string`.
    pub(crate) as_strings: bool,
    /// `recordMetadata[]=commentCount`.
    pub(crate) comment_count: bool,
}

/// Reads records of one base.
pub(crate) struct Reader<'a> {
    pub(crate) world: &'a World,
    pub(crate) base: &'a Base,
    pub(crate) urls: UrlContext<'a>,
}

struct FormulaScope<'r, 'a> {
    reader: &'r Reader<'a>,
    table_index: usize,
    record: &'r Record,
    depth: u8,
}

impl formula::Scope for FormulaScope<'_, '_> {
    fn field(&self, field_id: &str) -> FValue {
        let table = &self.reader.base.tables[self.table_index];
        match table.field_slot(field_id) {
            Some(slot) => {
                let value =
                    self.reader
                        .cell_value(self.table_index, self.record, slot, self.depth + 1);
                FValue::from_json(value.as_ref())
            }
            None => FValue::Error,
        }
    }

    fn record_id(&self) -> &str {
        &self.record.id
    }
}

impl Reader<'_> {
    /// The record as the API returns it.
    pub(crate) fn record_json(
        &self,
        table_index: usize,
        record: &Record,
        options: &RenderOptions,
    ) -> Value {
        let table = &self.base.tables[table_index];
        let mut fields = Map::new();
        let all_slots: Vec<usize>;
        let slots = match &options.only_slots {
            Some(slots) => slots.as_slice(),
            None => {
                all_slots = (0..table.fields.len()).collect();
                &all_slots
            }
        };
        for &slot in slots {
            let field = &table.fields[slot];
            let value = if options.as_strings {
                self.string_value(table_index, record, slot)
                    .map(Value::String)
            } else {
                self.cell_value(table_index, record, slot, 0)
            };
            if let Some(value) = value {
                let key = if options.by_field_id {
                    &field.id
                } else {
                    &field.name
                };
                fields.insert(key.clone(), value);
            }
        }
        let mut object = json!({
            "id": record.id,
            "createdTime": format_iso_ms(record.created_ms),
            "fields": fields,
        });
        if options.comment_count {
            object["commentCount"] = json!(table.comment_count(&record.id));
        }
        object
    }

    /// A cell in read format, `None` when empty.
    pub(crate) fn cell_value(
        &self,
        table_index: usize,
        record: &Record,
        slot: usize,
        depth: u8,
    ) -> Option<Value> {
        if depth > MAX_DEPTH {
            return Some(json!({"error": "#ERROR!"}));
        }
        let table = &self.base.tables[table_index];
        let field = &table.fields[slot];
        match &field.field_type {
            FieldType::AutoNumber => Some(json!(record.auto_number)),
            FieldType::CreatedTime => Some(json!(format_iso_ms(record.created_ms))),
            FieldType::LastModifiedTime => Some(json!(format_iso_ms(record.modified_ms))),
            FieldType::CreatedBy => self.user_json(record.created_by),
            FieldType::LastModifiedBy => self.user_json(record.modified_by),
            FieldType::Count => {
                let link_slot = field
                    .record_link_field_id()
                    .and_then(|id| table.field_slot(id))?;
                Some(json!(record.links(link_slot).len()))
            }
            FieldType::MultipleLookupValues => {
                let values = self.linked_values(table_index, record, field, depth)?;
                let flat: Vec<Value> = values
                    .into_iter()
                    .flat_map(|value| match value {
                        Value::Array(items) => items,
                        other => vec![other],
                    })
                    .collect();
                (!flat.is_empty()).then_some(Value::Array(flat))
            }
            FieldType::Rollup => {
                let values = self.linked_values(table_index, record, field, depth)?;
                let aggregate = match field.behaviour {
                    Behaviour::Rollup(aggregate) => aggregate,
                    _ => Aggregate::Sum,
                };
                rollup(aggregate, &values)
            }
            FieldType::Formula => {
                let Behaviour::Formula(expr) = &field.behaviour else {
                    return Some(json!({"error": "#ERROR!"}));
                };
                let scope = FormulaScope {
                    reader: self,
                    table_index,
                    record,
                    depth,
                };
                formula::eval(expr, &scope).to_cell()
            }
            FieldType::Button => match &field.behaviour {
                Behaviour::Button { label, url_prefix } => Some(json!({
                    "label": label,
                    "url": url_prefix.as_ref().map(|prefix| format!("{prefix}{}", record.id)),
                })),
                _ => Some(json!({"label": "Click", "url": null})),
            },
            FieldType::ManualSort => None,
            _ => match record.cell(slot)? {
                Cell::Json(value) => Some(value.clone()),
                Cell::Links(links) => Some(json!(links)),
                Cell::Users(users) => {
                    let mut objects = users.iter().filter_map(|user| self.user_json(*user));
                    if field.field_type == FieldType::SingleCollaborator {
                        objects.next()
                    } else {
                        Some(Value::Array(objects.collect()))
                    }
                }
                Cell::Attachments(attachments) => Some(Value::Array(
                    attachments
                        .iter()
                        .map(|attachment| self.attachment_json(attachment))
                        .collect(),
                )),
            },
        }
    }

    fn user_json(&self, user: u16) -> Option<Value> {
        self.world
            .users
            .get(user as usize)
            .map(|user| user.to_json())
    }

    /// Values of the looked-up field over the records linked through the field's link field.
    fn linked_values(
        &self,
        table_index: usize,
        record: &Record,
        field: &Field,
        depth: u8,
    ) -> Option<Vec<Value>> {
        let table = &self.base.tables[table_index];
        let link_field = table.field_by_id(field.record_link_field_id()?)?;
        let link_slot = table.field_slot(&link_field.id)?;
        let linked_index = self.base.table_index_by_id(link_field.linked_table_id()?)?;
        let linked_table = &self.base.tables[linked_index];
        let target_slot = linked_table.field_slot(field.field_id_in_linked_table()?)?;
        Some(
            record
                .links(link_slot)
                .iter()
                .filter_map(|linked_id| linked_table.record(linked_id))
                .filter_map(|linked| self.cell_value(linked_index, linked, target_slot, depth + 1))
                .collect(),
        )
    }

    pub(crate) fn attachment_json(&self, attachment: &Attachment) -> Value {
        match &attachment.state {
            AttachmentState::Pending { source_url } => json!({
                "id": attachment.id,
                "url": source_url,
                "filename": attachment.filename,
            }),
            AttachmentState::Ready {
                size,
                width,
                height,
            } => {
                let url = |variant| {
                    self.urls.signer.url(
                        self.urls.base_url,
                        &attachment.id,
                        variant,
                        self.urls.expires_ms,
                    )
                };
                let mut object = json!({
                    "id": attachment.id,
                    "url": url(Variant::File),
                    "filename": attachment.filename,
                    "size": size,
                    "type": attachment.mime,
                });
                if let (Some(width), Some(height)) = (width, height) {
                    object["width"] = json!(width);
                    object["height"] = json!(height);
                }
                let dimensions = match (width, height) {
                    (Some(width), Some(height)) if attachment.mime.starts_with("image/") => {
                        Some((*width, *height))
                    }
                    _ if attachment.mime == "application/pdf" => Some((1275, 1650)),
                    _ => None,
                };
                if let Some((width, height)) = dimensions {
                    let scaled = |target_height: u32| {
                        let target_height = target_height.min(height).max(1);
                        let target_width = (u64::from(width) * u64::from(target_height)
                            / u64::from(height.max(1)))
                        .max(1);
                        (target_width, target_height)
                    };
                    let (small_width, small_height) = scaled(36);
                    let (large_width, large_height) = scaled(512);
                    object["thumbnails"] = json!({
                        "small": {"url": url(Variant::Small), "width": small_width, "height": small_height},
                        "large": {"url": url(Variant::Large), "width": large_width, "height": large_height},
                        "full": {"url": url(Variant::Full), "width": width, "height": height},
                    });
                }
                object
            }
        }
    }

    /// The cell for `cellFormat=string`: a user-facing string (explicitly unstable in the API).
    fn string_value(&self, table_index: usize, record: &Record, slot: usize) -> Option<String> {
        let table = &self.base.tables[table_index];
        let field = &table.fields[slot];
        if field.field_type == FieldType::MultipleRecordLinks {
            let linked_index = self.base.table_index_by_id(field.linked_table_id()?)?;
            let linked_table = &self.base.tables[linked_index];
            let names: Vec<String> = record
                .links(slot)
                .iter()
                .filter_map(|id| linked_table.record(id))
                .map(|linked| {
                    self.string_value(linked_index, linked, linked_table.primary_slot())
                        .unwrap_or_else(|| "Unnamed record".to_owned())
                })
                .collect();
            return (!names.is_empty()).then(|| names.join(", "));
        }
        let value = self.cell_value(table_index, record, slot, 0)?;
        let text = value_to_string(&value);
        (!text.is_empty()).then_some(text)
    }
}

fn value_to_string(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(flag) => if *flag { "checked" } else { "" }.to_owned(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(value_to_string)
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(object) => {
            if let Some(special) = object.get("specialValue").and_then(Value::as_str) {
                special.to_owned()
            } else if let Some(error) = object.get("error").and_then(Value::as_str) {
                error.to_owned()
            } else if let (Some(filename), Some(url)) = (object.get("filename"), object.get("url"))
            {
                format!("{} ({})", value_to_string(filename), value_to_string(url))
            } else {
                ["name", "text", "label", "value"]
                    .iter()
                    .find_map(|key| object.get(*key).map(value_to_string))
                    .unwrap_or_default()
            }
        }
    }
}

fn rollup(aggregate: Aggregate, values: &[Value]) -> Option<Value> {
    let flat: Vec<FValue> = values
        .iter()
        .map(|value| FValue::from_json(Some(value)))
        .flat_map(|value| match value {
            FValue::List(items) => items,
            other => vec![other],
        })
        .collect();
    if flat.contains(&FValue::Error) {
        return Some(json!({"error": "#ERROR!"}));
    }
    let numbers = || {
        flat.iter().map(|value| match value {
            FValue::Number(number) => *number,
            FValue::Text(text) => text.parse().unwrap_or(f64::NAN),
            FValue::Bool(flag) => f64::from(u8::from(*flag)),
            _ => 0.0,
        })
    };
    match aggregate {
        Aggregate::Sum => Some(number_to_json(numbers().sum())),
        Aggregate::Average => Some(number_to_json(numbers().sum::<f64>() / flat.len() as f64)),
        Aggregate::Max if flat.is_empty() => None,
        Aggregate::Max => Some(number_to_json(numbers().fold(f64::NEG_INFINITY, f64::max))),
        Aggregate::ArrayJoin => FValue::Text(
            flat.iter()
                .map(FValue::to_text)
                .collect::<Vec<_>>()
                .join(", "),
        )
        .to_cell(),
    }
}

/// A field in the schema API's shape.
pub(crate) fn field_json(field: &Field) -> Value {
    let mut object = json!({"id": field.id, "name": field.name, "type": field.field_type.name()});
    if let Some(description) = &field.description {
        object["description"] = json!(description);
    }
    if let Some(options) = &field.options {
        object["options"] = options.clone();
    }
    object
}

/// A table in the schema API's shape.
pub(crate) fn table_json(table: &Table, include_visible_field_ids: bool) -> Value {
    let views: Vec<Value> = table
        .views
        .iter()
        .map(|view| {
            let mut object = json!({"id": view.id, "name": view.name, "type": view.view_type});
            if include_visible_field_ids && view.view_type == "grid" {
                object["visibleFieldIds"] = json!(
                    table
                        .fields
                        .iter()
                        .map(|field| &field.id)
                        .collect::<Vec<_>>()
                );
            }
            object
        })
        .collect();
    let mut object = json!({
        "id": table.id,
        "name": table.name,
        "primaryFieldId": table.primary_field_id,
        "fields": table.fields.iter().map(field_json).collect::<Vec<_>>(),
        "views": views,
    });
    if let Some(description) = &table.description {
        object["description"] = json!(description);
    }
    object
}

/// The whole base schema: `{"tables":[…]}`.
pub(crate) fn schema_json(base: &Base, include_visible_field_ids: bool) -> Value {
    json!({
        "tables": base
            .tables
            .iter()
            .map(|table| table_json(table, include_visible_field_ids))
            .collect::<Vec<_>>()
    })
}
