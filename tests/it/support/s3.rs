//! A real S3-compatible server (s3s-fs) started in-process on 127.0.0.1 with an OS-chosen
//! port. It lives as long as the test's runtime, so it stops by itself. It can be switched to
//! read-only ([`S3Server::set_read_only`]): then it refuses every write, like a read-only
//! bucket policy, whoever runs the tests (root included). It keeps a log of the requests it
//! was sent ([`S3Server::requests`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

/// A running server with one bucket.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// The bucket created for the test.
    pub bucket: String,
    read_only: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    _root: tempfile::TempDir,
}

/// Refuses every request but reads (GET, HEAD) while the flag is set; otherwise s3s's default:
/// signed requests only. Logs each request as `<operation> <path and query>`.
struct ReadOnlySwitch(Arc<AtomicBool>, Arc<Mutex<Vec<String>>>);

#[async_trait::async_trait]
impl s3s::access::S3Access for ReadOnlySwitch {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        let request = format!("{} {}", cx.s3_op().name(), cx.uri());
        self.1.lock().unwrap().push(request);
        if cx.credentials().is_none() {
            return Err(s3s::s3_error!(AccessDenied, "Signature is required"));
        }
        let reads = [http::Method::GET, http::Method::HEAD];
        if self.0.load(Ordering::SeqCst) && !reads.contains(cx.method()) {
            return Err(s3s::s3_error!(AccessDenied, "the bucket is read-only"));
        }
        Ok(())
    }
}

pub const ACCESS_KEY: &str = "airbacktest";
pub const SECRET_KEY: &str = "airbacktestsecret";

impl S3Server {
    /// Starts a server with an empty bucket `airback-test`.
    pub async fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        let bucket = "airback-test".to_string();
        std::fs::create_dir(root.path().join(&bucket)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let read_only = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        builder.set_access(ReadOnlySwitch(read_only.clone(), requests.clone()));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        S3Server {
            endpoint,
            bucket,
            read_only,
            requests,
            _root: root,
        }
    }

    /// Makes the server refuse (or accept again) every write.
    pub fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::SeqCst);
    }

    /// The requests received so far, each as `<operation> <path and query>`, such as
    /// `ListObjectsV2 /airback-test?list-type=2&prefix=…`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// A repository location in the bucket, with credentials in the query.
    pub fn location(&self, prefix: &str) -> String {
        format!(
            "s3://{}/{prefix}?endpoint={}&region=us-east-1&access_key_id={ACCESS_KEY}&secret_access_key={SECRET_KEY}",
            self.bucket, self.endpoint
        )
    }
}
