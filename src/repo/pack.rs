//! Pack files: many blobs of one kind in one storage object, followed by a header that lists
//! them, so that the index can be rebuilt from the packs alone.
//!
//! Layout, format 1: `blob_0 ‖ … ‖ blob_{n-1} ‖ header ‖ header_length (u32 LE) ‖ "ABP1"`.
//! The header is `version (u8 = 1) ‖ kind (u8) ‖ count (u32 LE) ‖ count × entry`, and each entry
//! is `blob id (32 bytes) ‖ compression (u8) ‖ stored length (u32 LE) ‖ raw length (u32 LE)`.
//! Blob offsets follow from the stored lengths.
//!
//! Format 2 seals each blob on its own (`ciphertext ‖ tag`, the stored length includes the
//! tag) with the pack key and a nonce made from its offset, and seals the header (version byte
//! 2): `sealed blobs ‖ sealed header ‖ salt (16) ‖ header_length (u32 LE) ‖ "ABP2"`. See
//! docs/FORMAT.md. [`open_and_decode`] is the one place where stored blob bytes become
//! plaintext.

use serde::{Deserialize, Serialize};

use crate::codec::{self, Compression, DecodeError, Dictionaries, EncodedBlob};
use crate::crypto::{AuthError, BlobAd, Crypto, PackSealer, SALT_LEN, Salt, TAG_LEN};
use crate::id::{BlobId, PackId};

/// The last four bytes of every format-1 pack.
pub(crate) const PACK_MAGIC: &[u8; 4] = b"ABP1";
/// The last four bytes of every format-2 pack.
pub(crate) const PACK_MAGIC_V2: &[u8; 4] = b"ABP2";
/// `header_length` and the magic (format 1).
pub(crate) const FOOTER_LEN: usize = 8;
/// Salt, `header_length` and the magic (format 2).
pub(crate) const FOOTER_LEN_V2: usize = SALT_LEN + 8;
const ENTRY_LEN: usize = 32 + 1 + 4 + 4;
const HEADER_FIXED: usize = 1 + 1 + 4;

/// The two kinds of blob, kept in separate packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    /// File data: attachment content.
    Data,
    /// Metadata: table JSON lines, schemas, trees. Small and cacheable.
    Meta,
}

impl BlobKind {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Meta => 1,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Meta),
            _ => None,
        }
    }

    /// `data` or `meta`.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobKind::Data => "data",
            BlobKind::Meta => "meta",
        }
    }
}

/// One blob's place in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedBlob {
    /// The blob id.
    pub id: BlobId,
    /// Byte offset of the stored bytes in the pack.
    pub offset: u32,
    /// Stored length (in format 2 with its 16-byte tag).
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
    /// Encoding of the stored bytes.
    pub compression: Compression,
}

/// The storage path of a pack.
pub fn pack_path(id: &PackId) -> String {
    let hex = id.to_hex();
    format!("data/{}/{hex}", &hex[..2])
}

/// Accumulates blobs of one kind into a pack.
#[derive(Debug)]
pub(crate) struct PackBuilder {
    kind: BlobKind,
    bytes: Vec<u8>,
    blobs: Vec<PackedBlob>,
    /// Format 2: seals the blobs and header when the pack is finished.
    sealer: Option<PackSealer>,
}

/// A finished pack, ready to upload.
#[derive(Debug)]
pub(crate) struct FinishedPack {
    /// BLAKE3 of `bytes`.
    pub id: PackId,
    /// The blob kind.
    pub kind: BlobKind,
    /// The whole object.
    pub bytes: Vec<u8>,
    /// What it holds.
    pub blobs: Vec<PackedBlob>,
    /// Its salt (format 2).
    pub salt: Option<Salt>,
}

impl PackBuilder {
    /// An empty pack for `kind`, sealed when `crypto` has a key.
    pub(crate) fn new(kind: BlobKind, crypto: &Crypto) -> Self {
        Self::with_capacity(kind, 0, crypto)
    }

    /// An empty pack whose buffer is allocated once for `size` bytes, so that growing to the
    /// target size never doubles it (untouched capacity costs no resident memory).
    pub(crate) fn with_capacity(kind: BlobKind, size: usize, crypto: &Crypto) -> Self {
        PackBuilder {
            kind,
            bytes: Vec::with_capacity(size),
            blobs: Vec::new(),
            sealer: crypto.pack_sealer(),
        }
    }

