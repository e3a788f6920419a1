//! The job history of `airback serve`: one SQLite database in the state directory, one row
//! per job (queued, started, ended, kind, base, outcome, figures, error) and its log lines.
//! It survives restarts: the scheduler reads when each job last started to run a missed one
//! once, and a job that was queued or running when the service stopped is marked failed when
//! the database is next opened.

use std::path::Path;
use std::sync::Mutex;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// A snapshot of one base.
    Snapshot,
    /// `forget --prune` by the config's retention rules, for every base.
    Retention,
    /// `check`, with a slice of the data read when the config says so.
    Check,
    /// `restore --in-place` of one record or table, asked for on the web page.
    Restore,
}

impl JobKind {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Snapshot => "snapshot",
            JobKind::Retention => "retention",
            JobKind::Check => "check",
            JobKind::Restore => "restore",
        }
    }

    fn parse(s: &str) -> JobKind {
        match s {
            "retention" => JobKind::Retention,
            "check" => JobKind::Check,
            "restore" => JobKind::Restore,
            _ => JobKind::Snapshot,
        }
    }
}

/// Where a job is, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Waiting for its base (or the repository) to be free.
    Queued,
    /// Running.
    Running,
    /// Done, nothing missing.
    Ok,
    /// A snapshot was saved, but some items are missing from it.
    Partial,
    /// Nothing was saved, or the check found errors.
    Failed,
}

impl Outcome {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Running => "running",
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Outcome {
        match s {
            "queued" => Outcome::Queued,
            "running" => Outcome::Running,
            "ok" => Outcome::Ok,
            "partial" => Outcome::Partial,
            _ => Outcome::Failed,
        }
    }

    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, Outcome::Queued | Outcome::Running)
    }
}

/// A job's figures (zero where they do not apply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Records backed up.
    pub records: u64,
    /// Attachments downloaded.
    pub attachments_downloaded: u64,
    /// Bytes written to the repository.
    pub bytes_added: u64,
    /// Airtable API requests.
    pub requests: u64,
    /// 429 answers.
    pub rate_limited: u64,
}

/// One log line of a job: its warnings and errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// `warning` or `error` (or `info`).
    pub level: String,
    /// The text.
    pub text: String,
}

impl LogLine {
    /// A line at `level`.
    pub fn new(level: &str, text: impl Into<String>) -> LogLine {
        LogLine {
            level: level.to_owned(),
            text: text.into(),
        }
    }
}

/// One job, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    /// Its id, increasing.
    pub id: i64,
    /// What it does.
    pub kind: JobKind,
    /// Its base (`None` for a job on the whole repository).
    pub base: Option<String>,
    /// Why it ran: `schedule`, `missed` (due while the service was down) or `manual`.
    pub trigger: String,
    /// When it was queued (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub queued: Timestamp,
    /// When it started.
    #[serde(serialize_with = "rfc3339_opt")]
    pub started: Option<Timestamp>,
    /// When it ended.
    #[serde(serialize_with = "rfc3339_opt")]
    pub ended: Option<Timestamp>,
    /// Where it is, or how it ended.
    pub outcome: Outcome,
    /// The snapshot it saved.
    pub snapshot: Option<String>,
    /// Its figures.
    pub figures: Figures,
    /// Why it failed, or what a partial snapshot lacks.
    pub error: Option<String>,
    /// Its log lines (only in [`History::get`]'s answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<LogLine>>,
}

impl JobRow {
    /// Seconds from start to end, once it has ended.
    pub fn duration_secs(&self) -> Option<f64> {
        let (start, end) = (self.started?, self.ended?);
        Some(start.duration_until(end).as_secs_f64())
    }
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_string())
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_string()),
        None => s.serialize_none(),
    }
}

/// The history database failed.
#[derive(Debug, thiserror::Error)]
#[error("job history database {path}: {source}")]
pub struct HistoryError {
    /// The database file (or `memory`).
    path: String,
    /// What SQLite said.
    #[source]
    source: rusqlite::Error,
}

