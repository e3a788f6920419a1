//! File and folder names that are safe on Linux, macOS and Windows, made from names users
//! typed (table names, attachment filenames) or that came from a repository (record ids).
//!
//! [`safe_name`] turns any string into one path component: no separators, no control
//! characters, none of Windows' forbidden characters or reserved device names, no leading
//! dots (no hidden files), no trailing dots or spaces, never empty, at most
//! [`MAX_NAME_BYTES`] bytes of UTF-8 with the extension kept when it is shortened, in Unicode
//! NFC. [`NameSet`] hands out such names
//! within one folder and resolves collisions deterministically (`name (2).ext`, `name (3).ext`,
//! … in the order names are claimed), comparing names the way case-insensitive,
//! normalization-insensitive file systems (macOS, Windows) do. The rules are listed in
//! docs/EXPORT.md, "Names".

use std::collections::HashSet;

use unicode_normalization::UnicodeNormalization;

/// The longest name a component may have, in bytes of UTF-8 (Linux's `NAME_MAX`; macOS and
/// Windows allow 255 characters or UTF-16 units, never fewer than 255 bytes).
pub const MAX_NAME_BYTES: usize = 255;

/// What replaces an unsafe character, and what an empty name becomes.
const REPLACEMENT: char = '_';

/// Extensions longer than this (dot included) are treated as part of the stem.
const MAX_EXTENSION_BYTES: usize = 16;

/// Characters Windows forbids in names (besides control characters).
const FORBIDDEN: &[char] = &['/', '\\', ':', '*', '?', '"', '<', '>', '|'];

/// Windows device names: a name whose part before the first dot is one of these (in any case,
/// trailing spaces ignored) opens the device instead of a file.
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// One safe path component for `name`, at most `max_bytes` long (clamped to
/// 8..=[`MAX_NAME_BYTES`]). Different inputs may give the same output; use a [`NameSet`] to
/// keep names in one folder apart.
pub fn safe_name(name: &str, max_bytes: usize) -> String {
    let max_bytes = max_bytes.clamp(8, MAX_NAME_BYTES);
    let cleaned: String = name
        .nfc()
        .map(|c| if is_unsafe_char(c) { REPLACEMENT } else { c })
        .collect();
    let trimmed = trim_name(&cleaned);
    // Leading dots: no hidden files, nothing that starts like `..`.
    let dots = trimmed.len() - trimmed.trim_start_matches('.').len();
    let mut cleaned = format!("{}{}", "_".repeat(dots), &trimmed[dots..]);
    if cleaned.is_empty() {
        cleaned.push(REPLACEMENT);
    }
    if is_reserved(&cleaned) {
        cleaned.insert(0, REPLACEMENT);
    }
    let (stem, extension) = split_extension(&cleaned);
    compose(stem, "", extension, max_bytes)
}

/// The names given out in one folder.
#[derive(Debug, Default, Clone)]
pub struct NameSet {
    taken: HashSet<String>,
}

impl NameSet {
    /// An empty folder.
    pub fn new() -> NameSet {
        NameSet::default()
    }

    /// A safe name for `name` (see [`safe_name`]) that no earlier claim in this set holds, even
    /// on a case-insensitive file system: the first claim gets `name.ext`, later ones
    /// `name (2).ext`, `name (3).ext`, …
    pub fn claim(&mut self, name: &str, max_bytes: usize) -> String {
        let max_bytes = max_bytes.clamp(8, MAX_NAME_BYTES);
        let first = safe_name(name, max_bytes);
        if self.taken.insert(fold(&first)) {
            return first;
        }
        let (stem, extension) = split_extension(&first);
        for n in 2u64.. {
            let candidate = compose(stem, &format!(" ({n})"), extension, max_bytes);
            if self.taken.insert(fold(&candidate)) {
                return candidate;
            }
        }
        unreachable!("some suffix is always free")
    }

    /// Marks `name` as taken (a name the layout itself uses).
    pub fn reserve(&mut self, name: &str) {
        self.taken.insert(fold(name));
    }
}

/// How case-insensitive, normalization-insensitive file systems compare names.
fn fold(name: &str) -> String {
    name.nfc().flat_map(char::to_lowercase).nfc().collect()
}

fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || FORBIDDEN.contains(&c)
        // Bidirectional overrides and isolates: they make a name display as another one.
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Without leading white space and trailing white space and dots (Windows drops trailing dots
/// and spaces, so `a.` and `a` would be the same file).
fn trim_name(name: &str) -> &str {
    name.trim_start()
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
}

fn is_reserved(name: &str) -> bool {
    let device = name.split('.').next().unwrap_or("").trim_end();
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(device))
        || RESERVED.iter().any(|r| {
            // Superscript digits are not ASCII; compare those names case-insensitively by hand.
            !r.is_ascii() && r.to_lowercase() == device.to_lowercase()
        })
}

