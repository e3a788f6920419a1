//! Retention policies: which snapshots of one group a `forget` keeps, and why. This module is
//! pure (no I/O, no clock): [`apply`] takes the group's [`Candidate`]s, a [`Policy`], the time
//! to treat as "now" and the time zone of the period keys, and returns one [`Decision`] per
//! candidate. The rules are restic's `ApplyPolicy` (restic `internal/data/snapshot_policy.go`),
//! with its reason strings and counters, so restic's golden files
//! (`tests/fixtures/restic-policy/`) check this module directly. Two things are airback's own:
//! partial snapshots never use up a count (see [`apply`]), and period keys are computed in a
//! time zone the caller chooses (UTC by default in `forget`) rather than in the offset each
//! snapshot was taken in. Grouping snapshots, refusing an empty policy and refusing to empty a
//! group are the caller's job: [`Policy::is_empty`] and [`Decision::keep`] give it what it needs.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::Serialize;

/// The reason given to a partial snapshot kept because no complete snapshot of its group is
/// newer (airback's rule; restic has no partial snapshots).
pub const PARTIAL_REASON: &str = "partial, newer than every complete snapshot";

/// How many periods a count rule (`--keep-daily N` and the like) keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The newest snapshot of each of the newest `n` periods that have a snapshot.
    Count(NonZeroU32),
    /// The newest snapshot of every period (`unlimited`).
    Unlimited,
}

impl Keep {
    /// The count as restic's counters show it: `n`, or -1 for [`Keep::Unlimited`].
    fn counter(self) -> i64 {
        match self {
            Keep::Count(n) => i64::from(n.get()),
            Keep::Unlimited => -1,
        }
    }
}

impl FromStr for Keep {
    type Err = ParseError;

    /// A positive whole number, or `unlimited` (restic's spelling).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "unlimited" {
            return Ok(Keep::Unlimited);
        }
        let digits = s.strip_prefix('+').unwrap_or(s);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return match digits.parse::<u32>() {
                Ok(n) => NonZeroU32::new(n)
                    .map(Keep::Count)
                    .ok_or_else(|| ParseError::KeepZero(s.to_owned())),
                Err(_) => Err(ParseError::KeepTooLarge(s.to_owned())),
            };
        }
        if let Some(digits) = s.strip_prefix('-')
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ParseError::KeepNegative(s.to_owned()));
        }
        Err(ParseError::KeepInvalid(s.to_owned()))
    }
}

impl fmt::Display for Keep {
    /// `n`, or `unlimited`: what `from_str` reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::Count(n) => write!(f, "{n}"),
            Keep::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// A calendar duration in restic's `[Ny][Nm][Nd][Nh]` form (`m` is months), as `--keep-within`
/// takes it. It is subtracted from the newest snapshot's time as Go's
/// `AddDate(-years, -months, -days)` then `-hours` hours: days overflow rather than clamp, so
/// 31 March minus 1 month is 3 March (2 March in a leap year).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CalendarDuration {
    /// Years (`y`).
    pub years: i32,
    /// Months (`m`).
    pub months: i32,
    /// Days (`d`).
    pub days: i32,
    /// Hours (`h`).
    pub hours: i32,
}

impl CalendarDuration {
    /// Whether every field is 0. A zero duration keeps nothing, so a rule holding one counts as
    /// absent (as in restic).
    pub fn is_zero(&self) -> bool {
        self.years == 0 && self.months == 0 && self.days == 0 && self.hours == 0
    }
}

impl FromStr for CalendarDuration {
    type Err = ParseError;

    /// restic's syntax: numbers each followed by a unit `y`, `m` (months), `d` or `h`, in any
    /// order, each unit at most once (`1y2m3d4h`, `7d`, `36h`). Weeks, minutes, seconds,
    /// negative numbers and a zero total are refused with a message that says what to write.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let err_input = || s.to_owned();
        if s.is_empty() {
            return Err(ParseError::DurationEmpty);
        }
        let mut d = CalendarDuration::default();
        let mut seen = [false; 4];
        let mut rest = s;
        while !rest.is_empty() {
            if rest.starts_with('-') {
                return Err(ParseError::DurationNegative(err_input()));
            }
            let digits_end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits_end == 0 {
                return Err(ParseError::DurationNoNumber {
                    input: err_input(),
                    at: rest.to_owned(),
                });
            }
            let (digits, after) = rest.split_at(digits_end);
            let unit_end = after
                .find(|c: char| !c.is_alphabetic())
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_end);
            let number: i32 = digits
                .parse()
                .map_err(|_| ParseError::DurationTooLarge(err_input()))?;
            let slot = match unit {
                "y" => 0,
                "m" => 1,
                "d" => 2,
                "h" => 3,
                "" => {
                    return Err(ParseError::DurationNoUnit {
                        input: err_input(),
                        number: digits.to_owned(),
                    });
                }
                "w" => {
                    return Err(ParseError::DurationWeeks {
                        input: err_input(),
                        days: i64::from(number) * 7,
                    });
                }
                "min" | "mins" | "minute" | "minutes" | "M" | "s" | "sec" | "secs" | "second"
                | "seconds" => {
                    return Err(ParseError::DurationTooFine {
                        input: err_input(),
                        unit: unit.to_owned(),
                    });
                }
                _ => {
                    return Err(ParseError::DurationUnknownUnit {
                        input: err_input(),
                        unit: unit.to_owned(),
                    });
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(ParseError::DurationRepeatedUnit {
                    input: err_input(),
                    unit: unit.to_owned(),
                });
            }
            match slot {
                0 => d.years = number,
                1 => d.months = number,
                2 => d.days = number,
                _ => d.hours = number,
            }
            rest = after;
        }
        if d.is_zero() {
            return Err(ParseError::DurationZero(err_input()));
        }
        Ok(d)
    }
}

impl fmt::Display for CalendarDuration {
    /// restic's form: the non-zero fields in the order `y`, `m`, `d`, `h` (`1y2m3d3h`); `0h`
    /// for the zero duration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// One `--keep-tag` value: the tags a snapshot must all have. The single empty tag (from the
/// string `""`) matches untagged snapshots only, as in restic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagList(pub Vec<String>);

impl TagList {
    /// Whether a snapshot with `tags` matches: it has every tag of the list, or the list is
    /// `[""]` and the snapshot has no tag (restic's `HasTags`; an empty list matches all).
    pub fn matches(&self, tags: &[String]) -> bool {
        for tag in &self.0 {
            if tag.is_empty() && tags.is_empty() {
                return true;
            }
            if !tags.contains(tag) {
                return false;
            }
        }
        true
    }
}

impl FromStr for TagList {
    type Err = ParseError;

    /// Tags separated by commas, each trimmed (`a,b`); `""` alone gives the list that matches
    /// untagged snapshots. An empty tag beside others (`a,,b`, `a,`) is refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let tags: Vec<String> = s.split(',').map(|t| t.trim().to_owned()).collect();
        if tags.len() > 1 && tags.iter().any(String::is_empty) {
            return Err(ParseError::TagListEmptyTag(s.to_owned()));
        }
        Ok(TagList(tags))
    }
}

impl fmt::Display for TagList {
    /// restic's form, used in reasons and in [`Policy::describe`]: `[a, b]`, `[]` for untagged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0.join(", "))
    }
}

