//! Settings: where every knob of a run comes from. The flags, the environment and the
//! configuration file are merged here, once, into the library's option types
//! ([`BackendOptions`], [`CacheChoice`], [`ClientOptions`], a [`Token`], the export's text
//! buffer), the password's [`Sources`] and the [`Printer`]. For each setting, the first source
//! that gives it wins: **flags > environment > config file > defaults**. This module is the only
//! code that reads environment variables; the library reads none. (clap reads `AIRBACK_REPO` and
//! `AIRBACK_CONFIG` as the values of `--repo` and `--config` when those are not given; they are
//! declared on the flags, in `mod.rs`.)
//!
//! One setting keeps another order, as it always had: the Airtable token. A token file named by
//! `--token-file` or by the config's `token_file` wins over `AIRTABLE_TOKEN`, because a file
//! named on purpose is more specific than a variable set for a whole session. The password
//! follows the general rule except that `AIRBACK_PASSWORD_FILE` comes before
//! `AIRBACK_PASSWORD`, which comes before `AIRBACK_PASSWORD_COMMAND` (the order; see
//! `password.rs`).
//!
//! | setting | flag | environment | config file | default |
//! |---|---|---|---|---|
//! | repository | `--repo` | `AIRBACK_REPO` | `repository` | none (an error says how to give one) |
//! | configuration file | `--config` | `AIRBACK_CONFIG` | | none |
//! | password (first set wins, in this order) | `--password-file`, `--password-command` | `AIRBACK_PASSWORD_FILE`, `AIRBACK_PASSWORD`, `AIRBACK_PASSWORD_COMMAND` | `password_file`, `password_command` | a prompt when standard input is a terminal, else an error |
//! | `copy`'s target password (the same order) | `--to-password-file` | `AIRBACK_TO_PASSWORD_FILE`, `AIRBACK_TO_PASSWORD` | the target's `copies` entry: `password_file`, `password_command` (only these for the copies after `snapshot --config`) | a prompt when standard input is a terminal, else an error |
//! | KDF parameters for new keys | | `AIRBACK_KDF_PARAMS` (`m_kib,t,p`; for tests and benchmarks) | | 65536,8,1 |
//! | user name in a new key file | | `USER`, else `LOGNAME` | | empty |
//! | local cache | `--no-cache`, `--cache-dir` | `AIRBACK_CACHE_DIR` | | the user's cache directory |
//! | Airtable token | `--token-file` | `AIRTABLE_TOKEN` (after any token file) | `token_file` | none (an error says how) |
//! | Airtable endpoints | | `AIRTABLE_API_URL`, `AIRTABLE_CONTENT_URL` | | Airtable's |
//! | S3 endpoint, region, keys | the location's query | `AWS_ENDPOINT_URL`, `AWS_REGION` (else `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | | region `us-east-1` |
//! | log filter | | `AIRBACK_LOG` | | `warn`; `error` with `--quiet` |
//! | colours in the log | | `NO_COLOR` (set: none) | | on a terminal |
//! | export text buffer | | `AIRBACK_EXPORT_TEXT_BUFFER` (bytes; for tests) | | 8 MiB |
//!
//! What `snapshot` backs up (bases, tables, fields, attachments) comes from its flags over the
//! config file, merged in `snapshot.rs`; no variable sets it.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::bail;
use secrecy::SecretBox;
use zeroize::Zeroizing;

use super::GlobalArgs;
use super::password::{self, Origin, PasswordError, Purpose, Sources};
use super::print::Printer;
use crate::airtable::{ClientOptions, Token, TokenError};
use crate::backend::{BackendOptions, S3Defaults};
use crate::config::{Config, CopyTarget};
use crate::crypto::{KdfParams, KeyMeta};
use crate::repo::CacheChoice;

