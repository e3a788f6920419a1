//! The secrets this process knows (credentials from repository locations and from the
//! environment), and a log writer that replaces them with `***`.
//!
//! airback itself never formats a secret: locations are shown through
//! [`crate::backend::redact_location`], storage errors are sanitized, and credentials reach the
//! storage library in types whose `Debug` hides them. But dependencies log at debug and trace
//! level, and their texts are not ours to check; the writer here is the last line of defence, so
//! that no log level prints a secret a user gave us.

use std::borrow::Cow;
use std::io::Write;
use std::sync::Mutex;

/// Shorter values are not treated as secrets: replacing them would garble every line.
const MIN_LEN: usize = 4;

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Environment variables that hold credentials airback or its storage library may read.
/// (`AIRBACK_PASSWORD` is here although nothing prints it: the environment keeps a copy of it
/// for the life of the process anyway. Passwords from files, commands or the prompt are not
/// remembered, because that would keep an unwiped copy of them.)
pub(crate) const SECRET_VARS: &[&str] = &[
    "AIRBACK_PASSWORD",
    "AIRBACK_TO_PASSWORD",
    "AIRTABLE_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
    "B2_APPLICATION_KEY",
];

/// Remembers `secret`, so that [`scrub`] removes it from log output.
pub(crate) fn remember(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_LEN {
        return;
    }
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every remembered secret replaced by `***`.
pub(crate) fn scrub(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), "***"));
        }
    }
    out
}

/// A `tracing_subscriber` writer to stderr that passes each event through [`scrub`]. An event
/// is written whole when its writer is dropped, so a secret is never split across writes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ScrubbedStderr;

/// One event's text, written to stderr on drop.
#[derive(Debug, Default)]
pub(crate) struct ScrubbedEvent(Vec<u8>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ScrubbedStderr {
    type Writer = ScrubbedEvent;

    fn make_writer(&'a self) -> ScrubbedEvent {
        ScrubbedEvent::default()
    }
}

impl Write for ScrubbedEvent {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedEvent {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().lock().write_all(scrub(&text).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_secrets_are_scrubbed_and_short_values_ignored() {
        remember("s3cr3t-value-for-scrub-test");
        remember("s3cr3t-value-for-scrub-test-longer");
        remember("ab");
        assert_eq!(
            scrub("key s3cr3t-value-for-scrub-test-longer and s3cr3t-value-for-scrub-test; ab"),
            "key *** and ***; ab"
        );
        assert!(matches!(scrub("nothing here"), Cow::Borrowed(_)));
    }
}
