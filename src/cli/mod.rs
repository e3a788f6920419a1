//! The command line: argument definitions (clap), one function per command, output and exit
//! codes. The only module that prints, reads environment variables or knows about clap:
//! `settings.rs` merges flags, environment and config file into the library's options, and
//! `print.rs` prints every result.

mod cancel;
mod completions;
mod copy;
#[cfg(feature = "fake")]
mod demo;
mod diff;
pub(crate) mod exit;
mod export;
mod forget;
mod history;
mod key;
mod logging;
mod metrics_file;
mod password;
pub(crate) mod print;
mod progress;
mod prune;
mod repair;
mod restore;
mod rewrite;
mod serve;
mod settings;
mod snapshot;

use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "fake")]
use airback_fake::{Faults, LargeParams, Preset};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::backend::{Backend, BackendOptions, redact_location};
use crate::check::{CheckOptions, Subset};
use std::sync::Arc;

use crate::crypto::Password;
use crate::repo::config::{InitEncryption, InitOptions};
use crate::repo::lock::LockGuard;
use crate::repo::{RepoError, Repository};
use print::{count, err};
use settings::Settings;

/// Back up Airtable bases into a deduplicating repository, and restore them.
#[derive(Debug, Parser)]
#[command(name = "airback", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// Repository location: a local path, or s3://bucket/prefix, gcs://, azblob://, webdav://
    #[arg(
        short = 'r',
        long,
        env = "AIRBACK_REPO",
        global = true,
        hide_env_values = true
    )]
    repo: Option<String>,
    /// Directory for the local cache (default: $AIRBACK_CACHE_DIR or ~/.cache/airback)
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Keep the local cache in memory only
    #[arg(long, global = true)]
    no_cache: bool,
    /// Print one JSON object instead of text
    #[arg(long, global = true)]
    json: bool,
    /// Print only errors
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Read the repository without locking it (when it is read-only or full); only for
    /// commands that read: check, export, restore, diff, history, snapshots, show, key list,
    /// forget --dry-run, and copy (its source)
    #[arg(long, global = true)]
    no_lock: bool,
    /// YAML configuration: repository, password, bases, tables, fields (see README)
    #[arg(
        short,
        long,
        env = "AIRBACK_CONFIG",
        global = true,
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Read the repository's password from this file (see README, "Passwords")
    #[arg(long, global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Run this shell command and read the password from its output
    #[arg(
        long,
        global = true,
        value_name = "CMD",
        conflicts_with = "password_file"
    )]
    password_command: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole job against a built-in fake Airtable, in a temporary repository
    #[cfg_attr(
        not(feature = "fake"),
        command(
            about = "Run the whole job against a built-in fake Airtable (not built into this binary)"
        )
    )]
    Demo(DemoArgs),
    /// Create a new repository, encrypted with a password unless --insecure-no-password
    Init(InitArgs),
    /// Back up bases: schema, every record, every attachment
    Snapshot(snapshot::SnapshotArgs),
    /// List snapshots
    Snapshots(snapshot::SnapshotsArgs),
    /// Describe one snapshot
    Show(snapshot::ShowArgs),
    /// Rebuild a snapshot in a base: schema, records, attachments, links; resumable
    Restore(restore::RestoreArgs),
    /// Verify the repository's structure, and with --read-data its contents
    Check(CheckArgs),
    /// What changed between two snapshots of a base, or since a snapshot (--live): schema,
    /// records added, removed and changed, cell by cell
    Diff(diff::DiffArgs),
    /// One record's value in each snapshot where it changed, from first seen to removed
    History(history::HistoryArgs),
    /// Write a snapshot as a tar or zip archive, a folder, or a SQLite database
    Export(export::ExportArgs),
    /// Remove snapshots by keep rules (per base: last, hourly, daily, weekly, monthly, yearly,
    /// within, tags)
    Forget(forget::ForgetArgs),
    /// Free the storage no snapshot uses: delete unused packs, repack partly used ones
    Prune(prune::PruneArgs),
    /// Write new snapshots without named records, fields or attachments (to erase them)
    Rewrite(rewrite::RewriteArgs),
    /// Copy snapshots into another repository (--to-repo), transferring only what it lacks
    Copy(copy::CopyArgs),
    /// Repair a damaged repository: `repair index`, then `repair snapshots`
    Repair(repair::RepairArgs),
    /// Manage the passwords of an encrypted repository: `key list | add | remove ID | passwd`
    Key(key::KeyArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish); see README
    Completions(completions::CompletionsArgs),
    /// Print airback's man page (roff), or write one page per command with --dir
    Man(completions::ManArgs),
    /// Run as a service: the config's schedules, job history, alerts, metrics and a JSON API
    Serve(serve::ServeArgs),
    /// Serve a fake Airtable API for trying airback and for tests (prints its URL and token)
    #[command(hide = true)]
    FakeAirtable(Box<FakeAirtableArgs>),
}

