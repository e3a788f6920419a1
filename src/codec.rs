//! Blob encoding: zstd compression of one blob on its own, and its inverse with the hash check.
//! Pure and synchronous: callers run it on the rayon pool, never on an async worker thread.

use crate::id::BlobId;

/// How a blob's stored bytes are encoded. Stored in pack headers and index entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Stored as is (used when zstd would not make the blob smaller).
    None,
    /// One zstd frame.
    Zstd,
}

impl Compression {
    /// The byte used in pack headers.
    pub fn to_byte(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
        }
    }

    /// Inverse of [`Compression::to_byte`].
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// A blob ready to be appended to a pack.
#[derive(Debug, Clone)]
pub struct EncodedBlob {
    /// BLAKE3 of the plaintext.
    pub id: BlobId,
    /// The plaintext length.
    pub raw_length: u32,
    /// How `stored` is encoded.
    pub compression: Compression,
    /// The bytes written into the pack.
    pub stored: Vec<u8>,
}

/// Why stored bytes could not be turned back into the blob they claim to be.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The zstd frame is damaged.
    #[error("zstd frame does not decompress: {0}")]
    Decompress(std::io::Error),
    /// The plaintext is not the expected length.
    #[error("blob decodes to {actual} bytes, the index says {expected}")]
    Length {
        /// From the index or pack header.
        expected: u32,
        /// What came out.
        actual: usize,
    },
    /// The plaintext hash differs from the blob id.
    #[error("blob content hashes to {actual}, not to its id")]
    Hash {
        /// What the content hashes to.
        actual: BlobId,
    },
}

/// Compresses `plain` with zstd at `level`; keeps it uncompressed when that is not smaller.
pub fn encode(id: BlobId, plain: &[u8], level: i32) -> EncodedBlob {
    let raw_length = u32::try_from(plain.len()).expect("blobs are at most a few MiB");
    match zstd::bulk::compress(plain, level) {
        Ok(compressed) if compressed.len() < plain.len() => EncodedBlob {
            id,
            raw_length,
            compression: Compression::Zstd,
            stored: compressed,
        },
        _ => EncodedBlob {
            id,
            raw_length,
            compression: Compression::None,
            stored: plain.to_vec(),
        },
    }
}

/// Hashes and compresses `plain`.
pub fn hash_and_encode(plain: &[u8], level: i32) -> EncodedBlob {
    encode(BlobId::of(plain), plain, level)
}

/// Decodes stored bytes and verifies length and hash against `id`.
pub fn decode(
    id: &BlobId,
    stored: &[u8],
    compression: Compression,
    raw_length: u32,
) -> Result<Vec<u8>, DecodeError> {
    let plain = match compression {
        Compression::None => stored.to_vec(),
        Compression::Zstd => {
            zstd::bulk::decompress(stored, raw_length as usize).map_err(DecodeError::Decompress)?
        }
    };
    if plain.len() != raw_length as usize {
        return Err(DecodeError::Length {
            expected: raw_length,
            actual: plain.len(),
        });
    }
    let actual = BlobId::of(&plain);
    if &actual != id {
        return Err(DecodeError::Hash { actual });
    }
    Ok(plain)
}

/// Encodes a small JSON document the way unpacked repository files are stored:
/// one format byte (`1`) followed by a zstd frame of the JSON.
pub fn encode_json_file<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let json = serde_json::to_vec(value).expect("repository types serialize");
    let mut out = vec![FILE_FORMAT_V1];
    out.extend(zstd::bulk::compress(&json, 3).expect("zstd compresses in memory"));
    out
}

/// Inverse of [`encode_json_file`].
pub fn decode_json_file<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&FILE_FORMAT_V1, rest)) => {
            let json = zstd::stream::decode_all(rest).map_err(|e| format!("zstd: {e}"))?;
            serde_json::from_slice(&json).map_err(|e| format!("json: {e}"))
        }
        Some((b, _)) => Err(format!("unknown file format byte {b}")),
        None => Err("empty file".to_string()),
    }
}

/// The leading byte of unpacked files (index, snapshot) in format version 1.
pub const FILE_FORMAT_V1: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_data_is_stored_raw_and_both_decode() {
        let random: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let text = b"{\"a\":1}\n".repeat(1000);
        for plain in [&random[..], &text[..]] {
            let blob = hash_and_encode(plain, 3);
            let back = decode(&blob.id, &blob.stored, blob.compression, blob.raw_length).unwrap();
            assert_eq!(back, plain);
        }
        assert_eq!(hash_and_encode(&text, 3).compression, Compression::Zstd);
    }

    #[test]
    fn a_flipped_byte_is_detected() {
        let text = b"hello world, hello world, hello world".repeat(10);
        let mut blob = hash_and_encode(&text, 3);
        let last = blob.stored.len() - 1;
        blob.stored[last] ^= 0x40;
        assert!(decode(&blob.id, &blob.stored, blob.compression, blob.raw_length).is_err());
    }
}
