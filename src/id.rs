//! Typed 32-byte identifiers. Every object in a repository is named by the BLAKE3 hash of its
//! stored bytes, and every blob by a hash of its plaintext (BLAKE3 in format 1, BLAKE3 keyed
//! with the repository's id key in format 2); these newtypes keep a blob id from being mistaken
//! for a pack id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The error for a string that is not a 64-digit lowercase hex id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an id: expected 64 hexadecimal digits")]
pub struct ParseIdError(pub String);

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The BLAKE3 hash of `bytes`.
            pub fn of(bytes: &[u8]) -> Self {
                Self(*blake3::hash(bytes).as_bytes())
            }

            /// Lowercase hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first `n` hex digits, for display.
            pub fn short(&self) -> String {
                let mut s = self.to_hex();
                s.truncate(8);
                s
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32(s).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

define_id!(
    /// A blob: BLAKE3 (format 1) or keyed BLAKE3 (format 2, `crypto::Crypto::blob_id`) of its
    /// plaintext (uncompressed) bytes. [`BlobId::of`] is the format-1 id.
    BlobId
);
define_id!(
    /// A pack file: BLAKE3 of the whole stored pack.
    PackId
);
define_id!(
    /// An index file: BLAKE3 of the stored file.
    IndexId
);
define_id!(
    /// A snapshot manifest: BLAKE3 of the stored file.
    SnapshotId
);
define_id!(
    /// A repository: 32 random bytes chosen by `init`.
    RepoId
);
define_id!(
    /// A zstd dictionary: its blob id (BLAKE3 of its bytes in format 1, keyed in format 2).
    /// In format 1 it is also the name of its `dicts/` object; in format 2 that object is
    /// named by the hash of its sealed bytes.
    DictId
);
define_id!(
    /// A key file (format 2): BLAKE3 of the stored key file, its name in `keys/`.
    KeyId
);

fn parse_hex32(s: &str) -> Result<[u8; 32], ParseIdError> {
    let mut out = [0u8; 32];
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ParseIdError(s.to_string()));
    }
    hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError(s.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_bad_input() {
        let id = BlobId::of(b"hello");
        assert_eq!(id.to_hex().parse::<BlobId>().unwrap(), id);
        assert_eq!(id.to_hex(), blake3::hash(b"hello").to_hex().as_str());
        assert!("abc".parse::<BlobId>().is_err());
        assert!(id.to_hex().to_uppercase().parse::<BlobId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
    }
}
