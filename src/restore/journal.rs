//! The restore journal: a local SQLite database that remembers, per restore run (a snapshot and
//! a target), the plan, the target base, the original-to-new record id map, which attachment
//! cells are filled and which link cells are written. Running the same restore again reads it
//! and skips what is done.
//!
//! The journal is an accelerator, not the source of truth: a request can succeed just before a
//! crash, before the journal records it. Record creation is an upsert keyed on the original
//! record id (so a lost journal entry costs one repeated request, never a duplicate), and an
//! attachment cell left half-filled is re-read from Airtable before uploading more.
//!
//! rusqlite is synchronous: the connection sits behind a mutex and is never held across
//! `.await`. So a cancelled restore (Ctrl-C drops its future, which can only happen at an
//! `.await`) stops between two changes, never inside a transaction; a killed process leaves an
//! unfinished transaction that SQLite rolls back when the journal is next opened.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

/// The journal database.
#[derive(Debug)]
pub struct Journal {
    conn: Mutex<Connection>,
    run: String,
}

/// A journal failure.
#[derive(Debug, thiserror::Error)]
#[error("the restore journal failed: {0}")]
pub struct JournalError(#[from] rusqlite::Error);

type Result<T> = std::result::Result<T, JournalError>;

/// A record the records pass created (see [`Journal::add_created`]).
#[derive(Debug, Clone)]
pub struct Created {
    /// The original record id.
    pub source: String,
    /// The new record id.
    pub target: String,
    /// Whether the create request wrote every link of the record.
    pub links_done: bool,
    /// Attachment cells written by URL in the create request: (original field id, files).
    pub url_cells: Vec<(String, u64)>,
}

/// What the journal knows about a run when it is opened.
#[derive(Debug, Clone, Default)]
pub struct RunState {
    /// The plan (JSON), fixed by the first run.
    pub plan: Option<String>,
    /// The target base, once known (created or given).
    pub base_id: Option<String>,
}

impl Journal {
    /// Opens (creating) the journal at `path` (in memory for `None`) for the run `run`.
    pub fn open(path: Option<&Path>, run: &str) -> Result<Journal> {
        let conn = match path {
            Some(path) => {
                // Readable by the owner only (folder 0700, file 0600): it mirrors record ids
                // and names of the backup.
                let _ = crate::repo::cache::create_private_dir(path);
                crate::repo::cache::create_private_file(path);
                Connection::open(path)?
            }
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS runs(
                run TEXT PRIMARY KEY, plan TEXT, base_id TEXT, finished INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS records(
                run TEXT NOT NULL, source_id TEXT NOT NULL, target_id TEXT NOT NULL,
                links_done INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY(run, source_id));
             CREATE TABLE IF NOT EXISTS cells(
                run TEXT NOT NULL, source_record TEXT NOT NULL, field TEXT NOT NULL,
                uploaded INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY(run, source_record, field));
             CREATE TABLE IF NOT EXISTS staged(
                run TEXT NOT NULL, path TEXT NOT NULL, source_record TEXT NOT NULL,
                field TEXT NOT NULL, PRIMARY KEY(run, path));
             CREATE TABLE IF NOT EXISTS comments(
                run TEXT NOT NULL, source_comment TEXT NOT NULL, source_record TEXT NOT NULL,
                target TEXT, PRIMARY KEY(run, source_comment));",
        )?;
        conn.execute("INSERT OR IGNORE INTO runs(run) VALUES (?1)", params![run])?;
        Ok(Journal {
            conn: Mutex::new(conn),
            run: run.to_owned(),
        })
    }

    /// Every record `restore --in-place` created again in `base`, in any run the journal at
    /// `path` holds: old id → new id (empty when there is no journal).
    pub fn recreated_in(path: &Path, base: &str) -> Result<HashMap<String, String>> {
        if !path.exists() {
            return Ok(HashMap::new());
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let mut stmt = conn.prepare(
            "SELECT source_id, target_id FROM records WHERE run LIKE 'in-place|%' AND run LIKE ?1",
        )?;
        let rows = stmt.query_map(params![format!("%|base:{base}")], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run's plan and target base, as far as they are known.
    pub fn state(&self) -> Result<RunState> {
        let row = self
            .conn()
            .query_row(
                "SELECT plan, base_id FROM runs WHERE run = ?1",
                params![self.run],
                |row| {
                    Ok(RunState {
                        plan: row.get(0)?,
                        base_id: row.get(1)?,
                    })
                },
            )
            .optional()?;
        Ok(row.unwrap_or_default())
    }

    /// Fixes the run's plan.
    pub fn set_plan(&self, plan: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE runs SET plan = ?2 WHERE run = ?1",
            params![self.run, plan],
        )?;
        Ok(())
    }

    /// Records the target base.
    pub fn set_base(&self, base_id: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE runs SET base_id = ?2 WHERE run = ?1",
            params![self.run, base_id],
        )?;
        Ok(())
    }

    /// Records a finished run (informative).
    pub fn set_finished(&self) -> Result<()> {
        self.conn().execute(
            "UPDATE runs SET finished = 1 WHERE run = ?1",
            params![self.run],
        )?;
        Ok(())
    }

    /// Records original → new record ids, in one transaction.
    pub fn add_records(&self, pairs: &[(String, String)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO records(run, source_id, target_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT(run, source_id) DO UPDATE SET target_id = excluded.target_id",
            )?;
            for (source, target) in pairs {
                insert.execute(params![self.run, source, target])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records created records in one transaction: original → new id, whether the create
    /// request wrote all their links, and the attachment cells it wrote by URL (field, files),
    /// which the attachments pass then leaves alone.
    pub fn add_created(&self, created: &[Created]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut record = tx.prepare_cached(
                "INSERT INTO records(run, source_id, target_id, links_done) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(run, source_id) DO UPDATE SET target_id = excluded.target_id,
                 links_done = excluded.links_done",
            )?;
            let mut cell = tx.prepare_cached(
                "INSERT INTO cells(run, source_record, field, uploaded, done) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT(run, source_record, field) DO UPDATE SET uploaded = excluded.uploaded, done = 1",
            )?;
            for c in created {
                record.execute(params![
                    self.run,
                    c.source,
                    c.target,
                    i64::from(c.links_done)
                ])?;
                for (field, files) in &c.url_cells {
                    cell.execute(params![self.run, c.source, field, *files as i64])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The new id of an original record.
    pub fn target_of(&self, source_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .prepare_cached("SELECT target_id FROM records WHERE run = ?1 AND source_id = ?2")?
            .query_row(params![self.run, source_id], |row| row.get(0))
            .optional()?)
    }

    /// Every original → new record id pair of the run.
    pub fn record_map(&self) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT source_id, target_id FROM records WHERE run = ?1")?;
        let rows = stmt.query_map(params![self.run], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Whether the run finished (a later run with the same key starts a new round).
    pub fn finished(&self) -> Result<bool> {
        Ok(self.conn().query_row(
            "SELECT finished FROM runs WHERE run = ?1",
            params![self.run],
            |row| row.get::<_, i64>(0),
        )? == 1)
    }

    /// Marks the run unfinished again, keeping its record map (a new `--in-place` round).
    pub fn restart(&self) -> Result<()> {
        self.conn().execute(
            "UPDATE runs SET finished = 0, plan = NULL WHERE run = ?1",
            params![self.run],
        )?;
        Ok(())
    }

    /// How many records the run has created.
    pub fn record_count(&self) -> Result<u64> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM records WHERE run = ?1",
            params![self.run],
            |row| row.get::<_, i64>(0),
        )? as u64)
    }

    /// The new id of an original record and whether its link cells are written.
    pub fn target_and_links_done(&self, source_id: &str) -> Result<Option<(String, bool)>> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT target_id, links_done FROM records WHERE run = ?1 AND source_id = ?2",
            )?
            .query_row(params![self.run, source_id], |row| {
                Ok((row.get(0)?, row.get::<_, i64>(1)? == 1))
            })
            .optional()?)
    }

    /// Marks the link cells of original records as written.
    pub fn set_links_done(&self, source_ids: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE records SET links_done = 1 WHERE run = ?1 AND source_id = ?2",
            )?;
            for id in source_ids {
                update.execute(params![self.run, id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The progress of an attachment cell: `None` if never started, else (files uploaded,
    /// done).
    pub fn cell(&self, source_record: &str, field: &str) -> Result<Option<(u64, bool)>> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT uploaded, done FROM cells WHERE run = ?1 AND source_record = ?2 AND field = ?3",
            )?
            .query_row(params![self.run, source_record, field], |row| {
                Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? == 1))
            })
            .optional()?)
    }

    /// Records the progress of an attachment cell.
    pub fn set_cell(
        &self,
        source_record: &str,
        field: &str,
        uploaded: u64,
        done: bool,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO cells(run, source_record, field, uploaded, done) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(run, source_record, field) DO UPDATE SET uploaded = excluded.uploaded, done = excluded.done",
            params![self.run, source_record, field, uploaded as i64, i64::from(done)],
        )?;
        Ok(())
    }

    /// Remembers a file put in the staging location, to remove it later.
    pub fn add_staged(&self, path: &str, source_record: &str, field: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO staged(run, path, source_record, field) VALUES (?1, ?2, ?3, ?4)",
            params![self.run, path, source_record, field],
        )?;
        Ok(())
    }

    /// Files in the staging location: (path, original record, field).
    pub fn staged(&self) -> Result<Vec<(String, String, String)>> {
        let conn = self.conn();
        let mut query = conn.prepare(
            "SELECT path, source_record, field FROM staged WHERE run = ?1 ORDER BY path",
        )?;
        let rows = query.query_map(params![self.run], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The comments of an original record that the run started creating: original comment
    /// id → the new id, `None` while its create is pending (sent, or about to be, and not
    /// confirmed: it may exist in the target).
    pub fn comments_of(&self, source_record: &str) -> Result<HashMap<String, Option<String>>> {
        let conn = self.conn();
        let mut query = conn.prepare_cached(
            "SELECT source_comment, target FROM comments WHERE run = ?1 AND source_record = ?2",
        )?;
        let rows = query.query_map(params![self.run, source_record], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records that a comment is about to be created (before the request is sent).
    pub fn set_comment_pending(&self, source_comment: &str, source_record: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO comments(run, source_comment, source_record) VALUES (?1, ?2, ?3)",
            params![self.run, source_comment, source_record],
        )?;
        Ok(())
    }

    /// Records the new id of a created comment.
    pub fn set_comment_target(&self, source_comment: &str, target: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE comments SET target = ?3 WHERE run = ?1 AND source_comment = ?2",
            params![self.run, source_comment, target],
        )?;
        Ok(())
    }

    /// Forgets a staged file once it is removed.
    pub fn remove_staged(&self, path: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM staged WHERE run = ?1 AND path = ?2",
            params![self.run, path],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_journal_remembers_its_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restore.sqlite");
        {
            let j = Journal::open(Some(&path), "run1").unwrap();
            j.set_plan("{}").unwrap();
            j.set_base("appX").unwrap();
            j.add_records(&[("recA".into(), "recNewA".into())]).unwrap();
            j.set_links_done(&["recA".into()]).unwrap();
            j.set_cell("recA", "fldF", 2, false).unwrap();
        }
        let j = Journal::open(Some(&path), "run1").unwrap();
        let state = j.state().unwrap();
        assert_eq!(state.plan.as_deref(), Some("{}"));
        assert_eq!(state.base_id.as_deref(), Some("appX"));
        assert_eq!(j.target_of("recA").unwrap().as_deref(), Some("recNewA"));
        assert_eq!(
            j.target_and_links_done("recA").unwrap(),
            Some(("recNewA".into(), true))
        );
        assert_eq!(j.cell("recA", "fldF").unwrap(), Some((2, false)));
        j.set_comment_pending("comA", "recA").unwrap();
        j.set_comment_pending("comB", "recA").unwrap();
        j.set_comment_target("comA", "comNewA").unwrap();
        let comments = Journal::open(Some(&path), "run1")
            .unwrap()
            .comments_of("recA")
            .unwrap();
        assert_eq!(comments["comA"].as_deref(), Some("comNewA"));
        assert_eq!(comments["comB"], None);
        assert_eq!(comments.len(), 2);
        let other = Journal::open(Some(&path), "run2").unwrap();
        assert_eq!(other.target_of("recA").unwrap(), None, "runs are separate");
        assert_eq!(other.record_count().unwrap(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn the_journal_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache").join("restore.sqlite");
        let j = Journal::open(Some(&path), "run1").unwrap();
        j.set_plan("{}").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }
}
