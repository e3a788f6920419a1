//! `airback demo`: the whole job against the built-in fake Airtable, in one command and in
//! plain words. Starts the fake with its demo base, creates a repository, takes a snapshot,
//! changes a few records and adds an attachment, takes a second snapshot that reuses what did
//! not change, checks every byte, and restores the second snapshot into a new base, comparing
//! it cell by cell with the snapshot, and exports it as a zip file. Built only with the `fake`
//! feature (the default); without it, `cli::run` answers `demo` with an error instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airback_fake::{FakeAirtable, FakeOptions, Preset};
use anyhow::Context;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use zeroize::{Zeroize, Zeroizing};

use super::settings::Settings;
use super::snapshot::human_bytes;
use super::{DemoArgs, exit, progress};
use crate::airtable::{Client, ClientOptions, Token};
use crate::backend::{Backend, BackendOptions};
use crate::backup::{BackupOptions, backup_base};
use crate::check::{CheckOptions, check};
use crate::crypto::{KdfParams, KeyMeta, Password};
use crate::export::ExportSummary;
use crate::progress::NoProgress;
use crate::repo::config::{InitEncryption, InitOptions};
use crate::repo::{CacheChoice, Repository};
use crate::restore::{RestoreOptions, RestoreReport, Target, restore};
use crate::stored::StoredBase;

/// Runs `airback demo`.
pub(super) async fn demo(settings: &Settings, args: &DemoArgs) -> anyhow::Result<u8> {
    let temp = tempfile::Builder::new().prefix("airback-demo-").tempdir()?;
    let repo_dir = args.dir.clone().unwrap_or_else(|| temp.path().join("repo"));
    let printer = settings.printer;
    // The steps as they happen; with --json only the result at the end.
    let say = |text: String| printer.note(format_args!("{text}"));

    let fake = FakeAirtable::start(FakeOptions {
        preset: Preset::Demo,
        ..FakeOptions::default()
    })
    .await?;
    let base = fake
        .bases()
        .into_iter()
        .next()
        .context("the demo preset has a base")?;
    say(format!(
        "airback demo: a built-in fake Airtable at {} serves the base \"{}\" ({}), with Airtable's real limit of 5 requests per second.",
        fake.url(),
        base.name,
        base.id
    ))?;

    let password_file = repo_dir.with_file_name(format!(
        "{}.password",
        repo_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("repo")
    ));
    let repo = new_repository(&repo_dir, args.dir.is_some().then_some(&*password_file)).await?;
    say(format!(
        "\n1. Created an encrypted repository in {} with a generated password{}.",
        repo_dir.display(),
        if args.dir.is_some() {
            format!(", saved in {}", password_file.display())
        } else {
            " (discarded at the end; with --dir it is kept)".to_string()
        }
    ))?;

    let client = Client::new(
        Token::new(fake.token())?,
        ClientOptions::default().with_url(&fake.url()),
    )?;
    let options = BackupOptions::new(&base.id);
    // Once per run, before the first base, as `backup_base` asks of its caller.
    repo.adopt_unindexed_packs().await?;
    let first = backup_base(&repo, &client, &options, Arc::new(NoProgress)).await?;
    say(format!(
        "2. First snapshot {}: {} tables, {} records, {} attachments downloaded; {} written in {} objects; {} API requests, {} rate-limited, {:.1} s.",
        first.snapshot_id.short(),
        first.tables,
        first.records,
        first.attachments_downloaded,
        human_bytes(first.bytes_added),
        first.objects_written,
        first.api_requests,
        first.rate_limited,
        first.duration_secs
    ))?;

    let changed = change_the_base(&fake, &base.id)?;
    say(format!("3. In the fake base: {changed}."))?;

    let second = backup_base(&repo, &client, &options, Arc::new(NoProgress)).await?;
    say(format!(
        "4. Second snapshot {}: {} attachment downloaded, {} reused without downloading; {} written ({:.1} % of the first) in {} objects.",
        second.snapshot_id.short(),
        second.attachments_downloaded,
        second.attachments_reused,
        human_bytes(second.bytes_added),
        100.0 * second.bytes_added as f64 / first.bytes_added.max(1) as f64,
        second.objects_written
    ))?;

    let report = check(
        &repo,
        &CheckOptions {
            read_data: true,
            subset: None,
        },
    )
    .await?;
    say(format!(
        "5. Checked every byte: {} snapshots, {} packs, {} blobs, {}.",
        report.snapshots,
        report.packs,
        report.blobs,
        if report.is_ok() {
            "no errors"
        } else {
            "ERRORS FOUND"
        }
    ))?;
    let stored = StoredBase::open(
        &repo,
        second.snapshot_id,
        repo.load_snapshot(&second.snapshot_id).await?,
    )
    .await?;
    let target = Target::Workspace {
        id: fake.workspace_id(),
        name: Some(format!("{} (restored by the demo)", base.name)),
    };
    let restored = restore(
        &stored,
        &client,
        &RestoreOptions::new(target, None),
        progress::for_restore(!printer.shows_progress()),
    )
    .await?;
    say(restored_line(&restored))?;
    let (package, exported) = export_zip(&stored, &repo_dir).await?;
    say(format!(
        "7. Exported the second snapshot as {} ({}): {} tables as JSON and CSV, {} records, {} attachment files; any zip tool opens it.",
        package.display(),
        human_bytes(exported.bytes_written),
        exported.tables,
        exported.records,
        exported.attachments,
    ))?;
    if args.dir.is_some() {
        say(format!(
            "\nThe repository stays in {0} and the export in {1}. Look inside with:\n  airback snapshots --repo {0} --password-file {2}\n  airback show latest --repo {0} --password-file {2}\n  unzip -l {1}",
            repo_dir.display(),
            package.display(),
            password_file.display()
        ))?;
    } else {
        say(
            "\nThe repository and the zip were temporary; keep them with `airback demo --dir DIR`."
                .to_string(),
        )?;
    }
    let result = json!({"first": first, "second": second, "check_errors": report.errors, "restore": restored, "export": exported});
    printer.result(&result, |_| Ok(()))?;
    fake.shutdown().await;
    if report.is_ok() && restored.is_complete() {
        Ok(exit::OK)
    } else {
        Ok(exit::ERROR)
    }
}

