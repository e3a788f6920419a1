//! The local cache: a SQLite database per repository (keyed by repository id) that mirrors the
//! repository's index, so that deduplication and blob lookups cost no round trip and the index
//! need not live in memory. It is only a cache: deleting it costs time, never data. On open, the
//! repository lists `index/` and brings the cache up to date, which is how it notices writes
//! from other machines.
//!
//! A damaged file is moved aside and rebuilt, and a location that cannot be written gives an
//! in-memory cache ([`Cache::open`]), each with one warning: no command fails for the cache.
//!
//! rusqlite is synchronous: the connection sits behind a mutex and is never held across `.await`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use crate::codec::Compression;
use crate::crypto::Salt;
use crate::id::{BlobId, DictId, IndexId, PackId, RepoId};
use crate::repo::index::IndexFile;
use crate::repo::pack::BlobKind;

/// Bumped when the cache's tables change; an older cache is rebuilt.
const CACHE_SCHEMA_VERSION: i32 = 4;

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack: PackId,
    /// Its kind.
    pub kind: BlobKind,
    /// Offset in the pack.
    pub offset: u32,
    /// Stored length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
    /// Encoding.
    pub compression: Compression,
    /// The pack's salt (format 2).
    pub salt: Option<Salt>,
}

/// The cache database.
#[derive(Debug)]
pub struct Cache {
    conn: Mutex<Connection>,
    path: Option<PathBuf>,
}

/// Where the cache of repository `id` lives: under `cache_dir`, else under the user's cache
/// directory (`~/.cache/airback` on Linux), then `<repo id>/cache.sqlite`.
pub(crate) fn default_cache_path(cache_dir: Option<&Path>, id: &RepoId) -> Option<PathBuf> {
    let base = match cache_dir {
        Some(dir) => dir.to_path_buf(),
        None => dirs::cache_dir()?.join("airback"),
    };
    Some(base.join(id.to_hex()).join("cache.sqlite"))
}

/// Whether SQLite found the file is not a (sound) database.
fn is_damaged(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// Whether SQLite could not create or write the file.
fn is_unwritable(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::PermissionDenied
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
        )
    )
}

/// `cache.sqlite.broken-<unix time>` next to `path`.
fn broken_name(path: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".broken-{secs}"));
    PathBuf::from(name)
}

/// SQLite's `-wal` or `-shm` file of the database at `path`.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates the folder of the cache file `path` (and its parents) readable by the owner only;
/// an existing one is made so. The restore journal uses it too.
pub(crate) fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Creates the database file readable by its owner only before SQLite opens it (SQLite creates
/// files 0644 less the umask, and its `-wal` and `-shm` files copy the database's mode).
pub(crate) fn create_private_file(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path);
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

fn kind_to_int(kind: BlobKind) -> i64 {
    match kind {
        BlobKind::Data => 0,
        BlobKind::Meta => 1,
    }
}

fn kind_from_int(v: i64) -> BlobKind {
    if v == 0 {
        BlobKind::Data
    } else {
        BlobKind::Meta
    }
}

fn id32(bytes: Vec<u8>) -> [u8; 32] {
    bytes.try_into().unwrap_or([0; 32])
}

/// Records `id` as bad and drops what the cache knows of its content.
fn mark_bad(tx: &rusqlite::Transaction<'_>, id: &PackId, reason: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO bad_packs (id, reason) VALUES (?1, ?2)",
        params![&id.0[..], reason],
    )?;
    tx.execute("DELETE FROM blobs WHERE pack = ?1", params![&id.0[..]])?;
    tx.execute("DELETE FROM packs WHERE id = ?1", params![&id.0[..]])?;
    Ok(())
}

