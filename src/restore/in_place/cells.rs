//! Cells, compared and written: what a record needs so that the live base holds the
//! snapshot's writable cells (`record_writes`), links resolved through the records created
//! again and the ones Airtable mirrors (`LinkState`), attachment cells reconciled file by file,
//! the cells a deleted record is created again with, and the key that recognises a record an
//! interrupted round created. No I/O; unit-tested.

use super::*;

/// What link cells are resolved and compared through.
#[derive(Debug, Default)]
pub(super) struct LinkState {
    /// Old → new ids of the records created again (this round and earlier ones).
    pub(super) id_map: HashMap<String, String>,
    /// Snapshot records deleted since and not created again: links to them are left out.
    pub(super) gone: HashSet<String>,
    /// (record, link field) → the records Airtable added to that cell when they were created
    /// with the other side of the pair filled in.
    pub(super) mirrored: HashMap<(String, String), Vec<String>>,
}

impl LinkState {
    /// A linked record's id now: the new id of a record created again, `None` for one that is
    /// gone or still to be created (`pending`).
    pub(super) fn resolve(&self, id: &str, pending: &HashSet<String>) -> Option<String> {
        if let Some(new) = self.id_map.get(id) {
            return Some(new.clone());
        }
        (!self.gone.contains(id) && !pending.contains(id)).then(|| id.to_owned())
    }

    /// Notes what Airtable mirrors when `record` is created with these link cells.
    pub(super) fn created(
        &mut self,
        fields: &[FieldWrite],
        record: &str,
        cells: &Map<String, Value>,
    ) {
        for f in fields.iter().filter(|f| f.kind == CellKind::Links) {
            let (Some(inverse), Some(ids)) = (&f.inverse, cells.get(&f.target)) else {
                continue;
            };
            for id in ids.as_array().into_iter().flatten().filter_map(link_id) {
                self.mirrored
                    .entry((id.to_owned(), inverse.clone()))
                    .or_default()
                    .push(record.to_owned());
            }
        }
    }
}

/// The plain writable cells of a record, as a key: equal keys mean a record an earlier round
/// created from this snapshot record (`snapshot_side` reads source field ids, else targets).
pub(super) fn content_key(fields: &[FieldWrite], record: &Record, snapshot_side: bool) -> String {
    let cells: Vec<Value> = fields
        .iter()
        .filter(|f| f.kind == CellKind::Plain)
        .map(|f| {
            let id = if snapshot_side { &f.source } else { &f.target };
            normalized(f.kind, record.fields.get(id))
        })
        .collect();
    Value::Array(cells).to_string()
}

/// What to write so that `live` holds `snapshot`'s writable cells: the cells to `PATCH`
/// (keyed by target field id) and the files to upload afterwards (field, attachment).
#[derive(Debug, Default)]
pub(super) struct Writes {
    pub(super) patch: Map<String, Value>,
    pub(super) uploads: Vec<(String, StoredAttachment)>,
    /// The source field ids concerned (for the report).
    pub(super) fields: Vec<String>,
}

impl Writes {
    pub(super) fn is_empty(&self) -> bool {
        self.patch.is_empty() && self.uploads.is_empty()
    }
}

pub(super) fn record_writes(
    fields: &[FieldWrite],
    snapshot: &Record,
    live: &Record,
    links: &LinkState,
) -> Writes {
    let mut writes = Writes::default();
    for f in fields {
        let want = snapshot.fields.get(&f.source);
        let have = live.fields.get(&f.target);
        match f.kind {
            CellKind::Plain => {
                let differs = match f.conversion {
                    Conversion::Text => {
                        let text = want.and_then(|v| convert(Conversion::Text, v));
                        normalized(CellKind::Plain, text.as_ref())
                            != normalized(CellKind::Plain, have)
                    }
                    _ => normalized(f.kind, want) != normalized(f.kind, have),
                };
                if differs {
                    let value = want
                        .and_then(|v| convert(f.conversion, v))
                        .unwrap_or(Value::Null);
                    writes.patch.insert(f.target.clone(), value);
                    writes.fields.push(f.source.clone());
                }
            }
            CellKind::Links if f.write => {
                let none = HashSet::new();
                let wanted: Vec<String> = want
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(link_id)
                            .filter_map(|id| links.resolve(id, &none))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut has: Vec<Value> =
                    have.and_then(Value::as_array).cloned().unwrap_or_default();
                if let Some(more) = links.mirrored.get(&(live.id.clone(), f.target.clone())) {
                    has.extend(more.iter().map(|id| Value::from(id.as_str())));
                }
                let want = normalized(CellKind::Links, Some(&Value::from(wanted.clone())));
                if want != normalized(CellKind::Links, Some(&Value::Array(has))) {
                    writes.patch.insert(f.target.clone(), Value::from(wanted));
                    writes.fields.push(f.source.clone());
                }
            }
            CellKind::Attachments => {
                let (keep, upload, changed) = reconcile_attachments(want, have);
                if changed {
                    writes.patch.insert(
                        f.target.clone(),
                        Value::Array(keep.into_iter().map(|id| json!({"id": id})).collect()),
                    );
                }
                if changed || !upload.is_empty() {
                    writes.fields.push(f.source.clone());
                }
                writes
                    .uploads
                    .extend(upload.into_iter().map(|a| (f.target.clone(), a)));
            }
            CellKind::Links | CellKind::Computed => {}
        }
    }
    writes
}

