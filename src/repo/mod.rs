//! The repository: a content-addressed, deduplicating store of blobs on a [`Backend`].
//!
//! Layout (docs/FORMAT.md): `config`, `data/<xx>/<pack id>`, `index/<id>`, `snapshots/<id>`,
//! `dicts/<name>`, `locks/<id>`, `keys/<id>` (format 2). Every object but `config` is immutable
//! and named by the BLAKE3 hash of its stored bytes. Writes go packs → index → snapshot; the
//! snapshot is the only commit point, so a crash at any moment leaves a repository that `check`
//! accepts.
//!
//! Format 2 seals every object and every blob ([`crate::crypto`]); the repository's
//! [`Crypto`] decides, and for format 1 it is [`Crypto::None`], which reads and writes exactly
//! as before. An encrypted repository is unlocked ([`keys`]) before the cache, a lock or
//! anything else is created, so a wrong password writes nothing.
//!
//! This module knows nothing about Airtable or HTTP.

pub(crate) mod cache;
pub(crate) mod config;
mod exclusive;
pub(crate) mod index;
pub(crate) mod keys;
pub(crate) mod lock;
pub(crate) mod pack;
pub(crate) mod snapshot;
pub(crate) mod writer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::backend::{Backend, BackendError};
use crate::chunker::Chunker;
use crate::codec::{self, DecodeError, Dictionaries, Dictionary};
use crate::crypto::{Crypto, MasterKey, ObjectKind, Password, Salt};
use crate::id::{BlobId, DictId, IndexId, KeyId, PackId, RepoId, SnapshotId};
use cache::Cache;
use index::{IndexFile, IndexPack, index_path};
use pack::{FOOTER_LEN, FOOTER_LEN_V2, PackedBlob, pack_path};
use snapshot::snapshot_path;

pub use crate::chunker::ChunkerParams;
pub use config::{EncryptionConfig, InitEncryption, InitOptions, RepoConfig};
pub use exclusive::Exclusive;
pub use keys::KeyInfo;
pub use pack::BlobKind;
pub use snapshot::{CopyOf, Node, NodeKind, Snapshot, Tree};
pub use writer::{BlobWriter, FileSaver, WriterOptions, WriterStats};

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A writer's lock expired before it could commit.
    #[error("the snapshot was not saved because {0}; nothing was committed: run the command again")]
    WriterExpired(String),
    /// There is no repository at the location.
    #[error("no airback repository at {location}; create one with `airback init`")]
    NoRepository {
        /// Where we looked.
        location: String,
    },
    /// `init` found a repository already.
    #[error(
        "a repository already exists at {location}; nothing was changed (choose another location to create a new one)"
    )]
    AlreadyExists {
        /// Where.
        location: String,
    },
    /// The config exists but this build cannot use it.
    #[error("cannot use the repository at {location}: {reason}")]
    BadConfig {
        /// Where.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The local cache failed.
    #[error("the local cache failed (it is safe to delete it, airback rebuilds it): {0}")]
    Cache(#[from] rusqlite::Error),
    /// Something stored is damaged or inconsistent.
    #[error(
        "{what} is damaged: {detail}; run `airback check --read-data` to see everything affected"
    )]
    Corrupt {
        /// The object.
        what: String,
        /// How.
        detail: String,
    },
    /// A blob that should exist is not in any index.
    #[error("blob {0} is not in the repository index; run `airback check`")]
    MissingBlob(BlobId),
    /// A blob no usable pack holds, in a repository with packs known to be missing or
    /// damaged.
    #[error(
        "blob {blob} cannot be read: it is in none of the repository's usable packs, and {bad_packs} pack(s) are recorded as missing or damaged; run `airback check` to see what is affected, then `airback repair index`"
    )]
    LostBlob {
        /// The blob.
        blob: BlobId,
        /// How many packs are recorded as bad.
        bad_packs: usize,
    },
    /// The pack an index file names for a blob is not in storage.
    #[error(
        "pack {pack}, which holds blob {blob}, is missing from storage; run `airback check` to see the snapshots affected, then `airback repair index` and `airback repair snapshots`"
    )]
    MissingPack {
        /// The pack.
        pack: PackId,
        /// The blob that was wanted.
        blob: BlobId,
    },
    /// Another process holds a conflicting lock.
    #[error(
        "the repository is locked by {holder}; wait for it to finish (stale locks expire after 30 minutes)"
    )]
    Locked {
        /// Who holds the lock.
        holder: String,
    },
    /// A reading command could not write its lock file (a read-only or full repository).
    #[error(
        "cannot lock the repository at {location} for reading: writing the lock file failed; if \
         the repository is read-only or its disk is full, pass --no-lock to read it without a \
         lock (no `prune` may run meanwhile)"
    )]
    LockNotWritten {
        /// Where the repository is.
        location: String,
        /// Why the write failed.
        #[source]
        source: Box<BackendError>,
    },
    /// The password opens none of the repository's key files.
    #[error(
        "the password opens none of the {key_files} key files of the repository at {location}; nothing was changed. Give the right one with --password-file, --password-command, AIRBACK_PASSWORD_FILE, AIRBACK_PASSWORD or AIRBACK_PASSWORD_COMMAND, or `password_file`/`password_command` in the config file"
    )]
    WrongPassword {
        /// Where the repository is.
        location: String,
        /// How many key files it has.
        key_files: usize,
    },
    /// The repository is encrypted and no password was given.
    #[error(
        "the repository at {location} is encrypted: give its password with --password-file, --password-command, AIRBACK_PASSWORD_FILE, AIRBACK_PASSWORD or AIRBACK_PASSWORD_COMMAND, or `password_file`/`password_command` in the config file"
    )]
    PasswordRequired {
        /// Where the repository is.
        location: String,
    },
    /// An encrypted repository without key files.
    #[error(
        "the repository at {location} is encrypted but has no key files in `keys/`; restore them from a copy"
    )]
    NoKeys {
        /// Where the repository is.
        location: String,
    },
    /// Every key file is damaged.
    #[error("no key file could be used: {damaged} are damaged; restore them from a copy")]
    NoUsableKey {
        /// The key files and what is wrong with each.
        damaged: String,
    },
    /// A key file opened with the password but belongs to another repository id or config.
    #[error(
        "`config` does not match the repository's keys at {location}: it was changed or replaced; restore it from a copy"
    )]
    ConfigMismatch {
        /// Where the repository is.
        location: String,
    },
    /// A format-1 config next to key files: someone replaced an encrypted repository's config.
    #[error(
        "the repository at {location} has key files but its config says format 1: the config was replaced; restore it from a copy"
    )]
    Downgrade {
        /// Where the repository is.
        location: String,
    },
    /// A key operation on an unencrypted repository.
    #[error("the repository is not encrypted (format version 1): it has no keys")]
    NotEncrypted,
    /// A key operation that would lock everyone out, or names no key.
    #[error("{0}")]
    KeyRefused(String),
    /// Key-derivation parameters outside the accepted range.
    #[error("invalid key derivation parameters: {0}")]
    BadKdf(String),
    /// An earlier upload of this run failed, so nothing may be committed.
    #[error("an earlier upload failed ({0}); nothing was committed, run the command again")]
    WriterFailed(String),
    /// An internal task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand.
