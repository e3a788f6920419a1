//! `airback serve`: reads the flags, the access token and the Airtable token, opens the
//! repository, starts `crate::serve`, prints where it listens, and stops it on Ctrl-C or
//! SIGTERM (exit 0: a service asked to stop has done its job; the running jobs are cancelled
//! and recorded as such, and the repository stays valid).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use serde_json::json;

use super::print::err;
use super::settings::Settings;
use super::{exit, open_repo};
use crate::airtable::Client;
use crate::serve::{self, ServeOptions};

/// Arguments of `airback serve`.
#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on (port 0: the system picks one); another address than loopback
    /// needs --auth-token-file
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A file holding the access token every request must carry (`Authorization: Bearer`)
    #[arg(long, value_name = "FILE")]
    auth_token_file: Option<PathBuf>,
    /// Directory for the job history (default: ~/.local/state/airback, next to the cache)
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Read the Airtable token from this file (default: the config's token_file, else
    /// $AIRTABLE_TOKEN)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// The shortest access token accepted.
const MIN_AUTH_TOKEN: usize = 16;

/// Runs `airback serve`.
pub(super) async fn run(settings: &Settings, args: &ServeArgs) -> anyhow::Result<u8> {
    let config = settings.config.clone().ok_or_else(|| {
        anyhow!(
            "serve runs the jobs of a configuration file: pass --config airback.yaml (README, \
             \"Running as a service\")"
        )
    })?;
    let auth_token = match &args.auth_token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read the access token file {}; check the path and its permissions",
                    path.display()
                )
            })?;
            let token = text.trim().to_owned();
            if token.len() < MIN_AUTH_TOKEN || token.contains(char::is_whitespace) {
                bail!(
                    "the access token in {} is too short or has spaces: write at least \
                     {MIN_AUTH_TOKEN} characters without spaces, e.g. from `openssl rand -hex 32`",
                    path.display()
                );
            }
            crate::secrets::remember(&token);
            Some(secrecy::SecretString::from(token))
        }
        None => None,
    };
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .map(|d| d.join("airback"))
            .ok_or_else(|| anyhow!("this system has no state directory: pass --state-dir DIR"))?,
    };
    let options = ServeOptions {
        listen: args.listen,
        auth_token,
        state_dir,
        concurrency: config
            .base_concurrency
            .unwrap_or(super::snapshot::BASE_CONCURRENCY),
    };
    // Before anything is opened: listening off loopback without a token is a usage error.
    options.validate()?;
    let token = settings.token(args.token_file.as_deref(), Some(&config))?;
    crate::secrets::remember(token.expose_secret());
    let client = Client::new(token, settings.client.clone())?;
    let mut config = config;
    if config.all_bases {
        // The bases the token sees now join the listed ones, with the top-level settings;
        // a base shared with the token later is backed up after a restart.
        let listed = client
            .list_bases()
            .await
            .context("cannot list the token's bases (`all_bases: true` in the config file)")?;
        for base in listed {
            match config.bases.iter_mut().find(|b| b.id == base.id) {
                Some(entry) => {
                    entry.name.get_or_insert(base.name);
                }
                None => config.bases.push(crate::config::BaseConfig {
                    name: Some(base.name),
                    ..crate::config::BaseConfig::new(base.id)
                }),
            }
        }
    }
    let repo = open_repo(settings).await?;
    let copies = super::copy::open_copies(settings, &repo, &config).await?;
    let running = serve::start(options, repo, client, config, copies).await?;
    let url = format!("http://{}", running.addr());
    settings.printer.result(&json!({"listening": url}), |t| {
        t.line(format_args!("listening on {url}"))
    })?;
    super::cancel::interrupt().await;
    err!("stopping: cancelling the running jobs (the repository stays valid)");
    running.stop().await;
    crate::repo::lock::dropped_locks_removed().await;
    Ok(exit::OK)
}