    /// Appends a blob (in format 2 followed by room for its tag, filled by `finish`).
    pub(crate) fn add(&mut self, blob: &EncodedBlob) {
        let offset = u32::try_from(self.bytes.len()).expect("packs stay below 4 GiB");
        self.bytes.extend_from_slice(&blob.stored);
        let tag = if self.sealer.is_some() { TAG_LEN } else { 0 };
        self.bytes.extend_from_slice(&[0; TAG_LEN][..tag]);
        self.blobs.push(PackedBlob {
            id: blob.id,
            offset,
            length: (blob.stored.len() + tag) as u32,
            raw_length: blob.raw_length,
            compression: blob.compression,
        });
    }

    /// Bytes of blob data so far.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether no blob was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Number of blobs so far.
    pub(crate) fn count(&self) -> usize {
        self.blobs.len()
    }

    /// Appends the header and footer (in format 2 after sealing every blob in place and the
    /// header) and names the pack by its hash. Consumes the builder: a pack is sealed once.
    pub(crate) fn finish(self) -> FinishedPack {
        let PackBuilder {
            kind,
            mut bytes,
            blobs,
            sealer,
        } = self;
        let Some(sealer) = sealer else {
            let header = encode_header(1, kind, &blobs);
            bytes.extend_from_slice(&header);
            bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
            bytes.extend_from_slice(PACK_MAGIC);
            return FinishedPack {
                id: PackId::of(&bytes),
                kind,
                bytes,
                blobs,
                salt: None,
            };
        };
        for b in &blobs {
            let start = b.offset as usize;
            let end = start + b.length as usize - TAG_LEN;
            let tag = sealer.seal_blob(b.offset, &blob_ad(kind, b), &mut bytes[start..end]);
            bytes[end..end + TAG_LEN].copy_from_slice(&tag);
        }
        let header = sealer.seal_header(&encode_header(2, kind, &blobs));
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&sealer.salt());
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(PACK_MAGIC_V2);
        FinishedPack {
            id: PackId::of(&bytes),
            kind,
            bytes,
            blobs,
            salt: Some(sealer.salt()),
        }
    }
}

/// The associated data of a sealed blob: its index entry.
fn blob_ad(kind: BlobKind, b: &PackedBlob) -> BlobAd<'_> {
    BlobAd {
        kind: kind.to_byte(),
        compression: b.compression.to_byte(),
        raw_length: b.raw_length,
        id: &b.id,
    }
}

fn encode_header(version: u8, kind: BlobKind, blobs: &[PackedBlob]) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_FIXED + ENTRY_LEN * blobs.len());
    header.push(version);
    header.push(kind.to_byte());
    header.extend_from_slice(&(blobs.len() as u32).to_le_bytes());
    for blob in blobs {
        header.extend_from_slice(&blob.id.0);
        header.push(blob.compression.to_byte());
        header.extend_from_slice(&blob.length.to_le_bytes());
        header.extend_from_slice(&blob.raw_length.to_le_bytes());
    }
    header
}

/// A pack's footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    /// The pack's salt (format 2).
    pub salt: Option<Salt>,
    /// Length of the (sealed, in format 2) header.
    pub header_len: u32,
}

impl Footer {
    /// The footer's length.
    pub(crate) fn len(&self) -> usize {
        if self.salt.is_some() {
            FOOTER_LEN_V2
        } else {
            FOOTER_LEN
        }
    }
}

