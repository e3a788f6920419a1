//! The requests of an in-place restore, in order (tables, fields, deletions, creations,
//! updates, uploads), the dry run's simulation that counts them, and the read-back of what
//! was written.

use super::*;

/// Fills the report of a dry run: the changes and the write requests they take, by
/// simulating the real run's order (creations table by table, 10 at a time, then updates), with
/// the old ids standing in for the new ones.
pub(super) fn plan_report(work: &[TableWork], mut links: LinkState, report: &mut InPlaceReport) {
    let mut requests = 0u64;
    links.gone = work.iter().flat_map(|tw| tw.gone.iter().cloned()).collect();
    let mut pending: HashSet<String> = work
        .iter()
        .flat_map(|tw| tw.recreate.iter().map(|r| r.id.clone()))
        .collect();
    let mut created: Vec<Vec<(&Record, Record)>> = Vec::new();
    for tw in work {
        if tw.new_table.is_some() {
            requests += 1;
            report.changes.schema.tables_added.push(TableRef {
                id: tw.source.clone(),
                name: tw.name.clone(),
            });
        }
        for f in &tw.fields {
            if let Some(link) = &f.link {
                requests += 1 + u64::from(link.inverse_name.is_some());
            }
        }
        let created_fields: Vec<&FieldWrite> =
            tw.fields.iter().filter(|f| f.create.is_some()).collect();
        requests += created_fields.len() as u64;
        for f in &created_fields {
            report.changes.schema.fields_added.push(FieldRef {
                table: tw.id.clone(),
                id: f.source.clone(),
                name: f.name.clone(),
                field_type: f
                    .create
                    .as_ref()
                    .map(|c| c.field_type.clone())
                    .unwrap_or_default(),
            });
        }
        requests += (tw.delete.len() as u64).div_ceil(MAX_RECORDS_PER_WRITE as u64);
        let mut table = Vec::new();
        for batch in tw.recreate.chunks(MAX_RECORDS_PER_WRITE) {
            requests += 1;
            let cells: Vec<Map<String, Value>> = batch
                .iter()
                .map(|r| create_cells(&tw.fields, r, &links, &pending))
                .collect();
            for (source, cells) in batch.iter().zip(cells) {
                pending.remove(&source.id);
                links.created(&tw.fields, &source.id, &cells);
                table.push((
                    source,
                    Record {
                        id: source.id.clone(),
                        created_time: String::new(),
                        fields: cells,
                    },
                ));
            }
        }
        created.push(table);
    }
    for (tw, created) in work.iter().zip(created) {
        let mut diff = table_diff(tw);
        let mut updates = 0u64;
        for (s, l) in tw
            .pairs
            .iter()
            .map(|(s, l)| (s, l))
            .chain(created.iter().map(|(s, l)| (*s, l)))
        {
            let writes = record_writes(&tw.fields, s, l, &links);
            if writes.is_empty() {
                continue;
            }
            if !writes.patch.is_empty() {
                updates += 1;
            }
            requests += writes.uploads.len() as u64;
            if !tw.recreate.iter().any(|r| r.id == s.id) {
                diff.changed.push(change(&tw.fields, s, l, &writes));
            }
        }
        requests += updates.div_ceil(MAX_RECORDS_PER_WRITE as u64);
        push_table(report, diff);
    }
    report.write_requests = requests;
}

pub(super) fn table_diff(tw: &TableWork) -> TableDiff {
    TableDiff {
        id: tw.id.clone(),
        name: tw.name.clone(),
        added: tw.recreate.iter().map(|r| r.id.clone()).collect(),
        removed: tw.delete.clone(),
        changed: Vec::new(),
    }
}

pub(super) fn push_table(report: &mut InPlaceReport, diff: TableDiff) {
    if diff.added.is_empty() && diff.removed.is_empty() && diff.changed.is_empty() {
        return;
    }
    report.changes.summary.added += diff.added.len() as u64;
    report.changes.summary.removed += diff.removed.len() as u64;
    report.changes.summary.changed += diff.changed.len() as u64;
    report.changes.tables.push(diff);
}

pub(super) fn change(
    fields: &[FieldWrite],
    s: &Record,
    l: &Record,
    writes: &Writes,
) -> RecordChange {
    RecordChange {
        id: l.id.clone(),
        fields: fields
            .iter()
            .filter(|f| writes.fields.contains(&f.source))
            .map(|f| FieldChange {
                id: f.target.clone(),
                name: f.name.clone(),
                before: l.fields.get(&f.target).cloned().unwrap_or(Value::Null),
                after: s.fields.get(&f.source).cloned().unwrap_or(Value::Null),
                computed: false,
            })
            .collect(),
    }
}

