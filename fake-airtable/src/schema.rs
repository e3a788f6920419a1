//! Schema writes through the meta API: create base, create table, create field, update table
//! and update field, with the real service's restrictions.
//!
//! Only writable field types can be created (others are 422
//! `UNSUPPORTED_FIELD_TYPE_FOR_CREATE`); options must be given in the *write* format, complete
//! (precision for numbers, formats for dates, icon and colour for checkbox and rating, ...);
//! link fields are created with create-field only, and creating one to another table creates
//! the inverse field there. Field and table names are unique per parent, ignoring case.

use serde_json::{Map, Value, json};

use super::api_error::ApiError;
use super::formula;
use super::ids::{IdGen, IdKind};
use super::state::{Base, Behaviour, Field, FieldType, Table, World};

const MAX_DESCRIPTION_CHARS: usize = 20_000;
const MAX_FIELDS_PER_TABLE: usize = 500;
const MAX_TABLES_PER_BASE: usize = 1000;

fn options_error(message: impl Into<String>) -> ApiError {
    ApiError::unprocessable("INVALID_FIELD_TYPE_OPTIONS_FOR_CREATE", message)
}

fn object_with_keys<'a>(
    value: &'a Value,
    what: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, ApiError> {
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::invalid_request(format!("{what} must be an object")))?;
    if let Some(unknown) = object.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(ApiError::invalid_request(format!(
            "unknown property \"{unknown}\" in {what}"
        )));
    }
    Ok(object)
}

fn description_of(object: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match object.get("description") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.chars().count() <= MAX_DESCRIPTION_CHARS => {
            Ok(Some(text.clone()))
        }
        Some(Value::String(_)) => Err(ApiError::invalid_request(format!(
            "descriptions are limited to {MAX_DESCRIPTION_CHARS} characters"
        ))),
        Some(_) => Err(ApiError::invalid_request("description must be a string")),
    }
}

fn name_of<'a>(object: &'a Map<String, Value>, what: &str) -> Result<&'a str, ApiError> {
    match object.get("name").and_then(Value::as_str) {
        Some(name) if !name.trim().is_empty() => Ok(name),
        _ => Err(ApiError::unprocessable(
            if what == "table" {
                "INVALID_TABLE_NAME"
            } else {
                "DUPLICATE_OR_EMPTY_FIELD_NAME"
            },
            format!("A {what} needs a non-empty name"),
        )),
    }
}

fn duplicate_field_name(name: &str) -> ApiError {
    ApiError::unprocessable(
        "DUPLICATE_OR_EMPTY_FIELD_NAME",
        format!("Field names must be unique (case-insensitive): \"{name}\""),
    )
}

fn duplicate_table_name(name: &str) -> ApiError {
    ApiError::unprocessable(
        "DUPLICATE_TABLE_NAME",
        format!("Table names must be unique (case-insensitive): \"{name}\""),
    )
}

fn precision(options: &Map<String, Value>, max: u64) -> Result<u64, ApiError> {
    options
        .get("precision")
        .and_then(Value::as_u64)
        .filter(|precision| *precision <= max)
        .ok_or_else(|| {
            options_error(format!(
                "options.precision must be an integer from 0 to {max}"
            ))
        })
}

fn required_str<'a>(options: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    options
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| options_error(format!("options.{key} is required")))
}

fn date_format(options: &Map<String, Value>) -> Result<Value, ApiError> {
    let format = options
        .get("dateFormat")
        .and_then(Value::as_object)
        .ok_or_else(|| options_error("options.dateFormat is required"))?;
    let name = format
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let canonical = match name {
        "local" => "l",
        "friendly" => "LL",
        "us" => "M/D/YYYY",
        "european" => "D/M/YYYY",
        "iso" => "YYYY-MM-DD",
        _ => {
            return Err(options_error(
                "options.dateFormat.name must be local, friendly, us, european or iso",
            ));
        }
    };
    if let Some(given) = format.get("format")
        && given.as_str() != Some(canonical)
    {
        return Err(options_error(format!(
            "options.dateFormat.format for {name} must be {canonical}"
        )));
    }
    Ok(json!({"name": name, "format": canonical}))
}

fn time_format(options: &Map<String, Value>) -> Result<Value, ApiError> {
    let format = options
        .get("timeFormat")
        .and_then(Value::as_object)
        .ok_or_else(|| options_error("options.timeFormat is required"))?;
    let name = format
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let canonical = match name {
        "12hour" => "h:mma",
        "24hour" => "HH:mm",
        _ => {
            return Err(options_error(
                "options.timeFormat.name must be 12hour or 24hour",
            ));
        }
    };
    if let Some(given) = format.get("format")
        && given.as_str() != Some(canonical)
    {
        return Err(options_error(format!(
            "options.timeFormat.format for {name} must be {canonical}"
        )));
    }
    Ok(json!({"name": name, "format": canonical}))
}