/// Reads a pack's footer from its last bytes (`tail`, at least [`FOOTER_LEN`] of them; the
/// magic says which format, and format 2 needs [`FOOTER_LEN_V2`]).
pub(crate) fn parse_footer(tail: &[u8], pack_size: u64) -> Result<Footer, String> {
    let no_footer = || "no pack footer (the file is truncated or not a pack)".to_string();
    if tail.len() < FOOTER_LEN {
        return Err(no_footer());
    }
    let magic = &tail[tail.len() - 4..];
    let len_at = tail.len() - 8;
    let header_len = u32::from_le_bytes(tail[len_at..len_at + 4].try_into().expect("4 bytes"));
    let footer = if magic == PACK_MAGIC {
        Footer {
            salt: None,
            header_len,
        }
    } else if magic == PACK_MAGIC_V2 && tail.len() >= FOOTER_LEN_V2 {
        Footer {
            salt: Some(
                tail[len_at - SALT_LEN..len_at]
                    .try_into()
                    .expect("16 bytes"),
            ),
            header_len,
        }
    } else {
        return Err(no_footer());
    };
    let min_header = HEADER_FIXED + if footer.salt.is_some() { TAG_LEN } else { 0 };
    if u64::from(header_len) + footer.len() as u64 > pack_size || (header_len as usize) < min_header
    {
        return Err(format!(
            "header length {header_len} does not fit a pack of {pack_size} bytes"
        ));
    }
    Ok(footer)
}

/// Checks that the pack's format is the repository's: a sealed pack needs a key, and an
/// encrypted repository accepts only sealed packs.
fn check_format(footer: &Footer, crypto: &Crypto) -> Result<(), String> {
    match (footer.salt.is_some(), crypto.is_encrypted()) {
        (true, false) => Err("an encrypted (format 2) pack in an unencrypted repository".into()),
        (false, true) => {
            Err("authentication failed (an unencrypted pack in an encrypted repository)".into())
        }
        _ => Ok(()),
    }
}

/// Opens (format 2) and parses a pack header; checks that the blobs exactly fill the space
/// before it. `header` is the stored header, sealed in format 2.
pub(crate) fn parse_header(
    header: &[u8],
    footer: &Footer,
    pack_size: u64,
    crypto: &Crypto,
) -> Result<(BlobKind, Vec<PackedBlob>), String> {
    check_format(footer, crypto)?;
    let opened;
    let (plain, version) = match &footer.salt {
        Some(salt) => {
            let opener = crypto.pack_opener(salt).expect("checked: a key");
            opened = opener
                .open_header(header)
                .map_err(|e| format!("pack header: {e}"))?;
            (&opened[..], 2)
        }
        None => (header, 1),
    };
    if plain.len() < HEADER_FIXED || plain[0] != version {
        return Err("unknown pack header version".into());
    }
    let kind = BlobKind::from_byte(plain[1]).ok_or("unknown blob kind in pack header")?;
    let count = u32::from_le_bytes(plain[2..6].try_into().expect("4 bytes")) as usize;
    if plain.len() != HEADER_FIXED + count * ENTRY_LEN {
        return Err(format!(
            "pack header of {} bytes cannot hold {count} entries",
            plain.len()
        ));
    }
    let mut blobs = Vec::with_capacity(count);
    let mut offset: u64 = 0;
    for entry in plain[HEADER_FIXED..].chunks_exact(ENTRY_LEN) {
        let id = BlobId(entry[..32].try_into().expect("32 bytes"));
        let compression =
            Compression::from_byte(entry[32]).ok_or("unknown compression in pack header")?;
        let length = u32::from_le_bytes(entry[33..37].try_into().expect("4 bytes"));
        let raw_length = u32::from_le_bytes(entry[37..41].try_into().expect("4 bytes"));
        blobs.push(PackedBlob {
            id,
            offset: offset as u32,
            length,
            raw_length,
            compression,
        });
        offset += u64::from(length);
    }
    let expected = pack_size - header.len() as u64 - footer.len() as u64;
    if offset != expected {
        return Err(format!(
            "pack header lists {offset} bytes of blobs, the pack holds {expected}"
        ));
    }
    Ok((kind, blobs))
}

/// A whole pack held in memory, parsed: its kind, blobs and salt.
pub(crate) type ParsedPack = (BlobKind, Vec<PackedBlob>, Option<Salt>);

/// Parses a whole pack held in memory (opening its header in format 2).
pub(crate) fn parse_pack(bytes: &[u8], crypto: &Crypto) -> Result<ParsedPack, String> {
    let size = bytes.len() as u64;
    let tail = &bytes[bytes.len().saturating_sub(FOOTER_LEN_V2)..];
    let footer = parse_footer(tail, size)?;
    let end = bytes.len() - footer.len();
    let start = end - footer.header_len as usize;
    let (kind, blobs) = parse_header(&bytes[start..end], &footer, size, crypto)?;
    Ok((kind, blobs, footer.salt))
}

