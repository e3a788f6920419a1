//! Record writes: create, update (PATCH/PUT), upsert and delete, all-or-nothing per request.
//!
//! Every write runs in two phases under the world's write lock. *Planning* validates every
//! cell of every record in the request against its field type (strictly, unless `typecast`)
//! and touches nothing; the first problem fails the whole request. *Applying* then stores the
//! cells, creates typecast select choices and linked records, keeps both sides of every link
//! in step, and queues `{url}` attachments for fetching once the response has gone out.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::api_error::ApiError;
use super::content::{UrlSigner, guess_mime};
use super::ids::{IdKind, is_airtable_id};
use super::render::{Reader, UrlContext};
use super::state::{Attachment, AttachmentState, Cell, Field, FieldType, Record, World};
use super::time::{format_date, format_iso_ms, parse_date, parse_datetime};

/// Most records one request may create, update or delete.
pub(crate) const MAX_RECORDS_PER_REQUEST: usize = 10;

/// Who writes, when, and how leniently.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteContext {
    pub(crate) typecast: bool,
    pub(crate) now_ms: i64,
    pub(crate) user: u16,
}

/// A `{url}` attachment to download after the response, as Airtable does.
#[derive(Debug, Clone)]
pub(crate) struct PendingFetch {
    pub(crate) base_id: String,
    pub(crate) table_id: String,
    pub(crate) record_id: String,
    pub(crate) field_id: String,
    pub(crate) attachment_id: String,
    pub(crate) url: String,
}

#[derive(Debug, Clone)]
enum LinkTarget {
    Existing(String),
    /// Typecast found no record whose primary value matches: create one.
    CreateNamed(String),
}

#[derive(Debug, Clone)]
enum PlannedAttachment {
    Keep(Attachment),
    Fetch { url: String, filename: String },
}

#[derive(Debug, Clone)]
enum Planned {
    Clear,
    Json(Value),
    Links(Vec<LinkTarget>),
    Users(Vec<u16>),
    Attachments(Vec<PlannedAttachment>),
}

#[derive(Debug, Clone)]
struct PlannedCell {
    slot: usize,
    planned: Planned,
    new_choices: Vec<String>,
}

/// One record of an update request.
#[derive(Debug, Clone)]
pub(crate) struct UpdateInput {
    pub(crate) id: Option<String>,
    pub(crate) fields: Map<String, Value>,
}

/// What an update request did.
#[derive(Debug, Default)]
pub(crate) struct WriteOutcome {
    /// Ids of the written records, in request order.
    pub(crate) record_ids: Vec<String>,
    pub(crate) created: Vec<String>,
    pub(crate) updated: Vec<String>,
    pub(crate) fetches: Vec<PendingFetch>,
}

fn too_many_records(verb: &str, count: usize) -> ApiError {
    ApiError::unprocessable(
        "INVALID_RECORDS",
        format!(
            "A maximum of {MAX_RECORDS_PER_REQUEST} records can be {verb} per request but you have provided {count}."
        ),
    )
}

