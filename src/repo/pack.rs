//! Pack files: many blobs of one kind in one storage object, followed by a header that lists
//! them, so that the index can be rebuilt from the packs alone.
//!
//! Layout: `blob_0 ‖ … ‖ blob_{n-1} ‖ header ‖ header_length (u32 LE) ‖ "ABP1"`.
//! The header is `version (u8 = 1) ‖ kind (u8) ‖ count (u32 LE) ‖ count × entry`, and each entry
//! is `blob id (32 bytes) ‖ compression (u8) ‖ stored length (u32 LE) ‖ raw length (u32 LE)`.
//! Blob offsets follow from the stored lengths. See docs/FORMAT.md.

use serde::{Deserialize, Serialize};

use crate::codec::{Compression, EncodedBlob};
use crate::id::{BlobId, PackId};

/// The last four bytes of every pack.
pub(crate) const PACK_MAGIC: &[u8; 4] = b"ABP1";
/// `header_length` and the magic.
pub(crate) const FOOTER_LEN: usize = 8;
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
    fn to_byte(self) -> u8 {
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
    /// BLAKE3 of the plaintext.
    pub id: BlobId,
    /// Byte offset of the stored bytes in the pack.
    pub offset: u32,
    /// Stored length.
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
}

impl PackBuilder {
    /// An empty pack for `kind`.
    pub(crate) fn new(kind: BlobKind) -> Self {
        PackBuilder {
            kind,
            bytes: Vec::new(),
            blobs: Vec::new(),
        }
    }

    /// An empty pack whose buffer is allocated once for `size` bytes, so that growing to the
    /// target size never doubles it (untouched capacity costs no resident memory).
    pub(crate) fn with_capacity(kind: BlobKind, size: usize) -> Self {
        PackBuilder {
            kind,
            bytes: Vec::with_capacity(size),
            blobs: Vec::new(),
        }
    }

    /// Appends a blob.
    pub(crate) fn add(&mut self, blob: &EncodedBlob) {
        let offset = u32::try_from(self.bytes.len()).expect("packs stay below 4 GiB");
        self.bytes.extend_from_slice(&blob.stored);
        self.blobs.push(PackedBlob {
            id: blob.id,
            offset,
            length: blob.stored.len() as u32,
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

    /// Appends the header and footer and names the pack by its hash.
    pub(crate) fn finish(self) -> FinishedPack {
        let PackBuilder {
            kind,
            mut bytes,
            blobs,
        } = self;
        let header = encode_header(kind, &blobs);
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(PACK_MAGIC);
        FinishedPack {
            id: PackId::of(&bytes),
            kind,
            bytes,
            blobs,
        }
    }
}

fn encode_header(kind: BlobKind, blobs: &[PackedBlob]) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_FIXED + ENTRY_LEN * blobs.len());
    header.push(1);
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

/// Reads the header length from a pack's last [`FOOTER_LEN`] bytes.
pub(crate) fn parse_footer(footer: &[u8], pack_size: u64) -> Result<u32, String> {
    if footer.len() != FOOTER_LEN || &footer[4..] != PACK_MAGIC {
        return Err("no pack footer (the file is truncated or not a pack)".into());
    }
    let len = u32::from_le_bytes(footer[..4].try_into().expect("4 bytes"));
    if u64::from(len) + FOOTER_LEN as u64 > pack_size || (len as usize) < HEADER_FIXED {
        return Err(format!(
            "header length {len} does not fit a pack of {pack_size} bytes"
        ));
    }
    Ok(len)
}

/// Parses a pack header; checks that the blobs exactly fill the space before it.
pub(crate) fn parse_header(
    header: &[u8],
    pack_size: u64,
) -> Result<(BlobKind, Vec<PackedBlob>), String> {
    if header.len() < HEADER_FIXED || header[0] != 1 {
        return Err("unknown pack header version".into());
    }
    let kind = BlobKind::from_byte(header[1]).ok_or("unknown blob kind in pack header")?;
    let count = u32::from_le_bytes(header[2..6].try_into().expect("4 bytes")) as usize;
    if header.len() != HEADER_FIXED + count * ENTRY_LEN {
        return Err(format!(
            "pack header of {} bytes cannot hold {count} entries",
            header.len()
        ));
    }
    let mut blobs = Vec::with_capacity(count);
    let mut offset: u64 = 0;
    for entry in header[HEADER_FIXED..].chunks_exact(ENTRY_LEN) {
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
    let expected = pack_size - header.len() as u64 - FOOTER_LEN as u64;
    if offset != expected {
        return Err(format!(
            "pack header lists {offset} bytes of blobs, the pack holds {expected}"
        ));
    }
    Ok((kind, blobs))
}

/// Parses a whole pack held in memory.
pub(crate) fn parse_pack(bytes: &[u8]) -> Result<(BlobKind, Vec<PackedBlob>), String> {
    let size = bytes.len() as u64;
    if bytes.len() < FOOTER_LEN {
        return Err("too short to be a pack".into());
    }
    let header_len = parse_footer(&bytes[bytes.len() - FOOTER_LEN..], size)? as usize;
    let start = bytes.len() - FOOTER_LEN - header_len;
    parse_header(&bytes[start..bytes.len() - FOOTER_LEN], size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::hash_and_encode;

    #[test]
    fn a_pack_describes_itself() {
        let mut builder = PackBuilder::new(BlobKind::Meta);
        let texts: Vec<Vec<u8>> = (0..5)
            .map(|i| format!("blob {i}").repeat(i + 1).into_bytes())
            .collect();
        for t in &texts {
            builder.add(&hash_and_encode(t, 3));
        }
        let pack = builder.finish();
        assert_eq!(pack.id, PackId::of(&pack.bytes));
        let (kind, blobs) = parse_pack(&pack.bytes).unwrap();
        assert_eq!(kind, BlobKind::Meta);
        assert_eq!(blobs, pack.blobs);
        for (blob, text) in blobs.iter().zip(&texts) {
            let stored = &pack.bytes[blob.offset as usize..(blob.offset + blob.length) as usize];
            let plain = crate::codec::decode(
                &blob.id,
                stored,
                blob.compression,
                blob.raw_length,
                &Default::default(),
            )
            .unwrap();
            assert_eq!(&plain, text);
        }
        let truncated = &pack.bytes[..pack.bytes.len() - 3];
        assert!(parse_pack(truncated).is_err());
    }
}
