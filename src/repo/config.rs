//! The `config` object: written once by `init`, read first by every command. Plain JSON so that
//! a future encrypted format can still keep its key-derivation parameters readable here.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::id::RepoId;

/// The format version this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The marker in `config` that says this is an airback repository.
pub(crate) const FORMAT_NAME: &str = "airback-repository";

/// Default target size of a pack file.
pub(crate) const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;

/// The repository's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// Always `FORMAT_NAME`.
    pub format: String,
    /// The format version, `FORMAT_VERSION`.
    pub version: u32,
    /// Random, chosen by `init`; keys the local cache.
    pub id: RepoId,
    /// When `init` ran (RFC 3339, UTC).
    pub created: String,
    /// Content-defined chunking parameters.
    pub chunker: ChunkerConfig,
    /// How blobs are compressed.
    pub compression: CompressionConfig,
    /// Target size of a pack file in bytes.
    pub pack_size: u32,
    /// Reserved for encryption parameters; `null` in version 1 (blobs are not encrypted).
    pub encryption: Option<serde_json::Value>,
}

/// Chunker parameters per blob kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerConfig {
    /// XORed into FastCDC's gear table; random per repository.
    pub seed: u64,
    /// For file data (attachments).
    pub data: ChunkerParams,
    /// For metadata (table JSON lines, schema, trees).
    pub meta: ChunkerParams,
}

/// Compression settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    /// Always `zstd` in version 1.
    pub algorithm: String,
    /// zstd level, 1 to 19.
    pub level: i32,
}

/// What `init` may choose.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Chunk sizes for attachments.
    pub data_chunker: ChunkerParams,
    /// Chunk sizes for metadata.
    pub meta_chunker: ChunkerParams,
    /// zstd level.
    pub compression_level: i32,
    /// Pack target size in bytes.
    pub pack_size: u32,
    /// The chunker's gear seed; random when `None`. Two repositories with the same chunker
    /// parameters and seed cut identical chunks.
    pub chunker_seed: Option<u64>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            data_chunker: ChunkerParams::DATA,
            meta_chunker: ChunkerParams::META,
            compression_level: 3,
            pack_size: DEFAULT_PACK_SIZE,
            chunker_seed: None,
        }
    }
}

impl RepoConfig {
    /// A fresh configuration with a random id and chunker seed.
    pub fn new(options: &InitOptions) -> RepoConfig {
        let mut id = [0u8; 32];
        getrandom::fill(&mut id).expect("the OS provides random bytes");
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("the OS provides random bytes");
        RepoConfig {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            id: RepoId(id),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            chunker: ChunkerConfig {
                seed: options.chunker_seed.unwrap_or(u64::from_le_bytes(seed)),
                data: options.data_chunker,
                meta: options.meta_chunker,
            },
            compression: CompressionConfig {
                algorithm: "zstd".to_string(),
                level: options.compression_level,
            },
            pack_size: options.pack_size,
            encryption: None,
        }
    }

    /// Checks that this build can use the repository.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT_NAME {
            return Err(format!("`config` says format `{}`", self.format));
        }
        if self.version != FORMAT_VERSION {
            return Err(format!(
                "repository format version {} is not supported by this airback (it reads version {FORMAT_VERSION}); upgrade airback",
                self.version
            ));
        }
        if self.encryption.is_some() {
            return Err(
                "the repository is encrypted, which this airback does not support; upgrade airback"
                    .into(),
            );
        }
        if self.compression.algorithm != "zstd" || !(1..=19).contains(&self.compression.level) {
            return Err(format!(
                "unsupported compression `{}` level {}",
                self.compression.algorithm, self.compression.level
            ));
        }
        if !(1024 * 1024..=512 * 1024 * 1024).contains(&self.pack_size) {
            return Err(format!(
                "pack size {} is outside 1 MiB to 512 MiB",
                self.pack_size
            ));
        }
        self.chunker.data.validate()?;
        self.chunker.meta.validate()
    }
}
