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
use crate::repo::pack::{BlobKind, PackedBlob};

/// Bumped when the cache's tables change; an older cache is rebuilt.
const CACHE_SCHEMA_VERSION: i32 = 5;

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

/// A pack as the effective index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedPack {
    /// The pack.
    pub id: PackId,
    /// The kind of its blobs.
    pub kind: BlobKind,
    /// Its indexed size.
    pub size: u64,
    /// Its salt (format 2).
    pub salt: Option<Salt>,
    /// When it was marked for deletion; `None` when it is live.
    pub marked: Option<String>,
}

/// Forgets every loaded index file and what it said (bad packs, values and dictionaries
/// stay), so that the next sync loads every file again.
fn forget_index(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "DELETE FROM blobs; DELETE FROM packs; DELETE FROM entries; DELETE FROM superseded;
         DELETE FROM erase; DELETE FROM index_files;",
    )
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
    tx.execute("DELETE FROM entries WHERE pack = ?1", params![&id.0[..]])?;
    tx.execute("DELETE FROM packs WHERE id = ?1", params![&id.0[..]])?;
    Ok(())
}

/// Sets a pack's state from the entries that effective index files have for it: live if any
/// lists it under `packs` ("live wins"), else marked at the latest time given; a pack no entry
/// names any more is forgotten with its blobs.
fn settle_pack(tx: &rusqlite::Transaction<'_>, pack: &[u8]) -> rusqlite::Result<()> {
    let (count, live, marked): (i64, i64, Option<String>) = tx
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(marked IS NULL), 0), MAX(marked) FROM entries
             WHERE pack = ?1",
        )?
        .query_row(params![pack], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if count == 0 {
        tx.prepare_cached("DELETE FROM blobs WHERE pack = ?1")?
            .execute(params![pack])?;
        tx.prepare_cached("DELETE FROM packs WHERE id = ?1")?
            .execute(params![pack])?;
    } else {
        tx.prepare_cached("UPDATE packs SET marked = ?2 WHERE id = ?1")?
            .execute(params![pack, if live > 0 { None } else { marked }])?;
    }
    Ok(())
}

