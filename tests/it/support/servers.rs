//! Real storage servers for the backend tests, each started as a process on 127.0.0.1 with a
//! port picked by the OS (bound to :0, released, then handed to the server; a server that
//! fails to start on it is started again on another): Azurite (Azure Blob), gcp-storage-emulator
//! (GCS), WsgiDAV (WebDAV) and moto (S3).
//!
//! They are installed by `.ci/test-servers` (which `.ci/run` calls) under
//! `$AIRBACK_TEST_SERVERS` (default `~/.cache/airback-test-servers`): a Python venv in `venv/`
//! and an npm prefix in `npm/`. A test whose server is missing fails and says to run
//! `bash .ci/run`; it never passes silently.
//!
//! Each server runs in a process group of its own, which [`Server`]'s `Drop` kills, so it stops
//! with the test, panicking or not. A watchdog in the same group kills the group when the test
//! process is gone (killed with SIGKILL, say), so nothing outlives the test binary.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The storage services run as real servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Azure Blob Storage (Azurite).
    Azblob,
    /// Google Cloud Storage (gcp-storage-emulator).
    Gcs,
    /// WebDAV (WsgiDAV on cheroot).
    Webdav,
    /// S3 (moto's server).
    Moto,
}

/// The bucket or container every server holds.
pub const BUCKET: &str = "airback-test";

/// Azurite's well-known development account and key.
pub const AZURE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// WsgiDAV's throwaway login.
pub const DAV_USER: &str = "airback";
pub const DAV_PASSWORD: &str = "dav-test-password-1";

/// moto accepts any keys; these are for the signature's sake.
pub const MOTO_KEY: &str = "motokey";
pub const MOTO_SECRET: &str = "motosecret-1";

/// Where `.ci/run` installs the servers.
pub fn install_dir() -> PathBuf {
    match std::env::var_os("AIRBACK_TEST_SERVERS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => dirs::home_dir()
            .unwrap_or_else(|| PathBuf::from("/root"))
            .join(".cache/airback-test-servers"),
    }
}

/// The installed program `rel` (relative to [`install_dir`]); panics with what to do when it
/// is missing.
fn program(rel: &str, service: Service) -> PathBuf {
    let path = install_dir().join(rel);
    assert!(
        path.is_file(),
        "the test server for {service:?} is not installed: {} is missing. Run `bash .ci/run` \
         once, or just `bash .ci/test-servers` (either installs the test servers into {}), \
         or set AIRBACK_TEST_SERVERS to where they are",
        path.display(),
        install_dir().display()
    );
    path
}

/// A running server; killed with its process group when dropped.
pub struct Server {
    /// The service it speaks.
    pub service: Service,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// How long it took to start and answer.
    pub started_in: Duration,
    process: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.process.id());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Server {
    /// Starts a server of `service` holding an empty bucket (container) [`BUCKET`].
    pub async fn start(service: Service) -> Server {
        let began = Instant::now();
        let mut last_failure = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = super::free_port();
            let mut child = spawn(service, port, &dir);
            if let Err(why) = wait_ready(service, port, &mut child).await {
                last_failure = why;
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                continue;
            }
            let mut server = Server {
                service,
                endpoint: format!("http://127.0.0.1:{port}"),
                started_in: Duration::ZERO,
                process: child,
                _dir: dir,
            };
            // Another test's server may have taken the port first: then this one has exited
            // (or the bucket cannot be made), and it starts again on another port.
            match server.create_bucket().await {
                Ok(()) if server.process.try_wait().unwrap().is_none() => {
                    server.started_in = began.elapsed();
                    eprintln!(
                        "{service:?} server started on port {port} in {:.2} s",
                        server.started_in.as_secs_f64()
                    );
                    return server;
                }
                Ok(()) => last_failure = format!("{service:?} server exited"),
                Err(why) => last_failure = why,
            }
        }
        panic!("the {service:?} test server did not start: {last_failure}");
    }

    /// A repository location in the server's bucket, under `prefix`, with its credentials.
    pub fn location(&self, prefix: &str) -> String {
        let endpoint = &self.endpoint;
        match self.service {
            Service::Azblob => format!(
                "azblob://{BUCKET}/{prefix}?endpoint={endpoint}/{AZURE_ACCOUNT}\
                 &account_name={AZURE_ACCOUNT}&account_key={AZURE_KEY}"
            ),
            Service::Gcs => {
                format!("gcs://{BUCKET}/{prefix}?endpoint={endpoint}&skip_signature=true")
            }
            Service::Webdav => format!(
                "webdav://{DAV_USER}:{DAV_PASSWORD}@{}/{BUCKET}/{prefix}",
                endpoint.trim_start_matches("http://")
            ),
            Service::Moto => format!(
                "s3://{BUCKET}/{prefix}?endpoint={endpoint}&region=us-east-1\
                 &access_key_id={MOTO_KEY}&secret_access_key={MOTO_SECRET}"
            ),
        }
    }

    /// The secret in [`Server::location`], which must never be printed.
    pub fn secret(&self) -> Option<&'static str> {
        match self.service {
            Service::Azblob => Some(AZURE_KEY),
            Service::Gcs => None,
            Service::Webdav => Some(DAV_PASSWORD),
            Service::Moto => Some(MOTO_SECRET),
        }
    }

    async fn create_bucket(&self) -> Result<(), String> {
        let client = reqwest::Client::new();
        let response = match self.service {
            // gcp-storage-emulator creates it (`--default-bucket`).
            Service::Gcs => return Ok(()),
            // moto checks no signature.
            Service::Moto => client.put(format!("{}/{BUCKET}", self.endpoint)).send(),
            Service::Webdav => client
                .request(
                    reqwest::Method::from_bytes(b"MKCOL").unwrap(),
                    format!("{}/{BUCKET}/", self.endpoint),
                )
                .basic_auth(DAV_USER, Some(DAV_PASSWORD))
                .send(),
            Service::Azblob => {
                let date = httpdate(std::time::SystemTime::now());
                let version = "2021-08-06";
                let to_sign = format!(
                    "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n\
                     /{AZURE_ACCOUNT}/{AZURE_ACCOUNT}/{BUCKET}\nrestype:container"
                );
                let signature = azure_sign(&to_sign);
                client
                    .put(format!(
                        "{}/{AZURE_ACCOUNT}/{BUCKET}?restype=container",
                        self.endpoint
                    ))
                    .header("x-ms-date", date)
                    .header("x-ms-version", version)
                    .header(
                        "Authorization",
                        format!("SharedKey {AZURE_ACCOUNT}:{signature}"),
                    )
                    .header("Content-Length", "0")
                    .send()
            }
        };
        let response = response.await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "creating the bucket on the {:?} server: {status} {body}",
                self.service
            ))
        }
    }
}