pub type Result<T, E = RepoError> = std::result::Result<T, E>;

/// Where the local cache lives.
#[derive(Debug, Clone, Default)]
pub enum CacheChoice {
    /// The user's cache directory (`~/.cache/airback` on Linux).
    #[default]
    Default,
    /// Under this directory.
    Dir(PathBuf),
    /// In memory only (slower next time, nothing left on disk).
    Memory,
}

/// An open repository. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Repository {
    inner: Arc<RepoInner>,
}

#[derive(Debug)]
struct RepoInner {
    backend: Backend,
    config: RepoConfig,
    /// BLAKE3 of the config's stored bytes (bound by every key file).
    config_hash: [u8; 32],
    crypto: Crypto,
    /// The key file the repository was unlocked with (format 2).
    key_id: Option<KeyId>,
    cache: Cache,
    data_chunker: Chunker,
    meta_chunker: Chunker,
    dicts: RwLock<Arc<Dictionaries>>,
    /// The `dicts/` object name of each loaded dictionary (in format 1 its id; in format 2
    /// the hash of the sealed object).
    dict_objects: RwLock<HashMap<DictId, String>>,
    /// False when a dictionary that blobs may need is lost (neither `dicts/` nor a copy):
    /// blobs compressed with a dictionary then do not count as stored.
    dicts_complete: AtomicBool,
    /// The writer lock this process holds, if any ([`Repository::lock_writer`]).
    writer_session: std::sync::Mutex<Option<Arc<lock::WriterSession>>>,
}

/// A dictionary that is missing from `dicts/` or damaged there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DictionaryProblem {
    /// The dictionary; for a damaged format-2 object, whose dictionary cannot be known, the
    /// object's name.
    pub id: DictId,
    /// What is wrong with its `dicts/` object.
    pub problem: String,
    /// Whether its copy in a pack was found intact and is used instead (for a damaged
    /// format-2 object: whether every dictionary the index records was loaded).
    pub recovered: bool,
    /// The damaged object (`dicts/<name>`), when its dictionary cannot be known (format 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

/// Why a pack is recorded as bad when storage does not have it.
pub const MISSING: &str = "missing from storage";

/// The storage path of a dictionary.
pub(crate) fn dict_path(id: &DictId) -> String {
    format!("dicts/{id}")
}

/// What `Repository::sync_index` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Index files read from the repository.
    pub index_files_loaded: usize,
    /// Whether index files the cache knew were gone from storage (and were forgotten).
    pub rebuilt: bool,
}

fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> RepoError {
    RepoError::Corrupt {
        what: what.into(),
        detail: detail.into(),
    }
}

/// A snapshot run lists `data/` (to adopt leftover packs and notice lost ones) at least this
/// often from each cache, and after a run from that cache that did not finish.
pub const PACK_LISTING_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

/// Up to this many packs (a page of an S3, GCS or B2 listing), every snapshot run lists
/// `data/`: the listing costs one request, and a lost pack is noticed by the next run. Beyond,
/// [`PACK_LISTING_INTERVAL`] applies, so a run's requests do not grow with the repository.
pub const PACKS_LISTED_EVERY_RUN: usize = 1000;

/// Cache keys: when a snapshot run last listed `data/`, and whether one is under way (or was
/// interrupted).
const PACKS_LISTED_KEY: &str = "packs-listed";
const RUN_UNDER_WAY_KEY: &str = "snapshot-run-under-way";

impl Repository {
    /// Creates a repository at the backend's location: format 2 with a first key when
    /// `options.encryption` holds a password, else format 1. Fails if one exists (a `config`,
    /// or key files). Writes the key file first and `config` last. Returns the config and the
    /// first key's id.
    pub async fn init(
        backend: &Backend,
        options: &InitOptions,
    ) -> Result<(RepoConfig, Option<KeyId>)> {
        let location = backend.location().to_string();
        if backend.size("config").await?.is_some() || keys::has_keys(backend).await? {
            return Err(RepoError::AlreadyExists { location });
        }
        let encrypted = matches!(options.encryption, InitEncryption::Password { .. });
        let config = RepoConfig::new(options, encrypted);
        config
            .validate()
            .map_err(|reason| RepoError::BadConfig { location, reason })?;
        let json = serde_json::to_vec_pretty(&config).expect("config serializes");
        let key = match &options.encryption {
            InitEncryption::None => None,
            InitEncryption::Password {
                password,
                kdf,
                meta,
            } => {
                let master = Arc::new(MasterKey::generate());
                Some(
                    keys::create_first_key(backend, &master, &config, &json, password, *kdf, meta)
                        .await?,
                )
            }
        };
        backend.write("config", json).await?;
        Ok((config, key))
    }