/// The requests of a real run.
pub(super) struct Apply<'a> {
    pub(super) stored: &'a StoredBase,
    pub(super) client: &'a Client,
    pub(super) base: &'a str,
    pub(super) journal: &'a Journal,
    pub(super) links: LinkState,
    pub(super) report: &'a mut InPlaceReport,
    pub(super) progress: Arc<dyn Progress>,
}

impl Apply<'_> {
    pub(super) async fn run(&mut self, work: &mut [TableWork]) -> Result<(), RestoreError> {
        self.tables(work).await?;
        // Fields deleted since, before any record needs them.
        for tw in work.iter_mut() {
            for f in &mut tw.fields {
                if let Some(new) = f.create.take() {
                    let created = self.client.create_field(self.base, &tw.id, &new).await?;
                    self.report.write_requests += 1;
                    self.report.fields_created += 1;
                    self.report.changes.schema.fields_added.push(FieldRef {
                        table: tw.id.clone(),
                        id: created.id.clone(),
                        name: created.name.clone(),
                        field_type: created.field_type.clone(),
                    });
                    f.target = created.id;
                }
            }
        }
        self.progress.phase("deleting new records", None);
        for tw in work.iter() {
            if tw.delete.is_empty() {
                continue;
            }
            self.client
                .delete_records(self.base, &tw.id, &tw.delete)
                .await?;
            self.report.write_requests +=
                (tw.delete.len() as u64).div_ceil(MAX_RECORDS_PER_WRITE as u64);
            self.report.records_deleted += tw.delete.len() as u64;
        }
        self.progress.phase("creating deleted records", None);
        let pending: HashSet<String> = work
            .iter()
            .flat_map(|tw| tw.recreate.iter().map(|r| r.id.clone()))
            .collect();
        self.links.gone = work.iter().flat_map(|tw| tw.gone.iter().cloned()).collect();
        let mut created: Vec<Vec<(Record, Record)>> = Vec::new();
        for tw in work.iter() {
            created.push(self.create(tw, &pending).await?);
        }
        // Records deleted since and not created again (outside the selection, or refused):
        // links to them are left out.
        self.links.gone = gone(work, &self.links.id_map);
        self.progress.phase("writing cells", None);
        let mut uploads = Vec::new();
        for (tw, created) in work.iter().zip(created) {
            let mut diff = table_diff(tw);
            diff.added.retain(|id| self.links.id_map.contains_key(id));
            let mut updates = Vec::new();
            for (s, l) in tw.pairs.iter().chain(created.iter()) {
                let writes = record_writes(&tw.fields, s, l, &self.links);
                if writes.is_empty() {
                    continue;
                }
                if !self.links.id_map.contains_key(&s.id) || s.id == l.id {
                    diff.changed.push(change(&tw.fields, s, l, &writes));
                }
                if !writes.patch.is_empty() {
                    updates.push(RecordUpdate {
                        id: l.id.clone(),
                        fields: writes.patch,
                    });
                }
                for (field, attachment) in writes.uploads {
                    uploads.push((l.id.clone(), field, attachment));
                }
            }
            self.update(&tw.name, &tw.id, &updates).await?;
            push_table(self.report, diff);
        }
        if !uploads.is_empty() {
            self.progress
                .phase("uploading files", Some(uploads.len() as u64));
        }
        for (record, field, attachment) in uploads {
            self.upload(&record, &field, &attachment).await?;
            self.progress.items(1);
        }
        Ok(())
    }

    /// Tables deleted since: each created again with its non-link fields, then their link
    /// fields, whose inverses (named as in the snapshot) Airtable creates in the linked tables.
    async fn tables(&mut self, work: &mut [TableWork]) -> Result<(), RestoreError> {
        for tw in work.iter_mut() {
            let Some(new) = tw.new_table.take() else {
                continue;
            };
            let created = self.client.create_table(self.base, &new).await?;
            self.report.write_requests += 1;
            self.report.tables_created += 1;
            self.report.changes.schema.tables_added.push(TableRef {
                id: created.id.clone(),
                name: created.name.clone(),
            });
            tw.id = created.id.clone();
            for f in &mut tw.fields {
                if let Some(now) = created.fields.iter().find(|c| c.name == f.name) {
                    f.target = now.id.clone();
                }
            }
        }
        let table_ids: HashMap<String, String> = work
            .iter()
            .map(|tw| (tw.source.clone(), tw.id.clone()))
            .collect();
        let mut inverses = Vec::new();
        for tw in work.iter_mut() {
            for f in &mut tw.fields {
                let Some(link) = f.link.take() else {
                    continue;
                };
                let linked = table_ids.get(&link.linked).unwrap_or(&link.linked).clone();
                let mut new = link.field;
                new.options = Some(json!({ "linkedTableId": linked }));
                let created = self.client.create_field(self.base, &tw.id, &new).await?;
                self.report.write_requests += 1;
                self.report.fields_created += 1;
                f.target = created.id.clone();
                if let Some(inverse) = created.inverse_link_field_id() {
                    inverses.push((
                        linked,
                        f.inverse.clone(),
                        inverse.to_owned(),
                        link.inverse_name,
                    ));
                }
            }
        }
        for (table, source, inverse, name) in inverses {
            // The inverse side's field, in a table created again, gets its id.
            if let Some(f) = work
                .iter_mut()
                .filter(|tw| tw.id == table)
                .flat_map(|tw| tw.fields.iter_mut())
                .find(|f| Some(&f.source) == source.as_ref())
            {
                f.target = inverse.clone();
            }
            if let Some(name) = name {
                let update = NameDescriptionUpdate {
                    name: Some(name),
                    description: None,
                };
                self.report.write_requests += 1;
                if let Err(e) = self
                    .client
                    .update_field(self.base, &table, &inverse, &update)
                    .await
                {
                    self.report.problems.push(format!(
                        "the inverse of a link field created again keeps Airtable's name: {e}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Creates a table's deleted records again (plain cells only), 10 per request; a batch
    /// Airtable refuses is sent again one record at a time and the refused one reported.
    async fn create(
        &mut self,
        tw: &TableWork,
        pending: &HashSet<String>,
    ) -> Result<Vec<(Record, Record)>, RestoreError> {
        let mut out = Vec::new();
        for batch in tw.recreate.chunks(MAX_RECORDS_PER_WRITE) {
            let records: Vec<NewRecord> = batch
                .iter()
                .map(|r| NewRecord {
                    fields: create_cells(&tw.fields, r, &self.links, pending),
                })
                .collect();
            self.report.write_requests += 1;
            let answered = match self
                .client
                .create_records(self.base, &tw.id, &records, false)
                .await
            {
                Ok(answered) => answered.into_iter().map(Some).collect(),
                Err(e) if refused(&e) => {
                    let mut one_by_one = Vec::new();
                    for (source, record) in batch.iter().zip(&records) {
                        self.report.write_requests += 1;
                        match self
                            .client
                            .create_records(self.base, &tw.id, std::slice::from_ref(record), false)
                            .await
                        {
                            Ok(mut answer) => one_by_one.push(answer.pop()),
                            Err(e) if refused(&e) => {
                                self.report.problems.push(format!(
                                    "record {} of table `{}` could not be created again: {e}",
                                    source.id, tw.name
                                ));
                                one_by_one.push(None);
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    one_by_one
                }
                Err(e) => return Err(e.into()),
            };
            let mut pairs = Vec::new();
            for ((source, sent), new) in batch.iter().zip(&records).zip(answered) {
                let Some(new) = new else { continue };
                pairs.push((source.id.clone(), new.id.clone()));
                self.links.id_map.insert(source.id.clone(), new.id.clone());
                self.links.created(&tw.fields, &new.id, &sent.fields);
                self.report
                    .recreated
                    .insert(source.id.clone(), new.id.clone());
                self.report.records_created += 1;
                out.push((source.clone(), new));
            }
            self.journal.add_records(&pairs)?;
        }
        Ok(out)
    }

    /// Writes the changed cells, 10 records per request; a refused batch goes one by one.
    async fn update(
        &mut self,
        table_name: &str,
        table: &str,
        updates: &[RecordUpdate],
    ) -> Result<(), RestoreError> {
        for batch in updates.chunks(MAX_RECORDS_PER_WRITE) {
            self.report.write_requests += 1;
            match self
                .client
                .update_records(self.base, table, batch, false)
                .await
            {
                Ok(_) => self.report.records_updated += batch.len() as u64,
                Err(e) if refused(&e) => {
                    for update in batch {
                        self.report.write_requests += 1;
                        match self
                            .client
                            .update_records(self.base, table, std::slice::from_ref(update), false)
                            .await
                        {
                            Ok(_) => self.report.records_updated += 1,
                            Err(e) if refused(&e) => self.report.problems.push(format!(
                                "the cells of record {} of table `{table_name}` could not be \
                                 written back: {e}",
                                update.id
                            )),
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn upload(
        &mut self,
        record: &str,
        field: &str,
        attachment: &StoredAttachment,
    ) -> Result<(), RestoreError> {
        let Some(file) = self.stored.attachment(&attachment.id).await? else {
            self.report.problems.push(format!(
                "file {} ({}) of record {record} is not in the snapshot (it could not be \
                 downloaded when the snapshot was taken)",
                attachment.id, attachment.filename
            ));
            return Ok(());
        };
        if file.size as usize > MAX_UPLOAD_BYTES {
            self.report.problems.push(format!(
                "file {} ({}, {} bytes) of record {record} is over 5 MB, which \
                 restore --in-place cannot upload; get it with `airback export`",
                attachment.id, attachment.filename, file.size
            ));
            return Ok(());
        }
        let bytes = self.stored.read_file(&file).await?;
        self.report.write_requests += 1;
        self.client
            .upload_attachment(
                self.base,
                record,
                field,
                &attachment.content_type,
                &attachment.filename,
                &bytes,
            )
            .await?;
        self.report.attachments_uploaded += 1;
        Ok(())
    }
}

/// Snapshot records deleted since that are not (or could not be) created again: links to
/// them are left out.
pub(super) fn gone(work: &[TableWork], id_map: &HashMap<String, String>) -> HashSet<String> {
    work.iter()
        .flat_map(|tw| tw.recreate.iter().map(|r| &r.id).chain(&tw.gone))
        .filter(|id| !id_map.contains_key(*id))
        .cloned()
        .collect()
}

/// Whether Airtable refused a write for its content (a 422), as opposed to failing.
pub(super) fn refused(error: &AirtableError) -> bool {
    matches!(error, AirtableError::InvalidRequest { .. })
}

/// Reads the records written again and compares them with the snapshot.
pub(super) async fn verify(
    live: &LiveBase,
    work: &[TableWork],
    links: &LinkState,
) -> Result<InPlaceCheck, RestoreError> {
    let mut check = InPlaceCheck::default();
    // Read back, the live cells hold what Airtable mirrored.
    let links = LinkState {
        id_map: links.id_map.clone(),
        gone: links.gone.clone(),
        mirrored: HashMap::new(),
    };
    let id_map = &links.id_map;
    for tw in work {
        // Live id → the snapshot record it must equal.
        let mut expected: HashMap<String, &Record> = HashMap::new();
        for (s, l) in &tw.pairs {
            expected.insert(l.id.clone(), s);
        }
        for s in &tw.recreate {
            if let Some(new) = id_map.get(&s.id) {
                expected.insert(new.clone(), s);
            }
        }
        let mut ids: Vec<&String> = expected.keys().chain(tw.delete.iter()).collect();
        ids.sort();
        let deleted: HashSet<&String> = tw.delete.iter().collect();
        let mut found = HashSet::new();
        for chunk in ids.chunks(VERIFY_CHUNK) {
            let formula = records_formula(chunk);
            let mut records = live
                .records_matching(&tw.id, Some(formula))
                .await
                .map_err(diff_error)?;
            while let Some(record) = records.next().await {
                let record = record.map_err(diff_error)?;
                found.insert(record.id.clone());
                check.records += 1;
                if deleted.contains(&record.id) {
                    check.records_wrong += 1;
                    push_example(
                        &mut check,
                        format!("{} {}: still there", tw.name, record.id),
                    );
                    continue;
                }
                let Some(s) = expected.get(&record.id) else {
                    continue;
                };
                let writes = record_writes(&tw.fields, s, &record, &links);
                let differing = writes.fields.len() as u64;
                if differing > 0 {
                    check.cells_differing += differing;
                    let names: Vec<&str> = tw
                        .fields
                        .iter()
                        .filter(|f| writes.fields.contains(&f.source))
                        .map(|f| f.name.as_str())
                        .collect();
                    push_example(
                        &mut check,
                        format!("{} {}: {} differ", tw.name, record.id, names.join(", ")),
                    );
                }
            }
        }
        for id in expected.keys() {
            if !found.contains(id) {
                check.records_wrong += 1;
                push_example(&mut check, format!("{} {id}: not found", tw.name));
            }
        }
    }
    Ok(check)
}

pub(super) fn push_example(check: &mut InPlaceCheck, line: String) {
    if check.examples.len() < 10 {
        check.examples.push(line);
    }
}