/// The cache directory, when neither `--cache-dir` nor `--no-cache` is given.
pub(super) const CACHE_DIR_ENV: &str = "AIRBACK_CACHE_DIR";
/// The Airtable token, when no token file is named.
pub(super) const TOKEN_ENV: &str = "AIRTABLE_TOKEN";
/// The Airtable Web API root (the fake's URL in tests).
pub(super) const API_URL_ENV: &str = "AIRTABLE_API_URL";
/// The Airtable content host, for `uploadAttachment`.
pub(super) const CONTENT_URL_ENV: &str = "AIRTABLE_CONTENT_URL";
/// The log filter (`debug`, `warn,airback::airtable=debug`, ...).
pub(super) const LOG_ENV: &str = "AIRBACK_LOG";
/// Set (to anything): no colours in the log.
pub(super) const NO_COLOR_ENV: &str = "NO_COLOR";
/// How much table text an export keeps in memory, in bytes (tests use it to take the other
/// path).
pub(super) const EXPORT_TEXT_BUFFER_ENV: &str = "AIRBACK_EXPORT_TEXT_BUFFER";
/// A file holding the repository's password.
pub(super) const PASSWORD_FILE_ENV: &str = "AIRBACK_PASSWORD_FILE";
/// The repository's password itself (scrubbed from logs, see [`crate::secrets`]).
pub(super) const PASSWORD_ENV: &str = "AIRBACK_PASSWORD";
/// A shell command that prints the repository's password.
pub(super) const PASSWORD_COMMAND_ENV: &str = "AIRBACK_PASSWORD_COMMAND";
/// A file holding the password of `copy`'s target repository.
pub(super) const TO_PASSWORD_FILE_ENV: &str = "AIRBACK_TO_PASSWORD_FILE";
/// The password of `copy`'s target repository (scrubbed from logs like `AIRBACK_PASSWORD`).
pub(super) const TO_PASSWORD_ENV: &str = "AIRBACK_TO_PASSWORD";
/// Argon2id parameters for keys this run creates, `m_kib,t,p` (tests and benchmarks make
/// keys cheap with it).
pub(super) const KDF_PARAMS_ENV: &str = "AIRBACK_KDF_PARAMS";

/// The password sources that flags and variables give (the config file's come later).
#[derive(Default)]
struct PasswordSettings {
    /// `--password-file`.
    file_flag: Option<PathBuf>,
    /// `--password-command`.
    command_flag: Option<String>,
    /// `AIRBACK_PASSWORD_FILE`.
    file_env: Option<PathBuf>,
    /// `AIRBACK_PASSWORD`, its bytes as given, wiped when the settings are dropped.
    env: Option<Zeroizing<Vec<u8>>>,
    /// `AIRBACK_PASSWORD_COMMAND`.
    command_env: Option<String>,
    /// `AIRBACK_TO_PASSWORD_FILE` (`copy`'s target).
    to_file_env: Option<PathBuf>,
    /// `AIRBACK_TO_PASSWORD` (`copy`'s target), wiped when the settings are dropped.
    to_env: Option<Zeroizing<Vec<u8>>>,
    /// Standard input is a terminal, so a prompt may ask.
    terminal: bool,
}

/// The log's settings, needed before anything else runs.
#[derive(Debug, Clone, Default)]
pub(super) struct LogSettings {
    /// `--quiet`: the default filter is `error` instead of `warn`.
    pub quiet: bool,
    /// `AIRBACK_LOG`, when set (an invalid filter falls back to the default).
    pub filter: Option<String>,
    /// `NO_COLOR` is set.
    pub no_color: bool,
}

/// Everything a command needs to know that is not its own arguments. Built once, in
/// [`super::main`].
pub(super) struct Settings {
    /// How results are printed (`--json`, `--quiet`).
    pub printer: Printer,
    /// The log.
    pub log: LogSettings,
    /// `--repo` or `AIRBACK_REPO`.
    repo: Option<String>,
    /// Where the repository's local cache lives.
    pub cache: CacheChoice,
    /// Storage settings, for repositories and restore's staging location.
    pub backend: BackendOptions,
    /// How to reach Airtable.
    pub client: ClientOptions,
    /// `AIRTABLE_TOKEN`, as given (a token never goes into `Debug`, so neither does this).
    token_env: Option<OsString>,
    /// Table text an export keeps in memory.
    pub export_text_buffer: usize,
    /// `--no-lock`: reading commands take no lock.
    pub no_lock: bool,
    /// `--config` or `AIRBACK_CONFIG`.
    config_path: Option<PathBuf>,
    /// The configuration file, once [`Settings::load_config`] has read it.
    pub config: Option<Config>,
    /// Where a password may come from.
    password: PasswordSettings,
    /// `AIRBACK_KDF_PARAMS` as given (`m_kib,t,p`), for keys this run creates.
    pub kdf_params: Option<String>,
    /// `USER`, else `LOGNAME`: the user name recorded in a key file this run creates.
    pub username: Option<String>,
}

impl Settings {
    /// The settings of this process: the flags and the environment.
    pub(super) fn new(flags: &GlobalArgs) -> Settings {
        let terminal = std::io::stdin().is_terminal();
        Settings::from_sources(flags, |name| std::env::var_os(name), terminal)
    }