    /// Opens the storage at `location` for an existing repository, mapping a local path that
    /// does not exist to [`RepoError::NoRepository`].
    pub(crate) fn backend_for(
        location: &str,
        options: &crate::backend::BackendOptions,
    ) -> Result<Backend> {
        match Backend::open(location, options) {
            Err(BackendError::NotFound { location, .. }) => {
                Err(RepoError::NoRepository { location })
            }
            other => Ok(other?),
        }
    }

    /// Reads and validates `config`; returns it with its stored bytes (key files bind their
    /// hash). A program that asks for a password only when one is needed reads the config
    /// first ([`RepoConfig::is_encrypted`]), then calls [`Repository::open_with_config`].
    pub async fn read_config(backend: &Backend) -> Result<(RepoConfig, Vec<u8>)> {
        let location = backend.location().to_string();
        let bytes = match backend.read("config").await {
            Ok(b) => b,
            Err(BackendError::NotFound { .. }) => return Err(RepoError::NoRepository { location }),
            Err(e) => return Err(e.into()),
        };
        let config: RepoConfig =
            serde_json::from_slice(&bytes).map_err(|e| RepoError::BadConfig {
                location: location.clone(),
                reason: format!("`config` is not a valid airback config: {e}"),
            })?;
        config
            .validate()
            .map_err(|reason| RepoError::BadConfig { location, reason })?;
        Ok((config, bytes))
    }

    /// Opens the repository: reads `config`, unlocks the master key with `password` (format
    /// 2; format 1 ignores it), then opens the local cache and brings it up to date with the
    /// repository's index files.
    pub async fn open(
        backend: Backend,
        cache: CacheChoice,
        password: Option<&Password>,
    ) -> Result<Repository> {
        let (config, bytes) = Self::read_config(&backend).await?;
        Self::open_with_config(backend, config, &bytes, cache, password).await
    }

    /// [`Repository::open`] with a config already read by [`Repository::read_config`]. An
    /// encrypted repository is unlocked first: with a wrong or missing password it fails
    /// before anything is written (no cache, no lock, no upload).
    pub async fn open_with_config(
        backend: Backend,
        config: RepoConfig,
        config_bytes: &[u8],
        cache: CacheChoice,
        password: Option<&Password>,
    ) -> Result<Repository> {
        let repo = Self::unlock(backend, config, config_bytes, cache, password).await?;
        repo.finish_open().await?;
        Ok(repo)
    }

    /// [`Repository::open_with_config`] for a writer (`snapshot`): the writer lock for
    /// `operation` is written before the index is read, so the one listing of `index/` that
    /// opening makes is also the one the deletion rules require after the lock
    /// ([`Repository::lock_writer`] lists it again).
    pub async fn open_with_config_for_writer(
        backend: Backend,
        config: RepoConfig,
        config_bytes: &[u8],
        cache: CacheChoice,
        password: Option<&Password>,
        operation: &str,
    ) -> Result<(Repository, lock::LockGuard)> {
        let repo = Self::unlock(backend, config, config_bytes, cache, password).await?;
        let guard = repo.hold_writer(operation).await?;
        if let Err(e) = repo.finish_open().await {
            let _ = guard.release().await;
            return Err(e);
        }
        Ok((repo, guard))
    }

    /// Brings the cache up to date with the index files and loads the dictionaries.
    async fn finish_open(&self) -> Result<()> {
        // The index first: it says which dictionaries have a copy in a pack.
        self.sync_index().await?;
        self.load_dictionaries().await?;
        Ok(())
    }

    /// Unlocks the master key (format 2) and opens the local cache: the part of opening that
    /// reads only `config` and `keys/`.
    async fn unlock(
        backend: Backend,
        config: RepoConfig,
        config_bytes: &[u8],
        cache: CacheChoice,
        password: Option<&Password>,
    ) -> Result<Repository> {
        let location = backend.location().to_string();
        let (crypto, key_id) = if config.is_encrypted() {
            let password = password.ok_or(RepoError::PasswordRequired { location })?;
            let (master, key_id) = keys::unlock(&backend, &config, config_bytes, password).await?;
            (Crypto::Key(Arc::new(master)), Some(key_id))
        } else {
            if keys::has_keys(&backend).await? {
                return Err(RepoError::Downgrade { location });
            }
            (Crypto::None, None)
        };
        let cache_path = match &cache {
            CacheChoice::Default => cache::default_cache_path(None, &config.id),
            CacheChoice::Dir(dir) => cache::default_cache_path(Some(dir), &config.id),
            CacheChoice::Memory => None,
        };
        let cache = tokio::task::spawn_blocking(move || Cache::open(cache_path.as_deref()))
            .await
            .map_err(|e| RepoError::Internal(e.to_string()))??;
        let seed = crypto.chunker_seed(config.chunker.seed);
        let repo = Repository {
            inner: Arc::new(RepoInner {
                data_chunker: Chunker::new(config.chunker.data, seed),
                meta_chunker: Chunker::new(config.chunker.meta, seed),
                backend,
                config,
                config_hash: *blake3::hash(config_bytes).as_bytes(),
                crypto,
                key_id,
                cache,
                dicts: RwLock::new(Arc::default()),
                dict_objects: RwLock::new(HashMap::new()),
                dicts_complete: AtomicBool::new(true),
                writer_session: std::sync::Mutex::new(None),
            }),
        };
        Ok(repo)
    }

