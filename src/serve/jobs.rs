//! What `serve`'s jobs do, through the same library calls as the commands: a snapshot of one
//! base (`backup_base_with`, as `airback snapshot`), retention (`forget` by the config's rules,
//! then `prune`, as `airback forget --prune`), `check` (reading the next slice of the data
//! when the config asks for a share of it), and a restore in place of one record or table
//! asked for on the web page (`restore_in_place`, as `airback restore --in-place`, with its
//! safety snapshot).
//!
//! All jobs share one repository handle and one Airtable client, so the client's per-base and
//! per-token pacing holds across bases running at once. Snapshots running at once share one
//! writer lock and one blob writer (as `snapshot` with several bases does); retention takes
//! the exclusive lock, so it waits for the running snapshots and checks to end, and those
//! queued after it wait for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use tokio::sync::RwLock;

use super::alerts::Alerter;
use super::history::{Ending, Figures, JobKind, JobRow, LogLine, Outcome};
use super::scheduler::{BoxFuture, Job, Runner};
use crate::airtable::Client;
use crate::backup::{BackupError, BackupOptions, backup_base_with};
use crate::config::Config;
use crate::layout::{self, LayoutJson, SnapshotSummary, TableMeta};
use crate::repo::lock::LockGuard;
use crate::repo::{BlobWriter, Repository};
use crate::secrets::scrub;

/// What the latest snapshot of a base holds, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latest {
    /// Records per table name.
    pub records: BTreeMap<String, u64>,
    /// Attachments.
    pub attachments: u64,
    /// When it was taken.
    pub time: Option<String>,
    /// Its id.
    pub id: Option<String>,
    /// The base's name when it was taken.
    pub base_name: Option<String>,
}

/// The writer lock and blob writer that the snapshots running at once share.
#[derive(Default)]
struct Writers {
    users: usize,
    /// A snapshot of this group failed: it may have left packs no index lists, so the next
    /// group lists `data/`.
    failed: bool,
    lock: Option<LockGuard>,
    writer: Option<BlobWriter>,
}

/// Runs jobs against one repository with one Airtable client.
pub struct JobRunner {
    repo: Repository,
    client: Client,
    config: Arc<Config>,
    alerter: Alerter,
    history: Arc<super::history::History>,
    /// Read side: snapshots and checks; write side: retention.
    gate: RwLock<()>,
    writers: tokio::sync::Mutex<Writers>,
    latest: Mutex<HashMap<String, Latest>>,
    repository_bytes: Mutex<Option<u64>>,
    /// The config's `copies:`, opened.
    copies: Vec<(crate::config::CopyTarget, Repository)>,
    /// Snapshots that may run at once: their attachment downloads share the configured
    /// number, so the buffers in flight do not grow with the bases (as `snapshot` does).
    lanes: usize,
    /// The restore journal (`restore.sqlite` in the state directory), so a restore cut by a
    /// stop resumes without writing anything twice.
    journal: Option<std::path::PathBuf>,
}

impl JobRunner {
    /// A runner for the configured bases of `config`.
    pub fn new(
        repo: Repository,
        client: Client,
        config: Arc<Config>,
        history: Arc<super::history::History>,
    ) -> JobRunner {
        JobRunner {
            repo,
            client,
            config,
            alerter: Alerter::new(),
            history,
            gate: RwLock::new(()),
            writers: tokio::sync::Mutex::new(Writers::default()),
            latest: Mutex::new(HashMap::new()),
            repository_bytes: Mutex::new(None),
            copies: Vec::new(),
            lanes: 1,
            journal: None,
        }
    }

    /// Keeps the restores' journal in `path`.
    pub fn with_journal(mut self, path: std::path::PathBuf) -> Self {
        self.journal = Some(path);
        self
    }

    /// Up to `lanes` snapshots run at once.
    pub fn with_lanes(mut self, lanes: usize) -> Self {
        self.lanes = lanes.max(1);
        self
    }

