//! Every storage service against a real server on 127.0.0.1 (tests/it/support/servers.rs):
//! the backend conformance suite and one end-to-end run through the CLI for Azure Blob
//! (Azurite), GCS (gcp-storage-emulator), WebDAV (WsgiDAV) and S3 (moto).

use airback_fake::{FakeAirtable, FakeOptions, Preset};
use serde_json::Value;

use crate::cli::airback_with;
use crate::repo::conformance;
use crate::restore::compare_bases;
use crate::support::open_backend;
use crate::support::s3::S3Server;
use crate::support::servers::{Server, Service};

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
    let (code, out, err) = run(args(&["snapshot", "--base", &base, "--json"]), cache.clone()).await;
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
    end_to_end(&server.location("e2e"), Some(crate::support::s3::SECRET_KEY)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    end_to_end(dir.path().join("repo").to_str().unwrap(), None).await;
}