/// Creates records (`POST /v0/{base}/{table}`).
pub(crate) fn create_records(
    world: &mut World,
    base_index: usize,
    table_index: usize,
    inputs: &[Map<String, Value>],
    context: WriteContext,
) -> Result<WriteOutcome, ApiError> {
    if inputs.len() > MAX_RECORDS_PER_REQUEST {
        return Err(too_many_records("created", inputs.len()));
    }
    if inputs.is_empty() {
        return Err(ApiError::unprocessable(
            "INVALID_RECORDS",
            "At least one record must be provided",
        ));
    }
    let plans = inputs
        .iter()
        .map(|fields| {
            plan_fields(
                world,
                base_index,
                table_index,
                fields,
                None,
                context.typecast,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut outcome = WriteOutcome::default();
    let mut applier = Applier::new(base_index, context);
    for cells in plans {
        let record_id = applier.create_record(world, table_index);
        applier.apply_cells(world, table_index, &record_id, cells);
        outcome.created.push(record_id.clone());
        outcome.record_ids.push(record_id);
    }
    outcome.fetches = applier.fetches;
    Ok(outcome)
}

/// Updates records (`PATCH`/`PUT`), or upserts them when `merge_on` is given.
pub(crate) fn update_records(
    world: &mut World,
    base_index: usize,
    table_index: usize,
    inputs: &[UpdateInput],
    replace: bool,
    merge_on: Option<&[Value]>,
    context: WriteContext,
) -> Result<WriteOutcome, ApiError> {
    if inputs.len() > MAX_RECORDS_PER_REQUEST {
        return Err(too_many_records("updated", inputs.len()));
    }
    if inputs.is_empty() {
        return Err(ApiError::unprocessable(
            "INVALID_RECORDS",
            "At least one record must be provided",
        ));
    }
    let merge_slots = match merge_on {
        Some(keys) => Some(resolve_merge_fields(world, base_index, table_index, keys)?),
        None => None,
    };
    let table = &world.bases[base_index].tables[table_index];
    let mut seen_ids = Vec::new();
    // (existing record id or None for a new record, planned cells)
    let mut plans: Vec<(Option<String>, Vec<PlannedCell>)> = Vec::new();
    for input in inputs {
        let target = match (&input.id, &merge_slots) {
            (Some(id), _) => {
                if table.record(id).is_none() {
                    return Err(ApiError::record_not_found());
                }
                Some(id.clone())
            }
            (None, Some(slots)) => find_merge_match(
                world,
                base_index,
                table_index,
                slots,
                &input.fields,
                context,
            )?,
            (None, None) => {
                return Err(ApiError::unprocessable(
                    "INVALID_RECORDS",
                    "Each record to update must have an id",
                ));
            }
        };
        if let Some(id) = &target {
            if seen_ids.contains(id) {
                return Err(ApiError::unprocessable(
                    "INVALID_RECORDS",
                    format!("Record {id} appears more than once in the request"),
                ));
            }
            seen_ids.push(id.clone());
        }
        let existing = target.as_deref().and_then(|id| table.record(id));
        let mut cells = plan_fields(
            world,
            base_index,
            table_index,
            &input.fields,
            existing,
            context.typecast,
        )?;
        if replace {
            for (slot, field) in table.fields.iter().enumerate() {
                if field.field_type.is_writable() && !cells.iter().any(|cell| cell.slot == slot) {
                    cells.push(PlannedCell {
                        slot,
                        planned: Planned::Clear,
                        new_choices: Vec::new(),
                    });
                }
            }
        }
        plans.push((target, cells));
    }
    let mut outcome = WriteOutcome::default();
    let mut applier = Applier::new(base_index, context);
    for (target, cells) in plans {
        let record_id = match target {
            Some(id) => {
                outcome.updated.push(id.clone());
                id
            }
            None => {
                let id = applier.create_record(world, table_index);
                outcome.created.push(id.clone());
                id
            }
        };
        applier.apply_cells(world, table_index, &record_id, cells);
        outcome.record_ids.push(record_id);
    }
    outcome.fetches = applier.fetches;
    Ok(outcome)
}

/// Deletes records, unlinking them from every link cell that points at them.
pub(crate) fn delete_records(
    world: &mut World,
    base_index: usize,
    table_index: usize,
    ids: &[String],
) -> Result<(), ApiError> {
    if ids.len() > MAX_RECORDS_PER_REQUEST {
        return Err(too_many_records("deleted", ids.len()));
    }
    let table = &world.bases[base_index].tables[table_index];
    if ids.iter().any(|id| table.record(id).is_none()) {
        return Err(ApiError::record_not_found());
    }
    let context = WriteContext {
        typecast: false,
        now_ms: super::time::now_ms(),
        user: world.owner,
    };
    for id in ids {
        let base = &mut world.bases[base_index];
        let link_slots: Vec<usize> = base.tables[table_index]
            .fields
            .iter()
            .enumerate()
            .filter(|(_, field)| field.field_type == FieldType::MultipleRecordLinks)
            .map(|(slot, _)| slot)
            .collect();
        let Some(record) = base.tables[table_index].remove_record(id) else {
            continue;
        };
        for slot in link_slots {
            let old = record.links(slot).to_vec();
            sync_inverse(world, base_index, table_index, slot, id, &old, &[], context);
        }
        // Self-links have no inverse field: drop references to the record directly.
        let table = &mut world.bases[base_index].tables[table_index];
        let self_slots: Vec<usize> = table
            .fields
            .iter()
            .enumerate()
            .filter(|(_, field)| {
                field.linked_table_id() == Some(table.id.as_str())
                    && field.inverse_link_field_id().is_none()
            })
            .map(|(slot, _)| slot)
            .collect();
        for record in table.records.iter_mut().flatten() {
            for &slot in &self_slots {
                if record.links(slot).contains(id) {
                    let links: Vec<String> = record
                        .links(slot)
                        .iter()
                        .filter(|other| *other != id)
                        .cloned()
                        .collect();
                    record.set_cell(slot, Some(Cell::Links(links)));
                }
            }
        }
    }
    Ok(())
}

/// Resolves `fieldsToMergeOn` to field slots, checking count and types.
fn resolve_merge_fields(
    world: &World,
    base_index: usize,
    table_index: usize,
    keys: &[Value],
) -> Result<Vec<usize>, ApiError> {
    if keys.is_empty() || keys.len() > 3 {
        return Err(ApiError::invalid_request(
            "fieldsToMergeOn must name between 1 and 3 fields",
        ));
    }
    let table = &world.bases[base_index].tables[table_index];
    keys.iter()
        .map(|key| {
            let key = key
                .as_str()
                .ok_or_else(|| ApiError::invalid_request("fieldsToMergeOn must be strings"))?;
            let slot = table
                .field_slot_by_key(key)
                .ok_or_else(|| ApiError::unknown_field_name(key))?;
            let allowed = matches!(
                table.fields[slot].field_type,
                FieldType::Number
                    | FieldType::SingleLineText
                    | FieldType::MultilineText
                    | FieldType::SingleSelect
                    | FieldType::MultipleSelects
                    | FieldType::Date
            );
            if !allowed {
                return Err(ApiError::invalid_request(format!(
                    "field \"{key}\" of type {} cannot be used in fieldsToMergeOn",
                    table.fields[slot].field_type.name()
                )));
            }
            Ok(slot)
        })
        .collect()
}

fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => left.as_f64() == right.as_f64(),
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .zip(right)
                    .all(|(left, right)| json_equal(left, right))
        }
        _ => left == right,
    }
}