/// Arguments of `airback demo`.
#[derive(Debug, Args)]
#[cfg_attr(not(feature = "fake"), allow(dead_code))]
struct DemoArgs {
    /// Keep the demo repository in this (new or empty) folder instead of a temporary one
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

// Without the `fake` feature, `fake-airtable` keeps its flags (as plain text) so that a
// command line that works with the fake built in still parses; it then says the fake is missing.
#[cfg(not(feature = "fake"))]
type Preset = String;
#[cfg(not(feature = "fake"))]
type Faults = String;
#[cfg(not(feature = "fake"))]
type LargeParams = String;

#[derive(Debug, Args)]
#[cfg_attr(not(feature = "fake"), allow(dead_code))]
struct FakeAirtableArgs {
    /// Address to listen on (port 0: the OS picks one)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Which base to serve: empty, demo, zoo or large
    #[arg(long, default_value = "demo")]
    preset: Preset,
    /// Seed of the generated data and of the faults
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Requests per second per base before 429 (0: no limit)
    #[arg(long, default_value_t = 5)]
    rate: u32,
    /// How long a base stays blocked after a 429
    #[arg(long, default_value_t = 30)]
    penalty_secs: u64,
    /// How long attachment URLs stay valid
    #[arg(long, default_value_t = 7200)]
    url_ttl_secs: u64,
    /// Faults to inject, e.g. 503=0.05,502=0.02,reset=0.02,iterexpire=3,urlexpire=5,seed=7
    #[arg(long, default_value = "")]
    faults: Faults,
    /// Sizes of the large preset, e.g. tables=4,records=25000,attachments=2000
    #[arg(long)]
    large: Option<LargeParams>,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Create a repository without encryption (format 1): anyone who can read the storage can
    /// read the backups
    #[arg(long, conflicts_with_all = ["password_file", "password_command"])]
    insecure_no_password: bool,
    /// Target pack size in MiB
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=512))]
    pack_size_mib: u32,
    /// zstd compression level (1-19)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    compression_level: i32,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Also download every pack and verify every blob's hash
    #[arg(long)]
    read_data: bool,
    /// Read only slice N of M of the packs (M runs with N = 1..M cover everything)
    #[arg(long, value_name = "N/M", value_parser = clap::value_parser!(Subset))]
    read_data_subset: Option<Subset>,
}

impl clap::builder::ValueParserFactory for Subset {
    type Parser = clap::builder::ValueParser;
    fn value_parser() -> Self::Parser {
        clap::builder::ValueParser::new(|s: &str| s.parse::<Subset>())
    }
}