/// Converts create options (write format) to stored options (read format). Links are handled
/// by [`create_field`], which also creates the inverse.
fn read_options(
    ids: &mut IdGen,
    field_type: &FieldType,
    options: Option<&Value>,
) -> Result<Option<Value>, ApiError> {
    let empty = Map::new();
    let given = match options {
        None | Some(Value::Null) => None,
        Some(Value::Object(object)) => Some(object),
        Some(_) => return Err(options_error("options must be an object")),
    };
    let allow = |keys: &[&str]| -> Result<&Map<String, Value>, ApiError> {
        let object = given.unwrap_or(&empty);
        match object.keys().find(|key| !keys.contains(&key.as_str())) {
            Some(unknown) => Err(options_error(format!(
                "option \"{unknown}\" is not valid for a {} field",
                field_type.name()
            ))),
            None => Ok(object),
        }
    };
    let options = match field_type {
        FieldType::SingleLineText
        | FieldType::Email
        | FieldType::Url
        | FieldType::MultilineText
        | FieldType::RichText
        | FieldType::PhoneNumber
        | FieldType::Barcode
        | FieldType::SingleCollaborator
        | FieldType::MultipleCollaborators => {
            allow(&[])?;
            None
        }
        FieldType::Number | FieldType::Percent => {
            let options = allow(&["precision"])?;
            Some(json!({"precision": precision(options, 8)?}))
        }
        FieldType::Currency => {
            let options = allow(&["precision", "symbol"])?;
            Some(
                json!({"precision": precision(options, 7)?, "symbol": required_str(options, "symbol")?}),
            )
        }
        FieldType::Duration => {
            let options = allow(&["durationFormat"])?;
            let format = required_str(options, "durationFormat")?;
            if !["h:mm", "h:mm:ss", "h:mm:ss.S", "h:mm:ss.SS", "h:mm:ss.SSS"].contains(&format) {
                return Err(options_error(
                    "options.durationFormat is not a supported format",
                ));
            }
            Some(json!({"durationFormat": format}))
        }
        FieldType::Rating => {
            let options = allow(&["max", "icon", "color"])?;
            let max = options
                .get("max")
                .and_then(Value::as_u64)
                .filter(|max| (1..=10).contains(max))
                .ok_or_else(|| options_error("options.max must be an integer from 1 to 10"))?;
            let icon = required_str(options, "icon")?;
            if !["star", "heart", "thumbsUp", "flag", "dot"].contains(&icon) {
                return Err(options_error("options.icon is not a rating icon"));
            }
            Some(json!({"icon": icon, "max": max, "color": required_str(options, "color")?}))
        }
        FieldType::Checkbox => {
            let options = allow(&["icon", "color"])?;
            Some(
                json!({"icon": required_str(options, "icon")?, "color": required_str(options, "color")?}),
            )
        }
        FieldType::Date => {
            let options = allow(&["dateFormat"])?;
            Some(json!({"dateFormat": date_format(options)?}))
        }
        FieldType::DateTime => {
            let options = allow(&["dateFormat", "timeFormat", "timeZone"])?;
            Some(json!({
                "dateFormat": date_format(options)?,
                "timeFormat": time_format(options)?,
                "timeZone": required_str(options, "timeZone")?,
            }))
        }
        FieldType::SingleSelect | FieldType::MultipleSelects => {
            let options = allow(&["choices"])?;
            let choices = options
                .get("choices")
                .and_then(Value::as_array)
                .ok_or_else(|| options_error("options.choices is required"))?;
            let mut read_choices: Vec<Value> = Vec::new();
            for choice in choices {
                let choice = choice
                    .as_object()
                    .ok_or_else(|| options_error("each choice must be an object"))?;
                if let Some(unknown) = choice.keys().find(|key| *key != "name" && *key != "color") {
                    return Err(options_error(format!(
                        "choice property \"{unknown}\" is not allowed when creating"
                    )));
                }
                let name = choice
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|name| !name.is_empty())
                    .ok_or_else(|| options_error("each choice needs a name"))?;
                if read_choices.iter().any(|existing| existing["name"] == name) {
                    return Err(options_error(format!("duplicate choice \"{name}\"")));
                }
                let mut read = json!({"id": ids.next(IdKind::Choice), "name": name});
                if let Some(color) = choice.get("color") {
                    read["color"] = color.clone();
                }
                read_choices.push(read);
            }
            Some(json!({"choices": read_choices}))
        }
        FieldType::MultipleAttachments => {
            let options = allow(&["isReversed"])?;
            let reversed = options
                .get("isReversed")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Some(json!({"isReversed": reversed}))
        }
        FieldType::MultipleRecordLinks => None,
        other => {
            return Err(ApiError::unprocessable(
                "UNSUPPORTED_FIELD_TYPE_FOR_CREATE",
                format!(
                    "Creating {} fields is not supported at this time",
                    other.name()
                ),
            ));
        }
    };
    Ok(options)
}

