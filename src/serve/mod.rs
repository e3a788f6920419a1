//! `airback serve`: a long-running service that takes the configuration file's snapshots,
//! retention and checks on their schedules, keeps a history of its jobs, sends alerts, and
//! answers HTTP: Prometheus metrics and a JSON API for scripts and the web page.
//!
//! One file per concern: [`schedule`] (cron expressions in a time zone, and the clock),
//! [`scheduler`] (lanes of queued jobs, one job per base at a time, missed runs once at
//! start), [`jobs`] (what each job does, through the library), [`history`] (the SQLite job
//! history), [`joblog`] (the warnings and errors logged inside a job, for its history),
//! [`alerts`] (healthchecks, webhook, command), [`http`] (the endpoints and their
//! security: loopback by default, a bearer token or session cookie, CSRF tokens on POSTs),
//! `browse` (the web page's views of the repository: snapshots, records, history, diff,
//! export downloads), [`inplace`] (restoring one record or table in place: plan, then job)
//! and `web` (the page itself, built into the binary).
//! This module builds them from the configuration and starts and stops the service; the
//! command line (`src/cli/serve.rs`) opens the repository and the Airtable client and prints.

pub mod alerts;
mod browse;
pub mod history;
pub mod http;
pub mod inplace;
pub mod joblog;
pub mod jobs;
pub mod schedule;
pub mod scheduler;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::airtable::Client;
use crate::config::Config;
use crate::repo::Repository;
use history::{History, HistoryError, JobKind};
use jobs::JobRunner;
use schedule::{Clock, Schedule, ScheduleError, SystemClock};
use scheduler::{JobSpec, Scheduler};

/// How to run the service.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen (port 0: the system picks one).
    pub listen: SocketAddr,
    /// The access token every request must carry (required off loopback).
    pub auth_token: Option<secrecy::SecretString>,
    /// Where the job history lives (`serve.sqlite`).
    pub state_dir: PathBuf,
    /// Bases (lanes) running jobs at once.
    pub concurrency: usize,
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Listening off loopback without an access token.
    #[error(
        "refusing to listen on {0} without an access token: anyone who can reach it could \
         start jobs; pass --auth-token-file FILE, or listen on 127.0.0.1"
    )]
    NeedsToken(SocketAddr),
    /// The state directory cannot be created.
    #[error("cannot create the state directory {}; pass --state-dir DIR: {source}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The history database failed.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// A schedule is invalid.
    #[error("{what}: {source}")]
    Schedule {
        /// Which key.
        what: String,
        /// Why.
        #[source]
        source: ScheduleError,
    },
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ServeOptions {
    /// Refuses a non-loopback address without an access token.
    pub fn validate(&self) -> Result<(), ServeError> {
        if !self.listen.ip().is_loopback() && self.auth_token.is_none() {
            return Err(ServeError::NeedsToken(self.listen));
        }
        Ok(())
    }
}

/// The recurring jobs of `config`: each base's snapshots, retention and check.
pub fn job_specs(config: &Config) -> Result<Vec<JobSpec>, ServeError> {
    let mut specs = Vec::new();
    let schedule = |what: String, text: &str, zone: &str| {
        Schedule::new(text, zone).map_err(|source| ServeError::Schedule { what, source })
    };
    for base in &config.bases {
        if let Some((text, zone)) = config.schedule_for(base) {
            specs.push(JobSpec {
                kind: JobKind::Snapshot,
                base: Some(base.id.clone()),
                schedule: schedule(format!("base {}: schedule", base.id), text, zone)?,
            });
        }
    }
    let zone = config.zone_for(None);
    if let Some(text) = config
        .retention
        .as_ref()
        .and_then(|r| r.schedule.as_deref())
    {
        specs.push(JobSpec {
            kind: JobKind::Retention,
            base: None,
            schedule: schedule("retention.schedule".into(), text, zone)?,
        });
    }
    if let Some(check) = &config.check {
        specs.push(JobSpec {
            kind: JobKind::Check,
            base: None,
            schedule: schedule("check.schedule".into(), &check.schedule, zone)?,
        });
    }
    Ok(specs)
}

/// The running service's parts, shared with the HTTP handlers.
pub struct Service {
    /// The configuration.
    pub config: Arc<Config>,
    /// The queues.
    pub scheduler: Arc<Scheduler>,
    /// What runs the jobs.
    pub runner: Arc<JobRunner>,
    /// The recurring jobs.
    pub specs: Vec<JobSpec>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where the history and temporary exports live.
    pub state_dir: PathBuf,
}

/// A started service: its address, and what stops it.
pub struct Running {
    addr: SocketAddr,
    service: Arc<Service>,
    stop_http: tokio::sync::oneshot::Sender<()>,
    http: tokio::task::JoinHandle<()>,
    schedules: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The address it listens on (the real port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service's parts.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Stops taking jobs and requests, cancels the running jobs (the repository stays valid:
    /// an interrupted snapshot saves nothing and the next reuses what it uploaded) and records
    /// them as failed.
    pub async fn stop(self) {
        self.schedules.abort();
        let _ = self.stop_http.send(());
        self.service.scheduler.stop().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.http).await;
    }
}

/// Starts the service on an open repository with the Airtable client all jobs share, and
/// the open repositories of the config's `copies:`.
pub async fn start(
    options: ServeOptions,
    repo: Repository,
    client: Client,
    config: Config,
    copies: Vec<(crate::config::CopyTarget, Repository)>,
) -> Result<Running, ServeError> {
    options.validate()?;
    let specs = job_specs(&config)?;
    std::fs::create_dir_all(&options.state_dir).map_err(|source| ServeError::StateDir {
        path: options.state_dir.clone(),
        source,
    })?;
    // Exports a stopped service was preparing for a download: nobody will fetch them.
    let _ = std::fs::remove_dir_all(options.state_dir.join("exports"));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let history = Arc::new(History::open(
        &options.state_dir.join("serve.sqlite"),
        clock.now(),
    )?);
    let config = Arc::new(config);
    let runner = Arc::new(
        JobRunner::new(repo, client, Arc::clone(&config), Arc::clone(&history))
            .with_copies(copies)
            .with_lanes(options.concurrency.clamp(1, config.bases.len().max(1)))
            .with_journal(options.state_dir.join("restore.sqlite")),
    );
    let scheduler = Scheduler::new(
        history,
        Arc::clone(&clock),
        Arc::new(Arc::clone(&runner)),
        options.concurrency,
    );
    let service = Arc::new(Service {
        config,
        scheduler: Arc::clone(&scheduler),
        runner: Arc::clone(&runner),
        specs: specs.clone(),
        clock,
        state_dir: options.state_dir.clone(),
    });
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: options.listen,
        source,
    })?;
    let app = http::router(Arc::clone(&service), options.auth_token);
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!("the HTTP server stopped: {e}");
        }
    });
    // What the latest snapshots hold, for `/metrics`, read while requests are answered.
    let refresh = Arc::clone(&runner);
    let schedules = tokio::spawn(async move {
        refresh.refresh().await;
        scheduler.run_schedules(specs).await;
    });
    Ok(Running {
        addr,
        service,
        stop_http,
        http,
        schedules,
    })
}