/// How a job ended, as [`History::finish`] stores it.
#[derive(Debug, Clone, Default)]
pub struct Ending {
    /// Ok, partial or failed.
    pub outcome: Option<Outcome>,
    /// The figures.
    pub figures: Figures,
    /// The snapshot saved.
    pub snapshot: Option<String>,
    /// The error or what is missing.
    pub error: Option<String>,
    /// Warnings and errors.
    pub log: Vec<LogLine>,
    /// A job to queue once this one is recorded (retention after a snapshot, when the
    /// config's `retention.after_snapshot` says so); not stored.
    pub follow_up: Option<JobKind>,
}

/// The job history. Calls are short and synchronous (a mutex around one connection).
#[derive(Debug)]
pub struct History {
    conn: Mutex<Connection>,
    path: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    base TEXT,
    trigger TEXT NOT NULL,
    queued_ms INTEGER NOT NULL,
    started_ms INTEGER,
    ended_ms INTEGER,
    outcome TEXT NOT NULL,
    snapshot TEXT,
    records INTEGER NOT NULL DEFAULT 0,
    attachments_downloaded INTEGER NOT NULL DEFAULT 0,
    bytes_added INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    rate_limited INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_base ON jobs (kind, base, started_ms);
CREATE TABLE IF NOT EXISTS job_log (
    job INTEGER NOT NULL REFERENCES jobs (id),
    seq INTEGER NOT NULL,
    level TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (job, seq)
);
";

const COLUMNS: &str = "id, kind, base, trigger, queued_ms, started_ms, ended_ms, outcome, snapshot, \
     records, attachments_downloaded, bytes_added, requests, rate_limited, error";

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn from_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
    Ok(JobRow {
        id: r.get(0)?,
        kind: JobKind::parse(&r.get::<_, String>(1)?),
        base: r.get(2)?,
        trigger: r.get(3)?,
        queued: from_ms(r.get(4)?),
        started: r.get::<_, Option<i64>>(5)?.map(from_ms),
        ended: r.get::<_, Option<i64>>(6)?.map(from_ms),
        outcome: Outcome::parse(&r.get::<_, String>(7)?),
        snapshot: r.get(8)?,
        figures: Figures {
            records: n(9)?,
            attachments_downloaded: n(10)?,
            bytes_added: n(11)?,
            requests: n(12)?,
            rate_limited: n(13)?,
        },
        error: r.get(14)?,
        log: None,
    })
}

impl History {
    /// Opens (creating when missing) the database at `path`, and marks the jobs that were
    /// queued or running when the service last stopped as failed, ended at `now`.
    pub fn open(path: &Path, now: Timestamp) -> Result<History, HistoryError> {
        let name = path.display().to_string();
        let err = |source| HistoryError {
            path: name.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        History::setup(conn, name.clone(), now)
    }

    /// A database in memory (for tests).
    pub fn in_memory(now: Timestamp) -> Result<History, HistoryError> {
        let conn = Connection::open_in_memory().map_err(|source| HistoryError {
            path: "memory".into(),
            source,
        })?;
        History::setup(conn, "memory".into(), now)
    }

    fn setup(conn: Connection, path: String, now: Timestamp) -> Result<History, HistoryError> {
        let history = History {
            conn: Mutex::new(conn),
            path,
        };
        history.with(|c| {
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            c.execute_batch("PRAGMA journal_mode = WAL;")?;
            c.execute_batch(SCHEMA)?;
            c.execute(
                "UPDATE jobs SET outcome = 'failed', ended_ms = ?1, error = CASE outcome \
                 WHEN 'queued' THEN 'the service stopped before the job started' \
                 ELSE 'the service stopped while the job ran' END \
                 WHERE outcome IN ('queued', 'running')",
                params![ms(now)],
            )?;
            Ok(())
        })?;
        Ok(history)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, HistoryError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn).map_err(|source| HistoryError {
            path: self.path.clone(),
            source,
        })
    }

