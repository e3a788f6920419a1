//! The repository password: which source gives it, and reading it. The only code that reads a
//! password (docs/ARCHITECTURE.md); the library gets it as a `SecretBox<[u8]>` and never
//! looks for one.
//!
//! The first source that is set wins (design of issue #12, §2.5):
//!
//! 1. `--password-file FILE`
//! 2. `--password-command CMD` (clap refuses it together with `--password-file`)
//! 3. `AIRBACK_PASSWORD_FILE`
//! 4. `AIRBACK_PASSWORD`
//! 5. `AIRBACK_PASSWORD_COMMAND`
//! 6. the config file's `password_file`
//! 7. the config file's `password_command`
//! 8. a prompt, only when standard input is a terminal (`rpassword` reads `/dev/tty` without
//!    echo; nothing goes to standard output). A new password (`init`, `key add`, `key passwd`)
//!    is asked twice.
//!
//! `settings.rs` gathers the values (flags, variables, config) into [`Sources`]; [`resolve`]
//! picks one, purely, so the precedence is unit-tested without touching the environment.
//! [`read`] then reads it: a file whole, at most [`MAX_LEN`] bytes, minus one trailing `\n`
//! or `\r\n`; a command under `/bin/sh -c` with standard input closed, standard error
//! inherited (so a tool can ask for a PIN) and standard output captured the same way. An
//! empty password is an error: `init --insecure-no-password` is the way to have none.
//!
//! `copy` reads a second password, its target's, from sources of its own
//! ([`TargetSources`]): `--to-password-file`, then `AIRBACK_TO_PASSWORD_FILE`, then
//! `AIRBACK_TO_PASSWORD`, then the config's `copies` entry for that repository
//! (`password_file` or `password_command`), then the prompt; the source's sources are never
//! used for the target. The copies after a nightly `snapshot --config` use only their entry's.
//!
//! Every buffer that holds the password is a `Zeroizing` one, copied once into an exact-size
//! box for the `SecretBox`. Errors name the source ([`Origin`]) and never the password, a
//! command's text or its output.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use secrecy::SecretBox;
use zeroize::Zeroizing;

/// The most bytes a password file or command may give.
pub(crate) const MAX_LEN: usize = 64 * 1024;

/// Where the sources point, as gathered from the flags, the environment and the config file.
/// An empty variable counts as unset, which `settings.rs` sees to.
#[derive(Default, Clone, Copy)]
pub(crate) struct Sources<'a> {
    /// `--password-file`.
    pub file_flag: Option<&'a Path>,
    /// `--password-command`.
    pub command_flag: Option<&'a str>,
    /// `AIRBACK_PASSWORD_FILE`.
    pub file_env: Option<&'a Path>,
    /// `AIRBACK_PASSWORD`.
    pub env: Option<&'a [u8]>,
    /// `AIRBACK_PASSWORD_COMMAND`.
    pub command_env: Option<&'a str>,
    /// The config file's `password_file`.
    pub config_file: Option<&'a Path>,
    /// The config file's `password_command`.
    pub config_command: Option<&'a str>,
    /// Standard input is a terminal, so a prompt may ask.
    pub terminal: bool,
}

