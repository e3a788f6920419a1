//! Where the repository password comes from (issue #12, design §2.5), end to end through the
//! binary: flags that conflict, sources that fail, the config file's keys, and a version 1
//! repository that ignores every source; a wrong password in every command that opens a
//! repository, and the key commands.

use std::path::Path;

/// Runs `airback args` with a private cache, no inherited repository, config or password
/// variables, and `env` on top; returns (exit code, stdout, stderr).
pub(crate) async fn run(
    cache: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_airback"));
    cmd.args(args)
        .env("AIRBACK_CACHE_DIR", cache)
        .stdin(std::process::Stdio::null());
    for var in [
        "AIRBACK_REPO",
        "AIRBACK_CONFIG",
        "AIRBACK_PASSWORD",
        "AIRBACK_PASSWORD_FILE",
        "AIRBACK_PASSWORD_COMMAND",
    ] {
        cmd.env_remove(var);
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().await.expect("the airback binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_password_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let cases: [&[&str]; 6] = [
        &[
            "--password-file",
            "pw",
            "snapshots",
            "-r",
            repo,
            "--password-command",
            "cat pw",
        ],
        &[
            "--password-command",
            "cat pw",
            "init",
            "-r",
            repo,
            "--password-file",
            "pw",
        ],
        &[
            "--password-file",
            "pw",
            "--password-command",
            "cat pw",
            "snapshots",
            "-r",
            repo,
        ],
        &[
            "snapshots",
            "-r",
            repo,
            "--password-command",
            "cat pw",
            "--password-file",
            "pw",
        ],
        &[
            "init",
            "-r",
            repo,
            "--insecure-no-password",
            "--password-file",
            "pw",
        ],
        &[
            "--password-command",
            "cat pw",
            "init",
            "-r",
            repo,
            "--insecure-no-password",
        ],
    ];
    for args in cases {
        let (code, out, err) = run(dir.path(), args, &[]).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains("cannot be used with"), "{args:?}: {err}");
    }
    assert!(!Path::new(repo).exists(), "a usage error creates nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_password_command_names_its_source_and_not_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let command = "printf 'stdout-of-the-command-5e1'; exit 3";
    let cases = [
        (
            vec!["init", "-r", repo, "--password-command", command],
            vec![],
            "`--password-command`",
        ),
        (
            vec!["init", "-r", repo],
            vec![("AIRBACK_PASSWORD_COMMAND", command)],
            "`AIRBACK_PASSWORD_COMMAND`",
        ),
    ];
    for (args, env, source) in cases {
        let (code, out, err) = run(dir.path(), &args, &env).await;
        assert_eq!(code, 12, "{args:?}: {out}{err}");
        assert!(err.contains(source) && err.contains("failed"), "{err}");
        for hidden in ["stdout-of-the-command-5e1", "printf", "exit 3"] {
            assert!(
                !err.contains(hidden) && !out.contains(hidden),
                "{hidden}: {out}{err}"
            );
        }
    }
    assert!(
        !Path::new(repo).exists(),
        "a password problem creates nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_empty_password_file_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let missing = dir.path().join("no-such-password-file");
    let missing = missing.to_str().unwrap();
    let empty = dir.path().join("empty-password");
    std::fs::write(&empty, "\n").unwrap();
    let empty = empty.to_str().unwrap();
    let config = dir.path().join("airback.yaml");
    std::fs::write(&config, format!("password_file: {missing}\n")).unwrap();
    let config = config.to_str().unwrap();

    let cases = [
        (
            vec!["init", "-r", repo, "--password-file", missing],
            vec![],
            "`--password-file`",
        ),
        (
            vec!["init", "-r", repo],
            vec![("AIRBACK_PASSWORD_FILE", missing)],
            "`AIRBACK_PASSWORD_FILE`",
        ),
        (
            vec!["init", "-r", repo, "--config", config],
            vec![],
            "the config file's `password_file`",
        ),
    ];
    for (args, env, source) in cases {
        let (code, out, err) = run(dir.path(), &args, &env).await;
        assert_eq!(code, 12, "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!(
                "cannot read the password from {source} ({missing})"
            )),
            "{err}"
        );
        assert!(err.contains("check the path"), "{err}");
    }
    let (code, out, err) = run(
        dir.path(),
        &["init", "-r", repo, "--password-file", empty],
        &[],
    )
    .await;
    assert_eq!(code, 12, "{out}{err}");
    assert!(
        err.contains("is empty") && err.contains("--insecure-no-password"),
        "{err}"
    );
    assert!(
        !Path::new(repo).exists(),
        "a password problem creates nothing"
    );
}