/// The one existing record whose merge fields equal the input's, if any.
fn find_merge_match(
    world: &World,
    base_index: usize,
    table_index: usize,
    slots: &[usize],
    fields: &Map<String, Value>,
    context: WriteContext,
) -> Result<Option<String>, ApiError> {
    let cells = plan_fields(
        world,
        base_index,
        table_index,
        fields,
        None,
        context.typecast,
    )?;
    let table = &world.bases[base_index].tables[table_index];
    let mut wanted = Vec::new();
    for &slot in slots {
        let value = cells
            .iter()
            .find(|cell| cell.slot == slot)
            .and_then(|cell| match &cell.planned {
                Planned::Json(value) => Some(value.clone()),
                _ => None,
            });
        let Some(value) = value else {
            return Err(ApiError::invalid_request(format!(
                "records without an id must set every field in fieldsToMergeOn (missing \"{}\")",
                table.fields[slot].name
            )));
        };
        wanted.push((slot, value));
    }
    let mut matches = table.live().filter(|record| {
        wanted.iter().all(|(slot, value)| match record.cell(*slot) {
            Some(Cell::Json(stored)) => json_equal(stored, value),
            _ => false,
        })
    });
    let first = matches.next().map(|record| record.id.clone());
    if matches.next().is_some() {
        return Err(ApiError::invalid_request(
            "fieldsToMergeOn matched more than one existing record",
        ));
    }
    Ok(first)
}