/// Turns a blob's stored bytes into its plaintext: opens them (format 2, with the pack's
/// `salt` and the entry as associated data), decompresses, and checks length and id. A blob
/// that fails any step is never returned.
pub(crate) fn open_and_decode(
    crypto: &Crypto,
    salt: Option<&Salt>,
    kind: BlobKind,
    entry: &PackedBlob,
    stored: &[u8],
    dicts: &Dictionaries,
) -> Result<Vec<u8>, DecodeError> {
    let encoded = open_blob(crypto, salt, kind, entry, stored)?;
    codec::decode(
        &entry.id,
        &encoded,
        entry.compression,
        entry.raw_length,
        dicts,
        crypto,
    )
}

/// A blob's stored bytes opened (format 2) but still compressed, after checking that they
/// decode to the blob: what `prune` moves into a new pack without compressing it again.
pub(crate) fn open_verified(
    crypto: &Crypto,
    salt: Option<&Salt>,
    kind: BlobKind,
    entry: &PackedBlob,
    stored: &[u8],
    dicts: &Dictionaries,
) -> Result<EncodedBlob, DecodeError> {
    open_decoded(crypto, salt, kind, entry, stored, dicts).map(|(blob, _)| blob)
}

/// [`open_verified`] that also returns the plaintext: what `copy` needs to compute the blob's
/// id in another repository while moving its encoded form.
pub(crate) fn open_decoded(
    crypto: &Crypto,
    salt: Option<&Salt>,
    kind: BlobKind,
    entry: &PackedBlob,
    stored: &[u8],
    dicts: &Dictionaries,
) -> Result<(EncodedBlob, Vec<u8>), DecodeError> {
    let encoded = open_blob(crypto, salt, kind, entry, stored)?;
    let plain = codec::decode(
        &entry.id,
        &encoded,
        entry.compression,
        entry.raw_length,
        dicts,
        crypto,
    )?;
    let blob = EncodedBlob {
        id: entry.id,
        raw_length: entry.raw_length,
        compression: entry.compression,
        stored: encoded.into_owned(),
    };
    Ok((blob, plain))
}

