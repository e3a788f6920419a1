//! Settings: where every knob of a run comes from. The flags, the environment and the
//! configuration file are merged here, once, into the library's option types
//! ([`BackendOptions`], [`CacheChoice`], [`ClientOptions`], a [`Token`], the export's text
//! buffer) and the [`Printer`]. For each setting, the first source that gives it wins:
//! **flags > environment > config file > defaults**. This module is the only code that reads
//! environment variables; the library reads none. (clap reads `AIRBACK_REPO` and
//! `AIRBACK_CONFIG` as the values of `--repo` and `--config` when those are not given; they are
//! declared on the flags, in `mod.rs` and `snapshot.rs`.)
//!
//! One setting keeps another order, as it always had: the Airtable token. A token file named by
//! `--token-file` or by the config's `token_file` wins over `AIRTABLE_TOKEN`, because a file
//! named on purpose is more specific than a variable set for a whole session.
//!
//! | setting | flag | environment | config file | default |
//! |---|---|---|---|---|
//! | repository | `--repo` | `AIRBACK_REPO` | `repository` | none (an error says how to give one) |
//! | configuration file | `--config` | `AIRBACK_CONFIG` | | none |
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
use std::path::{Path, PathBuf};

use anyhow::bail;

use super::GlobalArgs;
use super::print::Printer;
use crate::airtable::{ClientOptions, Token, TokenError};
use crate::backend::{BackendOptions, S3Defaults};
use crate::config::Config;
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
}

impl Settings {
    /// The settings of this process: the flags and the environment.
    pub(super) fn new(flags: &GlobalArgs) -> Settings {
        Settings::from_sources(flags, |name| std::env::var_os(name))
    }

    /// The settings from `flags` and the environment `env` (a variable's value by name).
    fn from_sources(flags: &GlobalArgs, env: impl Fn(&str) -> Option<OsString>) -> Settings {
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
        }
    }

    /// The repository's location: `--repo` or `AIRBACK_REPO`.
    pub(super) fn location(&self) -> anyhow::Result<&str> {
        match &self.repo {
            Some(location) => Ok(location),
            None => bail!("no repository given: pass --repo LOCATION or set AIRBACK_REPO"),
        }
    }

    /// The repository's location for a command that reads a config file: `--repo` or
    /// `AIRBACK_REPO`, else the config's `repository`.
    pub(super) fn location_or(&self, config: Option<&Config>) -> anyhow::Result<String> {
        let location = self
            .repo
            .clone()
            .or_else(|| config.and_then(|c| c.repository.clone()));
        match location {
            Some(location) => Ok(location),
            None => bail!(
                "no repository given: pass --repo LOCATION, set AIRBACK_REPO, or add \
                 `repository:` to the config"
            ),
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
        }
    }

    fn with_env(flags: &GlobalArgs, vars: &[(&str, &str)]) -> Settings {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Settings::from_sources(flags, |name| vars.get(name).cloned())
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
}