/// Prints a usage error the way clap does and exits 2.
fn usage_error(message: &str) -> ! {
    use clap::CommandFactory;
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

/// Parses the command line, runs the command and returns the documented exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `copy` writes to its target, which it always locks; `--no-lock` is about its source.
    let writes = match &cli.command {
        Command::Init(_)
        | Command::Snapshot(_)
        | Command::Demo(_)
        | Command::Repair(_)
        | Command::Rewrite(_)
        | Command::Prune(_)
        | Command::Serve(_) => true,
        Command::Key(key) => key.writes(),
        Command::Forget(forget) => forget.writes(),
        Command::Restore(restore) => restore.writes(),
        _ => false,
    };
    if cli.global.no_lock && writes {
        usage_error(
            "--no-lock is for commands that only read a repository (check, export, restore, \
             snapshots, show, key list, forget --dry-run, and copy's source); init, snapshot, \
             forget, prune, rewrite, repair, key add, key remove, key passwd, demo, serve and \
             restore --in-place (its safety snapshot) write to one",
        );
    }
    // clap checks these conflicts only among flags given on the same side of the command
    // name; a global flag given before it escapes them.
    let password_flag = match (&cli.global.password_file, &cli.global.password_command) {
        (Some(_), Some(_)) => usage_error(
            "the argument '--password-file <FILE>' cannot be used with '--password-command <CMD>'",
        ),
        (Some(_), None) => Some("--password-file <FILE>"),
        (None, Some(_)) => Some("--password-command <CMD>"),
        (None, None) => None,
    };
    if let (Command::Init(init), Some(flag)) = (&cli.command, password_flag)
        && init.insecure_no_password
    {
        usage_error(&format!(
            "the argument '--insecure-no-password' cannot be used with '{flag}'"
        ));
    }
    settings::remember_secrets_from_env();
    let settings = Settings::new(&cli.global);
    let repeats = logging::init(&settings.log, !matches!(cli.command, Command::Serve(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            err!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let interrupted = cancel::interrupted_message(&cli.command);
    // `serve` listens for the signals itself: it stops its jobs and exits 0.
    let result = if matches!(cli.command, Command::Serve(_)) {
        let done = runtime.block_on(run(cli, settings));
        runtime.shutdown_timeout(std::time::Duration::from_secs(10));
        Some(done)
    } else {
        cancel::run(runtime, run(cli, settings))
    };
    repeats.report();
    let Some(result) = result else {
        err!("{interrupted}");
        return ExitCode::from(exit::INTERRUPTED);
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader of standard output is gone (`| head`): nothing more to say.
        Err(e) if print::is_stdout_closed(&e) => ExitCode::from(exit::OK),
        Err(e) => {
            use crate::secrets::scrub;
            err!("error: {}", scrub(&e.to_string()));
            let mut said = e.to_string();
            for cause in e.chain().skip(1) {
                // Messages that already include their cause's text are not repeated.
                let text = cause.to_string();
                if !said.contains(&text) {
                    err!("  caused by: {}", scrub(&text));
                }
                said = text;
            }
            ExitCode::from(exit::for_error(&e))
        }
    }
}

async fn run(cli: Cli, mut settings: Settings) -> anyhow::Result<u8> {
    // Every command that uses a repository may take it and its password from the file.
    if !matches!(
        cli.command,
        Command::Demo(_) | Command::FakeAirtable(_) | Command::Completions(_) | Command::Man(_)
    ) {
        settings.load_config()?;
    }
    let g = &settings;
    match &cli.command {
        #[cfg(feature = "fake")]
        Command::Demo(args) => demo::demo(g, args).await,
        Command::Init(args) => init(g, args).await,
        Command::Snapshot(args) => snapshot::snapshot(g, args).await,
        Command::Snapshots(args) => snapshot::list(g, args).await,
        Command::Show(args) => snapshot::show(g, args).await,
        Command::Restore(args) => restore::run(g, args).await,
        Command::Check(args) => check(g, args).await,
        Command::Export(args) => export::export(g, args).await,
        Command::Diff(args) => diff::run(g, args).await,
        Command::History(args) => history::run(g, args).await,
        Command::Forget(args) => forget::run(g, args).await,
        Command::Prune(args) => prune::run(g, args).await,
        Command::Rewrite(args) => rewrite::run(g, args).await,
        Command::Copy(args) => copy::run(g, args).await,
        Command::Repair(args) => repair::run(g, args).await,
        Command::Key(args) => key::run(g, args).await,
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
        Command::Serve(args) => serve::run(g, args).await,
        #[cfg(feature = "fake")]
        Command::FakeAirtable(args) => fake_airtable(args).await,
        #[cfg(not(feature = "fake"))]
        Command::Demo(_) | Command::FakeAirtable(_) => Err(fake_not_built()),
    }
}

/// What `demo` and `fake-airtable` say in a binary built without the `fake` feature.
#[cfg(not(feature = "fake"))]
fn fake_not_built() -> anyhow::Error {
    anyhow::anyhow!(
        "the demo is not built into this binary: it was built without the fake Airtable (cargo \
         feature `fake`); rebuild it with the default features, e.g. `cargo build --release`, \
         to use `airback demo` and `airback fake-airtable`"
    )
}

#[cfg(feature = "fake")]
async fn fake_airtable(args: &FakeAirtableArgs) -> anyhow::Result<u8> {
    let options = airback_fake::FakeOptions {
        preset: args.preset,
        seed: args.seed,
        rate_limit: (args.rate > 0).then_some(args.rate),
        penalty: std::time::Duration::from_secs(args.penalty_secs),
        url_ttl: std::time::Duration::from_secs(args.url_ttl_secs),
        faults: args.faults.clone(),
        large: args.large.clone().unwrap_or_default(),
        ..airback_fake::FakeOptions::default()
    };
    airback_fake::serve_standalone(args.listen, options).await?;
    Ok(exit::OK)
}

async fn open_repo(s: &Settings) -> anyhow::Result<Repository> {
    open_repo_at(s, &s.location()?).await
}

/// Opens the repository at `location`. A password is read only when the repository is
/// encrypted; a version 1 repository ignores every password source that is set.
async fn open_repo_at(s: &Settings, location: &str) -> anyhow::Result<Repository> {
    let shown = redact_location(location);
    let password = || s.password(password::Purpose::Open(&shown));
    Ok(open_or_explain(open_with_password(s, location, password, None).await)?.0)
}

/// [`open_repo_at`] for a writer: the writer lock for `operation` is written before the
/// index is read (see [`Repository::open_with_config_for_writer`]).
async fn open_repo_for_writer(
    s: &Settings,
    location: &str,
    operation: &str,
) -> anyhow::Result<(Repository, LockGuard)> {
    let shown = redact_location(location);
    let password = || s.password(password::Purpose::Open(&shown));
    let (repo, guard) =
        open_or_explain(open_with_password(s, location, password, Some(operation)).await)?;
    Ok((
        repo,
        guard.context("internal error: the writer lock was not taken")?,
    ))
}

/// The error of a failed [`open_with_password`] as [`open_repo_at`] words it.
fn open_or_explain<T>(opened: Result<T, OpenFailure>) -> anyhow::Result<T> {
    match opened {
        Ok(opened) => Ok(opened),
        // A wrong password names where it came from, never what it is.
        Err(OpenFailure::WrongPassword { error, origin }) => {
            Err(anyhow::Error::new(error).context(format!("{origin} is wrong")))
        }
        Err(OpenFailure::Repo(e)) => Err(e.into()),
        Err(OpenFailure::Password(e)) => Err(e.into()),
    }
}

/// Why [`open_with_password`] failed.
enum OpenFailure {
    /// The password opens none of the key files; `origin` says where it came from.
    WrongPassword {
        error: RepoError,
        origin: password::Origin,
    },
    /// No password could be read.
    Password(password::PasswordError),
    /// The repository failed otherwise (missing, unreadable).
    Repo(RepoError),
}

/// Opens the repository at `location`: reads its `config`, then asks `password` for one only
/// when the repository is encrypted, then unlocks it. `open_repo_at` and `copy`'s target
/// differ only in where the password comes from and how they word the errors. With `writer`,
/// it also takes a writer lock for that operation before it reads the index.
async fn open_with_password(
    s: &Settings,
    location: &str,
    password: impl FnOnce() -> Result<
        (secrecy::SecretBox<[u8]>, password::Origin),
        password::PasswordError,
    >,
    writer: Option<&str>,
) -> Result<(Repository, Option<LockGuard>), OpenFailure> {
    let backend = Repository::backend_for(location, &s.backend).map_err(OpenFailure::Repo)?;
    let (config, bytes) = Repository::read_config(&backend)
        .await
        .map_err(OpenFailure::Repo)?;
    let password = if config.is_encrypted() {
        let (secret, origin) = password().map_err(OpenFailure::Password)?;
        Some((Password::from(secret), origin))
    } else {
        None
    };
    let key = password.as_ref().map(|(p, _)| p);
    let opened = match writer {
        None => Repository::open_with_config(backend, config, &bytes, s.cache.clone(), key)
            .await
            .map(|repo| (repo, None)),
        Some(operation) => Repository::open_with_config_for_writer(
            backend,
            config,
            &bytes,
            s.cache.clone(),
            key,
            operation,
        )
        .await
        .map(|(repo, guard)| (repo, Some(guard))),
    };
    match (opened, password) {
        (Ok(opened), _) => Ok(opened),
        (Err(error @ RepoError::WrongPassword { .. }), Some((_, origin))) => {
            Err(OpenFailure::WrongPassword { error, origin })
        }
        (Err(e), _) => Err(OpenFailure::Repo(e)),
    }
}

/// The shared lock of a command that only reads, or none with `--no-lock`.
async fn read_lock(
    s: &Settings,
    repo: &Repository,
    operation: &str,
) -> anyhow::Result<Option<LockGuard>> {
    if s.no_lock {
        return Ok(None);
    }
    Ok(Some(repo.lock(false, operation).await?))
}

/// A command's `--json` result with the storage requests the command made, by kind
/// (`storage_requests`: `LIST`, `GET`, `HEAD`, `PUT`, `DELETE`, `bytes_read`,
/// `bytes_written`), from the opening of the repository until the result is printed.
#[derive(serde::Serialize)]
struct WithRequests<'a, T: serde::Serialize> {
    #[serde(flatten)]
    result: &'a T,
    storage_requests: crate::backend::RequestStats,
}

/// `result` with the requests made so far through `backend` (and its clones).
fn with_requests<'a, T: serde::Serialize>(result: &'a T, backend: &Backend) -> WithRequests<'a, T> {
    WithRequests {
        result,
        storage_requests: backend.requests(),
    }
}

