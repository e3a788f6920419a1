//! Key files in `keys/` (format 2): unlocking the master key with a password, and adding,
//! listing, checking and removing keys. Each key file wraps the master key with one password
//! (docs/FORMAT.md, "Key files"); it is named by the BLAKE3 hash of its bytes.
//!
//! Unlocking runs before anything else of a repository is touched: [`unlock`] only lists and
//! reads `keys/`, so a wrong password writes nothing. Deleting a key file is deletion, so it is
//! only reachable through [`Exclusive`]; [`Exclusive::change_password`] writes the new key
//! file before it deletes the old one.

use std::sync::Arc;

use serde::Serialize;

use super::{Exclusive, RepoConfig, RepoError, Repository, Result};
use crate::backend::{Backend, BackendError};
use crate::crypto::{self, KdfParams, KeyFile, KeyMeta, MasterKey, Password, Unwrap};
use crate::id::KeyId;

/// The storage path of a key file.
pub(crate) fn key_path(id: &KeyId) -> String {
    format!("keys/{id}")
}

/// One key of an encrypted repository, as `airback key list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The key file's id (its name in `keys/`).
    pub id: KeyId,
    /// Whether the repository was opened with this key.
    pub current: bool,
    /// When it was made.
    pub created: String,
    /// The host it was made on.
    pub hostname: String,
    /// The user who made it.
    pub username: String,
    /// Its Argon2id parameters.
    pub kdf: KdfParams,
}

/// The names in `keys/`, sorted; names that are not key ids are left out.
async fn list_key_names(backend: &Backend) -> Result<Vec<String>> {
    let mut names: Vec<String> = backend
        .list("keys/")
        .await?
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    Ok(names)
}

/// Whether `keys/` holds anything (a format-1 config next to key files is a downgrade).
pub(super) async fn has_keys(backend: &Backend) -> Result<bool> {
    Ok(!list_key_names(backend).await?.is_empty())
}

/// A key file as read from `keys/`.
struct ReadKey {
    id: KeyId,
    file: KeyFile,
    /// Whether its bytes hash to its name.
    name_ok: bool,
}

/// Reads and parses `keys/<name>`.
async fn read_key_file(backend: &Backend, name: &str) -> Result<Result<ReadKey, String>> {
    let Ok(id) = name.parse::<KeyId>() else {
        return Ok(Err("its name is not a key id".into()));
    };
    let bytes = match backend.read(&key_path(&id)).await {
        Ok(bytes) => bytes,
        Err(BackendError::NotFound { .. }) => return Ok(Err("removed meanwhile".into())),
        Err(e) => return Err(e.into()),
    };
    let name_ok = KeyId::of(&bytes) == id;
    Ok(KeyFile::from_bytes(&bytes).map(|file| ReadKey { id, file, name_ok }))
}

const NAME_MISMATCH: &str = "its bytes do not hash to its name";

/// A copy of the password for a blocking task (wiped when dropped, like the original).
fn duplicate(password: &Password) -> Password {
    Password::new(password.expose().into())
}