/// `("photo", ".png")`; names without a usable extension give `(name, "")`.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot)
            if dot > 0
                && name.len() - dot <= MAX_EXTENSION_BYTES
                && name.len() - dot > 1
                && !name[dot..].contains(char::is_whitespace) =>
        {
            name.split_at(dot)
        }
        _ => (name, ""),
    }
}

/// `stem + suffix + extension`, the stem shortened (at a character boundary) so that the whole
/// fits in `max_bytes`, and still a safe name. `stem` and `extension` come from a cleaned name
/// (no unsafe characters, trimmed).
fn compose(stem: &str, suffix: &str, extension: &str, max_bytes: usize) -> String {
    // Keep at least one byte of stem; drop the extension rather than the stem.
    let extension = if suffix.len() + extension.len() >= max_bytes {
        ""
    } else {
        extension
    };
    let room = max_bytes
        .saturating_sub(suffix.len() + extension.len())
        .max(1);
    let shorten = |stem: &str, room: usize| -> String {
        let mut stem = truncate(stem, room);
        if suffix.is_empty() && extension.is_empty() {
            // The stem ends the name: no trailing dots or spaces.
            stem = stem.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
        }
        if stem.is_empty() {
            REPLACEMENT.to_string()
        } else {
            stem.to_owned()
        }
    };
    let mut out = format!("{}{suffix}{extension}", shorten(stem, room));
    if is_reserved(&out) {
        // Only without a suffix (`CON (2)` is no device); one byte for the prefix.
        out = format!(
            "{REPLACEMENT}{}{suffix}{extension}",
            shorten(stem, room.saturating_sub(1).max(1))
        );
    }
    if out.len() > max_bytes {
        // Only with a suffix longer than the limit: unreachable for limits of 8 and more below
        // a million collisions, but never return an over-long name.
        out = trim_name(truncate(&out, max_bytes)).to_owned();
        if out.is_empty() {
            out.push(REPLACEMENT);
        }
    }
    out
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends at a character boundary.
fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn safe(name: &str) -> String {
        safe_name(name, MAX_NAME_BYTES)
    }

    fn assert_safe(name: &str, max: usize) {
        assert!(!name.is_empty());
        assert!(name.len() <= max, "{} bytes: {name:?}", name.len());
        assert!(name != "." && name != "..");
        assert!(!name.chars().any(is_unsafe_char), "{name:?}");
        assert!(!name.ends_with('.') && !name.ends_with(char::is_whitespace));
        assert!(!name.starts_with(char::is_whitespace) && !name.starts_with('.'));
        assert!(!is_reserved(name), "{name:?}");
        assert_eq!(name, name.nfc().collect::<String>());
    }

    #[test]
    fn ordinary_names_are_kept() {
        for name in [
            "photo.png",
            "Everything 🦓",
            "Таблица 表格 جدول",
            "résumé.pdf",
            "a b",
        ] {
            assert_eq!(safe(name), name);
        }
        assert_eq!(safe("recAbC123xyz45678"), "recAbC123xyz45678");
    }

    #[test]
    fn separators_and_windows_characters_are_replaced() {
        assert_eq!(safe("../x"), "___x");
        assert_eq!(safe("a..txt"), "a..txt");
        assert_eq!(safe("/etc/passwd"), "_etc_passwd");
        assert_eq!(safe(r"a\b:c*d?e<f>g|h"), "a_b_c_d_e_f_g_h");
        assert_eq!(safe("résumé 📄 \"final\".pdf"), "résumé 📄 _final_.pdf");
        assert_eq!(safe("Links / Refs \"quoted\""), "Links _ Refs _quoted_");
    }

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(safe("a\u{1}b\tc\nd.txt"), "a_b_c_d.txt");
        assert_eq!(safe("nul\u{0}byte.bin"), "nul_byte.bin");
        assert_eq!(safe("del\u{7f}\u{85}x"), "del__x");
        assert_eq!(safe("evil\u{202E}gpj.exe"), "evil_gpj.exe");
    }

    #[test]
    fn dots_spaces_and_empty_names() {
        assert_eq!(safe(".."), "_");
        assert_eq!(safe("."), "_");
        assert_eq!(safe(""), "_");
        assert_eq!(safe("   "), "_");
        assert_eq!(safe("name. . "), "name");
        assert_eq!(safe("  lead"), "lead");
        assert_eq!(safe(".hidden"), "_hidden");
        assert_eq!(safe("..a..b.."), "__a..b");
    }

    #[test]
    fn windows_device_names_get_a_prefix() {
        assert_eq!(safe("CON"), "_CON");
        assert_eq!(safe("con"), "_con");
        assert_eq!(safe("CON.txt"), "_CON.txt");
        assert_eq!(safe("nul.tar.gz"), "_nul.tar.gz");
        assert_eq!(safe("LPT1 .txt"), "_LPT1 .txt");
        assert_eq!(safe("COM¹"), "_COM¹");
        assert_eq!(safe("conin$"), "_conin$");
        assert_eq!(safe("CONSOLE"), "CONSOLE");
        assert_eq!(safe("COM10"), "COM10");
        assert_eq!(safe("xCON"), "xCON");
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.txt", "long-".repeat(60));
        let name = safe(&long);
        assert_eq!(name.len(), 255);
        assert!(
            name.ends_with("-long-.txt") || name.ends_with(".txt"),
            "{name}"
        );
        assert!(name.starts_with("long-long-"));
        // Multi-byte characters are never cut in half.
        let name = safe(&format!("{}.jpeg", "日".repeat(200)));
        assert!(name.len() <= 255 && name.ends_with("日.jpeg"), "{name}");
        // A long "extension" is not one.
        let name = safe(&format!("a.{}", "x".repeat(300)));
        assert_eq!(name.len(), 255);
        // Shorter limits.
        assert_eq!(safe_name("abcdefghij.png", 10), "abcdef.png");
    }

    #[test]
    fn unicode_is_normalized() {
        assert_eq!(safe("Zoe\u{308}"), "Zoë");
    }

    #[test]
    fn collisions_get_deterministic_suffixes() {
        let mut set = NameSet::new();
        assert_eq!(set.claim("a.txt", 255), "a.txt");
        assert_eq!(set.claim("A.TXT", 255), "A (2).TXT");
        assert_eq!(set.claim("a.txt", 255), "a (3).txt");
        assert_eq!(set.claim("a (2).txt", 255), "a (2) (2).txt");
        assert_eq!(set.claim("b", 255), "b");
        // The same claims in the same order give the same names.
        let mut again = NameSet::new();
        let names: Vec<_> = ["x", "X", "x", "CON", "con"]
            .iter()
            .map(|n| again.claim(n, 255))
            .collect();
        assert_eq!(names, ["x", "X (2)", "x (3)", "_CON", "_con (2)"]);
    }

    #[test]
    fn different_names_that_become_equal_collide() {
        let mut set = NameSet::new();
        assert_eq!(set.claim("a/b", 255), "a_b");
        assert_eq!(set.claim("a:b", 255), "a_b (2)");
        assert_eq!(set.claim("Zoë", 255), "Zoë");
        assert_eq!(set.claim("ZOE\u{308}", 255), "ZOË (2)");
        assert_eq!(set.claim("..", 255), "_");
        assert_eq!(set.claim(".", 255), "_ (2)");
    }

    #[test]
    fn suffixes_fit_in_the_limit() {
        let mut set = NameSet::new();
        let long = format!("{}.txt", "y".repeat(400));
        let first = set.claim(&long, 255);
        let second = set.claim(&long, 255);
        assert_eq!(first.len(), 255);
        assert!(
            second.len() <= 255 && second.ends_with(" (2).txt"),
            "{second}"
        );
        assert_ne!(fold(&first), fold(&second));
    }

    #[test]
    fn reserved_names_are_avoided() {
        let mut set = NameSet::new();
        set.reserve("manifest.json");
        assert_eq!(set.claim("Manifest.json", 255), "Manifest (2).json");
    }

    /// Any text, runs of awkward characters, device names with extensions.
    const ANY_NAME: &str =
        "\\PC{0,300}|[ .\\x00-\\x1f/\\\\:*?\"<>|]{0,20}|(?i:con|nul|lpt1|com9)(\\.[a-z]{0,4})?";
    /// Short names that often clash, also only by case.
    const CLASHING_NAME: &str = "[aA. /]{0,6}(\\.[tT]{1,2})?";

    proptest! {
        #[test]
        fn any_name_becomes_safe(name in ANY_NAME) {
            assert_safe(&safe(&name), 255);
            assert_safe(&safe_name(&name, 40), 40);
        }

        #[test]
        fn claimed_names_are_distinct(names in proptest::collection::vec(CLASHING_NAME, 1..30)) {
            let mut set = NameSet::new();
            let mut seen = HashSet::new();
            for name in &names {
                let got = set.claim(name, 12);
                assert_safe(&got, 12);
                prop_assert!(seen.insert(fold(&got)), "{got:?} given twice");
            }
        }
    }
}
