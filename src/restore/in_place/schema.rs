//! The schema half of an in-place restore's plan: how each snapshot field is written back
//! (matched by id, or by name in a table an earlier round created again), the fields and
//! tables deleted since to create, and which side of a link pair is written. No I/O.

use std::collections::HashSet;

use super::*;

/// How one snapshot field is written back.
#[derive(Debug, Clone)]
pub(super) struct FieldWrite {
    /// The snapshot's field id.
    pub(super) source: String,
    /// The live field id (the same unless created again).
    pub(super) target: String,
    pub(super) name: String,
    pub(super) kind: CellKind,
    pub(super) conversion: Conversion,
    /// For links: whether this side of the pair is written (Airtable mirrors the other).
    pub(super) write: bool,
    /// Still to create (the live base lacks it).
    pub(super) create: Option<NewField>,
    /// For links: the inverse field in the linked table, which Airtable keeps in step.
    pub(super) inverse: Option<String>,
    /// A link field of a table created again: created after the tables.
    pub(super) link: Option<LinkCreate>,
}

/// A link field to create in a table created again.
#[derive(Debug, Clone)]
pub(super) struct LinkCreate {
    /// Name and description (its type and linked table are added when it is created).
    pub(super) field: NewField,
    /// The linked table's id in the snapshot.
    pub(super) linked: String,
    /// The name the inverse had in the snapshot, given to the one Airtable creates.
    pub(super) inverse_name: Option<String>,
}