/// A text that is not a keep count, a duration or a tag list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A count of 0.
    #[error(
        "keep count {0} keeps nothing: give a positive number or `unlimited`, or leave the rule out"
    )]
    KeepZero(String),
    /// A negative count.
    #[error("keep count {0} is negative: give a positive number, or `unlimited` to keep all")]
    KeepNegative(String),
    /// A count above 4294967295.
    #[error("keep count {0} is too large: give `unlimited` to keep all")]
    KeepTooLarge(String),
    /// Not a number.
    #[error("keep count `{0}` is not a number: give a positive number such as 7, or `unlimited`")]
    KeepInvalid(String),
    /// An empty duration.
    #[error(
        "the duration is empty: give a number and a unit, such as 7d or 1y6m \
         (units y, m for months, d, h)"
    )]
    DurationEmpty,
    /// A number without its unit.
    #[error(
        "duration `{input}`: the number {number} has no unit: write for example {number}d \
         (units y, m for months, d, h)"
    )]
    DurationNoUnit {
        /// The text given.
        input: String,
        /// The number without a unit.
        number: String,
    },
    /// Something other than a number where a number must be.
    #[error(
        "duration `{input}`: expected a number at `{at}`: write a number before each unit, \
         with no spaces, as in 1y2m3d4h"
    )]
    DurationNoNumber {
        /// The text given.
        input: String,
        /// The rest of the text, from where a number was expected.
        at: String,
    },
    /// Weeks.
    #[error("duration `{input}`: weeks are not a unit: write {days}d instead")]
    DurationWeeks {
        /// The text given.
        input: String,
        /// The weeks given, in days.
        days: i64,
    },
    /// Minutes or seconds.
    #[error(
        "duration `{input}`: `{unit}` is not supported: the smallest unit is h (hours), \
         and m means months"
    )]
    DurationTooFine {
        /// The text given.
        input: String,
        /// The unit refused.
        unit: String,
    },
    /// Any other unit.
    #[error("duration `{input}`: unknown unit `{unit}`: use y, m (months), d or h, as in 1y2m3d4h")]
    DurationUnknownUnit {
        /// The text given.
        input: String,
        /// The unit refused.
        unit: String,
    },
    /// A unit given twice.
    #[error(
        "duration `{input}` gives the unit {unit} twice: give each of y, m, d and h at most once, \
         as in 1y2m"
    )]
    DurationRepeatedUnit {
        /// The text given.
        input: String,
        /// The repeated unit.
        unit: String,
    },
    /// A negative number.
    #[error("duration `{0}` is negative: give a positive duration such as 7d")]
    DurationNegative(String),
    /// A number above 2147483647.
    #[error("duration `{0}` has a number too large: 9999y already keeps everything")]
    DurationTooLarge(String),
    /// Every number 0.
    #[error("duration `{0}` is zero and keeps nothing: give at least 1h, or leave the rule out")]
    DurationZero(String),
    /// An empty tag beside others.
    #[error(
        "tag list `{0}` has an empty tag: separate tags with single commas, as in a,b, \
         or give '' alone to match untagged snapshots"
    )]
    TagListEmptyTag(String),
}

/// The keep rules of one `forget` (restic's `ExpirePolicy`). A snapshot kept by any rule stays.
/// `Default` is the empty policy, which keeps nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `--keep-last`: the newest snapshots.
    pub last: Option<Keep>,
    /// `--keep-hourly`: the newest snapshot of each hour.
    pub hourly: Option<Keep>,
    /// `--keep-daily`: the newest snapshot of each day.
    pub daily: Option<Keep>,
    /// `--keep-weekly`: the newest snapshot of each ISO 8601 week.
    pub weekly: Option<Keep>,
    /// `--keep-monthly`: the newest snapshot of each month.
    pub monthly: Option<Keep>,
    /// `--keep-yearly`: the newest snapshot of each year.
    pub yearly: Option<Keep>,
    /// `--keep-within`: every snapshot after the newest one minus this.
    pub within: Option<CalendarDuration>,
    /// restic's `--keep-within-hourly` (not on airback's command line): the newest snapshot of
    /// each hour, among those after the newest one minus this.
    pub within_hourly: Option<CalendarDuration>,
    /// restic's `--keep-within-daily`, as [`Policy::within_hourly`] with days.
    pub within_daily: Option<CalendarDuration>,
    /// restic's `--keep-within-weekly`, as [`Policy::within_hourly`] with ISO weeks.
    pub within_weekly: Option<CalendarDuration>,
    /// restic's `--keep-within-monthly`, as [`Policy::within_hourly`] with months.
    pub within_monthly: Option<CalendarDuration>,
    /// restic's `--keep-within-yearly`, as [`Policy::within_hourly`] with years.
    pub within_yearly: Option<CalendarDuration>,
    /// `--keep-tag`, once per list: every snapshot that matches one of the lists.
    pub tags: Vec<TagList>,
}

/// A duration that is set and not zero (restic's `!d.Zero()`).
fn set(d: Option<CalendarDuration>) -> Option<CalendarDuration> {
    d.filter(|d| !d.is_zero())
}

impl Policy {
    /// Whether the policy has no rule, so that [`apply`] would keep nothing but partial
    /// snapshots; `forget` refuses such a policy. Zero durations count as no rule.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(k, _)| k.is_none())
            && self.within_rules().iter().all(|(d, _)| set(*d).is_none())
            && set(self.within).is_none()
            && self.tags.is_empty()
    }

    /// The policy in words, as restic's `ExpirePolicy.String()` puts it:
    /// `keep 5 daily snapshots`, `keep 2 latest, all monthly snapshots, daily snapshots within
    /// 7d and all snapshots with tags [[foo, bar] [baz]] and all snapshots within 1y of the
    /// newest`, or `remove` for the empty policy.
    pub fn describe(&self) -> String {
        let keeps: Vec<String> = self
            .counts()
            .iter()
            .filter_map(|&(keep, word)| match keep? {
                Keep::Count(n) => Some(format!("{n} {word}")),
                Keep::Unlimited => Some(format!("all {word}")),
            })
            .collect();
        let keepw: Vec<String> = self
            .within_rules()
            .iter()
            .filter_map(|&(d, word)| Some(format!("{word} snapshots within {}", set(d)?)))
            .collect();
        let mut s = String::new();
        if !keeps.is_empty() {
            s = format!("{} snapshots", keeps.join(", "));
        }
        if !keepw.is_empty() {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&keepw.join(", "));
        }
        if !self.tags.is_empty() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            let lists: Vec<String> = self.tags.iter().map(TagList::to_string).collect();
            s.push_str(&format!("all snapshots with tags [{}]", lists.join(" ")));
        }
        if let Some(d) = set(self.within) {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            s.push_str(&format!("all snapshots within {d} of the newest"));
        }
        if s.is_empty() {
            "remove".to_owned()
        } else {
            format!("keep {s}")
        }
    }

    /// The count rules in restic's order, with the word `describe` uses.
    fn counts(&self) -> [(Option<Keep>, &'static str); 6] {
        [
            (self.last, "latest"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ]
    }

    /// The within-period rules in restic's order, with their period's word.
    fn within_rules(&self) -> [(Option<CalendarDuration>, &'static str); 5] {
        [
            (self.within_hourly, "hourly"),
            (self.within_daily, "daily"),
            (self.within_weekly, "weekly"),
            (self.within_monthly, "monthly"),
            (self.within_yearly, "yearly"),
        ]
    }
}

/// One snapshot of the group, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// When the snapshot was taken.
    pub time: Timestamp,
    /// Its tags.
    pub tags: Vec<String>,
    /// Whether it is partial (some content could not be read; `Snapshot::partial`).
    pub partial: bool,
}

/// What is left of each count rule after a snapshot was evaluated (restic's `counters`): the
/// count still to keep, -1 for `unlimited`, 0 when the rule is used up or absent. Serialized
/// as restic does, with the zero fields left out (`{"daily": 2, "monthly": -1}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// `--keep-last`.
    #[serde(skip_serializing_if = "is_zero")]
    pub last: i64,
    /// `--keep-hourly`.
    #[serde(skip_serializing_if = "is_zero")]
    pub hourly: i64,
    /// `--keep-daily`.
    #[serde(skip_serializing_if = "is_zero")]
    pub daily: i64,
    /// `--keep-weekly`.
    #[serde(skip_serializing_if = "is_zero")]
    pub weekly: i64,
    /// `--keep-monthly`.
    #[serde(skip_serializing_if = "is_zero")]
    pub monthly: i64,
    /// `--keep-yearly`.
    #[serde(skip_serializing_if = "is_zero")]
    pub yearly: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The verdict on one candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Whether some rule keeps it. A caller that finds `false` for every candidate of a group
    /// has a policy that would empty the group.
    pub keep: bool,
    /// Every rule that keeps it, in restic's order (tags, `within`, the count rules, the
    /// within-period rules), then [`PARTIAL_REASON`]; restic's strings: `last snapshot`,
    /// `daily snapshot`, `oldest daily snapshot`, `within 1d`, `hourly within 1d`,
    /// `has tags [foo, bar]`. Empty when it is not kept.
    pub reasons: Vec<String>,
    /// The count rules' counters after this candidate was evaluated (also for one not kept).
    pub counters: Counters,
}

