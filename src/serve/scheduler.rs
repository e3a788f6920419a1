//! The scheduler: turns schedules into queued jobs and runs the queues. Each base has one
//! lane (the jobs on the whole repository, retention and check, share one more), and a lane
//! runs one job at a time, in the order queued: a snapshot due while its base's previous job
//! runs waits for it. Lanes run side by side, at most `concurrency` at once. A job that is
//! already waiting in its lane is not queued twice.
//!
//! At start, a job whose schedule named a time between its last start (from the history) and
//! now runs once, not once per slot it missed. Then the loop sleeps until the next due time
//! (the [`Clock`] is injected; tests move a [`super::schedule::ManualClock`] by hand).
//!
//! What a job does is the [`Runner`]'s business; the scheduler records its start and end in
//! the [`History`], with the warnings and errors logged inside the job (`super::joblog`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::history::{Ending, History, HistoryError, JobKind, JobRow, Outcome};
use super::schedule::{Clock, Schedule};

/// The trigger of a job queued by the end of a snapshot (`retention.after_snapshot`).
pub const AFTER_SNAPSHOT: &str = "after-snapshot";

/// A job to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id in the history.
    pub id: i64,
    /// What it does.
    pub kind: JobKind,
    /// Its base, or `None` for the whole repository.
    pub base: Option<String>,
    /// `schedule`, `missed`, `manual` or `after-snapshot`.
    pub trigger: String,
    /// What a restore job brings back (`None` for the other kinds).
    pub restore: Option<super::inplace::RestoreRequest>,
}

/// A boxed future, as [`Runner`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Does the jobs.
pub trait Runner: Send + Sync + 'static {
    /// Runs `job` to its end.
    fn run(&self, job: Job) -> BoxFuture<Ending>;
    /// After the job's end was recorded (`row`): alerts, figures.
    fn after(&self, _job: Job, _row: Option<JobRow>) -> BoxFuture<()> {
        Box::pin(async {})
    }
}

/// A recurring job.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// What it does.
    pub kind: JobKind,
    /// Its base (`None`: the whole repository).
    pub base: Option<String>,
    /// When.
    pub schedule: Schedule,
}

#[derive(Default)]
struct Lane {
    running: Option<i64>,
    pending: VecDeque<Job>,
}

/// The queues and what runs them.
pub struct Scheduler {
    history: Arc<History>,
    clock: Arc<dyn Clock>,
    runner: Arc<dyn Runner>,
    lanes: Mutex<HashMap<Option<String>, Lane>>,
    slots: Arc<Semaphore>,
    tasks: Mutex<JoinSet<()>>,
    stopped: std::sync::atomic::AtomicBool,
}