    /// Loads the zstd dictionaries: those in `dicts/` and those the index records a copy of.
    /// Each `dicts/` object is verified (format 1: against its name; format 2: opened, then its
    /// name checked); one that is missing or damaged is replaced by its copy in a pack when that
    /// copy is intact (the copy is a metadata blob whose id is the dictionary id). Returns what
    /// was missing or damaged.
    pub(crate) async fn load_dictionaries(&self) -> Result<Vec<DictionaryProblem>> {
        let names: Vec<String> = self
            .backend()
            .list("dicts/")
            .await?
            .into_iter()
            .map(|e| e.name)
            .collect();
        let this = self.clone();
        let recorded = tokio::task::spawn_blocking(move || this.cache().dictionary_ids())
            .await
            .map_err(|e| RepoError::Internal(e.to_string()))??;
        let encrypted = self.is_encrypted();
        let mut good: Vec<Dictionary> = Vec::new();
        let mut objects: HashMap<DictId, String> = HashMap::new();
        // Dictionaries to recover from their copies, with what is wrong in `dicts/`.
        let mut wanted: BTreeMap<DictId, String> = BTreeMap::new();
        // Format 2: damaged objects, whose dictionary cannot be known.
        let mut damaged_objects: Vec<(DictId, String)> = Vec::new();
        for name in names {
            let Ok(name_id) = name.parse::<DictId>() else {
                continue;
            };
            let bytes = match self.backend().read(&dict_path(&name_id)).await {
                Ok(bytes) => bytes,
                Err(BackendError::NotFound { .. }) => continue, // removed meanwhile
                Err(e) => return Err(e.into()),
            };
            match self.open_dictionary(&name_id, &bytes) {
                Ok(dict) => {
                    objects.insert(dict.id, name);
                    good.push(dict);
                }
                Err(why) if encrypted => damaged_objects.push((name_id, why)),
                Err(why) => {
                    wanted.insert(name_id, why);
                }
            }
        }
        for id in recorded {
            if !good.iter().any(|d| d.id == id) {
                wanted
                    .entry(id)
                    .or_insert_with(|| "missing from `dicts/`".to_string());
            }
        }
        let mut problems = Vec::new();
        for (id, problem) in wanted {
            let copy = match self.read_blob(&BlobId(id.0)).await {
                Ok(bytes) => Dictionary::new(bytes, self.crypto()).filter(|d| d.id == id),
                Err(RepoError::Backend(e)) if !matches!(e, BackendError::NotFound { .. }) => {
                    return Err(e.into());
                }
                Err(_) => None,
            };
            let recovered = copy.is_some();
            good.extend(copy);
            if recovered {
                tracing::warn!(
                    "zstd dictionary {id} is {problem}; using its copy in a pack (`airback repair index` writes it back)"
                );
            } else {
                tracing::warn!(
                    "zstd dictionary {id} is {problem}, and no intact copy exists: metadata compressed with it cannot be read; run `airback check`"
                );
            }
            problems.push(DictionaryProblem {
                id,
                problem,
                recovered,
                object: None,
            });
        }
        let all_recovered = problems.iter().all(|p| p.recovered);
        for (name, problem) in damaged_objects {
            tracing::warn!(
                "zstd dictionary object `{}` is {problem}; run `airback check`",
                dict_path(&name)
            );
            problems.push(DictionaryProblem {
                id: name,
                problem,
                recovered: all_recovered,
                object: Some(dict_path(&name)),
            });
        }
        // Blobs compressed with a dictionary while none can be loaded (a repository written
        // before dictionaries had copies, whose `dicts/` was lost) cannot be decoded either.
        let this = self.clone();
        let orphaned = good.is_empty()
            && tokio::task::spawn_blocking(move || this.cache().has_dictionary_blobs())
                .await
                .map_err(|e| RepoError::Internal(e.to_string()))??;
        let complete = problems.iter().all(|p| p.recovered) && !orphaned;
        self.inner.dicts_complete.store(complete, Ordering::SeqCst);
        *self.inner.dicts.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Dictionaries::new(good));
        *self
            .inner
            .dict_objects
            .write()
            .unwrap_or_else(|e| e.into_inner()) = objects;
        Ok(problems)
    }

    /// Turns the bytes of `dicts/<name>` into a dictionary, or says what is wrong with them.
    fn open_dictionary(&self, name: &DictId, stored: &[u8]) -> Result<Dictionary, String> {
        let renamed = DictId::of(stored) != *name;
        if !self.is_encrypted() {
            return match Dictionary::new(stored.to_vec(), self.crypto()) {
                Some(dict) if dict.id == *name => Ok(dict),
                _ => Err("damaged: its bytes do not hash to its name".into()),
            };
        }
        let plain = self
            .crypto()
            .open_object(ObjectKind::Dictionary, stored)
            .map_err(|e| format!("damaged: {e}"))?;
        let dict = Dictionary::new(plain, self.crypto())
            .ok_or_else(|| "damaged: not a zstd dictionary".to_string())?;
        if renamed {
            return Err("damaged: its bytes do not hash to its name (it was renamed)".into());
        }
        Ok(dict)
    }

    /// The `dicts/` object name of a loaded dictionary (its id in format 1).
    pub(crate) fn dictionary_object(&self, id: &DictId) -> Option<String> {
        self.inner
            .dict_objects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// False when some dictionary that stored blobs may need could not be loaded: blobs
    /// compressed with a dictionary then do not count as stored, so they are stored again.
    #[doc(hidden)] // for airback's own tests: see crate::internals
    pub fn dictionaries_complete(&self) -> bool {
        self.inner.dicts_complete.load(Ordering::SeqCst)
    }

    /// Whether the index holds the blob as `kind` in a pack not known to be damaged, in a form
    /// that can be decoded.
    pub(crate) fn has_blob(&self, id: &BlobId, kind: BlobKind) -> Result<bool> {
        Ok(self
            .cache()
            .has_usable_blob(id, kind, self.dictionaries_complete())?)
    }

    /// Forgets that packs were recorded as damaged, after they were read whole and verified.
    pub(crate) async fn mark_packs_sound(&self, packs: &[PackId]) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let this = self.clone();
        let packs = packs.to_vec();
        let removed = tokio::task::spawn_blocking(move || this.cache().mark_packs_sound(&packs))
            .await
            .map_err(|e| RepoError::Internal(e.to_string()))??;
        if removed > 0 {
            self.sync_index().await?;
        }
        Ok(())
    }

    /// Records packs as missing or damaged (see [`Cache::mark_packs_damaged`]), warns about
    /// the ones not known before, and reloads the index so other copies of their blobs are
    /// found.
    pub(crate) async fn mark_packs_damaged(&self, packs: Vec<(PackId, String)>) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let this = self.clone();
        let reasons: HashMap<PackId, String> = packs.iter().cloned().collect();
        let fresh = tokio::task::spawn_blocking(move || this.cache().mark_packs_damaged(&packs))
            .await
            .map_err(|e| RepoError::Internal(e.to_string()))??;
        for id in &fresh {
            tracing::warn!(
                "pack {id} is {}: its blobs are stored again when needed; run `airback check` to see the snapshots affected, then `airback repair index`",
                reasons[id]
            );
        }
        if !fresh.is_empty() {
            self.sync_index().await?;
        }
        Ok(())
    }

    /// The repository's zstd dictionaries.
    #[doc(hidden)] // for airback's own tests: see crate::internals
    pub fn dictionaries(&self) -> Arc<Dictionaries> {
        self.inner
            .dicts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stores a dictionary in `dicts/` (sealed in format 2, named by the hash of the stored
    /// bytes) and adds it to the loaded ones. It is durable before any blob compressed with it
    /// is packed. `repair` writes lost dictionaries back with it.
    pub(crate) async fn store_dictionary(&self, dict: Dictionary) -> Result<()> {
        let stored = self
            .crypto()
            .seal_object(ObjectKind::Dictionary, &dict.bytes);
        let name = DictId::of(&stored);
        self.backend().write(&dict_path(&name), stored).await?;
        self.inner
            .dict_objects
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dict.id, name.to_hex());
        let mut guard = self.inner.dicts.write().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Dictionary> = guard.iter().cloned().collect();
        list.push(dict);
        *guard = Arc::new(Dictionaries::new(list));
        Ok(())
    }

    /// The storage.
    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// The repository's parameters.
    pub(crate) fn config(&self) -> &RepoConfig {
        &self.inner.config
    }

    /// How the repository's objects are protected.
    pub(crate) fn crypto(&self) -> &Crypto {
        &self.inner.crypto
    }

    /// The repository's id, chosen by `init` (copies name their original's repository by it).
    pub fn id(&self) -> RepoId {
        self.inner.config.id
    }

    /// Whether the repository is encrypted (format 2).
    pub fn is_encrypted(&self) -> bool {
        self.inner.crypto.is_encrypted()
    }

    /// The id of a blob with this plaintext: BLAKE3 (format 1) or keyed BLAKE3 (format 2).
    pub fn blob_id(&self, plain: &[u8]) -> BlobId {
        self.inner.crypto.blob_id(plain)
    }

    /// The local cache.
    #[doc(hidden)] // for airback's own tests: see crate::internals
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// The chunker for a blob kind.
    #[doc(hidden)] // for airback's own tests: see crate::internals
    pub fn chunker(&self, kind: BlobKind) -> &Chunker {
        match kind {
            BlobKind::Data => &self.inner.data_chunker,
            BlobKind::Meta => &self.inner.meta_chunker,
        }
    }

    /// Ids of the index files in the repository.
    #[doc(hidden)] // for airback's own tests: see crate::internals
    pub async fn list_index_files(&self) -> Result<Vec<IndexId>> {
        let entries = self.backend().list("index/").await?;
        Ok(entries.iter().filter_map(|e| e.name.parse().ok()).collect())
    }

    /// Reads an index file, opens it (format 2) and verifies that it hashes to its name.
    #[doc(hidden)] // for airback's own tests: see crate::internals
    pub async fn load_index_file(&self, id: &IndexId) -> Result<IndexFile> {
        let what = format!("index file {id}");
        let bytes = self.backend().read(&index_path(id)).await?;
        let file: IndexFile = self.decode_object(&what, ObjectKind::Index, &id.0, &bytes)?;
        file.validate(self.config().version)
            .map_err(|e| corrupt(what, e))?;
        Ok(file)
    }

    /// Decodes an unpacked object (index file, snapshot) stored under `name`. Format 1 checks
    /// the name first; format 2 opens (authenticates) first, so that damage is reported as
    /// "authentication failed", and checks the name second.
    fn decode_object<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        kind: ObjectKind,
        name: &[u8; 32],
        bytes: &[u8],
    ) -> Result<T> {
        let name_ok = blake3::hash(bytes).as_bytes() == name;
        if !self.is_encrypted() && !name_ok {
            return Err(corrupt(what, "content does not hash to its name"));
        }
        let value = codec::decode_file(self.crypto(), kind, bytes).map_err(|e| corrupt(what, e))?;
        if !name_ok {
            return Err(corrupt(
                what,
                "content does not hash to its name (an intact object stored under another name)",
            ));
        }
        Ok(value)
    }

    /// Brings the local cache up to date with the repository's index files: files gone from
    /// storage (prune and repair delete the files they replaced) are forgotten, new ones loaded.
    pub(crate) async fn sync_index(&self) -> Result<SyncStats> {
        let in_repo: HashSet<IndexId> = self.list_index_files().await?.into_iter().collect();
        let cache_ref = self.clone();
        let known = tokio::task::spawn_blocking(move || cache_ref.cache().index_files())
            .await
            .map_err(|e| RepoError::Internal(e.to_string()))??;
        let mut stats = SyncStats::default();
        let gone: Vec<IndexId> = known.difference(&in_repo).copied().collect();
        if !gone.is_empty() {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.cache().drop_index_files(&gone))
                .await
                .map_err(|e| RepoError::Internal(e.to_string()))??;
            stats.rebuilt = true;
        }
        let mut missing: Vec<IndexId> = in_repo.difference(&known).copied().collect();
        missing.sort();
        for id in missing {
            // A damaged index file is left out (its blobs are simply stored again); `check`
            // reports it. Failing here would stop every command, `check` included.
            let file = match self.load_index_file(&id).await {
                Ok(file) => file,
                Err(RepoError::Corrupt { what, detail }) => {
                    tracing::warn!("ignoring {what}: {detail}; run `airback check`");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.cache().add_index_file(&id, &file, false))
                .await
                .map_err(|e| RepoError::Internal(e.to_string()))??;
            stats.index_files_loaded += 1;
        }
        Ok(stats)
    }

    /// The packs in storage (`data/`) with their sizes, sorted by id. Names that are not pack
    /// ids are left out.
    pub(crate) async fn list_packs(&self) -> Result<Vec<(PackId, u64)>> {
        let mut packs: Vec<(PackId, u64)> = self
            .backend()
            .list("data/")
            .await?
            .into_iter()
            .filter_map(|e| Some((e.name.rsplit('/').next()?.parse().ok()?, e.size)))
            .collect();
        packs.sort();
        Ok(packs)
    }

    /// Reads a pack's header with range requests, opens it (format 2) and checks it is well
    /// formed. Returns the pack's kind, blobs and salt.
    pub(crate) async fn read_pack_header(
        &self,
        id: &PackId,
        size: u64,
    ) -> Result<(BlobKind, Vec<PackedBlob>, Option<Salt>)> {
        let path = pack_path(id);
        let what = || format!("pack {id}");
        if size < FOOTER_LEN as u64 {
            return Err(corrupt(what(), "too short to be a pack"));
        }
        // One read usually gets footer and header together.
        let tail_len = size.min(64 * 1024);
        let tail = self
            .backend()
            .read_range(&path, size - tail_len..size)
            .await?;
        if tail.len() as u64 != tail_len {
            return Err(corrupt(
                what(),
                format!("read {} bytes of its last {tail_len}", tail.len()),
            ));
        }
        let footer = pack::parse_footer(&tail[tail.len().saturating_sub(FOOTER_LEN_V2)..], size)
            .map_err(|e| corrupt(what(), e))?;
        let footer_len = footer.len() as u64;
        let needed = u64::from(footer.header_len) + footer_len;
        let header = if needed <= tail_len {
            tail[(tail_len - needed) as usize..(tail_len - footer_len) as usize].to_vec()
        } else {
            self.backend()
                .read_range(&path, size - needed..size - footer_len)
                .await?
        };
        let (kind, blobs) = pack::parse_header(&header, &footer, size, self.crypto())
            .map_err(|e| corrupt(what(), e))?;
        Ok((kind, blobs, footer.salt))
    }

    /// Finds packs that no index file lists (left by a run that crashed after uploading them)
    /// and writes an index file for the valid ones, so their blobs are reused instead of
    /// uploaded again. Unreadable leftovers are ignored here and reported by `check`.
    ///
    /// The same listing shows indexed packs that are missing from storage or have the wrong
    /// size: they are recorded as damaged (`Repository::mark_packs_damaged`), so this run
    /// stores their content again instead of referring to it.
    pub async fn adopt_unindexed_packs(&self) -> Result<usize> {
        // The index before the listing: a pack an index file names was stored before it.
        // Packs marked for deletion count as known (writers never adopt them), but one that
        // is gone is no damage: prune deletes them.
        let this = self.clone();
        let (known, live, bad) = tokio::task::spawn_blocking(move || {
            let cache = this.cache();
            Ok::<_, rusqlite::Error>((
                cache.pack_sizes()?,
                cache.live_pack_sizes()?,
                cache.bad_packs()?,
            ))
        })
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))??;
        let listed: HashMap<PackId, u64> = self.list_packs().await?.into_iter().collect();
        let mut damaged: Vec<(PackId, String)> = live
            .iter()
            .filter_map(|(id, size)| match listed.get(id) {
                None => Some((*id, MISSING.to_string())),
                Some(actual) if actual != size => Some((
                    *id,
                    format!("{actual} bytes in storage where the index says {size}"),
                )),
                Some(_) => None,
            })
            .collect();
        damaged.sort();
        self.mark_packs_damaged(damaged).await?;
        // A pack recorded as missing that is back (stored again, here or on another machine:
        // the same content has the same name) is used again once it verifies.
        let mut back: Vec<PackId> = bad
            .iter()
            .filter(|(id, reason)| reason.as_str() == MISSING && listed.contains_key(id))
            .map(|(id, _)| *id)
            .collect();
        back.sort();
        let mut sound = Vec::new();
        for id in back {
            if self.verify_pack(&id).await.is_ok() {
                sound.push(id);
            }
        }
        self.mark_packs_sound(&sound).await?;
        let bad: HashMap<PackId, String> = bad
            .into_iter()
            .filter(|(id, _)| !sound.contains(id))
            .collect();
        let mut unindexed: Vec<(PackId, u64)> = listed
            .into_iter()
            .filter(|(id, _)| !known.contains_key(id) && !bad.contains_key(id))
            .collect();
        unindexed.sort();
        let mut adopted = Vec::new();
        for (id, size) in unindexed {
            match self.verify_pack(&id).await {
                Ok((kind, blobs, salt)) => adopted.push(IndexPack {
                    id,
                    kind,
                    size,
                    blobs,
                    salt,
                }),
                Err(RepoError::Corrupt { detail, .. }) => {
                    // Not downloaded again by every run: remembered as damaged.
                    tracing::warn!("not adopting pack {id}: {detail}");
                    let this = self.clone();
                    let reason = format!("damaged ({detail})");
                    tokio::task::spawn_blocking(move || {
                        this.cache().mark_packs_damaged(&[(id, reason)])
                    })
                    .await
                    .map_err(|e| RepoError::Internal(e.to_string()))??;
                }
                Err(e) => tracing::warn!("not adopting pack {id}: {e}"),
            }
        }
        let count = adopted.len();
        if count > 0 {
            self.write_index_file(IndexFile::new(adopted, self.config().version))
                .await?;
        }
        Ok(count)
    }

    /// [`Repository::adopt_unindexed_packs`] when its listing of `data/` is due for a snapshot
    /// run: the index knows at most `every_run_up_to` packs ([`PACKS_LISTED_EVERY_RUN`]: one
    /// page of a listing, so a lost pack is noticed by the next run), or this cache never listed the packs, or a
    /// snapshot run from it did not finish (it may have left packs no index lists), or the
    /// last listing is older than [`PACK_LISTING_INTERVAL`]. Returns the packs adopted, or
    /// `None` when the listing was not due. Either way it records that a snapshot run is under
    /// way, until [`Repository::snapshot_run_finished`].
    ///
    /// Skipping the listing weakens nothing the deletion rules rely on (they rest on the index
    /// and the locks): leftovers of another host's crashed run are adopted at the next listing
    /// (meanwhile their content may be stored again), and a pack lost from storage is noticed
    /// by that listing, by `check`, or by the first read that misses it.
    pub async fn adopt_unindexed_packs_if_due(
        &self,
        every_run_up_to: usize,
    ) -> Result<Option<usize>> {
        let now = std::time::SystemTime::now();
        let value = |key: &str| {
            self.cache()
                .get_value(key)
                .ok()
                .flatten()
                .filter(|v| !v.is_empty())
        };
        let interrupted = value(RUN_UNDER_WAY_KEY).is_some();
        let this = self.clone();
        let packs = tokio::task::spawn_blocking(move || this.cache().pack_sizes())
            .await
            .map_err(|e| RepoError::Internal(e.to_string()))??
            .len();
        let recent = value(PACKS_LISTED_KEY)
            .and_then(|t| humantime::parse_rfc3339(&t).ok())
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age < PACK_LISTING_INTERVAL);
        let stamp = humantime::format_rfc3339_seconds(now).to_string();
        self.set_cache_value(RUN_UNDER_WAY_KEY, &stamp);
        if recent && !interrupted && packs > every_run_up_to {
            return Ok(None);
        }
        let adopted = self.adopt_unindexed_packs().await?;
        self.set_cache_value(PACKS_LISTED_KEY, &stamp);
        Ok(Some(adopted))
    }

    /// Records that the snapshot run [`Repository::adopt_unindexed_packs_if_due`] began
    /// finished with every base's snapshot saved, so the next run need not list `data/`.
    pub fn snapshot_run_finished(&self) {
        self.set_cache_value(RUN_UNDER_WAY_KEY, "");
    }

    /// Stores a value in the cache's key-value table; a cache that cannot be written only
    /// costs the next run requests.
    fn set_cache_value(&self, key: &str, value: &str) {
        if let Err(e) = self.cache().set_value(key, value) {
            tracing::debug!("cannot store `{key}` in the cache: {e}");
        }
    }

    /// Downloads a whole pack and checks that it hashes to its name and that every blob in it
    /// opens (format 2) and decodes to its id. Adoption uses it: a pack no index vouches for is
    /// trusted only after this. Packs are at most a few tens of MiB, and adoption is rare
    /// (after a crash).
    pub(crate) async fn verify_pack(
        &self,
        id: &PackId,
    ) -> Result<(BlobKind, Vec<PackedBlob>, Option<Salt>)> {
        let bytes = self.backend().read(&pack_path(id)).await?;
        let dicts = self.dictionaries();
        let crypto = self.crypto().clone();
        let id = *id;
        writer::run_cpu(move || {
            if PackId::of(&bytes) != id {
                return Err(corrupt(
                    format!("pack {id}"),
                    "content does not hash to its name",
                ));
            }
            let (kind, blobs, salt) =
                pack::parse_pack(&bytes, &crypto).map_err(|e| corrupt(format!("pack {id}"), e))?;
            for b in &blobs {
                let start = b.offset as usize;
                let stored = bytes
                    .get(start..start + b.length as usize)
                    .ok_or_else(|| corrupt(format!("pack {id}"), "a blob lies outside the pack"))?;
                pack::open_and_decode(&crypto, salt.as_ref(), kind, b, stored, &dicts)
                    .map_err(|e| corrupt(format!("blob {} in pack {id}", b.id), e.to_string()))?;
            }
            Ok((kind, blobs, salt))
        })
        .await?
    }

    /// Writes an index file and loads it into the cache.
    pub(crate) async fn write_index_file(&self, file: IndexFile) -> Result<IndexId> {
        let bytes = codec::encode_file(self.crypto(), ObjectKind::Index, &file);
        let id = IndexId::of(&bytes);
        self.backend().write(&index_path(&id), bytes).await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.cache().add_index_file(&id, &file, true))
            .await
            .map_err(|e| RepoError::Internal(e.to_string()))??;
        Ok(id)
    }

    /// A writer for new blobs; see [`BlobWriter`].
    pub fn writer(&self) -> BlobWriter {
        BlobWriter::new(self.clone())
    }

    async fn locate(&self, id: &BlobId) -> Result<Option<cache::BlobLocation>> {
        let this = self.clone();
        let blob = *id;
        tokio::task::spawn_blocking(move || this.cache().lookup(&blob))
            .await
            .map_err(|e| RepoError::Internal(e.to_string()))?
            .map_err(RepoError::from)
    }

    /// Reads one blob and verifies its hash. A blob the cache does not know may have been
    /// indexed by another process since this one opened the repository: the index is synced
    /// once before giving up.
    pub async fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let location = match self.locate(id).await? {
            Some(location) => location,
            None => {
                self.sync_index().await?;
                match self.locate(id).await? {
                    Some(location) => location,
                    None => {
                        let this = self.clone();
                        let bad = tokio::task::spawn_blocking(move || this.cache().bad_packs())
                            .await
                            .map_err(|e| RepoError::Internal(e.to_string()))??;
                        return Err(if bad.is_empty() {
                            RepoError::MissingBlob(*id)
                        } else {
                            RepoError::LostBlob {
                                blob: *id,
                                bad_packs: bad.len(),
                            }
                        });
                    }
                }
            }
        };
        let start = u64::from(location.offset);
        let stored = match self
            .backend()
            .read_range(
                &pack_path(&location.pack),
                start..start + u64::from(location.length),
            )
            .await
        {
            Ok(stored) => stored,
            Err(BackendError::NotFound { .. }) => {
                self.mark_packs_damaged(vec![(location.pack, MISSING.into())])
                    .await?;
                return Err(RepoError::MissingPack {
                    pack: location.pack,
                    blob: *id,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let id = *id;
        let dicts = self.dictionaries();
        let crypto = self.crypto().clone();
        let decoded = tokio::task::spawn_blocking(move || {
            let entry = PackedBlob {
                id,
                offset: location.offset,
                length: location.length,
                raw_length: location.raw_length,
                compression: location.compression,
            };
            pack::open_and_decode(
                &crypto,
                location.salt.as_ref(),
                location.kind,
                &entry,
                &stored,
                &dicts,
            )
        })
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))?;
        match decoded {
            Ok(plain) => Ok(plain),
            // Not the pack's fault: the dictionary is lost (reported on open and by `check`).
            Err(e @ DecodeError::MissingDictionary(_)) if !self.dictionaries_complete() => {
                Err(corrupt(
                    format!("blob {id} in pack {}", location.pack),
                    e.to_string(),
                ))
            }
            Err(e) => {
                let detail = match e {
                    DecodeError::Authentication(_) => format!("blob {id}: {e}"),
                    _ => format!("blob {id} does not decode: {e}"),
                };
                self.mark_packs_damaged(vec![(location.pack, format!("damaged ({detail})"))])
                    .await?;
                Err(corrupt(format!("pack {}", location.pack), detail))
            }
        }
    }

    /// Stores a snapshot manifest: the commit point. Call only after [`BlobWriter::flush`].
    /// Under a writer lock that expired ([`Repository::lock_writer`]) nothing is stored.
    pub async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        let session = self
            .inner
            .writer_session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(why) = session.and_then(|s| s.expired(std::time::SystemTime::now())) {
            return Err(RepoError::WriterExpired(why));
        }
        let bytes = codec::encode_file(self.crypto(), ObjectKind::Snapshot, snapshot);
        let id = SnapshotId::of(&bytes);
        self.backend().write(&snapshot_path(&id), bytes).await?;
        // Listings then find its manifest in the cache (`crate::snapshots`), not in storage.
        let text = serde_json::to_string(snapshot).expect("snapshots serialize");
        if let Err(e) = self.cache().set_value(&format!("snapshot:{id}"), &text) {
            tracing::debug!("cannot keep snapshot {id} in the cache: {e}");
        }
        Ok(id)
    }

    /// Records the writer lock this process now holds.
    pub(crate) fn set_writer_session(&self, session: Option<Arc<lock::WriterSession>>) {
        *self
            .inner
            .writer_session
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = session;
    }

    /// Ids of all snapshots.
    pub async fn list_snapshots(&self) -> Result<Vec<SnapshotId>> {
        let entries = self.backend().list("snapshots/").await?;
        Ok(entries.iter().filter_map(|e| e.name.parse().ok()).collect())
    }

    /// Reads a snapshot manifest, opens it (format 2) and verifies its hash.
    pub async fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let what = format!("snapshot {id}");
        let bytes = self.backend().read(&snapshot_path(id)).await?;
        let snapshot: Snapshot = self.decode_object(&what, ObjectKind::Snapshot, &id.0, &bytes)?;
        if snapshot.version != 1 {
            return Err(corrupt(
                format!("snapshot {id}"),
                format!(
                    "version {} is not supported; upgrade airback",
                    snapshot.version
                ),
            ));
        }
        Ok(snapshot)
    }

    /// Reads one blob of `kind` from the place an index entry gives (with the pack's salt in
    /// format 2), without the cache (which may record the pack as bad while this blob in it is
    /// sound). `check` uses it.
    pub(crate) async fn read_blob_at(
        &self,
        pack: &PackId,
        salt: Option<Salt>,
        kind: BlobKind,
        entry: &PackedBlob,
    ) -> Result<Vec<u8>> {
        let start = u64::from(entry.offset);
        let stored = self
            .backend()
            .read_range(&pack_path(pack), start..start + u64::from(entry.length))
            .await?;
        let entry = *entry;
        let dicts = self.dictionaries();
        let crypto = self.crypto().clone();
        let pack = *pack;
        tokio::task::spawn_blocking(move || {
            pack::open_and_decode(&crypto, salt.as_ref(), kind, &entry, &stored, &dicts)
                .map_err(|e| corrupt(format!("blob {} in pack {pack}", entry.id), e.to_string()))
        })
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))?
    }

    /// Parses a tree blob's bytes.
    pub(crate) fn parse_tree(id: &BlobId, bytes: &[u8]) -> Result<Tree> {
        let tree: Tree = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("tree {id}"), e.to_string()))?;
        if tree.version != 1 {
            return Err(corrupt(
                format!("tree {id}"),
                format!("version {} is not supported; upgrade airback", tree.version),
            ));
        }
        Ok(tree)
    }

    /// Reads a tree blob.
    pub async fn load_tree(&self, id: &BlobId) -> Result<Tree> {
        Self::parse_tree(id, &self.read_blob(id).await?)
    }
}
