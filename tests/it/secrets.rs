//! No secret reaches the output (issue #10, defect 5). Every command runs at every log level
//! with S3 credentials in the environment and, separately, in the location (with a password in
//! the `endpoint` option), against the in-process S3 server and the fake Airtable; then again
//! with a wrong secret key and with an unreachable endpoint, so the error paths run too. All of
//! stdout and stderr is searched for each secret and for the Airtable token.

use airback_fake::{FakeAirtable, FakeOptions, Preset};

use crate::support::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

/// The `AIRBACK_LOG` values tried: each level, then trace with the dependencies' targets named
/// explicitly (storage library, request signer, HTTP stack).
const LEVELS: &[&str] = &[
    "error",
    "warn",
    "info",
    "debug",
    "trace",
    "trace,opendal=trace,opendal_core=trace,opendal_service_s3=trace,reqsign=trace,\
     reqsign_core=trace,reqsign_aws_v4=trace,reqsign_aws_core=trace,reqwest=trace,hyper=trace,\
     hyper_util=trace,h2=trace,rustls=trace,log=trace,airback=trace",
];

const SESSION_TOKEN: &str = "sessiontoken7f3a9d";
const ENDPOINT_PASSWORD: &str = "endpointpass9c1e";
const WRONG_SECRET: &str = "wrongsecretb4d2e8";

/// How the credentials reach airback.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    /// `AWS_*` variables; the location holds the endpoint (with a password) and region only.
    Env,
    /// Everything in the location; no `AWS_*` variables.
    Uri,
    /// A wrong secret key in the location: the server refuses every request.
    WrongSecret,
    /// An endpoint nobody listens on, credentials in the environment.
    Unreachable,
}

struct World {
    s3: S3Server,
    fake: FakeAirtable,
    base: String,
    target: String,
    dir: tempfile::TempDir,
    closed_endpoint: String,
}

impl World {
    fn secrets(&self) -> Vec<String> {
        vec![
            SECRET_KEY.to_string(),
            SESSION_TOKEN.to_string(),
            ENDPOINT_PASSWORD.to_string(),
            WRONG_SECRET.to_string(),
            self.fake.token(),
        ]
    }

    fn location(&self, variant: Variant, prefix: &str) -> String {
        let with_password = |endpoint: &str| {
            endpoint.replacen("http://", &format!("http://user:{ENDPOINT_PASSWORD}@"), 1)
        };
        let bucket = &self.s3.bucket;
        match variant {
            Variant::Env => format!(
                "s3://{bucket}/{prefix}?endpoint={}&region=us-east-1",
                with_password(&self.s3.endpoint)
            ),
            Variant::Uri => format!(
                "s3://{bucket}/{prefix}?endpoint={}&region=us-east-1&access_key_id={ACCESS_KEY}\
                 &secret_access_key={SECRET_KEY}&session_token={SESSION_TOKEN}",
                with_password(&self.s3.endpoint)
            ),
            Variant::WrongSecret => format!(
                "s3://{bucket}/{prefix}?endpoint={}&region=us-east-1&access_key_id={ACCESS_KEY}\
                 &secret_access_key={WRONG_SECRET}",
                with_password(&self.s3.endpoint)
            ),
            Variant::Unreachable => format!(
                "s3://{bucket}/{prefix}?endpoint={}&region=us-east-1",
                with_password(&self.closed_endpoint)
            ),
        }
    }

