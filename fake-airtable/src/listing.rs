//! Listing records: the query (or `listRecords` body) parameters, page building, and the
//! server-side iterators behind `offset` tokens.
//!
//! The first page fixes the set and order of records for the whole listing, as an Airtable
//! iterator does: with `sort` the records are sorted, with `view` they come in the view's order
//! (creation order here), and with neither the order is a seeded shuffle, different on every
//! listing. Later pages name the iterator in `offset` (`itr…/rec…`). An iterator dies after a
//! period without use, or when the fake is told to expire them; using it then is 422
//! `LIST_RECORDS_ITERATOR_NOT_AVAILABLE`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::api_error::ApiError;
use super::formula::{self, FValue};
use super::ids::{IdGen, IdKind, is_airtable_id};
use super::render::{Reader, RenderOptions};

/// Most records on one page.
pub(crate) const MAX_PAGE_SIZE: usize = 100;
/// Iterators kept at most; the least recently used go first.
const MAX_ITERATORS: usize = 4096;

/// Parameters of a list request.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListParams {
    pub(crate) page_size: Option<usize>,
    pub(crate) max_records: Option<usize>,
    pub(crate) offset: Option<String>,
    pub(crate) view: Option<String>,
    pub(crate) sort: Vec<SortKey>,
    pub(crate) filter_by_formula: Option<String>,
    pub(crate) cell_format: Option<String>,
    pub(crate) time_zone: Option<String>,
    pub(crate) user_locale: Option<String>,
    pub(crate) fields: Option<Vec<String>>,
    pub(crate) by_field_id: bool,
    pub(crate) comment_count: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct SortKey {
    pub(crate) field: String,
    pub(crate) descending: bool,
}

fn positive(name: &str, text: &str) -> Result<usize, ApiError> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::invalid_request(format!("{name} must be a positive integer")))
}

fn parse_bool(name: &str, text: &str) -> Result<bool, ApiError> {
    match text {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::invalid_request(format!(
            "{name} must be true or false"
        ))),
    }
}

fn direction(text: &str) -> Result<bool, ApiError> {
    match text {
        "asc" => Ok(false),
        "desc" => Ok(true),
        _ => Err(ApiError::invalid_request(
            "sort direction must be asc or desc",
        )),
    }
}

/// `name[]` or `name[3]` or plain `name`.
fn is_array_key(key: &str, name: &str) -> bool {
    key == name
        || key
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('['))
            .and_then(|rest| rest.strip_suffix(']'))
            .is_some_and(|index| index.bytes().all(|b| b.is_ascii_digit()))
}