/// `--config` is global: `init`, `snapshots` and `key` take the repository from it, and its
/// `password:` key is refused with the line and what to use instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_reads_the_config_file_and_a_password_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let config = dir.path().join("airback.yaml");
    std::fs::write(&config, format!("repository: {}\n", repo.display())).unwrap();
    let config = config.to_str().unwrap();
    let (code, out, err) = run(
        dir.path(),
        &["init", "--insecure-no-password", "-c", config],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        repo.join("config").exists(),
        "init used the config's repository"
    );
    let (code, out, err) = run(dir.path(), &["snapshots"], &[("AIRBACK_CONFIG", config)]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 snapshots"), "{out}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "repository: /r\npassword: hunter2-in-config\n").unwrap();
    let (code, out, err) = run(dir.path(), &["check", "-c", bad.to_str().unwrap()], &[]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("`password` key is not allowed") && err.contains("line 2"),
        "{err}"
    );
    assert!(
        err.contains("password_file") && !err.contains("hunter2"),
        "{err}"
    );
}

/// A version 1 repository never asks for a password and ignores every source, even one that
/// would fail; `key` commands say it has no keys (exit 1), and a missing repository is still
/// exit 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_repository_ignores_password_sources_and_has_no_keys() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let (code, out, err) = run(
        dir.path(),
        &["init", "-r", repo, "--insecure-no-password", "--json"],
        &[("AIRBACK_PASSWORD", "unused-password-1c9")],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: `AIRBACK_PASSWORD` is set but --insecure-no-password"),
        "{err}"
    );
    let created: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(created["encrypted"], false, "{created}");
    assert_eq!(created["version"], 1, "{created}");

    for args in [
        vec!["snapshots", "-r", repo, "--password-command", "exit 1"],
        vec!["check", "-r", repo, "--password-file", "/no/such/file"],
    ] {
        let (code, out, err) = run(dir.path(), &args, &[]).await;
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    for args in [
        vec!["key", "list"],
        vec!["key", "add", "--new-password-file", "/no/such/file"],
        vec!["key", "remove", "abcd"],
        vec!["key", "passwd"],
    ] {
        let mut with_repo = args.clone();
        with_repo.extend(["-r", repo]);
        let (code, out, err) = run(dir.path(), &with_repo, &[]).await;
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.contains("not encrypted") && err.contains("no keys"),
            "{err}"
        );
        let missing = dir.path().join("missing");
        let mut without = args.clone();
        without.extend(["-r", missing.to_str().unwrap()]);
        let (code, out, err) = run(dir.path(), &without, &[]).await;
        assert_eq!(code, 10, "{args:?}: {out}{err}");
    }
    let (code, _, err) = run(
        dir.path(),
        &["--no-lock", "key", "remove", "x", "-r", repo],
        &[],
    )
    .await;
    assert_eq!(code, 2, "{err}");
}