/// The one source a password is read from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source<'a> {
    /// `--password-file FILE`.
    FileFlag(&'a Path),
    /// `--password-command CMD`.
    CommandFlag(&'a str),
    /// `AIRBACK_PASSWORD_FILE`.
    FileEnv(&'a Path),
    /// `AIRBACK_PASSWORD`.
    Env(&'a [u8]),
    /// `AIRBACK_PASSWORD_COMMAND`.
    CommandEnv(&'a str),
    /// The config file's `password_file`.
    ConfigFile(&'a Path),
    /// The config file's `password_command`.
    ConfigCommand(&'a str),
    /// `--new-password-file FILE` (`key add`, `key passwd`).
    NewFileFlag(&'a Path),
    /// `--to-password-file FILE` (`copy`'s target).
    ToFileFlag(&'a Path),
    /// `AIRBACK_TO_PASSWORD_FILE` (`copy`'s target).
    ToFileEnv(&'a Path),
    /// `AIRBACK_TO_PASSWORD` (`copy`'s target).
    ToEnv(&'a [u8]),
    /// The `password_file` of the config's `copies` entry for `copy`'s target.
    CopiesFile(&'a Path),
    /// The `password_command` of the config's `copies` entry for `copy`'s target.
    CopiesCommand(&'a str),
    /// Ask on the terminal.
    Prompt,
}

impl Source<'_> {
    /// The source, described for messages: never the password or a command's text.
    pub(crate) fn origin(&self) -> Origin {
        let file = |name: &str, path: &Path| format!("{name} ({})", path.display());
        Origin(match self {
            Source::FileFlag(path) => file("`--password-file`", path),
            Source::CommandFlag(_) => "`--password-command`".into(),
            Source::FileEnv(path) => file("`AIRBACK_PASSWORD_FILE`", path),
            Source::Env(_) => "`AIRBACK_PASSWORD`".into(),
            Source::CommandEnv(_) => "`AIRBACK_PASSWORD_COMMAND`".into(),
            Source::ConfigFile(path) => file("the config file's `password_file`", path),
            Source::ConfigCommand(_) => "the config file's `password_command`".into(),
            Source::NewFileFlag(path) => file("`--new-password-file`", path),
            Source::ToFileFlag(path) => file("`--to-password-file`", path),
            Source::ToFileEnv(path) => file("`AIRBACK_TO_PASSWORD_FILE`", path),
            Source::ToEnv(_) => "`AIRBACK_TO_PASSWORD`".into(),
            Source::CopiesFile(path) => {
                file("the config file's `copies` entry's `password_file`", path)
            }
            Source::CopiesCommand(_) => {
                "the config file's `copies` entry's `password_command`".into()
            }
            Source::Prompt => "the prompt".into(),
        })
    }
}

impl fmt::Debug for Source<'_> {
    /// The origin only: a `Debug` print shows no password and no command.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Source({})", self.origin().0)
    }
}

/// Where a password came from, for messages: "the password from `AIRBACK_PASSWORD_FILE`
/// (/etc/airback/pw)". Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin(String);

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the password from {}", self.0)
    }
}

impl Origin {
    /// The source alone, without "the password from": "`AIRBACK_PASSWORD`".
    pub(crate) fn source(&self) -> &str {
        &self.0
    }
}

/// What the password is for: opening a repository (asked once), or a new one (`init`; asked
/// twice at a prompt). Both name the repository's location, already redacted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose<'a> {
    /// Opening the repository at this location.
    Open(&'a str),
    /// Creating a repository at this location.
    Create(&'a str),
    /// Opening `copy`'s target repository at this location.
    OpenTarget(&'a str),
}

/// Where the password of `copy`'s target may come from, gathered like [`Sources`].
#[derive(Default, Clone, Copy)]
pub(crate) struct TargetSources<'a> {
    /// `--to-password-file`.
    pub file_flag: Option<&'a Path>,
    /// `AIRBACK_TO_PASSWORD_FILE`.
    pub file_env: Option<&'a Path>,
    /// `AIRBACK_TO_PASSWORD`.
    pub env: Option<&'a [u8]>,
    /// The `copies` entry's `password_file`.
    pub config_file: Option<&'a Path>,
    /// The `copies` entry's `password_command`.
    pub config_command: Option<&'a str>,
    /// Standard input is a terminal, so a prompt may ask.
    pub terminal: bool,
}

/// The sources to name in a message about a missing password.
const HOW_TO_GIVE: &str = "pass --password-file FILE or --password-command CMD, set \
    AIRBACK_PASSWORD_FILE, AIRBACK_PASSWORD or AIRBACK_PASSWORD_COMMAND, or add \
    `password_file`/`password_command` to the config file";

/// Why no password could be had. Every message names the source, never the password.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PasswordError {
    /// No source is set, and standard input is not a terminal to ask on.
    #[error("no password given for the encrypted repository at {location}: {HOW_TO_GIVE}")]
    Missing {
        /// The repository, redacted.
        location: String,
    },
    /// No source is set for a new repository, and there is no terminal.
    #[error(
        "no password given for the new repository at {location}: {HOW_TO_GIVE}; or pass \
         --insecure-no-password to create a repository without encryption"
    )]
    MissingForInit {
        /// The repository, redacted.
        location: String,
    },
    /// No source is set for `copy`'s encrypted target, and there is no terminal.
    #[error(
        "no password given for the encrypted target repository at {location}: pass \
         --to-password-file FILE, set AIRBACK_TO_PASSWORD_FILE or AIRBACK_TO_PASSWORD, or give \
         its `copies` entry in the config file a `password_file` or `password_command`"
    )]
    MissingTarget {
        /// The target, redacted.
        location: String,
    },
    /// The target's password opens none of its key files.
    #[error(
        "{origin} opens none of the {key_files} key files of the target repository at \
         {location}; nothing was copied. Give the target's password with --to-password-file, \
         AIRBACK_TO_PASSWORD_FILE, AIRBACK_TO_PASSWORD or its `copies` entry in the config file"
    )]
    WrongTarget {
        /// The source of the password.
        origin: Origin,
        /// The target, redacted.
        location: String,
        /// How many key files it has.
        key_files: usize,
    },
    /// `key add` or `key passwd` without `--new-password-file`, and no terminal.
    #[error(
        "no new password given: pass --new-password-file FILE, or run the command on a \
         terminal to be asked"
    )]
    MissingNew,
    /// The source gave nothing (after removing one trailing newline).
    #[error(
        "{origin} is empty; give a password that is not empty (an unencrypted repository is \
         made with `init --insecure-no-password`)"
    )]
    Empty {
        /// The source.
        origin: Origin,
    },
    /// The file could not be read.
    #[error("cannot read {origin}; check the path and its permissions")]
    File {
        /// The source.
        origin: Origin,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file or the command's output is longer than [`MAX_LEN`].
    #[error(
        "{origin} is longer than 64 KiB; the file or the command's output must hold only \
         the password"
    )]
    TooLong {
        /// The source.
        origin: Origin,
    },
    /// The command could not be started.
    #[error("cannot run the command that gives {origin} (with /bin/sh -c)")]
    CommandStart {
        /// The source.
        origin: Origin,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The command ran and failed. Neither its text nor its output is shown.
    #[error(
        "the command that gives {origin} failed ({status}); run it by hand to see why, or \
         give the password another way"
    )]
    Command {
        /// The source.
        origin: Origin,
        /// How it ended.
        status: ExitStatus,
    },
    /// The terminal could not be read.
    #[error("cannot read the password from the terminal")]
    Prompt {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The two passwords typed at the prompt differ.
    #[error("the two passwords typed do not match; nothing was changed, run the command again")]
    Mismatch,
}

