//! Blob encoding: zstd compression of one blob on its own (optionally with a repository
//! dictionary, which small metadata blobs need to compress as well as large ones), and its
//! inverse with the id check; and the encoding of unpacked JSON files (index files,
//! snapshots), sealed in format 2. Pure and synchronous: callers run it on the rayon pool,
//! never on an async worker thread. Blob sealing itself is in `repo::pack`, which calls
//! [`decode`] after opening.

use std::cell::RefCell;
use std::num::NonZeroU32;
use std::sync::Arc;

use crate::crypto::{AuthError, Crypto, ObjectKind};
use crate::id::{BlobId, DictId};

/// How a blob's stored bytes are encoded. Stored in pack headers and index entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Stored as is (used when zstd would not make the blob smaller).
    None,
    /// One zstd frame.
    Zstd,
    /// One zstd frame compressed with a repository dictionary; the frame header carries the
    /// dictionary's zstd id.
    #[serde(rename = "zstd-dict")]
    ZstdDict,
}

impl Compression {
    /// The byte used in pack headers.
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
            Compression::ZstdDict => 2,
        }
    }

    /// Inverse of [`Compression::to_byte`].
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            2 => Some(Compression::ZstdDict),
            _ => None,
        }
    }
}

/// A blob ready to be appended to a pack.
#[derive(Debug, Clone)]
pub(crate) struct EncodedBlob {
    /// The blob id (BLAKE3, or keyed BLAKE3 in format 2, of the plaintext).
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
pub(crate) enum DecodeError {
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
    /// The sealed blob does not open (format 2).
    #[error("{0}")]
    Authentication(#[from] AuthError),
    /// The index entry does not fit the repository's format (a pack salt in format 1, or none
    /// in format 2).
    #[error("{0}")]
    Format(&'static str),
    /// The blob needs a dictionary the repository does not have.
    #[error(
        "blob needs the zstd dictionary with zstd id {0}, which is missing or damaged and has no intact copy"
    )]
    MissingDictionary(u32),
}

/// A zstd dictionary stored in the repository in `dicts/` (and as a copy in a pack).
#[derive(Debug, Clone)]
pub struct Dictionary {
    /// Its blob id (the repository's [`Crypto::blob_id`] of `bytes`). In format 1 it is also
    /// the name of its `dicts/` object.
    pub id: DictId,
    /// The id zstd writes into frames compressed with it.
    pub zstd_id: u32,
    /// The dictionary.
    pub bytes: Arc<Vec<u8>>,
}

impl Dictionary {
    /// Wraps dictionary bytes; `None` if they are not a zstd dictionary with an id.
    pub(crate) fn new(bytes: Vec<u8>, crypto: &Crypto) -> Option<Dictionary> {
        let zstd_id = zstd::zstd_safe::get_dict_id_from_dict(&bytes)?.get();
        Some(Dictionary {
            id: DictId(crypto.blob_id(&bytes).0),
            zstd_id,
            bytes: Arc::new(bytes),
        })
    }
}

/// The repository's dictionaries. Writers compress with the first (smallest id).
#[derive(Debug, Clone, Default)]
pub struct Dictionaries {
    list: Vec<Dictionary>,
}

impl Dictionaries {
    /// A set of dictionaries.
    pub(crate) fn new(mut list: Vec<Dictionary>) -> Self {
        list.sort_by_key(|d| d.id);
        list.dedup_by_key(|d| d.id);
        Dictionaries { list }
    }

    /// The dictionary new metadata blobs are compressed with.
    pub fn for_encoding(&self) -> Option<&Dictionary> {
        self.list.first()
    }

    /// Whether there is none.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// All of them.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Dictionary> {
        self.list.iter()
    }
}

/// Trains a dictionary of at most `size` bytes from sample blobs; `None` when zstd finds too
/// little to learn from.
pub(crate) fn train_dictionary(
    samples: &[&[u8]],
    size: usize,
    crypto: &Crypto,
) -> Option<Dictionary> {
    let bytes = zstd::dict::from_samples(samples, size).ok()?;
    Dictionary::new(bytes, crypto)
}

type CompressorKey = (i32, Option<DictId>);
type DecompressorKey = Option<DictId>;