/// A new encrypted repository in `dir` with a generated password, opened with its cache in
/// memory. The password is written to `keep` (0600) when given, and otherwise forgotten.
async fn new_repository(dir: &Path, keep: Option<&Path>) -> anyhow::Result<Repository> {
    let backend = Backend::open(
        dir.to_str()
            .context("the demo folder's path is not UTF-8")?,
        &BackendOptions {
            create: true,
            ..BackendOptions::default()
        },
    )?;
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).context("the system gives no random bytes")?;
    let text = Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random));
    random.zeroize();
    if let Some(path) = keep {
        // Created 0600 first, so the password is never readable by others.
        crate::repo::cache::create_private_file(path);
        std::fs::write(path, text.as_bytes())
            .with_context(|| format!("cannot write the demo's password to {}", path.display()))?;
    }
    let password = Arc::new(Password::new(text.as_bytes().into()));
    let options = InitOptions {
        encryption: InitEncryption::Password {
            password: password.clone(),
            kdf: KdfParams::DEFAULT,
            meta: KeyMeta {
                hostname: crate::repo::lock::hostname(),
                username: "airback demo".to_owned(),
                created: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string(),
            },
        },
        ..InitOptions::default()
    };
    Repository::init(&backend, &options).await?;
    Ok(Repository::open(backend, CacheChoice::Memory, Some(&password)).await?)
}

/// What the restore did, and how it compared, in one line.
fn restored_line(restored: &RestoreReport) -> String {
    let fidelity = restored.fidelity.clone().unwrap_or_default();
    format!(
        "6. Restored the second snapshot into a new base {}: {} records, {} files, links of {} records; {} API requests in {:.1} s, {} rate-limited. Re-read and compared: {} of {} records, {} of {} cells and {} of {} files equal.",
        restored.base_id.as_deref().unwrap_or("?"),
        restored.records_written,
        restored.attachments_uploaded,
        restored.link_records_written,
        restored.requests,
        restored.seconds,
        restored.rate_limited,
        fidelity.records_found,
        fidelity.records_expected,
        fidelity.cells.equal,
        fidelity.cells.cells,
        fidelity.attachments.equal,
        fidelity.attachments.cells,
    )
}

/// Exports the snapshot as a zip file next to the repository's folder.
async fn export_zip(
    stored: &StoredBase,
    repo_dir: &Path,
) -> anyhow::Result<(PathBuf, ExportSummary)> {
    let package = repo_dir.with_file_name(format!(
        "{}.zip",
        repo_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("repo")
    ));
    let exported = crate::export::export(
        stored,
        crate::export::ExportOptions {
            force: true,
            ..crate::export::ExportOptions::new(
                crate::export::ExportFormat::Zip,
                crate::export::Output::Path(package.clone()),
            )
        },
        Arc::new(NoProgress),
    )
    .await?;
    Ok((package, exported))
}

/// Edits three records and adds an attachment, directly in the fake; says what it did.
fn change_the_base(fake: &FakeAirtable, base: &str) -> anyhow::Result<String> {
    let schema = fake.schema_json(base);
    let tables = schema["tables"]
        .as_array()
        .context("the schema lists tables")?;
    let mut edited = 0;
    let mut attached = false;
    for table in tables {
        let table_id = table["id"].as_str().unwrap_or_default();
        let fields = table["fields"].as_array().cloned().unwrap_or_default();
        let text_field = fields
            .iter()
            .find(|f| f["type"] == "singleLineText" || f["type"] == "multilineText")
            .and_then(|f| f["id"].as_str());
        let attachment_field = fields
            .iter()
            .find(|f| f["type"] == "multipleAttachments")
            .and_then(|f| f["id"].as_str());
        let records = fake.records_json(base, table_id);
        if let Some(field) = text_field {
            for record in records.iter().take(3 - edited.min(3)) {
                let record_id = record["id"].as_str().unwrap_or_default();
                let mut cells = Map::new();
                cells.insert(
                    field.to_string(),
                    Value::String(format!("edited by airback demo ({record_id})")),
                );
                fake.update_record_fields(base, table_id, record_id, cells)?;
                edited += 1;
            }
        }
        if let (false, Some(field), Some(record)) = (attached, attachment_field, records.first()) {
            let record_id = record["id"].as_str().unwrap_or_default();
            let content = b"A new file, added between the two snapshots.\n".repeat(2000);
            fake.add_attachment(base, table_id, record_id, field, "demo-notes.txt", content)?;
            attached = true;
        }
        if edited >= 3 && attached {
            break;
        }
    }
    Ok(format!(
        "changed {edited} records{}",
        if attached {
            " and added an attachment"
        } else {
            ""
        }
    ))
}