/// A calendar period, and how its key is computed from a civil time (restic's `ymdh`, `ymd`,
/// `yw`, `ym` and `y`).
#[derive(Debug, Clone, Copy)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    const ALL: [Period; 5] = [
        Period::Hour,
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Year,
    ];

    fn key(self, t: DateTime) -> i64 {
        let (y, m, d, h) = (
            i64::from(t.year()),
            i64::from(t.month()),
            i64::from(t.day()),
            i64::from(t.hour()),
        );
        match self {
            Period::Hour => y * 1_000_000 + m * 10_000 + d * 100 + h,
            Period::Day => y * 10_000 + m * 100 + d,
            Period::Week => {
                let week = t.date().iso_week_date();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Period::Month => y * 100 + m,
            Period::Year => y,
        }
    }
}

/// A rule that keeps the newest snapshot of each period (restic's buckets).
struct Bucket {
    /// For count rules: what is left, -1 for unlimited, 0 when used up. Unused for the
    /// within-period rules.
    count: i64,
    /// For the within-period rules: keep only snapshots strictly after this (nanoseconds).
    after: Option<i128>,
    /// The key of the last snapshot this rule kept.
    last: Option<i64>,
    reason: String,
}

impl Bucket {
    /// restic's step for one snapshot: keep it when its key differs from the last kept one,
    /// or when it is the oldest. Returns the reason when kept.
    fn offer(&mut self, key: i64, oldest: bool) -> Option<String> {
        if self.last == Some(key) && !oldest {
            return None;
        }
        let reason = if self.last == Some(key) {
            format!("oldest {}", self.reason)
        } else {
            self.reason.clone()
        };
        self.last = Some(key);
        if self.count > 0 {
            self.count -= 1;
        }
        Some(reason)
    }
}

/// Go's zero `time.Time` (0001-01-01 00:00:00 UTC), which restic uses as the newest snapshot's
/// time when every snapshot is in the future.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const SECONDS_PER_DAY: i128 = 86_400;

/// Applies `policy` to the candidates of one group and returns the decisions in the order of
/// `candidates`.
///
/// Candidates are evaluated newest first, sorted stably by time, so the caller orders the
/// ties (the order of `candidates` decides among equal times). Period keys come from each
/// time in `zone`: hourly `YYYYMMDDHH`, daily `YYYYMMDD`, weekly ISO 8601 `year*100+week`,
/// monthly `YYYYMM`, yearly `YYYY`.
///
/// The rules are restic's: a count rule keeps a snapshot whose key differs from the last
/// snapshot it kept, while its count lasts, and if the count is not used up at the oldest
/// snapshot it keeps that one too (`oldest daily snapshot`). `within` keeps every snapshot
/// strictly after `latest − D`, where `latest` is the newest candidate before `now` (future
/// snapshots are ignored for it, and kept) and `− D` is Go's `AddDate(-y, -m, -d)` in `zone`
/// then `-h` hours. The within-period rules combine the two. A tag list keeps its matches.
///
/// Partial snapshots ([`Candidate::partial`]) never use up a count: the count rules and the
/// within-period rules walk only the complete candidates, and their "oldest" is the oldest
/// complete one. `within` and tags look at every candidate. Every partial candidate that comes
/// before the newest complete one in the evaluation order is kept too ([`PARTIAL_REASON`]), so
/// all of them are kept in a group with no complete snapshot (whatever the policy).
pub fn apply(
    candidates: &[Candidate],
    policy: &Policy,
    now: Timestamp,
    zone: &TimeZone,
) -> Vec<Decision> {
    let mut decisions = vec![Decision::default(); candidates.len()];
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| candidates[b].time.cmp(&candidates[a].time));

    // restic's findLatestTimestamp: the newest time after Go's zero time and before now.
    let go_zero = Timestamp::from_second(GO_ZERO_TIME_SECONDS).unwrap_or(Timestamp::MIN);
    let latest = candidates
        .iter()
        .map(|c| c.time)
        .filter(|&t| t > go_zero && t < now)
        .max();
    // Go's zero time is in UTC, so restic subtracts from it in UTC.
    let utc = TimeZone::UTC;
    let (latest, latest_zone) = match latest {
        Some(t) => (t, zone),
        None => (go_zero, &utc),
    };
    let threshold = |d: CalendarDuration| -> i128 {
        go_add_date(latest, -d.years, -d.months, -d.days, latest_zone)
            - i128::from(d.hours) * 3_600 * NANOS_PER_SECOND
    };
    let within = set(policy.within).map(|d| (d, threshold(d)));

    let mut counts: Vec<(Bucket, Option<Period>)> = policy
        .counts()
        .iter()
        .zip([None].into_iter().chain(Period::ALL.map(Some)))
        .map(|(&(keep, word), period)| {
            let word = if period.is_none() { "last" } else { word };
            let bucket = Bucket {
                count: keep.map_or(0, Keep::counter),
                after: None,
                last: None,
                reason: format!("{word} snapshot"),
            };
            (bucket, period)
        })
        .collect();
    let mut withins: Vec<(Bucket, Period, CalendarDuration)> = policy
        .within_rules()
        .iter()
        .zip(Period::ALL)
        .filter_map(|(&(d, word), period)| {
            let d = set(d)?;
            let bucket = Bucket {
                count: 0,
                after: Some(threshold(d)),
                last: None,
                reason: format!("{word} within"),
            };
            Some((bucket, period, d))
        })
        .collect();

    let complete = candidates.iter().filter(|c| !c.partial).count();
    let mut complete_nr = 0;
    for &i in &order {
        let cur = &candidates[i];
        let mut reasons = Vec::new();
        for list in &policy.tags {
            if list.matches(&cur.tags) {
                reasons.push(format!("has tags {list}"));
            }
        }
        if let Some((d, after)) = within
            && cur.time.as_nanosecond() > after
        {
            reasons.push(format!("within {d}"));
        }
        if cur.partial {
            if complete_nr == 0 {
                reasons.push(PARTIAL_REASON.to_owned());
            }
        } else {
            let oldest = complete_nr + 1 == complete;
            let civil = zone.to_datetime(cur.time);
            for (bucket, period) in &mut counts {
                if bucket.count > 0 || bucket.count == -1 {
                    let key = match period {
                        Some(p) => p.key(civil),
                        // restic's `always`: a key no other snapshot has.
                        None => complete_nr as i64,
                    };
                    reasons.extend(bucket.offer(key, oldest));
                }
            }
            for (bucket, period, d) in &mut withins {
                if bucket
                    .after
                    .is_some_and(|after| cur.time.as_nanosecond() > after)
                    && let Some(reason) = bucket.offer(period.key(civil), oldest)
                {
                    reasons.push(format!("{reason} {d}"));
                }
            }
            complete_nr += 1;
        }
        let counter = |n: usize| counts[n].0.count;
        decisions[i] = Decision {
            keep: !reasons.is_empty(),
            reasons,
            counters: Counters {
                last: counter(0),
                hourly: counter(1),
                daily: counter(2),
                weekly: counter(3),
                monthly: counter(4),
                yearly: counter(5),
            },
        };
    }
    decisions
}