    /// The settings from `flags` and the environment `env` (a variable's value by name);
    /// `terminal`: standard input is a terminal.
    fn from_sources(
        flags: &GlobalArgs,
        env: impl Fn(&str) -> Option<OsString>,
        terminal: bool,
    ) -> Settings {
        // A variable that is set to something: empty counts as unset, as does (for those
        // that must be text) a value that is not UTF-8.
        let os = |name: &str| env(name).filter(|v| !v.is_empty());
        let text = |name: &str| os(name).and_then(|v| v.into_string().ok());
        let cache = if flags.no_cache {
            CacheChoice::Memory
        } else if let Some(dir) = &flags.cache_dir {
            CacheChoice::Dir(dir.clone())
        } else if let Some(dir) = os(CACHE_DIR_ENV) {
            CacheChoice::Dir(PathBuf::from(dir))
        } else {
            CacheChoice::Default
        };
        let backend = BackendOptions {
            s3: S3Defaults {
                endpoint: text("AWS_ENDPOINT_URL"),
                region: text("AWS_REGION").or_else(|| text("AWS_DEFAULT_REGION")),
                access_key_id: text("AWS_ACCESS_KEY_ID"),
                secret_access_key: text("AWS_SECRET_ACCESS_KEY"),
                session_token: text("AWS_SESSION_TOKEN"),
            },
            ..BackendOptions::default()
        };
        let url = |name: &str| {
            text(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut client = ClientOptions::default();
        if let Some(api_url) = url(API_URL_ENV) {
            client.api_url = api_url;
        }
        if let Some(content_url) = url(CONTENT_URL_ENV) {
            client.content_url = content_url;
        }
        Settings {
            printer: Printer::new(flags.json, flags.quiet),
            log: LogSettings {
                quiet: flags.quiet,
                filter: env(LOG_ENV).and_then(|v| v.into_string().ok()),
                no_color: env(NO_COLOR_ENV).is_some(),
            },
            repo: flags.repo.clone(),
            cache,
            backend,
            client,
            // Present but empty is an error that says so, not a missing token.
            token_env: env(TOKEN_ENV),
            export_text_buffer: text(EXPORT_TEXT_BUFFER_ENV)
                .and_then(|v| v.parse().ok())
                .unwrap_or(crate::export::DEFAULT_TEXT_BUFFER),
            no_lock: flags.no_lock,
            config_path: flags.config.clone(),
            config: None,
            password: PasswordSettings {
                file_flag: flags.password_file.clone(),
                command_flag: flags.password_command.clone(),
                file_env: os(PASSWORD_FILE_ENV).map(PathBuf::from),
                env: os(PASSWORD_ENV).map(|v| Zeroizing::new(v.into_encoded_bytes())),
                command_env: text(PASSWORD_COMMAND_ENV),
                to_file_env: os(TO_PASSWORD_FILE_ENV).map(PathBuf::from),
                to_env: os(TO_PASSWORD_ENV).map(|v| Zeroizing::new(v.into_encoded_bytes())),
                terminal,
            },
            kdf_params: text(KDF_PARAMS_ENV),
            username: text("USER").or_else(|| text("LOGNAME")),
        }
    }

    /// Reads the configuration file named by `--config` or `AIRBACK_CONFIG`, if any, into
    /// [`Settings::config`].
    pub(super) fn load_config(&mut self) -> anyhow::Result<()> {
        if let Some(path) = &self.config_path {
            self.config = Some(Config::from_path(path)?);
        }
        Ok(())
    }

    /// The repository's location: `--repo` or `AIRBACK_REPO`, else the config's `repository`.
    pub(super) fn location(&self) -> anyhow::Result<String> {
        let location = self
            .repo
            .clone()
            .or_else(|| self.config.as_ref().and_then(|c| c.repository.clone()));
        match location {
            Some(location) => Ok(location),
            None => bail!(
                "no repository given: pass --repo LOCATION, set AIRBACK_REPO, or add \
                 `repository:` to the config file"
            ),
        }
    }

    /// The password sources: flags, variables, then the config file's keys, then a prompt on
    /// a terminal.
    pub(super) fn password_sources(&self) -> Sources<'_> {
        let p = &self.password;
        let config = self.config.as_ref();
        Sources {
            file_flag: p.file_flag.as_deref(),
            command_flag: p.command_flag.as_deref(),
            file_env: p.file_env.as_deref(),
            env: p.env.as_deref().map(Vec::as_slice),
            command_env: p.command_env.as_deref(),
            config_file: config.and_then(|c| c.password_file.as_deref()),
            config_command: config.and_then(|c| c.password_command.as_deref()),
            terminal: p.terminal,
        }
    }

    /// Reads the password from the first source that is set (see `password.rs`). It may run a
    /// command or ask on the terminal, so it blocks until that is done.
    pub(super) fn password(
        &self,
        purpose: Purpose<'_>,
    ) -> Result<(SecretBox<[u8]>, Origin), PasswordError> {
        password::read(password::resolve(&self.password_sources()), purpose)
    }

    /// The password of `copy`'s target repository at `location` (redacted): from
    /// `--to-password-file` (`file`), `AIRBACK_TO_PASSWORD_FILE`, `AIRBACK_TO_PASSWORD` (when
    /// `variables`), its `copies` entry (`entry`), else asked on a terminal.
    pub(super) fn target_password(
        &self,
        file: Option<&Path>,
        variables: bool,
        entry: Option<&CopyTarget>,
        location: &str,
    ) -> Result<(SecretBox<[u8]>, Origin), PasswordError> {
        let p = &self.password;
        let sources = password::TargetSources {
            file_flag: file,
            file_env: p.to_file_env.as_deref().filter(|_| variables),
            env: p.to_env.as_deref().map(Vec::as_slice).filter(|_| variables),
            config_file: entry.and_then(|e| e.password_file.as_deref()),
            config_command: entry.and_then(|e| e.password_command.as_deref()),
            terminal: p.terminal,
        };
        password::read(
            password::resolve_target(&sources),
            Purpose::OpenTarget(location),
        )
    }

    /// A new password for `key add` and `key passwd`: from `--new-password-file` (`file`),
    /// else asked twice on a terminal.
    pub(super) fn new_password(
        &self,
        file: Option<&Path>,
    ) -> Result<(SecretBox<[u8]>, Origin), PasswordError> {
        password::read_new(file, self.password.terminal)
    }

    /// The Argon2id parameters of a key this run creates: `AIRBACK_KDF_PARAMS` (`m_kib,t,p`,
    /// for tests and benchmarks), else [`KdfParams::DEFAULT`].
    pub(super) fn new_key_kdf(&self) -> anyhow::Result<KdfParams> {
        let Some(text) = &self.kdf_params else {
            return Ok(KdfParams::DEFAULT);
        };
        let numbers: Vec<u32> = text
            .split(',')
            .map(|n| n.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                anyhow::anyhow!("{KDF_PARAMS_ENV}={text} is not `m_kib,t,p` (three numbers)")
            })?;
        let [memory_kib, iterations, parallelism] = numbers[..] else {
            anyhow::bail!("{KDF_PARAMS_ENV}={text} is not `m_kib,t,p` (three numbers)");
        };
        Ok(KdfParams {
            memory_kib,
            iterations,
            parallelism,
        })
    }

