//! `forget`: which snapshots a retention policy keeps, base by base, and removing the others.
//!
//! Snapshots are grouped by the base they back up (`source.base_id`; snapshots without one
//! form a group of their own); host and tags do not split a group, so one base backed up from
//! two hosts is one history. Each group is judged by [`crate::retention::apply`], newest first,
//! ties broken by snapshot id. [`plan`] is pure; [`remove`] deletes the manifests it marked,
//! under the exclusive lock. Only manifests go: the data they alone referenced stays in
//! storage until `prune` frees it (docs/FORMAT.md, "Deletion").
//!
//! Two rules protect against a policy that would empty a history: a group that would keep no
//! snapshot at all stops the whole run before anything is removed ([`ForgetError::WouldEmpty`]),
//! and a snapshot whose time cannot be read is kept and reported, never removed.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::id::SnapshotId;
use crate::layout::Source;
use crate::repo::snapshot::Snapshot;
use crate::repo::{Exclusive, RepoError};
use crate::retention::{self, Candidate, Counters, Policy};

/// Which policy applies to which group.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// The policy for every group without its own; `None` leaves those groups alone.
    pub default: Option<Policy>,
    /// Policies of single bases (the config's `bases[].retention`), replacing `default` for
    /// that base as a whole.
    pub per_base: HashMap<String, Policy>,
}

impl Policies {
    /// One policy for every group.
    pub fn all(policy: Policy) -> Policies {
        Policies {
            default: Some(policy),
            per_base: HashMap::new(),
        }
    }

    fn for_group(&self, base_id: Option<&str>) -> Option<&Policy> {
        base_id
            .and_then(|b| self.per_base.get(b))
            .or(self.default.as_ref())
    }
}

/// The config's `retention:` sections as policies: the top-level one for every base, a base's
/// own for that base.
pub fn policies_of_config(config: &crate::config::Config) -> Policies {
    Policies {
        default: config.retention.as_ref().map(policy_of),
        per_base: config
            .bases
            .iter()
            .filter_map(|b| Some((b.id.clone(), policy_of(b.retention.as_ref()?))))
            .collect(),
    }
}

/// A config `retention:` section as a policy (validated when the config was read).
pub fn policy_of(r: &crate::config::Retention) -> Policy {
    let count = |n: Option<u32>| {
        n.and_then(|n| std::num::NonZeroU32::new(n).map(crate::retention::Keep::Count))
    };
    Policy {
        last: count(r.keep_last),
        hourly: count(r.keep_hourly),
        daily: count(r.keep_daily),
        weekly: count(r.keep_weekly),
        monthly: count(r.keep_monthly),
        yearly: count(r.keep_yearly),
        within: r.keep_within,
        tags: r.keep_tags.clone(),
        ..Policy::default()
    }
}

/// What [`plan`] needs besides the snapshots.
#[derive(Debug, Clone)]
pub struct ForgetOptions {
    /// The policies to apply.
    pub policies: Policies,
    /// Only these bases' groups (empty: every group).
    pub bases: Vec<String>,
    /// The zone whose calendar sets the hours, days, weeks, months and years.
    pub zone: jiff::tz::TimeZone,
    /// The zone's name for output (`UTC`, `local`, `Europe/Paris`).
    pub zone_name: String,
    /// Now, for `--keep-within` (snapshots dated in the future do not count as the latest).
    pub now: jiff::Timestamp,
}

/// What forget would keep and remove: one entry per group.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetPlan {
    /// The zone periods were computed in.
    pub time_zone: String,
    /// The groups judged, by base id (the group of snapshots without a base last).
    pub groups: Vec<GroupPlan>,
}

impl ForgetPlan {
    /// The snapshots to remove, in every group.
    pub fn to_remove(&self) -> impl Iterator<Item = &SnapshotId> {
        self.groups.iter().flat_map(|g| {
            g.snapshots
                .iter()
                .filter(|s| s.action == Action::Remove)
                .map(|s| &s.id)
        })
    }
}

/// One group's verdicts.
#[derive(Debug, Clone, Serialize)]
pub struct GroupPlan {
    /// The base, or `null` for snapshots without one.
    pub base_id: Option<String>,
    /// The base's name in its newest snapshot.
    pub base_name: Option<String>,
    /// The policy applied, in words (restic's wording).
    pub policy: String,
    /// Snapshots kept.
    pub keep: usize,
    /// Snapshots removed.
    pub remove: usize,
    /// Every snapshot of the group, newest first.
    pub snapshots: Vec<SnapshotVerdict>,
}

/// Keep or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Kept by at least one rule.
    Keep,
    /// Kept by no rule.
    Remove,
}

/// One snapshot's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotVerdict {
    /// The snapshot.
    pub id: SnapshotId,
    /// When it was taken, as stored.
    pub time: String,
    /// Whether it is partial.
    pub partial: bool,
    /// Its tags.
    pub tags: Vec<String>,
    /// What forget does with it.
    pub action: Action,
    /// Every rule that keeps it (restic's strings, e.g. `daily snapshot`).
    pub reasons: Vec<String>,
    /// How many of each count rule were left after it (restic's `counters`).
    pub counters: Counters,
}