/// The source to read the password from: the first of [`Sources`] that is set, else the
/// prompt on a terminal, else none.
pub(crate) fn resolve<'a>(sources: &Sources<'a>) -> Option<Source<'a>> {
    let s = sources;
    s.file_flag
        .map(Source::FileFlag)
        .or(s.command_flag.map(Source::CommandFlag))
        .or(s.file_env.map(Source::FileEnv))
        .or(s.env.map(Source::Env))
        .or(s.command_env.map(Source::CommandEnv))
        .or(s.config_file.map(Source::ConfigFile))
        .or(s.config_command.map(Source::ConfigCommand))
        .or(s.terminal.then_some(Source::Prompt))
}

/// The source of the password of `copy`'s target: the first of [`TargetSources`] that is
/// set, else the prompt on a terminal, else none.
pub(crate) fn resolve_target<'a>(sources: &TargetSources<'a>) -> Option<Source<'a>> {
    let s = sources;
    s.file_flag
        .map(Source::ToFileFlag)
        .or(s.file_env.map(Source::ToFileEnv))
        .or(s.env.map(Source::ToEnv))
        .or(s.config_file.map(Source::CopiesFile))
        .or(s.config_command.map(Source::CopiesCommand))
        .or(s.terminal.then_some(Source::Prompt))
}