    /// Who makes a key this run creates, and when: this host, `USER` (else `LOGNAME`), now.
    pub(super) fn key_meta(&self) -> KeyMeta {
        KeyMeta {
            hostname: crate::repo::lock::hostname(),
            username: self.username.clone().unwrap_or_default(),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    /// The Airtable token: from `--token-file` (`file`), else the config's `token_file`, else
    /// `AIRTABLE_TOKEN`.
    pub(super) fn token(
        &self,
        file: Option<&Path>,
        config: Option<&Config>,
    ) -> Result<Token, TokenError> {
        let file = file.or_else(|| config.and_then(|c| c.token_file.as_deref()));
        if let Some(path) = file {
            return Token::from_file(path);
        }
        let origin = format!("`{TOKEN_ENV}`");
        match &self.token_env {
            None => Err(TokenError::Missing),
            Some(value) => match value.to_str() {
                Some(value) => Token::with_origin(value, &origin),
                None => Err(TokenError::Malformed { origin }),
            },
        }
    }
}

/// Tells [`crate::secrets`] the credentials found in the environment (`AIRTABLE_TOKEN`,
/// `AWS_SECRET_ACCESS_KEY`, ...), so that no log line or error message shows them.
pub(super) fn remember_secrets_from_env() {
    for var in crate::secrets::SECRET_VARS {
        if let Some(value) = std::env::var_os(var).and_then(|v| v.into_string().ok()) {
            crate::secrets::remember(&value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn flags() -> GlobalArgs {
        GlobalArgs {
            repo: None,
            cache_dir: None,
            no_cache: false,
            json: false,
            quiet: false,
            no_lock: false,
            config: None,
            password_file: None,
            password_command: None,
        }
    }

    fn with_env(flags: &GlobalArgs, vars: &[(&str, &str)]) -> Settings {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Settings::from_sources(flags, |name| vars.get(name).cloned(), false)
    }

    fn cache_dir(settings: &Settings) -> Option<PathBuf> {
        match &settings.cache {
            CacheChoice::Dir(dir) => Some(dir.clone()),
            _ => None,
        }
    }

    #[test]
    fn the_cache_flags_win_over_the_variable_which_wins_over_the_default() {
        let env = [(CACHE_DIR_ENV, "/from/env")];
        let mut f = flags();
        assert_eq!(cache_dir(&with_env(&f, &env)), Some("/from/env".into()));
        assert!(matches!(with_env(&f, &[]).cache, CacheChoice::Default));
        assert!(matches!(
            with_env(&f, &[(CACHE_DIR_ENV, "")]).cache,
            CacheChoice::Default
        ));
        f.cache_dir = Some("/from/flag".into());
        assert_eq!(cache_dir(&with_env(&f, &env)), Some("/from/flag".into()));
        f.no_cache = true;
        assert!(matches!(with_env(&f, &env).cache, CacheChoice::Memory));
    }

    #[test]
    fn s3_settings_come_from_the_aws_variables() {
        let s = with_env(
            &flags(),
            &[
                ("AWS_ENDPOINT_URL", "http://minio:9000"),
                ("AWS_DEFAULT_REGION", "eu-west-3"),
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", "SECRET"),
                ("AWS_SESSION_TOKEN", ""),
            ],
        );
        let s3 = &s.backend.s3;
        assert_eq!(s3.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-3"));
        assert_eq!(s3.access_key_id.as_deref(), Some("AKID"));
        assert_eq!(s3.secret_access_key.as_deref(), Some("SECRET"));
        assert_eq!(s3.session_token, None, "an empty variable counts as unset");
        let shown = format!("{:?}", s.backend);
        assert!(!shown.contains("SECRET"), "{shown}");
        let s = with_env(
            &flags(),
            &[
                ("AWS_REGION", "us-west-2"),
                ("AWS_DEFAULT_REGION", "eu-west-3"),
            ],
        );
        assert_eq!(s.backend.s3.region.as_deref(), Some("us-west-2"));
    }

    #[test]
    fn airtable_endpoints_are_trimmed_and_empty_ones_ignored() {
        let s = with_env(
            &flags(),
            &[
                (API_URL_ENV, " http://127.0.0.1:9 "),
                (CONTENT_URL_ENV, "  "),
            ],
        );
        assert_eq!(s.client.api_url, "http://127.0.0.1:9");
        assert_eq!(s.client.content_url, ClientOptions::default().content_url);
    }

    #[test]
    fn a_token_file_wins_over_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let (flag_file, config_file) = (dir.path().join("flag"), dir.path().join("config"));
        std::fs::write(&flag_file, "patFLAG\n").unwrap();
        std::fs::write(&config_file, "patCONFIG\n").unwrap();
        let config = Config {
            token_file: Some(config_file),
            ..Config::default()
        };
        let s = with_env(&flags(), &[(TOKEN_ENV, " patENV ")]);
        let secret = |t: Result<Token, TokenError>| t.unwrap().expose_secret().to_owned();
        assert_eq!(secret(s.token(Some(&flag_file), Some(&config))), "patFLAG");
        assert_eq!(secret(s.token(None, Some(&config))), "patCONFIG");
        assert_eq!(secret(s.token(None, None)), "patENV");
        let none = with_env(&flags(), &[]).token(None, None).unwrap_err();
        assert!(matches!(none, TokenError::Missing), "{none:?}");
        let empty = with_env(&flags(), &[(TOKEN_ENV, "")]).token(None, None);
        assert!(
            empty
                .unwrap_err()
                .to_string()
                .contains("`AIRTABLE_TOKEN` is empty"),
            "an empty variable is named"
        );
    }

    #[test]
    fn the_export_buffer_and_log_come_from_their_variables() {
        let s = with_env(
            &flags(),
            &[
                (EXPORT_TEXT_BUFFER_ENV, "1000"),
                (LOG_ENV, "debug"),
                (NO_COLOR_ENV, ""),
            ],
        );
        assert_eq!(s.export_text_buffer, 1000);
        assert_eq!(s.log.filter.as_deref(), Some("debug"));
        assert!(s.log.no_color, "NO_COLOR counts when set, even empty");
        let s = with_env(&flags(), &[(EXPORT_TEXT_BUFFER_ENV, "lots")]);
        assert_eq!(s.export_text_buffer, crate::export::DEFAULT_TEXT_BUFFER);
    }

    #[test]
    fn password_sources_come_from_flags_variables_and_the_config_in_that_order() {
        let env = [
            (PASSWORD_FILE_ENV, "/env/pw"),
            (PASSWORD_ENV, "env-secret"),
            (PASSWORD_COMMAND_ENV, "env command"),
            (KDF_PARAMS_ENV, "1024,1,1"),
            ("LOGNAME", "logname-user"),
        ];
        let mut f = flags();
        f.password_command = Some("flag command".into());
        let mut s = with_env(&f, &env);
        s.config = Some(Config {
            password_file: Some("/config/pw".into()),
            ..Config::default()
        });
        let sources = s.password_sources();
        assert_eq!(sources.file_flag, None);
        assert_eq!(sources.command_flag, Some("flag command"));
        assert_eq!(sources.file_env, Some(Path::new("/env/pw")));
        assert_eq!(sources.env, Some(&b"env-secret"[..]));
        assert_eq!(sources.command_env, Some("env command"));
        assert_eq!(sources.config_file, Some(Path::new("/config/pw")));
        assert_eq!(sources.config_command, None);
        assert!(!sources.terminal);
        assert_eq!(
            password::resolve(&sources),
            Some(password::Source::CommandFlag("flag command"))
        );
        assert_eq!(s.kdf_params.as_deref(), Some("1024,1,1"));
        assert_eq!(s.username.as_deref(), Some("logname-user"));
        let s = with_env(&flags(), &[("USER", "user"), ("LOGNAME", "logname-user")]);
        assert_eq!(s.username.as_deref(), Some("user"));
        // Empty variables count as unset.
        let s = with_env(
            &flags(),
            &[
                (PASSWORD_FILE_ENV, ""),
                (PASSWORD_ENV, ""),
                (PASSWORD_COMMAND_ENV, ""),
            ],
        );
        assert_eq!(password::resolve(&s.password_sources()), None);
    }

    #[test]
    fn the_target_password_comes_from_its_own_variables_never_the_sources() {
        use secrecy::ExposeSecret;
        let dir = tempfile::tempdir().unwrap();
        let entry_file = dir.path().join("entry-pw");
        std::fs::write(&entry_file, "entry secret\n").unwrap();
        let entry = CopyTarget {
            repository: "/offsite".into(),
            password_file: Some(entry_file),
            ..CopyTarget::default()
        };
        let read = |s: &Settings, variables: bool, entry: Option<&CopyTarget>| {
            s.target_password(None, variables, entry, "/offsite")
                .map(|(secret, origin)| {
                    (
                        String::from_utf8(secret.expose_secret().to_vec()).unwrap(),
                        origin.source().to_owned(),
                    )
                })
        };
        let s = with_env(
            &flags(),
            &[
                (PASSWORD_ENV, "source secret"),
                (TO_PASSWORD_ENV, "target secret"),
            ],
        );
        assert_eq!(
            read(&s, true, Some(&entry)).unwrap(),
            ("target secret".into(), "`AIRBACK_TO_PASSWORD`".into())
        );
        // The copies after a snapshot use their entry only.
        assert_eq!(read(&s, false, Some(&entry)).unwrap().0, "entry secret");
        // The source's password is never tried on the target.
        let s = with_env(&flags(), &[(PASSWORD_ENV, "source secret")]);
        let err = read(&s, true, None).unwrap_err();
        assert!(matches!(err, PasswordError::MissingTarget { .. }), "{err}");
    }

    #[test]
    fn the_repository_comes_from_the_flag_else_the_config() {
        let mut f = flags();
        let mut s = with_env(&f, &[]);
        let err = s.location().unwrap_err().to_string();
        assert!(
            err.contains("--repo") && err.contains("`repository:`"),
            "{err}"
        );
        s.config = Some(Config {
            repository: Some("/from/config".into()),
            ..Config::default()
        });
        assert_eq!(s.location().unwrap(), "/from/config");
        f.repo = Some("/from/flag".into());
        let mut s = with_env(&f, &[]);
        s.config = Some(Config {
            repository: Some("/from/config".into()),
            ..Config::default()
        });
        assert_eq!(s.location().unwrap(), "/from/flag");
    }
}
