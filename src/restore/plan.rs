//! The restore plan: from a backed-up schema to the tables and fields to create, how each
//! cell is converted, and what cannot be restored. Pure functions, no I/O, so every decision is
//! unit-tested and `--dry-run` prints exactly what `restore` would do.
//!
//! Decisions (docs/RESTORE.md explains them for users):
//! - Creatable fields come back as themselves, with their options in the API's write format.
//! - Computed fields (formula, rollup, lookup, count, autoNumber, created/modified time and by,
//!   button, AI text, sync source) come back as static fields of the closest writable type
//!   holding the backed-up values; the original type and configuration (formulas with field
//!   ids turned into names) go into the field's description.
//! - The primary field must be of a creatable primary type; otherwise it becomes a number (for
//!   numeric results) or a single line text.
//! - Every table gets one extra text field, [`SOURCE_ID_FIELD`], holding the original record
//!   id. Record creation is an upsert keyed on it, which is what makes restore idempotent.
//! - Link pairs are created once, from the side that comes first in the schema; the inverse
//!   Airtable creates is renamed to the backed-up name. A self-link is created once.
//! - Fields the backup left out (`exclude_fields`) are not created: the snapshot holds none of
//!   their values. A primary field is the exception (a table needs one): it is created empty.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::airtable::{BaseSchema, FieldSchema, TableSchema};

/// The name of the field that holds each record's original id (a suffix is added if a table
/// already has a field of that name).
pub const SOURCE_ID_FIELD: &str = "airback: original record id";

/// Airtable's limit on table and field descriptions.
const MAX_DESCRIPTION: usize = 20_000;

/// Types a created table may start with (its primary field).
const PRIMARY_TYPES: &[&str] = &[
    "singleLineText",
    "multilineText",
    "date",
    "dateTime",
    "phoneNumber",
    "email",
    "url",
    "number",
    "currency",
    "percent",
    "duration",
    "barcode",
];

/// How a backed-up cell becomes the value written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conversion {
    /// Written as it was read.
    AsIs,
    /// A scalar written as it was read; error values (`{"specialValue":…}`, `{"error":…}`)
    /// cannot be written and are left empty.
    Scalar,
    /// Rendered as text: arrays joined with ", ", attachments by filename, collaborators by
    /// name, other objects as JSON.
    Text,
    /// A collaborator object written as `{id}`.
    Collaborator,
    /// Collaborators written as `[{id}]`.
    Collaborators,
    /// A button's URL.
    ButtonUrl,
    /// An AI text's generated value.
    AiValue,
}

/// What restore does with a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created with the table; cells written in pass 1.
    Cells,
    /// An attachment field: created with the table, files uploaded after pass 1.
    Attachments,
    /// The side of a link pair that restore creates; cells written in pass 2.
    Link,
    /// The inverse of a link pair: Airtable creates it, restore renames it; its cells follow.
    Inverse,
    /// Not restored (the reason is in the plan's losses).
    Skipped,
}

/// One field of a planned table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldPlan {
    /// The original field id.
    pub source_id: String,
    /// The original type.
    pub source_type: String,
    /// The name in the target (the original name).
    pub name: String,
    /// The type created in the target (None when skipped or created by Airtable).
    pub target_type: Option<String>,
    /// The options sent when creating it (write format).
    pub options: Option<Value>,
    /// The description sent when creating it.
    pub description: Option<String>,
    /// How its cells are converted.
    pub conversion: Conversion,
    /// What restore does with it.
    pub role: Role,
    /// For a field that does not come back as itself: what it becomes, in words.
    pub note: Option<String>,
}

impl FieldPlan {
    /// Whether the field is created with its table.
    pub fn created_with_table(&self) -> bool {
        matches!(self.role, Role::Cells | Role::Attachments)
    }
}

/// One planned table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TablePlan {
    /// The original table id.
    pub source_id: String,
    /// The original name.
    pub source_name: String,
    /// The name in the target (the original, unless the target already has a table of that
    /// name).
    pub name: String,
    /// The description.
    pub description: Option<String>,
    /// The fields, primary first, in the original order otherwise.
    pub fields: Vec<FieldPlan>,
    /// The name of the field holding original record ids.
    pub source_id_field: String,
}

impl TablePlan {
    /// The planned field for an original field id.
    pub fn field(&self, source_id: &str) -> Option<&FieldPlan> {
        self.fields.iter().find(|f| f.source_id == source_id)
    }
}

