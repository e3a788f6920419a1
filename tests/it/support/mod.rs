//! Helpers shared by the integration tests.

pub mod s3;
pub mod servers;
pub mod sshd;

use airback::backend::{Backend, BackendOptions};
use airback::id::{BlobId, SnapshotId};
use airback::repo::ChunkerParams;
use airback::repo::InitOptions;
use airback::repo::Snapshot;
use airback::repo::{CacheChoice, Repository};

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use airback::crypto::{KdfParams, KeyMeta, Password};
use airback::repo::InitEncryption;

/// The password of every repository the tests create, by the library or by the binary.
pub const TEST_PASSWORD: &str = "correct horse battery staple";

/// Whether the tests create encrypted repositories (format 2, the default) or not
/// (`AIRBACK_TEST_ENCRYPTION=off`: format 1, as `init --insecure-no-password` makes). The
/// binary always gets the password; it ignores it for a format 1 repository.
pub fn encrypted() -> bool {
    std::env::var("AIRBACK_TEST_ENCRYPTION").map_or(true, |v| v != "off")
}

/// The password to open the tests' repositories with (none for format 1).
pub fn password() -> Option<&'static Password> {
    static PASSWORD: LazyLock<Password> =
        LazyLock::new(|| Password::new(TEST_PASSWORD.as_bytes().into()));
    encrypted().then(|| &*PASSWORD)
}

/// How `init` encrypts the tests' repositories: with [`TEST_PASSWORD`] and cheap Argon2id
/// parameters, or not at all (see [`encrypted`]).
pub fn encryption() -> InitEncryption {
    if !encrypted() {
        return InitEncryption::None;
    }
    InitEncryption::Password {
        password: Arc::new(Password::new(TEST_PASSWORD.as_bytes().into())),
        kdf: KdfParams::FOR_TESTS,
        meta: KeyMeta {
            hostname: "test-host".into(),
            username: "tester".into(),
            created: "2026-12-05T00:00:00Z".into(),
        },
    }
}

/// `InitOptions::default()`, encrypted as [`encryption`] says.
pub fn init_options() -> InitOptions {
    InitOptions {
        encryption: encryption(),
        ..InitOptions::default()
    }
}

/// `options` for an unencrypted (format 1) repository, for tests that write objects by hand
/// in format 1's plain form (a lock, for instance).
pub fn format1(options: InitOptions) -> InitOptions {
    InitOptions {
        encryption: InitEncryption::None,
        ..options
    }
}

/// What every run of the binary gets in its environment: the tests' password and cheap
/// Argon2id parameters for the keys it creates.
pub const TEST_ENV: [(&str, &str); 2] = [
    ("AIRBACK_PASSWORD", TEST_PASSWORD),
    ("AIRBACK_KDF_PARAMS", "1024,1,1"),
];

/// A command running `program` (the `airback` binary, or a shell that runs it) with
/// [`TEST_ENV`].
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.envs(TEST_ENV);
    command
}

/// [`command`], blocking.
pub fn std_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command.envs(TEST_ENV);
    command
}