/// Validates and converts one record's `fields`. Touches nothing.
fn plan_fields(
    world: &World,
    base_index: usize,
    table_index: usize,
    fields: &Map<String, Value>,
    existing: Option<&Record>,
    typecast: bool,
) -> Result<Vec<PlannedCell>, ApiError> {
    let table = &world.bases[base_index].tables[table_index];
    let mut cells: Vec<PlannedCell> = Vec::new();
    for (key, value) in fields {
        let slot = table
            .field_slot_by_key(key)
            .ok_or_else(|| ApiError::unknown_field_name(key))?;
        let field = &table.fields[slot];
        if !field.field_type.is_writable() {
            return Err(ApiError::computed_field(&field.name));
        }
        let mut new_choices = Vec::new();
        let planned = if value.is_null() {
            Planned::Clear
        } else {
            let current = existing.and_then(|record| record.cell(slot));
            plan_value(
                world,
                base_index,
                field,
                value,
                typecast,
                current,
                &mut new_choices,
            )?
        };
        cells.retain(|cell| cell.slot != slot);
        cells.push(PlannedCell {
            slot,
            planned,
            new_choices,
        });
    }
    Ok(cells)
}

fn number_from(value: &Value, typecast: bool) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64().filter(|number| number.is_finite()),
        Value::String(text) if typecast => {
            let cleaned: String = text
                .trim()
                .chars()
                .filter(|ch| !matches!(ch, ',' | '$' | '€' | '£' | '%' | ' '))
                .collect();
            cleaned
                .parse::<f64>()
                .ok()
                .filter(|number| number.is_finite())
        }
        Value::Bool(flag) if typecast => Some(f64::from(u8::from(*flag))),
        _ => None,
    }
}

fn text_from(value: &Value, typecast: bool) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) if typecast => Some(number.to_string()),
        Value::Bool(flag) if typecast => Some(flag.to_string()),
        _ => None,
    }
}

