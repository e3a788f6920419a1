//! The `config` object: written once by `init`, read first by every command, never changed.
//! Plain JSON in both formats: it holds no secret. Format 1 keeps the chunker seed here and
//! `"encryption": null`; format 2 says how it is encrypted and has no seed (it is derived from
//! the master key, docs/FORMAT.md). Every key file binds the hash of the config's bytes, so a
//! changed config of an encrypted repository is detected when it is opened.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::crypto::{KdfParams, KeyMeta, Password};
use crate::id::RepoId;

/// The format versions this build reads and writes: 1 (unencrypted) and 2 (encrypted).
pub(crate) const VERSIONS: std::ops::RangeInclusive<u32> = 1..=2;
/// The unencrypted format.
pub(crate) const VERSION_PLAIN: u32 = 1;
/// The encrypted format.
pub(crate) const VERSION_ENCRYPTED: u32 = 2;

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
    /// The format version: 1 (unencrypted) or 2 (encrypted).
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
    /// How the repository is encrypted; `null` in version 1 (nothing is encrypted).
    pub encryption: Option<EncryptionConfig>,
}

/// The `encryption` object of a version-2 config. Every value is fixed in version 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// `aes-256-gcm`.
    pub cipher: String,
    /// `blake3-keyed`: blob ids are BLAKE3 keyed with the id key.
    pub ids: String,
    /// `argon2id`: how key files derive their key from a password.
    pub kdf: String,
}

impl EncryptionConfig {
    /// The only encryption of version 2.
    fn v2() -> EncryptionConfig {
        EncryptionConfig {
            cipher: "aes-256-gcm".into(),
            ids: "blake3-keyed".into(),
            kdf: "argon2id".into(),
        }
    }
}

/// Chunker parameters per blob kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerConfig {
    /// XORed into FastCDC's gear table; random per repository. Version 1 only: version 2
    /// derives it from the master key, so it is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
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

/// Whether `init` encrypts the repository.
#[derive(Debug, Clone, Default)]
pub enum InitEncryption {
    /// Format 1: nothing is encrypted (`airback init --insecure-no-password`).
    #[default]
    None,
    /// Format 2: a new master key, wrapped in a first key file with `password`.
    Password {
        /// The password of the first key.
        password: Arc<Password>,
        /// Argon2id parameters of the first key ([`KdfParams::DEFAULT`] outside tests).
        kdf: KdfParams,
        /// Who makes the key, and when.
        meta: KeyMeta,
    },
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
    /// parameters and seed cut identical chunks. Format 1 only: an encrypted repository
    /// derives its seed from its master key and ignores this.
    pub chunker_seed: Option<u64>,
    /// Encrypted (format 2) or not (format 1, the default here; the CLI encrypts unless told
    /// `--insecure-no-password`).
    pub encryption: InitEncryption,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            data_chunker: ChunkerParams::DATA,
            meta_chunker: ChunkerParams::META,
            compression_level: 3,
            pack_size: DEFAULT_PACK_SIZE,
            chunker_seed: None,
            encryption: InitEncryption::None,
        }
    }
}

impl RepoConfig {
    /// A fresh configuration with a random id: version 2 when `encrypted`, else version 1
    /// with a chunker seed.
    pub fn new(options: &InitOptions, encrypted: bool) -> RepoConfig {
        let mut id = [0u8; 32];
        getrandom::fill(&mut id).expect("the OS provides random bytes");
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("the OS provides random bytes");
        RepoConfig {
            format: FORMAT_NAME.to_string(),
            version: if encrypted {
                VERSION_ENCRYPTED
            } else {
                VERSION_PLAIN
            },
            id: RepoId(id),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            chunker: ChunkerConfig {
                seed: (!encrypted)
                    .then(|| options.chunker_seed.unwrap_or(u64::from_le_bytes(seed))),
                data: options.data_chunker,
                meta: options.meta_chunker,
            },
            compression: CompressionConfig {
                algorithm: "zstd".to_string(),
                level: options.compression_level,
            },
            pack_size: options.pack_size,
            encryption: encrypted.then(EncryptionConfig::v2),
        }
    }