/// Opens a blob's stored bytes: format 2 authenticates and decrypts them with the pack's
/// `salt` and the entry as associated data; format 1 stores them as they are.
fn open_blob<'a>(
    crypto: &Crypto,
    salt: Option<&Salt>,
    kind: BlobKind,
    entry: &PackedBlob,
    stored: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
    match (crypto.is_encrypted(), salt) {
        (false, None) => Ok(std::borrow::Cow::Borrowed(stored)),
        (true, Some(salt)) => {
            let opener = crypto.pack_opener(salt).expect("a key");
            Ok(std::borrow::Cow::Owned(opener.open_blob(
                entry.offset,
                &blob_ad(kind, entry),
                stored,
            )?))
        }
        (true, None) => Err(DecodeError::Authentication(AuthError)),
        (false, Some(_)) => Err(DecodeError::Format(
            "the index gives a pack salt in an unencrypted repository",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::MasterKey;

    fn texts() -> Vec<Vec<u8>> {
        (0..5)
            .map(|i| format!("blob {i}").repeat(i + 1).into_bytes())
            .collect()
    }

    fn build(crypto: &Crypto, texts: &[Vec<u8>]) -> FinishedPack {
        let mut builder = PackBuilder::new(BlobKind::Meta, crypto);
        for t in texts {
            builder.add(&codec::encode(crypto.blob_id(t), t, 3, None));
        }
        builder.finish()
    }

    fn read_all(crypto: &Crypto, pack: &FinishedPack) -> Vec<Result<Vec<u8>, DecodeError>> {
        let (_, blobs, salt) = parse_pack(&pack.bytes, crypto).unwrap();
        blobs
            .iter()
            .map(|b| {
                let stored = &pack.bytes[b.offset as usize..(b.offset + b.length) as usize];
                open_and_decode(
                    crypto,
                    salt.as_ref(),
                    BlobKind::Meta,
                    b,
                    stored,
                    &Dictionaries::default(),
                )
            })
            .collect()
    }

    #[test]
    fn a_pack_describes_itself() {
        let texts = texts();
        let pack = build(&Crypto::None, &texts);
        assert_eq!(pack.id, PackId::of(&pack.bytes));
        assert_eq!(&pack.bytes[pack.bytes.len() - 4..], PACK_MAGIC);
        let (kind, blobs, salt) = parse_pack(&pack.bytes, &Crypto::None).unwrap();
        assert_eq!(kind, BlobKind::Meta);
        assert_eq!(blobs, pack.blobs);
        assert_eq!(salt, None);
        for (plain, text) in read_all(&Crypto::None, &pack).into_iter().zip(&texts) {
            assert_eq!(&plain.unwrap(), text);
        }
        let truncated = &pack.bytes[..pack.bytes.len() - 3];
        assert!(parse_pack(truncated, &Crypto::None).is_err());
    }

    #[test]
    fn a_sealed_pack_round_trips_and_hides_its_content() {
        let crypto = Crypto::Key(Arc::new(MasterKey::generate()));
        let texts = texts();
        let pack = build(&crypto, &texts);
        assert_eq!(&pack.bytes[pack.bytes.len() - 4..], PACK_MAGIC_V2);
        let (kind, blobs, salt) = parse_pack(&pack.bytes, &crypto).unwrap();
        assert_eq!(kind, BlobKind::Meta);
        assert_eq!(blobs, pack.blobs);
        assert_eq!(salt, pack.salt);
        for (plain, text) in read_all(&crypto, &pack).into_iter().zip(&texts) {
            assert_eq!(&plain.unwrap(), text);
        }
        // The tag is part of each stored length.
        let v1 = build(&Crypto::None, &texts);
        let plain_total: u32 = v1.blobs.iter().map(|b| b.length).sum();
        let sealed_total: u32 = pack.blobs.iter().map(|b| b.length).sum();
        assert_eq!(sealed_total, plain_total + 16 * texts.len() as u32);
        // Nothing of the plaintext or the ids shows.
        let bytes = &pack.bytes;
        assert!(!bytes.windows(6).any(|w| w == b"blob 4"));
        assert!(!bytes.windows(32).any(|w| w == pack.blobs[0].id.0));
        // Another repository, or no key, cannot read it.
        let other = Crypto::Key(Arc::new(MasterKey::generate()));
        assert!(parse_pack(&pack.bytes, &other).is_err());
        assert!(parse_pack(&pack.bytes, &Crypto::None).is_err());
        assert!(parse_pack(&v1.bytes, &crypto).is_err());
    }

    #[test]
    fn a_flipped_byte_of_a_sealed_pack_never_gives_wrong_data() {
        let crypto = Crypto::Key(Arc::new(MasterKey::generate()));
        let texts = texts();
        let pack = build(&crypto, &texts);
        let blob_end = pack
            .blobs
            .last()
            .map_or(0, |b| (b.offset + b.length) as usize);
        for i in 0..pack.bytes.len() {
            let mut bad = FinishedPack {
                id: pack.id,
                kind: pack.kind,
                bytes: pack.bytes.clone(),
                blobs: pack.blobs.clone(),
                salt: pack.salt,
            };
            bad.bytes[i] ^= 0x20;
            if i < blob_end {
                // The header still opens; exactly the blob holding byte i fails.
                let results = read_all(&crypto, &bad);
                for (b, (result, text)) in pack.blobs.iter().zip(results.iter().zip(&texts)) {
                    let inside = (b.offset as usize..(b.offset + b.length) as usize).contains(&i);
                    match result {
                        Ok(plain) => {
                            assert!(!inside, "byte {i}");
                            assert_eq!(plain, text);
                        }
                        Err(e) => {
                            assert!(inside, "byte {i}: {e}");
                            assert!(matches!(e, DecodeError::Authentication(_)), "byte {i}");
                        }
                    }
                }
            } else {
                // Header, salt, length or magic: the header no longer opens or parses.
                assert!(parse_pack(&bad.bytes, &crypto).is_err(), "byte {i}");
            }
        }
    }
}
