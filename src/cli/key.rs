//! `airback key list | add | remove ID | passwd`: the passwords of an encrypted repository.
//! Each password wraps the repository's master key in its own key file under `keys/`
//! (docs/FORMAT.md). `add` and `passwd` open the repository with the usual password sources
//! and take the new password from `--new-password-file` or, on a terminal, ask for it twice.
//! `remove` and `passwd` delete a key file, so they hold the exclusive lock. A version 1
//! repository has no keys: every `key` command says so and exits 1.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::settings::Settings;

/// Arguments of `airback key`.
#[derive(Debug, Args)]
pub(super) struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// List the key files: one per password that opens the repository
    List,
    /// Add a password that opens the repository (the current one keeps working)
    Add(NewPasswordArgs),
    /// Remove a key file, by id or unique prefix (not the only one, nor the one in use)
    Remove {
        /// The key's id, or a unique prefix of it (see `airback key list`)
        id: String,
    },
    /// Change the password this command opens the repository with
    Passwd(NewPasswordArgs),
}

/// Where the new password of `key add` and `key passwd` comes from.
#[derive(Debug, Args)]
struct NewPasswordArgs {
    /// Read the new password from this file (default: ask twice on the terminal)
    #[arg(long, value_name = "FILE")]
    new_password_file: Option<PathBuf>,
}

impl KeyArgs {
    /// Whether the command writes to the repository (everything but `list`), so that
    /// `--no-lock` is refused.
    pub(super) fn writes(&self) -> bool {
        !matches!(self.command, KeyCommand::List)
    }
}

/// Runs `airback key …`.
pub(super) async fn run(s: &Settings, args: &KeyArgs) -> anyhow::Result<u8> {
    encrypted::run(s, args).await
}

/// The commands, on an encrypted repository.
mod encrypted {
    use anyhow::{Context, bail};
    use serde_json::json;

    use super::super::print::count;
    use super::super::settings::Settings;
    use super::super::{exit, open_repo};
    use super::{KeyArgs, KeyCommand};
    use crate::crypto::Password;
    use crate::repo::{RepoError, Repository};

    pub(in super::super) async fn run(s: &Settings, args: &KeyArgs) -> anyhow::Result<u8> {
        // A v1 repository fails here with RepoError::NotEncrypted (exit 1), before any new
        // password is asked for.
        let repo = open_repo(s).await?;
        if !repo.is_encrypted() {
            return Err(RepoError::NotEncrypted.into());
        }
        match &args.command {
            KeyCommand::List => list(s, &repo).await,
            KeyCommand::Add(new) => {
                let password = new_password(s, new.new_password_file.as_deref())?;
                let id = repo
                    .add_key(&password, s.new_key_kdf()?, &s.key_meta())
                    .await
                    .context("cannot add the key")?;
                drop(password);
                s.printer.result(&json!({"key_id": id}), |t| {
                    t.note(format_args!(
                        "added key {}: the new password opens the repository too",
                        id.short()
                    ))
                })?;
                Ok(exit::OK)
            }
            KeyCommand::Remove { id } => {
                let keys = repo.list_keys().await?;
                let matching: Vec<_> = keys
                    .iter()
                    .filter(|k| k.id.to_string().starts_with(id.as_str()))
                    .collect();
                let key = match matching.as_slice() {
                    [key] => key.id,
                    [] => bail!("no key {id} in the repository; `airback key list` shows the keys"),
                    _ => bail!(
                        "the prefix {id} names {} keys; give more of the id",
                        matching.len()
                    ),
                };
                let exclusive = repo.lock_exclusive("key remove").await?;
                let removed = exclusive.remove_key(&key).await;
                exclusive.release().await?;
                removed?;
                s.printer.result(&json!({"removed": key}), |t| {
                    t.note(format_args!("removed key {}", key.short()))
                })?;
                Ok(exit::OK)
            }
            KeyCommand::Passwd(new) => {
                let password = new_password(s, new.new_password_file.as_deref())?;
                let exclusive = repo.lock_exclusive("key passwd").await?;
                let changed = exclusive
                    .change_password(&password, s.new_key_kdf()?, &s.key_meta())
                    .await;
                exclusive.release().await?;
                drop(password);
                let id = changed?;
                s.printer.result(&json!({"key_id": id}), |t| {
                    t.note(format_args!(
                        "password changed: key {} replaces the one this command opened with",
                        id.short()
                    ))
                })?;
                Ok(exit::OK)
            }
        }
    }

    async fn list(s: &Settings, repo: &Repository) -> anyhow::Result<u8> {
        let keys = repo.list_keys().await?;
        s.printer.result(&keys, |t| {
            t.line(format_args!(
                "  {:<8}  {:<20}  {:<20}  {:<12}  {}",
                "ID", "CREATED", "HOST", "USER", "KDF"
            ))?;
            for k in &keys {
                t.line(format_args!(
                    "{} {:<8}  {:<20}  {:<20}  {:<12}  argon2id m={} KiB, t={}, p={}",
                    if k.current { "*" } else { " " },
                    k.id.short(),
                    k.created,
                    k.hostname,
                    k.username,
                    k.kdf.memory_kib,
                    k.kdf.iterations,
                    k.kdf.parallelism
                ))?;
            }
            t.note(format_args!(
                "{} (* the key this command opened the repository with)",
                count(keys.len() as u64, "key")
            ))
        })?;
        Ok(exit::OK)
    }

    fn new_password(s: &Settings, file: Option<&std::path::Path>) -> anyhow::Result<Password> {
        let (secret, _origin) = s.new_password(file)?;
        Ok(Password::from(secret))
    }
}