/// Go's `t.In(zone).AddDate(years, months, days)`, in nanoseconds since the Unix epoch (so it
/// cannot leave jiff's range). The civil date is normalised as Go's `time.Date` does: months
/// overflow into years, then the day of the month overflows into the next months (31 March
/// minus 1 month is "31 February", which is 3 March, or 2 March in a leap year), where jiff
/// would clamp it. The civil time is then turned back into an instant with `time.Date`'s
/// offset lookup, which picks one side of a DST gap or fold the way Go does.
fn go_add_date(t: Timestamp, years: i32, months: i32, days: i32, zone: &TimeZone) -> i128 {
    let nanos = t.as_nanosecond();
    let subsec = nanos.rem_euclid(NANOS_PER_SECOND);
    let local = nanos.div_euclid(NANOS_PER_SECOND) + i128::from(zone.to_offset(t).seconds());
    let (year, month, day) = civil_from_days(local.div_euclid(SECONDS_PER_DAY));
    let month0 = month - 1 + i128::from(months);
    let year = year + i128::from(years) + month0.div_euclid(12);
    let month = month0.rem_euclid(12) + 1;
    let day_number = days_from_civil(year, month, 1) + day - 1 + i128::from(days);
    let unix = day_number * SECONDS_PER_DAY + local.rem_euclid(SECONDS_PER_DAY);
    // time.Date: look the offset up at `unix` read as UTC, then again at the instant that
    // offset gives (Go keeps the first offset when that instant lies in the same zone period,
    // where the second lookup gives the same offset anyway).
    let first = offset_at(zone, unix);
    let offset = offset_at(zone, unix - first);
    (unix - offset) * NANOS_PER_SECOND + subsec
}