/// A link pair (or a self-link) to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkPlan {
    /// The original table of the created side.
    pub table: String,
    /// The original id of the created side.
    pub field: String,
    /// The created side's name and description.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// The original id of the linked table.
    pub linked_table: String,
    /// The inverse field in the linked table, if the original had one: (original id, name,
    /// description).
    pub inverse: Option<(String, String, Option<String>)>,
}

/// Something the restore cannot bring back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// The table it concerns (original name), if any.
    pub table: Option<String>,
    /// What is lost, and why.
    pub what: String,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Tables in the original schema order.
    pub tables: Vec<TablePlan>,
    /// Link fields to create after the tables.
    pub links: Vec<LinkPlan>,
    /// What cannot be restored.
    pub losses: Vec<Loss>,
    /// Other things the user should know (e.g. tables of the target that are left alone).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Plan {
    /// The planned table for an original table id.
    pub fn table(&self, source_id: &str) -> Option<&TablePlan> {
        self.tables.iter().find(|t| t.source_id == source_id)
    }
}

/// Builds the plan for `tables` (original ids, in schema order) of `schema`. `excluded` holds
/// the ids of the fields the backup left out (`exclude_fields`), which are not created.
/// `taken` holds the table names that already exist in the target (compared ignoring case); a
/// restored table whose name is taken gets " (restored)" appended, then a number.
pub(super) fn build(
    schema: &BaseSchema,
    tables: &[String],
    excluded: &[String],
    taken: &[String],
) -> Plan {
    let selected: HashSet<&str> = tables.iter().map(String::as_str).collect();
    let excluded: HashSet<&str> = excluded.iter().map(String::as_str).collect();
    let mut used_names: HashSet<String> = taken.iter().map(|n| n.to_lowercase()).collect();
    let names = field_names(schema);
    let mut plan = Plan {
        tables: Vec::new(),
        links: Vec::new(),
        losses: Vec::new(),
        notes: Vec::new(),
    };
    if !taken.is_empty() {
        plan.notes.push(format!(
            "the target's existing tables are left as they are (the API cannot delete tables): {}",
            taken
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    plan.losses.push(Loss {
        table: None,
        what: "automations, interfaces, extensions and permissions are not readable through \
               the API, so the snapshot does not hold them"
            .into(),
    });
    plan.losses.push(Loss {
        table: None,
        what: "comment authors and times: comments are restored as the token's user, each \
               starting with its original author and time, since the API cannot set either"
            .into(),
    });
    plan.losses.push(Loss {
        table: None,
        what: format!(
            "record ids and created times: restored records get new ones; each table's \
             `{SOURCE_ID_FIELD}` field holds the original id"
        ),
    });
    let created_links = created_link_sides(schema, &selected, &excluded);

    for table in schema
        .tables
        .iter()
        .filter(|t| selected.contains(t.id.as_str()))
    {
        let name = restored_table_name(table, &mut used_names, &mut plan);
        for view in &table.views {
            plan.losses.push(Loss {
                table: Some(table.name.clone()),
                what: format!(
                    "view `{}` ({}): views cannot be created through the API",
                    view.name, view.view_type
                ),
            });
        }

        let mut fields = Vec::new();
        let ordered = table
            .fields
            .iter()
            .filter(|f| f.id == table.primary_field_id)
            .chain(
                table
                    .fields
                    .iter()
                    .filter(|f| f.id != table.primary_field_id),
            );
        for field in ordered {
            let primary = field.id == table.primary_field_id;
            if excluded.contains(&*field.id) {
                plan.losses.push(Loss {
                    table: Some(table.name.clone()),
                    what: if primary {
                        format!(
                            "primary field `{}` ({}): left out of the snapshot by \
                             `exclude_fields`; it is created empty, as a table needs one",
                            field.name, field.field_type
                        )
                    } else {
                        format!(
                            "field `{}` ({}): left out of the snapshot by `exclude_fields`, so \
                             it is not created",
                            field.name, field.field_type
                        )
                    },
                });
                if !primary {
                    continue;
                }
            }
            let planned = plan_field(field, primary, &names, &selected, &created_links);
            if let Role::Skipped = planned.role {
                plan.losses.push(Loss {
                    table: Some(table.name.clone()),
                    what: format!(
                        "field `{}` ({}): {}",
                        field.name,
                        field.field_type,
                        planned.note.clone().unwrap_or_default()
                    ),
                });
            }
            if field.field_type == "multipleRecordLinks"
                && created_links.contains(&*field.id)
                && let Some(linked) = linked_table(field)
            {
                let link = plan_link(schema, table, field, linked, &excluded, &mut plan.losses);
                plan.links.push(link);
            }
            fields.push(planned);
        }
        let source_id_field = source_id_field_name(table);
        plan.tables.push(TablePlan {
            source_id: table.id.clone(),
            source_name: table.name.clone(),
            name,
            description: table
                .description
                .clone()
                .map(|d| truncate(d, MAX_DESCRIPTION)),
            fields,
            source_id_field,
        });
    }
    plan
}

/// Which side of each link pair is created: the first one met in schema order. Links to a
/// table left out of the restore, and excluded fields, are not created.
fn created_link_sides<'a>(
    schema: &'a BaseSchema,
    selected: &HashSet<&str>,
    excluded: &HashSet<&str>,
) -> HashSet<&'a str> {
    let mut created: HashSet<&'a str> = HashSet::new();
    let mut inverse_of: HashMap<&str, &str> = HashMap::new();
    for table in schema
        .tables
        .iter()
        .filter(|t| selected.contains(t.id.as_str()))
    {
        for field in &table.fields {
            if field.field_type != "multipleRecordLinks"
                || inverse_of.contains_key(&*field.id)
                || excluded.contains(&*field.id)
            {
                continue;
            }
            let Some(linked) = linked_table(field) else {
                continue;
            };
            if !selected.contains(linked) {
                continue;
            }
            created.insert(&field.id);
            if let Some(inverse) = field.inverse_link_field_id()
                && linked != table.id
            {
                inverse_of.insert(inverse, &field.id);
            }
        }
    }
    created
}

/// The name a restored table gets: its own, or, when the target has a table of that name
/// (compared ignoring case), the name with " (restored)" appended, then a number; noted as a
/// loss. The name is added to `used_names`.
fn restored_table_name(
    table: &TableSchema,
    used_names: &mut HashSet<String>,
    plan: &mut Plan,
) -> String {
    let mut name = table.name.clone();
    if used_names.contains(&name.to_lowercase()) {
        let restored = format!("{} (restored)", table.name);
        name = (1..)
            .map(|n| {
                if n == 1 {
                    restored.clone()
                } else {
                    format!("{restored} {n}")
                }
            })
            .find(|candidate| !used_names.contains(&candidate.to_lowercase()))
            .unwrap_or(restored);
        plan.losses.push(Loss {
            table: Some(table.name.clone()),
            what: format!(
                "the target already has a table named `{}`; this one is restored as `{name}`",
                table.name
            ),
        });
    }
    used_names.insert(name.to_lowercase());
    name
}

/// The link field `field` of `table`, to table `linked`, as the side that is created; what
/// cannot be restored of it (an inverse left out, none at all, the single-record setting) is
/// added to `losses`.
fn plan_link(
    schema: &BaseSchema,
    table: &TableSchema,
    field: &FieldSchema,
    linked: &str,
    excluded: &HashSet<&str>,
    losses: &mut Vec<Loss>,
) -> LinkPlan {
    let inverse_field = field
        .inverse_link_field_id()
        .filter(|_| linked != table.id)
        .and_then(|id| schema.table(linked)?.field(id));
    if let Some(left_out) = inverse_field.filter(|f| excluded.contains(&*f.id)) {
        losses.push(Loss {
            table: Some(table.name.clone()),
            what: format!(
                "link field `{}`: its inverse `{}` was left out of the snapshot by \
                 `exclude_fields`; Airtable creates one in the linked table, which \
                 stays",
                field.name, left_out.name
            ),
        });
    }
    let inverse = inverse_field
        .filter(|f| !excluded.contains(&*f.id))
        .map(|f| (f.id.clone(), f.name.clone(), f.description.clone()));
    if inverse_field.is_none() && linked != table.id {
        losses.push(Loss {
            table: Some(table.name.clone()),
            what: format!(
                "link field `{}` had no inverse field; Airtable creates one in the \
                 linked table, which stays",
                field.name
            ),
        });
    }
    if field
        .options
        .as_ref()
        .and_then(|o| o.get("prefersSingleRecordLink"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        losses.push(Loss {
            table: Some(table.name.clone()),
            what: format!(
                "link field `{}`: the \"link to a single record\" setting cannot be \
                 set through the API",
                field.name
            ),
        });
    }
    LinkPlan {
        table: table.id.clone(),
        field: field.id.clone(),
        name: field.name.clone(),
        description: field.description.clone(),
        linked_table: linked.to_owned(),
        inverse,
    }
}

/// The name of the field that holds each record's original id: [`SOURCE_ID_FIELD`], or with a
/// number when the table already has a field of that name.
fn source_id_field_name(table: &TableSchema) -> String {
    let existing: HashSet<String> = table.fields.iter().map(|f| f.name.to_lowercase()).collect();
    (1..)
        .map(|n| {
            if n == 1 {
                SOURCE_ID_FIELD.to_owned()
            } else {
                format!("{SOURCE_ID_FIELD} {n}")
            }
        })
        .find(|candidate| !existing.contains(&candidate.to_lowercase()))
        .unwrap_or_else(|| SOURCE_ID_FIELD.to_owned())
}

fn linked_table(field: &FieldSchema) -> Option<&str> {
    field.options.as_ref()?.get("linkedTableId")?.as_str()
}

/// Field id → name over the whole base, to write formulas with names.
fn field_names(schema: &BaseSchema) -> HashMap<String, String> {
    schema
        .tables
        .iter()
        .flat_map(|t| t.fields.iter())
        .map(|f| (f.id.clone(), f.name.clone()))
        .collect()
}

fn plan_field(
    field: &FieldSchema,
    primary: bool,
    names: &HashMap<String, String>,
    selected: &HashSet<&str>,
    created_links: &HashSet<&str>,
) -> FieldPlan {
    let mut plan = FieldPlan {
        source_id: field.id.clone(),
        source_type: field.field_type.clone(),
        name: field.name.clone(),
        target_type: None,
        options: None,
        description: field.description.clone(),
        conversion: Conversion::AsIs,
        role: Role::Cells,
        note: None,
    };
    let options = field.options.as_ref().and_then(Value::as_object);
    let kind = field.field_type.as_str();
    if kind == "multipleRecordLinks" {
        let linked = linked_table(field).unwrap_or_default();
        if primary {
            // Not a valid primary type: the primary holds the linked records' ids as text.
            return static_copy(plan, field, "singleLineText", None, Conversion::Text, names);
        }
        if !selected.contains(linked) {
            plan.role = Role::Skipped;
            plan.note = Some("it links to a table that is not restored".into());
        } else if created_links.contains(&*field.id) {
            plan.role = Role::Link;
            plan.target_type = Some(kind.to_owned());
        } else {
            plan.role = Role::Inverse;
            plan.target_type = Some(kind.to_owned());
        }
        return plan;
    }
    if let Some(write) = write_options(kind, options) {
        if primary && !PRIMARY_TYPES.contains(&kind) {
            return static_copy(plan, field, "singleLineText", None, Conversion::Text, names);
        }
        plan.target_type = Some(kind.to_owned());
        plan.options = write;
        plan.conversion = match kind {
            "singleCollaborator" => Conversion::Collaborator,
            "multipleCollaborators" => Conversion::Collaborators,
            _ => Conversion::AsIs,
        };
        if kind == "multipleAttachments" {
            plan.role = Role::Attachments;
        }
        return plan;
    }
    // Computed and unknown types.
    let result = options
        .and_then(|o| o.get("result"))
        .and_then(Value::as_object);
    let result_type = result.and_then(|r| r.get("type")).and_then(Value::as_str);
    let result_options = result
        .and_then(|r| r.get("options"))
        .and_then(Value::as_object);
    let (target, write, conversion) = match kind {
        "formula" | "rollup" => scalar_target(result_type, result_options),
        "count" | "autoNumber" => ("number", Some(json!({"precision": 0})), Conversion::Scalar),
        "createdTime" | "lastModifiedTime" => match result_type {
            Some("date") => (
                "date",
                write_options("date", result_options).flatten(),
                Conversion::Scalar,
            ),
            _ => (
                "dateTime",
                write_options("dateTime", result_options).flatten(),
                Conversion::Scalar,
            ),
        },
        "createdBy" | "lastModifiedBy" => ("singleCollaborator", None, Conversion::Collaborator),
        "button" => ("url", None, Conversion::ButtonUrl),
        "aiText" => ("multilineText", None, Conversion::AiValue),
        "externalSyncSource" => ("singleLineText", None, Conversion::Text),
        "multipleLookupValues" | "lookup" => ("multilineText", None, Conversion::Text),
        "manualSort" => {
            plan.role = Role::Skipped;
            plan.note = Some("the manual record order cannot be set through the API".into());
            return plan;
        }
        _ => {
            plan.role = Role::Skipped;
            plan.note = Some(
                "airback does not know this field type; its values are in the snapshot and in \
                 `airback export`"
                    .into(),
            );
            return plan;
        }
    };
    let (target, write, conversion) = if primary && !PRIMARY_TYPES.contains(&target) {
        ("singleLineText", None, Conversion::Text)
    } else {
        (target, write, conversion)
    };
    static_copy(plan, field, target, write, conversion, names)
}

/// Turns `plan` into a static copy of a field that cannot be created as itself.
fn static_copy(
    mut plan: FieldPlan,
    field: &FieldSchema,
    target: &str,
    write: Option<Value>,
    conversion: Conversion,
    names: &HashMap<String, String>,
) -> FieldPlan {
    let configuration = field
        .options
        .as_ref()
        .map(|o| with_names(o, names))
        .unwrap_or(Value::Null);
    let mut text = format!(
        "Restored by airback as a static copy of a {} field (values as of the snapshot).",
        field.field_type
    );
    if let Some(formula) = configuration.get("formula").and_then(Value::as_str) {
        text.push_str(&format!("\nFormula: {formula}"));
    }
    if !configuration.is_null() {
        text.push_str(&format!("\nOriginal configuration: {configuration}"));
    }
    let description = match &field.description {
        Some(original) if !original.is_empty() => format!("{original}\n\n{text}"),
        _ => text,
    };
    plan.description = Some(truncate(description, MAX_DESCRIPTION));
    plan.target_type = Some(target.to_owned());
    plan.options = write;
    plan.conversion = conversion;
    plan.role = Role::Cells;
    plan.note = Some(format!(
        "a static {target} field holding the backed-up values"
    ));
    plan
}

/// The target of a formula or rollup, by the type of its result.
fn scalar_target(
    result_type: Option<&str>,
    result_options: Option<&Map<String, Value>>,
) -> (&'static str, Option<Value>, Conversion) {
    let kind = match result_type {
        Some("number") => "number",
        Some("currency") => "currency",
        Some("percent") => "percent",
        Some("duration") => "duration",
        Some("checkbox") => "checkbox",
        Some("date") => "date",
        Some("dateTime") => "dateTime",
        _ => return ("multilineText", None, Conversion::Text),
    };
    let write = write_options(kind, result_options).flatten();
    (kind, write, Conversion::Scalar)
}

/// The write-format options of a creatable type, from read-format options (defaults where
/// the backup has none); `None` when the type cannot be created. Only keys the API accepts
/// on create are sent.
fn write_options(kind: &str, options: Option<&Map<String, Value>>) -> Option<Option<Value>> {
    let get = |key: &str| options.and_then(|o| o.get(key));
    let precision = |default: u64, max: u64| {
        get("precision")
            .and_then(Value::as_u64)
            .unwrap_or(default)
            .min(max)
    };
    let text = |key: &str, default: &str| {
        get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let format_name = |key: &str, default: &str| {
        get(key)
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let options = match kind {
        "singleLineText"
        | "email"
        | "url"
        | "multilineText"
        | "richText"
        | "phoneNumber"
        | "barcode"
        | "singleCollaborator"
        | "multipleCollaborators" => None,
        "number" | "percent" => Some(json!({"precision": precision(1, 8)})),
        "currency" => Some(json!({"precision": precision(2, 7), "symbol": text("symbol", "$")})),
        "duration" => Some(json!({"durationFormat": text("durationFormat", "h:mm")})),
        "rating" => Some(json!({
            "max": get("max").and_then(Value::as_u64).unwrap_or(5).clamp(1, 10),
            "icon": text("icon", "star"),
            "color": text("color", "yellowBright"),
        })),
        "checkbox" => {
            Some(json!({"icon": text("icon", "check"), "color": text("color", "greenBright")}))
        }
        "date" => Some(json!({"dateFormat": {"name": format_name("dateFormat", "iso")}})),
        "dateTime" => Some(json!({
            "dateFormat": {"name": format_name("dateFormat", "iso")},
            "timeFormat": {"name": format_name("timeFormat", "24hour")},
            "timeZone": text("timeZone", "utc"),
        })),
        "singleSelect" | "multipleSelects" => {
            let choices: Vec<Value> = get("choices")
                .and_then(Value::as_array)
                .map(|choices| {
                    choices
                        .iter()
                        .filter_map(|c| {
                            let name = c.get("name")?.as_str()?;
                            let mut choice = json!({"name": name});
                            if let Some(color) = c.get("color").and_then(Value::as_str) {
                                choice["color"] = json!(color);
                            }
                            Some(choice)
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(json!({"choices": choices}))
        }
        "multipleAttachments" => match get("isReversed").and_then(Value::as_bool) {
            Some(true) => Some(json!({"isReversed": true})),
            _ => None,
        },
        _ => return None,
    };
    Some(options)
}

/// Whether a field of type `kind` can be created through the API and its cells written as they
/// are read (every writable type but links).
pub(crate) fn writable_type(kind: &str) -> bool {
    write_options(kind, None).is_some()
}

/// The options to create `field` with again (write format), or `None` when its type cannot
/// be created through the API.
pub(super) fn write_options_of(field: &FieldSchema) -> Option<Option<Value>> {
    write_options(
        &field.field_type,
        field.options.as_ref().and_then(Value::as_object),
    )
}

/// `value` with every field id (`fld…`, inside strings too) replaced by `{name}`.
fn with_names(value: &Value, names: &HashMap<String, String>) -> Value {
    match value {
        Value::String(text) => {
            let mut out = text.clone();
            for (id, name) in names {
                if out.contains(id.as_str()) {
                    out = out.replace(&format!("{{{id}}}"), &format!("{{{name}}}"));
                    out = out.replace(id.as_str(), &format!("{{{name}}}"));
                }
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| with_names(v, names)).collect()),
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(k, v)| (k.clone(), with_names(v, names)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The value to write for a backed-up cell, or `None` when nothing can be written (an empty
/// cell, an error value, an AI text that holds no value).
pub(crate) fn convert(conversion: Conversion, cell: &Value) -> Option<Value> {
    if cell.is_null() {
        return None;
    }
    match conversion {
        Conversion::AsIs => Some(cell.clone()),
        Conversion::Scalar => match cell {
            Value::Object(_) => None,
            // A lookup-like array from a rollup: write its only value, or text.
            Value::Array(items) if items.len() == 1 => convert(Conversion::Scalar, &items[0]),
            Value::Array(items) if items.is_empty() => None,
            Value::Array(_) => None,
            Value::Bool(false) => None,
            other => Some(other.clone()),
        },
        Conversion::Text => {
            let text = as_text(cell);
            (!text.is_empty()).then_some(Value::String(text))
        }
        Conversion::Collaborator => cell.get("id").map(|id| json!({"id": id})),
        Conversion::Collaborators => {
            let ids: Vec<Value> = cell
                .as_array()?
                .iter()
                .filter_map(|c| c.get("id").map(|id| json!({"id": id})))
                .collect();
            (!ids.is_empty()).then_some(Value::Array(ids))
        }
        Conversion::ButtonUrl => cell
            .get("url")
            .and_then(Value::as_str)
            .filter(|url| !url.is_empty())
            .map(|url| json!(url)),
        Conversion::AiValue => cell
            .get("value")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty() && cell.get("state").and_then(Value::as_str) != Some("error"))
            .map(|v| json!(v)),
    }
}

fn as_text(cell: &Value) -> String {
    match cell {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items
            .iter()
            .map(as_text)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(o) => {
            if let Some(special) = o.get("specialValue").or_else(|| o.get("error")) {
                return as_text(special);
            }
            for key in ["filename", "name", "email", "text", "value", "label"] {
                if let Some(Value::String(s)) = o.get(key) {
                    return s.clone();
                }
            }
            Value::Object(o.clone()).to_string()
        }
    }
}

/// The selected table ids: `names` (ids or names, matched ignoring case) or every table.
pub(super) fn select_tables(
    schema: &[TableSchema],
    names: &[String],
) -> Result<Vec<String>, String> {
    if names.is_empty() {
        return Ok(schema.iter().map(|t| t.id.clone()).collect());
    }
    let mut out = Vec::new();
    for wanted in names {
        let found = schema
            .iter()
            .find(|t| t.id == *wanted)
            .or_else(|| schema.iter().find(|t| t.name.eq_ignore_ascii_case(wanted)));
        match found {
            Some(t) if !out.contains(&t.id) => out.push(t.id.clone()),
            Some(_) => {}
            None => {
                let known: Vec<&str> = schema.iter().map(|t| t.name.as_str()).collect();
                return Err(format!(
                    "the snapshot has no table `{wanted}`; its tables are: {}",
                    known.join(", ")
                ));
            }
        }
    }
    // Keep schema order.
    Ok(schema
        .iter()
        .filter(|t| out.contains(&t.id))
        .map(|t| t.id.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(tables: Value) -> BaseSchema {
        BaseSchema::from_raw(json!({ "tables": tables })).unwrap()
    }

    fn field(id: &str, name: &str, kind: &str, options: Value) -> Value {
        json!({"id": id, "name": name, "type": kind, "options": options})
    }

    fn two_tables() -> BaseSchema {
        schema(json!([
            {"id": "tblA", "name": "A", "primaryFieldId": "fldF", "views": [{"id": "viw1", "name": "Grid", "type": "grid"}],
             "fields": [
                field("fldN", "Num", "number", json!({"precision": 2})),
                field("fldF", "F", "formula", json!({"formula": "{fldN} * 2", "referencedFieldIds": ["fldN"], "result": {"type": "number", "options": {"precision": 0}}})),
                field("fldL", "To B", "multipleRecordLinks", json!({"linkedTableId": "tblB", "isReversed": false, "prefersSingleRecordLink": true, "inverseLinkFieldId": "fldI"})),
                field("fldS", "Self", "multipleRecordLinks", json!({"linkedTableId": "tblA", "isReversed": false, "prefersSingleRecordLink": false})),
                field("fldK", "Sel", "singleSelect", json!({"choices": [{"id": "selX", "name": "x", "color": "blueLight2"}]})),
                field("fldM", "Sort", "manualSort", Value::Null),
                field("fldU", "Future", "somethingNew", json!({})),
             ]},
            {"id": "tblB", "name": "Table 1", "primaryFieldId": "fldP", "views": [],
             "fields": [
                field("fldP", "Auto", "autoNumber", Value::Null),
                field("fldI", "Back to A", "multipleRecordLinks", json!({"linkedTableId": "tblA", "isReversed": true, "prefersSingleRecordLink": false, "inverseLinkFieldId": "fldL"})),
                field("fldR", "Lookup", "multipleLookupValues", json!({"recordLinkFieldId": "fldI", "fieldIdInLinkedTable": "fldN"})),
             ]},
        ]))
    }

    #[test]
    fn computed_primaries_and_fields_become_static_copies_with_their_configuration() {
        let s = two_tables();
        let plan = build(&s, &["tblA".into(), "tblB".into()], &[], &[]);
        let a = plan.table("tblA").unwrap();
        assert_eq!(a.fields[0].source_id, "fldF", "the primary comes first");
        assert_eq!(a.fields[0].target_type.as_deref(), Some("number"));
        assert_eq!(a.fields[0].options, Some(json!({"precision": 0})));
        let description = a.fields[0].description.as_deref().unwrap();
        assert!(description.contains("Formula: {Num} * 2"), "{description}");
        assert_eq!(
            a.field("fldK").unwrap().options,
            Some(json!({"choices": [{"name": "x", "color": "blueLight2"}]}))
        );
        let b = plan.table("tblB").unwrap();
        assert_eq!(b.fields[0].target_type.as_deref(), Some("number"));
        assert_eq!(
            b.field("fldR").unwrap().target_type.as_deref(),
            Some("multilineText")
        );
        assert_eq!(b.field("fldR").unwrap().conversion, Conversion::Text);
    }

    #[test]
    fn fields_left_out_of_the_backup_are_not_created_but_a_primary_is() {
        let tables = ["tblA".into(), "tblB".into()];
        let plan = build(&two_tables(), &tables, &["fldK".into(), "fldF".into()], &[]);
        let a = plan.table("tblA").unwrap();
        assert!(
            a.field("fldK").is_none(),
            "an excluded field is not created"
        );
        assert_eq!(a.fields[0].source_id, "fldF", "an excluded primary is");
        let losses = serde_json::to_string(&plan.losses).unwrap();
        assert!(
            losses.contains("field `Sel` (singleSelect): left out"),
            "{losses}"
        );
        assert!(
            losses.contains("primary field `F` (formula): left out"),
            "{losses}"
        );

        // One side of a link pair left out: the other is created, with no inverse to rename.
        let plan = build(&two_tables(), &tables, &["fldL".into()], &[]);
        assert!(plan.table("tblA").unwrap().field("fldL").is_none());
        let link = plan.links.iter().find(|l| l.table == "tblB").unwrap();
        assert_eq!((link.field.as_str(), &link.inverse), ("fldI", &None));
        assert_eq!(
            plan.table("tblB").unwrap().field("fldI").unwrap().role,
            Role::Link
        );
        assert!(!plan.links.iter().any(|l| l.field == "fldL"));
        let losses = serde_json::to_string(&plan.losses).unwrap();
        assert!(
            losses.contains("its inverse `To B` was left out"),
            "{losses}"
        );
    }

    #[test]
    fn each_link_pair_is_created_once_and_a_self_link_once() {
        let plan = build(&two_tables(), &["tblA".into(), "tblB".into()], &[], &[]);
        assert_eq!(plan.links.len(), 2);
        assert_eq!(plan.links[0].field, "fldL");
        assert_eq!(plan.links[0].inverse.as_ref().unwrap().1, "Back to A");
        assert_eq!(plan.links[1].field, "fldS");
        assert!(plan.links[1].inverse.is_none());
        assert_eq!(
            plan.table("tblB").unwrap().field("fldI").unwrap().role,
            Role::Inverse
        );
        assert!(plan.losses.iter().any(|l| l.what.contains("single record")));
    }

    #[test]
    fn links_to_tables_left_out_are_skipped_and_reported() {
        let plan = build(&two_tables(), &["tblA".into()], &[], &[]);
        assert_eq!(
            plan.table("tblA").unwrap().field("fldL").unwrap().role,
            Role::Skipped
        );
        assert_eq!(plan.links.len(), 1, "only the self-link");
        assert!(plan.losses.iter().any(|l| l.what.contains("`To B`")));
    }

    #[test]
    fn taken_names_views_and_unknown_types_are_reported() {
        let plan = build(
            &two_tables(),
            &["tblA".into(), "tblB".into()],
            &[],
            &["table 1".into()],
        );
        assert_eq!(plan.table("tblB").unwrap().name, "Table 1 (restored)");
        let text: Vec<&str> = plan.losses.iter().map(|l| l.what.as_str()).collect();
        assert!(text.iter().any(|w| w.contains("view `Grid`")), "{text:?}");
        assert!(
            text.iter().any(|w| w.contains("`Sort` (manualSort)")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|w| w.contains("`Future` (somethingNew)")),
            "{text:?}"
        );
    }

    #[test]
    fn cells_convert_to_writable_values() {
        assert_eq!(
            convert(Conversion::Scalar, &json!({"specialValue": "NaN"})),
            None
        );
        assert_eq!(convert(Conversion::Scalar, &json!(4)), Some(json!(4)));
        assert_eq!(
            convert(
                Conversion::Text,
                &json!(["a", {"filename": "f.png", "id": "att1"}, 3])
            ),
            Some(json!("a, f.png, 3"))
        );
        assert_eq!(
            convert(
                Conversion::Collaborators,
                &json!([{"id": "usr1", "name": "A"}])
            ),
            Some(json!([{"id": "usr1"}]))
        );
        assert_eq!(
            convert(
                Conversion::ButtonUrl,
                &json!({"label": "Open", "url": "https://x"})
            ),
            Some(json!("https://x"))
        );
        assert_eq!(
            convert(
                Conversion::AiValue,
                &json!({"state": "error", "value": null, "isStale": true})
            ),
            None
        );
    }

    #[test]
    fn unknown_tables_are_named_in_the_error() {
        let s = two_tables();
        assert_eq!(
            select_tables(&s.tables, &["a".into()]).unwrap(),
            vec!["tblA"]
        );
        let err = select_tables(&s.tables, &["nope".into()]).unwrap_err();
        assert!(err.contains("nope") && err.contains("Table 1"), "{err}");
    }
}