    /// Whether the repository is encrypted (version 2).
    pub fn is_encrypted(&self) -> bool {
        self.version == VERSION_ENCRYPTED
    }

    /// Checks that this build can use the repository.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT_NAME {
            return Err(format!("`config` says format `{}`", self.format));
        }
        if !VERSIONS.contains(&self.version) {
            return Err(format!(
                "repository format version {} is not supported by this airback (it reads versions {} to {}); upgrade airback",
                self.version,
                VERSIONS.start(),
                VERSIONS.end()
            ));
        }
        if self.version == VERSION_PLAIN {
            if self.encryption.is_some() {
                return Err(
                    "`config` says format version 1 but has `encryption`; restore it from a copy"
                        .into(),
                );
            }
            if self.chunker.seed.is_none() {
                return Err("`config` says format version 1 but has no `chunker.seed`".into());
            }
        } else {
            match &self.encryption {
                Some(e) if *e == EncryptionConfig::v2() => {}
                Some(e) => {
                    return Err(format!(
                        "unsupported encryption (cipher `{}`, ids `{}`, kdf `{}`); upgrade airback",
                        e.cipher, e.ids, e.kdf
                    ));
                }
                None => {
                    return Err(
                        "`config` says format version 2 but has no `encryption`; restore it from a copy"
                            .into(),
                    );
                }
            }
            if self.chunker.seed.is_some() {
                return Err(
                    "`config` says format version 2 but stores a `chunker.seed`; restore it from a copy"
                        .into(),
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_keeps_its_seed_and_a_null_encryption() {
        let config = RepoConfig::new(&InitOptions::default(), false);
        assert_eq!(config.version, 1);
        assert!(!config.is_encrypted());
        config.validate().unwrap();
        let json: serde_json::Value = serde_json::to_value(&config).unwrap();
        assert!(json["chunker"]["seed"].is_u64());
        assert!(json["encryption"].is_null());
        // A config written before format 2 existed still reads.
        let old = serde_json::json!({
            "format": "airback-repository", "version": 1, "id": config.id,
            "created": "2026-01-01T00:00:00Z",
            "chunker": {"seed": 5, "data": config.chunker.data, "meta": config.chunker.meta},
            "compression": {"algorithm": "zstd", "level": 3},
            "pack_size": 16777216, "encryption": null
        });
        let parsed: RepoConfig = serde_json::from_value(old).unwrap();
        parsed.validate().unwrap();
        assert_eq!(parsed.chunker.seed, Some(5));
    }

    #[test]
    fn version_2_has_encryption_and_no_seed() {
        let options = InitOptions {
            chunker_seed: Some(9),
            ..InitOptions::default()
        };
        let config = RepoConfig::new(&options, true);
        assert_eq!(config.version, 2);
        assert!(config.is_encrypted());
        config.validate().unwrap();
        let json: serde_json::Value = serde_json::to_value(&config).unwrap();
        assert!(json["chunker"].get("seed").is_none());
        assert_eq!(
            json["encryption"],
            serde_json::json!({"cipher": "aes-256-gcm", "ids": "blake3-keyed", "kdf": "argon2id"})
        );
        let back: RepoConfig = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, config);

        let mut with_seed = config.clone();
        with_seed.chunker.seed = Some(1);
        assert!(with_seed.validate().unwrap_err().contains("seed"));
        let mut without = config.clone();
        without.encryption = None;
        assert!(without.validate().unwrap_err().contains("encryption"));
        let mut other = config.clone();
        other.encryption.as_mut().unwrap().cipher = "rot13".into();
        assert!(other.validate().unwrap_err().contains("rot13"));
        let mut v1_with_encryption = config.clone();
        v1_with_encryption.version = 1;
        v1_with_encryption.chunker.seed = Some(1);
        assert!(v1_with_encryption.validate().is_err());
        let mut v3 = config;
        v3.version = 3;
        assert!(v3.validate().unwrap_err().contains("upgrade airback"));
        // Unknown fields in `encryption` are refused.
        let mut unknown = json;
        unknown["encryption"]["mode"] = "x".into();
        assert!(serde_json::from_value::<RepoConfig>(unknown).is_err());
    }
}