    /// Records a queued job; returns its id.
    pub fn queue(
        &self,
        kind: JobKind,
        base: Option<&str>,
        trigger: &str,
        now: Timestamp,
    ) -> Result<i64, HistoryError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO jobs (kind, base, trigger, queued_ms, outcome) \
                 VALUES (?1, ?2, ?3, ?4, 'queued')",
                params![kind.as_str(), base, trigger, ms(now)],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Marks job `id` as running since `now`.
    pub fn start(&self, id: i64, now: Timestamp) -> Result<(), HistoryError> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET started_ms = ?2, outcome = 'running' WHERE id = ?1",
                params![id, ms(now)],
            )
            .map(|_| ())
        })
    }

    /// Records how job `id` ended at `now`.
    pub fn finish(&self, id: i64, now: Timestamp, ending: &Ending) -> Result<(), HistoryError> {
        let f = ending.figures;
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "UPDATE jobs SET ended_ms = ?2, outcome = ?3, snapshot = ?4, records = ?5, \
                 attachments_downloaded = ?6, bytes_added = ?7, requests = ?8, \
                 rate_limited = ?9, error = ?10, started_ms = COALESCE(started_ms, ?2) \
                 WHERE id = ?1",
                params![
                    id,
                    ms(now),
                    ending.outcome.unwrap_or(Outcome::Failed).as_str(),
                    ending.snapshot,
                    n(f.records),
                    n(f.attachments_downloaded),
                    n(f.bytes_added),
                    n(f.requests),
                    n(f.rate_limited),
                    ending.error,
                ],
            )?;
            let first: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM job_log WHERE job = ?1",
                params![id],
                |r| r.get(0),
            )?;
            for (i, line) in ending.log.iter().enumerate() {
                tx.execute(
                    "INSERT INTO job_log (job, seq, level, text) VALUES (?1, ?2, ?3, ?4)",
                    params![id, first + i as i64, line.level, line.text],
                )?;
            }
            tx.commit()
        })
    }

    /// Adds a log line to job `id` (an alert that could not be sent, after the job ended).
    pub fn log(&self, id: i64, line: &LogLine) -> Result<(), HistoryError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO job_log (job, seq, level, text) VALUES (?1, \
                 (SELECT COALESCE(MAX(seq), -1) + 1 FROM job_log WHERE job = ?1), ?2, ?3)",
                params![id, line.level, line.text],
            )
            .map(|_| ())
        })
    }

    /// When a job of `kind` (for `base`) last started, if ever.
    pub fn last_started(
        &self,
        kind: JobKind,
        base: Option<&str>,
    ) -> Result<Option<Timestamp>, HistoryError> {
        self.with(|c| {
            c.query_row(
                "SELECT MAX(started_ms) FROM jobs WHERE kind = ?1 AND base IS ?2",
                params![kind.as_str(), base],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(|t| t.map(from_ms))
        })
    }

    /// How many jobs of `kind` have ended (a check reads the next slice each time).
    pub fn count_ended(&self, kind: JobKind) -> Result<u64, HistoryError> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM jobs WHERE kind = ?1 AND ended_ms IS NOT NULL",
                params![kind.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
        })
    }

    /// The latest ended job of `kind` for `base`, and the latest that ended ok.
    pub fn last_ended(
        &self,
        kind: JobKind,
        base: Option<&str>,
    ) -> Result<(Option<JobRow>, Option<JobRow>), HistoryError> {
        self.with(|c| {
            let q = |extra: &str| {
                c.query_row(
                    &format!(
                        "SELECT {COLUMNS} FROM jobs WHERE kind = ?1 AND base IS ?2 \
                         AND ended_ms IS NOT NULL {extra} ORDER BY ended_ms DESC, id DESC LIMIT 1"
                    ),
                    params![kind.as_str(), base],
                    row,
                )
                .optional()
            };
            Ok((q("")?, q("AND outcome = 'ok'")?))
        })
    }

    /// The latest `limit` jobs, newest first, of `base` when given.
    pub fn list(&self, base: Option<&str>, limit: usize) -> Result<Vec<JobRow>, HistoryError> {
        self.with(|c| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE ?1 IS NULL OR base = ?1 \
                 ORDER BY id DESC LIMIT ?2"
            ))?;
            stmt.query_map(params![base, limit], row)?.collect()
        })
    }

    /// Job `id` with its log lines.
    pub fn get(&self, id: i64) -> Result<Option<JobRow>, HistoryError> {
        self.with(|c| {
            let Some(mut job) = c
                .query_row(
                    &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                    params![id],
                    row,
                )
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt =
                c.prepare("SELECT level, text FROM job_log WHERE job = ?1 ORDER BY seq")?;
            let log = stmt
                .query_map(params![id], |r| {
                    Ok(LogLine {
                        level: r.get(0)?,
                        text: r.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            job.log = Some(log);
            Ok(Some(job))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn jobs_and_their_logs_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.sqlite");
        let t0 = ts("2026-01-01T03:15:00Z");
        let (done, running, queued);
        {
            let h = History::open(&path, t0).unwrap();
            done = h
                .queue(JobKind::Snapshot, Some("appA"), "schedule", t0)
                .unwrap();
            h.start(done, t0).unwrap();
            let ending = Ending {
                outcome: Some(Outcome::Partial),
                figures: Figures {
                    records: 12,
                    requests: 7,
                    ..Figures::default()
                },
                snapshot: Some("abc".into()),
                error: Some("1 item could not be read: attachment att1".into()),
                log: vec![LogLine::new("warning", "attachment att1: 404")],
                follow_up: None,
            };
            h.finish(done, ts("2026-01-01T03:16:00Z"), &ending).unwrap();
            h.log(done, &LogLine::new("warning", "webhook: refused"))
                .unwrap();
            running = h.queue(JobKind::Check, None, "manual", t0).unwrap();
            h.start(running, ts("2026-01-01T04:00:00Z")).unwrap();
            queued = h
                .queue(JobKind::Snapshot, Some("appB"), "manual", t0)
                .unwrap();
        }
        let later = ts("2026-01-02T00:00:00Z");
        let h = History::open(&path, later).unwrap();
        let job = h.get(done).unwrap().unwrap();
        assert_eq!(job.outcome, Outcome::Partial);
        assert_eq!(job.figures.records, 12);
        assert_eq!(job.duration_secs(), Some(60.0));
        assert_eq!(
            job.log.unwrap(),
            vec![
                LogLine::new("warning", "attachment att1: 404"),
                LogLine::new("warning", "webhook: refused")
            ]
        );
        // What was running or queued when the service stopped is failed, and says why.
        let r = h.get(running).unwrap().unwrap();
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.ended, Some(later));
        assert!(r.error.unwrap().contains("while the job ran"));
        let q = h.get(queued).unwrap().unwrap();
        assert!(q.error.unwrap().contains("before the job started"));
        // What the scheduler and the pages ask.
        assert_eq!(
            h.last_started(JobKind::Snapshot, Some("appA")).unwrap(),
            Some(t0)
        );
        assert_eq!(
            h.last_started(JobKind::Check, None).unwrap(),
            Some(ts("2026-01-01T04:00:00Z"))
        );
        assert_eq!(h.last_started(JobKind::Retention, None).unwrap(), None);
        let (last, ok) = h.last_ended(JobKind::Snapshot, Some("appA")).unwrap();
        assert_eq!(last.unwrap().id, done);
        assert!(ok.is_none());
        assert_eq!(h.list(Some("appA"), 10).unwrap().len(), 1);
        let all = h.list(None, 10).unwrap();
        assert_eq!(
            all.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![queued, running, done]
        );
        assert!(all[0].log.is_none());
        assert_eq!(h.count_ended(JobKind::Check).unwrap(), 1);
        assert!(h.get(9999).unwrap().is_none());
    }
}
