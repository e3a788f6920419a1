//! The schema step: the target base (created in a workspace, or the one given), the planned
//! tables with every non-link field, then the link fields, one per pair, renaming the inverse
//! Airtable makes. Everything is found by name before it is created, so a crash between a
//! create and its journal entry creates nothing twice, and [`restore`](super::restore) simply
//! runs the step again after a request whose outcome is unknown.
//!
//! It relies on the plan (names, target types, link pairs) and, for a given base, on the
//! schema read while planning. It fills `Run::targets`, the original → target table and field
//! ids that every later pass and the verification use.

use serde_json::json;

use super::{RestoreError, Run, Target, TargetIds, plan};
use crate::airtable::{BaseSchema, NameDescriptionUpdate, NewField, NewTable};
use crate::stored::StoredBase;

impl Run<'_> {
    /// Finds or creates the target base. `fresh`: this is the run's first attempt.
    pub(super) async fn base(
        &mut self,
        journaled: Option<String>,
        fresh: bool,
    ) -> Result<(), RestoreError> {
        let (workspace, name) = match &self.options.target {
            Target::Base(base) => {
                self.base_id = base.clone();
                self.journal.set_base(base)?;
                return Ok(());
            }
            Target::Workspace { id, name } => (id.clone(), name.clone()),
        };
        if let Some(base) = journaled {
            self.base_id = base;
            return Ok(());
        }
        let name = name.unwrap_or_else(|| default_base_name(self.stored));
        // A run that crashed right after creating the base left no id in the journal: the
        // base is found by its name (which this run chose).
        let same_name: Vec<_> = self
            .client
            .list_bases()
            .await?
            .into_iter()
            .filter(|b| b.name == name)
            .collect();
        if fresh && !same_name.is_empty() {
            return Err(RestoreError::Invalid(format!(
                "a base named `{name}` already exists ({}); pass --name with another name, or \
                 --to-base {} to restore into it",
                same_name[0].id, same_name[0].id
            )));
        }
        if same_name.len() == 1 {
            // An earlier attempt of this run created it and crashed before the journal heard.
            self.base_id = same_name[0].id.clone();
        } else if same_name.len() > 1 {
            return Err(RestoreError::Invalid(format!(
                "{} bases are named `{name}`; pass --to-base with the one this restore created",
                same_name.len()
            )));
        } else {
            let tables: Vec<NewTable> = self.plan.tables.iter().map(new_table).collect();
            if tables.is_empty() {
                return Err(RestoreError::Invalid("no table to restore".into()));
            }
            let created = self.client.create_base(&workspace, &name, &tables).await?;
            self.base_id = created.id;
            // The answer holds the tables with their field ids: no need to read them again.
            self.target_schema = Some(BaseSchema {
                raw: serde_json::Value::Null,
                tables: created.tables,
            });
            self.report.created_base = true;
        }
        self.journal.set_base(&self.base_id)?;
        self.report.base_id = Some(self.base_id.clone());
        Ok(())
    }

    /// Finds or creates every table, field and link field.
    pub(super) async fn schema(&mut self) -> Result<(), RestoreError> {
        let total = self.plan.tables.len() + self.plan.links.len();
        self.progress.phase("schema", Some(total as u64));
        let mut schema = match self.target_schema.take() {
            Some(schema) => schema,
            None => self.client.base_schema(&self.base_id).await?,
        };
        // What is created is added to `schema` from the answers, so nothing is read again.
        for table in &self.plan.tables {
            match find_table(&schema, &table.name) {
                None => {
                    let created = self
                        .client
                        .create_table(&self.base_id, &new_table(table))
                        .await?;
                    schema.tables.push(created);
                }
                Some(existing) => {
                    let missing: Vec<NewField> = new_table(table)
                        .fields
                        .into_iter()
                        .filter(|f| {
                            existing
                                .fields
                                .iter()
                                .all(|e| !e.name.eq_ignore_ascii_case(&f.name))
                        })
                        .collect();
                    let table_id = existing.id.clone();
                    for field in missing {
                        let created = self
                            .client
                            .create_field(&self.base_id, &table_id, &field)
                            .await?;
                        if let Some(t) = schema.tables.iter_mut().find(|t| t.id == table_id) {
                            t.fields.push(created);
                        }
                    }
                }
            }
            self.progress.items(1);
        }
        for table in &self.plan.tables {
            let target = find_table(&schema, &table.name).ok_or_else(|| {
                RestoreError::Invalid(format!(
                    "table `{}` vanished from the target base",
                    table.name
                ))
            })?;
            let mut ids = TargetIds {
                table: target.id.clone(),
                ..TargetIds::default()
            };
            for field in table.fields.iter().filter(|f| f.created_with_table()) {
                if let Some(found) = find_field(target, &field.name) {
                    ids.fields.insert(field.source_id.clone(), found.id.clone());
                }
            }
            ids.source_id_field = find_field(target, &table.source_id_field)
                .map(|f| f.id.clone())
                .ok_or_else(|| {
                    RestoreError::Invalid(format!(
                        "the target table `{}` lacks its `{}` field",
                        table.name, table.source_id_field
                    ))
                })?;
            self.targets.insert(table.source_id.clone(), ids);
        }

        // Links: one side per pair; the inverse Airtable creates is renamed.
        for link in &self.plan.links {
            let (Some(source_table), Some(linked_table)) = (
                self.plan.table(&link.table),
                self.plan.table(&link.linked_table),
            ) else {
                continue;
            };
            let table_id = self.targets[&link.table].table.clone();
            let linked_id = self.targets[&link.linked_table].table.clone();
            let existing = find_table(&schema, &source_table.name)
                .and_then(|t| find_field(t, &link.name))
                .cloned();
            let (field, created) = match existing {
                Some(field) => (field, false),
                None => {
                    let new = NewField {
                        name: link.name.clone(),
                        field_type: "multipleRecordLinks".into(),
                        description: link.description.clone(),
                        options: Some(json!({ "linkedTableId": linked_id })),
                    };
                    (
                        self.client
                            .create_field(&self.base_id, &table_id, &new)
                            .await?,
                        true,
                    )
                }
            };
            if let Some(ids) = self.targets.get_mut(&link.table) {
                ids.fields.insert(link.field.clone(), field.id.clone());
            }
            if let (Some((inverse_source, name, description)), Some(inverse_id)) =
                (&link.inverse, field.inverse_link_field_id())
            {
                // A link created now has an inverse with Airtable's default name; one found
                // (a resumed run) may already carry the backed-up name.
                let renamed = !created
                    && find_table(&schema, &linked_table.name)
                        .and_then(|t| t.fields.iter().find(|f| f.id == inverse_id))
                        .is_some_and(|f| {
                            f.name == *name
                                && f.description.as_deref().unwrap_or("")
                                    == description.as_deref().unwrap_or("")
                        });
                if !renamed {
                    let update = NameDescriptionUpdate {
                        name: Some(name.clone()),
                        description: description.clone(),
                    };
                    self.client
                        .update_field(&self.base_id, &linked_id, inverse_id, &update)
                        .await?;
                }
                if let Some(ids) = self.targets.get_mut(&link.linked_table) {
                    ids.fields
                        .insert(inverse_source.clone(), inverse_id.to_owned());
                }
            }
            self.progress.items(1);
        }
        Ok(())
    }
}