impl ListParams {
    /// From the query string of `GET /v0/{base}/{table}`.
    pub(crate) fn from_query(pairs: &[(String, String)]) -> Result<ListParams, ApiError> {
        let mut params = ListParams::default();
        let mut sorts: Vec<(usize, SortKey)> = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "pageSize" => params.page_size = Some(positive("pageSize", value)?),
                "maxRecords" => params.max_records = Some(positive("maxRecords", value)?),
                "offset" => params.offset = Some(value.clone()),
                "view" => params.view = Some(value.clone()),
                "filterByFormula" => params.filter_by_formula = Some(value.clone()),
                "cellFormat" => params.cell_format = Some(value.clone()),
                "timeZone" => params.time_zone = Some(value.clone()),
                "userLocale" => params.user_locale = Some(value.clone()),
                "returnFieldsByFieldId" => params.by_field_id = parse_bool(key, value)?,
                _ if is_array_key(key, "fields") => params
                    .fields
                    .get_or_insert_with(Vec::new)
                    .push(value.clone()),
                _ if is_array_key(key, "recordMetadata") => params.record_metadata(value)?,
                _ if key.starts_with("sort[") => {
                    let inner = &key[5..];
                    let (index, rest) = inner
                        .split_once(']')
                        .ok_or_else(|| ApiError::invalid_request(format!("bad parameter {key}")))?;
                    let index: usize = index
                        .parse()
                        .map_err(|_| ApiError::invalid_request(format!("bad parameter {key}")))?;
                    let position = match sorts.iter().position(|(existing, _)| *existing == index) {
                        Some(position) => position,
                        None => {
                            sorts.push((index, SortKey::default()));
                            sorts.len() - 1
                        }
                    };
                    match rest {
                        "[field]" => sorts[position].1.field = value.clone(),
                        "[direction]" => sorts[position].1.descending = direction(value)?,
                        _ => {
                            return Err(ApiError::invalid_request(format!(
                                "unknown parameter {key}"
                            )));
                        }
                    }
                }
                _ => {
                    return Err(ApiError::invalid_request(format!(
                        "unknown parameter {key}"
                    )));
                }
            }
        }
        sorts.sort_by_key(|(index, _)| *index);
        params.sort = sorts.into_iter().map(|(_, key)| key).collect();
        Ok(params)
    }

    fn record_metadata(&mut self, value: &str) -> Result<(), ApiError> {
        if value != "commentCount" {
            return Err(ApiError::invalid_request(
                "recordMetadata only supports commentCount",
            ));
        }
        self.comment_count = true;
        Ok(())
    }

    /// From the JSON body of `POST /v0/{base}/{table}/listRecords`; query parameters (which
    /// clients use for `timeZone`/`userLocale`) are merged in first.
    pub(crate) fn from_body(
        body: &Value,
        query: &[(String, String)],
    ) -> Result<ListParams, ApiError> {
        let mut params = ListParams::from_query(query)?;
        let object = body
            .as_object()
            .ok_or_else(|| ApiError::invalid_request("the body must be an object"))?;
        let text = |value: &Value, name: &str| {
            value
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| ApiError::invalid_request(format!("{name} must be a string")))
        };
        let count = |value: &Value, name: &str| {
            value
                .as_u64()
                .filter(|n| *n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    ApiError::invalid_request(format!("{name} must be a positive integer"))
                })
        };
        for (key, value) in object {
            match key.as_str() {
                "pageSize" => params.page_size = Some(count(value, key)?),
                "maxRecords" => params.max_records = Some(count(value, key)?),
                "offset" => params.offset = Some(text(value, key)?),
                "view" => params.view = Some(text(value, key)?),
                "filterByFormula" => params.filter_by_formula = Some(text(value, key)?),
                "cellFormat" => params.cell_format = Some(text(value, key)?),
                "timeZone" => params.time_zone = Some(text(value, key)?),
                "userLocale" => params.user_locale = Some(text(value, key)?),
                "returnFieldsByFieldId" => {
                    params.by_field_id = value.as_bool().ok_or_else(|| {
                        ApiError::invalid_request("returnFieldsByFieldId must be a boolean")
                    })?;
                }
                "fields" => {
                    let names = value
                        .as_array()
                        .ok_or_else(|| ApiError::invalid_request("fields must be an array"))?;
                    params.fields = Some(
                        names
                            .iter()
                            .map(|name| text(name, "fields"))
                            .collect::<Result<_, _>>()?,
                    );
                }
                "recordMetadata" => {
                    for item in value.as_array().ok_or_else(|| {
                        ApiError::invalid_request("recordMetadata must be an array")
                    })? {
                        params.record_metadata(&text(item, key)?)?;
                    }
                }
                "sort" => {
                    let items = value
                        .as_array()
                        .ok_or_else(|| ApiError::invalid_request("sort must be an array"))?;
                    params.sort = items
                        .iter()
                        .map(|item| {
                            let field = text(&item["field"], "sort.field")?;
                            let descending = match item.get("direction") {
                                None => false,
                                Some(value) => direction(&text(value, "sort.direction")?)?,
                            };
                            Ok(SortKey { field, descending })
                        })
                        .collect::<Result<_, ApiError>>()?;
                }
                _ => {
                    return Err(ApiError::invalid_request(format!(
                        "unknown parameter {key}"
                    )));
                }
            }
        }
        Ok(params)
    }
}