/// Builds a non-link field from a create spec, checking the name against `table`.
fn build_field(
    ids: &mut IdGen,
    table: &Table,
    spec: &Value,
    allow_links: bool,
) -> Result<Field, ApiError> {
    let object = object_with_keys(spec, "field", &["name", "type", "description", "options"])?;
    let name = name_of(object, "field")?;
    if table.has_field_named(name) {
        return Err(duplicate_field_name(name));
    }
    let type_name = object
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid_request("a field needs a type"))?;
    let field_type = FieldType::parse(type_name);
    if let FieldType::Other(unknown) = &field_type {
        return Err(ApiError::invalid_request(format!(
            "unknown field type \"{unknown}\""
        )));
    }
    if !field_type.is_creatable() {
        return Err(ApiError::unprocessable(
            "UNSUPPORTED_FIELD_TYPE_FOR_CREATE",
            format!("Creating {type_name} fields is not supported at this time"),
        ));
    }
    if field_type == FieldType::MultipleRecordLinks && !allow_links {
        return Err(ApiError::unprocessable(
            "UNSUPPORTED_FIELD_TYPE_FOR_CREATE",
            "Link fields cannot be created inline with a table; create the table, then add the link with create field",
        ));
    }
    let description = description_of(object)?;
    let options = read_options(ids, &field_type, object.get("options"))?;
    Ok(Field {
        id: ids.next(IdKind::Field),
        name: name.to_owned(),
        field_type,
        description,
        options,
        behaviour: Behaviour::Plain,
    })
}

/// Builds a table from a create spec (fields included, links not allowed inline).
fn build_table(ids: &mut IdGen, existing: &[Table], spec: &Value) -> Result<Table, ApiError> {
    let object = object_with_keys(spec, "table", &["name", "description", "fields"])?;
    let name = name_of(object, "table")?;
    if existing
        .iter()
        .any(|table| table.name.eq_ignore_ascii_case(name))
    {
        return Err(duplicate_table_name(name));
    }
    let description = description_of(object)?;
    let fields = object
        .get("fields")
        .and_then(Value::as_array)
        .filter(|fields| !fields.is_empty())
        .ok_or_else(|| ApiError::invalid_request("a table needs at least one field"))?;
    if fields.len() > MAX_FIELDS_PER_TABLE {
        return Err(ApiError::invalid_request(format!(
            "a table has at most {MAX_FIELDS_PER_TABLE} fields"
        )));
    }
    let table_id = ids.next(IdKind::Table);
    let view_id = ids.next(IdKind::View);
    let mut table = Table::new(table_id, name.to_owned(), description, view_id);
    for (index, spec) in fields.iter().enumerate() {
        let field = build_field(ids, &table, spec, false)?;
        if index == 0 && !field.field_type.is_valid_created_primary() {
            return Err(ApiError::unprocessable(
                "INVALID_PRIMARY_FIELD_TYPE",
                format!(
                    "A {} field cannot be the primary field of a table",
                    field.field_type.name()
                ),
            ));
        }
        table.fields.push(field);
    }
    table.primary_field_id = table.fields[0].id.clone();
    Ok(table)
}

/// `POST /v0/meta/bases/{base}/tables`.
pub(crate) fn create_table(
    world: &mut World,
    base_index: usize,
    spec: &Value,
) -> Result<usize, ApiError> {
    let base = &world.bases[base_index];
    if base.tables.len() >= MAX_TABLES_PER_BASE {
        return Err(ApiError::invalid_request(format!(
            "a base has at most {MAX_TABLES_PER_BASE} tables"
        )));
    }
    let table = build_table(&mut world.ids, &world.bases[base_index].tables, spec)?;
    world.bases[base_index].tables.push(table);
    Ok(world.bases[base_index].tables.len() - 1)
}

