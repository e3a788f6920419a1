//! The layout of an export, decided before anything is written: the first pass reads every
//! record once and gives each table its safe, unique name (the stem of `tables/<stem>.json`
//! and `attachments/<stem>/`), its columns (the schema's fields less those the backup left
//! out, then the field ids found only in records), and each attachment whose content the
//! snapshot holds its path, `attachments/<table>/<record id>/<filename>`. An attachment seen
//! only outside its own field (through a lookup) is placed after every table was read, unless
//! its own field turned up meanwhile.
//!
//! It relies on [`names`](super::names) for safe, unique names, and on the source for the
//! records and the attachments' metadata. The writers (`writer.rs` for packages, `sqlite.rs`)
//! only follow it. It holds no record: about 200 bytes per attachment.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

use super::names::{MAX_NAME_BYTES, NameSet};
use super::render::{self, Column};
use super::source::Source;
use super::{ExportError, records_of};
use crate::airtable::Record;
use crate::stored::{StoredBase, StoredFile, StoredTable};

/// Every name and path of an export, decided before anything is written.
pub(super) struct Layout {
    pub(super) tables: Vec<TableLayout>,
    /// Attachments whose content the snapshot holds, in the order they are written.
    pub(super) files: Vec<FileEntry>,
    /// Attachment id → its file.
    pub(super) paths: HashMap<String, Slot>,
    /// Attachments without content, in the order they were found.
    pub(super) missing: Vec<String>,
    pub(super) records: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    File(usize),
    Missing,
}

pub(super) struct TableLayout {
    pub(super) table: StoredTable,
    /// The table's safe name: `tables/<stem>.json`, `attachments/<stem>/`.
    pub(super) stem: String,
    pub(super) columns: Vec<Column>,
    pub(super) records: u64,
}

impl TableLayout {
    pub(super) fn json_path(&self) -> String {
        format!("tables/{}.json", self.stem)
    }
    pub(super) fn csv_path(&self) -> String {
        format!("tables/{}.csv", self.stem)
    }
    /// `comments/<stem>.json`, written for a table with comments only.
    pub(super) fn comments_path(&self) -> String {
        format!("comments/{}.json", self.stem)
    }
}

/// One attachment file.
pub(super) struct FileEntry {
    pub(super) id: String,
    /// Index of the table whose record holds it.
    pub(super) table: usize,
    pub(super) record_id: String,
    pub(super) field_id: String,
    /// Relative path in the package.
    pub(super) path: String,
    /// The attachment object as the record holds it (filename, type, size, …).
    pub(super) object: Value,
    pub(super) file: StoredFile,
}

/// The folders of one table's records under `attachments/<table>/`.
#[derive(Default)]
struct RecordFolders {
    names: NameSet,
    /// Record id → (folder name, the names taken in it).
    folders: HashMap<String, (String, NameSet)>,
}

impl RecordFolders {
    fn folder(&mut self, record_id: &str) -> &mut (String, NameSet) {
        if !self.folders.contains_key(record_id) {
            let name = self.names.claim(record_id, MAX_NAME_BYTES);
            self.folders
                .insert(record_id.to_owned(), (name, NameSet::new()));
        }
        self.folders.get_mut(record_id).expect("inserted above")
    }
}

/// An attachment seen outside an attachment field (a lookup), placed after every table was
/// read unless its own field turned up meanwhile.
struct Pending {
    id: String,
    table: usize,
    record_id: String,
    field_id: String,
    object: Value,
}

impl Layout {
    /// The first pass: reads every record once, and decides table names, columns and the path
    /// of every attachment.
    pub(super) fn build(source: &Source) -> Result<Layout, ExportError> {
        let base = &source.base;
        let mut layout = Layout {
            tables: Vec::new(),
            files: Vec::new(),
            paths: HashMap::new(),
            missing: Vec::new(),
            records: 0,
        };
        let mut stems = NameSet::new();
        let mut folders: Vec<RecordFolders> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut pending_ids: HashSet<String> = HashSet::new();

        for table in &base.tables {
            let index = layout.tables.len();
            // Room for the `.json` and `.csv` that follow the stem.
            let stem = stems.claim(&table.name, MAX_NAME_BYTES - ".json".len());
            let mut columns = schema_columns(base, table);
            let attachment_fields: HashSet<String> = columns
                .iter()
                .filter(|c| c.field_type.as_deref() == Some("multipleAttachments"))
                .map(|c| c.field_id.clone())
                .collect();
            let known: HashSet<String> = columns.iter().map(|c| c.field_id.clone()).collect();
            let order: HashMap<String, usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.field_id.clone(), i))
                .collect();
            let mut extra: BTreeSet<String> = BTreeSet::new();
            let mut table_folders = RecordFolders::default();
            let mut records = 0u64;

