//! The YAML configuration file for unattended (nightly) runs: which repository to write to,
//! where its password and the Airtable token live, which bases, tables and fields to back up,
//! how to treat attachments, the retention policy a later `forget` command applies, and the
//! second repositories each run's snapshots are copied into.
//!
//! A complete file, with every key:
//!
//! ```yaml
//! # airback.yaml
//! repository: /srv/backups/airtable       # or s3://bucket/prefix, …; optional (else --repo / AIRBACK_REPO)
//! token_file: /etc/airback/airtable-token  # optional (else AIRTABLE_TOKEN); a `token:` key is rejected
//! password_file: /etc/airback/password     # optional, the repository's password (or password_command)
//! # password_command: pass show airback    # optional, a shell command that prints it; a `password:` key is rejected
//! all_bases: false                         # back up every base the token can see (default false)
//! base_concurrency: 10                     # bases backed up at once, 1 to 50 (default 10)
//! metrics_file: /var/lib/node_exporter/textfile/airback.prom # optional: `snapshot` writes Prometheus metrics there (like --metrics-file)
//! attachments:                             # defaults for every base
//!   download: true                         # false: keep attachment metadata, not content (default true)
//!   concurrency: 8                         # parallel downloads, 1 to 64 (default 8)
//! comments: true                           # back up record comments (default true)
//! bases:
//!   - id: appXXXXXXXXXXXXXX                # required: `app` + 14 letters or digits
//!     name: CRM                            # optional label, informative only
//!     tables:                              # optional
//!       include: [Tasks, tblAAAAAAAAAAAAAA] # table names or ids; empty or missing = all tables
//!       exclude:                           # exclude wins over include
//!         - Archive
//!         - { table: Scratch, optional: true } # may match no table without a warning
//!     exclude_fields:                      # fields never backed up
//!       - Tasks.Internal notes
//!       - tblAAAAAAAAAAAAAA.fldBBBBBBBBBBBBBB
//!       - { table: Sales.EU, field: Margin }
//!       - { table: Tasks, field: Draft, optional: true }
//!     attachments: false                   # per-base override: a bool (download) or a map as above
//!     comments: false                      # per-base override of `comments`
//!     retention:                           # optional: this base's own keep rules, replacing the top-level ones
//!       keep_daily: 90
//!     schedule: "0 * * * *"                # `serve`: this base's own snapshot schedule (cron, 5 fields)
//!     time_zone: America/New_York          # `serve`: the zone of this base's schedule
//!     alerts: { webhook: https://example.com/hook } # `serve`: this base's own alerts, replacing the top-level ones
//! retention:                               # the keep rules `forget --config` applies (restic's)
//!   keep_last: 3
//!   keep_hourly: 24
//!   keep_daily: 7
//!   keep_weekly: 4
//!   keep_monthly: 12
//!   keep_yearly: 3
//!   keep_within: 30d                       # every snapshot of the 30 days before the latest ([Ny][Nm][Nd][Nh])
//!   keep_tags: ["important", "audit,q4"]   # snapshots with these tags (a,b: both); "" = untagged
//!   time_zone: UTC                         # calendar of the periods: UTC (default), local, or Europe/Paris...
//!   after_snapshot: false                  # true: `snapshot --config` runs forget for its bases afterwards
//!   prune: false                           # with after_snapshot: then prune too (default options)
//!   schedule: "30 4 * * 0"                 # `serve`: run forget --prune for every base on this schedule
//! schedule: "15 3 * * *"                   # `serve`: snapshot every base at 03:15 (cron: minute hour day month weekday)
//! time_zone: Europe/Berlin                 # `serve`: the zone of every schedule: UTC (default), local, or an IANA name
//! check:                                   # `serve`: verify the repository on a schedule
//!   schedule: "0 5 * * 0"
//!   read_data_subset: 5%                   # also read this share of the packs, a different slice each run
//! alerts:                                  # `serve`: after each job (and before it, for healthchecks)
//!   healthchecks: https://hc-ping.com/UUID # pinged at <url>/start, <url> on success, <url>/fail on failure or partial
//!   webhook: https://example.com/hook      # POSTed a JSON summary of each finished job
//!   command: /usr/local/bin/notify         # run with the summary in AIRBACK_JOB_* variables
//! copies:                                  # optional: after `snapshot --config`, copy its bases' snapshots there
//!   - repository: s3://offsite/airtable    # required: an existing repository (`airback init`)
//!     password_file: /etc/airback/offsite-password # or password_command; neither for an unencrypted one
//!     bases: [appXXXXXXXXXXXXXX]           # optional: only these bases (default: every base the run backed up)
//! ```
//!
//! Rules the parser enforces:
//!
//! - Unknown keys and values of the wrong type are errors, at any depth. Every such error names
//!   the file and the line and column ([`ConfigError::Parse`]). An empty file is an empty mapping.
//! - The token never lives in the file (configuration files get copied around and checked in): a
//!   `token:` key is an error pointing at `token_file` and `AIRTABLE_TOKEN`. Nor does the
//!   repository's password: a `password:` key is an error pointing at `password_file` and
//!   `password_command`. Those two are not allowed together, and neither may be empty. The
//!   flags and variables that give a password win over both (README, "Passwords").
//! - Every command reads the file (`--config` is a global flag), so a file may hold no bases at
//!   all, for example only `repository` and `password_file`. `snapshot` then has nothing to
//!   back up and says so, unless `all_bases: true`. With `all_bases: true`, the listed bases
//!   are not a limit: they carry per-base settings for bases the token can see.
//! - A base id is `app` followed by 14 ASCII letters or digits; each base may be listed once.
//! - `exclude_fields` entries are `<table>.<field>`, table and field each by name or id. Both
//!   table and field names may contain dots, so the string is split like this: if the part
//!   before the first `.` is a table id (`tbl` + 14 letters or digits), split there; otherwise
//!   split at the last `.`. So `Sales.EU.Margin` is field `Margin` of table `Sales.EU`. When that
//!   is not what you mean (a field name with a dot in a table referred to by name), write the
//!   unambiguous map form `{table: Sales, field: EU.Margin}`.
//! - Every entry of `tables.include`, `tables.exclude` and `exclude_fields` must match a table
//!   (or field) of the base when a snapshot runs. An entry that matches nothing (a typo, or a
//!   table or field renamed in Airtable) is a warning printed even with `--quiet`, it is named
//!   in the snapshot's problems (so the snapshot is listed as partial) and in the `warnings` of
//!   `--json`, and the run exits 3. Otherwise a renamed table would silently drop out of every
//!   nightly snapshot. An entry that may match nothing is written as a map with
//!   `optional: true`: `{table: Scratch, optional: true}` under `tables`, `{table: Tasks,
//!   field: Draft, optional: true}` under `exclude_fields`. Plain strings stay required.
//! - Prefer ids to names (`tblXXXXXXXXXXXXXX`, `fldXXXXXXXXXXXXXX`): they do not change when a
//!   table or field is renamed. A table's id is in its Airtable URL; field ids are listed in
//!   the base's API documentation (`https://airtable.com/<base id>/api/docs`).
//! - Per-base `attachments` inherits every key it does not set from the top-level
//!   `attachments`, which in turn defaults to `download: true, concurrency: 8`. A bare bool
//!   (`attachments: false`) sets only `download`; it is accepted at the top level too.
//! - `retention` counts are non-negative integers, and a `retention` section must keep
//!   something: a count above zero, `keep_within` or `keep_tags`. A base's own section replaces
//!   the top-level one for that base as a whole (no key-by-key merging); `time_zone` and
//!   `after_snapshot` belong to the top-level section only.
//! - `schedule` values are cron expressions of 5 fields (minute, hour, day of month, month, day
//!   of week; `*`, lists, ranges, steps, names such as `MON`), evaluated in `time_zone` (the
//!   top-level one, or the base's own); a base's `schedule` replaces the top-level one for that
//!   base. `retention.schedule` belongs to the top-level section only. `check.read_data_subset`
//!   is a percentage from 1% to 100%. `alerts` URLs are http or https; a base's `alerts`
//!   replaces the top-level ones for that base's jobs as a whole.
//! - Each `copies` entry names a repository once; its password comes from its own
//!   `password_file` or `password_command` (not both, neither empty; a `password:` key is
//!   rejected), never from the main repository's.
//!
//! Relative paths (`token_file`, `password_file`, `metrics_file`, a local `repository`) are used as written, that is relative to
//! the working directory of the process; use absolute paths for scheduled jobs.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::retention::{CalendarDuration, TagList};

/// The most attachment downloads a base may run at once.
pub const MAX_ATTACHMENT_CONCURRENCY: usize = 64;

/// The most bases backed up at once: at 5 requests/s each, 50 fill any token's budget of
/// 50 requests/s ten times over.
pub const MAX_BASE_CONCURRENCY: usize = 50;