fn default_base_name(stored: &StoredBase) -> String {
    let original = if stored.base_name().is_empty() {
        stored.base_id()
    } else {
        stored.base_name()
    };
    format!("{original} (restored {})", stored.id.short())
}

/// The create request of a planned table: its fields created with the table, then the source
/// id field.
fn new_table(table: &plan::TablePlan) -> NewTable {
    let mut fields: Vec<NewField> = table
        .fields
        .iter()
        .filter(|f| f.created_with_table())
        .filter_map(|f| {
            Some(NewField {
                name: f.name.clone(),
                field_type: f.target_type.clone()?,
                description: f.description.clone().filter(|d| !d.is_empty()),
                options: f.options.clone(),
            })
        })
        .collect();
    fields.push(NewField {
        name: table.source_id_field.clone(),
        field_type: "singleLineText".into(),
        description: Some(
            "The record's id in the backed-up base, written by airback restore so that a \
             resumed restore never creates a record twice. Delete this field when the restore \
             is done."
                .into(),
        ),
        options: None,
    });
    NewTable {
        name: table.name.clone(),
        description: table.description.clone().filter(|d| !d.is_empty()),
        fields,
    }
}

fn find_table<'s>(schema: &'s BaseSchema, name: &str) -> Option<&'s crate::airtable::TableSchema> {
    schema
        .tables
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
}

fn find_field<'t>(
    table: &'t crate::airtable::TableSchema,
    name: &str,
) -> Option<&'t crate::airtable::FieldSchema> {
    table
        .fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
}