/// The Shared Key signature of `to_sign` with Azurite's account key.
fn azure_sign(to_sign: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURE_KEY)
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// An HTTP date (`Sun, 06 Dec 2026 01:02:03 GMT`).
fn httpdate(time: std::time::SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(time).unwrap();
    ts.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Starts the server process in a process group of its own, with a watchdog in the same group.
fn spawn(service: Service, port: u16, dir: &tempfile::TempDir) -> std::process::Child {
    use std::os::unix::process::CommandExt as _;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let port_s = port.to_string();
    let (prog, args): (PathBuf, Vec<String>) = match service {
        Service::Azblob => (
            program("npm/node_modules/.bin/azurite-blob", service),
            vec![
                "--blobHost".into(),
                "127.0.0.1".into(),
                "--blobPort".into(),
                port_s,
                "--location".into(),
                data.display().to_string(),
                "--silent".into(),
                "--skipApiVersionCheck".into(),
                "--loose".into(),
                "--disableTelemetry".into(),
            ],
        ),
        Service::Gcs => (
            program("venv/bin/gcp-storage-emulator", service),
            vec![
                "start".into(),
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port_s,
                "--in-memory".into(),
                "--default-bucket".into(),
                BUCKET.into(),
            ],
        ),
        Service::Webdav => {
            let config = dir.path().join("wsgidav.yaml");
            std::fs::write(
                &config,
                format!(
                    "host: 127.0.0.1\nport: {port}\nprovider_mapping:\n  \"/\": \"{}\"\n\
                     http_authenticator:\n  domain_controller: null\n  accept_basic: true\n  \
                     accept_digest: false\n  default_to_digest: false\n\
                     simple_dc:\n  user_mapping:\n    \"*\":\n      \"{DAV_USER}\":\n        \
                     password: \"{DAV_PASSWORD}\"\nverbose: 1\nlogging:\n  enable_loggers: []\n",
                    data.display()
                ),
            )
            .unwrap();
            (
                program("venv/bin/wsgidav", service),
                vec!["-c".into(), config.display().to_string()],
            )
        }
        Service::Moto => (
            program("venv/bin/moto_server", service),
            vec!["-H".into(), "127.0.0.1".into(), "-p".into(), port_s],
        ),
    };
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let child = std::process::Command::new(&prog)
        .args(&args)
        .current_dir(dir.path())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", prog.display()));
    // The watchdog: kills the group once this test process is gone.
    let watchdog = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -KILL 0",
        std::process::id()
    );
    let _ = std::process::Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(child.id() as i32)
        .spawn();
    child
}

/// Waits until the server answers HTTP on `port` (any status), up to 60 s.
async fn wait_ready(
    service: Service,
    port: u16,
    child: &mut std::process::Child,
) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("{service:?} server exited with {status}"));
        }
        if client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{service:?} server did not answer in 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