/// A parsed and validated configuration file.
///
/// [`Config::default`] has no bases, so a snapshot run from it backs up nothing; it is a
/// starting point for building one in code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// Where the repository is (a path or a URL such as `s3://bucket/prefix`); `None` leaves it
    /// to `--repo` / `AIRBACK_REPO`.
    pub repository: Option<String>,
    /// A file holding the Airtable token; `None` leaves it to `AIRTABLE_TOKEN`.
    pub token_file: Option<PathBuf>,
    /// A file holding the repository's password (never together with
    /// [`Config::password_command`]).
    pub password_file: Option<PathBuf>,
    /// A shell command that prints the repository's password.
    pub password_command: Option<String>,
    /// Back up every base the token can see, not only those under [`Config::bases`].
    pub all_bases: bool,
    /// Bases backed up at once, 1 to [`MAX_BASE_CONCURRENCY`] (`None`: the default, 10).
    pub base_concurrency: Option<usize>,
    /// Where `snapshot` writes the run's Prometheus metrics (as `--metrics-file` does, which
    /// wins over it), for the node exporter's textfile collector.
    pub metrics_file: Option<PathBuf>,
    /// Attachment settings for every base without its own override.
    pub attachments: AttachmentSettings,
    /// Whether record comments are backed up, for every base without its own override
    /// (`None`: the default, yes). Use [`Config::comments_for`] for a base.
    pub comments: Option<bool>,
    /// The listed bases, in file order, each id at most once.
    pub bases: Vec<BaseConfig>,
    /// The retention policy, if the file has one.
    pub retention: Option<Retention>,
    /// Repositories that `snapshot --config` copies its bases' snapshots into, in file order.
    pub copies: Vec<CopyTarget>,
    /// `serve`: when every base is backed up (a validated cron expression), unless it has its
    /// own.
    pub schedule: Option<String>,
    /// `serve`: the zone the schedules are read in (`UTC`, `local` or an IANA name); `None`
    /// is UTC.
    pub time_zone: Option<String>,
    /// `serve`: the repository check and its schedule.
    pub check: Option<CheckSchedule>,
    /// `serve`: where jobs report, unless their base has its own.
    pub alerts: Alerts,
}

/// `check:`: `serve` verifies the repository on this schedule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a map with `schedule` and optionally `read_data_subset`"
)]
pub struct CheckSchedule {
    /// A validated cron expression.
    pub schedule: String,
    /// The share of the packs each run downloads and verifies, in percent (1 to 100); each
    /// run reads the next slice. `None`: only the structure is checked.
    #[serde(default, deserialize_with = "percent")]
    pub read_data_subset: Option<u8>,
}

/// `alerts:`: where `serve` reports jobs. Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a map of healthchecks, webhook, command"
)]
pub struct Alerts {
    /// A healthchecks.io-style check URL: `/start` before a job, the URL itself after a success,
    /// `/fail` (with the error as body) after a failure or a partial snapshot.
    pub healthchecks: Option<String>,
    /// A URL that receives a POST with each finished job's summary as JSON.
    pub webhook: Option<String>,
    /// A shell command run after each job, with its summary in `AIRBACK_JOB_*` variables.
    pub command: Option<String>,
}

impl Alerts {
    /// Whether no alert is set.
    pub fn is_empty(&self) -> bool {
        self.healthchecks.is_none() && self.webhook.is_none() && self.command.is_none()
    }
}

/// A second repository (`copies:`): after each `snapshot --config`, it receives every
/// snapshot of the run's bases that it lacks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyTarget {
    /// Where it is (a path or a URL).
    pub repository: String,
    /// A file holding its password (never together with [`CopyTarget::password_command`]).
    pub password_file: Option<PathBuf>,
    /// A shell command that prints its password.
    pub password_command: Option<String>,
    /// Only these bases' snapshots (empty: every base the run backed up).
    pub bases: Vec<String>,
}

/// How attachments are backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentSettings {
    /// Download attachment content; when false only the metadata (name, size, type, URL) is kept.
    pub download: bool,
    /// How many attachments to download at once, 1 to [`MAX_ATTACHMENT_CONCURRENCY`].
    pub concurrency: usize,
}

impl Default for AttachmentSettings {
    /// Download, 8 at a time.
    fn default() -> Self {
        Self {
            download: true,
            concurrency: 8,
        }
    }
}

/// One entry under `bases:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseConfig {
    /// The base id, `app` + 14 letters or digits.
    pub id: String,
    /// A label for people; airback does not use it.
    pub name: Option<String>,
    /// Which tables to back up.
    pub tables: TableFilter,
    /// Fields never backed up.
    pub exclude_fields: Vec<FieldRef>,
    /// This base's own attachment settings, already completed from the top-level ones; `None`
    /// when the base has no override. Use [`Config::attachments_for`] to get the effective value.
    pub attachments: Option<AttachmentSettings>,
    /// This base's own keep rules, replacing the top-level `retention` as a whole.
    pub retention: Option<Retention>,
    /// This base's own `comments` setting; `None` when it has none.
    pub comments: Option<bool>,
    /// `serve`: this base's own snapshot schedule (a validated cron expression).
    pub schedule: Option<String>,
    /// `serve`: the zone of this base's schedule, replacing the top-level `time_zone`.
    pub time_zone: Option<String>,
    /// `serve`: this base's own alerts, replacing the top-level ones as a whole.
    pub alerts: Option<Alerts>,
}

impl BaseConfig {
    /// A base entry with only an id and everything else at its default.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: None,
            tables: TableFilter::default(),
            exclude_fields: Vec::new(),
            attachments: None,
            retention: None,
            comments: None,
            schedule: None,
            time_zone: None,
            alerts: None,
        }
    }

    /// Whether `exclude_fields` excludes this field (see [`FieldRef::matches`]).
    pub fn excludes_field(
        &self,
        table_id: &str,
        table_name: &str,
        field_id: &str,
        field_name: &str,
    ) -> bool {
        self.exclude_fields
            .iter()
            .any(|f| f.matches(table_id, table_name, field_id, field_name))
    }
}

/// Which tables of a base to back up, by table name or id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a map with `include` and/or `exclude` lists"
)]
pub struct TableFilter {
    /// Only these tables; empty means all tables.
    pub include: Vec<TableRef>,
    /// Never these tables, even when included.
    pub exclude: Vec<TableRef>,
}

impl TableFilter {
    /// Whether the table passes the filter: it is included (an empty `include` includes every
    /// table) and not excluded. Each entry matches the table's id or its exact name.
    pub fn allows(&self, table_id: &str, table_name: &str) -> bool {
        let names = |list: &[TableRef]| list.iter().any(|t| t.matches(table_id, table_name));
        (self.include.is_empty() || names(&self.include)) && !names(&self.exclude)
    }
}

/// One entry of `tables.include` or `tables.exclude`: a table name or id, written as a plain
/// string or as the map `{table: ..., optional: true}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    /// A table name or id (`tbl…`).
    pub table: String,
    /// When true, the entry may match no table of the base without a warning; otherwise such
    /// an entry makes the snapshot partial.
    pub optional: bool,
}

impl TableRef {
    /// Whether the entry names this table, by id or exact name.
    pub fn matches(&self, table_id: &str, table_name: &str) -> bool {
        self.table == table_id || self.table == table_name
    }
}

impl From<&str> for TableRef {
    /// A required entry.
    fn from(table: &str) -> Self {
        TableRef::from(table.to_owned())
    }
}

impl From<String> for TableRef {
    /// A required entry.
    fn from(table: String) -> Self {
        TableRef {
            table,
            optional: false,
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table)
    }
}

/// A field of a table, each named by its name or id, as written under `exclude_fields`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRef {
    /// A table name or id (`tbl…`).
    pub table: String,
    /// A field name or id (`fld…`).
    pub field: String,
    /// When true, the entry may match no field of the base without a warning; otherwise such
    /// an entry makes the snapshot partial. Only the map form can set it.
    pub optional: bool,
}

impl FieldRef {
    /// Parses the string form `<table>.<field>`: split after a leading table id
    /// (`tbl` + 14 letters or digits), otherwise at the last `.`. `None` when there is no `.`
    /// or either side would be empty.
    pub fn parse(text: &str) -> Option<FieldRef> {
        let (table, field) = match text.split_once('.') {
            Some((table, field)) if is_airtable_id(table, "tbl") => (table, field),
            _ => text.rsplit_once('.')?,
        };
        if table.is_empty() || field.is_empty() {
            return None;
        }
        Some(FieldRef {
            table: table.to_owned(),
            field: field.to_owned(),
            optional: false,
        })
    }

    /// Whether this reference names the field: the table matches its id or exact name, and the
    /// field matches its id or exact name.
    pub fn matches(
        &self,
        table_id: &str,
        table_name: &str,
        field_id: &str,
        field_name: &str,
    ) -> bool {
        self.matches_table(table_id, table_name)
            && (self.field == field_id || self.field == field_name)
    }

    /// Whether the table part names this table, by id or exact name.
    pub fn matches_table(&self, table_id: &str, table_name: &str) -> bool {
        self.table == table_id || self.table == table_name
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.table, self.field)
    }
}