thread_local! {
    /// One zstd context per (rayon) thread: creating a context, and loading a dictionary into
    /// it, costs more than compressing a 4 KiB blob.
    static COMPRESSOR: RefCell<Option<(CompressorKey, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<(DecompressorKey, zstd::bulk::Decompressor<'static>)>> =
        const { RefCell::new(None) };
}

fn compress(plain: &[u8], level: i32, dict: Option<&Dictionary>) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let key = (level, dict.map(|d| d.id));
        if slot.as_ref().is_none_or(|(k, _)| *k != key) {
            let compressor = match dict {
                Some(d) => zstd::bulk::Compressor::with_dictionary(level, &d.bytes)?,
                None => zstd::bulk::Compressor::new(level)?,
            };
            *slot = Some((key, compressor));
        }
        let (_, compressor) = slot.as_mut().expect("set above");
        compressor.compress(plain)
    })
}

fn decompress(
    stored: &[u8],
    capacity: usize,
    dict: Option<&Dictionary>,
) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let key = dict.map(|d| d.id);
        if slot.as_ref().is_none_or(|(k, _)| *k != key) {
            let decompressor = match dict {
                Some(d) => zstd::bulk::Decompressor::with_dictionary(&d.bytes)?,
                None => zstd::bulk::Decompressor::new()?,
            };
            *slot = Some((key, decompressor));
        }
        let (_, decompressor) = slot.as_mut().expect("set above");
        decompressor.decompress(stored, capacity)
    })
}