/// Finds the key file that `password` opens and returns the master key it wraps. Tries the key
/// files in name order; each try costs one Argon2id. See docs/FORMAT.md, "Opening with a
/// password", for the errors.
pub(super) async fn unlock(
    backend: &Backend,
    config: &RepoConfig,
    config_bytes: &[u8],
    password: &Password,
) -> Result<(MasterKey, KeyId)> {
    let location = backend.location().to_string();
    let names = list_key_names(backend).await?;
    if names.is_empty() {
        return Err(RepoError::NoKeys { location });
    }
    let config_hash = *blake3::hash(config_bytes).as_bytes();
    let mut damaged = Vec::new();
    let mut other_repository = false;
    let mut tried = 0;
    for name in &names {
        let (id, file) = match read_key_file(backend, name).await? {
            Ok(ReadKey {
                id,
                file,
                name_ok: true,
            }) => (id, file),
            Ok(_) => {
                tracing::warn!("key file {name} is damaged ({NAME_MISMATCH}); skipping it");
                damaged.push(format!("{name} ({NAME_MISMATCH})"));
                continue;
            }
            Err(why) => {
                tracing::warn!("key file {name} is damaged ({why}); skipping it");
                damaged.push(format!("{name} ({why})"));
                continue;
            }
        };
        if let Err(why) = file.check_fields() {
            tracing::warn!("key file {name} cannot be used ({why}); skipping it");
            damaged.push(format!("{name} ({why})"));
            continue;
        }
        tried += 1;
        let (repo_id, pw) = (config.id, duplicate(password));
        let outcome =
            tokio::task::spawn_blocking(move || crypto::unwrap(&file, &pw, &repo_id, &config_hash))
                .await
                .map_err(|e| RepoError::Internal(e.to_string()))?;
        match outcome {
            Unwrap::Opened(master) => return Ok((master, id)),
            Unwrap::WrongPassword => {}
            Unwrap::OtherRepository => {
                tracing::warn!(
                    "key file {name} opens with this password but belongs to another repository or config; skipping it"
                );
                other_repository = true;
            }
            Unwrap::Damaged(why) => {
                tracing::warn!("key file {name} is damaged ({why}); skipping it");
                damaged.push(format!("{name} ({why})"));
            }
        }
    }
    if other_repository {
        return Err(RepoError::ConfigMismatch { location });
    }
    if tried == 0 || damaged.len() == names.len() {
        return Err(RepoError::NoUsableKey {
            damaged: damaged.join(", "),
        });
    }
    Err(RepoError::WrongPassword {
        location,
        key_files: names.len(),
    })
}

/// Wraps `master` with `password` (Argon2id on a blocking thread) and stores the key file.
async fn write_key(
    backend: &Backend,
    master: &Arc<MasterKey>,
    config: &RepoConfig,
    config_hash: [u8; 32],
    password: &Password,
    kdf: KdfParams,
    meta: &KeyMeta,
) -> Result<KeyId> {
    if password.is_empty() {
        return Err(RepoError::KeyRefused(
            "the password is empty; give a non-empty password".into(),
        ));
    }
    kdf.check_caps().map_err(RepoError::BadKdf)?;
    let (master, pw, meta, repo_id) =
        (master.clone(), duplicate(password), meta.clone(), config.id);
    let file = tokio::task::spawn_blocking(move || {
        crypto::wrap(&master, &repo_id, &config_hash, &pw, kdf, &meta)
    })
    .await
    .map_err(|e| RepoError::Internal(e.to_string()))?
    .map_err(RepoError::BadKdf)?;
    let bytes = file.to_bytes();
    let id = KeyId::of(&bytes);
    backend.write(&key_path(&id), bytes).await?;
    Ok(id)
}

/// Writes the first key file of a new repository (before its `config`).
pub(super) async fn create_first_key(
    backend: &Backend,
    master: &Arc<MasterKey>,
    config: &RepoConfig,
    config_bytes: &[u8],
    password: &Password,
    kdf: KdfParams,
    meta: &KeyMeta,
) -> Result<KeyId> {
    let hash = *blake3::hash(config_bytes).as_bytes();
    write_key(backend, master, config, hash, password, kdf, meta).await
}

impl Repository {
    fn master(&self) -> Result<&Arc<MasterKey>> {
        match &self.inner.crypto {
            crypto::Crypto::Key(master) => Ok(master),
            crypto::Crypto::None => Err(RepoError::NotEncrypted),
        }
    }

    /// The key file this repository was opened with; `None` for an unencrypted one.
    pub fn current_key(&self) -> Option<KeyId> {
        self.inner.key_id
    }