/// Runs the `airback` binary with `args`, a private cache dir, and returns (code, stdout, stderr).
pub async fn airback(cache: &Path, args: &[&str]) -> (i32, String, String) {
    let out = command(env!("CARGO_BIN_EXE_airback"))
        .args(args)
        .env("AIRBACK_CACHE_DIR", cache)
        .env_remove("AIRBACK_REPO")
        .output()
        .await
        .expect("the airback binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `airback export SNAPSHOT --repo REPO -f dir -o OUT --json` with the cache at `cache`,
/// which must succeed; returns the export's JSON summary.
pub async fn export_to_dir(
    cache: &Path,
    repo: &str,
    snapshot: &str,
    out: &Path,
) -> serde_json::Value {
    let (code, stdout, err) = airback(
        cache,
        &[
            "export",
            snapshot,
            "--repo",
            repo,
            "-f",
            "dir",
            "-o",
            out.to_str().unwrap(),
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "export {snapshot}: {err}");
    serde_json::from_str(stdout.trim()).unwrap()
}

/// A port on 127.0.0.1 that was free a moment ago (for servers that cannot be told port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Field types whose cells restore (into a new base or in place) writes back as they were.
pub const WRITABLE: &[&str] = &[
    "singleLineText",
    "email",
    "url",
    "multilineText",
    "richText",
    "phoneNumber",
    "number",
    "percent",
    "currency",
    "duration",
    "rating",
    "checkbox",
    "date",
    "dateTime",
    "singleSelect",
    "multipleSelects",
    "singleCollaborator",
    "multipleCollaborators",
    "barcode",
];

/// The id of the field called `name` in `table`, a table of a base's schema JSON (as
/// `FakeAirtable::schema_json` gives it).
pub fn field_id(table: &serde_json::Value, name: &str) -> String {
    table["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {}", table["name"]))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every file under `dir` (path relative to it) with its bytes.
pub fn contents(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    files_below(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(dir.join(&p)).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Deterministic pseudo-random bytes (incompressible).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = vec![0u8; len];
    rng.fill(&mut out);
    out
}

/// Deterministic JSON lines that look like Airtable records.
pub fn json_lines(records: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    for i in 0..records {
        let status = ["Todo", "Doing", "Done"][rng.usize(..3)];
        let line = serde_json::json!({
            "id": format!("rec{:014}", i),
            "createdTime": "2026-01-01T00:00:00.000Z",
            "fields": {
                "fldName0000000001": format!("Customer {} {}", i, rng.u32(..)),
                "fldStatus00000001": status,
                "fldAmount00000001": rng.u32(..100_000) as f64 / 100.0,
                "fldNotes000000001": "lorem ipsum dolor sit amet ".repeat(rng.usize(1..8)),
            }
        });
        out.extend(serde_json::to_vec(&line).unwrap());
        out.push(b'\n');
    }
    out
}

/// Every file below `dir`, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Opens storage at `location`, creating a local folder if needed.
pub fn open_backend(location: &str) -> Backend {
    let options = BackendOptions {
        create: true,
        ..BackendOptions::default()
    };
    Backend::open(location, &options).unwrap()
}

/// Small chunks and packs so that tests exercise many of each quickly.
pub fn small_options() -> InitOptions {
    InitOptions {
        data_chunker: ChunkerParams {
            min_size: 4 * 1024,
            avg_size: 16 * 1024,
            max_size: 64 * 1024,
        },
        meta_chunker: ChunkerParams {
            min_size: 512,
            avg_size: 2 * 1024,
            max_size: 8 * 1024,
        },
        compression_level: 3,
        pack_size: 1024 * 1024,
        chunker_seed: None,
        ..init_options()
    }
}

/// A new repository at `location` with `options` and an in-memory cache.
pub async fn new_repo(location: &str, options: &InitOptions) -> Repository {
    let backend = open_backend(location);
    Repository::init(&backend, options).await.unwrap();
    Repository::open(backend, CacheChoice::Memory, password())
        .await
        .unwrap()
}

/// Commits a snapshot of `tree` (a test snapshot with a fixed time).
pub async fn commit(repo: &Repository, tree: BlobId) -> SnapshotId {
    repo.save_snapshot(&Snapshot {
        version: 1,
        time: "2026-11-22T00:00:00Z".into(),
        hostname: "test".into(),
        program: "airback test".into(),
        tree,
        source: serde_json::json!({"kind": "test"}),
        tags: vec![],
        partial: false,
        problems: vec![],
        summary: serde_json::Value::Null,
        rewritten: None,
        copy_of: None,
    })
    .await
    .unwrap()
}

/// A fake Airtable, a fresh local repository (with its cache) and a client for the fake, as
/// most Airtable-facing tests start.
pub struct FakeSetup {
    pub fake: airback_fake::FakeAirtable,
    pub repo: Repository,
    pub client: airback::airtable::Client,
    /// The first base of the preset.
    pub base: String,
    /// Holds the repository (`repo/`) and the cache (`cache/`).
    pub dir: tempfile::TempDir,
}

impl FakeSetup {
    /// The binary with `args`, on this setup's repository (`--repo`), with its own cache
    /// (`cli-cache/`), the fake's URLs and token; killed when dropped.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = command(env!("CARGO_BIN_EXE_airback"));
        command
            .args(args)
            .arg("--repo")
            .arg(self.dir.path().join("repo"))
            .env("AIRBACK_CACHE_DIR", self.dir.path().join("cli-cache"))
            .env("AIRTABLE_API_URL", self.fake.url())
            .env("AIRTABLE_CONTENT_URL", self.fake.url())
            .env("AIRTABLE_TOKEN", self.fake.token())
            .env_remove("AIRBACK_REPO")
            .kill_on_drop(true);
        command
    }

    /// Starts the fake with `options` and creates the repository.
    pub async fn start(options: airback_fake::FakeOptions) -> FakeSetup {
        let fake = airback_fake::FakeAirtable::start(options).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("repo");
        let backend = Backend::open(
            location.to_str().unwrap(),
            &BackendOptions {
                create: true,
                ..BackendOptions::default()
            },
        )
        .unwrap();
        Repository::init(&backend, &init_options()).await.unwrap();
        let repo = Repository::open(
            backend,
            CacheChoice::Dir(dir.path().join("cache")),
            password(),
        )
        .await
        .unwrap();
        let client = client_for(&fake, &fake.token());
        let base = fake.bases()[0].id.clone();
        FakeSetup {
            fake,
            repo,
            client,
            base,
            dir,
        }
    }
}

/// A client of `fake` with `token`, retrying fast (as every test client does).
pub(crate) fn client_for(
    fake: &airback_fake::FakeAirtable,
    token: &str,
) -> airback::airtable::Client {
    use airback::airtable::{Client, ClientOptions, Token};
    let mut client_options = ClientOptions::default().with_url(&fake.url());
    client_options.retry_base_delay = std::time::Duration::from_millis(20);
    client_options.min_penalty = std::time::Duration::from_secs(1);
    Client::new(Token::new(token).unwrap(), client_options).unwrap()
}