fn plan_value(
    world: &World,
    base_index: usize,
    field: &Field,
    value: &Value,
    typecast: bool,
    current: Option<&Cell>,
    new_choices: &mut Vec<String>,
) -> Result<Planned, ApiError> {
    let invalid = |detail: &str| ApiError::invalid_value(&field.name, detail);
    let planned = match &field.field_type {
        FieldType::SingleLineText
        | FieldType::Email
        | FieldType::Url
        | FieldType::MultilineText
        | FieldType::RichText
        | FieldType::PhoneNumber => Planned::Json(Value::String(
            text_from(value, typecast).ok_or_else(|| invalid("expected a string"))?,
        )),
        FieldType::Number | FieldType::Currency | FieldType::Percent | FieldType::Duration => {
            let number =
                number_from(value, typecast).ok_or_else(|| invalid("expected a number"))?;
            Planned::Json(super::formula::number_to_json(number))
        }
        FieldType::Rating => {
            let number = number_from(value, typecast)
                .ok_or_else(|| invalid("expected an integer rating"))?;
            if number.fract() != 0.0 || number < 1.0 || number > field.rating_max() as f64 {
                return Err(invalid(&format!(
                    "a rating must be an integer from 1 to {}",
                    field.rating_max()
                )));
            }
            Planned::Json(json!(number as u64))
        }
        FieldType::Checkbox => {
            let flag = match value {
                Value::Bool(flag) => *flag,
                Value::String(text) if typecast => {
                    matches!(
                        text.trim().to_ascii_lowercase().as_str(),
                        "true" | "checked" | "yes" | "1" | "x"
                    )
                }
                Value::Number(number) if typecast => number.as_f64() != Some(0.0),
                _ => return Err(invalid("expected a boolean")),
            };
            Planned::Json(Value::Bool(flag))
        }
        FieldType::Date => {
            let text = value
                .as_str()
                .ok_or_else(|| invalid("expected a date string YYYY-MM-DD"))?;
            let day = parse_date(text)
                .or_else(|| if typecast { parse_datetime(text) } else { None })
                .ok_or_else(|| invalid("expected a date string YYYY-MM-DD"))?;
            Planned::Json(json!(format_date(day)))
        }
        FieldType::DateTime => {
            let text = value
                .as_str()
                .ok_or_else(|| invalid("expected an ISO 8601 date-time"))?;
            let instant = parse_datetime(text)
                .or_else(|| if typecast { parse_date(text) } else { None })
                .ok_or_else(|| invalid("expected an ISO 8601 date-time"))?;
            Planned::Json(json!(format_iso_ms(instant)))
        }
        FieldType::SingleSelect => {
            let name = text_from(value, typecast)
                .ok_or_else(|| invalid("expected the name of a choice"))?;
            check_choice(field, &name, typecast, new_choices)?;
            Planned::Json(Value::String(name))
        }
        FieldType::MultipleSelects => {
            let names: Vec<String> = match value {
                Value::Array(items) => items
                    .iter()
                    .map(|item| {
                        text_from(item, typecast)
                            .ok_or_else(|| invalid("expected an array of choice names"))
                    })
                    .collect::<Result<_, _>>()?,
                Value::String(text) if typecast => {
                    text.split(',').map(|name| name.trim().to_owned()).collect()
                }
                _ => return Err(invalid("expected an array of choice names")),
            };
            let mut unique: Vec<String> = Vec::new();
            for name in names.into_iter().filter(|name| !name.is_empty()) {
                check_choice(field, &name, typecast, new_choices)?;
                if !unique.contains(&name) {
                    unique.push(name);
                }
            }
            Planned::Json(json!(unique))
        }
        FieldType::SingleCollaborator => {
            Planned::Users(vec![collaborator(world, value, typecast).ok_or_else(
                || invalid("expected a collaborator {id} or {email} of this base"),
            )?])
        }
        FieldType::MultipleCollaborators => {
            let items = value
                .as_array()
                .ok_or_else(|| invalid("expected an array of collaborators"))?;
            let mut users: Vec<u16> = Vec::new();
            for item in items {
                let user = match item {
                    Value::String(_) => collaborator(world, item, true),
                    other => collaborator(world, other, typecast),
                }
                .ok_or_else(|| invalid("expected collaborators {id} or {email} of this base"))?;
                if !users.contains(&user) {
                    users.push(user);
                }
            }
            Planned::Users(users)
        }
        FieldType::Barcode => match value {
            Value::Object(object) => {
                let text = object
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("a barcode needs text"))?;
                if object.keys().any(|key| key != "text" && key != "type") {
                    return Err(invalid("a barcode has only text and type"));
                }
                let mut barcode = json!({"text": text});
                if let Some(kind) = object.get("type").and_then(Value::as_str) {
                    barcode["type"] = json!(kind);
                }
                Planned::Json(barcode)
            }
            Value::String(text) if typecast => Planned::Json(json!({"text": text})),
            _ => return Err(invalid("expected a barcode object {text, type?}")),
        },
        FieldType::MultipleRecordLinks => plan_links(world, base_index, field, value, typecast)?,
        FieldType::MultipleAttachments => plan_attachments(field, value, current)?,
        _ => return Err(ApiError::computed_field(&field.name)),
    };
    Ok(planned)
}

fn check_choice(
    field: &Field,
    name: &str,
    typecast: bool,
    new_choices: &mut Vec<String>,
) -> Result<(), ApiError> {
    if field.has_choice(name) || new_choices.iter().any(|choice| choice == name) {
        return Ok(());
    }
    if typecast {
        new_choices.push(name.to_owned());
        return Ok(());
    }
    Err(ApiError::unprocessable(
        "INVALID_MULTIPLE_CHOICE_OPTIONS",
        format!("Insufficient permissions to create new select option \"{name}\""),
    ))
}

fn collaborator(world: &World, value: &Value, typecast: bool) -> Option<u16> {
    let key = match value {
        Value::Object(object) => object
            .get("id")
            .or_else(|| object.get("email"))
            .and_then(Value::as_str)?
            .to_owned(),
        Value::String(text) if typecast => text.clone(),
        _ => return None,
    };
    world.user_index(&key)
}