/// Why forget could not run.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// A group would lose every snapshot.
    #[error(
        "the policy ({policy}) keeps none of the {count} snapshots of {group}; nothing was \
         removed. Add a rule that keeps something there, such as --keep-last 1"
    )]
    WouldEmpty {
        /// `base appX…` or `snapshots without a base`.
        group: String,
        /// The policy in words.
        policy: String,
        /// Snapshots in the group.
        count: usize,
    },
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// Judges every snapshot of the selected groups. `snapshots` in any order.
pub fn plan(
    snapshots: Vec<(SnapshotId, Snapshot)>,
    options: &ForgetOptions,
) -> Result<ForgetPlan, ForgetError> {
    // Groups by base; `None` (no base) sorts first in a BTreeMap, so it is moved last below.
    let mut groups: BTreeMap<Option<String>, Vec<(SnapshotId, Snapshot)>> = BTreeMap::new();
    for (id, snapshot) in snapshots {
        let base = Source::of(&snapshot).map(|s| s.base_id.to_owned());
        if !options.bases.is_empty() && !base.as_ref().is_some_and(|b| options.bases.contains(b)) {
            continue;
        }
        groups.entry(base).or_default().push((id, snapshot));
    }
    let mut planned = Vec::new();
    let mut without_base = None;
    for (base_id, members) in groups {
        let Some(policy) = options.policies.for_group(base_id.as_deref()) else {
            continue;
        };
        let group = judge(base_id.clone(), members, policy, options)?;
        if base_id.is_none() {
            without_base = Some(group);
        } else {
            planned.push(group);
        }
    }
    planned.extend(without_base);
    Ok(ForgetPlan {
        time_zone: options.zone_name.clone(),
        groups: planned,
    })
}

/// One group: newest first, ties by id descending, then the policy.
fn judge(
    base_id: Option<String>,
    mut members: Vec<(SnapshotId, Snapshot)>,
    policy: &Policy,
    options: &ForgetOptions,
) -> Result<GroupPlan, ForgetError> {
    let times: HashMap<SnapshotId, Option<jiff::Timestamp>> = members
        .iter()
        .map(|(id, s)| (*id, s.time.parse::<jiff::Timestamp>().ok()))
        .collect();
    members.sort_by(|(a, _), (b, _)| (times[b], b).cmp(&(times[a], a)));
    // A snapshot whose time cannot be read cannot be placed in a period: it is kept and
    // left out of the policy, which then sees only dated snapshots.
    let dated: Vec<usize> = (0..members.len())
        .filter(|&i| times[&members[i].0].is_some())
        .collect();
    let candidates: Vec<Candidate> = dated
        .iter()
        .map(|&i| Candidate {
            time: times[&members[i].0].expect("dated"),
            tags: members[i].1.tags.clone(),
            partial: members[i].1.partial,
        })
        .collect();
    let decisions = retention::apply(&candidates, policy, options.now, &options.zone);
    let mut verdicts: Vec<SnapshotVerdict> = members
        .iter()
        .map(|(id, s)| SnapshotVerdict {
            id: *id,
            time: s.time.clone(),
            partial: s.partial,
            tags: s.tags.clone(),
            action: Action::Keep,
            reasons: vec!["time cannot be read; kept".to_owned()],
            counters: Counters::default(),
        })
        .collect();
    for (&i, decision) in dated.iter().zip(decisions) {
        let verdict = &mut verdicts[i];
        verdict.action = if decision.keep {
            Action::Keep
        } else {
            Action::Remove
        };
        verdict.reasons = decision.reasons;
        verdict.counters = decision.counters;
    }
    let keep = verdicts.iter().filter(|v| v.action == Action::Keep).count();
    let group_name = match &base_id {
        Some(b) => format!("base {b}"),
        None => "snapshots without a base".to_owned(),
    };
    if keep == 0 && !verdicts.is_empty() {
        return Err(ForgetError::WouldEmpty {
            group: group_name,
            policy: policy.describe(),
            count: verdicts.len(),
        });
    }
    let base_name = members
        .first()
        .and_then(|(_, s)| Source::of(s))
        .map(|s| s.base_name.to_owned())
        .filter(|n| !n.is_empty());
    Ok(GroupPlan {
        base_id,
        base_name,
        policy: policy.describe(),
        keep,
        remove: verdicts.len() - keep,
        snapshots: verdicts,
    })
}

/// Deletes the manifests `plan` removes, and returns how many. A run cut short leaves the
/// rest; running forget again finishes it with the same verdicts.
pub async fn remove(repo: &Exclusive, plan: &ForgetPlan) -> Result<usize, ForgetError> {
    let mut removed = 0;
    for id in plan.to_remove() {
        repo.delete_snapshot(id).await?;
        removed += 1;
    }
    Ok(removed)
}
