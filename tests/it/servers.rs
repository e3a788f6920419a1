//! Every storage service against a real server on 127.0.0.1 (tests/it/support/servers.rs):
//! the backend conformance suite and one end-to-end run through the CLI for Azure Blob
//! (Azurite), GCS (gcp-storage-emulator), WebDAV (WsgiDAV) and S3 (moto).

use crate::repo::conformance;
use crate::support::open_backend;
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