/// `POST /v0/meta/bases`: a base with the given tables in an existing workspace.
pub(crate) fn create_base(world: &mut World, spec: &Value) -> Result<usize, ApiError> {
    let object = object_with_keys(spec, "base", &["name", "workspaceId", "tables"])?;
    let name = object
        .get("name")
        .and_then(Value::as_str)
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| ApiError::invalid_request("a base needs a name"))?;
    let workspace_id = object
        .get("workspaceId")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid_request("workspaceId is required"))?;
    if !world
        .workspaces
        .iter()
        .any(|workspace| workspace.id == workspace_id)
    {
        return Err(ApiError::model_not_found_or_forbidden());
    }
    let specs = object
        .get("tables")
        .and_then(Value::as_array)
        .filter(|tables| !tables.is_empty())
        .ok_or_else(|| ApiError::invalid_request("a base needs at least one table"))?;
    let base_id = world.ids.next(IdKind::Base);
    let mut tables: Vec<Table> = Vec::new();
    for spec in specs {
        let table = build_table(&mut world.ids, &tables, spec)?;
        tables.push(table);
    }
    world.bases.push(Base {
        id: base_id,
        name: name.to_owned(),
        tables,
    });
    Ok(world.bases.len() - 1)
}

/// A field name based on `wanted` that is free in `table`: `wanted`, `wanted 2`, ...
fn free_field_name(table: &Table, wanted: &str) -> String {
    if !table.has_field_named(wanted) {
        return wanted.to_owned();
    }
    (2..)
        .map(|n| format!("{wanted} {n}"))
        .find(|candidate| !table.has_field_named(candidate))
        .unwrap_or_else(|| wanted.to_owned())
}

/// `POST /v0/meta/bases/{base}/tables/{table}/fields`. Returns the new field's slot.
pub(crate) fn create_field(
    world: &mut World,
    base_index: usize,
    table_index: usize,
    spec: &Value,
) -> Result<usize, ApiError> {
    let table = &world.bases[base_index].tables[table_index];
    if table.fields.len() >= MAX_FIELDS_PER_TABLE {
        return Err(ApiError::invalid_request(format!(
            "a table has at most {MAX_FIELDS_PER_TABLE} fields"
        )));
    }
    let is_link = spec.get("type").and_then(Value::as_str) == Some("multipleRecordLinks");
    if !is_link {
        let field = build_field(
            &mut world.ids,
            &world.bases[base_index].tables[table_index],
            spec,
            true,
        )?;
        let table = &mut world.bases[base_index].tables[table_index];
        table.fields.push(field);
        return Ok(table.fields.len() - 1);
    }
    // Link fields: validate the write options, then create both sides.
    let object = object_with_keys(spec, "field", &["name", "type", "description", "options"])?;
    let name = name_of(object, "field")?.to_owned();
    if table.has_field_named(&name) {
        return Err(duplicate_field_name(&name));
    }
    let description = description_of(object)?;
    let options = object
        .get("options")
        .and_then(Value::as_object)
        .ok_or_else(|| options_error("options.linkedTableId is required"))?;
    if let Some(unknown) = options
        .keys()
        .find(|key| *key != "linkedTableId" && *key != "viewIdForRecordSelection")
    {
        return Err(options_error(format!(
            "option \"{unknown}\" cannot be set when creating a multipleRecordLinks field"
        )));
    }
    let linked_table_id = required_str(options, "linkedTableId")?.to_owned();
    let base = &world.bases[base_index];
    let linked_index = base
        .table_index_by_id(&linked_table_id)
        .ok_or_else(|| options_error(format!("linked table {linked_table_id} does not exist")))?;
    if let Some(view_id) = options.get("viewIdForRecordSelection") {
        let view_id = view_id.as_str().unwrap_or_default();
        if !base.tables[linked_index]
            .views
            .iter()
            .any(|view| view.id == view_id)
        {
            return Err(options_error(format!(
                "view {view_id} does not exist in the linked table"
            )));
        }
    }
    let field_id = world.ids.next(IdKind::Field);
    let mut read = json!({
        "linkedTableId": linked_table_id,
        "isReversed": false,
        "prefersSingleRecordLink": false,
    });
    if let Some(view_id) = options.get("viewIdForRecordSelection") {
        read["viewIdForRecordSelection"] = view_id.clone();
    }
    if linked_index != table_index {
        let inverse_id = world.ids.next(IdKind::Field);
        let source_table = &world.bases[base_index].tables[table_index];
        let linked_table = &world.bases[base_index].tables[linked_index];
        let inverse_name = free_field_name(linked_table, &source_table.name);
        let inverse = Field {
            id: inverse_id.clone(),
            name: inverse_name,
            field_type: FieldType::MultipleRecordLinks,
            description: None,
            options: Some(json!({
                "linkedTableId": source_table.id,
                "isReversed": false,
                "prefersSingleRecordLink": false,
                "inverseLinkFieldId": field_id,
            })),
            behaviour: Behaviour::Plain,
        };
        world.bases[base_index].tables[linked_index]
            .fields
            .push(inverse);
        read["inverseLinkFieldId"] = json!(inverse_id);
    }
    let table = &mut world.bases[base_index].tables[table_index];
    table.fields.push(Field {
        id: field_id,
        name,
        field_type: FieldType::MultipleRecordLinks,
        description,
        options: Some(read),
        behaviour: Behaviour::Plain,
    });
    Ok(table.fields.len() - 1)
}