fn plan_links(
    world: &World,
    base_index: usize,
    field: &Field,
    value: &Value,
    typecast: bool,
) -> Result<Planned, ApiError> {
    let invalid = |detail: &str| ApiError::invalid_value(&field.name, detail);
    let base = &world.bases[base_index];
    let linked_index = field
        .linked_table_id()
        .and_then(|id| base.table_index_by_id(id))
        .ok_or_else(|| invalid("the linked table no longer exists"))?;
    let linked_table = &base.tables[linked_index];
    let items: Vec<&str> = match value {
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| invalid("expected an array of record ids"))
            })
            .collect::<Result<_, _>>()?,
        Value::String(text) if typecast => vec![text.as_str()],
        _ => return Err(invalid("expected an array of record ids")),
    };
    let mut targets: Vec<LinkTarget> = Vec::new();
    for item in items {
        let target = if linked_table.record(item).is_some() {
            LinkTarget::Existing(item.to_owned())
        } else if typecast && !is_airtable_id(item, "rec") {
            match primary_match(world, base_index, linked_index, item) {
                Some(id) => LinkTarget::Existing(id),
                None => LinkTarget::CreateNamed(item.to_owned()),
            }
        } else {
            return Err(ApiError::unprocessable(
                "ROW_DOES_NOT_EXIST",
                format!(
                    "Record ID {item} does not exist in table {}",
                    linked_table.name
                ),
            ));
        };
        let duplicate = targets.iter().any(|existing| match (existing, &target) {
            (LinkTarget::Existing(left), LinkTarget::Existing(right))
            | (LinkTarget::CreateNamed(left), LinkTarget::CreateNamed(right)) => left == right,
            _ => false,
        });
        if !duplicate {
            targets.push(target);
        }
    }
    Ok(Planned::Links(targets))
}

/// The first record of a table whose primary field reads as `text` (typecast link matching).
fn primary_match(
    world: &World,
    base_index: usize,
    table_index: usize,
    text: &str,
) -> Option<String> {
    let signer = UrlSigner::new(0);
    let reader = Reader {
        world,
        base: &world.bases[base_index],
        urls: UrlContext {
            signer: &signer,
            base_url: "",
            expires_ms: 0,
        },
    };
    let table = &world.bases[base_index].tables[table_index];
    let primary = table.primary_slot();
    table
        .live()
        .find(
            |record| match reader.cell_value(table_index, record, primary, 0) {
                Some(Value::String(value)) => value == text,
                Some(Value::Number(number)) => number.to_string() == text,
                _ => false,
            },
        )
        .map(|record| record.id.clone())
}

fn plan_attachments(
    field: &Field,
    value: &Value,
    current: Option<&Cell>,
) -> Result<Planned, ApiError> {
    let invalid = |detail: &str| ApiError::invalid_value(&field.name, detail);
    let items = value
        .as_array()
        .ok_or_else(|| invalid("expected an array of attachment objects"))?;
    let existing: &[Attachment] = match current {
        Some(Cell::Attachments(attachments)) => attachments,
        _ => &[],
    };
    let mut planned = Vec::new();
    for item in items {
        let object = item
            .as_object()
            .ok_or_else(|| invalid("expected attachment objects"))?;
        if let Some(id) = object.get("id") {
            let id = id
                .as_str()
                .ok_or_else(|| invalid("an attachment id must be a string"))?;
            let kept = existing
                .iter()
                .find(|attachment| attachment.id == id)
                .ok_or_else(|| invalid(&format!("attachment {id} is not in this cell")))?;
            planned.push(PlannedAttachment::Keep(kept.clone()));
        } else if let Some(url) = object.get("url") {
            let url = url
                .as_str()
                .ok_or_else(|| invalid("an attachment url must be a string"))?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid("attachment urls must be http or https"));
            }
            let filename = match object.get("filename") {
                Some(Value::String(filename)) => filename.clone(),
                Some(_) => return Err(invalid("an attachment filename must be a string")),
                None => filename_from_url(url),
            };
            planned.push(PlannedAttachment::Fetch {
                url: url.to_owned(),
                filename,
            });
        } else {
            return Err(invalid(
                "each attachment needs an id (to keep) or a url (to add)",
            ));
        }
    }
    Ok(Planned::Attachments(planned))
}

