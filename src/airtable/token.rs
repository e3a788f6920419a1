//! The Airtable access token, as a type that cannot leak.
//!
//! A [`Token`] holds a personal access token (or an OAuth access token) and redacts itself in
//! `Debug` and `Display`: both print `pat…[redacted]`, never the value. The only way to read the
//! value is [`Token::expose_secret`], which the client calls once, to build the `Authorization`
//! header (marked sensitive, so hyper and reqwest never print it either). Tokens travel in that
//! header only, never in URLs, so request URLs in errors and logs are safe to show.
//!
//! Tokens come from a file ([`Token::from_file`], surrounding whitespace trimmed), or from a
//! string the caller read somewhere ([`Token::new`], or [`Token::with_origin`] to name where in
//! error messages). This module reads no environment variable: the command line reads
//! `AIRTABLE_TOKEN` and hands its value over.

use std::fmt;
use std::path::{Path, PathBuf};

/// An Airtable access token that never prints its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    secret: String,
}

/// Why a token could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token was given (the command line: `AIRTABLE_TOKEN` is unset and no token file was
    /// named).
    #[error(
        "no airtable token: set `AIRTABLE_TOKEN` to a personal access token (create one at \
         https://airtable.com/create/tokens) or pass `--token-file`"
    )]
    Missing,
    /// The token is empty after trimming.
    #[error("the airtable token from {origin} is empty")]
    Empty {
        /// Where the token came from, e.g. "`AIRTABLE_TOKEN`".
        origin: String,
    },
    /// The token holds characters that cannot go into an HTTP header.
    #[error(
        "the airtable token from {origin} contains whitespace or control characters; \
         check that it was copied whole"
    )]
    Malformed {
        /// Where the token came from.
        origin: String,
    },
    /// The token file could not be read.
    #[error("cannot read the airtable token file `{}`", path.display())]
    Io {
        /// The token file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Token {
    /// Wraps a token given as a string, e.g. from the configuration file. Surrounding whitespace
    /// is trimmed.
    pub fn new(value: impl Into<String>) -> Result<Token, TokenError> {
        Token::checked(value.into(), "the configuration")
    }

    /// Wraps a token read from `origin`, which errors name (e.g. "`AIRTABLE_TOKEN`").
    /// Surrounding whitespace is trimmed.
    pub fn with_origin(value: impl Into<String>, origin: &str) -> Result<Token, TokenError> {
        Token::checked(value.into(), origin)
    }

    /// Reads the token from a file (`--token-file`), trimming surrounding whitespace such as the
    /// trailing newline most editors add.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Token, TokenError> {
        let path = path.as_ref();
        let value = std::fs::read_to_string(path).map_err(|source| TokenError::Io {
            path: path.to_owned(),
            source,
        })?;
        Token::checked(value, &format!("`{}`", path.display()))
    }

    /// The token's value. Call this only to build the `Authorization` header.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    fn checked(value: String, origin: &str) -> Result<Token, TokenError> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(TokenError::Empty {
                origin: origin.to_owned(),
            });
        }
        if trimmed
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            return Err(TokenError::Malformed {
                origin: origin.to_owned(),
            });
        }
        Ok(Token {
            secret: trimmed.to_owned(),
        })
    }

    /// The redacted form: a personal access token keeps its public `pat` prefix, anything else
    /// shows nothing.
    fn redacted(&self) -> &'static str {
        if self.secret.starts_with("pat") {
            "pat…[redacted]"
        } else {
            "…[redacted]"
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.redacted())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str =
        "patAbCdEfGhIjKlMn.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn debug_and_display_redact() {
        let token = Token::new(SECRET).unwrap();
        for shown in [
            format!("{token}"),
            format!("{token:?}"),
            format!("{token:#?}"),
        ] {
            assert!(!shown.contains("AbCdEf"), "{shown}");
            assert!(shown.contains("[redacted]"), "{shown}");
        }
        assert_eq!(token.to_string(), "pat…[redacted]");
        let other = Token::new("oauth-secret-value").unwrap();
        assert_eq!(format!("{other:?}"), "Token(…[redacted])");
    }

    #[test]
    fn trims_and_rejects_bad_values() {
        assert_eq!(
            Token::new(format!("  {SECRET}\n")).unwrap().expose_secret(),
            SECRET
        );
        assert!(matches!(Token::new(" \n"), Err(TokenError::Empty { .. })));
        assert!(matches!(
            Token::new("pat abc"),
            Err(TokenError::Malformed { .. })
        ));
    }

    #[test]
    fn reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        assert_eq!(Token::from_file(&path).unwrap().expose_secret(), SECRET);
        let missing = Token::from_file(dir.path().join("nope")).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("cannot read the airtable token file")
        );
    }
}