/// Compresses `plain` with zstd at `level` (with `dict` when given); keeps it uncompressed when
/// that is not smaller.
pub(crate) fn encode(
    id: BlobId,
    plain: &[u8],
    level: i32,
    dict: Option<&Dictionary>,
) -> EncodedBlob {
    let raw_length = u32::try_from(plain.len()).expect("blobs are at most a few MiB");
    match compress(plain, level, dict) {
        Ok(compressed) if compressed.len() < plain.len() => EncodedBlob {
            id,
            raw_length,
            compression: if dict.is_some() {
                Compression::ZstdDict
            } else {
                Compression::Zstd
            },
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

/// Hashes and compresses `plain` without a dictionary.
#[cfg(test)]
pub(crate) fn hash_and_encode(plain: &[u8], level: i32) -> EncodedBlob {
    encode(BlobId::of(plain), plain, level, None)
}

/// Decodes stored (opened, in format 2) bytes and verifies length and id against `id`.
pub(crate) fn decode(
    id: &BlobId,
    stored: &[u8],
    compression: Compression,
    raw_length: u32,
    dicts: &Dictionaries,
    crypto: &Crypto,
) -> Result<Vec<u8>, DecodeError> {
    let capacity = raw_length as usize;
    let plain = match compression {
        Compression::None => stored.to_vec(),
        Compression::Zstd => decompress(stored, capacity, None).map_err(DecodeError::Decompress)?,
        Compression::ZstdDict => {
            let zstd_id =
                zstd::zstd_safe::get_dict_id_from_frame(stored).map_or(0, NonZeroU32::get);
            // zstd ids are 32 bits: should two dictionaries share one, the hash decides.
            let mut last = Err(DecodeError::MissingDictionary(zstd_id));
            for dict in dicts.iter().filter(|d| d.zstd_id == zstd_id) {
                last = decompress(stored, capacity, Some(dict))
                    .map_err(DecodeError::Decompress)
                    .and_then(|plain| verify(id, plain, raw_length, crypto));
                if last.is_ok() {
                    break;
                }
            }
            return last;
        }
    };
    verify(id, plain, raw_length, crypto)
}

fn verify(
    id: &BlobId,
    plain: Vec<u8>,
    raw_length: u32,
    crypto: &Crypto,
) -> Result<Vec<u8>, DecodeError> {
    if plain.len() != raw_length as usize {
        return Err(DecodeError::Length {
            expected: raw_length,
            actual: plain.len(),
        });
    }
    let actual = crypto.blob_id(&plain);
    if &actual != id {
        return Err(DecodeError::Hash { actual });
    }
    Ok(plain)
}

/// Encodes a small JSON document the way unpacked repository files (index files, snapshots)
/// are stored: in format 1, one format byte (`1`) followed by a zstd frame of the JSON; in
/// format 2, the zstd frame sealed as an object of `kind` (its envelope's `0x02` replaces the
/// format byte).
pub(crate) fn encode_file<T: serde::Serialize>(
    crypto: &Crypto,
    kind: ObjectKind,
    value: &T,
) -> Vec<u8> {
    let json = serde_json::to_vec(value).expect("repository types serialize");
    let frame = zstd::bulk::compress(&json, 3).expect("zstd compresses in memory");
    if crypto.is_encrypted() {
        return crypto.seal_object(kind, &frame);
    }
    let mut out = vec![FILE_FORMAT_V1];
    out.extend(frame);
    out
}

/// Inverse of [`encode_file`]. The error says what is wrong; in format 2 a changed byte
/// anywhere gives "authentication failed …".
pub(crate) fn decode_file<T: serde::de::DeserializeOwned>(
    crypto: &Crypto,
    kind: ObjectKind,
    bytes: &[u8],
) -> Result<T, String> {
    let frame = if crypto.is_encrypted() {
        crypto.open_object(kind, bytes).map_err(|e| e.to_string())?
    } else {
        match bytes.split_first() {
            Some((&FILE_FORMAT_V1, rest)) => rest.to_vec(),
            Some((b, _)) => return Err(format!("unknown file format byte {b}")),
            None => return Err("empty file".to_string()),
        }
    };
    let json = zstd::stream::decode_all(&frame[..]).map_err(|e| format!("zstd: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("json: {e}"))
}

/// The leading byte of unpacked files (index, snapshot) in format version 1.
pub(crate) const FILE_FORMAT_V1: u8 = 1;

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
            let back = decode(
                &blob.id,
                &blob.stored,
                blob.compression,
                blob.raw_length,
                &Dictionaries::default(),
                &Crypto::None,
            )
            .unwrap();
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
        assert!(
            decode(
                &blob.id,
                &blob.stored,
                blob.compression,
                blob.raw_length,
                &Dictionaries::default(),
                &Crypto::None,
            )
            .is_err()
        );
    }

    #[test]
    fn dictionary_blobs_need_their_dictionary() {
        let lines: Vec<Vec<u8>> = (0..2000)
            .map(|i| format!("{{\"id\":\"rec{i:014}\",\"fields\":{{\"fldName\":\"name {i}\",\"fldN\":{}}}}}\n", i * 7).into_bytes())
            .collect();
        let owned: Vec<Vec<u8>> = lines.chunks(8).map(|c| c.concat()).collect();
        let samples: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let dict = train_dictionary(&samples, 4096, &Crypto::None).expect("enough samples");
        let plain = lines[100..108].concat();
        let blob = encode(BlobId::of(&plain), &plain, 3, Some(&dict));
        assert_eq!(blob.compression, Compression::ZstdDict);
        assert!(blob.stored.len() < hash_and_encode(&plain, 3).stored.len());
        let dicts = Dictionaries::new(vec![dict]);
        assert_eq!(
            decode(
                &blob.id,
                &blob.stored,
                blob.compression,
                blob.raw_length,
                &dicts,
                &Crypto::None,
            )
            .unwrap(),
            plain
        );
        let missing = decode(
            &blob.id,
            &blob.stored,
            blob.compression,
            blob.raw_length,
            &Dictionaries::default(),
            &Crypto::None,
        );
        assert!(matches!(missing, Err(DecodeError::MissingDictionary(_))));
    }

    #[test]
    fn files_round_trip_in_both_formats_and_format_2_is_sealed() {
        let value = serde_json::json!({"canary": "AIRBACK-CANARY", "n": 1});
        let v1 = encode_file(&Crypto::None, ObjectKind::Index, &value);
        assert_eq!(v1[0], FILE_FORMAT_V1);
        let back: serde_json::Value = decode_file(&Crypto::None, ObjectKind::Index, &v1).unwrap();
        assert_eq!(back, value);

        let key = Crypto::Key(std::sync::Arc::new(crate::crypto::MasterKey::generate()));
        let v2 = encode_file(&key, ObjectKind::Snapshot, &value);
        assert_eq!(v2[0], 2);
        let back: serde_json::Value = decode_file(&key, ObjectKind::Snapshot, &v2).unwrap();
        assert_eq!(back, value);
        let wrong_kind = decode_file::<serde_json::Value>(&key, ObjectKind::Index, &v2);
        assert!(wrong_kind.unwrap_err().contains("authentication failed"));
        let mut bad = v2.clone();
        let middle = bad.len() / 2;
        bad[middle] ^= 1;
        let err = decode_file::<serde_json::Value>(&key, ObjectKind::Snapshot, &bad).unwrap_err();
        assert!(err.contains("authentication failed"), "{err}");
    }
}