/// The last path segment of a URL, or `a.<ext>`-style fallback, as Airtable names URL uploads.
fn filename_from_url(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_host = path.splitn(4, '/').nth(3).unwrap_or("");
    let last = after_host.rsplit('/').next().unwrap_or("");
    if last.is_empty() {
        "a".to_owned()
    } else {
        last.to_owned()
    }
}

/// Applies planned cells, tracking what was created along the way.
struct Applier {
    base_index: usize,
    context: WriteContext,
    /// Records created by typecast links, by (table, primary text), so a batch reuses them.
    created_by_name: HashMap<(usize, String), String>,
    fetches: Vec<PendingFetch>,
}

impl Applier {
    fn new(base_index: usize, context: WriteContext) -> Applier {
        Applier {
            base_index,
            context,
            created_by_name: HashMap::new(),
            fetches: Vec::new(),
        }
    }

    fn create_record(&mut self, world: &mut World, table_index: usize) -> String {
        let id = world.ids.next(IdKind::Record);
        let table = &mut world.bases[self.base_index].tables[table_index];
        let auto_number = table.next_auto_number();
        table.push_record(Record::new(
            id.clone(),
            self.context.now_ms,
            auto_number,
            self.context.user,
        ));
        id
    }

    fn apply_cells(
        &mut self,
        world: &mut World,
        table_index: usize,
        record_id: &str,
        cells: Vec<PlannedCell>,
    ) {
        for cell in cells {
            let field = &mut world.bases[self.base_index].tables[table_index].fields[cell.slot];
            for choice in &cell.new_choices {
                if !field.has_choice(choice) {
                    field.add_choice(&mut world.ids, choice);
                }
            }
            let field = &world.bases[self.base_index].tables[table_index].fields[cell.slot];
            let field_id = field.id.clone();
            let linked_index = field
                .linked_table_id()
                .and_then(|id| world.bases[self.base_index].table_index_by_id(id));
            let new_cell = match cell.planned {
                Planned::Clear => None,
                Planned::Json(value) => Some(Cell::Json(value)),
                Planned::Users(users) => Some(Cell::Users(users)),
                Planned::Links(targets) => {
                    let linked_index = linked_index.unwrap_or(table_index);
                    let ids = targets
                        .into_iter()
                        .map(|target| match target {
                            LinkTarget::Existing(id) => id,
                            LinkTarget::CreateNamed(name) => {
                                self.named_record(world, linked_index, &name)
                            }
                        })
                        .collect();
                    Some(Cell::Links(ids))
                }
                Planned::Attachments(planned) => {
                    let table_id = world.bases[self.base_index].tables[table_index].id.clone();
                    let attachments = planned
                        .into_iter()
                        .map(|planned| match planned {
                            PlannedAttachment::Keep(attachment) => attachment,
                            PlannedAttachment::Fetch { url, filename } => {
                                let attachment_id = world.ids.next(IdKind::Attachment);
                                self.fetches.push(PendingFetch {
                                    base_id: world.bases[self.base_index].id.clone(),
                                    table_id: table_id.clone(),
                                    record_id: record_id.to_owned(),
                                    field_id: field_id.clone(),
                                    attachment_id: attachment_id.clone(),
                                    url: url.clone(),
                                });
                                Attachment {
                                    id: attachment_id,
                                    mime: guess_mime(&filename).to_owned(),
                                    filename,
                                    state: AttachmentState::Pending { source_url: url },
                                }
                            }
                        })
                        .collect();
                    Some(Cell::Attachments(attachments))
                }
            };
            let table = &mut world.bases[self.base_index].tables[table_index];
            let Some(record) = table.record_mut(record_id) else {
                continue;
            };
            let old_links = record.links(cell.slot).to_vec();
            record.set_cell(cell.slot, new_cell);
            record.modified_ms = self.context.now_ms;
            record.modified_by = self.context.user;
            let new_links = record.links(cell.slot).to_vec();
            if old_links != new_links {
                sync_inverse(
                    world,
                    self.base_index,
                    table_index,
                    cell.slot,
                    record_id,
                    &old_links,
                    &new_links,
                    self.context,
                );
            }
        }
    }