    /// Copies each base's snapshots into these repositories after its snapshot jobs.
    pub fn with_copies(mut self, copies: Vec<(crate::config::CopyTarget, Repository)>) -> Self {
        self.copies = copies;
        self
    }

    /// The shared Airtable client (its counters feed `/metrics`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The repository the jobs use.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Holds off retention (and its prune) while the repository is read outside a job: the
    /// web page's views.
    pub async fn reading(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// What the latest snapshot of each base holds, as last read.
    pub fn latest(&self) -> HashMap<String, Latest> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The bytes of the repository's packs, as last read.
    pub fn repository_bytes(&self) -> Option<u64> {
        *self
            .repository_bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the latest snapshot of every configured base, and the repository's size.
    pub async fn refresh(&self) {
        match crate::snapshots::list(&self.repo).await {
            Ok(all) => {
                for base in &self.config.bases {
                    if let Some((id, s)) = all
                        .iter()
                        .rfind(|(_, s)| crate::snapshots::base_id(s) == Some(base.id.as_str()))
                    {
                        self.remember_latest(&base.id, id, s).await;
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list the snapshots: {}", scrub(&e.to_string())),
        }
        self.refresh_size().await;
    }

    async fn refresh_size(&self) {
        let repo = self.repo.clone();
        let sizes = tokio::task::spawn_blocking(move || repo.cache().pack_sizes()).await;
        if let Ok(Ok(sizes)) = sizes {
            *self
                .repository_bytes
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(sizes.values().sum());
        }
    }

    async fn remember_latest(
        &self,
        base: &str,
        id: &crate::id::SnapshotId,
        s: &crate::repo::snapshot::Snapshot,
    ) {
        let mut latest = Latest {
            attachments: SnapshotSummary::of(s).attachments,
            time: Some(s.time.clone()),
            id: Some(id.to_string()),
            base_name: layout::Source::of(s)
                .map(|source| source.base_name.to_owned())
                .filter(|name| !name.is_empty()),
            ..Latest::default()
        };
        if let Ok(root) = self.repo.load_tree(&s.tree).await
            && let Some(subtree) = layout::tables_dir(&root)
            && let Ok(tables) = self.repo.load_tree(&subtree).await
        {
            for node in tables.nodes {
                if let Some(meta) = TableMeta::from_json(&node.meta) {
                    latest.records.insert(meta.name, meta.records);
                }
            }
        }
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(base.to_owned(), latest);
    }

    /// The alerts of a job.
    fn alerts(&self, job: &Job) -> &crate::config::Alerts {
        self.config
            .alerts_for(job.base.as_deref().and_then(|b| self.config.base(b)))
    }

    async fn snapshot(&self, base: &str) -> Ending {
        let Some(mut options) = BackupOptions::from_config(&self.config, base) else {
            return failed(format!(
                "base {base} is not in the configuration file; add it under `bases:`"
            ));
        };
        options.attachment_concurrency = (options.attachment_concurrency / self.lanes).max(1);
        let _gate = self.gate.read().await;
        let writer = match self.join_writers().await {
            Ok(w) => w,
            Err(e) => return failed(e),
        };
        let before = self.client.counters();
        let result = backup_base_with(
            &self.repo,
            &writer,
            &self.client,
            &options,
            Arc::new(crate::progress::NoProgress),
        )
        .await;
        drop(writer);
        let mut log = self.leave_writers(result.is_ok()).await;
        let after = self.client.counters();
        match result {
            Ok(s) => {
                for w in s.warnings.iter().filter(|w| !s.problems.contains(w)) {
                    log.push(LogLine::new("warning", scrub(w)));
                }
                for p in &s.problems {
                    log.push(LogLine::new(
                        "warning",
                        scrub(&crate::backup::without_urls(p)),
                    ));
                }
                let error = s.partial.then(|| {
                    // What could not be read, and the filter entries that matched nothing.
                    let mut items: Vec<String> = s
                        .problems
                        .iter()
                        .map(|p| crate::backup::without_urls(p))
                        .collect();
                    for w in &s.warnings {
                        if !items.contains(w) {
                            items.push(w.clone());
                        }
                    }
                    scrub(&format!(
                        "snapshot {} is partial; missing: {}",
                        s.snapshot_id.short(),
                        items.join("; ")
                    ))
                    .into_owned()
                });
                if let Ok(snapshot) = self.repo.load_snapshot(&s.snapshot_id).await {
                    self.remember_latest(base, &s.snapshot_id, &snapshot).await;
                }
                self.refresh_size().await;
                let mut outcome = if s.partial {
                    Outcome::Partial
                } else {
                    Outcome::Ok
                };
                let mut error = error;
                if let Err(copy_error) = self.copy(base, &mut log).await {
                    // The snapshot is saved, but not yet where the config wants copies.
                    outcome = Outcome::Failed;
                    error = Some(match error {
                        Some(first) => format!("{first}; {copy_error}"),
                        None => copy_error,
                    });
                }
                let after_snapshot = self
                    .config
                    .retention
                    .as_ref()
                    .is_some_and(|r| r.after_snapshot);
                Ending {
                    outcome: Some(outcome),
                    figures: Figures {
                        records: s.records,
                        attachments_downloaded: s.attachments_downloaded,
                        bytes_added: s.bytes_added,
                        requests: s.api_requests,
                        rate_limited: s.rate_limited,
                    },
                    snapshot: Some(s.snapshot_id.to_string()),
                    error,
                    log,
                    follow_up: after_snapshot.then_some(JobKind::Retention),
                }
            }
            Err(e) => {
                let e = match e {
                    BackupError::Airtable { source, .. } => anyhow::Error::from(source),
                    other => anyhow::Error::from(other),
                };
                let mut ending = failed(format!(
                    "base {base} failed, no snapshot was saved for it: {e:#}"
                ));
                ending.figures.requests = after.requests.saturating_sub(before.requests);
                ending.figures.rate_limited =
                    after.rate_limited.saturating_sub(before.rate_limited);
                ending.log.splice(0..0, log);
                ending
            }
        }
    }

    /// Joins the snapshots running at once: the first takes the writer lock (which syncs the
    /// index) and adopts what an interrupted run left.
    async fn join_writers(&self) -> Result<BlobWriter, String> {
        let mut w = self.writers.lock().await;
        if w.users == 0 {
            let lock = self
                .repo
                .lock_writer("serve")
                .await
                .map_err(|e| format!("cannot write the writer lock: {e}"))?;
            // Only when due, as `snapshot` does (one listing per 1,000 packs otherwise).
            if let Err(e) = self
                .repo
                .adopt_unindexed_packs_if_due(crate::repo::PACKS_LISTED_EVERY_RUN)
                .await
            {
                let _ = lock.release().await;
                return Err(format!(
                    "cannot list the repository's packs to adopt those an interrupted run \
                     left: {e}"
                ));
            }
            w.lock = Some(lock);
            w.writer = Some(self.repo.writer());
        }
        w.users += 1;
        Ok(w.writer.clone().expect("a writer while in use"))
    }

    /// Leaves the writers (`ok`: this snapshot was saved); the last one out releases the lock.
    async fn leave_writers(&self, ok: bool) -> Vec<LogLine> {
        let mut w = self.writers.lock().await;
        w.users = w.users.saturating_sub(1);
        w.failed |= !ok;
        if w.users > 0 {
            return Vec::new();
        }
        w.writer = None;
        if !std::mem::take(&mut w.failed) {
            self.repo.snapshot_run_finished();
        }
        match w.lock.take() {
            Some(lock) => match lock.release().await {
                Ok(()) => Vec::new(),
                Err(e) => vec![LogLine::new(
                    "warning",
                    format!("cannot remove the writer lock: {e}"),
                )],
            },
            None => Vec::new(),
        }
    }

    /// Copies `base`'s snapshots into each of the config's `copies:` that takes it (those
    /// already there are skipped), under a read lock on this repository; a line per copy in
    /// `log`. The error names the copies that failed.
    async fn copy(&self, base: &str, log: &mut Vec<LogLine>) -> Result<(), String> {
        let targets: Vec<&(crate::config::CopyTarget, Repository)> = self
            .copies
            .iter()
            .filter(|(entry, _)| entry.bases.is_empty() || entry.bases.iter().any(|b| b == base))
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        let lock =
            self.repo.lock(false, "serve copy").await.map_err(|e| {
                format!("the copies were not made: cannot lock the repository: {e}")
            })?;
        let mut failures = Vec::new();
        for (entry, target) in targets {
            let shown = crate::backend::redact_location(&entry.repository);
            let copied = async {
                let ids: Vec<crate::id::SnapshotId> = crate::snapshots::list(&self.repo)
                    .await?
                    .into_iter()
                    .filter(|(_, s)| crate::snapshots::base_id(s) == Some(base))
                    .map(|(id, _)| id)
                    .collect();
                let options = crate::copy::CopyOptions::default();
                anyhow::Ok(crate::copy::copy(&self.repo, target, &ids, &options).await?)
            }
            .await;
            match copied {
                Ok(summary) => log.push(LogLine::new(
                    "info",
                    format!(
                        "copy to {shown}: {} snapshot(s) copied, {} already there",
                        summary.snapshots.copied, summary.snapshots.skipped
                    ),
                )),
                Err(e) => {
                    let line = scrub(&format!(
                        "the snapshot is saved here, but the copy to {shown} failed: {e:#};                          the next run copies it"
                    ))
                    .into_owned();
                    log.push(LogLine::new("error", line.clone()));
                    failures.push(line);
                }
            }
        }
        if let Err(e) = lock.release().await {
            log.push(LogLine::new(
                "warning",
                format!("cannot remove the lock: {e}"),
            ));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    async fn retention(&self, trigger: &str) -> Ending {
        if !self.config.has_retention() {
            return failed("the configuration file has no `retention:` rules".to_owned());
        }
        let zone_name = self
            .config
            .retention
            .as_ref()
            .and_then(|r| r.time_zone.clone())
            .unwrap_or_else(|| "UTC".to_owned());
        let zone = match super::schedule::zone(&zone_name) {
            Ok(z) => z,
            Err(e) => return failed(format!("retention.time_zone: {e}")),
        };
        let options = crate::forget::ForgetOptions {
            policies: crate::forget::policies_of_config(&self.config),
            bases: self.config.bases.iter().map(|b| b.id.clone()).collect(),
            zone,
            zone_name,
            now: Timestamp::now(),
        };
        let _gate = self.gate.write().await;
        let repo = match self.repo.lock_exclusive("serve retention").await {
            Ok(r) => r,
            Err(e) => return failed(format!("cannot lock the repository: {e}")),
        };
        let result = async {
            let plan = crate::forget::plan(crate::snapshots::list(&repo).await?, &options)?;
            let removed = crate::forget::remove(&repo, &plan).await?;
            // After a snapshot (`after_snapshot`), prune only when the config says so; on
            // its own schedule, retention is `forget --prune`.
            let prune = trigger != super::scheduler::AFTER_SNAPSHOT
                || self.config.retention.as_ref().is_some_and(|r| r.prune);
            let pruned = if prune {
                Some(crate::prune::prune(&repo, &crate::prune::PruneOptions::default()).await?)
            } else {
                None
            };
            anyhow::Ok((removed, pruned))
        }
        .await;
        let released = repo.release().await;
        self.refresh().await;
        match result {
            Ok((removed, pruned)) => {
                let text = match pruned {
                    Some(pruned) => format!(
                        "removed {removed} snapshot(s); prune deleted {} pack(s) and freed {} \
                         byte(s)",
                        pruned.packs.delete, pruned.bytes.deleted
                    ),
                    None => format!(
                        "removed {removed} snapshot(s); not pruned (`retention.prune` is off)"
                    ),
                };
                let mut log = vec![LogLine::new("info", text)];
                if let Err(e) = released {
                    log.push(LogLine::new(
                        "warning",
                        format!("cannot remove the lock: {e}"),
                    ));
                }
                Ending {
                    outcome: Some(Outcome::Ok),
                    log,
                    ..Ending::default()
                }
            }
            Err(e) => failed(format!("retention failed: {e:#}")),
        }
    }

    async fn check(&self) -> Ending {
        let subset = self
            .config
            .check
            .as_ref()
            .and_then(|c| c.read_data_subset)
            .map(|percent| {
                let m = 100u32.div_ceil(u32::from(percent)).max(1);
                let done = self.history.count_ended(JobKind::Check).unwrap_or(0);
                crate::check::Subset {
                    n: u32::try_from(done % u64::from(m)).unwrap_or(0) + 1,
                    m,
                }
            });
        let _gate = self.gate.read().await;
        let lock = match self.repo.lock(false, "serve check").await {
            Ok(l) => l,
            Err(e) => return failed(format!("cannot lock the repository: {e}")),
        };
        let options = crate::check::CheckOptions {
            read_data: false,
            subset,
        };
        let report = crate::check::check(&self.repo, &options).await;
        let _ = lock.release().await;
        match report {
            Ok(report) => {
                let mut log: Vec<LogLine> = report
                    .warnings
                    .iter()
                    .map(|w| LogLine::new("warning", scrub(w)))
                    .collect();
                log.extend(
                    report
                        .errors
                        .iter()
                        .map(|e| LogLine::new("error", scrub(e))),
                );
                if let Some(s) = subset {
                    log.push(LogLine::new(
                        "info",
                        format!(
                            "read slice {}/{} of the packs: {} pack(s), {} byte(s)",
                            s.n, s.m, report.packs_read, report.bytes_read
                        ),
                    ));
                }
                let ok = report.is_ok();
                Ending {
                    outcome: Some(if ok { Outcome::Ok } else { Outcome::Failed }),
                    error: (!ok).then(|| {
                        format!(
                            "check found {} error(s); run `airback check` for details and \
                             `airback repair` to fix them",
                            report.errors.len()
                        )
                    }),
                    log,
                    ..Ending::default()
                }
            }
            Err(e) => failed(format!("check failed: {e}")),
        }
    }
}

impl JobRunner {
    /// Restores `request` in place into `base`, after a safety snapshot.
    async fn restore(&self, base: &str, request: &super::inplace::RestoreRequest) -> Ending {
        let _gate = self.gate.read().await;
        // The safety snapshot takes a writer lock of its own, and the repository handle keeps
        // one writer session: so no snapshot may run meanwhile. Wait until the snapshots
        // running now are done, and hold their door shut until the restore ends.
        let _no_snapshots = loop {
            let writers = self.writers.lock().await;
            if writers.users == 0 {
                break writers;
            }
            drop(writers);
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        };
        let lock = match self.repo.lock(false, "serve restore --in-place").await {
            Ok(l) => l,
            Err(e) => return failed(format!("cannot lock the repository: {e}")),
        };
        let result = async {
            let id: crate::id::SnapshotId = request
                .snapshot
                .parse()
                .map_err(|e| anyhow::anyhow!("snapshot `{}`: {e}", request.snapshot))?;
            let snapshot = self.repo.load_snapshot(&id).await?;
            let stored = crate::stored::StoredBase::open(&self.repo, id, snapshot).await?;
            let options = crate::restore::InPlaceOptions {
                safety_snapshot: BackupOptions::from_config(&self.config, base),
                journal: self.journal.clone(),
                ..request.options()
            };
            let report = crate::restore::restore_in_place(
                &stored,
                &self.client,
                &options,
                Arc::new(crate::progress::NoProgress),
            )
            .await?;
            anyhow::Ok(report)
        }
        .await;
        let released = lock.release().await;
        let mut ending = match result {
            Ok(r) => {
                let mut log = vec![LogLine::new(
                    "info",
                    format!(
                        "restored {}: {} record(s) created, {} updated, {} deleted, {} file(s) \
                         uploaded, {} comment(s) created; safety snapshot {}",
                        request.describe(),
                        r.records_created,
                        r.records_updated,
                        r.records_deleted,
                        r.attachments_uploaded,
                        r.comments_created,
                        r.safety_snapshot.as_deref().unwrap_or("none"),
                    ),
                )];
                for (old, new) in &r.recreated {
                    log.push(LogLine::new(
                        "info",
                        format!("record {old} created again as {new}"),
                    ));
                }
                if let Some(v) = &r.verified {
                    log.push(LogLine::new(
                        "info",
                        format!(
                            "verified: {} record(s) read again, {} cell(s) differ, {} record(s) \
                             wrong",
                            v.records, v.cells_differing, v.records_wrong
                        ),
                    ));
                }
                for p in &r.problems {
                    log.push(LogLine::new("warning", scrub(p)));
                }
                let complete = r.is_complete();
                Ending {
                    outcome: Some(if complete {
                        Outcome::Ok
                    } else {
                        Outcome::Partial
                    }),
                    figures: Figures {
                        records: r.records_created + r.records_updated + r.records_deleted,
                        requests: r.requests,
                        rate_limited: r.rate_limited,
                        ..Figures::default()
                    },
                    snapshot: r.safety_snapshot.clone(),
                    error: (!complete).then(|| {
                        scrub(&format!(
                            "the restore of {} is incomplete: {}",
                            request.describe(),
                            r.problems.join("; ")
                        ))
                        .into_owned()
                    }),
                    log,
                    follow_up: None,
                }
            }
            Err(e) => failed(format!("restore of {} failed: {e:#}", request.describe())),
        };
        if let Err(e) = released {
            ending.log.push(LogLine::new(
                "warning",
                format!("cannot remove the lock: {e}"),
            ));
        }
        if let Ok(Some((id, s))) = crate::snapshots::latest(&self.repo, Some(base)).await {
            self.remember_latest(base, &id, &s).await;
        }
        ending
    }
}

/// A failed ending with `error` (scrubbed of secrets) as its error and log line.
fn failed(error: String) -> Ending {
    let error = scrub(&error).into_owned();
    Ending {
        outcome: Some(Outcome::Failed),
        log: vec![LogLine::new("error", error.clone())],
        error: Some(error),
        ..Ending::default()
    }
}

impl Runner for Arc<JobRunner> {
    fn run(&self, job: Job) -> BoxFuture<Ending> {
        let this = Arc::clone(self);
        Box::pin(async move {
            // Restores are asked for on the page and watched there: no alerts.
            let mut early = if job.kind == JobKind::Restore {
                Vec::new()
            } else {
                this.alerter.started(this.alerts(&job)).await
            };
            let mut ending = match (job.kind, job.base.as_deref()) {
                (JobKind::Snapshot, Some(base)) => this.snapshot(base).await,
                (JobKind::Snapshot, None) => failed("a snapshot job needs a base".to_owned()),
                (JobKind::Retention, _) => this.retention(&job.trigger).await,
                (JobKind::Check, _) => this.check().await,
                (JobKind::Restore, Some(base)) => match &job.restore {
                    Some(request) => this.restore(base, request).await,
                    None => failed("a restore job needs what to restore".to_owned()),
                },
                (JobKind::Restore, None) => failed("a restore job needs a base".to_owned()),
            };
            early.append(&mut ending.log);
            ending.log = early;
            ending
        })
    }

    fn after(&self, job: Job, row: Option<JobRow>) -> BoxFuture<()> {
        let this = Arc::clone(self);
        Box::pin(async move {
            let Some(row) = row else { return };
            if job.kind == JobKind::Restore {
                return;
            }
            let alerts = this.alerts(&job).clone();
            if alerts.is_empty() {
                return;
            }
            for line in this.alerter.ended(&alerts, &row).await {
                tracing::warn!("job {}: {}", job.id, line.text);
                if let Err(e) = this.history.log(job.id, &line) {
                    tracing::warn!("{e}");
                }
            }
        })
    }
}