/// Forgets the entries of index file `file`, and settles the packs it named. Returns whether
/// it had any.
fn drop_entries(tx: &rusqlite::Transaction<'_>, file: &[u8]) -> rusqlite::Result<bool> {
    let packs: Vec<Vec<u8>> = tx
        .prepare_cached("SELECT pack FROM entries WHERE file = ?1")?
        .query_map(params![file], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tx.prepare_cached("DELETE FROM entries WHERE file = ?1")?
        .execute(params![file])?;
    tx.prepare_cached("DELETE FROM erase WHERE file = ?1")?
        .execute(params![file])?;
    for pack in &packs {
        settle_pack(tx, pack)?;
    }
    Ok(!packs.is_empty())
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
                 DROP TABLE IF EXISTS bad_packs; DROP TABLE IF EXISTS dictionaries;
                 DROP TABLE IF EXISTS entries; DROP TABLE IF EXISTS superseded;
                 DROP TABLE IF EXISTS erase; DROP TABLE IF EXISTS copy_map;",
            )?;
        }
        // `entries`: which loaded index file lists which pack, and whether as marked for
        // deletion. `packs` and `blobs` hold what the effective (not superseded) files say:
        // every copy of a blob, and each pack's state (`marked` NULL = live).
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS index_files (id BLOB PRIMARY KEY) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS superseded (id BLOB PRIMARY KEY) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS entries (pack BLOB NOT NULL, file BLOB NOT NULL,
                 marked TEXT NULL, PRIMARY KEY (pack, file)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS entries_by_file ON entries (file);
             CREATE TABLE IF NOT EXISTS packs (id BLOB PRIMARY KEY, kind INTEGER NOT NULL,
                 size INTEGER NOT NULL, salt BLOB NULL, marked TEXT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS blobs (id BLOB NOT NULL, kind INTEGER NOT NULL,
                 pack BLOB NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
                 raw_length INTEGER NOT NULL, compression INTEGER NOT NULL,
                 PRIMARY KEY (id, kind, pack)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS blobs_by_pack ON blobs (pack);
             CREATE TABLE IF NOT EXISTS erase (id BLOB NOT NULL, kind INTEGER NOT NULL,
                 file BLOB NOT NULL, PRIMARY KEY (id, kind, file)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS bad_packs (id BLOB PRIMARY KEY, reason TEXT NOT NULL)
                 WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS dictionaries (id BLOB PRIMARY KEY) WITHOUT ROWID;",
        )?;
        // `copy_map` (`airback copy`, in the target's cache): the id in this repository of a
        // blob of another repository (`source`, its repository id). A fact about content, so
        // it never goes stale; whether the blob is stored here is asked of `blobs`.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS copy_map (source BLOB NOT NULL, id BLOB NOT NULL,
                 kind INTEGER NOT NULL, target BLOB NOT NULL, PRIMARY KEY (source, id, kind))
                 WITHOUT ROWID;",
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

    /// Loads one index file's entries: its `packs` as live, its `packs_to_delete` as marked
    /// (a pack live in any effective file stays live). A file that a loaded file supersedes is
    /// recorded as loaded without entries, and the files it supersedes lose theirs. Packs
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
        }
        let superseded = tx
            .prepare("SELECT 1 FROM superseded WHERE id = ?1")?
            .exists(params![&id.0[..]])?;
        if !superseded {
            for old in &file.supersedes {
                tx.execute(
                    "INSERT OR IGNORE INTO superseded (id) VALUES (?1)",
                    params![&old.0[..]],
                )?;
                drop_entries(&tx, &old.0)?;
            }
            let listed = file.packs.iter().map(|p| (p, None));
            let marked = file
                .packs_to_delete
                .iter()
                .map(|m| (&m.pack, Some(m.marked.as_str())));
            let mut erase_stmt =
                tx.prepare("INSERT OR IGNORE INTO erase (id, kind, file) VALUES (?1, ?2, ?3)")?;
            for e in &file.erase {
                erase_stmt.execute(params![&e.id.0[..], kind_to_int(e.kind), &id.0[..]])?;
            }
            let mut bad_stmt = tx.prepare("SELECT 1 FROM bad_packs WHERE id = ?1")?;
            let mut pack_stmt = tx.prepare(
                "INSERT OR IGNORE INTO packs (id, kind, size, salt) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut entry_stmt = tx.prepare(
                "INSERT OR REPLACE INTO entries (pack, file, marked) VALUES (?1, ?2, ?3)",
            )?;
            let mut blob_stmt = tx.prepare(
                "INSERT OR IGNORE INTO blobs (id, pack, kind, offset, length, raw_length, compression)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (pack, marked) in listed.chain(marked) {
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
                entry_stmt.execute(params![&pack.id.0[..], &id.0[..], marked])?;
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
                settle_pack(&tx, &pack.id.0)?;
            }
        }
        tx.execute(
            "INSERT OR IGNORE INTO index_files (id) VALUES (?1)",
            params![&id.0[..]],
        )?;
        tx.commit()
    }

    /// Forgets index files that are gone from storage (prune and repair delete the files they
    /// replaced), with their entries. Incremental: the rest of the cache stays.
    pub(crate) fn drop_index_files(&self, ids: &[IndexId]) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in ids {
            drop_entries(&tx, &id.0)?;
            tx.execute("DELETE FROM index_files WHERE id = ?1", params![&id.0[..]])?;
            tx.execute("DELETE FROM superseded WHERE id = ?1", params![&id.0[..]])?;
        }
        tx.commit()
    }

    /// The blobs effective index files ask to erase.
    pub(crate) fn erase_set(&self) -> rusqlite::Result<HashSet<(BlobId, BlobKind)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT DISTINCT id, kind FROM erase")?;
        let rows = stmt.query_map([], |r| {
            Ok((BlobId(id32(r.get(0)?)), kind_from_int(r.get(1)?)))
        })?;
        rows.collect()
    }

    /// Every pack the effective index names, live or marked.
    pub(crate) fn packs(&self) -> rusqlite::Result<Vec<CachedPack>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, kind, size, salt, marked FROM packs ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(CachedPack {
                id: PackId(id32(r.get(0)?)),
                kind: kind_from_int(r.get(1)?),
                size: r.get::<_, i64>(2)? as u64,
                salt: r
                    .get::<_, Option<Vec<u8>>>(3)?
                    .and_then(|s| Salt::try_from(s.as_slice()).ok()),
                marked: r.get(4)?,
            })
        })?;
        rows.collect()
    }

    /// The blobs of one pack, in pack order.
    pub(crate) fn pack_blobs(&self, pack: &PackId) -> rusqlite::Result<Vec<PackedBlob>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, offset, length, raw_length, compression FROM blobs WHERE pack = ?1
             ORDER BY offset",
        )?;
        let rows = stmt.query_map(params![&pack.0[..]], |r| {
            Ok(PackedBlob {
                id: BlobId(id32(r.get(0)?)),
                offset: r.get(1)?,
                length: r.get(2)?,
                raw_length: r.get(3)?,
                compression: Compression::from_byte(r.get::<_, u8>(4)?)
                    .unwrap_or(Compression::Zstd),
            })
        })?;
        rows.collect()
    }

    /// Calls `f(blob, kind, pack, stored length)` for every copy of every blob the effective
    /// index names, one row at a time (the index is never held in memory).
    pub(crate) fn for_each_blob(
        &self,
        mut f: impl FnMut(BlobId, BlobKind, PackId, u32),
    ) -> rusqlite::Result<()> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, kind, pack, length FROM blobs")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            f(
                BlobId(id32(r.get(0)?)),
                kind_from_int(r.get(1)?),
                PackId(id32(r.get(2)?)),
                r.get(3)?,
            );
        }
        Ok(())
    }

    /// Packs known from loaded index files, live or marked, with their indexed sizes.
    pub(crate) fn pack_sizes(&self) -> rusqlite::Result<std::collections::HashMap<PackId, u64>> {
        self.pack_sizes_where("1")
    }

    /// Live packs (not marked for deletion), with their indexed sizes.
    pub(crate) fn live_pack_sizes(
        &self,
    ) -> rusqlite::Result<std::collections::HashMap<PackId, u64>> {
        self.pack_sizes_where("marked IS NULL")
    }

    fn pack_sizes_where(
        &self,
        condition: &str,
    ) -> rusqlite::Result<std::collections::HashMap<PackId, u64>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT id, size FROM packs WHERE {condition}"))?;
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
            forget_index(&tx)?;
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
            forget_index(&tx)?;
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

    /// Whether a live pack (not marked for deletion) holds the blob as a blob of `kind`: only
    /// such a blob counts as stored (docs/FORMAT.md, "Deletion").
    pub fn has_blob(&self, id: &BlobId, kind: BlobKind) -> rusqlite::Result<bool> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT 1 FROM blobs b JOIN packs p ON p.id = b.pack
             WHERE b.id = ?1 AND b.kind = ?2 AND p.marked IS NULL",
        )?;
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
            "SELECT 1 FROM blobs b JOIN packs p ON p.id = b.pack
             WHERE b.id = ?1 AND b.kind = ?2 AND b.compression <> ?3 AND p.marked IS NULL",
        )?;
        stmt.exists(params![
            &id.0[..],
            kind_to_int(kind),
            Compression::ZstdDict.to_byte()
        ])
    }

    /// Where the blob is stored: in a live pack if one holds it, else in a pack marked for
    /// deletion (readers may read those; the object may be gone).
    pub fn lookup(&self, id: &BlobId) -> rusqlite::Result<Option<BlobLocation>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT b.pack, b.kind, b.offset, b.length, b.raw_length, b.compression, p.salt
             FROM blobs b JOIN packs p ON p.id = b.pack WHERE b.id = ?1
             ORDER BY p.marked IS NOT NULL, b.kind LIMIT 1",
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

    /// The id in this repository of blob `id` (of `kind`) of repository `source`, if `copy`
    /// recorded it.
    pub(crate) fn copy_target(
        &self,
        source: &RepoId,
        id: &BlobId,
        kind: BlobKind,
    ) -> rusqlite::Result<Option<BlobId>> {
        self.conn()
            .prepare_cached(
                "SELECT target FROM copy_map WHERE source = ?1 AND id = ?2 AND kind = ?3",
            )?
            .query_row(params![&source.0[..], &id.0[..], kind_to_int(kind)], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()
            .map(|t| t.map(|t| BlobId(id32(t))))
    }

    /// Records that blob `id` (of `kind`) of repository `source` is `target` here.
    pub(crate) fn record_copy_target(
        &self,
        source: &RepoId,
        id: &BlobId,
        kind: BlobKind,
        target: &BlobId,
    ) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO copy_map (source, id, kind, target) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                &source.0[..],
                &id.0[..],
                kind_to_int(kind),
                &target.0[..]
            ])
            .map(|_| ())
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
