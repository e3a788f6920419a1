//! Every storage service against a real server on 127.0.0.1 (tests/it/support/servers.rs):
//! the backend conformance suite and one end-to-end run through the CLI for Azure Blob
//! (Azurite), GCS (gcp-storage-emulator), WebDAV (WsgiDAV) and S3 (moto); the conformance
//! suite once more through injected faults for those and fs, memory and the in-process S3
//! server; and a snapshot with `check --read-data` through faults.

use std::sync::Arc;
use std::time::Duration;

use airback::backend::faults::FaultPlan;
use airback::backend::{Backend, BackendOptions};
use airback::backup::{BackupOptions, backup_base};
use airback::check::{CheckOptions, check};
use airback::progress::NoProgress;
use airback::repo::{CacheChoice, Repository};
use airback_fake::{FakeAirtable, FakeOptions, Preset};
use serde_json::Value;

use crate::cli::airback_with;
use crate::repo::conformance;
use crate::restore::compare_bases;
use crate::support::s3::S3Server;
use crate::support::servers::{Server, Service};
use crate::support::{client_for, open_backend, password};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_azblob() {
    let server = Server::start(Service::Azblob).await;
    conformance(open_backend(&server.location("conformance"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_gcs() {
    let server = Server::start(Service::Gcs).await;
    conformance(open_backend(&server.location("conformance"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_webdav() {
    let server = Server::start(Service::Webdav).await;
    conformance(open_backend(&server.location("conformance"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_s3_moto() {
    let server = Server::start(Service::Moto).await;
    conformance(open_backend(&server.location("conformance"))).await;
}

// ---------------------------------------------------------------------------------------------
// One end-to-end run through the CLI per service.

/// `airback` on `location`: init, a snapshot of the fake Airtable's demo base, `check
/// --read-data` from a fresh cache, an export whose records match the snapshot's, and a restore
/// into a new base compared with the original field by field. `secret` must appear in no output.
pub(crate) async fn end_to_end(location: &str, secret: Option<&str>) {
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let base = fake.bases()[0].id.clone();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = |args: Vec<String>, cache: std::path::PathBuf| {
        let fake = &fake;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, out, err) = airback_with(fake, &cache, &args).await;
            if let Some(secret) = secret {
                assert!(
                    !out.contains(secret) && !err.contains(secret),
                    "a secret leaked from airback {args:?}: {out}{err}"
                );
            }
            (code, out, err)
        }
    };
    let args = |list: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        args.extend(["--repo".to_string(), location.to_string()]);
        args
    };

    let (code, out, err) = run(args(&["init"]), cache.clone()).await;
    assert_eq!(code, 0, "init: {out}{err}");
    let (code, out, err) = run(
        args(&["snapshot", "--base", &base, "--json"]),
        cache.clone(),
    )
    .await;
    assert_eq!(code, 0, "snapshot: {out}{err}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["outcome"], "ok", "{summary:#}");
    let id = summary["snapshot_id"].as_str().unwrap().to_owned();

    // From a fresh cache: everything is read from the server.
    let (code, out, err) = run(
        args(&["check", "--read-data"]),
        dir.path().join("fresh-cache"),
    )
    .await;
    assert_eq!(code, 0, "check --read-data: {out}{err}");
    assert!(out.contains("no errors were found"), "{out}");

    let tar = dir.path().join("export.tar");
    let (code, out, err) = run(
        args(&["export", &id, "-o", tar.to_str().unwrap(), "--json"]),
        cache.clone(),
    )
    .await;
    assert_eq!(code, 0, "export: {out}{err}");
    let export: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(export["records"], summary["records"], "{export:#}");
    assert!(export["records"].as_u64().unwrap() > 0, "{export:#}");
    assert_eq!(export["missing_attachments"], 0, "{export:#}");

    let before: Vec<String> = fake.bases().into_iter().map(|b| b.id).collect();
    let (code, out, err) = run(
        args(&[
            "restore",
            &id,
            "--workspace",
            &fake.workspace_id(),
            "--name",
            "Restored from a real server",
        ]),
        cache.clone(),
    )
    .await;
    assert_eq!(code, 0, "restore: {out}{err}");
    let created: Vec<String> = fake
        .bases()
        .into_iter()
        .map(|b| b.id)
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(created.len(), 1, "one new base: {created:?}");
    fake.wait_for_url_fetches().await;
    let c = compare_bases(&fake, &base, &created[0], true);
    assert!(c.differences.is_empty(), "{:#?}", c.differences);
    assert!(c.writable_cells > 0, "{c:?}");
    assert_eq!(c.writable_equal, c.writable_cells, "{c:?}");
    assert_eq!(c.links_equal, c.links, "{c:?}");
    assert_eq!(c.files_equal, c.files, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_azblob() {
    let server = Server::start(Service::Azblob).await;
    end_to_end(&server.location("e2e"), server.secret()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_gcs() {
    let server = Server::start(Service::Gcs).await;
    end_to_end(&server.location("e2e"), server.secret()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_webdav() {
    let server = Server::start(Service::Webdav).await;
    end_to_end(&server.location("e2e"), server.secret()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_s3_moto() {
    let server = Server::start(Service::Moto).await;
    end_to_end(&server.location("e2e"), server.secret()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_s3_in_process() {
    let server = S3Server::start().await;
    end_to_end(
        &server.location("e2e"),
        Some(crate::support::s3::SECRET_KEY),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    end_to_end(dir.path().join("repo").to_str().unwrap(), None).await;
}

// ---------------------------------------------------------------------------------------------
// The same through injected faults (src/backend/faults.rs).

/// Options that run every request of a backend through the seeded fault plan `plan`, with a
/// 1 s timeout (hung requests wait 1.5 s) and enough retries that a fault never wins.
fn faulty(plan: &FaultPlan) -> BackendOptions {
    BackendOptions {
        create: true,
        timeout: Duration::from_secs(1),
        retries: 10,
        faults: Some(plan.clone()),
        ..BackendOptions::default()
    }
}

/// A fault plan: a quarter of the requests meet a fault.
fn plan(seed: u64) -> FaultPlan {
    FaultPlan::new(seed, 0.25, Duration::from_millis(1500))
}

/// The conformance suite through faults: every operation still keeps its contract. Three runs
/// with three seeds, so that each service meets several kinds of fault.
async fn conformance_through_faults(location: &str, seed: u64) {
    let mut injected = std::collections::BTreeMap::new();
    for run in 0..3 {
        let plan = plan(seed + 1000 * run);
        conformance(Backend::open(location, &faulty(&plan)).unwrap()).await;
        for (kind, n) in plan.injected() {
            *injected.entry(kind).or_insert(0) += n;
        }
    }
    let shown = airback::backend::redact_location(location);
    eprintln!("faults injected in {shown}: {injected:?}");
    assert!(
        injected.values().sum::<u64>() >= 5 && injected.len() >= 3,
        "too few faults were injected to test anything: {injected:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_through_faults_fs() {
    let dir = tempfile::tempdir().unwrap();
    conformance_through_faults(dir.path().to_str().unwrap(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_through_faults_memory() {
    conformance_through_faults("memory://", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_through_faults_s3() {
    let server = S3Server::start().await;
    conformance_through_faults(&server.location("faults"), 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_through_faults_s3_moto() {
    let server = Server::start(Service::Moto).await;
    conformance_through_faults(&server.location("faults"), 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_through_faults_azblob() {
    let server = Server::start(Service::Azblob).await;
    conformance_through_faults(&server.location("faults"), 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_through_faults_gcs() {
    let server = Server::start(Service::Gcs).await;
    conformance_through_faults(&server.location("faults"), 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_through_faults_webdav() {
    let server = Server::start(Service::Webdav).await;
    conformance_through_faults(&server.location("faults"), 7).await;
}

/// A snapshot of the demo base and `check --read-data` through faults, by the library (the
/// fault plan is a `BackendOptions` field, which the binary never sets): either the snapshot
/// completes and the check through the same faults is clean, or the snapshot fails with an
/// error that names what it could not do, and the repository stays valid. A check without
/// faults, from a fresh cache, is clean either way.
async fn snapshot_and_check_through_faults(location: &str, options: BackendOptions) -> bool {
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let base = fake.bases()[0].id.clone();
    Repository::init(&open_backend(location), &crate::support::init_options())
        .await
        .unwrap();
    let plan = options.faults.clone().unwrap();
    let client = client_for(&fake, &fake.token());
    let backend = Backend::open(location, &options).unwrap();
    let outcome = match Repository::open(backend, CacheChoice::Memory, password()).await {
        Ok(repo) => backup_base(
            &repo,
            &client,
            &BackupOptions::new(&base),
            Arc::new(NoProgress),
        )
        .await
        .map(|summary| (repo, summary))
        .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let completed = match outcome {
        Ok((repo, summary)) => {
            assert!(summary.records > 0, "{summary:?}");
            let report = check(
                &repo,
                &CheckOptions {
                    read_data: true,
                    subset: None,
                },
            )
            .await;
            match report {
                Ok(report) if options.retries > 0 => {
                    assert!(report.is_ok(), "check through faults: {:#?}", report.errors);
                    assert_eq!(report.snapshots, 1);
                }
                // Without retries the check may meet a fault too: then it says so, and calls
                // nothing damaged that is not.
                Ok(report) => {
                    for error in &report.errors {
                        assert!(
                            error.contains("injected fault") || error.contains("timeout"),
                            "{:#?}",
                            report.errors
                        );
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    assert!(
                        options.retries == 0
                            && (text.contains("injected fault") || text.contains("timeout")),
                        "check through faults: {text}"
                    );
                }
            }
            true
        }
        Err(text) => {
            eprintln!("the snapshot through faults failed: {text}");
            assert!(
                text.contains("cannot ")
                    && (text.contains("injected fault") || text.contains("timeout reached")),
                "not a clear error: {text}"
            );
            false
        }
    };
    eprintln!("faults injected: {:?}", plan.injected());
    assert!(!plan.injected().is_empty(), "no fault was injected");
    let clean = Repository::open(open_backend(location), CacheChoice::Memory, password())
        .await
        .unwrap();
    let report = check(
        &clean,
        &CheckOptions {
            read_data: true,
            subset: None,
        },
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "check without faults: {:#?}", report.errors);
    assert_eq!(report.snapshots, usize::from(completed));
    completed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance_through_faults_sftp() {
    let sshd = crate::support::sshd::Sshd::start().await;
    conformance_through_faults(&sshd.location("faults"), 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_and_check_through_faults_complete_clean_on_sftp() {
    let sshd = crate::support::sshd::Sshd::start().await;
    let plan = plan(104);
    let completed =
        snapshot_and_check_through_faults(&sshd.location("faults"), faulty(&plan)).await;
    assert!(completed, "with 10 retries every fault is overcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_and_check_through_faults_complete_clean_on_s3() {
    let server = S3Server::start().await;
    let plan = plan(11);
    let completed =
        snapshot_and_check_through_faults(&server.location("faults"), faulty(&plan)).await;
    assert!(completed, "with 10 retries every fault is overcome");
    assert!(
        plan.injected().values().sum::<u64>() >= 5,
        "{:?}",
        plan.injected()
    );
}

/// Without retries, a fault ends the snapshot: the error says what failed, and the repository
/// is still valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_ended_by_a_fault_leaves_a_valid_repository() {
    let server = S3Server::start().await;
    let plan = FaultPlan::new(12, 0.25, Duration::from_millis(1500));
    let options = BackendOptions {
        retries: 0,
        ..faulty(&plan)
    };
    let completed = snapshot_and_check_through_faults(&server.location("faults"), options).await;
    assert!(
        !completed,
        "a quarter of the requests failing without retries ends the snapshot"
    );
}

/// The same on each real server, with another seed each.
async fn snapshot_through_faults_on(service: Service, seed: u64) {
    let server = Server::start(service).await;
    let plan = plan(seed);
    let completed =
        snapshot_and_check_through_faults(&server.location("faults"), faulty(&plan)).await;
    assert!(completed, "with 10 retries every fault is overcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_and_check_through_faults_complete_clean_on_moto() {
    snapshot_through_faults_on(Service::Moto, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_and_check_through_faults_complete_clean_on_azblob() {
    snapshot_through_faults_on(Service::Azblob, 101).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_and_check_through_faults_complete_clean_on_gcs() {
    snapshot_through_faults_on(Service::Gcs, 102).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_and_check_through_faults_complete_clean_on_webdav() {
    snapshot_through_faults_on(Service::Webdav, 103).await;
}