/// The keep rules `forget --config` applies (restic's semantics; see `crate::retention`). A
/// rule left out (or a count of 0) is not used.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a map of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, \
                 keep_yearly, keep_within, keep_tags, time_zone, after_snapshot, prune, schedule"
)]
pub struct Retention {
    /// The most recent snapshots.
    #[serde(deserialize_with = "keep_count")]
    pub keep_last: Option<u32>,
    /// The last snapshot of each of this many hours.
    #[serde(deserialize_with = "keep_count")]
    pub keep_hourly: Option<u32>,
    /// The last snapshot of each of this many days.
    #[serde(deserialize_with = "keep_count")]
    pub keep_daily: Option<u32>,
    /// The last snapshot of each of this many weeks.
    #[serde(deserialize_with = "keep_count")]
    pub keep_weekly: Option<u32>,
    /// The last snapshot of each of this many months.
    #[serde(deserialize_with = "keep_count")]
    pub keep_monthly: Option<u32>,
    /// The last snapshot of each of this many years.
    #[serde(deserialize_with = "keep_count")]
    pub keep_yearly: Option<u32>,
    /// Every snapshot newer than the latest minus this duration (`30d`, `1y6m`).
    #[serde(deserialize_with = "parsed")]
    pub keep_within: Option<CalendarDuration>,
    /// Snapshots carrying every tag of one of these lists (`"a,b"`; `""` for untagged).
    #[serde(deserialize_with = "parsed_list")]
    pub keep_tags: Vec<TagList>,
    /// The zone whose calendar sets days, weeks, months and years: `UTC` (the default),
    /// `local`, or an IANA name such as `Europe/Paris`. Top-level section only.
    pub time_zone: Option<String>,
    /// Whether `snapshot --config` runs `forget` for the bases it backed up after each run.
    /// Top-level section only.
    pub after_snapshot: bool,
    /// With `after_snapshot`: then run `prune` (default options) too. Top-level section only.
    pub prune: bool,
    /// `serve`: when to run `forget --prune` for every base (a validated cron expression).
    /// Top-level section only.
    pub schedule: Option<String>,
}

impl Retention {
    /// Whether some rule keeps at least one snapshot.
    pub fn keeps_anything(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .into_iter()
        .any(|n| n.unwrap_or(0) > 0)
            || self.keep_within.is_some()
            || !self.keep_tags.is_empty()
    }
}

/// A value written as a string and parsed with `FromStr` (its error becomes the message).
fn parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| t.parse().map_err(de::Error::custom))
        .transpose()
}

/// A list of strings, each parsed with `FromStr`.
fn parsed_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    let texts: Vec<String> = Vec::deserialize(d)?;
    texts
        .iter()
        .map(|t| t.parse().map_err(de::Error::custom))
        .collect()
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {}; check the path and its permissions", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not valid YAML, or has an unknown key or a value of the wrong type or form.
    #[error("cannot parse the configuration file {source_name}: {message}")]
    Parse {
        /// The file (or other source) name.
        source_name: String,
        /// What is wrong, starting with `line N, column M: ` when the YAML parser knows where.
        message: String,
    },
    /// The file parses, but its settings do not make sense together.
    #[error("invalid configuration file {source_name}: {message}")]
    Invalid {
        /// The file (or other source) name.
        source_name: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl Config {
    /// Reads and parses the file at `path`; errors name the path.
    pub fn from_path(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates YAML `text`; `source_name` (usually the file path) is used in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|err| {
            // `token` and `password` are unknown keys like any other; look again to explain
            // them specifically.
            let err = match serde_yaml_ng::from_str::<SecretProbe>(text) {
                Err(secret_err)
                    if [TokenKey::TEXT, PasswordKey::TEXT]
                        .iter()
                        .any(|t| secret_err.to_string().contains(t)) =>
                {
                    secret_err
                }
                _ => err,
            };
            ConfigError::Parse {
                source_name: source_name.to_owned(),
                message: parse_message(&err),
            }
        })?;
        raw.resolve().map_err(|message| ConfigError::Invalid {
            source_name: source_name.to_owned(),
            message,
        })
    }

    /// The listed base with this id.
    pub fn base(&self, id: &str) -> Option<&BaseConfig> {
        self.bases.iter().find(|b| b.id == id)
    }

    /// Whether the file has a `retention` section, at the top or in a base.
    pub fn has_retention(&self) -> bool {
        self.retention.is_some() || self.bases.iter().any(|b| b.retention.is_some())
    }

    /// The snapshot schedule of `base` and the zone it is read in: its own, else the top-level
    /// ones (`None`: no scheduled snapshots).
    pub fn schedule_for<'a>(&'a self, base: &'a BaseConfig) -> Option<(&'a str, &'a str)> {
        let schedule = base.schedule.as_deref().or(self.schedule.as_deref())?;
        Some((schedule, self.zone_for(Some(base))))
    }

    /// The zone of `base`'s schedules (its own, else the top-level one), or of the
    /// repository-wide ones when `None`; UTC by default.
    pub fn zone_for<'a>(&'a self, base: Option<&'a BaseConfig>) -> &'a str {
        base.and_then(|b| b.time_zone.as_deref())
            .or(self.time_zone.as_deref())
            .unwrap_or("UTC")
    }

    /// The alerts of `base`'s jobs (its own, else the top-level ones), or of the
    /// repository-wide jobs when `None`.
    pub fn alerts_for<'a>(&'a self, base: Option<&'a BaseConfig>) -> &'a Alerts {
        base.and_then(|b| b.alerts.as_ref()).unwrap_or(&self.alerts)
    }

    /// The attachment settings that apply to `base`: its override, else the top-level settings.
    pub fn attachments_for(&self, base: &BaseConfig) -> AttachmentSettings {
        base.attachments.unwrap_or(self.attachments)
    }

    /// Whether record comments of `base` are backed up: its override, else the top-level
    /// `comments`, else yes.
    pub fn comments_for(&self, base: &BaseConfig) -> bool {
        base.comments.or(self.comments).unwrap_or(true)
    }
}