struct ListIterator {
    base_id: String,
    table_id: String,
    /// Record slots in listing order.
    order: std::sync::Arc<Vec<u32>>,
    /// Every offset handed out (by the record it resumes at) and its position in `order`.
    /// An offset can be replayed while the iterator lives (`itr…/rec…` names a position), so a
    /// client retrying a page after a dropped connection gets the same page again.
    positions: HashMap<String, usize>,
    last_used: Instant,
}

/// The live list iterators.
pub(crate) struct Iterators {
    ids: IdGen,
    shuffle: fastrand::Rng,
    live: HashMap<String, ListIterator>,
}

impl Iterators {
    pub(crate) fn new(seed: u64) -> Iterators {
        Iterators {
            ids: IdGen::new(seed ^ 0x17e7_a70f),
            shuffle: fastrand::Rng::with_seed(seed ^ 0x5_4ff1e),
            live: HashMap::new(),
        }
    }

    /// Forgets every iterator, so the next use of any `offset` fails.
    pub(crate) fn expire_all(&mut self) {
        self.live.clear();
    }

    fn collect_garbage(&mut self, ttl: Duration, now: Instant) {
        self.live
            .retain(|_, iterator| now.duration_since(iterator.last_used) < ttl);
        while self.live.len() >= MAX_ITERATORS {
            let Some(oldest) = self
                .live
                .iter()
                .min_by_key(|(_, iterator)| iterator.last_used)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            self.live.remove(&oldest);
        }
    }
}

struct FilterScope<'r, 'a> {
    reader: &'r Reader<'a>,
    table_index: usize,
    record: &'r super::state::Record,
}

impl formula::Scope for FilterScope<'_, '_> {
    fn field(&self, field_id: &str) -> FValue {
        let table = &self.reader.base.tables[self.table_index];
        match table.field_slot(field_id) {
            Some(slot) => FValue::from_json(
                self.reader
                    .cell_value(self.table_index, self.record, slot, 0)
                    .as_ref(),
            ),
            None => FValue::Error,
        }
    }

    fn record_id(&self) -> &str {
        &self.record.id
    }
}

fn compare_values(left: &Option<Value>, right: &Option<Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (left, right) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(Value::Number(left)), Some(Value::Number(right))) => left
            .as_f64()
            .partial_cmp(&right.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(left), Some(right)) => {
            let text = |value: &Value| match value {
                Value::String(text) => text.to_lowercase(),
                other => other.to_string(),
            };
            text(left).cmp(&text(right))
        }
    }
}