/// Issue #12, acceptance 2: with a wrong password, `snapshots`, `show`, `check`, `export`,
/// `restore` and `snapshot` all exit 12, say where the password came from (never what it is),
/// and write nothing: the repository's files and bytes are unchanged, no cache is created, no
/// export appears, and Airtable gets no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_exits_12_and_writes_nothing_in_every_command() {
    use airback_fake::{FakeOptions, Preset};
    let s = crate::support::FakeSetup::start(FakeOptions::unlimited(Preset::Demo)).await;
    if !crate::support::encrypted() {
        return; // format 1 has no password to get wrong
    }
    crate::snapshot::snapshot(&s).await;
    let repo_dir = s.dir.path().join("repo");
    let repo = repo_dir.to_str().unwrap();
    let before = crate::support::contents(&repo_dir);
    let requests_before = s.fake.counters().requests.values().sum::<u64>();
    let out = s.dir.path().join("out.zip");
    let workspace = s.fake.workspace_id();
    let commands: Vec<Vec<&str>> = vec![
        vec!["snapshots"],
        vec!["show", "latest"],
        vec!["check", "--read-data"],
        vec!["export", "latest", "-o", out.to_str().unwrap()],
        vec![
            "restore",
            "latest",
            "--workspace",
            &workspace,
            "--name",
            "X",
        ],
        vec!["snapshot", "--base", &s.base],
        vec!["snapshot", "--all-bases"],
        vec!["forget", "--keep-last", "1"],
        vec!["forget", "--keep-last", "1", "--dry-run"],
    ];
    let wrong = "not-the-password-4711";
    for args in commands {
        let cache = s.dir.path().join(format!("cache-{}", args[0]));
        let mut all = args.clone();
        all.extend(["--repo", repo]);
        let (code, stdout, stderr) = run(
            &cache,
            &all,
            &[
                ("AIRBACK_PASSWORD", wrong),
                ("AIRTABLE_API_URL", &s.fake.url()),
                ("AIRTABLE_CONTENT_URL", &s.fake.url()),
                ("AIRTABLE_TOKEN", &s.fake.token()),
            ],
        )
        .await;
        assert_eq!(code, 12, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("the password from `AIRBACK_PASSWORD` is wrong")
                && stderr.contains("opens none of"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains(wrong) && !stdout.contains(wrong),
            "{args:?} printed the password"
        );
        assert!(!cache.exists(), "{args:?} created its cache");
        assert!(!out.exists(), "{args:?} wrote the export");
        let after = crate::support::contents(&repo_dir);
        // Compared whole; only the names are printed (the bytes would flood the output).
        assert!(
            after == before,
            "{args:?} changed the repository: {:?} became {:?}",
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>()
        );
    }
    assert_eq!(
        s.fake.counters().requests.values().sum::<u64>(),
        requests_before
    );
}

/// Issue #12, acceptance 4, through the binary: `key add`, then `key remove` of the first key
/// with the new password; the new password opens the repository and the old one exits 12;
/// removing the last key is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_added_and_removed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let cache = dir.path().join("cache");
    let new_file = dir.path().join("new-password");
    std::fs::write(&new_file, "second password\n").unwrap();
    let env = |pw: &'static str| [("AIRBACK_PASSWORD", pw), ("AIRBACK_KDF_PARAMS", "1024,1,1")];

    let (code, stdout, stderr) = run(
        &cache,
        &["init", "--repo", repo, "--json"],
        &env("first password"),
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let created: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(created["encrypted"], true, "{created}");
    assert_eq!(created["version"], 2, "{created}");
    let first = created["key_id"].as_str().unwrap().to_owned();

    let args = [
        "key",
        "add",
        "--new-password-file",
        new_file.to_str().unwrap(),
        "--repo",
        repo,
    ];
    let (code, stdout, stderr) = run(&cache, &args, &env("first password")).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = run(
        &cache,
        &["key", "list", "--json", "--repo", repo],
        &env("second password"),
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let keys: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(keys.len(), 2, "{stdout}");

    let (code, stdout, stderr) = run(
        &cache,
        &["key", "remove", &first, "--repo", repo],
        &env("second password"),
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, _, stderr) = run(
        &cache,
        &["snapshots", "--repo", repo],
        &env("second password"),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(
        &cache,
        &["snapshots", "--repo", repo],
        &env("first password"),
    )
    .await;
    assert_eq!(code, 12, "{stderr}");

    let (code, stdout, _) = run(
        &cache,
        &["key", "list", "--json", "--repo", repo],
        &env("second password"),
    )
    .await;
    assert_eq!(code, 0);
    let keys: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let last = keys[0]["id"].as_str().unwrap().to_owned();
    let (code, _, stderr) = run(
        &cache,
        &["key", "remove", &last, "--repo", repo],
        &env("second password"),
    )
    .await;
    assert_eq!(code, 1, "{stderr}");
    let (code, _, stderr) = run(
        &cache,
        &["snapshots", "--repo", repo],
        &env("second password"),
    )
    .await;
    assert_eq!(code, 0, "the refused removal removed nothing: {stderr}");
}
