//! Base generators, deterministic from the world seed: `empty` (the default "Table 1" of a new
//! base), `demo` (small, every feature), `zoo` (every field type and every awkward case) and
//! `large` (sized by [`LargeParams`], for benchmarks).
//!
//! Generators build the world directly, bypassing the API's restrictions (they create computed
//! fields, which the API cannot). Attachment bytes are never generated here: an attachment only
//! records a content key and size, and the bytes are derived while being downloaded.

use std::fmt;
use std::str::FromStr;

use serde_json::{Value, json};

use super::formula;
use super::ids::IdKind;
use super::state::{
    Aggregate, Attachment, AttachmentState, Base, Behaviour, Cell, ContentEntry, ContentSource,
    Field, FieldType, Record, World,
};

/// Sizes of the `large` preset.
#[derive(Debug, Clone, PartialEq)]
pub struct LargeParams {
    /// Number of bases, each with the tables, records and attachments below ("Large base",
    /// then "Large base 2", …).
    pub bases: usize,
    /// Number of tables, linked in a chain (table i links to table i+1).
    pub tables: usize,
    pub records_per_table: usize,
    /// Total attachments, spread over random records.
    pub attachments: usize,
    pub min_attachment_bytes: u64,
    pub max_attachment_bytes: u64,
    /// Skew of the size distribution: sizes are `min · (max/min)^(u^skew)` for uniform u, so
    /// 1 is log-uniform and larger values favour small files. The default 6 gives a mean of
    /// roughly 0.5 MB between 10 KB and 20 MB.
    pub size_skew: f64,
}

impl Default for LargeParams {
    /// 4 tables × 5,000 records, 2,000 attachments of 10 KB–20 MB (about 1 GB in all).
    fn default() -> LargeParams {
        LargeParams {
            bases: 1,
            tables: 4,
            records_per_table: 5_000,
            attachments: 2_000,
            min_attachment_bytes: 10_000,
            max_attachment_bytes: 20_000_000,
            size_skew: 6.0,
        }
    }
}

impl LargeParams {
    /// Parameters for about `records` records in 4 tables with one attachment per 25 records
    /// (100k records give 4,000 attachments, about 2 GB).
    pub fn for_records(records: usize) -> LargeParams {
        let tables = 4;
        LargeParams {
            tables,
            records_per_table: records.div_ceil(tables),
            attachments: records / 25,
            ..LargeParams::default()
        }
    }

    /// The expected size of one attachment, from the distribution (for reporting).
    pub fn mean_attachment_bytes(&self) -> f64 {
        let steps = 10_000;
        let ratio = self.max_attachment_bytes as f64 / self.min_attachment_bytes.max(1) as f64;
        (0..steps)
            .map(|i| {
                let u = (i as f64 + 0.5) / steps as f64;
                self.min_attachment_bytes as f64 * ratio.powf(u.powf(self.size_skew))
            })
            .sum::<f64>()
            / steps as f64
    }
}

impl fmt::Display for LargeParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bases={},tables={},records={},attachments={},min={},max={},skew={}",
            self.bases,
            self.tables,
            self.records_per_table,
            self.attachments,
            self.min_attachment_bytes,
            self.max_attachment_bytes,
            self.size_skew
        )
    }
}

impl FromStr for LargeParams {
    type Err = String;

    /// `tables=4,records=5000,attachments=2000,min=10000,max=20000000,skew=6`; every key is
    /// optional and `records` is per table.
    fn from_str(text: &str) -> Result<LargeParams, String> {
        let mut params = LargeParams::default();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got `{item}`"))?;
            let number = || {
                value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("`{item}`: expected an integer"))
            };
            match key.trim() {
                "bases" => params.bases = number()?.max(1) as usize,
                "tables" => params.tables = number()?.max(1) as usize,
                "records" => params.records_per_table = number()? as usize,
                "attachments" => params.attachments = number()? as usize,
                "min" => params.min_attachment_bytes = number()?,
                "max" => params.max_attachment_bytes = number()?,
                "skew" => {
                    params.size_skew = value
                        .trim()
                        .parse()
                        .map_err(|_| format!("`{item}`: expected a number"))?
                }
                other => return Err(format!("unknown large-preset parameter `{other}`")),
            }
        }
        if params.min_attachment_bytes > params.max_attachment_bytes {
            return Err("min must not exceed max".to_owned());
        }
        Ok(params)
    }
}

const WORDS: &[&str] = &[
    "alpha", "bright", "canyon", "delta", "ember", "falcon", "garden", "harbor", "island",
    "jungle", "kettle", "lantern", "meadow", "nectar", "orbit", "pepper", "quartz", "river",
    "saddle", "timber", "umbra", "velvet", "willow", "xenon", "yonder", "zephyr", "amber",
    "breeze", "cobalt", "dune", "echo", "fjord", "glacier", "hollow", "ivory", "jasper", "koala",
    "lotus", "marble", "nimbus", "onyx", "prairie", "quill", "ripple", "summit", "tundra",
    "utopia", "vista",
];

/// Builds one base inside the world, with a seeded generator and a clock for creation times.
pub(crate) struct Builder<'w> {
    pub(crate) world: &'w mut World,
    pub(crate) base: usize,
    pub(crate) rng: fastrand::Rng,
    clock_ms: i64,
}

/// 2024-03-04T09:00:00Z, when generated records start being created.
const GENERATION_EPOCH_MS: i64 = 1_709_542_800_000;