/// Field slots for `fields[]`, in table order.
pub(crate) fn resolve_field_filter(
    reader: &Reader,
    table_index: usize,
    names: &[String],
) -> Result<Vec<usize>, ApiError> {
    let table = &reader.base.tables[table_index];
    let mut slots = names
        .iter()
        .map(|name| {
            table
                .field_slot_by_key(name)
                .ok_or_else(|| ApiError::unknown_field_name(name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    slots.sort_unstable();
    slots.dedup();
    Ok(slots)
}

/// The render options a list or get request asks for.
pub(crate) fn render_options(
    reader: &Reader,
    table_index: usize,
    params: &ListParams,
) -> Result<RenderOptions, ApiError> {
    let as_strings = match params.cell_format.as_deref() {
        None | Some("json") => false,
        Some("string") => {
            if params.time_zone.is_none() || params.user_locale.is_none() {
                return Err(ApiError::invalid_request(
                    "timeZone and userLocale are required when cellFormat is string",
                ));
            }
            true
        }
        Some(_) => {
            return Err(ApiError::invalid_request(
                "cellFormat must be json or string",
            ));
        }
    };
    let only_slots = match &params.fields {
        Some(names) => Some(resolve_field_filter(reader, table_index, names)?),
        None => None,
    };
    Ok(RenderOptions {
        by_field_id: params.by_field_id,
        only_slots,
        as_strings,
        comment_count: params.comment_count,
    })
}

/// The record order of a new listing.
fn initial_order(
    reader: &Reader,
    table_index: usize,
    params: &ListParams,
    shuffle: &mut fastrand::Rng,
) -> Result<Vec<u32>, ApiError> {
    let table = &reader.base.tables[table_index];
    let keep = match &params.filter_by_formula {
        Some(text) if !text.trim().is_empty() => {
            let resolve = |key: &str| {
                table
                    .field_slot_by_key(key)
                    .map(|slot| table.fields[slot].id.clone())
            };
            let expr = formula::parse(text, &resolve).map_err(|error| {
                ApiError::unprocessable(
                    "INVALID_FILTER_BY_FORMULA",
                    format!("The formula for filtering records is invalid: {error}"),
                )
            })?;
            Some(expr)
        }
        _ => None,
    };
    let mut order: Vec<u32> = table
        .records
        .iter()
        .enumerate()
        .filter_map(|(slot, record)| {
            let record = record.as_ref()?;
            if let Some(expr) = &keep {
                let scope = FilterScope {
                    reader,
                    table_index,
                    record,
                };
                if !formula::eval(expr, &scope).is_truthy() {
                    return None;
                }
            }
            Some(slot as u32)
        })
        .collect();
    if let Some(view) = &params.view
        && !table
            .views
            .iter()
            .any(|candidate| candidate.id == *view || candidate.name == *view)
    {
        return Err(ApiError::unprocessable(
            "VIEW_NAME_NOT_FOUND",
            format!("Could not find view \"{view}\" in table {}", table.name),
        ));
    }
    if !params.sort.is_empty() {
        let keys = params
            .sort
            .iter()
            .map(|key| {
                table
                    .field_slot_by_key(&key.field)
                    .map(|slot| (slot, key.descending))
                    .ok_or_else(|| ApiError::unknown_field_name(&key.field))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut decorated: Vec<(Vec<Option<Value>>, u32)> = order
            .iter()
            .map(|&slot| {
                let record = table.records[slot as usize].as_ref();
                let values = keys
                    .iter()
                    .map(|(field_slot, _)| {
                        record.and_then(|record| {
                            reader.cell_value(table_index, record, *field_slot, 0)
                        })
                    })
                    .collect();
                (values, slot)
            })
            .collect();
        decorated.sort_by(|(left, left_slot), (right, right_slot)| {
            for ((left, right), (_, descending)) in left.iter().zip(right).zip(&keys) {
                let ordering = compare_values(left, right);
                let ordering = if *descending {
                    ordering.reverse()
                } else {
                    ordering
                };
                if ordering.is_ne() {
                    return ordering;
                }
            }
            left_slot.cmp(right_slot)
        });
        order = decorated.into_iter().map(|(_, slot)| slot).collect();
    } else if params.view.is_none() {
        shuffle.shuffle(&mut order);
    }
    if let Some(max) = params.max_records {
        order.truncate(max);
    }
    Ok(order)
}

/// One page of `GET /v0/{base}/{table}` (or its POST form).
pub(crate) fn list_page(
    reader: &Reader,
    table_index: usize,
    params: &ListParams,
    iterators: &Mutex<Iterators>,
    iterator_ttl: Duration,
    now: Instant,
) -> Result<Value, ApiError> {
    // The iterator lock is held only to take or store an iterator, not while rendering.
    let lock = || {
        iterators
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    let page_size = params.page_size.unwrap_or(MAX_PAGE_SIZE);
    if page_size > MAX_PAGE_SIZE {
        return Err(ApiError::invalid_request(format!(
            "pageSize must be at most {MAX_PAGE_SIZE}, got {page_size}"
        )));
    }
    let options = render_options(reader, table_index, params)?;
    let table = &reader.base.tables[table_index];
    let (iterator_id, order, position) = match &params.offset {
        Some(offset) => {
            let (iterator_id, record_id) = offset.split_once('/').unwrap_or((offset.as_str(), ""));
            if !is_airtable_id(iterator_id, "itr") || !is_airtable_id(record_id, "rec") {
                return Err(ApiError::unprocessable(
                    "INVALID_OFFSET_VALUE",
                    format!("The offset {offset} is not a valid offset"),
                ));
            }
            let mut iterators = lock();
            let Some(iterator) = iterators.live.get_mut(iterator_id) else {
                return Err(ApiError::iterator_not_available());
            };
            let position = iterator.positions.get(record_id).copied();
            let usable = iterator.base_id == reader.base.id
                && iterator.table_id == table.id
                && now.duration_since(iterator.last_used) < iterator_ttl;
            let (true, Some(position)) = (usable, position) else {
                return Err(ApiError::iterator_not_available());
            };
            iterator.last_used = now;
            (iterator_id.to_owned(), iterator.order.clone(), position)
        }
        None => {
            let (iterator_id, mut shuffle) = {
                let mut iterators = lock();
                (
                    iterators.ids.next(IdKind::Iterator),
                    iterators.shuffle.fork(),
                )
            };
            let order = initial_order(reader, table_index, params, &mut shuffle)?;
            (iterator_id, std::sync::Arc::new(order), 0)
        }
    };
    let mut records = Vec::new();
    let mut at = position;
    while at < order.len() && records.len() < page_size {
        if let Some(record) = table.records[order[at] as usize].as_ref() {
            records.push(reader.record_json(table_index, record, &options));
        }
        at += 1;
    }
    // Skip records deleted since the listing began, so `offset` names a live one.
    while at < order.len() && table.records[order[at] as usize].is_none() {
        at += 1;
    }
    let mut page = json!({"records": records});
    if at < order.len()
        && let Some(next) = table.records[order[at] as usize].as_ref()
    {
        let next_record_id = next.id.clone();
        page["offset"] = json!(format!("{iterator_id}/{next_record_id}"));
        let mut iterators = lock();
        iterators.collect_garbage(iterator_ttl, now);
        let iterator = iterators
            .live
            .entry(iterator_id)
            .or_insert_with(|| ListIterator {
                base_id: reader.base.id.clone(),
                table_id: table.id.clone(),
                order,
                positions: HashMap::new(),
                last_used: now,
            });
        iterator.positions.insert(next_record_id, at);
        iterator.last_used = now;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_query_arrays_and_sorts() {
        let params = ListParams::from_query(&pairs(&[
            ("fields[]", "Name"),
            ("fields[]", "fldX"),
            ("sort[1][field]", "B"),
            ("sort[0][field]", "A"),
            ("sort[0][direction]", "desc"),
            ("returnFieldsByFieldId", "1"),
            ("recordMetadata[]", "commentCount"),
        ]))
        .unwrap();
        assert_eq!(params.fields.unwrap(), ["Name", "fldX"]);
        assert_eq!(params.sort.len(), 2);
        assert_eq!(params.sort[0].field, "A");
        assert!(params.sort[0].descending);
        assert!(params.by_field_id);
        assert!(params.comment_count);
    }

    #[test]
    fn rejects_unknown_and_malformed_parameters() {
        assert!(ListParams::from_query(&pairs(&[("pagesize", "10")])).is_err());
        assert!(ListParams::from_query(&pairs(&[("pageSize", "ten")])).is_err());
        assert!(ListParams::from_query(&pairs(&[("returnFieldsByFieldId", "yes")])).is_err());
        assert!(ListParams::from_body(&json!({"pageSize": 10, "nope": 1}), &[]).is_err());
        let body = ListParams::from_body(&json!({"fields": ["a"], "sort": [{"field": "a"}]}), &[])
            .unwrap();
        assert_eq!(body.fields.unwrap(), ["a"]);
    }
}