/// Whether `s` is an Airtable id: `prefix` (3 characters) then 14 ASCII letters or digits.
fn is_airtable_id(s: &str, prefix: &str) -> bool {
    s.len() == 17
        && s.starts_with(prefix)
        && s[prefix.len()..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A serde_yaml_ng error as `line N, column M: what`, without the location repeated.
fn parse_message(err: &serde_yaml_ng::Error) -> String {
    let text = err.to_string();
    match err.location() {
        Some(loc) => {
            let (line, column) = (loc.line(), loc.column());
            let text = text.replacen(&format!(" at line {line} column {column}"), "", 1);
            format!("line {line}, column {column}: {text}")
        }
        None => text,
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written. Validation that concerns one value happens inside serde visitors, so
// the YAML deserializer attaches that value's line to the error; checks across values happen in
// `RawConfig::resolve`.

#[derive(Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a map of settings (`repository`, `bases`, ...)"
)]
struct RawConfig {
    repository: Option<String>,
    token_file: Option<PathBuf>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    all_bases: bool,
    #[serde(deserialize_with = "base_concurrency")]
    base_concurrency: Option<usize>,
    metrics_file: Option<PathBuf>,
    attachments: Option<RawAttachments>,
    comments: Option<bool>,
    bases: Vec<RawBase>,
    retention: Option<Retention>,
    copies: Vec<RawCopy>,
    schedule: Option<String>,
    time_zone: Option<String>,
    check: Option<CheckSchedule>,
    alerts: Alerts,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a copy target: a map with at least `repository`"
)]
struct RawCopy {
    repository: String,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    password_command: Option<String>,
    #[serde(default)]
    bases: Vec<BaseId>,
    #[serde(default, rename = "password")]
    _password: Forbidden<PasswordKey>,
}

/// Looks only for top-level `token` and `password` keys, to reject them with their own
/// message and line.
#[derive(Deserialize)]
struct SecretProbe {
    #[serde(default, rename = "token")]
    _token: Forbidden<TokenKey>,
    #[serde(default, rename = "password")]
    _password: Forbidden<PasswordKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a base: a map with at least `id`")]
struct RawBase {
    id: BaseId,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tables: TableFilter,
    #[serde(default)]
    exclude_fields: Vec<FieldRef>,
    #[serde(default)]
    attachments: Option<RawAttachments>,
    #[serde(default)]
    retention: Option<Retention>,
    #[serde(default)]
    comments: Option<bool>,
    schedule: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    alerts: Option<Alerts>,
}

impl RawConfig {
    fn resolve(self) -> Result<Config, String> {
        if self
            .repository
            .as_deref()
            .is_some_and(|r| r.trim().is_empty())
        {
            return Err("`repository` is empty; give a path or URL, or remove the key".into());
        }
        if self
            .token_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(
                "`token_file` is empty; give the path of the token file, or remove the key \
                        and set AIRTABLE_TOKEN"
                    .into(),
            );
        }
        if self
            .password_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(
                "`password_file` is empty; give the path of the password file, or remove the key"
                    .into(),
            );
        }
        if self
            .password_command
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(
                "`password_command` is empty; give a command that prints the password, or \
                 remove the key"
                    .into(),
            );
        }
        if self.password_file.is_some() && self.password_command.is_some() {
            return Err(
                "`password_file` and `password_command` are both set; keep the one that gives \
                 the password"
                    .into(),
            );
        }
        let mut first_entry: HashMap<&str, usize> = HashMap::new();
        for (i, base) in self.bases.iter().enumerate() {
            if let Some(first) = first_entry.insert(&base.id.0, i) {
                return Err(format!(
                    "base {} is listed twice under `bases:` (entries {} and {}); merge them into one entry",
                    base.id.0,
                    first + 1,
                    i + 1
                ));
            }
            for (key, list) in [
                ("include", &base.tables.include),
                ("exclude", &base.tables.exclude),
            ] {
                if list.iter().any(|t| t.table.trim().is_empty()) {
                    return Err(format!(
                        "base {}: `tables.{key}` has an empty table name; remove it or name a table",
                        base.id.0
                    ));
                }
            }
        }
        let sections = self
            .retention
            .iter()
            .map(|r| ("`retention`".to_owned(), r, true));
        let per_base = self.bases.iter().filter_map(|b| {
            let r = b.retention.as_ref()?;
            Some((format!("base {}: `retention`", b.id.0), r, false))
        });
        for (name, r, top) in sections.chain(per_base) {
            if !r.keeps_anything() {
                return Err(format!(
                    "{name} would keep no snapshots; set at least one of keep_last, \
                     keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly above 0, \
                     or keep_within or keep_tags, or remove the section"
                ));
            }
            if !top && (r.time_zone.is_some() || r.after_snapshot || r.prune) {
                return Err(format!(
                    "{name}: `time_zone`, `after_snapshot` and `prune` apply to every base; \
                     move them to the top-level `retention` section"
                ));
            }
            if !top && r.schedule.is_some() {
                return Err(format!(
                    "{name}: `schedule` runs forget --prune for every base; move it to the \
                     top-level `retention` section"
                ));
            }
            if r.prune && !r.after_snapshot {
                return Err(format!(
                    "{name}: `prune: true` runs after each snapshot's retention, so it needs \
                     `after_snapshot: true` (or run `airback prune` on its own schedule)"
                ));
            }
            if r.time_zone.as_deref().is_some_and(|z| z.trim().is_empty()) {
                return Err(format!(
                    "{name}: `time_zone` is empty; use UTC, local or an IANA name such as \
                     Europe/Paris, or remove the key"
                ));
            }
        }
        for (i, copy) in self.copies.iter().enumerate() {
            let name = format!("`copies` entry {}", i + 1);
            if copy.repository.trim().is_empty() {
                return Err(format!("{name}: `repository` is empty; give a path or URL"));
            }
            if self.copies[..i]
                .iter()
                .any(|c| c.repository == copy.repository)
            {
                return Err(format!(
                    "{name}: repository {} is listed twice under `copies:`; remove one entry",
                    crate::backend::redact_location(&copy.repository)
                ));
            }
            if copy
                .password_file
                .as_ref()
                .is_some_and(|p| p.as_os_str().is_empty())
                || copy
                    .password_command
                    .as_deref()
                    .is_some_and(|c| c.trim().is_empty())
            {
                return Err(format!(
                    "{name}: `password_file` or `password_command` is empty; name the password's \
                     file or command, or remove the key"
                ));
            }
            if copy.password_file.is_some() && copy.password_command.is_some() {
                return Err(format!(
                    "{name}: `password_file` and `password_command` are both set; keep the one \
                     that gives the password"
                ));
            }
        }

        validate_serve(&self)?;
        let attachments = self
            .attachments
            .map_or_else(AttachmentSettings::default, |a| {
                a.over(AttachmentSettings::default())
            });
        let bases = self
            .bases
            .into_iter()
            .map(|b| BaseConfig {
                id: b.id.0,
                name: b.name,
                tables: b.tables,
                exclude_fields: b.exclude_fields,
                attachments: b.attachments.map(|a| a.over(attachments)),
                retention: b.retention,
                comments: b.comments,
                schedule: b.schedule,
                time_zone: b.time_zone,
                alerts: b.alerts,
            })
            .collect();
        Ok(Config {
            repository: self.repository,
            token_file: self.token_file,
            password_file: self.password_file,
            password_command: self.password_command,
            all_bases: self.all_bases,
            base_concurrency: self.base_concurrency,
            metrics_file: self.metrics_file,
            attachments,
            comments: self.comments,
            bases,
            retention: self.retention,
            copies: self
                .copies
                .into_iter()
                .map(|c| CopyTarget {
                    repository: c.repository,
                    password_file: c.password_file,
                    password_command: c.password_command,
                    bases: c.bases.into_iter().map(|b| b.0).collect(),
                })
                .collect(),
            schedule: self.schedule,
            time_zone: self.time_zone,
            check: self.check,
            alerts: self.alerts,
        })
    }
}

/// Checks the keys `serve` uses: every schedule parses as a 5-field cron expression, every
/// zone is known, every alert URL is http or https and no command is empty.
fn validate_serve(raw: &RawConfig) -> Result<(), String> {
    let zone = |name: &str, zone: Option<&str>| -> Result<(), String> {
        match zone {
            Some(z) => crate::serve::schedule::zone(z)
                .map(|_| ())
                .map_err(|e| format!("{name}: {e}")),
            None => Ok(()),
        }
    };
    let cron = |name: &str, expr: Option<&str>| -> Result<(), String> {
        match expr {
            Some(e) => crate::serve::schedule::parse_cron(e)
                .map(|_| ())
                .map_err(|e| format!("{name}: {e}")),
            None => Ok(()),
        }
    };
    let alerts = |name: &str, a: &Alerts| -> Result<(), String> {
        for (key, url) in [("healthchecks", &a.healthchecks), ("webhook", &a.webhook)] {
            if let Some(url) = url {
                let ok = reqwest::Url::parse(url)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
                if !ok {
                    return Err(format!(
                        "{name}.{key}: `{}` is not an http or https URL; write the whole URL, \
                         such as https://hc-ping.com/UUID",
                        crate::backend::redact_location(url)
                    ));
                }
            }
        }
        if a.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(format!(
                "{name}.command is empty; give a command to run, or remove the key"
            ));
        }
        Ok(())
    };
    zone("`time_zone`", raw.time_zone.as_deref())?;
    cron("`schedule`", raw.schedule.as_deref())?;
    cron(
        "`retention.schedule`",
        raw.retention.as_ref().and_then(|r| r.schedule.as_deref()),
    )?;
    if let Some(check) = &raw.check {
        cron("`check.schedule`", Some(&check.schedule))?;
    }
    alerts("`alerts`", &raw.alerts)?;
    for b in &raw.bases {
        let name = format!("base {}", b.id.0);
        zone(&format!("{name}: `time_zone`"), b.time_zone.as_deref())?;
        cron(&format!("{name}: `schedule`"), b.schedule.as_deref())?;
        if let Some(a) = &b.alerts {
            alerts(&format!("{name}: `alerts`"), a)?;
        }
    }
    Ok(())
}

/// A percentage written `5%` (or a bare number), 1 to 100.
fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let value: Option<serde_yaml_ng::Value> = Option::deserialize(d)?;
    let Some(value) = value else { return Ok(None) };
    let text = match &value {
        serde_yaml_ng::Value::String(s) => s.trim().trim_end_matches('%').trim().to_owned(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    match text.parse::<u8>() {
        Ok(n @ 1..=100) => Ok(Some(n)),
        _ => Err(de::Error::custom(
            "`read_data_subset` is a percentage from 1% to 100%, such as 5%",
        )),
    }
}

/// A validated base id.
struct BaseId(String);

impl<'de> Deserialize<'de> for BaseId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BaseId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an Airtable base id (`app` followed by 14 letters or digits)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BaseId, E> {
                if is_airtable_id(v, "app") {
                    Ok(BaseId(v.to_owned()))
                } else {
                    Err(E::custom(format_args!(
                        "`{v}` is not an Airtable base id: expected `app` followed by 14 letters \
                         or digits, like appXXXXXXXXXXXXXX (copy it from the base's URL)"
                    )))
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// `attachments` as written: either a bool (download only) or a map with optional keys.
#[derive(Default)]
struct RawAttachments {
    download: Option<bool>,
    concurrency: Option<Concurrency>,
}

impl RawAttachments {
    /// Fills the keys this one does not set from `defaults`.
    fn over(self, defaults: AttachmentSettings) -> AttachmentSettings {
        AttachmentSettings {
            download: self.download.unwrap_or(defaults.download),
            concurrency: self.concurrency.map_or(defaults.concurrency, |c| c.0),
        }
    }
}

impl<'de> Deserialize<'de> for RawAttachments {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            deny_unknown_fields,
            expecting = "a map with `download` and/or `concurrency`"
        )]
        struct Map {
            #[serde(default)]
            download: Option<bool>,
            #[serde(default)]
            concurrency: Option<Concurrency>,
        }

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAttachments;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, or a map with `download` and/or `concurrency`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawAttachments, E> {
                Ok(RawAttachments {
                    download: Some(v),
                    concurrency: None,
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawAttachments, E> {
                Ok(RawAttachments::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAttachments, A::Error> {
                let m = Map::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RawAttachments {
                    download: m.download,
                    concurrency: m.concurrency,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A validated attachment concurrency.
struct Concurrency(usize);

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Concurrency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an integer from 1 to {MAX_ATTACHMENT_CONCURRENCY}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Concurrency, E> {
                match usize::try_from(v) {
                    Ok(n) if (1..=MAX_ATTACHMENT_CONCURRENCY).contains(&n) => Ok(Concurrency(n)),
                    _ => Err(E::custom(format_args!(
                        "attachment concurrency {v} is out of range: use a number from 1 to \
                         {MAX_ATTACHMENT_CONCURRENCY}"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Concurrency, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format_args!(
                        "attachment concurrency {v} is out of range: use a number from 1 to \
                         {MAX_ATTACHMENT_CONCURRENCY}"
                    ))),
                }
            }
        }
        d.deserialize_u64(V)
    }
}

/// `base_concurrency`: a whole number from 1 to [`MAX_BASE_CONCURRENCY`].
fn base_concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<usize>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an integer from 1 to {MAX_BASE_CONCURRENCY}")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<usize>, E> {
            match usize::try_from(v) {
                Ok(n) if (1..=MAX_BASE_CONCURRENCY).contains(&n) => Ok(Some(n)),
                _ => Err(E::custom(format_args!(
                    "base_concurrency {v} is out of range: use a number from 1 to \
                     {MAX_BASE_CONCURRENCY}"
                ))),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<usize>, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format_args!(
                    "base_concurrency {v} is out of range: use a number from 1 to \
                     {MAX_BASE_CONCURRENCY}"
                ))),
            }
        }
    }
    d.deserialize_u64(V)
}

/// A `retention` count: a whole number from 0 up, or empty for "rule not used".
fn keep_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u32>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number of snapshots, 0 or more")
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<u32>, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<u32>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<u32>, D::Error> {
            d.deserialize_u64(self)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<u32>, E> {
            u32::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format_args!("{v} is too large for a retention count")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<u32>, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format_args!(
                    "retention count {v} is negative: use 0 or more, or leave the rule out"
                ))),
            }
        }
    }
    d.deserialize_option(V)
}