impl<'w> Builder<'w> {
    pub(crate) fn new_base(world: &'w mut World, name: &str, salt: u64) -> Builder<'w> {
        let id = world.ids.next(IdKind::Base);
        world.bases.push(Base {
            id,
            name: name.to_owned(),
            tables: Vec::new(),
        });
        let base = world.bases.len() - 1;
        let rng = fastrand::Rng::with_seed(world.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt);
        Builder {
            world,
            base,
            rng,
            clock_ms: GENERATION_EPOCH_MS,
        }
    }

    fn base_mut(&mut self) -> &mut Base {
        &mut self.world.bases[self.base]
    }

    pub(crate) fn table(&mut self, name: &str, description: Option<&str>) -> usize {
        let table = self.world.new_table(name, description.map(str::to_owned));
        self.base_mut().tables.push(table);
        self.world.bases[self.base].tables.len() - 1
    }

    fn push_field(&mut self, table: usize, field: Field) -> String {
        let id = field.id.clone();
        let target = &mut self.base_mut().tables[table];
        if target.fields.is_empty() {
            target.primary_field_id = id.clone();
        }
        target.fields.push(field);
        id
    }

    /// A field of any type with options in read format.
    pub(crate) fn field(
        &mut self,
        table: usize,
        name: &str,
        field_type: FieldType,
        options: Option<Value>,
    ) -> String {
        let field = self.world.new_field(name, field_type, options);
        self.push_field(table, field)
    }

    /// A select field; choices get `sel` ids.
    fn select(
        &mut self,
        table: usize,
        name: &str,
        multiple: bool,
        choices: &[(&str, &str)],
    ) -> String {
        let choices: Vec<Value> = choices
            .iter()
            .map(|(choice, color)| json!({"id": self.world.ids.next(IdKind::Choice), "name": choice, "color": color}))
            .collect();
        let field_type = if multiple {
            FieldType::MultipleSelects
        } else {
            FieldType::SingleSelect
        };
        self.field(table, name, field_type, Some(json!({"choices": choices})))
    }

    fn describe(&mut self, table: usize, field_id: &str, description: &str) {
        let table = &mut self.base_mut().tables[table];
        if let Some(slot) = table.field_slot(field_id) {
            table.fields[slot].description = Some(description.to_owned());
        }
    }

    /// A two-way link between two different tables; returns (field in a, field in b).
    pub(crate) fn link(
        &mut self,
        a: usize,
        name_a: &str,
        b: usize,
        name_b: &str,
    ) -> (String, String) {
        let id_a = self.world.ids.next(IdKind::Field);
        let id_b = self.world.ids.next(IdKind::Field);
        let (table_a, table_b) = {
            let base = &self.world.bases[self.base];
            (base.tables[a].id.clone(), base.tables[b].id.clone())
        };
        let make = |id: &str, name: &str, linked: &str, inverse: &str| Field {
            id: id.to_owned(),
            name: name.to_owned(),
            field_type: FieldType::MultipleRecordLinks,
            description: None,
            options: Some(json!({
                "linkedTableId": linked,
                "isReversed": false,
                "prefersSingleRecordLink": false,
                "inverseLinkFieldId": inverse,
            })),
            behaviour: Behaviour::Plain,
        };
        let field_a = make(&id_a, name_a, &table_b, &id_b);
        let field_b = make(&id_b, name_b, &table_a, &id_a);
        self.push_field(a, field_a);
        self.push_field(b, field_b);
        (id_a, id_b)
    }

    /// A link from a table to itself, which has no inverse field.
    fn self_link(&mut self, table: usize, name: &str) -> String {
        let table_id = self.world.bases[self.base].tables[table].id.clone();
        self.field(
            table,
            name,
            FieldType::MultipleRecordLinks,
            Some(json!({"linkedTableId": table_id, "isReversed": false, "prefersSingleRecordLink": false})),
        )
    }

    /// A formula field; `text` refers to fields as `{fldXXXX}`.
    fn formula(&mut self, table: usize, name: &str, text: &str, result: Value) -> String {
        let resolve = |key: &str| Some(key.to_owned());
        let expr =
            formula::parse(text, &resolve).unwrap_or(formula::Expr::Call("ERROR".into(), vec![]));
        let options = json!({
            "formula": text,
            "isValid": true,
            "referencedFieldIds": expr.referenced_field_ids(),
            "result": result,
        });
        let mut field = self
            .world
            .new_field(name, FieldType::Formula, Some(options));
        field.behaviour = Behaviour::Formula(expr);
        self.push_field(table, field)
    }

    fn rollup(
        &mut self,
        table: usize,
        name: &str,
        link: &str,
        target: &str,
        aggregate: Aggregate,
        result: Value,
    ) -> String {
        let options = json!({
            "isValid": true,
            "recordLinkFieldId": link,
            "fieldIdInLinkedTable": target,
            "referencedFieldIds": [],
            "result": result,
        });
        let mut field = self.world.new_field(name, FieldType::Rollup, Some(options));
        field.behaviour = Behaviour::Rollup(aggregate);
        self.push_field(table, field)
    }

    fn lookup(
        &mut self,
        table: usize,
        name: &str,
        link: &str,
        target: &str,
        result: Value,
    ) -> String {
        let options = json!({
            "isValid": true,
            "recordLinkFieldId": link,
            "fieldIdInLinkedTable": target,
            "result": result,
        });
        self.field(table, name, FieldType::MultipleLookupValues, Some(options))
    }

    fn count(&mut self, table: usize, name: &str, link: &str) -> String {
        self.field(
            table,
            name,
            FieldType::Count,
            Some(json!({"isValid": true, "recordLinkFieldId": link})),
        )
    }

    fn time_field(&mut self, table: usize, name: &str, field_type: FieldType) -> String {
        let mut options = json!({
            "result": {
                "type": "dateTime",
                "options": {
                    "dateFormat": {"name": "local", "format": "l"},
                    "timeFormat": {"name": "12hour", "format": "h:mma"},
                    "timeZone": "client",
                },
            },
        });
        if field_type == FieldType::LastModifiedTime {
            options["isValid"] = json!(true);
            options["referencedFieldIds"] = json!([]);
        }
        self.field(table, name, field_type, Some(options))
    }

    fn button(&mut self, table: usize, name: &str, label: &str, url_prefix: &str) -> String {
        let mut field = self.world.new_field(name, FieldType::Button, None);
        field.behaviour = Behaviour::Button {
            label: label.to_owned(),
            url_prefix: Some(url_prefix.to_owned()),
        };
        self.push_field(table, field)
    }

    /// A new record, created a little after the previous one.
    pub(crate) fn record(&mut self, table: usize) -> String {
        self.clock_ms += self.rng.i64(60_000..5_400_000);
        let id = self.world.ids.next(IdKind::Record);
        let user = self.rng.u16(0..self.world.users.len() as u16);
        let created = self.clock_ms;
        let target = &mut self.world.bases[self.base].tables[table];
        let auto_number = target.next_auto_number();
        let mut record = Record::new(id.clone(), created, auto_number, user);
        record.modified_ms = created + self.rng.i64(0..86_400_000);
        record.modified_by = self.rng.u16(0..self.world.users.len() as u16);
        target.push_record(record);
        id
    }

    /// A comment on `record` by user `author` (an index in the world's users), a little after
    /// the previous record or comment; a reply when `parent` is given. Returns its id.
    pub(crate) fn comment(
        &mut self,
        table: usize,
        record: &str,
        author: usize,
        text: &str,
        parent: Option<&str>,
    ) -> String {
        self.clock_ms += self.rng.i64(60_000..3_600_000);
        let new = super::comments::NewComment {
            text: text.to_owned(),
            parent: parent.map(str::to_owned),
        };
        let author = (author % self.world.users.len()) as u16;
        super::comments::add(
            self.world,
            self.base,
            table,
            record,
            author,
            new,
            self.clock_ms,
        )
        .id
    }

    /// Sets a cell; numbers are written as Airtable writes them (`2`, not `2.0`).
    pub(crate) fn set(&mut self, table: usize, record: &str, field: &str, value: Value) {
        let value = match value.as_f64() {
            Some(number) if value.is_f64() => formula::number_to_json(number),
            _ => value,
        };
        self.set_cell(table, record, field, Cell::Json(value));
    }

    fn set_cell(&mut self, table: usize, record: &str, field: &str, cell: Cell) {
        let target = &mut self.world.bases[self.base].tables[table];
        let Some(slot) = target.field_slot(field) else {
            return;
        };
        if let Some(record) = target.record_mut(record) {
            record.set_cell(slot, Some(cell));
        }
    }

    /// Links `record` to `targets` through `field`, and fills the inverse side.
    pub(crate) fn link_records(
        &mut self,
        table: usize,
        record: &str,
        field: &str,
        targets: &[String],
    ) {
        let base = &self.world.bases[self.base];
        let Some(link) = base.tables[table].field_by_id(field) else {
            return;
        };
        let inverse = link.inverse_link_field_id().map(str::to_owned);
        let linked = link
            .linked_table_id()
            .and_then(|id| base.table_index_by_id(id));
        self.set_cell(table, record, field, Cell::Links(targets.to_vec()));
        if let (Some(inverse), Some(linked)) = (inverse, linked) {
            for target in targets {
                let table = &mut self.world.bases[self.base].tables[linked];
                let Some(slot) = table.field_slot(&inverse) else {
                    continue;
                };
                if let Some(other) = table.record_mut(target) {
                    let mut links = other.links(slot).to_vec();
                    if !links.contains(&record.to_owned()) {
                        links.push(record.to_owned());
                    }
                    other.set_cell(slot, Some(Cell::Links(links)));
                }
            }
        }
    }

    /// An attachment whose bytes are generated from `key`; reuse a key for identical bytes.
    pub(crate) fn attachment(
        &mut self,
        filename: &str,
        mime: &str,
        size: u64,
        key: u64,
        image: Option<(u32, u32)>,
    ) -> Attachment {
        let id = self.world.ids.next(IdKind::Attachment);
        self.world.content.insert(
            id.clone(),
            std::sync::Arc::new(ContentEntry {
                size,
                mime: mime.to_owned(),
                source: ContentSource::Generated { key, image },
            }),
        );
        Attachment {
            id,
            filename: filename.to_owned(),
            mime: mime.to_owned(),
            state: AttachmentState::Ready {
                size,
                width: image.map(|(width, _)| width),
                height: image.map(|(_, height)| height),
            },
        }
    }

    fn set_attachments(
        &mut self,
        table: usize,
        record: &str,
        field: &str,
        attachments: Vec<Attachment>,
    ) {
        self.set_cell(table, record, field, Cell::Attachments(attachments));
    }

    fn words(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| WORDS[self.rng.usize(..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn title(&mut self, count: usize) -> String {
        let words = self.words(count);
        let mut chars = words.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => words,
        }
    }

    /// Sets a collaborator cell to users picked by index (wrapping around).
    fn set_users(&mut self, table: usize, record: &str, field: &str, users: &[usize]) {
        let count = self.world.users.len();
        let users = users.iter().map(|user| (user % count) as u16).collect();
        self.set_cell(table, record, field, Cell::Users(users));
    }
}

fn date_options() -> Value {
    json!({"dateFormat": {"name": "iso", "format": "YYYY-MM-DD"}})
}

fn datetime_options() -> Value {
    json!({
        "dateFormat": {"name": "iso", "format": "YYYY-MM-DD"},
        "timeFormat": {"name": "24hour", "format": "HH:mm"},
        "timeZone": "utc",
    })
}

fn text_result() -> Value {
    json!({"type": "singleLineText"})
}

fn number_result(precision: u32) -> Value {
    json!({"type": "number", "options": {"precision": precision}})
}

/// Adds the base Airtable makes for "new base": "Table 1" with its default fields and three
/// empty records. Returns the base index.
pub(crate) fn add_default_base(world: &mut World, name: &str) -> usize {
    let salt = world.bases.len() as u64;
    let mut builder = Builder::new_base(world, name, 0xe3e3 ^ salt);
    let table = builder.table("Table 1", None);
    builder.field(table, "Name", FieldType::SingleLineText, None);
    builder.field(table, "Notes", FieldType::MultilineText, None);
    builder.field(table, "Assignee", FieldType::SingleCollaborator, None);
    builder.select(
        table,
        "Status",
        false,
        &[
            ("Todo", "redLight2"),
            ("In progress", "yellowLight2"),
            ("Done", "greenLight2"),
        ],
    );
    builder.field(
        table,
        "Attachments",
        FieldType::MultipleAttachments,
        Some(json!({"isReversed": false})),
    );
    for _ in 0..3 {
        builder.record(table);
    }
    builder.base
}

/// The `demo` preset: a small product-launch base with links, selects, computed fields and a
/// few small attachments.
pub(crate) fn demo(world: &mut World) -> usize {
    let mut b = Builder::new_base(world, "Product launch (demo)", 0xde30);
    let projects = b.table("Projects", Some("What we are shipping this quarter"));
    let tasks = b.table("Tasks", None);
    let contacts = b.table("Contacts", Some("People outside the team"));

    let p_name = b.field(projects, "Name", FieldType::SingleLineText, None);
    let p_status = b.select(
        projects,
        "Status",
        false,
        &[
            ("Planning", "blueLight2"),
            ("Active", "yellowLight2"),
            ("Done", "greenLight2"),
        ],
    );
    let p_owner = b.field(projects, "Owner", FieldType::SingleCollaborator, None);
    let p_start = b.field(
        projects,
        "Start date",
        FieldType::Date,
        Some(date_options()),
    );
    let p_budget = b.field(
        projects,
        "Budget",
        FieldType::Currency,
        Some(json!({"precision": 2, "symbol": "$"})),
    );
    let p_notes = b.field(projects, "Notes", FieldType::MultilineText, None);
    let p_brief = b.field(
        projects,
        "Brief",
        FieldType::MultipleAttachments,
        Some(json!({"isReversed": false})),
    );

    let t_title = b.field(tasks, "Title", FieldType::SingleLineText, None);
    let (p_tasks, t_project) = b.link(projects, "Tasks", tasks, "Project");
    let t_done = b.field(
        tasks,
        "Done",
        FieldType::Checkbox,
        Some(json!({"icon": "check", "color": "greenBright"})),
    );
    let t_priority = b.field(
        tasks,
        "Priority",
        FieldType::Rating,
        Some(json!({"icon": "star", "max": 5, "color": "yellowBright"})),
    );
    let t_tags = b.select(
        tasks,
        "Tags",
        true,
        &[
            ("design", "purpleLight2"),
            ("backend", "cyanLight2"),
            ("docs", "grayLight2"),
            ("qa", "orangeLight2"),
        ],
    );
    let t_due = b.field(tasks, "Due", FieldType::DateTime, Some(datetime_options()));
    let t_estimate = b.field(
        tasks,
        "Estimate (hours)",
        FieldType::Number,
        Some(json!({"precision": 1})),
    );
    let t_assignees = b.field(tasks, "Assignees", FieldType::MultipleCollaborators, None);

    b.count(projects, "Task count", &p_tasks);
    b.rollup(
        projects,
        "Total estimate",
        &p_tasks,
        &t_estimate,
        Aggregate::Sum,
        number_result(1),
    );
    b.formula(
        projects,
        "Summary",
        &format!("{{{p_name}}} & \" (\" & {{{p_status}}} & \")\""),
        text_result(),
    );
    b.lookup(
        tasks,
        "Project status",
        &t_project,
        &p_status,
        json!({"type": "singleSelect", "options": b.world.bases[b.base].tables[projects].field_by_id(&p_status).and_then(|f| f.options.clone())}),
    );
    b.time_field(tasks, "Created", FieldType::CreatedTime);
    b.field(tasks, "#", FieldType::AutoNumber, None);

    let c_name = b.field(contacts, "Name", FieldType::SingleLineText, None);
    let c_email = b.field(contacts, "Email", FieldType::Email, None);
    let c_phone = b.field(contacts, "Phone", FieldType::PhoneNumber, None);
    let c_site = b.field(contacts, "Website", FieldType::Url, None);
    let (c_projects, _) = b.link(contacts, "Projects", projects, "Contacts");
    let c_avatar = b.field(
        contacts,
        "Avatar",
        FieldType::MultipleAttachments,
        Some(json!({"isReversed": false})),
    );

    let statuses = ["Planning", "Active", "Done"];
    let mut project_ids = Vec::new();
    for (index, name) in [
        "Website relaunch",
        "Mobile app beta",
        "Pricing page",
        "Onboarding emails",
        "Data export",
        "Partner portal",
    ]
    .iter()
    .enumerate()
    {
        let id = b.record(projects);
        b.set(projects, &id, &p_name, json!(name));
        b.set(projects, &id, &p_status, json!(statuses[index % 3]));
        b.set_users(projects, &id, &p_owner, &[index + 1]);
        b.set(
            projects,
            &id,
            &p_start,
            json!(format!("2024-0{}-1{}", 3 + index % 6, index)),
        );
        b.set(projects, &id, &p_budget, json!(5000 + 1250 * index as u64));
        if index % 2 == 0 {
            let notes = format!("{}.\n{}.", b.title(8), b.title(12));
            b.set(projects, &id, &p_notes, json!(notes));
        }
        if index < 4 {
            let key = b.rng.u64(..);
            let size = b.rng.u64(20_000..60_000);
            let brief = b.attachment(
                &format!("{} brief.pdf", name),
                "application/pdf",
                size,
                key,
                None,
            );
            let mut files = vec![brief];
            if index % 2 == 1 {
                let key = b.rng.u64(..);
                let size = b.rng.u64(5_000..30_000);
                files.push(b.attachment("mockup.png", "image/png", size, key, Some((1200, 800))));
            }
            b.set_attachments(projects, &id, &p_brief, files);
        }
        project_ids.push(id);
    }
    let tags = ["design", "backend", "docs", "qa"];
    for index in 0..30 {
        let id = b.record(tasks);
        let title = b.title(3);
        b.set(tasks, &id, &t_title, json!(title));
        if index % 10 != 9 {
            let project = project_ids[index % project_ids.len()].clone();
            b.link_records(tasks, &id, &t_project, &[project]);
        }
        if index % 3 == 0 {
            b.set(tasks, &id, &t_done, json!(true));
        }
        b.set(tasks, &id, &t_priority, json!(1 + index % 5));
        let tag_count = index % 3;
        let chosen: Vec<&str> = (0..tag_count)
            .map(|k| tags[(index + k) % tags.len()])
            .collect();
        b.set(tasks, &id, &t_tags, json!(chosen));
        b.set(
            tasks,
            &id,
            &t_due,
            json!(format!(
                "2024-06-{:02}T{:02}:30:00.000Z",
                1 + index % 28,
                8 + index % 9
            )),
        );
        if index % 4 != 0 {
            b.set(
                tasks,
                &id,
                &t_estimate,
                json!(0.5 * (1 + index % 12) as f64),
            );
        }
        if index % 5 != 0 {
            b.set_users(tasks, &id, &t_assignees, &[index, index + 2]);
        }
    }
    for (index, name) in [
        "Mara Quinn",
        "Oskar Lind",
        "Priya Natarajan",
        "Tomás Ruiz",
        "Yuki Sato",
        "Zainab Bello",
        "Leo Novak",
        "Ines Costa",
    ]
    .iter()
    .enumerate()
    {
        let id = b.record(contacts);
        b.set(contacts, &id, &c_name, json!(name));
        let handle = name.split(' ').next().unwrap_or("x").to_lowercase();
        b.set(
            contacts,
            &id,
            &c_email,
            json!(format!("{handle}@example.org")),
        );
        b.set(
            contacts,
            &id,
            &c_phone,
            json!(format!("+1 555 01{index:02}")),
        );
        if index % 2 == 0 {
            b.set(
                contacts,
                &id,
                &c_site,
                json!(format!("https://{handle}.example.org")),
            );
        }
        let linked = vec![project_ids[index % project_ids.len()].clone()];
        b.link_records(contacts, &id, &c_projects, &linked);
        if index < 4 {
            let key = b.rng.u64(..);
            let size = b.rng.u64(2_000..8_000);
            let avatar = b.attachment(
                &format!("{handle}.png"),
                "image/png",
                size,
                key,
                Some((256, 256)),
            );
            b.set_attachments(contacts, &id, &c_avatar, vec![avatar]);
        }
    }
    b.base
}

/// The `zoo` preset: every field type (creatable and computed, formula errors included),
/// two-way links, a self-link, awkward names, empty records, duplicate attachment bytes,
/// unsafe attachment filenames, an attachment over 5 MB, and record comments (a thread with a
/// reply and a mention).
pub(crate) fn zoo(world: &mut World) -> usize {
    let mut b = Builder::new_base(world, "Zoo 🦓 every field type", 0x200);
    let everything = b.table(
        "Everything 🦓",
        Some("One field of every type; names chosen to be awkward"),
    );
    let refs = b.table(
        "Links / Refs \"quoted\"",
        Some("Primary field is a formula"),
    );
    let scripts = b.table("Таблица 表格 جدول", Some("Primary field is an auto number"));
    let blank = b.table("Blank ⬜", None);
    let synced = b.table("Synced ⇄ source", Some("Looks like a synced table"));

    // Table "Everything".
    let name = b.field(everything, "Name", FieldType::SingleLineText, None);
    let email = b.field(everything, "Email ✉", FieldType::Email, None);
    let url = b.field(everything, "Slash / URL", FieldType::Url, None);
    let notes = b.field(
        everything,
        "Notes \"quoted\"",
        FieldType::MultilineText,
        None,
    );
    let rich = b.field(everything, "Rich text", FieldType::RichText, None);
    let phone = b.field(everything, "Phone ☎", FieldType::PhoneNumber, None);
    let number = b.field(
        everything,
        "Number",
        FieldType::Number,
        Some(json!({"precision": 2})),
    );
    let percent = b.field(
        everything,
        "Percent %",
        FieldType::Percent,
        Some(json!({"precision": 1})),
    );
    let price = b.field(
        everything,
        "Price €",
        FieldType::Currency,
        Some(json!({"precision": 2, "symbol": "€"})),
    );
    let duration = b.field(
        everything,
        "Duration",
        FieldType::Duration,
        Some(json!({"durationFormat": "h:mm:ss"})),
    );
    let rating = b.field(
        everything,
        "Rating ♥",
        FieldType::Rating,
        Some(json!({"icon": "heart", "max": 10, "color": "redBright"})),
    );
    let checked = b.field(
        everything,
        "Checked?",
        FieldType::Checkbox,
        Some(json!({"icon": "check", "color": "greenBright"})),
    );
    let date = b.field(
        everything,
        "Date",
        FieldType::Date,
        Some(json!({"dateFormat": {"name": "european", "format": "D/M/YYYY"}})),
    );
    let datetime = b.field(
        everything,
        "Date & time",
        FieldType::DateTime,
        Some(json!({
            "dateFormat": {"name": "iso", "format": "YYYY-MM-DD"},
            "timeFormat": {"name": "24hour", "format": "HH:mm"},
            "timeZone": "Europe/Berlin",
        })),
    );
    let single = b.select(
        everything,
        "Single select",
        false,
        &[
            ("Ä \"quoted\"", "blueLight2"),
            ("🐘 emoji", "greenLight2"),
            ("a/b", "redLight2"),
            ("日本", "grayLight2"),
        ],
    );
    let multi = b.select(
        everything,
        "Multiple selects",
        true,
        &[
            ("one", "blueLight2"),
            ("two", "cyanLight2"),
            ("three, with comma", "tealLight2"),
        ],
    );
    let collaborator = b.field(
        everything,
        "Collaborator",
        FieldType::SingleCollaborator,
        None,
    );
    let collaborators = b.field(
        everything,
        "Collaborators",
        FieldType::MultipleCollaborators,
        None,
    );
    let files = b.field(
        everything,
        "Files",
        FieldType::MultipleAttachments,
        Some(json!({"isReversed": false})),
    );
    let barcode = b.field(everything, "Barcode", FieldType::Barcode, None);
    b.field(
        everything,
        "Record Sort",
        FieldType::ManualSort,
        Some(Value::Null),
    );

    // Table "Links / Refs": a formula primary over a code.
    let ref_code_id = b.world.ids.next(IdKind::Field);
    b.formula(
        refs,
        "Ref",
        &format!("\"REF-\" & {{{ref_code_id}}}"),
        text_result(),
    );
    let code = {
        let field = Field {
            id: ref_code_id.clone(),
            name: "Code".to_owned(),
            field_type: FieldType::SingleLineText,
            description: None,
            options: None,
            behaviour: Behaviour::Plain,
        };
        b.push_field(refs, field)
    };
    let amount = b.field(
        refs,
        "Amount",
        FieldType::Number,
        Some(json!({"precision": 0})),
    );
    let ref_files = b.field(
        refs,
        "Files",
        FieldType::MultipleAttachments,
        Some(json!({"isReversed": false})),
    );
    let (partner, _) = b.link(everything, "Partner ⇄", refs, "Everything 🦓");
    let parent = b.self_link(everything, "Parent (self-link)");
    b.describe(
        everything,
        &parent,
        "Links to records of this same table; has no inverse field",
    );

    // Computed fields on "Everything".
    b.formula(
        everything,
        "Formula: text",
        &format!("{{{name}}} & \" / \" & {{{number}}}"),
        text_result(),
    );
    b.formula(
        everything,
        "Formula NaN",
        &format!("{{{name}}} + \"FOO\""),
        number_result(0),
    );
    b.formula(
        everything,
        "Formula Infinity",
        &format!("1 / ({{{number}}} - {{{number}}})"),
        number_result(0),
    );
    b.formula(everything, "Formula #ERROR!", "ERROR()", text_result());
    b.rollup(
        everything,
        "Rollup: sum of amounts",
        &partner,
        &amount,
        Aggregate::Sum,
        number_result(0),
    );
    b.rollup(
        everything,
        "Rollup: average (NaN when empty)",
        &partner,
        &amount,
        Aggregate::Average,
        number_result(2),
    );
    b.rollup(
        everything,
        "Rollup: max amount",
        &partner,
        &amount,
        Aggregate::Max,
        number_result(0),
    );
    b.rollup(
        everything,
        "Rollup: codes joined",
        &partner,
        &code,
        Aggregate::ArrayJoin,
        text_result(),
    );
    b.lookup(
        everything,
        "Lookup: partner codes",
        &partner,
        &code,
        json!({"type": "singleLineText"}),
    );
    b.lookup(
        everything,
        "Lookup: partner files",
        &partner,
        &ref_files,
        json!({"type": "multipleAttachments", "options": {"isReversed": false}}),
    );
    b.count(everything, "Count: partners", &partner);
    b.field(everything, "Auto #", FieldType::AutoNumber, None);
    b.time_field(everything, "Created", FieldType::CreatedTime);
    b.time_field(everything, "Last modified", FieldType::LastModifiedTime);
    b.field(everything, "Created by", FieldType::CreatedBy, None);
    b.field(
        everything,
        "Last modified by",
        FieldType::LastModifiedBy,
        None,
    );
    b.button(everything, "Open ↗", "Open", "https://example.com/records/");
    let ai = b.field(
        everything,
        "AI summary",
        FieldType::AiText,
        Some(json!({"prompt": [{"field": {"fieldId": name}}], "referencedFieldIds": [name]})),
    );

    // Table with non-Latin names and an autoNumber primary.
    b.field(scripts, "№", FieldType::AutoNumber, None);
    let cyrillic = b.field(scripts, "Имя", FieldType::SingleLineText, None);
    let japanese = b.field(scripts, "名前", FieldType::MultilineText, None);
    let arabic = b.field(scripts, "اسم", FieldType::SingleLineText, None);
    let emoji_select = b.select(
        scripts,
        "Emoji 🐘 / slash",
        false,
        &[("🐘", "grayLight2"), ("👩‍👩‍👧", "pinkLight2")],
    );

    // Blank table: only writable fields, so empty records read as `"fields": {}`.
    let blank_name = b.field(blank, "Name", FieldType::SingleLineText, None);
    b.field(blank, "Notes", FieldType::MultilineText, None);
    b.select(blank, "Tags", true, &[("x", "blueLight2")]);
    b.field(
        blank,
        "Files",
        FieldType::MultipleAttachments,
        Some(json!({"isReversed": false})),
    );

    // A synced-looking table.
    let synced_name = b.field(synced, "Name", FieldType::SingleLineText, None);
    let source_choice = b.world.ids.next(IdKind::Choice);
    let source = b.field(
        synced,
        "Sync source",
        FieldType::ExternalSyncSource,
        Some(json!({"choices": [{"id": source_choice, "name": "Source base A", "color": "blueLight2"}]})),
    );

    // Records of "Links / Refs".
    let shared_photo_key = b.rng.u64(..);
    let shared_text_key = b.rng.u64(..);
    let mut ref_ids = Vec::new();
    for index in 0..5 {
        let id = b.record(refs);
        b.set(refs, &id, &code, json!(format!("C-{:03}", index + 1)));
        if index != 4 {
            b.set(refs, &id, &amount, json!(10 * (index + 1)));
        }
        if index < 2 {
            // Same bytes as a photo in "Everything", different attachment ids and names.
            let copy = b.attachment(
                &format!("copy of photo {index}.png"),
                "image/png",
                48_213,
                shared_photo_key,
                Some((800, 600)),
            );
            b.set_attachments(refs, &id, &ref_files, vec![copy]);
        }
        ref_ids.push(id);
    }

    // Records of "Everything".
    let unsafe_names = [
        "../x".to_owned(),
        "CON".to_owned(),
        "a\u{1}b\tc\nd.txt".to_owned(),
        format!("{}.txt", "long-".repeat(60)),
        "/etc/passwd".to_owned(),
        "..".to_owned(),
        "résumé 📄 \"final\".pdf".to_owned(),
        "nul\u{0}byte.bin".to_owned(),
    ];
    let mut everything_ids = Vec::new();
    for index in 0..10 {
        let id = b.record(everything);
        everything_ids.push(id.clone());
        if index >= 8 {
            continue; // two empty records: only computed values show
        }
        let title = b.title(2);
        b.set(everything, &id, &name, json!(format!("{title} {index}")));
        b.set(
            everything,
            &id,
            &email,
            json!(format!("animal{index}@example.com")),
        );
        b.set(
            everything,
            &id,
            &url,
            json!(format!("https://example.com/zoo/{index}?q=a%2Fb")),
        );
        let words = b.words(5);
        b.set(
            everything,
            &id,
            &notes,
            json!(format!("Line one \"quoted\"\nLine two\ttabbed\n{words}")),
        );
        b.set(
            everything,
            &id,
            &rich,
            json!(format!(
                "**Bold** _italic_ `code` [link](https://example.com/{index})\n- item"
            )),
        );
        b.set(
            everything,
            &id,
            &phone,
            json!(format!("(555) 010-{index:04}")),
        );
        b.set(everything, &id, &number, json!(index as f64 * 1.25 - 2.0));
        b.set(everything, &id, &percent, json!(0.125 * index as f64));
        b.set(everything, &id, &price, json!(19.99 + index as f64));
        b.set(everything, &id, &duration, json!(3600 + 61 * index));
        b.set(everything, &id, &rating, json!(1 + index % 10));
        if index % 2 == 0 {
            b.set(everything, &id, &checked, json!(true));
        }
        b.set(
            everything,
            &id,
            &date,
            json!(format!("2024-02-{:02}", 20 + index)),
        );
        b.set(
            everything,
            &id,
            &datetime,
            json!(format!(
                "2024-05-0{}T0{}:15:30.250Z",
                1 + index % 9,
                index % 10
            )),
        );
        let single_choices = ["Ä \"quoted\"", "🐘 emoji", "a/b", "日本"];
        b.set(everything, &id, &single, json!(single_choices[index % 4]));
        let multi_choices = ["one", "two", "three, with comma"];
        b.set(
            everything,
            &id,
            &multi,
            json!(multi_choices[..(index % 4).min(3)]),
        );
        b.set_users(everything, &id, &collaborator, &[index + 1]);
        b.set_users(everything, &id, &collaborators, &[index + 2, index + 3]);
        b.set(everything, &id, &barcode, json!({"text": format!("0{index}12345678905"), "type": if index % 2 == 0 { "upce" } else { "code39" }}));
        if index < 4 {
            let linked: Vec<String> = ref_ids
                .iter()
                .skip(index)
                .take(1 + index % 2)
                .cloned()
                .collect();
            b.link_records(everything, &id, &partner, &linked);
        }
        if index > 0 {
            let parent_id = everything_ids[index - 1].clone();
            let mut targets = vec![parent_id];
            if index == 3 {
                targets.push(id.clone()); // a record linking to itself
            }
            b.link_records(everything, &id, &parent, &targets);
        }
        let ai_value = match index % 3 {
            0 => {
                json!({"state": "generated", "isStale": false, "value": format!("A short summary of record {index}.")})
            }
            1 => {
                json!({"state": "error", "errorType": "invalidPrompt", "isStale": true, "value": null})
            }
            _ => json!({"state": "generated", "isStale": true, "value": "Stale summary."}),
        };
        b.set(everything, &id, &ai, ai_value);
        let mut attachments = Vec::new();
        match index {
            0 => {
                attachments.push(b.attachment(
                    "photo.png",
                    "image/png",
                    48_213,
                    shared_photo_key,
                    Some((800, 600)),
                ));
                let key = b.rng.u64(..);
                attachments.push(b.attachment("report.pdf", "application/pdf", 31_337, key, None));
            }
            1 => {
                let key = b.rng.u64(..);
                attachments.push(b.attachment(
                    "big-over-5MB.bin",
                    "application/octet-stream",
                    6 * 1024 * 1024 + 123,
                    key,
                    None,
                ));
            }
            2 => {
                for unsafe_name in &unsafe_names {
                    let key = b.rng.u64(..);
                    let size = b.rng.u64(100..2_000);
                    attachments.push(b.attachment(unsafe_name, "text/plain", size, key, None));
                }
            }
            3 => {
                // The same bytes twice in one cell, and an empty file.
                attachments.push(b.attachment(
                    "same-bytes-1.txt",
                    "text/plain",
                    4_096,
                    shared_text_key,
                    None,
                ));
                attachments.push(b.attachment(
                    "same-bytes-2.txt",
                    "text/plain",
                    4_096,
                    shared_text_key,
                    None,
                ));
                let key = b.rng.u64(..);
                attachments.push(b.attachment("empty.txt", "text/plain", 0, key, None));
            }
            4 => {
                attachments.push(b.attachment(
                    "same-bytes-1.txt",
                    "text/plain",
                    4_096,
                    shared_text_key,
                    None,
                ));
            }
            _ => {}
        }
        if !attachments.is_empty() {
            b.set_attachments(everything, &id, &files, attachments);
        }
    }

    for (index, (ru, ja, ar)) in [
        ("Иван", "山田 太郎\n二行目", "محمد"),
        ("Ёлка", "東京", "مرحبا بالعالم"),
        ("", "", ""),
        ("Zoë e\u{301}", "👩‍👩‍👧 家族", "‏نص‎"),
        ("Ω≈ç√∫", "ｆｕｌｌｗｉｄｔｈ", "١٢٣"),
    ]
    .iter()
    .enumerate()
    {
        let id = b.record(scripts);
        b.set(scripts, &id, &cyrillic, json!(ru));
        b.set(scripts, &id, &japanese, json!(ja));
        b.set(scripts, &id, &arabic, json!(ar));
        if index % 2 == 0 {
            b.set(
                scripts,
                &id,
                &emoji_select,
                json!(if index == 0 {
                    "🐘"
                } else {
                    "👩‍👩‍👧"
                }),
            );
        }
    }

    for index in 0..4 {
        let id = b.record(blank);
        if index == 3 {
            b.set(blank, &id, &blank_name, json!("the only non-empty record"));
        }
    }

    for index in 0..3 {
        let id = b.record(synced);
        b.set(
            synced,
            &id,
            &synced_name,
            json!(format!("Synced row {}", index + 1)),
        );
        b.set(synced, &id, &source, json!("Source base A"));
    }

    // Comments, last so that every id generated above stays as it was: one on the first
    // record, a thread of three (a reply, a mention) on the second, two in other scripts on
    // the first record of "Таблица".
    let ids_of = |b: &Builder, table: usize| -> Vec<String> {
        b.world.bases[b.base].tables[table]
            .live()
            .map(|r| r.id.clone())
            .collect()
    };
    let everything_ids = ids_of(&b, everything);
    let script_ids = ids_of(&b, scripts);
    b.comment(
        everything,
        &everything_ids[0],
        1,
        "Checked the numbers; all good.",
        None,
    );
    let mentioned = b.world.users[2].id.clone();
    let first = b.comment(
        everything,
        &everything_ids[1],
        2,
        "Is the \"quoted\" note right?\nSecond line 🦓",
        None,
    );
    b.comment(
        everything,
        &everything_ids[1],
        3,
        &format!("@[{mentioned}] yes, I fixed it"),
        Some(&first),
    );
    b.comment(everything, &everything_ids[1], 0, "Thanks!", None);
    b.comment(scripts, &script_ids[0], 4, "Проверено ✓", None);
    b.comment(scripts, &script_ids[0], 1, "確認しました — مرحبا", None);
    b.base
}

/// The `large` preset.
pub(crate) fn large(world: &mut World, params: &LargeParams) -> usize {
    let first = world.bases.len();
    for index in 0..params.bases.max(1) {
        let name = match index {
            0 => "Large base".to_owned(),
            n => format!("Large base {}", n + 1),
        };
        large_base(world, params, &name, 0x1a96e ^ ((index as u64) << 20));
    }
    first
}

fn large_base(world: &mut World, params: &LargeParams, name: &str, seed: u64) -> usize {
    let mut b = Builder::new_base(world, name, seed);
    let tables: Vec<usize> = (0..params.tables.max(1))
        .map(|index| b.table(&format!("Table {}", index + 1), None))
        .collect();
    struct Columns {
        name: String,
        notes: String,
        amount: String,
        quantity: String,
        status: String,
        tags: String,
        due: String,
        updated: String,
        done: String,
        owner: String,
        files: String,
        next: Option<String>,
    }
    let mut columns: Vec<Columns> = Vec::new();
    for &table in &tables {
        columns.push(Columns {
            name: b.field(table, "Name", FieldType::SingleLineText, None),
            notes: b.field(table, "Notes", FieldType::MultilineText, None),
            amount: b.field(
                table,
                "Amount",
                FieldType::Currency,
                Some(json!({"precision": 2, "symbol": "$"})),
            ),
            quantity: b.field(
                table,
                "Quantity",
                FieldType::Number,
                Some(json!({"precision": 0})),
            ),
            status: b.select(
                table,
                "Status",
                false,
                &[
                    ("New", "blueLight2"),
                    ("Open", "cyanLight2"),
                    ("Blocked", "redLight2"),
                    ("Closed", "greenLight2"),
                ],
            ),
            tags: b.select(
                table,
                "Tags",
                true,
                &[
                    ("red", "redLight2"),
                    ("green", "greenLight2"),
                    ("blue", "blueLight2"),
                ],
            ),
            due: b.field(table, "Due", FieldType::Date, Some(date_options())),
            updated: b.field(
                table,
                "Updated",
                FieldType::DateTime,
                Some(datetime_options()),
            ),
            done: b.field(
                table,
                "Done",
                FieldType::Checkbox,
                Some(json!({"icon": "check", "color": "greenBright"})),
            ),
            owner: b.field(table, "Owner", FieldType::SingleCollaborator, None),
            files: b.field(
                table,
                "Files",
                FieldType::MultipleAttachments,
                Some(json!({"isReversed": false})),
            ),
            next: None,
        });
    }
    for index in 0..tables.len().saturating_sub(1) {
        let (forward, _) = b.link(tables[index], "Next", tables[index + 1], "Previous");
        b.count(tables[index], "Next count", &forward);
        columns[index].next = Some(forward);
    }
    for (index, &table) in tables.iter().enumerate() {
        let label = format!(
            "{{{}}} & \" · \" & {{{}}}",
            columns[index].name, columns[index].status
        );
        b.formula(table, "Label", &label, text_result());
    }
    let statuses = ["New", "Open", "Blocked", "Closed"];
    let tag_names = ["red", "green", "blue"];
    let mut ids: Vec<Vec<String>> = Vec::new();
    for (index, &table) in tables.iter().enumerate() {
        let mut table_ids = Vec::with_capacity(params.records_per_table);
        for row in 0..params.records_per_table {
            let id = b.record(table);
            let c = &columns[index];
            let (name, notes, amount, quantity, status, tags, due, updated, done, owner) = (
                c.name.clone(),
                c.notes.clone(),
                c.amount.clone(),
                c.quantity.clone(),
                c.status.clone(),
                c.tags.clone(),
                c.due.clone(),
                c.updated.clone(),
                c.done.clone(),
                c.owner.clone(),
            );
            let title = b.title(3);
            b.set(table, &id, &name, json!(format!("{title} {row}")));
            if b.rng.u8(..) < 160 {
                let length = b.rng.usize(5..60);
                let text = b.words(length);
                b.set(table, &id, &notes, json!(text));
            }
            let cents = b.rng.u32(0..10_000_000);
            b.set(table, &id, &amount, json!(f64::from(cents) / 100.0));
            let count = b.rng.u32(0..500);
            b.set(table, &id, &quantity, json!(count));
            let state = statuses[b.rng.usize(..statuses.len())];
            b.set(table, &id, &status, json!(state));
            let tag_count = b.rng.usize(0..=2);
            let start = b.rng.usize(..tag_names.len());
            let chosen: Vec<&str> = (0..tag_count)
                .map(|k| tag_names[(start + k) % tag_names.len()])
                .collect();
            b.set(table, &id, &tags, json!(chosen));
            let (month, day) = (b.rng.u8(1..=12), b.rng.u8(1..=28));
            b.set(table, &id, &due, json!(format!("2024-{month:02}-{day:02}")));
            let updated_ms = GENERATION_EPOCH_MS + b.rng.i64(0..31_536_000_000);
            b.set(
                table,
                &id,
                &updated,
                json!(super::time::format_iso_ms(updated_ms - updated_ms % 1000)),
            );
            if b.rng.bool() {
                b.set(table, &id, &done, json!(true));
            }
            let user = b.rng.usize(..);
            b.set_users(table, &id, &owner, &[user]);
            table_ids.push(id);
        }
        ids.push(table_ids);
    }
    for index in 0..tables.len().saturating_sub(1) {
        let Some(forward) = columns[index].next.clone() else {
            continue;
        };
        for row in 0..ids[index].len() {
            let count = b.rng.usize(0..=2);
            if ids[index + 1].is_empty() {
                break;
            }
            let mut targets: Vec<String> = Vec::new();
            for _ in 0..count {
                let target = ids[index + 1][b.rng.usize(..ids[index + 1].len())].clone();
                if !targets.contains(&target) {
                    targets.push(target);
                }
            }
            if !targets.is_empty() {
                let id = ids[index][row].clone();
                b.link_records(tables[index], &id, &forward, &targets);
            }
        }
    }
    let total_records: usize = ids.iter().map(Vec::len).sum();
    if total_records > 0 {
        let ratio = params.max_attachment_bytes as f64 / params.min_attachment_bytes.max(1) as f64;
        let mut pending: Vec<(usize, String, Attachment)> = Vec::with_capacity(params.attachments);
        for index in 0..params.attachments {
            let table_index = b.rng.usize(..tables.len());
            if ids[table_index].is_empty() {
                continue;
            }
            let record = ids[table_index][b.rng.usize(..ids[table_index].len())].clone();
            let u = b.rng.f64();
            let size =
                (params.min_attachment_bytes as f64 * ratio.powf(u.powf(params.size_skew))) as u64;
            let key = b.rng.u64(..);
            let attachment = if index % 5 == 0 {
                b.attachment(
                    &format!("image-{index}.png"),
                    "image/png",
                    size.max(64),
                    key,
                    Some((1024, 768)),
                )
            } else if index % 5 == 1 {
                b.attachment(
                    &format!("document-{index}.pdf"),
                    "application/pdf",
                    size,
                    key,
                    None,
                )
            } else {
                b.attachment(
                    &format!("data-{index}.bin"),
                    "application/octet-stream",
                    size,
                    key,
                    None,
                )
            };
            pending.push((table_index, record, attachment));
        }
        for (table_index, record, attachment) in pending {
            let files = columns[table_index].files.clone();
            let table = &mut b.world.bases[b.base].tables[tables[table_index]];
            let Some(slot) = table.field_slot(&files) else {
                continue;
            };
            if let Some(record) = table.record_mut(&record) {
                let mut list = match record.cell(slot) {
                    Some(Cell::Attachments(list)) => list.clone(),
                    _ => Vec::new(),
                };
                list.push(attachment);
                record.set_cell(slot, Some(Cell::Attachments(list)));
            }
        }
    }
    b.base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_params_parse_and_default_mean_is_about_half_a_megabyte() {
        let params: LargeParams = "tables=2,records=10,attachments=3,min=100,max=1000"
            .parse()
            .unwrap();
        assert_eq!(params.tables, 2);
        assert_eq!(params.records_per_table, 10);
        assert_eq!(params.attachments, 3);
        assert!("nope=1".parse::<LargeParams>().is_err());
        let mean = LargeParams::default().mean_attachment_bytes();
        assert!((300_000.0..800_000.0).contains(&mean), "mean {mean}");
        assert_eq!(LargeParams::for_records(100_000).attachments, 4_000);
        let several: LargeParams = "bases=3,tables=1,records=5,attachments=0".parse().unwrap();
        assert_eq!(several.bases, 3);
        assert_eq!(several.to_string().parse::<LargeParams>().unwrap(), several);
        let mut world = World::new(7);
        large(&mut world, &several);
        let names: Vec<&str> = world.bases.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["Large base", "Large base 2", "Large base 3"]);
        let ids: std::collections::HashSet<&str> =
            world.bases.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn generation_is_deterministic() {
        let build = || {
            let mut world = World::new(42);
            zoo(&mut world);
            large(
                &mut world,
                &"tables=2,records=20,attachments=5".parse().unwrap(),
            );
            world
                .bases
                .iter()
                .flat_map(|base| base.tables.iter())
                .flat_map(|table| {
                    table
                        .live()
                        .map(|record| (record.id.clone(), format!("{:?}", record.cells)))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(build(), build());
    }
}
