//! Where the repository password comes from (issue #12, design §2.5), end to end through the
//! binary: flags that conflict, sources that fail, the config file's keys, and a version 1
//! repository that ignores every source. (Opening an encrypted repository with a wrong password
//! is tested once the library can encrypt.)

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