/// `PATCH …/fields/{field}`: name, description, and the text of a formula.
pub(crate) fn update_field(
    world: &mut World,
    base_index: usize,
    table_index: usize,
    slot: usize,
    spec: &Value,
) -> Result<(), ApiError> {
    let object = object_with_keys(spec, "field", &["name", "description", "options"])?;
    let table = &world.bases[base_index].tables[table_index];
    let field = &table.fields[slot];
    let mut new_name = None;
    if object.contains_key("name") {
        let name = name_of(object, "field")?;
        if table
            .fields
            .iter()
            .enumerate()
            .any(|(other, existing)| other != slot && existing.name.eq_ignore_ascii_case(name))
        {
            return Err(duplicate_field_name(name));
        }
        new_name = Some(name.to_owned());
    }
    let description = if object.contains_key("description") {
        Some(description_of(object)?)
    } else {
        None
    };
    let mut new_formula = None;
    if let Some(options) = object.get("options") {
        let options = options.as_object().filter(|options| !options.is_empty());
        match (options, &field.field_type) {
            (None, _) => {}
            (Some(options), FieldType::Formula) if options.keys().all(|key| key == "formula") => {
                let text = options
                    .get("formula")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::unprocessable(
                            "INVALID_FIELD_TYPE_OPTIONS",
                            "options.formula must be a string",
                        )
                    })?;
                let resolve = |key: &str| {
                    table
                        .field_slot_by_key(key)
                        .map(|slot| table.fields[slot].id.clone())
                };
                let expr = formula::parse(text, &resolve).map_err(|error| {
                    ApiError::unprocessable(
                        "INVALID_FIELD_TYPE_OPTIONS",
                        format!("Invalid formula: {error}"),
                    )
                })?;
                new_formula = Some((text.to_owned(), expr));
            }
            (Some(_), field_type) => {
                return Err(ApiError::unprocessable(
                    "INVALID_FIELD_TYPE_OPTIONS",
                    format!(
                        "The options of a {} field cannot be changed through the API",
                        field_type.name()
                    ),
                ));
            }
        }
    }
    let field = &mut world.bases[base_index].tables[table_index].fields[slot];
    if let Some(name) = new_name {
        field.name = name;
    }
    if let Some(description) = description {
        field.description = description;
    }
    if let Some((text, expr)) = new_formula {
        if let Some(options) = field.options.as_mut() {
            options["formula"] = json!(text);
            options["referencedFieldIds"] = json!(expr.referenced_field_ids());
        }
        field.behaviour = Behaviour::Formula(expr);
    }
    Ok(())
}

/// `PATCH /v0/meta/bases/{base}/tables/{table}`: name and description.
pub(crate) fn update_table(
    world: &mut World,
    base_index: usize,
    table_index: usize,
    spec: &Value,
) -> Result<(), ApiError> {
    let object = object_with_keys(
        spec,
        "table",
        &["name", "description", "dateDependencySettings"],
    )?;
    let base = &world.bases[base_index];
    let mut new_name = None;
    if object.contains_key("name") {
        let name = name_of(object, "table")?;
        if base
            .tables
            .iter()
            .enumerate()
            .any(|(other, table)| other != table_index && table.name.eq_ignore_ascii_case(name))
        {
            return Err(duplicate_table_name(name));
        }
        new_name = Some(name.to_owned());
    }
    let description = if object.contains_key("description") {
        Some(description_of(object)?)
    } else {
        None
    };
    let table = &mut world.bases[base_index].tables[table_index];
    if let Some(name) = new_name {
        table.name = name;
    }
    if let Some(description) = description {
        table.description = description;
    }
    Ok(())
}