impl<'de> Deserialize<'de> for TableRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            deny_unknown_fields,
            expecting = "a map with `table` and, optionally, `optional`"
        )]
        struct Map {
            table: String,
            #[serde(default)]
            optional: bool,
        }

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TableRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table name or id, or a map `{table: ..., optional: true}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TableRef, E> {
                Ok(TableRef::from(v))
            }
            // A plain scalar YAML reads as another type is still a name (`2024`), as it was
            // when entries were strings only; an empty one is rejected by `resolve`.
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TableRef, E> {
                Ok(TableRef::from(v.to_string().as_str()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TableRef, E> {
                Ok(TableRef::from(v.to_string().as_str()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TableRef, E> {
                Ok(TableRef::from(v.to_string().as_str()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TableRef, E> {
                Ok(TableRef::from(v.to_string().as_str()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<TableRef, E> {
                Ok(TableRef::from(""))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TableRef, A::Error> {
                let m = Map::deserialize(MapAccessDeserializer::new(map))?;
                Ok(TableRef {
                    table: m.table,
                    optional: m.optional,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for FieldRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            deny_unknown_fields,
            expecting = "a map with `table`, `field` and, optionally, `optional`"
        )]
        struct Map {
            table: String,
            field: String,
            #[serde(default)]
            optional: bool,
        }

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`<table>.<field>` or a map `{table: ..., field: ..., optional: true}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldRef, E> {
                FieldRef::parse(v).ok_or_else(|| {
                    E::custom(format_args!(
                        "`{v}` does not name a field: write `<table>.<field>` (each by name or \
                         id, like `Tasks.Notes`) or the map form `{{table: ..., field: ...}}`"
                    ))
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldRef, A::Error> {
                let m = Map::deserialize(MapAccessDeserializer::new(map))?;
                if m.table.is_empty() || m.field.is_empty() {
                    return Err(de::Error::custom(
                        "`table` and `field` must both be non-empty names or ids",
                    ));
                }
                Ok(FieldRef {
                    table: m.table,
                    field: m.field,
                    optional: m.optional,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A key that must not be in the file, and why.
trait ForbiddenKey {
    /// The error: why the key is rejected, and what to do instead.
    const TEXT: &'static str;
}

/// `token`.
struct TokenKey;

impl ForbiddenKey for TokenKey {
    const TEXT: &'static str = "a `token` key is not allowed: secrets must not live in \
     configuration files, which get copied around; put the token in a file and name it with \
     `token_file`, or set the AIRTABLE_TOKEN environment variable";
}

/// `password`.
struct PasswordKey;

impl ForbiddenKey for PasswordKey {
    const TEXT: &'static str = "a `password` key is not allowed: the password never lives in \
     configuration files, which get copied around; put it in a file and name it with \
     `password_file`, or name a command that prints it with `password_command`";
}

/// A forbidden key: present means an error, whatever its value (even empty).
struct Forbidden<K>(std::marker::PhantomData<K>);

impl<K> Default for Forbidden<K> {
    fn default() -> Self {
        Forbidden(std::marker::PhantomData)
    }
}

impl<'de, K: ForbiddenKey> Deserialize<'de> for Forbidden<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<K>(std::marker::PhantomData<K>);
        impl<K: ForbiddenKey> V<K> {
            fn error<E: de::Error>() -> E {
                E::custom(K::TEXT)
            }
        }
        impl<'de, K: ForbiddenKey> Visitor<'de> for V<K> {
            type Value = Forbidden<K>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("no such key")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Forbidden<K>, E> {
                Err(Self::error())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Forbidden<K>, E> {
                Err(Self::error())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Forbidden<K>, E> {
                Err(Self::error())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Forbidden<K>, E> {
                Err(Self::error())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Forbidden<K>, E> {
                Err(Self::error())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Forbidden<K>, E> {
                Err(Self::error())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Forbidden<K>, A::Error> {
                Err(Self::error())
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Forbidden<K>, A::Error> {
                Err(Self::error())
            }
        }
        d.deserialize_any(V::<K>(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "appABCDEFGHIJ1234";
    const BASE2: &str = "appZYXWVUTSRQ9876";

    const FULL: &str = "\
# airback.yaml
repository: /srv/backups/airtable
token_file: /etc/airback/airtable-token
all_bases: false
metrics_file: /var/lib/node_exporter/textfile/airback.prom
attachments:
  download: true
  concurrency: 8
comments: true
bases:
  - id: appXXXXXXXXXXXXXX
    name: CRM
    tables:
      include: [Tasks, tblAAAAAAAAAAAAAA]
      exclude: [Archive]
    exclude_fields: [\"Tasks.Internal notes\", \"tblAAAAAAAAAAAAAA.fldBBBBBBBBBBBBBB\"]
    attachments: false
    comments: false
    retention:
      keep_daily: 90
    schedule: \"0 * * * *\"
    time_zone: America/New_York
    alerts: { webhook: https://example.com/crm }
retention:
  keep_last: 3
  keep_hourly: 24
  keep_daily: 7
  keep_weekly: 4
  keep_monthly: 12
  keep_yearly: 3
  keep_within: 30d
  keep_tags: [important, \"audit,q4\", \"\"]
  time_zone: Europe/Paris
  after_snapshot: true
  prune: true
  schedule: \"30 4 * * 0\"
schedule: \"15 3 * * *\"
time_zone: Europe/Berlin
check:
  schedule: \"0 5 * * 0\"
  read_data_subset: 5%
alerts:
  healthchecks: https://hc-ping.com/abc
  command: notify-send airback
";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.yaml")
    }

    /// The message of an error that must be a `Parse` error, checked to name the source.
    fn parse_err(text: &str) -> String {
        match parse(text) {
            Err(e @ ConfigError::Parse { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("test.yaml"), "{msg}");
                msg
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    fn invalid_err(text: &str) -> String {
        match parse(text) {
            Err(e @ ConfigError::Invalid { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("test.yaml"), "{msg}");
                msg
            }
            other => panic!("expected an invalid-config error, got {other:?}"),
        }
    }

    fn fref(table: &str, field: &str) -> FieldRef {
        FieldRef {
            table: table.into(),
            field: field.into(),
            optional: false,
        }
    }

    #[test]
    fn full_example_parses() {
        let config = parse(FULL).unwrap();
        let expected = Config {
            repository: Some("/srv/backups/airtable".into()),
            token_file: Some(PathBuf::from("/etc/airback/airtable-token")),
            password_file: None,
            password_command: None,
            all_bases: false,
            base_concurrency: None,
            metrics_file: Some(PathBuf::from(
                "/var/lib/node_exporter/textfile/airback.prom",
            )),
            attachments: AttachmentSettings {
                download: true,
                concurrency: 8,
            },
            comments: Some(true),
            bases: vec![BaseConfig {
                id: "appXXXXXXXXXXXXXX".into(),
                name: Some("CRM".into()),
                tables: TableFilter {
                    include: vec!["Tasks".into(), "tblAAAAAAAAAAAAAA".into()],
                    exclude: vec!["Archive".into()],
                },
                exclude_fields: vec![
                    fref("Tasks", "Internal notes"),
                    fref("tblAAAAAAAAAAAAAA", "fldBBBBBBBBBBBBBB"),
                ],
                attachments: Some(AttachmentSettings {
                    download: false,
                    concurrency: 8,
                }),
                retention: Some(Retention {
                    keep_daily: Some(90),
                    ..Retention::default()
                }),
                comments: Some(false),
                schedule: Some("0 * * * *".into()),
                time_zone: Some("America/New_York".into()),
                alerts: Some(Alerts {
                    webhook: Some("https://example.com/crm".into()),
                    ..Alerts::default()
                }),
            }],
            retention: Some(Retention {
                keep_last: Some(3),
                keep_hourly: Some(24),
                keep_daily: Some(7),
                keep_weekly: Some(4),
                keep_monthly: Some(12),
                keep_yearly: Some(3),
                keep_within: Some("30d".parse().unwrap()),
                keep_tags: vec![
                    "important".parse().unwrap(),
                    "audit,q4".parse().unwrap(),
                    "".parse().unwrap(),
                ],
                time_zone: Some("Europe/Paris".into()),
                after_snapshot: true,
                prune: true,
                schedule: Some("30 4 * * 0".into()),
            }),
            copies: vec![],
            schedule: Some("15 3 * * *".into()),
            time_zone: Some("Europe/Berlin".into()),
            check: Some(CheckSchedule {
                schedule: "0 5 * * 0".into(),
                read_data_subset: Some(5),
            }),
            alerts: Alerts {
                healthchecks: Some("https://hc-ping.com/abc".into()),
                webhook: None,
                command: Some("notify-send airback".into()),
            },
        };
        assert_eq!(config, expected);
        let base = config.base("appXXXXXXXXXXXXXX").unwrap();
        assert!(!config.attachments_for(base).download);
        assert!(!config.comments_for(base));
        assert!(config.comments_for(&BaseConfig::new(BASE)));
        assert_eq!(
            config.schedule_for(base),
            Some(("0 * * * *", "America/New_York"))
        );
        assert_eq!(config.zone_for(None), "Europe/Berlin");
        assert_eq!(
            config.alerts_for(Some(base)).webhook.as_deref(),
            Some("https://example.com/crm")
        );
        assert!(config.alerts_for(None).webhook.is_none());
        assert!(config.base(BASE).is_none());
    }

    #[test]
    fn serve_keys_are_checked_when_the_file_is_read() {
        let bad = |text: &str, wanted: &[&str]| {
            let e = parse(text).unwrap_err().to_string();
            for w in wanted {
                assert!(e.contains(w), "{e} lacks {w}");
            }
        };
        bad("schedule: \"15 3 * *\"", &["`schedule`", "5 fields"]);
        bad("time_zone: Mars/Base", &["`time_zone`", "IANA"]);
        bad(
            "check: {schedule: \"0 5 * * 0\", read_data_subset: 150%}",
            &["1% to 100%"],
        );
        bad(
            "alerts: {webhook: \"ftp://x/y\"}",
            &["alerts`.webhook", "http or https"],
        );
        bad("alerts: {command: \" \"}", &["command is empty"]);
        bad(
            "bases: [{id: appXXXXXXXXXXXXXX, retention: {keep_last: 1, schedule: \"0 0 * * *\"}}]",
            &["top-level `retention`"],
        );
        bad(
            "bases: [{id: appXXXXXXXXXXXXXX, schedule: \"61 * * * *\"}]",
            &["base appXXXXXXXXXXXXXX: `schedule`"],
        );
        let c = parse("check: {schedule: \"0 5 * * 0\", read_data_subset: 10}").unwrap();
        assert_eq!(c.check.unwrap().read_data_subset, Some(10));
    }

    #[test]
    fn copies_name_a_repository_once_with_a_password_of_their_own() {
        let config = parse(&format!(
            "copies:\n  - repository: s3://offsite/a\n    password_file: /etc/pw\n    \
             bases: [{BASE}]\n  - {{repository: /mnt/usb}}\n"
        ))
        .unwrap();
        assert_eq!(
            config.copies,
            vec![
                CopyTarget {
                    repository: "s3://offsite/a".into(),
                    password_file: Some("/etc/pw".into()),
                    password_command: None,
                    bases: vec![BASE.into()],
                },
                CopyTarget {
                    repository: "/mnt/usb".into(),
                    ..CopyTarget::default()
                },
            ]
        );
        let msg = parse_err("copies:\n  - repository: /a\n    password: hunter22\n");
        assert!(
            msg.contains("line 3") && msg.contains("`password` key is not allowed"),
            "{msg}"
        );
        assert!(!msg.contains("hunter22"), "{msg}");
        let msg = parse_err("copies:\n  - password_file: /pw\n");
        assert!(msg.contains("repository"), "{msg}");
        let msg = parse_err("copies:\n  - {repository: /a, bases: [nope]}\n");
        assert!(msg.contains("not an Airtable base id"), "{msg}");
        let msg = invalid_err(
            "copies:\n  - {repository: /a, password_file: /p, password_command: cat /p}\n",
        );
        assert!(
            msg.contains("`copies` entry 1") && msg.contains("both set"),
            "{msg}"
        );
        let msg = invalid_err("copies:\n  - {repository: /a}\n  - {repository: /a}\n");
        assert!(
            msg.contains("`copies` entry 2") && msg.contains("twice"),
            "{msg}"
        );
        let msg = invalid_err("copies:\n  - {repository: ' '}\n");
        assert!(msg.contains("`repository` is empty"), "{msg}");
    }

    #[test]
    fn module_doc_example_parses() {
        let doc = include_str!("config.rs");
        let start = doc.find("//! ```yaml\n").unwrap() + "//! ```yaml\n".len();
        let end = start + doc[start..].find("//! ```\n").unwrap();
        let yaml: String = doc[start..end]
            .lines()
            .map(|l| l.strip_prefix("//! ").or(l.strip_prefix("//!")).unwrap())
            .map(|l| format!("{l}\n"))
            .collect();
        let config = parse(&yaml).unwrap();
        assert_eq!(
            config.bases[0].exclude_fields[2],
            fref("Sales.EU", "Margin")
        );
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = parse(&format!("bases: [{{id: {BASE}}}]")).unwrap();
        let mut expected = Config::default();
        expected.bases.push(BaseConfig::new(BASE));
        assert_eq!(config, expected);
        assert_eq!(
            config.attachments,
            AttachmentSettings {
                download: true,
                concurrency: 8
            }
        );
        assert_eq!(config.attachments_for(&config.bases[0]), config.attachments);
    }

    #[test]
    fn all_bases_without_list_is_fine() {
        let config = parse("all_bases: true\n").unwrap();
        assert!(config.all_bases);
        assert!(config.bases.is_empty());
    }

    #[test]
    fn unknown_top_level_key_names_key_and_line() {
        let msg = parse_err(&format!("bases: [{{id: {BASE}}}]\nrepo: /x\n"));
        assert!(msg.contains("`repo`"), "{msg}");
        assert!(msg.contains("line 2,"), "{msg}");
    }

    #[test]
    fn unknown_key_hint_does_not_offer_token() {
        let msg = parse_err(&format!("bases: [{{id: {BASE}}}]\nrepo: /x\n"));
        assert!(msg.contains("`repository`"), "{msg}");
        assert!(!msg.contains("`token`"), "{msg}");
    }

    #[test]
    fn document_that_is_not_a_map() {
        let msg = parse_err("- appABCDEFGHIJ1234\n");
        assert!(
            msg.contains("a map of settings") && msg.contains("line 1,"),
            "{msg}"
        );
        assert!(!msg.contains("Raw"), "{msg}");
        let msg = parse_err("bases:\n  - appABCDEFGHIJ1234\n");
        assert!(msg.contains("a base: a map with at least `id`"), "{msg}");
        assert!(msg.contains("line 2,"), "{msg}");
    }

    #[test]
    fn unknown_key_in_first_line_still_has_line() {
        let msg = parse_err("nope: 1\n");
        assert!(msg.contains("`nope`") && msg.contains("line 1,"), "{msg}");
    }

    #[test]
    fn unknown_key_in_base_names_key_and_line() {
        let text = format!("bases:\n  - id: {BASE}\n    name: CRM\n    tabels: {{}}\n");
        let msg = parse_err(&text);
        assert!(msg.contains("`tabels`"), "{msg}");
        assert!(msg.contains("line 4,"), "{msg}");
        assert!(msg.contains("bases[0]"), "{msg}");
    }

    #[test]
    fn unknown_key_in_nested_maps() {
        let text = format!(
            "bases:\n  - id: {BASE}\n    tables:\n      inclde: [A]\n    attachments:\n      downlod: true\n"
        );
        let msg = parse_err(&text);
        assert!(msg.contains("`inclde`") && msg.contains("line 4,"), "{msg}");
        let text = format!("bases:\n  - id: {BASE}\n    attachments:\n      downlod: true\n");
        let msg = parse_err(&text);
        assert!(
            msg.contains("`downlod`") && msg.contains("line 4,"),
            "{msg}"
        );
        let msg = parse_err(&format!(
            "bases: [{{id: {BASE}}}]\nretention:\n  keep_hurly: 1\n"
        ));
        assert!(
            msg.contains("`keep_hurly`") && msg.contains("line 3,"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_type_has_line() {
        let text = format!("bases: [{{id: {BASE}}}]\nattachments:\n  concurrency: many\n");
        let msg = parse_err(&text);
        assert!(msg.contains("line 3,"), "{msg}");
        assert!(msg.contains("1 to 64"), "{msg}");
        let msg = parse_err(&format!("all_bases: yes please\nbases: [{{id: {BASE}}}]\n"));
        assert!(msg.contains("line 1,"), "{msg}");
        let msg = parse_err("bases: appABCDEFGHIJ1234\n");
        assert!(msg.contains("line 1,"), "{msg}");
    }

    #[test]
    fn base_concurrency_range() {
        for (value, ok) in [
            ("0", false),
            ("1", true),
            ("50", true),
            ("51", false),
            ("-1", false),
        ] {
            match parse(&format!("all_bases: true\nbase_concurrency: {value}\n")) {
                Ok(c) => {
                    assert!(ok, "{value} accepted");
                    assert_eq!(c.base_concurrency.unwrap().to_string(), value);
                }
                Err(e) => {
                    assert!(!ok, "{value} rejected: {e}");
                    let msg = e.to_string();
                    assert!(msg.contains("line 2,") && msg.contains("1 to 50"), "{msg}");
                }
            }
        }
        assert_eq!(parse("all_bases: true\n").unwrap().base_concurrency, None);
    }

    #[test]
    fn concurrency_range() {
        for (value, ok) in [
            ("0", false),
            ("1", true),
            ("64", true),
            ("65", false),
            ("-3", false),
        ] {
            let text = format!("bases: [{{id: {BASE}}}]\nattachments:\n  concurrency: {value}\n");
            match parse(&text) {
                Ok(c) => {
                    assert!(ok, "{value} accepted");
                    assert_eq!(c.attachments.concurrency.to_string(), value);
                }
                Err(e) => {
                    assert!(!ok, "{value} rejected: {e}");
                    let msg = e.to_string();
                    assert!(msg.contains("line 3,") && msg.contains("1 to 64"), "{msg}");
                }
            }
        }
    }

    #[test]
    fn retention_must_be_non_negative_and_keep_something() {
        let msg = parse_err(&format!(
            "bases: [{{id: {BASE}}}]\nretention:\n  keep_last: 2\n  keep_daily: -1\n"
        ));
        assert!(
            msg.contains("line 4,") && msg.contains("0 or more"),
            "{msg}"
        );
        let msg = parse_err(&format!(
            "bases: [{{id: {BASE}}}]\nretention:\n  keep_daily: 1.5\n"
        ));
        assert!(
            msg.contains("line 3,") && msg.contains("whole number"),
            "{msg}"
        );
        let msg = invalid_err(&format!(
            "bases: [{{id: {BASE}}}]\nretention: {{keep_last: 0}}\n"
        ));
        assert!(msg.contains("keep no snapshots"), "{msg}");
        let msg = invalid_err(&format!("bases: [{{id: {BASE}}}]\nretention: {{}}\n"));
        assert!(msg.contains("keep no snapshots"), "{msg}");
        let config = parse(&format!("bases: [{{id: {BASE}}}]\nretention:\n")).unwrap();
        assert_eq!(config.retention, None);
        let config = parse(&format!(
            "bases: [{{id: {BASE}}}]\nretention: {{keep_within: 2d12h}}\n"
        ))
        .unwrap();
        assert!(config.retention.unwrap().keeps_anything());
        let msg = parse_err(&format!(
            "bases: [{{id: {BASE}}}]\nretention:\n  keep_within: 2w\n"
        ));
        assert!(msg.contains("line 3,") && msg.contains("2w"), "{msg}");
        let msg = invalid_err(&format!(
            "bases: [{{id: {BASE}, retention: {{keep_last: 1, time_zone: UTC}}}}]\n"
        ));
        assert!(msg.contains("top-level"), "{msg}");
        let msg = invalid_err(&format!(
            "bases: [{{id: {BASE}}}]\nretention: {{keep_last: 1, prune: true}}\n"
        ));
        assert!(msg.contains("needs `after_snapshot: true`"), "{msg}");
        let msg = invalid_err(&format!(
            "bases: [{{id: {BASE}, retention: {{keep_daily: 0}}}}]\n"
        ));
        assert!(
            msg.contains(&format!("base {BASE}: `retention` would keep no")),
            "{msg}"
        );
    }

    #[test]
    fn token_key_is_rejected_with_advice() {
        for value in ["patXYZ.secret", "", "{a: 1}"] {
            let text = format!("bases: [{{id: {BASE}}}]\ntoken: {value}\n");
            let msg = parse_err(&text);
            assert!(msg.contains("`token` key is not allowed"), "{msg}");
            assert!(
                msg.contains("token_file") && msg.contains("AIRTABLE_TOKEN"),
                "{msg}"
            );
            assert!(msg.contains("line 2,"), "{msg}");
            assert!(
                !msg.contains("patXYZ"),
                "the secret must not be echoed: {msg}"
            );
        }
    }

    #[test]
    fn bad_base_id() {
        for id in [
            "appABC",
            "tblABCDEFGHIJ1234",
            "appABCDEFGHIJ12345",
            "appABCDEFGHIJ-234",
            "appABCDEFGHIJ123é",
        ] {
            let msg = parse_err(&format!("all_bases: true\nbases:\n  - id: \"{id}\"\n"));
            assert!(msg.contains("not an Airtable base id"), "{msg}");
            assert!(msg.contains("line 3,"), "{msg}");
        }
        let msg = parse_err("bases:\n  - name: CRM\n");
        assert!(msg.contains("missing field `id`"), "{msg}");
        assert!(msg.contains("line 2,"), "{msg}");
    }

    #[test]
    fn duplicate_base_id() {
        let text = format!("bases:\n  - id: {BASE}\n  - id: {BASE2}\n  - id: {BASE}\n");
        let msg = invalid_err(&text);
        assert!(msg.contains(BASE) && msg.contains("listed twice"), "{msg}");
        assert!(msg.contains("entries 1 and 3"), "{msg}");
    }

    #[test]
    fn a_file_without_bases_parses_for_commands_other_than_snapshot() {
        // `snapshot` says there is nothing to back up (cli/snapshot.rs); `init`, `check` and
        // the others only want `repository` and the password from it.
        for text in [
            "",
            "# nothing\n",
            "bases: []\n",
            "bases:\n",
            "all_bases: false\n",
        ] {
            let config = parse(text).unwrap();
            assert!(config.bases.is_empty() && !config.all_bases, "{text:?}");
        }
        let config = parse("repository: /srv/r\npassword_file: /etc/airback/pw\n").unwrap();
        assert_eq!(config.repository.as_deref(), Some("/srv/r"));
        assert_eq!(
            config.password_file.as_deref(),
            Some(Path::new("/etc/airback/pw"))
        );
    }

    #[test]
    fn password_keys_parse_and_their_errors_say_what_to_do() {
        let config = parse("password_command: pass show airback\n").unwrap();
        assert_eq!(
            config.password_command.as_deref(),
            Some("pass show airback")
        );
        assert_eq!(config.password_file, None);
        let msg = invalid_err("password_file: /a\npassword_command: cat /b\n");
        assert!(
            msg.contains("`password_file` and `password_command` are both set"),
            "{msg}"
        );
        let msg = invalid_err("password_file: ''\n");
        assert!(msg.contains("`password_file` is empty"), "{msg}");
        let msg = invalid_err("password_command: '  '\n");
        assert!(msg.contains("`password_command` is empty"), "{msg}");
    }

    #[test]
    fn password_key_is_rejected_with_advice() {
        for value in ["hunter2-secret", "", "{a: 1}", "[x]"] {
            let text = format!("repository: /r\npassword: {value}\n");
            let msg = parse_err(&text);
            assert!(msg.contains("`password` key is not allowed"), "{msg}");
            assert!(
                msg.contains("password_file") && msg.contains("password_command"),
                "{msg}"
            );
            assert!(msg.contains("line 2,"), "{msg}");
            assert!(
                !msg.contains("hunter2"),
                "the secret must not be echoed: {msg}"
            );
        }
        // Both forbidden keys: the first in the file is named.
        let msg = parse_err("token: x\npassword: y\n");
        assert!(msg.contains("`token` key is not allowed"), "{msg}");
    }

    #[test]
    fn empty_strings_are_rejected() {
        let msg = invalid_err(&format!("repository: ''\nbases: [{{id: {BASE}}}]\n"));
        assert!(msg.contains("`repository` is empty"), "{msg}");
        let msg = invalid_err(&format!("token_file: ''\nbases: [{{id: {BASE}}}]\n"));
        assert!(msg.contains("`token_file` is empty"), "{msg}");
        let msg = invalid_err(&format!(
            "bases: [{{id: {BASE}, tables: {{exclude: ['']}}}}]\n"
        ));
        assert!(msg.contains("tables.exclude"), "{msg}");
    }

    #[test]
    fn field_ref_string_forms() {
        assert_eq!(FieldRef::parse("Tasks.Notes"), Some(fref("Tasks", "Notes")));
        // A table name with a dot: split at the last dot.
        assert_eq!(
            FieldRef::parse("Sales.EU.Margin"),
            Some(fref("Sales.EU", "Margin"))
        );
        // A table id first: split right after it, the field name keeps its dots.
        assert_eq!(
            FieldRef::parse("tblAAAAAAAAAAAAAA.v1.2 notes"),
            Some(fref("tblAAAAAAAAAAAAAA", "v1.2 notes"))
        );
        // Something shaped almost like a table id is a name.
        assert_eq!(
            FieldRef::parse("tblAAAAAAAAAAAAA.x.y"),
            Some(fref("tblAAAAAAAAAAAAA.x", "y"))
        );
        for bad in ["Tasks", "", ".Notes", "Tasks.", "tblAAAAAAAAAAAAAA."] {
            assert_eq!(FieldRef::parse(bad), None, "{bad:?}");
        }
        assert_eq!(fref("Sales.EU", "Margin").to_string(), "Sales.EU.Margin");
    }

    #[test]
    fn exclude_fields_in_yaml() {
        let text = format!(
            "bases:\n  - id: {BASE}\n    exclude_fields:\n      - Sales.EU.Margin\n      - {{table: Sales, field: EU.Margin}}\n      - tblAAAAAAAAAAAAAA.fldBBBBBBBBBBBBBB\n"
        );
        let config = parse(&text).unwrap();
        assert_eq!(
            config.bases[0].exclude_fields,
            vec![
                fref("Sales.EU", "Margin"),
                fref("Sales", "EU.Margin"),
                fref("tblAAAAAAAAAAAAAA", "fldBBBBBBBBBBBBBB"),
            ]
        );

        let msg = parse_err(&format!(
            "bases:\n  - id: {BASE}\n    exclude_fields:\n      - Tasks.Notes\n      - Notes\n"
        ));
        assert!(msg.contains("`Notes` does not name a field"), "{msg}");
        assert!(msg.contains("line 5,"), "{msg}");

        let msg = parse_err(&format!(
            "bases:\n  - id: {BASE}\n    exclude_fields:\n      - {{table: Tasks, fild: Notes}}\n"
        ));
        assert!(msg.contains("`fild`") && msg.contains("line 4,"), "{msg}");

        let msg = parse_err(&format!(
            "bases:\n  - id: {BASE}\n    exclude_fields:\n      - {{table: Tasks, field: ''}}\n"
        ));
        assert!(
            msg.contains("non-empty") && msg.contains("line 4,"),
            "{msg}"
        );
    }

    #[test]
    fn field_ref_matches_by_name_or_id() {
        let by_name = fref("Tasks", "Notes");
        assert!(by_name.matches("tbl1", "Tasks", "fld1", "Notes"));
        assert!(!by_name.matches("tbl1", "Tasks", "fld1", "notes"));
        assert!(!by_name.matches("tbl1", "Projects", "fld1", "Notes"));
        let by_id = fref("tbl1", "fld1");
        assert!(by_id.matches("tbl1", "Tasks", "fld1", "Notes"));
        assert!(!by_id.matches("tbl2", "Tasks", "fld1", "Notes"));
        let mixed = fref("tbl1", "Notes");
        assert!(mixed.matches("tbl1", "Tasks", "fld9", "Notes"));

        let mut base = BaseConfig::new(BASE);
        base.exclude_fields = vec![by_name];
        assert!(base.excludes_field("tbl1", "Tasks", "fld1", "Notes"));
        assert!(!base.excludes_field("tbl1", "Tasks", "fld2", "Title"));
    }

    #[test]
    fn table_filter_allows() {
        let all = TableFilter::default();
        assert!(all.allows("tbl1", "Tasks"));

        let include = TableFilter {
            include: vec!["Tasks".into(), "tbl2".into()],
            exclude: vec![],
        };
        assert!(include.allows("tbl1", "Tasks"));
        assert!(include.allows("tbl2", "Projects"));
        assert!(!include.allows("tbl3", "Archive"));
        assert!(!include.allows("tbl1", "tasks"), "names are exact");

        let exclude = TableFilter {
            include: vec![],
            exclude: vec!["Archive".into(), "tbl4".into()],
        };
        assert!(exclude.allows("tbl1", "Tasks"));
        assert!(!exclude.allows("tbl3", "Archive"));
        assert!(!exclude.allows("tbl4", "Old"));

        let both = TableFilter {
            include: vec!["Tasks".into(), "Archive".into()],
            exclude: vec!["tbl3".into()],
        };
        assert!(both.allows("tbl1", "Tasks"));
        assert!(!both.allows("tbl3", "Archive"), "exclude wins");
    }

    #[test]
    fn filter_entries_are_strings_or_maps_that_may_be_optional() {
        let text = format!(
            "bases:\n  - id: {BASE}\n    tables:\n      include: [Tasks, {{table: Old, optional: true}}, 2024]\n      exclude:\n        - {{table: tblAAAAAAAAAAAAAA}}\n    exclude_fields:\n      - Tasks.Notes\n      - {{table: Tasks, field: Gone, optional: true}}\n"
        );
        let config = parse(&text).unwrap();
        let base = &config.bases[0];
        let old = TableRef {
            table: "Old".into(),
            optional: true,
        };
        // A plain scalar YAML reads as a number is still a table name, as before.
        assert_eq!(
            base.tables.include,
            vec!["Tasks".into(), old, "2024".into()]
        );
        assert_eq!(base.tables.exclude, vec!["tblAAAAAAAAAAAAAA".into()]);
        let mut gone = fref("Tasks", "Gone");
        gone.optional = true;
        assert_eq!(base.exclude_fields, vec![fref("Tasks", "Notes"), gone]);

        let msg = parse_err(&format!(
            "bases:\n  - id: {BASE}\n    tables:\n      include:\n        - {{table: Old, optinal: true}}\n"
        ));
        assert!(
            msg.contains("`optinal`") && msg.contains("line 5,"),
            "{msg}"
        );
        let msg = parse_err(&format!(
            "bases:\n  - id: {BASE}\n    tables:\n      include:\n        - {{optional: true}}\n"
        ));
        assert!(msg.contains("missing field `table`"), "{msg}");
        let msg = parse_err(&format!(
            "bases:\n  - id: {BASE}\n    exclude_fields:\n      - {{table: T, field: F, optional: maybe}}\n"
        ));
        assert!(msg.contains("line 4,"), "{msg}");
        let msg = invalid_err(&format!(
            "bases: [{{id: {BASE}, tables: {{include: [{{table: ' ', optional: true}}]}}}}]\n"
        ));
        assert!(msg.contains("tables.include"), "{msg}");
    }

    #[test]
    fn attachments_shorthand_and_override_inherit_defaults() {
        let text = format!(
            "attachments:\n  download: false\n  concurrency: 4\nbases:\n  - id: {BASE}\n    attachments: true\n  - id: {BASE2}\n    attachments:\n      concurrency: 16\n  - id: appCCCCCCCCCCCCCC\n"
        );
        let config = parse(&text).unwrap();
        let top = AttachmentSettings {
            download: false,
            concurrency: 4,
        };
        assert_eq!(config.attachments, top);
        let [a, b, c] = &config.bases[..] else {
            panic!("three bases")
        };
        let expect_a = AttachmentSettings {
            download: true,
            concurrency: 4,
        };
        let expect_b = AttachmentSettings {
            download: false,
            concurrency: 16,
        };
        assert_eq!(a.attachments, Some(expect_a));
        assert_eq!(b.attachments, Some(expect_b));
        assert_eq!(c.attachments, None);
        assert_eq!(config.attachments_for(a), expect_a);
        assert_eq!(config.attachments_for(b), expect_b);
        assert_eq!(config.attachments_for(c), top);

        // Top-level partial map and bool shorthand fill from the built-in defaults.
        let config = parse(&format!(
            "attachments: {{concurrency: 2}}\nbases: [{{id: {BASE}}}]\n"
        ))
        .unwrap();
        assert_eq!(
            config.attachments,
            AttachmentSettings {
                download: true,
                concurrency: 2
            }
        );
        let config = parse(&format!("attachments: false\nbases: [{{id: {BASE}}}]\n")).unwrap();
        assert_eq!(
            config.attachments,
            AttachmentSettings {
                download: false,
                concurrency: 8
            }
        );

        let msg = parse_err(&format!(
            "bases:\n  - id: {BASE}\n    attachments: sometimes\n"
        ));
        assert!(msg.contains("line 3,"), "{msg}");
    }

    #[test]
    fn yaml_syntax_error_has_line() {
        let msg = parse_err(&format!("bases:\n  - id: {BASE}\n   name: [unclosed\n"));
        assert!(msg.contains("line "), "{msg}");
        let msg = parse_err("all_bases: true\nbases: [\n");
        assert!(msg.contains("line "), "{msg}");
    }

    #[test]
    fn from_path_reads_file_and_names_path_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-airback.yaml");
        let err = Config::from_path(&missing).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );

        let path = dir.path().join("airback.yaml");
        std::fs::write(&path, FULL).unwrap();
        assert_eq!(Config::from_path(&path).unwrap(), parse(FULL).unwrap());

        std::fs::write(&path, "all_bases: true\nfoo: 1\n").unwrap();
        let msg = Config::from_path(&path).unwrap_err().to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("line 2,"), "{msg}");
    }
}