/// Reads the password that [`resolve`] chose (`None`: nothing set and no terminal, an error
/// that says how to give one). A prompt asks twice for [`Purpose::Create`].
pub(crate) fn read(
    source: Option<Source<'_>>,
    purpose: Purpose<'_>,
) -> Result<(SecretBox<[u8]>, Origin), PasswordError> {
    let Some(source) = source else {
        return Err(match purpose {
            Purpose::Open(location) => PasswordError::Missing {
                location: location.to_owned(),
            },
            Purpose::Create(location) => PasswordError::MissingForInit {
                location: location.to_owned(),
            },
            Purpose::OpenTarget(location) => PasswordError::MissingTarget {
                location: location.to_owned(),
            },
        });
    };
    let prompt = match purpose {
        Purpose::Open(_) => "password of the repository: ",
        Purpose::Create(_) => "password for the new repository: ",
        Purpose::OpenTarget(_) => "password of the target repository: ",
    };
    read_from(source, prompt, matches!(purpose, Purpose::Create(_)))
}

/// Reads a new password for `key add` and `key passwd`: from `--new-password-file` (`file`),
/// else asked twice on the terminal.
pub(crate) fn read_new(
    file: Option<&Path>,
    terminal: bool,
) -> Result<(SecretBox<[u8]>, Origin), PasswordError> {
    let source = match (file, terminal) {
        (Some(path), _) => Source::NewFileFlag(path),
        (None, true) => Source::Prompt,
        (None, false) => return Err(PasswordError::MissingNew),
    };
    read_from(source, "new password: ", true)
}

fn read_from(
    source: Source<'_>,
    prompt: &str,
    twice: bool,
) -> Result<(SecretBox<[u8]>, Origin), PasswordError> {
    let origin = source.origin();
    // Files and commands lose one trailing newline; a variable and a typed password are
    // used as they are (the prompt never returns the newline).
    let (bytes, trim) = match source {
        Source::FileFlag(path)
        | Source::FileEnv(path)
        | Source::ConfigFile(path)
        | Source::NewFileFlag(path)
        | Source::ToFileFlag(path)
        | Source::ToFileEnv(path)
        | Source::CopiesFile(path) => (read_file(path, &origin)?, true),
        Source::CommandFlag(command)
        | Source::CommandEnv(command)
        | Source::ConfigCommand(command)
        | Source::CopiesCommand(command) => (run_command(command, &origin)?, true),
        Source::Env(value) | Source::ToEnv(value) => (Zeroizing::new(value.to_vec()), false),
        Source::Prompt => (ask(prompt, twice)?, false),
    };
    let password = if trim {
        without_newline(&bytes)
    } else {
        &bytes[..]
    };
    if password.is_empty() {
        return Err(PasswordError::Empty { origin });
    }
    // One exact-size copy, so that no reallocation leaves another behind.
    Ok((SecretBox::new(Box::from(password)), origin))
}

/// `bytes` without one trailing `\n` or `\r\n`.
fn without_newline(bytes: &[u8]) -> &[u8] {
    match bytes.strip_suffix(b"\n") {
        Some(rest) => rest.strip_suffix(b"\r").unwrap_or(rest),
        None => bytes,
    }
}