            for record in source.records(table) {
                let record = record.map_err(records_of(table))?;
                records += 1;
                // Cells in column order, then those the schema does not list (by id).
                let mut cells: Vec<(&String, &Value)> = record.fields.iter().collect();
                cells.sort_by_key(|(id, _)| (order.get(*id).copied().unwrap_or(usize::MAX), *id));
                for (field_id, value) in cells {
                    if !known.contains(field_id) {
                        extra.insert(field_id.clone());
                    }
                    let mut found = Vec::new();
                    render::for_each_attachment(value, &mut |object| found.push(object));
                    for object in found {
                        let id = crate::airtable::attachment_id(object).unwrap_or_default();
                        if layout.paths.contains_key(id) {
                            continue;
                        }
                        if attachment_fields.contains(field_id) {
                            layout.place(
                                source,
                                &stem,
                                index,
                                &mut table_folders,
                                &record.id,
                                field_id,
                                object,
                            )?;
                        } else if pending_ids.insert(id.to_owned()) {
                            pending.push(Pending {
                                id: id.to_owned(),
                                table: index,
                                record_id: record.id.clone(),
                                field_id: field_id.clone(),
                                object: object.clone(),
                            });
                        }
                    }
                }
            }
            columns.extend(extra_columns(&columns, extra));
            layout.records += records;
            layout.tables.push(TableLayout {
                table: table.clone(),
                stem,
                columns,
                records,
            });
            folders.push(table_folders);
        }

        for p in pending {
            if layout.paths.contains_key(&p.id) {
                continue;
            }
            let stem = layout.tables[p.table].stem.clone();
            layout.place(
                source,
                &stem,
                p.table,
                &mut folders[p.table],
                &p.record_id,
                &p.field_id,
                &p.object,
            )?;
        }
        Ok(layout)
    }

    /// Gives the attachment `object` of `record_id` its file (or notes it as missing).
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        source: &Source,
        stem: &str,
        table: usize,
        folders: &mut RecordFolders,
        record_id: &str,
        field_id: &str,
        object: &Value,
    ) -> Result<(), ExportError> {
        let id = crate::airtable::attachment_id(object)
            .unwrap_or_default()
            .to_owned();
        let found = source.attachment(&id)?;
        let Some(file) = found else {
            self.paths.insert(id.clone(), Slot::Missing);
            self.missing.push(id);
            return Ok(());
        };
        let filename = object
            .get("filename")
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty())
            .or(file.filename.as_deref())
            .unwrap_or(&id)
            .to_owned();
        let (folder, taken) = folders.folder(record_id);
        let name = taken.claim(&filename, MAX_NAME_BYTES);
        let path = format!("attachments/{stem}/{folder}/{name}");
        self.paths.insert(id.clone(), Slot::File(self.files.len()));
        self.files.push(FileEntry {
            id,
            table,
            record_id: record_id.to_owned(),
            field_id: field_id.to_owned(),
            path,
            object: object.clone(),
            file,
        });
        Ok(())
    }

    /// The path of attachment `id` in the package, if its content is exported.
    fn path_of(&self, id: &str) -> Option<String> {
        match self.paths.get(id) {
            Some(Slot::File(index)) => Some(self.files[*index].path.clone()),
            _ => None,
        }
    }

    pub(super) fn attachment_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.file.size).sum()
    }

    /// A record ready to render: attachment objects carry their paths.
    pub(super) fn prepare(&self, mut record: Record) -> Record {
        let path_of = |id: &str| self.path_of(id);
        for value in record.fields.values_mut() {
            render::add_paths(value, &path_of);
        }
        record
    }
}

/// The columns of a table from the schema: its fields in schema order, less those the backup
/// left out. Keys are the field names; a name given twice gets the field id appended.
fn schema_columns(base: &StoredBase, table: &StoredTable) -> Vec<Column> {
    let Some(schema) = base.schema.tables.iter().find(|t| t.id == table.id) else {
        return Vec::new();
    };
    let fields: Vec<_> = schema
        .fields
        .iter()
        .filter(|f| !table.excluded_fields.contains(&f.id))
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for field in &fields {
        *counts.entry(field.name.as_str()).or_default() += 1;
    }
    fields
        .iter()
        .map(|f| Column {
            field_id: f.id.clone(),
            key: if counts[f.name.as_str()] > 1 {
                format!("{} ({})", f.name, f.id)
            } else {
                f.name.clone()
            },
            name: Some(f.name.clone()),
            field_type: Some(f.field_type.clone()),
        })
        .collect()
}

/// Columns for field ids found in records but not in the schema: keyed by id.
fn extra_columns(columns: &[Column], extra: BTreeSet<String>) -> Vec<Column> {
    let keys: HashSet<&str> = columns.iter().map(|c| c.key.as_str()).collect();
    extra
        .into_iter()
        .map(|id| Column {
            key: if keys.contains(id.as_str()) {
                format!("{id} ({id})")
            } else {
                id.clone()
            },
            field_id: id,
            name: None,
            field_type: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_field_names_get_their_id() {
        let cols = extra_columns(
            &[Column {
                field_id: "fldA".into(),
                key: "fldX".into(),
                name: Some("fldX".into()),
                field_type: None,
            }],
            ["fldX".to_owned(), "fldY".to_owned()].into_iter().collect(),
        );
        assert_eq!(cols[0].key, "fldX (fldX)");
        assert_eq!(cols[1].key, "fldY");
    }
}