/// Releases what [`read_lock`] took.
async fn release(lock: Option<LockGuard>) -> anyhow::Result<()> {
    if let Some(lock) = lock {
        lock.release().await?;
    }
    Ok(())
}

/// The password `init` encrypts a new repository with: `None` with `--insecure-no-password`
/// (which warns about a password source that is set and goes unused). Read before anything
/// is created, so that a password problem leaves nothing behind.
fn new_repository_password(
    s: &Settings,
    args: &InitArgs,
    location: &str,
) -> anyhow::Result<Option<(secrecy::SecretBox<[u8]>, password::Origin)>> {
    if args.insecure_no_password {
        let without_prompt = password::Sources {
            terminal: false,
            ..s.password_sources()
        };
        if let Some(source) = password::resolve(&without_prompt) {
            err!(
                "warning: {} is set but --insecure-no-password creates an unencrypted \
                 repository; the password is not used",
                source.origin().source()
            );
        }
        return Ok(None);
    }
    match s.password(password::Purpose::Create(&redact_location(location))) {
        Ok(given) => Ok(Some(given)),
        Err(e) => Err(e.into()),
    }
}

async fn init(s: &Settings, args: &InitArgs) -> anyhow::Result<u8> {
    let location = s.location()?;
    let password = new_repository_password(s, args, &location)?;
    let encryption = match password {
        None => InitEncryption::None,
        Some((secret, _origin)) => InitEncryption::Password {
            password: Arc::new(Password::from(secret)),
            kdf: s.new_key_kdf()?,
            meta: s.key_meta(),
        },
    };
    let encrypted = !matches!(encryption, InitEncryption::None);
    let options = BackendOptions {
        create: true,
        ..s.backend.clone()
    };
    let backend = Backend::open(&location, &options)?;
    let options = InitOptions {
        pack_size: args.pack_size_mib * 1024 * 1024,
        compression_level: args.compression_level,
        encryption,
        ..InitOptions::default()
    };
    let (config, key) = Repository::init(&backend, &options)
        .await
        .context("cannot create the repository")?;
    let created = json!({
        "repository_id": config.id,
        "location": backend.location(),
        "version": config.version,
        "encrypted": encrypted,
        "key_id": key,
        "storage_requests": backend.requests(),
    });
    s.printer.result(&created, |t| {
        t.note(format_args!(
            "created airback repository {} at {}",
            config.id.short(),
            backend.location()
        ))
    })?;
    Ok(exit::OK)
}