impl Cache {
    /// Opens (creating) the cache at `path`, or an in-memory one for `None`.
    ///
    /// It is only a cache, so it heals itself: a file that is not a readable cache is moved
    /// aside (to `cache.sqlite.broken-<unix time>`) and rebuilt, and a location that cannot be
    /// written (a read-only folder, a path through a regular file, a full disk) gives an
    /// in-memory cache. Either is said once, as a warning naming the file. The folder is created
    /// 0700 and the file 0600, whatever the umask.
    pub(crate) fn open(path: Option<&Path>) -> rusqlite::Result<Cache> {
        let Some(path) = path else {
            return Cache::setup(Connection::open_in_memory()?, None);
        };
        let in_memory = |why: String| {
            tracing::warn!(
                "cannot write the local cache {} ({why}); using one in memory for this run, \
                 which is slower (fix the folder's permissions or pass --cache-dir)",
                path.display()
            );
            Cache::setup(Connection::open_in_memory()?, None)
        };
        if let Err(e) = create_private_dir(path) {
            return in_memory(e.to_string());
        }
        match Cache::open_file(path) {
            Ok(cache) => Ok(cache),
            Err(e) if is_damaged(&e) => {
                let aside = broken_name(path);
                if let Err(rename) = std::fs::rename(path, &aside) {
                    return in_memory(format!("it is damaged ({e}) and cannot be moved: {rename}"));
                }
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(sidecar(path, suffix));
                }
                tracing::warn!(
                    "the local cache {} was damaged ({e}); moved it to {} and rebuilding it",
                    path.display(),
                    aside.display()
                );
                Cache::open_file(path).or_else(|e| in_memory(e.to_string()))
            }
            Err(e) if is_unwritable(&e) => in_memory(e.to_string()),
            Err(e) => Err(e),
        }
    }

    fn open_file(path: &Path) -> rusqlite::Result<Cache> {
        create_private_file(path);
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Cache::setup(conn, Some(path))
    }

    fn setup(conn: Connection, path: Option<&Path>) -> rusqlite::Result<Cache> {
        conn.busy_timeout(std::time::Duration::from_secs(60))?;
        let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != CACHE_SCHEMA_VERSION {
            conn.execute_batch(
                "DROP TABLE IF EXISTS index_files; DROP TABLE IF EXISTS packs;
                 DROP TABLE IF EXISTS blobs; DROP TABLE IF EXISTS kv;
                 DROP TABLE IF EXISTS bad_packs; DROP TABLE IF EXISTS dictionaries;",
            )?;
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS index_files (id BLOB PRIMARY KEY) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS packs (id BLOB PRIMARY KEY, kind INTEGER NOT NULL,
                 size INTEGER NOT NULL, salt BLOB NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS blobs (id BLOB NOT NULL, kind INTEGER NOT NULL,
                 pack BLOB NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
                 raw_length INTEGER NOT NULL, compression INTEGER NOT NULL,
                 PRIMARY KEY (id, kind)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS bad_packs (id BLOB PRIMARY KEY, reason TEXT NOT NULL)
                 WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS dictionaries (id BLOB PRIMARY KEY) WITHOUT ROWID;",
        )?;
        conn.pragma_update(None, "user_version", CACHE_SCHEMA_VERSION)?;
        Ok(Cache {
            conn: Mutex::new(conn),
            path: path.map(Path::to_path_buf),
        })
    }

    /// The database file, if not in memory.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Index files already loaded.
    pub(crate) fn index_files(&self) -> rusqlite::Result<HashSet<IndexId>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM index_files")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        rows.map(|r| r.map(|b| IndexId(id32(b)))).collect()
    }

    /// Loads one index file's entries. A blob already known keeps its first location. Packs
    /// recorded as bad are skipped, unless `written_here`: this process has just stored (or
    /// read and verified) every pack of the file, so they are sound whatever was recorded
    /// before (a pack stored again after it was lost has the same id, its content's hash).
    pub(crate) fn add_index_file(
        &self,
        id: &IndexId,
        file: &IndexFile,
        written_here: bool,
    ) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if written_here {
            let mut stmt = tx.prepare("DELETE FROM bad_packs WHERE id = ?1")?;
            for pack in &file.packs {
                stmt.execute(params![&pack.id.0[..]])?;
            }
        }
        {
            let mut dict_stmt =
                tx.prepare("INSERT OR IGNORE INTO dictionaries (id) VALUES (?1)")?;
            for dict in &file.dictionaries {
                dict_stmt.execute(params![&dict.0[..]])?;
            }
            let mut bad_stmt = tx.prepare("SELECT 1 FROM bad_packs WHERE id = ?1")?;
            let mut pack_stmt = tx.prepare(
                "INSERT OR IGNORE INTO packs (id, kind, size, salt) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut blob_stmt = tx.prepare(
                "INSERT OR IGNORE INTO blobs (id, pack, kind, offset, length, raw_length, compression)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for pack in &file.packs {
                if bad_stmt.exists(params![&pack.id.0[..]])? {
                    continue;
                }
                let kind = kind_to_int(pack.kind);
                pack_stmt.execute(params![
                    &pack.id.0[..],
                    kind,
                    pack.size as i64,
                    pack.salt.as_ref().map(|s| &s[..])
                ])?;
                for b in &pack.blobs {
                    blob_stmt.execute(params![
                        &b.id.0[..],
                        &pack.id.0[..],
                        kind,
                        b.offset,
                        b.length,
                        b.raw_length,
                        b.compression.to_byte()
                    ])?;
                }
            }
            tx.execute(
                "INSERT OR IGNORE INTO index_files (id) VALUES (?1)",
                params![&id.0[..]],
            )?;
        }
        tx.commit()
    }

    /// Packs known from loaded index files, with their indexed sizes.
    pub(crate) fn pack_sizes(&self) -> rusqlite::Result<std::collections::HashMap<PackId, u64>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, size FROM packs")?;
        let rows = stmt.query_map([], |r| {
            Ok((PackId(id32(r.get(0)?)), r.get::<_, i64>(1)? as u64))
        })?;
        rows.collect()
    }

    /// Records packs as missing or damaged: their blobs stop counting as stored (so writers
    /// store them again) and index files listing them are loaded again without them. Every
    /// index file is forgotten so that the next [`super::Repository::sync_index`] reloads them
    /// all and finds other copies of those blobs. Returns the packs that were not yet known
    /// as bad.
    pub(crate) fn mark_packs_damaged(
        &self,
        packs: &[(PackId, String)],
    ) -> rusqlite::Result<Vec<PackId>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut fresh = Vec::new();
        {
            let mut known = tx.prepare("SELECT 1 FROM bad_packs WHERE id = ?1")?;
            for (id, reason) in packs {
                if !known.exists(params![&id.0[..]])? {
                    fresh.push(*id);
                }
                mark_bad(&tx, id, reason)?;
            }
        }
        if !fresh.is_empty() {
            tx.execute("DELETE FROM index_files", [])?;
        }
        tx.commit()?;
        Ok(fresh)
    }

    /// Packs recorded as missing or damaged, with the reason.
    pub(crate) fn bad_packs(&self) -> rusqlite::Result<std::collections::HashMap<PackId, String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, reason FROM bad_packs")?;
        let rows = stmt.query_map([], |r| Ok((PackId(id32(r.get(0)?)), r.get(1)?)))?;
        rows.collect()
    }

    /// Forgets that these packs were bad (they were read and verified since). Returns those
    /// that were recorded; when any was, every index file is forgotten so that the next sync
    /// loads their blobs again.
    pub(crate) fn mark_packs_sound(&self, packs: &[PackId]) -> rusqlite::Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut removed = 0;
        {
            let mut stmt = tx.prepare("DELETE FROM bad_packs WHERE id = ?1")?;
            for id in packs {
                removed += stmt.execute(params![&id.0[..]])?;
            }
        }
        if removed > 0 {
            tx.execute("DELETE FROM index_files", [])?;
        }
        tx.commit()?;
        Ok(removed)
    }

    /// Dictionaries that index files say have a copy stored as a metadata blob.
    pub(crate) fn dictionary_ids(&self) -> rusqlite::Result<Vec<DictId>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM dictionaries ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        rows.map(|r| r.map(|b| DictId(id32(b)))).collect()
    }

    /// Whether any indexed metadata blob is compressed with a dictionary.
    pub(crate) fn has_dictionary_blobs(&self) -> rusqlite::Result<bool> {
        self.conn()
            .prepare_cached("SELECT 1 FROM blobs WHERE compression = ?1 LIMIT 1")?
            .exists(params![Compression::ZstdDict.to_byte()])
    }

    /// Forgets everything (used when an index file disappeared, e.g. after a prune). One
    /// transaction, blobs first: an interrupted clear never leaves blobs whose index file is
    /// forgotten.
    pub(crate) fn clear(&self) -> rusqlite::Result<()> {
        self.conn().execute_batch(
            "BEGIN; DELETE FROM blobs; DELETE FROM packs; DELETE FROM index_files;
             DELETE FROM dictionaries; COMMIT;",
        )
    }

    /// Whether the index has the blob as a blob of `kind`.
    pub fn has_blob(&self, id: &BlobId, kind: BlobKind) -> rusqlite::Result<bool> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT 1 FROM blobs WHERE id = ?1 AND kind = ?2")?;
        stmt.exists(params![&id.0[..], kind_to_int(kind)])
    }

    /// Like [`Cache::has_blob`], but a blob compressed with a dictionary counts only when
    /// `dictionary_ok` (the repository lost a dictionary, so such blobs may not decode).
    pub(crate) fn has_usable_blob(
        &self,
        id: &BlobId,
        kind: BlobKind,
        dictionary_ok: bool,
    ) -> rusqlite::Result<bool> {
        if dictionary_ok {
            return self.has_blob(id, kind);
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT 1 FROM blobs WHERE id = ?1 AND kind = ?2 AND compression <> ?3",
        )?;
        stmt.exists(params![
            &id.0[..],
            kind_to_int(kind),
            Compression::ZstdDict.to_byte()
        ])
    }

    /// Where the blob is stored.
    pub fn lookup(&self, id: &BlobId) -> rusqlite::Result<Option<BlobLocation>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT b.pack, b.kind, b.offset, b.length, b.raw_length, b.compression, p.salt
             FROM blobs b LEFT JOIN packs p ON p.id = b.pack WHERE b.id = ?1
             ORDER BY b.kind LIMIT 1",
        )?;
        stmt.query_row(params![&id.0[..]], |r| {
            Ok(BlobLocation {
                pack: PackId(id32(r.get(0)?)),
                kind: kind_from_int(r.get(1)?),
                offset: r.get(2)?,
                length: r.get(3)?,
                raw_length: r.get(4)?,
                compression: Compression::from_byte(r.get::<_, u8>(5)?)
                    .unwrap_or(Compression::Zstd),
                salt: r
                    .get::<_, Option<Vec<u8>>>(6)?
                    .and_then(|s| Salt::try_from(s.as_slice()).ok()),
            })
        })
        .optional()
    }

    /// A free-form value stored by a layer above (for example attachment bookkeeping).
    pub fn get_value(&self, key: &str) -> rusqlite::Result<Option<String>> {
        self.conn()
            .query_row("SELECT value FROM kv WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
    }

    /// Stores a free-form value.
    pub fn set_value(&self, key: &str, value: &str) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
    }
}