/// The linked table of a link field (its snapshot id).
pub(super) fn linked_table(field: &FieldSchema) -> &str {
    field
        .options
        .as_ref()
        .and_then(|o| o.get("linkedTableId"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The name a table deleted since is created again with: its own, or with " (restored)" when
/// another table of the snapshot now has that name.
pub(super) fn new_table_name(
    stored: &StoredBase,
    table: &TableSchema,
    live: &BaseSchema,
) -> String {
    let taken = live.tables.iter().any(|t| {
        t.name.eq_ignore_ascii_case(&table.name)
            && stored.schema.tables.iter().any(|s| s.id == t.id)
    });
    if taken {
        format!("{} (restored)", table.name)
    } else {
        table.name.clone()
    }
}

/// The table an earlier round created again for `table` (deleted since): a live table with the
/// name it is created with that the snapshot does not have.
pub(super) fn earlier_table<'a>(
    stored: &StoredBase,
    table: &TableSchema,
    live: &'a BaseSchema,
) -> Option<&'a TableSchema> {
    let name = new_table_name(stored, table, live);
    live.tables
        .iter()
        .find(|t| t.name == name && !stored.schema.tables.iter().any(|s| s.id == t.id))
}

/// A table deleted since, to create again: its fields as `restore` plans them (computed ones as
/// static copies), the link fields created afterwards from this side (or, between two tables
/// both created again, from the one first in the schema), every record to create again.
pub(super) fn new_table(
    stored: &StoredBase,
    table: &StoredTable,
    selected: &[String],
    recreated: &HashSet<String>,
    live: &BaseSchema,
) -> TableWork {
    let schema = stored
        .schema
        .table(&table.id)
        .expect("stored tables are in the schema");
    let all: Vec<String> = stored.schema.tables.iter().map(|t| t.id.clone()).collect();
    let name = new_table_name(stored, schema, live);
    let plan = super::plan::build(&stored.schema, &all, &table.excluded_fields, &[]);
    let planned = plan.table(&table.id).expect("the table is planned");
    let mut fields = Vec::new();
    let mut new_fields = Vec::new();
    for fp in &planned.fields {
        let Some(field) = schema.fields.iter().find(|f| f.id == fp.source_id) else {
            continue;
        };
        let mut write = FieldWrite {
            source: fp.source_id.clone(),
            // Until created, the source id stands in for the new one.
            target: fp.source_id.clone(),
            name: fp.name.clone(),
            kind: CellKind::Plain,
            conversion: fp.conversion,
            write: true,
            create: None,
            inverse: field.inverse_link_field_id().map(str::to_owned),
            link: None,
        };
        match fp.role {
            Role::Cells | Role::Attachments => {
                if fp.role == Role::Attachments {
                    write.kind = CellKind::Attachments;
                }
                new_fields.push(NewField {
                    name: fp.name.clone(),
                    field_type: fp.target_type.clone().unwrap_or_default(),
                    description: fp.description.clone(),
                    options: fp.options.clone(),
                });
            }
            Role::Link | Role::Inverse => {
                write.kind = CellKind::Links;
                let linked = linked_table(field).to_owned();
                let other_side_creates = recreated.contains(&linked)
                    && selected.contains(&linked)
                    && write.inverse.as_deref().is_some_and(|inverse| {
                        schema_position(&stored.schema, &linked, inverse)
                            < schema_position(&stored.schema, &table.id, &field.id)
                    });
                if other_side_creates {
                    write.write = false;
                } else {
                    let inverse_name = write.inverse.as_deref().and_then(|inverse| {
                        stored
                            .schema
                            .table(&linked)
                            .and_then(|t| t.fields.iter().find(|f| f.id == inverse))
                            .map(|f| f.name.clone())
                    });
                    write.link = Some(LinkCreate {
                        field: NewField {
                            name: field.name.clone(),
                            field_type: "multipleRecordLinks".into(),
                            description: field.description.clone(),
                            options: None,
                        },
                        linked,
                        inverse_name,
                    });
                }
            }
            Role::Skipped => continue,
        }
        fields.push(write);
    }
    TableWork {
        id: String::new(),
        source: table.id.clone(),
        name: name.clone(),
        new_table: Some(NewTable {
            name,
            description: schema.description.clone(),
            fields: new_fields,
        }),
        fields,
        ..TableWork::default()
    }
}

/// The fields of one table and how each is written back; problems for the ones that cannot be.
#[allow(clippy::too_many_arguments)]
pub(super) fn plan_fields(
    stored: &StoredBase,
    schema: &TableSchema,
    live: &TableSchema,
    by_name: bool,
    excluded: &[String],
    selected_tables: &[String],
    recreated_tables: &HashSet<String>,
    options: &InPlaceOptions,
    problems: &mut Vec<String>,
) -> Vec<FieldWrite> {
    let mut fields = Vec::new();
    for field in &schema.fields {
        let kind = CellKind::of(field);
        if kind == CellKind::Computed || excluded.contains(&field.id) {
            continue;
        }
        if !options.fields.is_empty()
            && !options
                .fields
                .iter()
                .any(|f| *f == field.id || f.eq_ignore_ascii_case(&field.name))
        {
            continue;
        }
        let conversion = match field.field_type.as_str() {
            "singleCollaborator" => Conversion::Collaborator,
            "multipleCollaborators" => Conversion::Collaborators,
            _ => Conversion::AsIs,
        };
        let mut write = FieldWrite {
            source: field.id.clone(),
            target: field.id.clone(),
            name: field.name.clone(),
            kind,
            conversion,
            write: true,
            create: None,
            inverse: field.inverse_link_field_id().map(str::to_owned),
            link: None,
        };
        let now = match by_name {
            false => live.fields.iter().find(|f| f.id == field.id),
            true => live.fields.iter().find(|f| f.name == field.name),
        };
        if let Some(now) = now {
            write.target = now.id.clone();
        }
        match now {
            None => {
                if kind == CellKind::Links && recreated_tables.contains(linked_table(field)) {
                    // Its pair is created from the table created again.
                    continue;
                }
                if kind == CellKind::Links {
                    problems.push(format!(
                        "link field `{}` of table `{}` was deleted since the snapshot; restore \
                         --in-place does not create link fields: restore the table into a new \
                         base",
                        field.name, schema.name
                    ));
                    continue;
                }
                let Some(options) = super::plan::write_options_of(field) else {
                    continue;
                };
                let taken = live
                    .fields
                    .iter()
                    .any(|f| f.name.eq_ignore_ascii_case(&field.name));
                write.create = Some(NewField {
                    name: if taken {
                        format!("{} (restored)", field.name)
                    } else {
                        field.name.clone()
                    },
                    field_type: field.field_type.clone(),
                    description: field.description.clone(),
                    options,
                });
            }
            Some(now) if now.field_type != field.field_type => {
                if matches!(now.field_type.as_str(), "singleLineText" | "multilineText")
                    && kind == CellKind::Plain
                {
                    write.conversion = Conversion::Text;
                } else {
                    problems.push(format!(
                        "field `{}` of table `{}` is a {} now and was a {} in the snapshot; its \
                         cells are not written back",
                        now.name, schema.name, now.field_type, field.field_type
                    ));
                    continue;
                }
            }
            Some(_) => {}
        }
        if kind == CellKind::Links {
            write.write = writes_link_side(stored, schema, field, selected_tables, options);
        }
        fields.push(write);
    }
    fields
}

/// Whether restore writes this side of a link pair: always for `--record` (the record's own
/// cells carry every link to and from it) and for links without an inverse; else the side
/// that comes first in the schema among the selected tables.
pub(super) fn writes_link_side(
    stored: &StoredBase,
    table: &TableSchema,
    field: &FieldSchema,
    selected_tables: &[String],
    options: &InPlaceOptions,
) -> bool {
    if !options.records.is_empty() {
        return true;
    }
    let Some(inverse) = field.inverse_link_field_id() else {
        return true;
    };
    let linked = linked_table(field);
    if !selected_tables.iter().any(|t| t == linked) {
        return true;
    }
    schema_position(&stored.schema, &table.id, &field.id)
        <= schema_position(&stored.schema, linked, inverse)
}

/// Where a field stands in the schema: (table index, field index); unknown ones last. Of a
/// link pair, the side that stands first is the one written (or created).
pub(super) fn schema_position(schema: &BaseSchema, table: &str, field: &str) -> (usize, usize) {
    let t = schema.tables.iter().position(|t| t.id == table);
    let f = t.and_then(|t| schema.tables[t].fields.iter().position(|f| f.id == field));
    (t.unwrap_or(usize::MAX), f.unwrap_or(usize::MAX))
}