    /// A record in `table_index` whose primary field is `name`, created on first use.
    fn named_record(&mut self, world: &mut World, table_index: usize, name: &str) -> String {
        if let Some(id) = self.created_by_name.get(&(table_index, name.to_owned())) {
            return id.clone();
        }
        let id = self.create_record(world, table_index);
        let table = &mut world.bases[self.base_index].tables[table_index];
        let primary = table.primary_slot();
        let writable_primary = table.fields[primary].field_type.is_writable();
        if let (true, Some(record)) = (writable_primary, table.record_mut(&id)) {
            record.set_cell(primary, Some(Cell::Json(Value::String(name.to_owned()))));
        }
        self.created_by_name
            .insert((table_index, name.to_owned()), id.clone());
        id
    }
}

/// Mirrors a change of `record_id`'s links in `slot` into the inverse field of the linked table.
#[allow(clippy::too_many_arguments)]
fn sync_inverse(
    world: &mut World,
    base_index: usize,
    table_index: usize,
    slot: usize,
    record_id: &str,
    old: &[String],
    new: &[String],
    context: WriteContext,
) {
    let base = &mut world.bases[base_index];
    let field = &base.tables[table_index].fields[slot];
    let (Some(linked_table_id), Some(inverse_id)) =
        (field.linked_table_id(), field.inverse_link_field_id())
    else {
        return;
    };
    let Some(linked_index) = base.table_index_by_id(linked_table_id) else {
        return;
    };
    let inverse_id = inverse_id.to_owned();
    let linked_table = &mut base.tables[linked_index];
    let Some(inverse_slot) = linked_table.field_slot(&inverse_id) else {
        return;
    };
    for removed in old.iter().filter(|id| !new.contains(id)) {
        if let Some(other) = linked_table.record_mut(removed) {
            let links: Vec<String> = other
                .links(inverse_slot)
                .iter()
                .filter(|id| *id != record_id)
                .cloned()
                .collect();
            other.set_cell(inverse_slot, Some(Cell::Links(links)));
            other.modified_ms = context.now_ms;
        }
    }
    for added in new.iter().filter(|id| !old.contains(id)) {
        if let Some(other) = linked_table.record_mut(added) {
            let mut links = other.links(inverse_slot).to_vec();
            if !links.iter().any(|id| id == record_id) {
                links.push(record_id.to_owned());
            }
            other.set_cell(inverse_slot, Some(Cell::Links(links)));
            other.modified_ms = context.now_ms;
        }
    }
}

/// Appends a ready attachment to a cell (uploadAttachment and direct test access).
pub(crate) fn append_attachment(
    world: &mut World,
    base_index: usize,
    table_index: usize,
    record_id: &str,
    slot: usize,
    attachment: Attachment,
    now_ms: i64,
) -> Result<(), ApiError> {
    let user = world.owner;
    let table = &mut world.bases[base_index].tables[table_index];
    if table.fields[slot].field_type != FieldType::MultipleAttachments {
        let name = table.fields[slot].name.clone();
        return Err(ApiError::invalid_value(
            &name,
            "the field is not an attachment field",
        ));
    }
    let record = table
        .record_mut(record_id)
        .ok_or_else(ApiError::record_not_found)?;
    let mut attachments = match record.cell(slot) {
        Some(Cell::Attachments(attachments)) => attachments.clone(),
        _ => Vec::new(),
    };
    attachments.push(attachment);
    record.set_cell(slot, Some(Cell::Attachments(attachments)));
    record.modified_ms = now_ms;
    record.modified_by = user;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_filenames_follow_the_last_segment() {
        assert_eq!(
            filename_from_url("https://example.com/a/b/photo.png?x=1"),
            "photo.png"
        );
        assert_eq!(filename_from_url("https://example.com/"), "a");
        assert_eq!(filename_from_url("http://example.com"), "a");
    }

    #[test]
    fn numbers_compare_across_representations() {
        assert!(json_equal(&json!(1), &json!(1.0)));
        assert!(!json_equal(&json!("1"), &json!(1)));
    }
}