/// Up to [`MAX_LEN`] bytes from `reader`, in a buffer that is wiped on drop and never
/// reallocated; `None` when there are more.
fn read_limited(reader: impl Read) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_LEN + 1));
    reader.take(MAX_LEN as u64 + 1).read_to_end(&mut buf)?;
    Ok((buf.len() <= MAX_LEN).then_some(buf))
}

fn read_file(path: &Path, origin: &Origin) -> Result<Zeroizing<Vec<u8>>, PasswordError> {
    let file_error = |source| PasswordError::File {
        origin: origin.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(file_error)?;
    read_limited(file)
        .map_err(file_error)?
        .ok_or_else(|| PasswordError::TooLong {
            origin: origin.clone(),
        })
}

fn run_command(command: &str, origin: &Origin) -> Result<Zeroizing<Vec<u8>>, PasswordError> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| PasswordError::CommandStart {
            origin: origin.clone(),
            source,
        })?;
    let output = child.stdout.take().map(read_limited);
    let Some(Ok(Some(output))) = output else {
        // Too much output, or none could be read: stop the command rather than wait for it.
        let _ = child.kill();
        let _ = child.wait();
        return Err(match output {
            Some(Err(source)) => PasswordError::CommandStart {
                origin: origin.clone(),
                source,
            },
            _ => PasswordError::TooLong {
                origin: origin.clone(),
            },
        });
    };
    let status = child.wait().map_err(|source| PasswordError::CommandStart {
        origin: origin.clone(),
        source,
    })?;
    if !status.success() {
        return Err(PasswordError::Command {
            origin: origin.clone(),
            status,
        });
    }
    Ok(output)
}