impl Scheduler {
    /// A scheduler running at most `concurrency` lanes at once.
    pub fn new(
        history: Arc<History>,
        clock: Arc<dyn Clock>,
        runner: Arc<dyn Runner>,
        concurrency: usize,
    ) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            history,
            clock,
            runner,
            lanes: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            tasks: Mutex::new(JoinSet::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The history the scheduler writes.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// Queues a job, unless one of the same kind already waits in its lane (then that one's
    /// id). Returns the job's id; `None` once the scheduler is stopped.
    pub fn enqueue(
        self: &Arc<Self>,
        kind: JobKind,
        base: Option<&str>,
        trigger: &str,
    ) -> Result<Option<i64>, HistoryError> {
        self.push(kind, base, trigger, None)
    }

    /// Queues a restore of `request` into `base`, behind the base's other jobs (never merged
    /// with another restore: each brings back its own selection).
    pub fn enqueue_restore(
        self: &Arc<Self>,
        base: &str,
        request: super::inplace::RestoreRequest,
    ) -> Result<Option<i64>, HistoryError> {
        self.push(JobKind::Restore, Some(base), "manual", Some(request))
    }

    fn push(
        self: &Arc<Self>,
        kind: JobKind,
        base: Option<&str>,
        trigger: &str,
        restore: Option<super::inplace::RestoreRequest>,
    ) -> Result<Option<i64>, HistoryError> {
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
        let key = base.map(str::to_owned);
        if restore.is_none() {
            let lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(waiting) = lanes
                .get(&key)
                .and_then(|l| l.pending.iter().find(|j| j.kind == kind))
            {
                return Ok(Some(waiting.id));
            }
        }
        let id = self.history.queue(kind, base, trigger, self.clock.now())?;
        let job = Job {
            id,
            kind,
            base: key.clone(),
            trigger: trigger.to_owned(),
            restore,
        };
        self.lanes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .pending
            .push_back(job);
        self.pump(&key);
        Ok(Some(id))
    }

    /// The job running in `base`'s lane, if any.
    pub fn running(&self, base: Option<&str>) -> Option<i64> {
        let lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes.get(&base.map(str::to_owned)).and_then(|l| l.running)
    }

    /// Starts the lane's next job if the lane is free.
    fn pump(self: &Arc<Self>, key: &Option<String>) {
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let job = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            let lane = lanes.entry(key.clone()).or_default();
            if lane.running.is_some() {
                return;
            }
            let Some(job) = lane.pending.pop_front() else {
                return;
            };
            lane.running = Some(job.id);
            job
        };
        let this = Arc::clone(self);
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let key = job.base.clone();
            {
                let _slot = this.slots.acquire().await;
                let history = &this.history;
                if let Err(e) = history.start(job.id, this.clock.now()) {
                    tracing::warn!("{e}");
                }
                let (span, capture) = super::joblog::span(job.id);
                let mut ending = this.runner.run(job.clone()).instrument(span).await;
                ending.log.extend(super::joblog::take(capture));
                // The follow-up is queued before the end is recorded, so whoever sees the
                // job ended sees its follow-up too.
                if let Some(kind) = ending.follow_up
                    && let Err(e) = this.enqueue(kind, None, AFTER_SNAPSHOT)
                {
                    tracing::warn!("{e}");
                }
                if let Err(e) = history.finish(job.id, this.clock.now(), &ending) {
                    tracing::warn!("{e}");
                }
                let row = history.get(job.id).ok().flatten();
                this.runner.after(job, row).await;
            }
            if let Some(lane) = this
                .lanes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&key)
            {
                lane.running = None;
            }
            this.pump(&key);
        });
    }

    /// Runs the schedules until dropped: first the jobs missed while the service was down
    /// (once each), then each job when it is due, sleeping in between.
    pub async fn run_schedules(self: Arc<Self>, specs: Vec<JobSpec>) {
        let now = self.clock.now();
        let mut next: Vec<Option<Timestamp>> = Vec::with_capacity(specs.len());
        for spec in &specs {
            let last = self
                .history
                .last_started(spec.kind, spec.base.as_deref())
                .unwrap_or_else(|e| {
                    tracing::warn!("{e}");
                    None
                });
            let due = spec.schedule.due(last, now);
            if last.is_some() && due.is_some_and(|d| d <= now) {
                self.enqueue_logged(spec, "missed");
                next.push(spec.schedule.next_after(now));
            } else {
                next.push(due);
            }
        }
        loop {
            let now = self.clock.now();
            for (spec, next) in specs.iter().zip(next.iter_mut()) {
                if next.is_some_and(|n| n <= now) {
                    self.enqueue_logged(spec, "schedule");
                    *next = spec.schedule.next_after(now);
                }
            }
            match next.iter().flatten().min() {
                Some(&wake) => self.clock.sleep_until(wake).await,
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn enqueue_logged(self: &Arc<Self>, spec: &JobSpec, trigger: &str) {
        if let Err(e) = self.enqueue(spec.kind, spec.base.as_deref(), trigger) {
            tracing::warn!("cannot queue the {} job: {e}", spec.kind.as_str());
        }
    }

    /// When `spec` is next due, seen now (for the pages).
    pub fn next_run(&self, spec: &JobSpec) -> Option<Timestamp> {
        spec.schedule.next_after(self.clock.now())
    }

    /// Stops: no job is queued or started any more, the running ones are cancelled (their
    /// futures dropped, which leaves the repository valid), and every job that was running or
    /// waiting is recorded as failed with why.
    pub async fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let lanes = std::mem::take(&mut *self.lanes.lock().unwrap_or_else(|e| e.into_inner()));
        let now = self.clock.now();
        for lane in lanes.into_values() {
            let cancelled = lane
                .running
                .map(|id| (id, "the service was stopped while the job ran"));
            let waiting = lane
                .pending
                .iter()
                .map(|j| (j.id, "the service was stopped before the job started"));
            for (id, why) in cancelled.into_iter().chain(waiting) {
                let ending = Ending {
                    outcome: Some(Outcome::Failed),
                    error: Some(why.to_owned()),
                    ..Ending::default()
                };
                if let Err(e) = self.history.finish(id, now, &ending) {
                    tracing::warn!("{e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::schedule::ManualClock;
    use tokio::sync::{mpsc, oneshot};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Reports each job it starts, then waits until the test releases it.
    struct Gate {
        started: mpsc::UnboundedSender<Job>,
        release: Mutex<HashMap<i64, oneshot::Sender<Outcome>>>,
    }

    impl Gate {
        fn release(&self, id: i64) {
            let tx = self
                .release
                .lock()
                .unwrap()
                .remove(&id)
                .expect("a running job");
            tx.send(Outcome::Ok).unwrap();
        }
    }

    impl Runner for Gate {
        fn run(&self, job: Job) -> BoxFuture<Ending> {
            let (tx, rx) = oneshot::channel();
            self.release.lock().unwrap().insert(job.id, tx);
            let id = job.id;
            self.started.send(job).unwrap();
            Box::pin(async move {
                let outcome = rx.await.unwrap_or(Outcome::Failed);
                tracing::warn!("job {id} was let go");
                Ending {
                    outcome: Some(outcome),
                    ..Ending::default()
                }
            })
        }
    }

    fn setup(
        now: Timestamp,
    ) -> (
        Arc<Scheduler>,
        ManualClock,
        Arc<Gate>,
        mpsc::UnboundedReceiver<Job>,
    ) {
        let clock = ManualClock::new(now);
        let (tx, rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Gate {
            started: tx,
            release: Mutex::new(HashMap::new()),
        });
        let history = Arc::new(History::in_memory(now).unwrap());
        let scheduler = Scheduler::new(history, Arc::new(clock.clone()), gate.clone(), 4);
        (scheduler, clock, gate, rx)
    }

    fn hourly(base: &str) -> JobSpec {
        JobSpec {
            kind: JobKind::Snapshot,
            base: Some(base.into()),
            schedule: Schedule::new("0 * * * *", "UTC").unwrap(),
        }
    }

    /// Lets the spawned tasks run until they wait on something.
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    async fn wait_ended(s: &Scheduler, id: i64) {
        for _ in 0..1000 {
            if s.history.get(id).unwrap().unwrap().outcome.is_final() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("job {id} did not end");
    }

    #[tokio::test]
    async fn jobs_run_when_due_and_not_before() {
        let (s, clock, gate, mut started) = setup(ts("2026-03-01T10:30:00Z"));
        let loop_ = tokio::spawn(s.clone().run_schedules(vec![hourly("appA")]));
        settle().await;
        // Never ran: nothing at start, the next slot is 11:00.
        assert!(started.try_recv().is_err());
        clock.set(ts("2026-03-01T10:59:59Z"));
        settle().await;
        assert!(started.try_recv().is_err());
        clock.set(ts("2026-03-01T11:00:00Z"));
        let job = started.recv().await.unwrap();
        assert_eq!(
            (job.base.as_deref(), job.trigger.as_str()),
            (Some("appA"), "schedule")
        );
        gate.release(job.id);
        wait_ended(&s, job.id).await;
        let row = s.history.get(job.id).unwrap().unwrap();
        assert_eq!(row.outcome, Outcome::Ok);
        assert_eq!(row.started, Some(ts("2026-03-01T11:00:00Z")));
        // And again at 12:00.
        clock.set(ts("2026-03-01T12:00:00Z"));
        let job = started.recv().await.unwrap();
        assert_eq!(job.trigger, "schedule");
        loop_.abort();
    }

    #[tokio::test]
    async fn a_run_missed_while_down_runs_once_at_start() {
        let now = ts("2026-03-01T10:30:00Z");
        let (s, clock, gate, mut started) = setup(now);
        // Last ran at 06:00: 07:00, 08:00, 09:00 and 10:00 were missed.
        let old = s
            .history
            .queue(
                JobKind::Snapshot,
                Some("appA"),
                "schedule",
                ts("2026-03-01T06:00:00Z"),
            )
            .unwrap();
        s.history.start(old, ts("2026-03-01T06:00:00Z")).unwrap();
        s.history
            .finish(
                old,
                ts("2026-03-01T06:01:00Z"),
                &Ending {
                    outcome: Some(Outcome::Ok),
                    ..Ending::default()
                },
            )
            .unwrap();
        // appB ran at 10:00, in time: nothing missed.
        let b = s
            .history
            .queue(
                JobKind::Snapshot,
                Some("appB"),
                "schedule",
                ts("2026-03-01T10:00:00Z"),
            )
            .unwrap();
        s.history.start(b, ts("2026-03-01T10:00:00Z")).unwrap();
        let loop_ = tokio::spawn(
            s.clone()
                .run_schedules(vec![hourly("appA"), hourly("appB")]),
        );
        let job = started.recv().await.unwrap();
        assert_eq!(
            (job.base.as_deref(), job.trigger.as_str()),
            (Some("appA"), "missed")
        );
        gate.release(job.id);
        wait_ended(&s, job.id).await;
        settle().await;
        // Once: no second catch-up run, and nothing for appB.
        assert!(started.try_recv().is_err());
        assert_eq!(s.history.list(Some("appA"), 10).unwrap().len(), 2);
        assert_eq!(s.history.list(Some("appB"), 10).unwrap().len(), 1);
        // The schedule goes on from now: 11:00 for both.
        clock.set(ts("2026-03-01T11:00:00Z"));
        let mut bases = vec![
            started.recv().await.unwrap().base,
            started.recv().await.unwrap().base,
        ];
        bases.sort();
        assert_eq!(
            bases,
            vec![Some("appA".to_owned()), Some("appB".to_owned())]
        );
        loop_.abort();
    }

    #[tokio::test]
    async fn one_job_per_base_at_a_time_and_bases_in_parallel() {
        let (s, _clock, gate, mut started) = setup(ts("2026-03-01T10:30:00Z"));
        let first = s
            .enqueue(JobKind::Snapshot, Some("appA"), "manual")
            .unwrap()
            .unwrap();
        assert_eq!(started.recv().await.unwrap().id, first);
        // A second snapshot of appA waits; a third is the same waiting job, not another.
        let second = s
            .enqueue(JobKind::Snapshot, Some("appA"), "schedule")
            .unwrap()
            .unwrap();
        assert_eq!(
            s.enqueue(JobKind::Snapshot, Some("appA"), "manual")
                .unwrap(),
            Some(second)
        );
        // appB's job and the repository's check run meanwhile.
        let other = s
            .enqueue(JobKind::Snapshot, Some("appB"), "manual")
            .unwrap()
            .unwrap();
        let check = s.enqueue(JobKind::Check, None, "manual").unwrap().unwrap();
        let mut ids = vec![
            started.recv().await.unwrap().id,
            started.recv().await.unwrap().id,
        ];
        ids.sort();
        assert_eq!(ids, vec![other, check]);
        settle().await;
        assert!(
            started.try_recv().is_err(),
            "appA's second job started while its first ran"
        );
        assert_eq!(
            s.history.get(second).unwrap().unwrap().outcome,
            Outcome::Queued
        );
        assert_eq!(s.running(Some("appA")), Some(first));
        gate.release(first);
        assert_eq!(started.recv().await.unwrap().id, second);
        gate.release(second);
        gate.release(other);
        gate.release(check);
        for id in [first, second, other, check] {
            wait_ended(&s, id).await;
        }
    }

    #[tokio::test]
    async fn warnings_logged_inside_a_job_are_in_its_history() {
        use tracing_subscriber::layer::SubscriberExt;
        let _log = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(crate::serve::joblog::JobLogLayer),
        );
        let (s, _clock, gate, mut started) = setup(ts("2026-03-01T10:30:00Z"));
        let id = s
            .enqueue(JobKind::Snapshot, Some("appA"), "manual")
            .unwrap()
            .unwrap();
        started.recv().await.unwrap();
        tracing::warn!("not inside the job");
        gate.release(id);
        wait_ended(&s, id).await;
        let log = s.history.get(id).unwrap().unwrap().log.unwrap();
        assert_eq!(
            log,
            vec![crate::serve::history::LogLine::new(
                "warning",
                format!("job {id} was let go")
            )]
        );
    }

    #[tokio::test]
    async fn stopping_cancels_running_and_waiting_jobs() {
        let (s, _clock, _gate, mut started) = setup(ts("2026-03-01T10:30:00Z"));
        let running = s
            .enqueue(JobKind::Snapshot, Some("appA"), "manual")
            .unwrap()
            .unwrap();
        started.recv().await.unwrap();
        let waiting = s
            .enqueue(JobKind::Snapshot, Some("appA"), "schedule")
            .unwrap()
            .unwrap();
        s.stop().await;
        for (id, why) in [
            (running, "while the job ran"),
            (waiting, "before the job started"),
        ] {
            let row = s.history.get(id).unwrap().unwrap();
            assert_eq!(row.outcome, Outcome::Failed);
            assert!(row.error.unwrap().contains(why));
        }
        assert_eq!(
            s.enqueue(JobKind::Snapshot, Some("appA"), "manual")
                .unwrap(),
            None
        );
    }
}