    /// The repository's keys, sorted by id. Damaged key files are left out (with a warning;
    /// [`Repository::verify_key_files`] reports them). [`RepoError::NotEncrypted`] for a
    /// format-1 repository.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.master()?;
        let mut keys = Vec::new();
        for name in list_key_names(self.backend()).await? {
            match read_key_file(self.backend(), &name).await? {
                Ok(ReadKey {
                    id,
                    file,
                    name_ok: true,
                }) => keys.push(KeyInfo {
                    id,
                    current: Some(id) == self.inner.key_id,
                    kdf: file.kdf_params(),
                    created: file.created,
                    hostname: file.hostname,
                    username: file.username,
                }),
                Ok(_) => tracing::warn!("key file {name} is damaged ({NAME_MISMATCH}); not listed"),
                Err(why) => tracing::warn!("key file {name} is damaged ({why}); not listed"),
            }
        }
        Ok(keys)
    }

    /// Adds a key: the master key wrapped with another password. Returns its id.
    pub async fn add_key(
        &self,
        password: &Password,
        kdf: KdfParams,
        meta: &KeyMeta,
    ) -> Result<KeyId> {
        let master = self.master()?;
        write_key(
            self.backend(),
            master,
            self.config(),
            self.inner.config_hash,
            password,
            kdf,
            meta,
        )
        .await
    }

    /// Checks every key file with the master key: that it parses, is within the KDF caps, that
    /// its MAC is right (so a changed clear field is "authentication failed"), and that it
    /// hashes to its name. Returns each problem with the key file it concerns (an empty list
    /// when all are sound). `check` reports them.
    pub async fn verify_key_files(&self) -> Result<Vec<(String, String)>> {
        let master = self.master()?;
        let mut problems = Vec::new();
        for name in list_key_names(self.backend()).await? {
            let ReadKey { file, name_ok, .. } = match read_key_file(self.backend(), &name).await? {
                Ok(found) => found,
                Err(why) => {
                    problems.push((name, format!("damaged: {why}")));
                    continue;
                }
            };
            if let Err(why) = file.check_fields() {
                problems.push((name, format!("damaged: {why}")));
            } else if !crypto::verify_mac(&file, master) {
                problems.push((
                    name,
                    "authentication failed (its mac does not match the master key)".into(),
                ));
            } else if !name_ok {
                problems.push((
                    name,
                    format!("damaged: {NAME_MISMATCH} (an intact key file under another name)"),
                ));
            }
        }
        Ok(problems)
    }
}

impl Exclusive {
    /// Removes a key file. Refuses the repository's only key and the key this repository was
    /// opened with (open it with another password to remove that one).
    pub async fn remove_key(&self, id: &KeyId) -> Result<()> {
        self.master()?;
        let names = list_key_names(self.backend()).await?;
        if !names.contains(&id.to_hex()) {
            return Err(RepoError::KeyRefused(format!(
                "there is no key {id} in the repository; `airback key list` shows the keys"
            )));
        }
        if names.len() == 1 {
            return Err(RepoError::KeyRefused(format!(
                "refusing to remove key {}: it is the repository's only key, and without it \
                 nothing in the repository can be read",
                id.short()
            )));
        }
        if Some(*id) == self.current_key() {
            return Err(RepoError::KeyRefused(format!(
                "refusing to remove key {}: it is the key this command opened the repository \
                 with (open it with another password to remove this one)",
                id.short()
            )));
        }
        Ok(self.backend().delete(&key_path(id)).await?)
    }

    /// Replaces the current key with one for `password`: writes the new key file, then deletes
    /// the one the repository was opened with. Returns the new key's id.
    pub async fn change_password(
        &self,
        password: &Password,
        kdf: KdfParams,
        meta: &KeyMeta,
    ) -> Result<KeyId> {
        let old = self.current_key().ok_or(RepoError::NotEncrypted)?;
        let new = self.add_key(password, kdf, meta).await?;
        if new != old {
            self.backend().delete(&key_path(&old)).await?;
        }
        Ok(new)
    }
}
