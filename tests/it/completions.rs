//! `airback completions SHELL` and `airback man`: generated from the clap definitions.

use crate::support::airback;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_scripts_name_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (code, bash, err) = airback(dir.path(), &["completions", "bash"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        bash.contains("snapshot") && bash.contains("restore") && bash.contains("--metrics-file"),
        "{bash}"
    );
    let script = dir.path().join("airback.bash");
    std::fs::write(&script, &bash).unwrap();
    let syntax = crate::support::command("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .await
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let (code, script, err) = airback(dir.path(), &["completions", shell]).await;
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(script.contains("snapshot"), "{shell}: {script}");
    }
    let (code, _, err) = airback(dir.path(), &["completions", "tcsh"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bash"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_man_page_is_roff_and_dir_writes_one_per_command() {
    let dir = tempfile::tempdir().unwrap();
    // Needs no repository, config or token: a config file that does not exist is not read.
    let (code, page, err) = airback(
        dir.path(),
        &["man", "--config", "/nonexistent/airback.yaml"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(page.lines().any(|l| l.starts_with(".TH ")), "{page}");
    assert!(
        page.contains("snapshot") && page.contains("restore"),
        "{page}"
    );
    assert!(!page.contains("fake\\-airtable"), "{page}");

    let pages = dir.path().join("man");
    let (code, _, err) = airback(dir.path(), &["man", "--dir", pages.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    let snapshot = std::fs::read_to_string(pages.join("airback-snapshot.1")).unwrap();
    assert!(snapshot.contains("metrics\\-file"), "{snapshot}");
    assert!(pages.join("airback.1").exists());
    assert!(pages.join("airback-restore.1").exists());
    assert!(!pages.join("airback-fake-airtable.1").exists());

    // When man is installed, it renders the page without complaint.
    let man = crate::support::command("man")
        .arg("-l")
        .arg(pages.join("airback-snapshot.1"))
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .await;
    match man {
        Ok(out) if out.status.success() => {
            // Without a terminal, man prints bold as `c\bc`: the text is what is left.
            let raw: Vec<char> = String::from_utf8_lossy(&out.stdout).chars().collect();
            let text: String = raw
                .iter()
                .enumerate()
                .filter(|&(i, c)| *c != '\u{8}' && raw.get(i + 1) != Some(&'\u{8}'))
                .map(|(_, c)| c)
                .collect();
            assert!(text.contains("--metrics-file"), "{text}");
        }
        Ok(out) => eprintln!(
            "man -l failed, not checked: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("no man on this machine, rendering not checked: {e}"),
    }
}