    /// Runs `airback args` and returns (exit code, stdout + stderr).
    async fn run(&self, variant: Variant, level: &str, args: &[&str]) -> (i32, String) {
        let mut cmd = crate::support::command(env!("CARGO_BIN_EXE_airback"));
        cmd.args(args)
            .env("AIRBACK_CACHE_DIR", self.dir.path().join("cache"))
            .env("AIRBACK_LOG", level)
            .env("RUST_BACKTRACE", "1")
            .env("AIRTABLE_API_URL", self.fake.url())
            .env("AIRTABLE_CONTENT_URL", self.fake.url())
            .env("AIRTABLE_TOKEN", self.fake.token())
            .env_remove("AIRBACK_REPO")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_PROFILE");
        match variant {
            Variant::Env | Variant::Unreachable => {
                cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
                    .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
                    .env("AWS_SESSION_TOKEN", SESSION_TOKEN);
            }
            Variant::Uri | Variant::WrongSecret => {
                cmd.env_remove("AWS_ACCESS_KEY_ID")
                    .env_remove("AWS_SECRET_ACCESS_KEY")
                    .env_remove("AWS_SESSION_TOKEN");
            }
        }
        let out = cmd.output().await.expect("the airback binary runs");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Every command, in an order where each one has what it needs. `n` keeps runs apart.
    fn commands(&self, location: &str, n: usize) -> Vec<Vec<String>> {
        let export = self.dir.path().join(format!("export-{n}.tar"));
        let export = export.to_str().unwrap();
        let r = |args: &[&str]| {
            let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            v.extend(["--repo".to_string(), location.to_string()]);
            v
        };
        vec![
            r(&["init"]),
            r(&["snapshot", "--base", &self.base]),
            r(&["snapshot", "--base", &self.base, "--json"]),
            r(&["snapshots"]),
            r(&["snapshots", "--json"]),
            r(&["show", "latest"]),
            r(&["check"]),
            r(&["check", "--read-data"]),
            r(&["export", "latest", "-o", export]),
            r(&["restore", "latest", "--to-base", &self.target, "--dry-run"]),
            r(&["repair", "index", "--dry-run"]),
            r(&["repair", "index"]),
            r(&["repair", "snapshots"]),
            r(&["init"]), // fails: the repository exists
        ]
    }
}

fn assert_no_secret(world: &World, what: &str, text: &str) {
    for secret in world.secrets() {
        assert!(
            !text.contains(&secret),
            "`{secret}` leaked in {what}:\n{}",
            text.lines()
                .filter(|l| l.contains(&secret))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Runs every command for `variant` at `level`; returns how many succeeded.
async fn run_all(world: &World, variant: Variant, level_index: usize) -> usize {
    let level = LEVELS[level_index];
    let n = level_index * 10 + variant as usize;
    let location = world.location(variant, &format!("{variant:?}-{level_index}"));
    let commands = world.commands(&location, n);
    let mut ok = 0;
    let mut outputs = Vec::new();
    if matches!(variant, Variant::Env | Variant::Uri) {
        // In order: each command needs the previous ones.
        for args in &commands {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, text) = world.run(variant, level, &args).await;
            outputs.push((args.join(" "), code, text));
        }
    } else {
        // Every command fails at its first request: run them at once (retries take seconds).
        let runs = commands.iter().map(|args| async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, text) = world.run(variant, level, &args).await;
            (args.join(" "), code, text)
        });
        outputs = futures::future::join_all(runs).await;
    }
    let count = outputs.len();
    for (i, (args, code, text)) in outputs.iter().enumerate() {
        let what = format!("`airback {args}` ({variant:?}, AIRBACK_LOG={level}, exit {code})");
        assert_no_secret(world, &what, text);
        let must_succeed = matches!(variant, Variant::Env | Variant::Uri) && i + 1 < count;
        if must_succeed {
            assert_eq!(*code, 0, "{what} failed:\n{text}");
            ok += 1;
        } else {
            assert_ne!(*code, 0, "{what} succeeded:\n{text}");
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_prints_a_secret_at_any_log_level() {
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let base = fake.bases()[0].id.clone();
    let target = fake.add_empty_base("Restore target").id;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let world = World {
        s3: S3Server::start().await,
        fake,
        base,
        target,
        dir: tempfile::tempdir().unwrap(),
        closed_endpoint,
    };

    let variants = [
        Variant::Env,
        Variant::Uri,
        Variant::WrongSecret,
        Variant::Unreachable,
    ];
    let runs = variants
        .iter()
        .flat_map(|&v| (0..LEVELS.len()).map(move |i| (v, i)))
        .map(|(variant, i)| run_all(&world, variant, i));
    let succeeded: usize = futures::future::join_all(runs).await.into_iter().sum();
    assert!(succeeded > 0, "nothing ran");

    // The demo and the help texts, with the same environment, at every level.
    let world = &world;
    let runs = LEVELS.iter().flat_map(|level| {
        [&["demo"][..], &["--help"], &["check", "--help"]]
            .into_iter()
            .map(move |args| async move {
                let (code, text) = world.run(Variant::Env, level, args).await;
                (
                    format!("`airback {}` at {level}", args.join(" ")),
                    code,
                    text,
                )
            })
    });
    for (what, code, text) in futures::future::join_all(runs).await {
        assert_eq!(code, 0, "{what}: {text}");
        assert_no_secret(world, &what, &text);
    }
}

const ENV_PASSWORD: &str = "envpassword3b8f1a";
const FILE_PASSWORD: &str = "filepassword9d2c7e";
const COMMAND_PASSWORD: &str = "commandpassword4a6b0d";

/// No password reaches the output or a file (issue #12): every command runs at every log level
/// with `AIRBACK_PASSWORD` set, and the commands that read a password also with
/// `--password-file` and `--password-command`. stdout, stderr, the cache and the repository are
/// searched for each password. (Until the library can encrypt, the repository is version 1 and
/// only `init` reads a password; the same commands cover the encrypted paths after the merge.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_prints_a_password_at_any_log_level() {
    let fake = FakeAirtable::start(FakeOptions::unlimited(Preset::Demo))
        .await
        .unwrap();
    let base = fake.bases()[0].id.clone();
    let target = fake.add_empty_base("Restore target").id;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{FILE_PASSWORD}\n")).unwrap();
    let password_file = password_file.to_str().unwrap();
    let password_command = format!("printf '{COMMAND_PASSWORD}'");
    let secrets = [ENV_PASSWORD, FILE_PASSWORD, COMMAND_PASSWORD];
    let (fake, base, target, dir) = (&fake, &base, &target, &dir);
    let password_command = password_command.as_str();

    let runs = LEVELS.iter().enumerate().map(|(i, level)| async move {
        let repo = dir.path().join(format!("repo-{i}"));
        let repo = repo.to_str().unwrap();
        let encrypted = dir.path().join(format!("encrypted-{i}"));
        let encrypted = encrypted.to_str().unwrap();
        let export = dir.path().join(format!("export-{i}.zip"));
        let export = export.to_str().unwrap();
        let cache = dir.path().join(format!("cache-{i}"));
        // (must succeed, arguments)
        let commands: Vec<(bool, Vec<&str>)> = vec![
            (true, vec!["init", "--insecure-no-password", "-r", repo]),
            (true, vec!["snapshot", "--base", base, "-r", repo]),
            (true, vec!["snapshots", "--json", "-r", repo]),
            (true, vec!["show", "latest", "-r", repo]),
            (true, vec!["check", "--read-data", "-r", repo]),
            (true, vec!["export", "latest", "-o", export, "-r", repo]),
            (
                true,
                vec![
                    "restore",
                    "latest",
                    "--to-base",
                    target,
                    "--dry-run",
                    "-r",
                    repo,
                ],
            ),
            (false, vec!["key", "list", "-r", repo]),
            (
                false,
                vec![
                    "key",
                    "add",
                    "--new-password-file",
                    password_file,
                    "-r",
                    repo,
                ],
            ),
            (false, vec!["key", "passwd", "-r", repo]),
            (false, vec!["init", "-r", encrypted]),
            (
                false,
                vec!["init", "--password-file", password_file, "-r", encrypted],
            ),
            (
                false,
                vec![
                    "init",
                    "--password-command",
                    password_command,
                    "-r",
                    encrypted,
                ],
            ),
            (
                false,
                vec![
                    "snapshots",
                    "--password-file",
                    password_file,
                    "-r",
                    encrypted,
                ],
            ),
        ];
        let mut outputs = Vec::new();
        for (must_succeed, args) in commands {
            let out = crate::support::command(env!("CARGO_BIN_EXE_airback"))
                .args(&args)
                .env("AIRBACK_CACHE_DIR", &cache)
                .env("AIRBACK_LOG", level)
                .env("AIRBACK_PASSWORD", ENV_PASSWORD)
                .env("AIRTABLE_API_URL", fake.url())
                .env("AIRTABLE_CONTENT_URL", fake.url())
                .env("AIRTABLE_TOKEN", fake.token())
                .env_remove("AIRBACK_REPO")
                .env_remove("AIRBACK_CONFIG")
                .env_remove("AIRBACK_PASSWORD_FILE")
                .env_remove("AIRBACK_PASSWORD_COMMAND")
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .expect("the airback binary runs");
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let what = format!("`airback {}` at AIRBACK_LOG={level}", args.join(" "));
            if must_succeed {
                assert_eq!(out.status.code(), Some(0), "{what} failed:\n{text}");
            }
            outputs.push((what, text));
        }
        let mut files = crate::support::files_below(&cache);
        files.extend(crate::support::files_below(std::path::Path::new(repo)));
        (outputs, files)
    });
    for (outputs, files) in futures::future::join_all(runs).await {
        for (what, text) in outputs {
            for secret in secrets {
                assert!(
                    !text.contains(secret),
                    "`{secret}` leaked in {what}:\n{text}"
                );
            }
        }
        for file in files {
            let bytes = std::fs::read(&file).unwrap_or_default();
            for secret in secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "`{secret}` is in {}",
                    file.display()
                );
            }
        }
    }
}