async fn check(s: &Settings, args: &CheckArgs) -> anyhow::Result<u8> {
    let repo = open_repo(s).await?;
    let lock = read_lock(s, &repo, "check").await?;
    let options = CheckOptions {
        read_data: args.read_data,
        subset: args.read_data_subset,
    };
    let report = crate::check::check(&repo, &options).await;
    release(lock).await?;
    let report = report?;
    let shown = with_requests(&report, repo.backend());
    s.printer.result(&shown, |t| {
        for w in &report.warnings {
            t.note(format_args!("warning: {w}"))?;
        }
        for e in &report.errors {
            t.line(format_args!("error: {e}"))?;
        }
        t.note(format_args!(
            "checked {}, {}, {}, {}{}",
            count(report.snapshots as u64, "snapshot"),
            count(report.index_files as u64, "index file"),
            count(report.packs as u64, "pack"),
            count(report.blobs as u64, "blob"),
            if report.packs_read > 0 {
                format!(
                    "; read {} ({})",
                    count(report.packs_read as u64, "pack"),
                    count(report.bytes_read, "byte")
                )
            } else {
                String::new()
            }
        ))?;
        if report.is_ok() {
            t.note(format_args!("no errors were found"))?;
        }
        Ok(())
    })?;
    if report.is_ok() {
        Ok(exit::OK)
    } else {
        if !report.damaged_snapshots.is_empty() {
            let n = report.damaged_snapshots.len();
            err!(
                "{n} {} damaged; run `airback repair index`, then `airback repair snapshots`",
                if n == 1 {
                    "snapshot is"
                } else {
                    "snapshots are"
                }
            );
        }
        bail!("check found {}", count(report.errors.len() as u64, "error"))
    }
}