/// An attachment cell's files: the live ones to keep (in the snapshot's order), the snapshot's
/// files to upload, and whether the cell must be cut to the kept ones first. A live file is
/// kept for a snapshot file with its id, or for one with the same filename and size that is not
/// in the live cell by id (the copy an earlier upload made).
pub(super) fn reconcile_attachments(
    want: Option<&Value>,
    have: Option<&Value>,
) -> (Vec<String>, Vec<StoredAttachment>, bool) {
    let want = cell_attachments(want);
    let have: Vec<(String, String, Option<u64>)> = have
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|a| {
                    Some((
                        a.get("id")?.as_str()?.to_owned(),
                        a.get("filename")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        a.get("size").and_then(Value::as_u64),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let wanted_ids: HashSet<&str> = want.iter().map(|a| a.id.as_str()).collect();
    let mut used = vec![false; have.len()];
    let mut keep = Vec::new();
    let mut upload = Vec::new();
    for a in &want {
        let found = have
            .iter()
            .position(|(id, _, _)| *id == a.id)
            .filter(|&i| !used[i])
            .or_else(|| {
                have.iter().enumerate().position(|(i, (id, name, size))| {
                    !used[i]
                        && !wanted_ids.contains(id.as_str())
                        && *name == a.filename
                        && (a.size.is_none() || *size == a.size)
                })
            });
        match found {
            Some(i) => {
                used[i] = true;
                keep.push(have[i].0.clone());
            }
            None => upload.push(a.clone()),
        }
    }
    let live_order: Vec<&str> = have.iter().map(|(id, _, _)| id.as_str()).collect();
    let changed = live_order.len() != keep.len()
        || live_order.iter().zip(&keep).any(|(a, b)| *a != b.as_str());
    (keep, upload, changed)
}

/// The cells a deleted record is created again with, keyed by target field id: the plain
/// writable ones, converted, and the links (either side of a pair) to records that exist:
/// surviving ones and ones already created again, but not those still `pending`. Files and
/// links to pending records follow in the update pass.
pub(super) fn create_cells(
    fields: &[FieldWrite],
    record: &Record,
    links: &LinkState,
    pending: &HashSet<String>,
) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|f| {
            let cell = record.fields.get(&f.source)?;
            let value = match f.kind {
                CellKind::Plain => convert(f.conversion, cell)?,
                CellKind::Links => {
                    let ids: Vec<String> = cell
                        .as_array()?
                        .iter()
                        .filter_map(link_id)
                        .filter_map(|id| links.resolve(id, pending))
                        .collect();
                    if ids.is_empty() {
                        return None;
                    }
                    Value::from(ids)
                }
                CellKind::Attachments | CellKind::Computed => return None,
            };
            Some((f.target.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_are_kept_by_id_or_by_an_earlier_copy_and_uploaded_otherwise() {
        let want = json!([
            {"id": "att1", "filename": "a.png", "size": 3},
            {"id": "att2", "filename": "b.png", "size": 4},
        ]);
        // Unchanged.
        let (keep, upload, changed) = reconcile_attachments(Some(&want), Some(&want));
        assert_eq!(keep, ["att1", "att2"]);
        assert!(upload.is_empty() && !changed);
        // One removed since, one added since: cut to att1, upload b.png.
        let have = json!([
            {"id": "att1", "filename": "a.png", "size": 3},
            {"id": "att9", "filename": "new.png", "size": 9},
        ]);
        let (keep, upload, changed) = reconcile_attachments(Some(&want), Some(&have));
        assert_eq!(keep, ["att1"]);
        assert_eq!(upload.len(), 1);
        assert_eq!(upload[0].filename, "b.png");
        assert!(changed);
        // A copy an earlier round uploaded counts as the file.
        let have = json!([
            {"id": "att1", "filename": "a.png", "size": 3},
            {"id": "attC", "filename": "b.png", "size": 4},
        ]);
        let (keep, upload, changed) = reconcile_attachments(Some(&want), Some(&have));
        assert_eq!(keep, ["att1", "attC"]);
        assert!(upload.is_empty() && !changed);
        // An empty live cell: everything uploaded, nothing to cut.
        let (keep, upload, changed) = reconcile_attachments(Some(&want), None);
        assert!(keep.is_empty() && !changed);
        assert_eq!(upload.len(), 2);
    }

    fn field(source: &str, kind: CellKind) -> FieldWrite {
        FieldWrite {
            source: source.into(),
            target: source.into(),
            name: source.into(),
            kind,
            conversion: Conversion::AsIs,
            write: true,
            create: None,
            inverse: None,
            link: None,
        }
    }

    fn record(id: &str, fields: Value) -> Record {
        Record {
            id: id.into(),
            created_time: String::new(),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn writes_name_only_cells_that_differ_and_point_links_at_new_ids() {
        let fields = [
            field("fldA", CellKind::Plain),
            field("fldB", CellKind::Plain),
            field("fldL", CellKind::Links),
        ];
        let snapshot = record(
            "rec1",
            json!({"fldA": "x", "fldB": 2, "fldL": ["recOld", "recKept"]}),
        );
        let live = record("rec1", json!({"fldA": "x", "fldL": ["recKept"]}));
        let map = LinkState {
            id_map: HashMap::from([("recOld".to_owned(), "recNew".to_owned())]),
            ..LinkState::default()
        };
        let writes = record_writes(&fields, &snapshot, &live, &map);
        assert_eq!(
            Value::Object(writes.patch.clone()),
            json!({"fldB": 2, "fldL": ["recNew", "recKept"]})
        );
        // Once written, nothing differs (links as sets).
        let after = record(
            "rec1",
            json!({"fldA": "x", "fldB": 2, "fldL": ["recKept", "recNew"]}),
        );
        assert!(record_writes(&fields, &snapshot, &after, &map).is_empty());
        // A cell emptied since the snapshot's empty value: nothing to write either way.
        let cleared = record(
            "rec1",
            json!({"fldA": "x", "fldB": 2, "fldL": ["recKept", "recNew"], "fldZ": 1}),
        );
        assert!(record_writes(&fields, &snapshot, &cleared, &map).is_empty());
        // A cell filled since the snapshot (where it was empty) is cleared.
        let filled = record(
            "rec1",
            json!({"fldA": "x", "fldB": 2, "fldL": ["recKept", "recNew"]}),
        );
        let empty_snapshot = record("rec1", json!({"fldB": 2, "fldL": ["recOld", "recKept"]}));
        let writes = record_writes(&fields, &empty_snapshot, &filled, &map);
        assert_eq!(Value::Object(writes.patch), json!({"fldA": null}));
        // Empty link cells on both sides are equal (an empty list is not a change).
        let no_links = record("rec1", json!({"fldA": "x"}));
        assert!(record_writes(&fields, &no_links, &no_links, &map).is_empty());
        // Links to records that are gone are left out.
        let gone = LinkState {
            gone: HashSet::from(["recKept".to_owned()]),
            ..map
        };
        let writes = record_writes(&fields, &snapshot, &after, &gone);
        assert_eq!(Value::Object(writes.patch), json!({"fldL": ["recNew"]}));
        // A link Airtable mirrored when a record was created with the other side counts.
        let mut mirrored = LinkState {
            id_map: HashMap::from([("recOld".to_owned(), "recNew".to_owned())]),
            ..LinkState::default()
        };
        mirrored
            .mirrored
            .insert(("rec1".into(), "fldL".into()), vec!["recNew".into()]);
        assert!(record_writes(&fields, &snapshot, &live_with_b(), &mirrored).is_empty());
    }

    fn live_with_b() -> Record {
        record("rec1", json!({"fldA": "x", "fldB": 2, "fldL": ["recKept"]}))
    }
}