/// The offset of `zone`, in seconds, at `unix` seconds (clamped to jiff's range).
fn offset_at(zone: &TimeZone, unix: i128) -> i128 {
    let min = i128::from(Timestamp::MIN.as_second());
    let max = i128::from(Timestamp::MAX.as_second());
    let second = i64::try_from(unix.clamp(min, max)).unwrap_or_default();
    Timestamp::from_second(second).map_or(0, |t| i128::from(zone.to_offset(t).seconds()))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i128, month: i128, day: i128) -> i128 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day number since 1970-01-01 (`civil_from_days`).
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    // ---- restic's table: tests/fixtures/restic-policy ----

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/restic-policy")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A snapshot as restic's golden files identify it.
    #[derive(Debug, Clone, PartialEq)]
    struct Snap {
        time: Timestamp,
        tags: Vec<String>,
        paths: Vec<String>,
    }

    fn strings(v: Option<&Value>) -> Vec<String> {
        match v {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|s| s.as_str().expect("a string").to_owned())
                .collect(),
            Some(other) => panic!("not a list of strings: {other}"),
        }
    }

    fn snap(v: &Value) -> Snap {
        Snap {
            time: v["time"]
                .as_str()
                .expect("a time")
                .parse()
                .expect("RFC 3339"),
            tags: strings(v.get("tags")),
            paths: strings(v.get("paths")),
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn dur(s: &str) -> CalendarDuration {
        s.parse().unwrap()
    }

    fn n(n: u32) -> Option<Keep> {
        Some(Keep::Count(NonZeroU32::new(n).unwrap()))
    }

    const ALL: Option<Keep> = Some(Keep::Unlimited);

    fn tags(lists: &[&[&str]]) -> Vec<TagList> {
        lists
            .iter()
            .map(|l| TagList(l.iter().map(|t| (*t).to_owned()).collect()))
            .collect()
    }

    /// The `tests` slice of restic's `TestApplyPolicy`: policy `i` produced golden file `i`.
    fn restic_policy(i: usize) -> Policy {
        let p = Policy::default;
        match i {
            0 => p(),
            1 => Policy { last: n(10), ..p() },
            2 => Policy { last: n(15), ..p() },
            3 => Policy { last: n(99), ..p() },
            4 => Policy {
                last: n(200),
                ..p()
            },
            5 => Policy {
                hourly: n(20),
                ..p()
            },
            6 => Policy { daily: n(3), ..p() },
            7 => Policy {
                daily: n(10),
                ..p()
            },
            8 => Policy {
                daily: n(30),
                ..p()
            },
            9 => Policy {
                last: n(5),
                daily: n(5),
                ..p()
            },
            10 => Policy {
                last: n(2),
                daily: n(10),
                ..p()
            },
            11 => Policy {
                weekly: n(2),
                ..p()
            },
            12 => Policy {
                weekly: n(4),
                ..p()
            },
            13 => Policy {
                daily: n(3),
                weekly: n(4),
                ..p()
            },
            14 => Policy {
                monthly: n(6),
                ..p()
            },
            15 => Policy {
                daily: n(2),
                weekly: n(2),
                monthly: n(6),
                ..p()
            },
            16 => Policy {
                yearly: n(10),
                ..p()
            },
            17 => Policy {
                daily: n(7),
                weekly: n(2),
                monthly: n(3),
                yearly: n(10),
                ..p()
            },
            18 => Policy {
                tags: tags(&[&["foo"]]),
                ..p()
            },
            19 => Policy {
                tags: tags(&[&["foo", "bar"]]),
                ..p()
            },
            20 => Policy {
                tags: tags(&[&["foo"], &["bar"]]),
                ..p()
            },
            21 => Policy {
                within: Some(dur("1d")),
                ..p()
            },
            22 => Policy {
                within: Some(dur("2d")),
                ..p()
            },
            23 => Policy {
                within: Some(dur("7d")),
                ..p()
            },
            24 => Policy {
                within: Some(dur("1m")),
                ..p()
            },
            25 => Policy {
                within: Some(dur("1m14d")),
                ..p()
            },
            26 => Policy {
                within: Some(dur("1y1d1m")),
                ..p()
            },
            27 => Policy {
                within: Some(dur("13d23h")),
                ..p()
            },
            28 => Policy {
                within: Some(dur("2m2h")),
                ..p()
            },
            29 => Policy {
                within: Some(dur("1y2m3d3h")),
                ..p()
            },
            30 => Policy {
                within_hourly: Some(dur("1y2m3d3h")),
                ..p()
            },
            31 => Policy {
                within_daily: Some(dur("1y2m3d3h")),
                ..p()
            },
            32 => Policy {
                within_weekly: Some(dur("1y2m3d3h")),
                ..p()
            },
            33 => Policy {
                within_monthly: Some(dur("1y2m3d3h")),
                ..p()
            },
            34 => Policy {
                within_yearly: Some(dur("1y2m3d3h")),
                ..p()
            },
            35 => Policy {
                within: Some(dur("1h")),
                within_hourly: Some(dur("1d")),
                within_daily: Some(dur("7d")),
                within_weekly: Some(dur("1m")),
                within_monthly: Some(dur("1y")),
                within_yearly: Some(dur("9999y")),
                ..p()
            },
            36 => Policy { last: ALL, ..p() },
            37 => Policy {
                last: ALL,
                hourly: ALL,
                ..p()
            },
            38 => Policy { hourly: ALL, ..p() },
            39 => Policy {
                daily: n(3),
                weekly: n(2),
                monthly: ALL,
                yearly: ALL,
                ..p()
            },
            _ => unreachable!("restic's table has 40 policies"),
        }
    }

    /// How many snapshots each golden file keeps (design-13 §2's table), a check that the
    /// files were read whole.
    const RESTIC_KEPT: [usize; 40] = [
        0, 10, 15, 99, 103, 20, 3, 10, 30, 6, 10, 2, 4, 4, 6, 7, 4, 11, 18, 4, 19, 1, 1, 3, 19, 19,
        63, 9, 23, 68, 57, 53, 19, 6, 3, 10, 103, 103, 90, 12,
    ];

    fn restic_input() -> Vec<Snap> {
        let input = fixture("input.json");
        let snaps: Vec<Snap> = input.as_array().expect("a list").iter().map(snap).collect();
        assert_eq!(
            snaps.len(),
            103,
            "restic's testExpireSnapshots has 103 snapshots"
        );
        snaps
    }

    /// The kept snapshots in evaluation order (newest first, stable), with reasons and
    /// counters as restic's golden files write them.
    fn kept(snaps: &[Snap], decisions: &[Decision]) -> Vec<(Snap, Vec<String>, Value)> {
        let mut order: Vec<usize> = (0..snaps.len()).collect();
        order.sort_by(|&a, &b| snaps[b].time.cmp(&snaps[a].time));
        order
            .into_iter()
            .filter(|&i| decisions[i].keep)
            .map(|i| {
                let d = &decisions[i];
                (
                    snaps[i].clone(),
                    d.reasons.clone(),
                    serde_json::to_value(d.counters).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn restic_golden_files_1_to_39_give_the_same_kept_sets_reasons_and_counters() {
        let snaps = restic_input();
        let candidates: Vec<Candidate> = snaps
            .iter()
            .map(|s| Candidate {
                time: s.time,
                tags: s.tags.clone(),
                partial: false,
            })
            .collect();
        let now = ts("2026-12-05T00:00:00Z");
        for (i, expected_count) in RESTIC_KEPT.iter().enumerate().skip(1) {
            let golden = fixture(&format!("policy_keep_snapshots_{i}"));
            let keep: Vec<Snap> = golden["keep"]
                .as_array()
                .unwrap()
                .iter()
                .map(snap)
                .collect();
            let reasons: Vec<(Snap, Vec<String>, Value)> = golden["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        snap(&r["snapshot"]),
                        strings(r.get("matches")),
                        r["counters"].clone(),
                    )
                })
                .collect();
            assert_eq!(keep.len(), *expected_count, "golden file {i}");
            let reason_snaps: Vec<Snap> = reasons.iter().map(|r| r.0.clone()).collect();
            assert_eq!(
                keep, reason_snaps,
                "golden file {i}: keep and reasons disagree"
            );

            let policy = restic_policy(i);
            assert!(!policy.is_empty(), "policy {i}");
            let decisions = apply(&candidates, &policy, now, &TimeZone::UTC);
            assert_eq!(decisions.len(), candidates.len());
            for d in &decisions {
                assert_eq!(d.keep, !d.reasons.is_empty(), "policy {i}");
            }
            assert_eq!(
                kept(&snaps, &decisions),
                reasons,
                "policy {i} ({}) differs from restic's policy_keep_snapshots_{i}",
                policy.describe()
            );
        }
    }

    #[test]
    fn restic_golden_file_0_is_the_empty_policy() {
        let golden = fixture("policy_keep_snapshots_0");
        assert_eq!(golden["keep"], Value::Null);
        let policy = restic_policy(0);
        assert!(policy.is_empty());
        assert_eq!(policy.describe(), "remove");
        // restic's TestExpireSnapshotOps: an empty list of tag lists is still empty.
        assert!(
            Policy {
                tags: Vec::new(),
                ..Policy::default()
            }
            .is_empty()
        );
        assert!(!restic_policy(17).is_empty());
        // The empty policy keeps no complete snapshot.
        let candidates: Vec<Candidate> = restic_input()
            .into_iter()
            .map(|s| Candidate {
                time: s.time,
                tags: s.tags,
                partial: false,
            })
            .collect();
        let decisions = apply(
            &candidates,
            &policy,
            ts("2026-12-05T00:00:00Z"),
            &TimeZone::UTC,
        );
        assert!(decisions.iter().all(|d| !d.keep && d.reasons.is_empty()));
    }

    #[test]
    fn describe_is_restics_expire_policy_string() {
        assert_eq!(restic_policy(1).describe(), "keep 10 latest snapshots");
        assert_eq!(
            restic_policy(17).describe(),
            "keep 7 daily, 2 weekly, 3 monthly, 10 yearly snapshots"
        );
        assert_eq!(
            restic_policy(39).describe(),
            "keep 3 daily, 2 weekly, all monthly, all yearly snapshots"
        );
        assert_eq!(
            restic_policy(20).describe(),
            "keep all snapshots with tags [[foo] [bar]]"
        );
        assert_eq!(
            restic_policy(29).describe(),
            "keep all snapshots within 1y2m3d3h of the newest"
        );
        assert_eq!(
            restic_policy(35).describe(),
            "keep hourly snapshots within 1d, daily snapshots within 7d, weekly snapshots within \
             1m, monthly snapshots within 1y, yearly snapshots within 9999y and all snapshots \
             within 1h of the newest"
        );
        let all = Policy {
            last: n(2),
            within_daily: Some(dur("7d")),
            tags: tags(&[&["foo", "bar"], &[""]]),
            within: Some(dur("1y")),
            ..Policy::default()
        };
        assert_eq!(
            all.describe(),
            "keep 2 latest snapshots, daily snapshots within 7d and all snapshots with tags \
             [[foo, bar] []] and all snapshots within 1y of the newest"
        );
    }

    // ---- restic's documentation: doc/060_forget.rst ----

    fn complete(times: &[&str]) -> Vec<Candidate> {
        times
            .iter()
            .map(|t| Candidate {
                time: ts(t),
                tags: Vec::new(),
                partial: false,
            })
            .collect()
    }

    /// Times of the candidates kept, in the order given, with their reasons.
    fn kept_times(candidates: &[Candidate], decisions: &[Decision]) -> Vec<(String, Vec<String>)> {
        candidates
            .iter()
            .zip(decisions)
            .filter(|(_, d)| d.keep)
            .map(|(c, d)| (c.time.to_string(), d.reasons.clone()))
            .collect()
    }

    fn reasons(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter()
            .map(|(t, r)| {
                (
                    ts(t).to_string(),
                    r.iter().map(|s| (*s).to_owned()).collect(),
                )
            })
            .collect()
    }

    const DOC_SNAPSHOTS: [&str; 11] = [
        "2025-04-21T11:00:00Z",
        "2025-04-22T11:00:00Z",
        "2025-04-23T11:00:00Z",
        "2025-04-24T11:00:00Z",
        "2025-04-25T11:00:00Z",
        "2025-04-25T23:00:00Z",
        "2025-04-28T11:00:00Z",
        "2025-04-29T11:00:00Z",
        "2025-05-01T11:00:00Z",
        "2025-05-02T11:00:00Z",
        "2025-05-02T23:00:00Z",
    ];

    #[test]
    fn documentation_example_keep_daily_5() {
        let candidates = complete(&DOC_SNAPSHOTS);
        let policy = Policy {
            daily: n(5),
            ..Policy::default()
        };
        assert_eq!(policy.describe(), "keep 5 daily snapshots");
        let decisions = apply(
            &candidates,
            &policy,
            ts("2025-05-03T00:00:00Z"),
            &TimeZone::UTC,
        );
        let daily: &[&str] = &["daily snapshot"];
        assert_eq!(
            kept_times(&candidates, &decisions),
            reasons(&[
                ("2025-04-25T23:00:00Z", daily),
                ("2025-04-28T11:00:00Z", daily),
                ("2025-04-29T11:00:00Z", daily),
                ("2025-05-01T11:00:00Z", daily),
                ("2025-05-02T23:00:00Z", daily),
            ])
        );
    }

    #[test]
    fn documentation_example_keep_within_daily_7d() {
        let candidates = complete(&DOC_SNAPSHOTS);
        let policy = Policy {
            within_daily: Some(dur("7d")),
            ..Policy::default()
        };
        assert_eq!(policy.describe(), "keep daily snapshots within 7d");
        let decisions = apply(
            &candidates,
            &policy,
            ts("2025-05-03T00:00:00Z"),
            &TimeZone::UTC,
        );
        let daily: &[&str] = &["daily within 7d"];
        assert_eq!(
            kept_times(&candidates, &decisions),
            reasons(&[
                ("2025-04-28T11:00:00Z", daily),
                ("2025-04-29T11:00:00Z", daily),
                ("2025-05-01T11:00:00Z", daily),
                ("2025-05-02T23:00:00Z", daily),
            ])
        );
    }

    // ---- airback's own rules ----

    fn candidate(time: &str, partial: bool) -> Candidate {
        Candidate {
            time: ts(time),
            tags: Vec::new(),
            partial,
        }
    }

    const NOW: &str = "2026-12-05T00:00:00Z";

    #[test]
    fn a_partial_newest_snapshot_does_not_use_up_keep_last() {
        let candidates = vec![
            candidate("2026-11-20T03:00:00Z", false),
            candidate("2026-11-22T03:00:00Z", true),
            candidate("2026-11-21T03:00:00Z", false),
        ];
        let policy = Policy {
            last: n(1),
            ..Policy::default()
        };
        let decisions = apply(&candidates, &policy, ts(NOW), &TimeZone::UTC);
        assert!(!decisions[0].keep);
        assert_eq!(decisions[1].reasons, [PARTIAL_REASON]);
        assert_eq!(
            decisions[1].counters,
            Counters {
                last: 1,
                ..Counters::default()
            }
        );
        assert_eq!(decisions[2].reasons, ["last snapshot"]);
        assert_eq!(decisions[2].counters, Counters::default());
    }

    #[test]
    fn a_partial_only_day_does_not_use_up_keep_daily() {
        let candidates = vec![
            candidate("2026-11-05T03:00:00Z", false),
            candidate("2026-11-04T03:00:00Z", true),
            candidate("2026-11-03T03:00:00Z", false),
            candidate("2026-11-02T03:00:00Z", false),
        ];
        let policy = Policy {
            daily: n(2),
            ..Policy::default()
        };
        let decisions = apply(&candidates, &policy, ts(NOW), &TimeZone::UTC);
        let keep: Vec<bool> = decisions.iter().map(|d| d.keep).collect();
        assert_eq!(keep, [true, false, true, false]);
        assert_eq!(decisions[2].reasons, ["daily snapshot"]);
    }

    #[test]
    fn partials_newer_than_the_newest_complete_are_kept_and_older_ones_are_not() {
        let candidates = vec![
            candidate("2026-11-24T03:00:00Z", true),
            candidate("2026-11-23T03:00:00Z", true),
            candidate("2026-11-22T03:00:00Z", false),
            candidate("2026-11-21T03:00:00Z", true),
            candidate("2026-11-20T03:00:00Z", false),
        ];
        let policy = Policy {
            last: n(1),
            ..Policy::default()
        };
        let decisions = apply(&candidates, &policy, ts(NOW), &TimeZone::UTC);
        let keep: Vec<bool> = decisions.iter().map(|d| d.keep).collect();
        assert_eq!(keep, [true, true, true, false, false]);
        assert_eq!(decisions[0].reasons, [PARTIAL_REASON]);
        assert_eq!(decisions[1].reasons, [PARTIAL_REASON]);
        assert_eq!(decisions[2].reasons, ["last snapshot"]);
    }

    #[test]
    fn a_group_of_partials_only_is_kept_whole() {
        let candidates = vec![
            candidate("2026-11-24T03:00:00Z", true),
            candidate("2026-11-23T03:00:00Z", true),
        ];
        let policy = Policy {
            daily: n(1),
            ..Policy::default()
        };
        let decisions = apply(&candidates, &policy, ts(NOW), &TimeZone::UTC);
        assert!(decisions.iter().all(|d| d.reasons == [PARTIAL_REASON]));
    }

    #[test]
    fn oldest_means_the_oldest_complete_snapshot() {
        let candidates = vec![
            candidate("2026-11-03T10:00:00Z", false),
            candidate("2026-11-02T10:00:00Z", false),
            candidate("2026-11-02T09:00:00Z", false),
            candidate("2026-11-01T10:00:00Z", true),
        ];
        let policy = Policy {
            daily: n(5),
            ..Policy::default()
        };
        let decisions = apply(&candidates, &policy, ts(NOW), &TimeZone::UTC);
        assert_eq!(decisions[0].reasons, ["daily snapshot"]);
        assert_eq!(decisions[1].reasons, ["daily snapshot"]);
        assert_eq!(decisions[2].reasons, ["oldest daily snapshot"]);
        assert_eq!(
            decisions[2].counters,
            Counters {
                daily: 2,
                ..Counters::default()
            }
        );
        assert!(!decisions[3].keep);
    }

    #[test]
    fn within_and_tags_keep_partial_snapshots() {
        let mut tagged = candidate("2026-10-01T03:00:00Z", true);
        tagged.tags = vec!["monthly".to_owned()];
        let candidates = vec![
            candidate("2026-11-24T03:00:00Z", false),
            candidate("2026-11-23T05:00:00Z", true),
            candidate("2026-11-20T03:00:00Z", true),
            tagged,
        ];
        let policy = Policy {
            within: Some(dur("1d")),
            tags: vec!["monthly".parse().unwrap()],
            ..Policy::default()
        };
        let decisions = apply(&candidates, &policy, ts(NOW), &TimeZone::UTC);
        assert_eq!(decisions[0].reasons, ["within 1d"]);
        assert_eq!(decisions[1].reasons, ["within 1d"]);
        assert!(!decisions[2].keep);
        assert_eq!(decisions[3].reasons, ["has tags [monthly]"]);
    }

    #[test]
    fn a_policy_that_keeps_nothing_is_visible_to_the_caller() {
        let candidates = complete(&["2026-11-24T03:00:00Z", "2026-11-23T03:00:00Z"]);
        let policy = Policy {
            tags: vec!["monthly".parse().unwrap()],
            ..Policy::default()
        };
        assert!(!policy.is_empty());
        let decisions = apply(&candidates, &policy, ts(NOW), &TimeZone::UTC);
        assert!(decisions.iter().all(|d| !d.keep));
    }

    #[test]
    fn the_empty_tag_list_matches_untagged_snapshots_only() {
        let untagged: TagList = "".parse().unwrap();
        assert_eq!(untagged, TagList(vec![String::new()]));
        assert!(untagged.matches(&[]));
        assert!(!untagged.matches(&["foo".to_owned()]));
        let mut tagged = candidate("2026-11-23T03:00:00Z", false);
        tagged.tags = vec!["foo".to_owned()];
        let candidates = vec![candidate("2026-11-24T03:00:00Z", false), tagged];
        let policy = Policy {
            tags: vec![untagged],
            ..Policy::default()
        };
        let decisions = apply(&candidates, &policy, ts(NOW), &TimeZone::UTC);
        assert_eq!(decisions[0].reasons, ["has tags []"]);
        assert!(!decisions[1].keep);
    }

    #[test]
    fn a_future_snapshot_is_not_the_latest_for_keep_within() {
        let candidates = complete(&[
            "2026-05-25T12:00:00Z",
            "2026-06-01T12:00:00Z",
            "2026-06-02T12:00:00Z",
            "2026-06-20T12:00:00Z",
        ]);
        let policy = Policy {
            within: Some(dur("2d")),
            ..Policy::default()
        };
        let decisions = apply(
            &candidates,
            &policy,
            ts("2026-06-10T00:00:00Z"),
            &TimeZone::UTC,
        );
        let keep: Vec<bool> = decisions.iter().map(|d| d.keep).collect();
        // latest is 06-02 (06-20 is in the future), so within runs from 05-31 12:00; the
        // future snapshot is after that and kept too.
        assert_eq!(keep, [false, true, true, true]);
    }

    #[test]
    fn when_every_snapshot_is_in_the_future_keep_within_keeps_them_all() {
        // restic's latest is then Go's zero time, and everything is after it.
        let candidates = complete(&["2026-06-20T12:00:00Z", "2026-06-21T12:00:00Z"]);
        let policy = Policy {
            within: Some(dur("1d")),
            ..Policy::default()
        };
        let decisions = apply(
            &candidates,
            &policy,
            ts("2026-06-10T00:00:00Z"),
            &TimeZone::UTC,
        );
        assert!(decisions.iter().all(|d| d.reasons == ["within 1d"]));
    }

    /// Europe/Paris's current rule as a POSIX TZ string, so the tests do not depend on the
    /// machine's time zone database.
    fn paris() -> TimeZone {
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    #[test]
    fn daily_keys_follow_the_zone_on_the_last_sunday_of_october() {
        // 2026-10-24T22:30Z is 00:30 CEST on Sunday 25 October in Paris, and 21:30Z is 22:30
        // CET the same (25-hour) day: one Paris day, two UTC days.
        let candidates = complete(&[
            "2026-10-25T21:30:00Z",
            "2026-10-24T22:30:00Z",
            "2026-10-20T12:00:00Z",
        ]);
        let policy = Policy {
            daily: n(7),
            ..Policy::default()
        };
        let keep = |zone: &TimeZone| -> Vec<bool> {
            apply(&candidates, &policy, ts(NOW), zone)
                .iter()
                .map(|d| d.keep)
                .collect()
        };
        assert_eq!(keep(&TimeZone::UTC), [true, true, true]);
        assert_eq!(keep(&paris()), [true, false, true]);
    }

    #[test]
    fn one_paris_hour_covers_two_real_hours_at_fall_back() {
        // 00:30Z is 02:30 CEST and 01:30Z is 02:30 CET on 2026-10-25.
        let candidates = complete(&[
            "2026-10-25T01:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-24T12:00:00Z",
        ]);
        let policy = Policy {
            hourly: n(7),
            ..Policy::default()
        };
        let keep = |zone: &TimeZone| -> Vec<bool> {
            apply(&candidates, &policy, ts(NOW), zone)
                .iter()
                .map(|d| d.keep)
                .collect()
        };
        assert_eq!(keep(&TimeZone::UTC), [true, true, true]);
        assert_eq!(keep(&paris()), [true, false, true]);
    }

    #[test]
    fn weeks_are_iso_8601_weeks_with_their_week_year() {
        let candidates = complete(&[
            "2027-01-04T12:00:00Z", // Monday, 2027-W01
            "2027-01-03T12:00:00Z", // Sunday, 2026-W53
            "2026-12-28T12:00:00Z", // Monday, 2026-W53
            "2026-01-02T12:00:00Z", // Friday, 2026-W01
            "2025-12-29T12:00:00Z", // Monday, 2026-W01
            "2025-12-28T12:00:00Z", // Sunday, 2025-W52
        ]);
        let policy = Policy {
            weekly: n(10),
            ..Policy::default()
        };
        let decisions = apply(
            &candidates,
            &policy,
            ts("2027-02-01T00:00:00Z"),
            &TimeZone::UTC,
        );
        let keep: Vec<bool> = decisions.iter().map(|d| d.keep).collect();
        assert_eq!(keep, [true, true, false, true, false, true]);
        assert_eq!(decisions[5].reasons, ["weekly snapshot"]);
    }

    #[test]
    fn keep_within_overflows_days_like_go_add_date() {
        // 31 March 2026 minus 1 month is "31 February", which Go makes 3 March.
        let candidates = complete(&[
            "2026-03-31T12:00:00Z",
            "2026-03-03T12:30:00Z",
            "2026-03-03T12:00:00Z",
            "2026-03-01T12:00:00Z",
        ]);
        let policy = Policy {
            within: Some(dur("1m")),
            ..Policy::default()
        };
        let decisions = apply(&candidates, &policy, ts(NOW), &TimeZone::UTC);
        let keep: Vec<bool> = decisions.iter().map(|d| d.keep).collect();
        assert_eq!(keep, [true, true, false, false]);
        // In a leap year it is 2 March.
        let candidates = complete(&[
            "2024-03-31T12:00:00Z",
            "2024-03-02T12:30:00Z",
            "2024-03-02T12:00:00Z",
            "2024-03-01T12:00:00Z",
        ]);
        let decisions = apply(&candidates, &policy, ts(NOW), &TimeZone::UTC);
        let keep: Vec<bool> = decisions.iter().map(|d| d.keep).collect();
        assert_eq!(keep, [true, true, false, false]);
    }

    fn add_date(t: &str, y: i32, m: i32, d: i32, zone: &TimeZone) -> Timestamp {
        Timestamp::from_nanosecond(go_add_date(ts(t), y, m, d, zone)).unwrap()
    }

    #[test]
    fn go_add_date_normalises_like_go() {
        let utc = &TimeZone::UTC;
        assert_eq!(
            add_date("2026-03-31T12:00:00Z", 0, -1, 0, utc),
            ts("2026-03-03T12:00:00Z")
        );
        assert_eq!(
            add_date("2024-03-31T12:00:00Z", 0, -1, 0, utc),
            ts("2024-03-02T12:00:00Z")
        );
        assert_eq!(
            add_date("2024-02-29T00:00:00Z", -1, 0, 0, utc),
            ts("2023-03-01T00:00:00Z")
        );
        assert_eq!(
            add_date("2026-01-31T00:00:00Z", 0, 1, 0, utc),
            ts("2026-03-03T00:00:00Z")
        );
        assert_eq!(
            add_date("2026-01-15T00:00:00Z", 0, -13, 0, utc),
            ts("2024-12-15T00:00:00Z")
        );
        assert_eq!(
            add_date("2026-03-01T00:00:00Z", 0, 0, -1, utc),
            ts("2026-02-28T00:00:00Z")
        );
        assert_eq!(
            add_date("2016-01-18T12:02:03.5Z", -1, -2, -3, utc),
            ts("2014-11-15T12:02:03.5Z")
        );
        // Beyond jiff's range (years -9999 to 9999): no panic, and everything is after it.
        let far = go_add_date(ts("2016-01-18T12:02:03Z"), -20_000, 0, 0, utc);
        assert!(far < Timestamp::MIN.as_nanosecond());
        let far = go_add_date(
            ts("0001-01-01T00:00:00Z"),
            -i32::MAX,
            -i32::MAX,
            -i32::MAX,
            utc,
        );
        assert!(far < Timestamp::MIN.as_nanosecond());
    }

    #[test]
    fn keep_within_counts_calendar_days_in_the_zone() {
        // 2026-03-29 is 23 hours long in Paris: 12:00 CEST (10:00Z) minus 1 day is 12:00 CET
        // on the 28th (11:00Z), where UTC gives 10:00Z.
        let candidates = complete(&["2026-03-29T10:00:00Z", "2026-03-28T10:30:00Z"]);
        let policy = Policy {
            within: Some(dur("1d")),
            ..Policy::default()
        };
        let keep = |zone: &TimeZone| -> Vec<bool> {
            apply(&candidates, &policy, ts(NOW), zone)
                .iter()
                .map(|d| d.keep)
                .collect()
        };
        assert_eq!(keep(&TimeZone::UTC), [true, true]);
        assert_eq!(keep(&paris()), [true, false]);
    }

    #[test]
    fn keep_within_resolves_a_fold_as_go_time_date_does() {
        // latest is 02:30 CET on 26 October; minus 1 day is 02:30 on the 25th, which happens
        // twice. Go's time.Date looks the offset up at 02:30Z (CET, +1) and keeps it, so it
        // gives the second one, 01:30Z.
        assert_eq!(
            add_date("2026-10-26T01:30:00Z", 0, 0, -1, &paris()),
            ts("2026-10-25T01:30:00Z")
        );
        // And in a gap (02:30 on 29 March does not exist) the instant after it: 03:30 CEST.
        assert_eq!(
            add_date("2026-03-30T00:30:00Z", 0, 0, -1, &paris()),
            ts("2026-03-29T01:30:00Z")
        );
    }

    // ---- parsing ----

    #[test]
    fn durations_parse_and_print_as_restic() {
        let d = dur("1y2m3d3h");
        assert_eq!(
            d,
            CalendarDuration {
                years: 1,
                months: 2,
                days: 3,
                hours: 3
            }
        );
        assert_eq!(d.to_string(), "1y2m3d3h");
        assert_eq!(dur("1y1d1m").to_string(), "1y1m1d");
        assert_eq!(dur(" 36h ").to_string(), "36h");
        assert_eq!(
            dur("9999y"),
            CalendarDuration {
                years: 9999,
                ..CalendarDuration::default()
            }
        );
        assert_eq!(CalendarDuration::default().to_string(), "0h");
    }

    #[test]
    fn bad_durations_say_what_to_write() {
        let err = |s: &str| s.parse::<CalendarDuration>().unwrap_err().to_string();
        assert_eq!(
            err("2w"),
            "duration `2w`: weeks are not a unit: write 14d instead"
        );
        assert!(
            err("30min").contains("`min` is not supported"),
            "{}",
            err("30min")
        );
        assert!(err("30min").contains("m means months"));
        assert!(err("10s").contains("smallest unit is h"));
        assert!(
            err("5").contains("has no unit: write for example 5d"),
            "{}",
            err("5")
        );
        assert!(err("").contains("is empty"));
        assert!(err("-1d").contains("negative"));
        assert!(err("1d-1h").contains("negative"));
        assert!(err("1d2d").contains("unit d twice"));
        assert!(err("0d").contains("is zero"));
        assert!(err("0y0h").contains("is zero"));
        assert!(err("1x").contains("unknown unit `x`"));
        assert!(
            err("1d 2h").contains("expected a number at ` 2h`"),
            "{}",
            err("1d 2h")
        );
        assert!(err("d").contains("expected a number"));
        assert!(err("99999999999d").contains("too large"));
    }

    #[test]
    fn keep_counts_parse_and_print() {
        assert_eq!(
            "7".parse::<Keep>().unwrap(),
            Keep::Count(NonZeroU32::new(7).unwrap())
        );
        assert_eq!("unlimited".parse::<Keep>().unwrap(), Keep::Unlimited);
        assert_eq!(Keep::Unlimited.to_string(), "unlimited");
        assert_eq!("12".parse::<Keep>().unwrap().to_string(), "12");
        let err = |s: &str| s.parse::<Keep>().unwrap_err().to_string();
        assert!(err("0").contains("keeps nothing"));
        assert!(err("-1").contains("negative"), "{}", err("-1"));
        assert!(err("-1").contains("`unlimited`"));
        assert!(err("seven").contains("not a number"));
        assert!(err("").contains("not a number"));
        assert!(err("1.5").contains("not a number"));
        assert!(err("99999999999").contains("too large"));
    }

    #[test]
    fn tag_lists_parse_as_restic() {
        let list: TagList = " a , b".parse().unwrap();
        assert_eq!(list, TagList(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(list.to_string(), "[a, b]");
        assert!(list.matches(&["b".to_owned(), "a".to_owned(), "c".to_owned()]));
        assert!(!list.matches(&["a".to_owned()]));
        assert!(!list.matches(&[]));
        let err = "a,,b".parse::<TagList>().unwrap_err().to_string();
        assert!(err.contains("empty tag"), "{err}");
        assert!("a,".parse::<TagList>().is_err());
    }

    #[test]
    fn counters_serialize_without_zero_fields() {
        let c = Counters {
            last: 2,
            monthly: -1,
            ..Counters::default()
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"last":2,"monthly":-1}"#
        );
        assert_eq!(serde_json::to_string(&Counters::default()).unwrap(), "{}");
    }
}