/// Asks on the terminal, twice when `twice`; both answers must match.
fn ask(prompt: &str, twice: bool) -> Result<Zeroizing<Vec<u8>>, PasswordError> {
    let prompt_once = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|source| PasswordError::Prompt { source })
    };
    let first = prompt_once(prompt)?;
    if twice {
        let again = prompt_once("the same password again: ")?;
        if *first != *again {
            return Err(PasswordError::Mismatch);
        }
    }
    Ok(Zeroizing::new(first.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use secrecy::ExposeSecret;

    use super::*;

    /// Every source set, each to a value that names it.
    fn all() -> Sources<'static> {
        Sources {
            file_flag: Some(Path::new("/flag/file")),
            command_flag: Some("flag command"),
            file_env: Some(Path::new("/env/file")),
            env: Some(b"env password"),
            command_env: Some("env command"),
            config_file: Some(Path::new("/config/file")),
            config_command: Some("config command"),
            terminal: true,
        }
    }

    /// `sources` with only the source at `index` (in precedence order) left set.
    fn only(index: usize) -> Sources<'static> {
        let a = all();
        let mut s = Sources::default();
        match index {
            0 => s.file_flag = a.file_flag,
            1 => s.command_flag = a.command_flag,
            2 => s.file_env = a.file_env,
            3 => s.env = a.env,
            4 => s.command_env = a.command_env,
            5 => s.config_file = a.config_file,
            6 => s.config_command = a.config_command,
            7 => s.terminal = true,
            _ => unreachable!(),
        }
        s
    }

    /// `a` with every source that `b` sets set too.
    fn both(a: Sources<'static>, b: Sources<'static>) -> Sources<'static> {
        Sources {
            file_flag: a.file_flag.or(b.file_flag),
            command_flag: a.command_flag.or(b.command_flag),
            file_env: a.file_env.or(b.file_env),
            env: a.env.or(b.env),
            command_env: a.command_env.or(b.command_env),
            config_file: a.config_file.or(b.config_file),
            config_command: a.config_command.or(b.config_command),
            terminal: a.terminal || b.terminal,
        }
    }

    #[test]
    fn each_source_alone_is_chosen() {
        let expected = [
            Source::FileFlag(Path::new("/flag/file")),
            Source::CommandFlag("flag command"),
            Source::FileEnv(Path::new("/env/file")),
            Source::Env(b"env password"),
            Source::CommandEnv("env command"),
            Source::ConfigFile(Path::new("/config/file")),
            Source::ConfigCommand("config command"),
            Source::Prompt,
        ];
        for (i, source) in expected.into_iter().enumerate() {
            assert_eq!(resolve(&only(i)), Some(source), "source {i}");
        }
        assert_eq!(
            resolve(&Sources::default()),
            None,
            "nothing set, no terminal"
        );
    }

    #[test]
    fn of_every_pair_of_sources_the_earlier_one_wins() {
        for earlier in 0..8 {
            for later in earlier + 1..8 {
                let pair = both(only(earlier), only(later));
                assert_eq!(
                    resolve(&pair),
                    resolve(&only(earlier)),
                    "sources {earlier} and {later}"
                );
            }
        }
        assert_eq!(
            resolve(&all()),
            Some(Source::FileFlag(Path::new("/flag/file")))
        );
    }

    #[test]
    fn origins_name_the_source_and_never_the_value_or_command() {
        let cases = [
            (
                Source::FileEnv(Path::new("/etc/airback/pw")),
                "the password from `AIRBACK_PASSWORD_FILE` (/etc/airback/pw)",
            ),
            (
                Source::CommandFlag("pass show secret-entry"),
                "the password from `--password-command`",
            ),
            (
                Source::Env(b"hunter22"),
                "the password from `AIRBACK_PASSWORD`",
            ),
            (
                Source::ConfigCommand("pass show secret-entry"),
                "the password from the config file's `password_command`",
            ),
        ];
        for (source, text) in cases {
            assert_eq!(source.origin().to_string(), text);
            let debug = format!("{source:?}");
            assert!(
                !debug.contains("secret-entry") && !debug.contains("hunter22"),
                "{debug}"
            );
        }
    }

    fn read_ok(source: Source<'_>) -> Vec<u8> {
        let (secret, _) = read(Some(source), Purpose::Open("/repo")).unwrap();
        secret.expose_secret().to_vec()
    }

    #[test]
    fn a_file_loses_one_trailing_newline_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[u8], &[u8]); 6] = [
            (b"pw", b"pw"),
            (b"pw\n", b"pw"),
            (b"pw\r\n", b"pw"),
            (b"pw\n\n", b"pw\n"),
            (b" pw \t", b" pw \t"),
            (b"\xffbinary\x00pw\n", b"\xffbinary\x00pw"),
        ];
        for (i, (content, expected)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("pw{i}"));
            std::fs::write(&path, content).unwrap();
            assert_eq!(read_ok(Source::FileFlag(&path)), expected, "{content:?}");
        }
    }

    #[test]
    fn empty_missing_and_oversized_files_are_errors_that_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = read(Some(Source::FileEnv(&empty)), Purpose::Open("/r")).unwrap_err();
        assert!(matches!(err, PasswordError::Empty { .. }), "{err:?}");
        assert!(err.to_string().contains("`AIRBACK_PASSWORD_FILE`"), "{err}");
        assert!(err.to_string().contains("--insecure-no-password"), "{err}");

        let missing = dir.path().join("missing");
        let err = read(Some(Source::FileFlag(&missing)), Purpose::Open("/r")).unwrap_err();
        assert!(matches!(err, PasswordError::File { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("`--password-file`") && text.contains(&*missing.to_string_lossy()),
            "{text}"
        );

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_LEN + 1]).unwrap();
        let err = read(Some(Source::ConfigFile(&big)), Purpose::Open("/r")).unwrap_err();
        assert!(matches!(err, PasswordError::TooLong { .. }), "{err:?}");
        std::fs::write(&big, vec![b'x'; MAX_LEN]).unwrap();
        assert_eq!(read_ok(Source::ConfigFile(&big)).len(), MAX_LEN);
    }

    #[test]
    fn a_command_gives_its_output_and_its_failure_names_only_the_source() {
        assert_eq!(
            read_ok(Source::CommandEnv("printf 'from command\\n'")),
            b"from command"
        );
        let err = read(
            Some(Source::CommandFlag("echo leaked-output; exit 3")),
            Purpose::Open("/r"),
        )
        .unwrap_err();
        assert!(matches!(err, PasswordError::Command { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("`--password-command`"), "{text}");
        assert!(
            !text.contains("leaked-output") && !text.contains("exit 3"),
            "{text}"
        );
        let err = read(Some(Source::ConfigCommand("true")), Purpose::Open("/r")).unwrap_err();
        assert!(matches!(err, PasswordError::Empty { .. }), "{err:?}");
        // Standard input is closed: a command that reads it gets nothing at once.
        let err = read(Some(Source::CommandEnv("cat")), Purpose::Open("/r")).unwrap_err();
        assert!(matches!(err, PasswordError::Empty { .. }), "{err:?}");
        let err = read(
            Some(Source::CommandEnv("head -c 70000 /dev/zero; sleep 30")),
            Purpose::Open("/r"),
        )
        .unwrap_err();
        assert!(matches!(err, PasswordError::TooLong { .. }), "{err:?}");
    }

    #[test]
    fn nothing_set_says_how_to_give_a_password() {
        let err = read(None, Purpose::Open("/srv/repo"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/srv/repo") && err.contains("AIRBACK_PASSWORD_FILE"),
            "{err}"
        );
        let err = read(None, Purpose::Create("/srv/repo"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--insecure-no-password"), "{err}");
        let err = read_new(None, false).unwrap_err().to_string();
        assert!(err.contains("--new-password-file"), "{err}");
        let path = PathBuf::from("/nonexistent/new-pw");
        let err = read_new(Some(&path), true).unwrap_err().to_string();
        assert!(
            err.contains("`--new-password-file` (/nonexistent/new-pw)"),
            "{err}"
        );
    }

    #[test]
    fn the_target_password_has_its_own_sources_in_order() {
        let file = Path::new("/to/file");
        let env_file = Path::new("/to/env-file");
        let config_file = Path::new("/copies/file");
        let mut sources = TargetSources {
            file_flag: Some(file),
            file_env: Some(env_file),
            env: Some(b"to password"),
            config_file: Some(config_file),
            config_command: Some("copies command"),
            terminal: true,
        };
        assert_eq!(resolve_target(&sources), Some(Source::ToFileFlag(file)));
        sources.file_flag = None;
        assert_eq!(resolve_target(&sources), Some(Source::ToFileEnv(env_file)));
        sources.file_env = None;
        assert_eq!(
            resolve_target(&sources),
            Some(Source::ToEnv(b"to password"))
        );
        sources.env = None;
        assert_eq!(
            resolve_target(&sources),
            Some(Source::CopiesFile(config_file))
        );
        sources.config_file = None;
        assert_eq!(
            resolve_target(&sources),
            Some(Source::CopiesCommand("copies command"))
        );
        assert_eq!(
            Source::CopiesCommand("pass show x").origin().to_string(),
            "the password from the config file's `copies` entry's `password_command`"
        );
        sources.config_command = None;
        assert_eq!(resolve_target(&sources), Some(Source::Prompt));
        sources.terminal = false;
        assert_eq!(resolve_target(&sources), None);
        let err = read(None, Purpose::OpenTarget("s3://b/copy"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("target repository at s3://b/copy") && err.contains("--to-password-file"),
            "{err}"
        );
        assert_eq!(
            Source::ToEnv(b"hunter22").origin().to_string(),
            "the password from `AIRBACK_TO_PASSWORD`"
        );
    }

    #[test]
    fn the_variable_is_used_as_given() {
        assert_eq!(read_ok(Source::Env(b" with space\n")), b" with space\n");
    }
}
