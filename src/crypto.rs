//! Client-side encryption of repository format 2 (docs/FORMAT.md, "Version 2"): the master key,
//! the key files that wrap it with a password, and the sealing of objects, packs and blobs.
//!
//! Pure and synchronous: no I/O, no environment, no clock (callers pass times in). Argon2id in
//! [`wrap`] and [`unwrap`] costs about half a second of CPU and [`KdfParams::memory_kib`] of
//! memory at the defaults, so async callers run them on `spawn_blocking`.
//!
//! Keys: the master key is an encryption key and an id key (32 random bytes each). The
//! encryption key is only ever a BLAKE3 key: every sealed object and every pack gets its own
//! AES-256-GCM key, `K(enc, "airback/2/object-key" ‖ salt)` with a fresh 16-byte salt, and its
//! nonces are positions inside it (a blob's offset in its pack, `FF×12` for a pack header,
//! `00×12` for a whole object), so no (key, nonce) pair is used twice. The id key makes blob
//! ids (`K(ids, plaintext)`). [`Crypto::None`] is format 1: ids are plain BLAKE3 and nothing
//! is sealed.
//!
//! Secrets are wiped when dropped ([`Password`], [`MasterKey`], the derived keys and the
//! Argon2 work area), and no `Debug` output shows their bytes.

use std::fmt;
use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::id::{BlobId, RepoId};

/// The first byte of a sealed object (index file, snapshot, dictionary, lock) in format 2.
pub(crate) const OBJECT_VERSION: u8 = 0x02;
/// Salt length of a sealed object or pack.
pub const SALT_LEN: usize = 16;
/// The AES-GCM tag length: what sealing adds to each blob.
pub const TAG_LEN: usize = 16;
/// What sealing adds to an object: version byte, salt and tag.
pub(crate) const OBJECT_OVERHEAD: usize = 1 + SALT_LEN + TAG_LEN;

const LABEL_OBJECT_KEY: &[u8] = b"airback/2/object-key";
const LABEL_MAC_KEY: &[u8] = b"airback/2/key-file-mac";
const LABEL_CHUNKER_SEED: &[u8] = b"airback/2/chunker-seed";
const LABEL_BLOB: &[u8] = b"airback/2/blob";
const LABEL_PACK_HEADER: &[u8] = b"airback/2/pack-header";
const LABEL_KEY_FILE: &[u8] = b"airback/2/key-file";

/// Key-file payload: version byte, encryption key, id key, repository id, config hash.
const PAYLOAD_LEN: usize = 1 + 32 + 32 + 32 + 32;
const KDF_SALT_LEN: usize = 32;
const KEY_NONCE_LEN: usize = 12;

/// A pack's or object's salt.
pub type Salt = [u8; SALT_LEN];

/// A password, wiped from memory when dropped. `Debug` prints `Password(***)`; it has no
/// `Clone`, `Display` or `Serialize`, so it cannot end up in output by accident.
pub struct Password(SecretBox<[u8]>);

impl Password {
    /// Takes ownership of the password's bytes (the box is wiped when the password drops).
    pub fn new(bytes: Box<[u8]>) -> Password {
        Password(SecretBox::new(bytes))
    }

    /// The password's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// Whether it is empty (which `init` and the key commands refuse).
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl From<SecretBox<[u8]>> for Password {
    fn from(secret: SecretBox<[u8]>) -> Password {
        Password(secret)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// The repository's master key: an encryption key and an id key, 32 random bytes each, made
/// once by `init` and stored only wrapped in key files. Wiped when dropped; `Debug` prints
/// `MasterKey(..)`; no `Clone` (share it in an `Arc`).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    enc: [u8; 32],
    ids: [u8; 32],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> MasterKey {
        let mut key = MasterKey {
            enc: [0; 32],
            ids: [0; 32],
        };
        getrandom::fill(&mut key.enc).expect("the OS provides random bytes");
        getrandom::fill(&mut key.ids).expect("the OS provides random bytes");
        key
    }

    /// The key that authenticates key files (their `mac`).
    pub fn mac_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*blake3::keyed_hash(&self.enc, LABEL_MAC_KEY).as_bytes())
    }

    /// The AES key of the object or pack with `salt`.
    fn object_key(&self, salt: &Salt) -> Zeroizing<[u8; 32]> {
        let mut input = [0u8; LABEL_OBJECT_KEY.len() + SALT_LEN];
        input[..LABEL_OBJECT_KEY.len()].copy_from_slice(LABEL_OBJECT_KEY);
        input[LABEL_OBJECT_KEY.len()..].copy_from_slice(salt);
        Zeroizing::new(*blake3::keyed_hash(&self.enc, &input).as_bytes())
    }

    fn cipher(&self, salt: &Salt) -> Aes256Gcm {
        let key = self.object_key(salt);
        aes_key(&key)
    }
}

/// Argon2id parameters of a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB (`m`).
    pub memory_kib: u32,
    /// Passes (`t`).
    pub iterations: u32,
    /// Lanes (`p`).
    pub parallelism: u32,
}

impl KdfParams {
    /// The defaults for new keys: 64 MiB, 8 passes, 1 lane (about half a second on the
    /// 2-core machine of docs/BENCHMARKS.md). 64 MiB rather than more: the derivation's
    /// memory is the peak of a whole snapshot run (docs/BENCHMARKS.md, "Encrypted").
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 65_536,
        iterations: 8,
        parallelism: 1,
    };
    /// Cheap parameters for tests only (1 MiB, 1 pass): they protect nothing.
    pub const FOR_TESTS: KdfParams = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
    /// Readers refuse a key file that asks for more memory than this (4 GiB), so that a
    /// planted key file cannot make opening take all the machine's memory.
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// Readers refuse more passes than this.
    pub const MAX_ITERATIONS: u32 = 64;
    /// Readers refuse more lanes than this.
    pub const MAX_PARALLELISM: u32 = 16;

    /// Checks the caps above and Argon2's own minimums; the error says which value is wrong.
    pub fn check_caps(&self) -> Result<(), String> {
        if !(1..=Self::MAX_PARALLELISM).contains(&self.parallelism) {
            return Err(format!(
                "argon2 parallelism {} is outside 1 to {}",
                self.parallelism,
                Self::MAX_PARALLELISM
            ));
        }
        if !(1..=Self::MAX_ITERATIONS).contains(&self.iterations) {
            return Err(format!(
                "argon2 iterations {} is outside 1 to {}",
                self.iterations,
                Self::MAX_ITERATIONS
            ));
        }
        let min_memory = 8 * self.parallelism;
        if !(min_memory..=Self::MAX_MEMORY_KIB).contains(&self.memory_kib) {
            return Err(format!(
                "argon2 memory {} KiB is outside {min_memory} KiB to {} KiB",
                self.memory_kib,
                Self::MAX_MEMORY_KIB
            ));
        }
        Ok(())
    }
}

/// The kinds of sealed object. The kind is the associated data, so an object of one kind
/// served in place of another fails to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `index/<id>`.
    Index,
    /// `snapshots/<id>`.
    Snapshot,
    /// `dicts/<name>`.
    Dictionary,
    /// `locks/<name>`.
    Lock,
}

impl ObjectKind {
    /// `index`, `snapshot`, `dictionary` or `lock`: the label in the associated data.
    pub fn label(self) -> &'static str {
        match self {
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Dictionary => "dictionary",
            ObjectKind::Lock => "lock",
        }
    }

    fn ad(self) -> Vec<u8> {
        let mut ad = b"airback/2/".to_vec();
        ad.extend_from_slice(self.label().as_bytes());
        ad
    }
}

/// What a sealed blob's associated data binds: its kind, encoding, plaintext length and id.
#[derive(Debug, Clone, Copy)]
pub struct BlobAd<'a> {
    /// 0 for data, 1 for meta.
    pub kind: u8,
    /// The compression byte of the pack header.
    pub compression: u8,
    /// The plaintext length.
    pub raw_length: u32,
    /// The blob id.
    pub id: &'a BlobId,
}

impl BlobAd<'_> {
    /// `"airback/2/blob" ‖ 0x00 ‖ kind ‖ compression ‖ u32(raw_length) ‖ id`.
    fn bytes(&self) -> [u8; 14 + 1 + 1 + 1 + 4 + 32] {
        let mut ad = [0u8; 14 + 1 + 1 + 1 + 4 + 32];
        ad[..14].copy_from_slice(LABEL_BLOB);
        ad[14] = 0;
        ad[15] = self.kind;
        ad[16] = self.compression;
        ad[17..21].copy_from_slice(&self.raw_length.to_le_bytes());
        ad[21..].copy_from_slice(&self.id.0);
        ad
    }
}

/// Opening failed: the bytes were changed, or were not sealed with this repository's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "authentication failed (the bytes were changed, or were not written with this repository's key)"
)]
pub struct AuthError;

/// The nonce of the blob at `offset` of a pack: `u32(offset) ‖ 00×8`.
fn blob_nonce(offset: u32) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&offset.to_le_bytes());
    nonce
}

fn nonce_of(bytes: &[u8; 12]) -> Nonce<Aes256Gcm> {
    (*bytes).into()
}

fn aes_key(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new_from_slice(key).expect("32-byte keys")
}

const HEADER_NONCE: [u8; 12] = [0xFF; 12];
const OBJECT_NONCE: [u8; 12] = [0; 12];

fn random_salt() -> Salt {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).expect("the OS provides random bytes");
    salt
}

fn seal(cipher: &Aes256Gcm, nonce: &[u8; 12], ad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain.len() + TAG_LEN);
    out.extend_from_slice(plain);
    let tag = cipher
        .encrypt_inout_detached(&nonce_of(nonce), ad, out.as_mut_slice().into())
        .expect("messages stay far below AES-GCM's limit");
    out.extend_from_slice(&tag);
    out
}

fn open(
    cipher: &Aes256Gcm,
    nonce: &[u8; 12],
    ad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, AuthError> {
    let len = sealed.len().checked_sub(TAG_LEN).ok_or(AuthError)?;
    let (ciphertext, tag) = sealed.split_at(len);
    let mut out = ciphertext.to_vec();
    cipher
        .decrypt_inout_detached(
            &nonce_of(nonce),
            ad,
            out.as_mut_slice().into(),
            tag.try_into().map_err(|_| AuthError)?,
        )
        .map_err(|_| AuthError)?;
    Ok(out)
}

/// How a repository's objects are protected: not at all (format 1) or with a master key
/// (format 2). Cheap to clone.
#[derive(Clone)]
pub enum Crypto {
    /// Format 1: plain BLAKE3 ids, nothing sealed.
    None,
    /// Format 2: keyed ids, everything sealed with keys derived from this master key.
    Key(Arc<MasterKey>),
}

impl fmt::Debug for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Crypto::None => f.write_str("Crypto::None"),
            Crypto::Key(_) => f.write_str("Crypto::Key(MasterKey(..))"),
        }
    }
}

impl Crypto {
    /// Whether objects are sealed (format 2).
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Crypto::Key(_))
    }

    /// A blob's id: BLAKE3 of the plaintext (format 1) or BLAKE3 keyed with the id key.
    pub fn blob_id(&self, plain: &[u8]) -> BlobId {
        match self {
            Crypto::None => BlobId::of(plain),
            Crypto::Key(key) => BlobId(*blake3::keyed_hash(&key.ids, plain).as_bytes()),
        }
    }

    /// The chunker's gear seed: the config's (format 1) or one derived from the encryption
    /// key, so that it never appears in the storage.
    pub fn chunker_seed(&self, config_seed: Option<u64>) -> u64 {
        match self {
            Crypto::None => config_seed.unwrap_or(0),
            Crypto::Key(key) => {
                let hash = blake3::keyed_hash(&key.enc, LABEL_CHUNKER_SEED);
                u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
            }
        }
    }

    /// Seals a whole object: `0x02 ‖ salt ‖ GCM(object key, 00×12, "airback/2/" ‖ kind,
    /// plain)`. Format 1 stores the plaintext as it is.
    pub fn seal_object(&self, kind: ObjectKind, plain: &[u8]) -> Vec<u8> {
        let Crypto::Key(key) = self else {
            return plain.to_vec();
        };
        let salt = random_salt();
        let sealed = seal(&key.cipher(&salt), &OBJECT_NONCE, &kind.ad(), plain);
        let mut out = Vec::with_capacity(1 + SALT_LEN + sealed.len());
        out.push(OBJECT_VERSION);
        out.extend_from_slice(&salt);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`Crypto::seal_object`] sealed as `kind`. Format 1: the bytes as they are.
    pub fn open_object(&self, kind: ObjectKind, stored: &[u8]) -> Result<Vec<u8>, AuthError> {
        let Crypto::Key(key) = self else {
            return Ok(stored.to_vec());
        };
        if stored.len() < OBJECT_OVERHEAD || stored[0] != OBJECT_VERSION {
            return Err(AuthError);
        }
        let salt: Salt = stored[1..1 + SALT_LEN].try_into().expect("16 bytes");
        open(
            &key.cipher(&salt),
            &OBJECT_NONCE,
            &kind.ad(),
            &stored[1 + SALT_LEN..],
        )
    }

    /// A sealer for one new pack, with a fresh salt; `None` in format 1.
    pub fn pack_sealer(&self) -> Option<PackSealer> {
        let Crypto::Key(key) = self else {
            return None;
        };
        let salt = random_salt();
        Some(PackSealer {
            salt,
            cipher: key.cipher(&salt),
        })
    }

    /// An opener for the pack with `salt` (its key derived once); `None` in format 1.
    pub fn pack_opener(&self, salt: &Salt) -> Option<PackOpener> {
        let Crypto::Key(key) = self else {
            return None;
        };
        Some(PackOpener {
            cipher: key.cipher(salt),
        })
    }
}

/// Seals the blobs and the header of one pack. Made by [`Crypto::pack_sealer`], which draws
/// the pack's salt; one sealer seals one pack.
pub struct PackSealer {
    salt: Salt,
    cipher: Aes256Gcm,
}

impl fmt::Debug for PackSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PackSealer(..)")
    }
}

impl PackSealer {
    /// The pack's salt (stored in clear in its footer and in the index).
    pub fn salt(&self) -> Salt {
        self.salt
    }

    /// Encrypts the blob at `offset` in place and returns its tag (appended after it).
    pub fn seal_blob(&self, offset: u32, ad: &BlobAd<'_>, buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce_of(&blob_nonce(offset)), &ad.bytes(), buf.into())
            .expect("blobs stay far below AES-GCM's limit");
        tag.into()
    }

    /// Seals the pack header: `GCM(pack key, FF×12, "airback/2/pack-header", header)`.
    pub fn seal_header(&self, header: &[u8]) -> Vec<u8> {
        seal(&self.cipher, &HEADER_NONCE, LABEL_PACK_HEADER, header)
    }
}

/// Opens blobs and the header of one pack; see [`Crypto::pack_opener`].
pub struct PackOpener {
    cipher: Aes256Gcm,
}

impl fmt::Debug for PackOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PackOpener(..)")
    }
}

impl PackOpener {
    /// Opens the sealed blob (`ciphertext ‖ tag`) stored at `offset`.
    pub fn open_blob(
        &self,
        offset: u32,
        ad: &BlobAd<'_>,
        sealed: &[u8],
    ) -> Result<Vec<u8>, AuthError> {
        open(&self.cipher, &blob_nonce(offset), &ad.bytes(), sealed)
    }

    /// Opens the sealed pack header.
    pub fn open_header(&self, sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
        open(&self.cipher, &HEADER_NONCE, LABEL_PACK_HEADER, sealed)
    }
}

/// Who made a key file, and when: its clear, authenticated fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    /// The host it was made on.
    pub hostname: String,
    /// The user who made it.
    pub username: String,
    /// When (RFC 3339, UTC).
    pub created: String,
}

/// The KDF part of a key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFileKdf {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Argon2 version, 19 (0x13).
    pub version: u32,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Base64 of the 32-byte salt.
    pub salt: String,
}

/// A key file, `keys/<BLAKE3 of its bytes>` (plain JSON): the master key wrapped with a key
/// derived from one password. See docs/FORMAT.md, "Key files".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Always 1.
    pub version: u32,
    /// When it was made (RFC 3339, UTC).
    pub created: String,
    /// The host it was made on.
    pub hostname: String,
    /// The user who made it.
    pub username: String,
    /// How the wrapping key is derived from the password.
    pub kdf: KeyFileKdf,
    /// Always `aes-256-gcm`.
    pub cipher: String,
    /// Base64 of the 12-byte nonce.
    pub nonce: String,
    /// Base64 of the sealed payload (145 bytes).
    pub wrapped: String,
    /// Base64 of the 32-byte MAC under the master key.
    pub mac: String,
}

const KEY_FILE_VERSION: u32 = 1;
const ARGON2_VERSION: u32 = 0x13;

impl KeyFile {
    /// The stored bytes (pretty JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("key files serialize")
    }

    /// Parses stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<KeyFile, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a key file: {e}"))
    }

    /// Its KDF parameters.
    pub fn kdf_params(&self) -> KdfParams {
        KdfParams {
            memory_kib: self.kdf.memory_kib,
            iterations: self.kdf.iterations,
            parallelism: self.kdf.parallelism,
        }
    }

    /// Checks the clear fields: versions, names and caps.
    pub fn check_fields(&self) -> Result<(), String> {
        if self.version != KEY_FILE_VERSION {
            return Err(format!(
                "key file version {} is not supported",
                self.version
            ));
        }
        if self.kdf.algorithm != "argon2id" || self.kdf.version != ARGON2_VERSION {
            return Err(format!(
                "unsupported kdf `{}` version {}",
                self.kdf.algorithm, self.kdf.version
            ));
        }
        if self.cipher != "aes-256-gcm" {
            return Err(format!("unsupported cipher `{}`", self.cipher));
        }
        self.kdf_params().check_caps()
    }

    /// The associated data of `wrapped`: every clear field (FORMAT.md, "Key files").
    fn ad(&self, salt: &[u8]) -> Vec<u8> {
        fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        let mut ad = LABEL_KEY_FILE.to_vec();
        ad.push(0);
        lp(&mut ad, self.created.as_bytes());
        lp(&mut ad, self.hostname.as_bytes());
        lp(&mut ad, self.username.as_bytes());
        lp(&mut ad, self.kdf.algorithm.as_bytes());
        ad.extend_from_slice(&self.kdf.version.to_le_bytes());
        ad.extend_from_slice(&self.kdf.memory_kib.to_le_bytes());
        ad.extend_from_slice(&self.kdf.iterations.to_le_bytes());
        ad.extend_from_slice(&self.kdf.parallelism.to_le_bytes());
        lp(&mut ad, salt);
        lp(&mut ad, self.cipher.as_bytes());
        ad
    }

    /// Decodes the base64 fields, checking their lengths: (kdf salt, nonce, wrapped, mac).
    #[allow(clippy::type_complexity)]
    fn decoded(&self) -> Result<(Vec<u8>, [u8; 12], Vec<u8>, [u8; 32]), String> {
        let field = |name: &str, value: &str, len: usize| {
            let bytes = BASE64
                .decode(value)
                .map_err(|e| format!("`{name}` is not base64: {e}"))?;
            if bytes.len() != len {
                return Err(format!(
                    "`{name}` holds {} bytes, expected {len}",
                    bytes.len()
                ));
            }
            Ok(bytes)
        };
        let salt = field("kdf.salt", &self.kdf.salt, KDF_SALT_LEN)?;
        let nonce = field("nonce", &self.nonce, KEY_NONCE_LEN)?;
        let wrapped = field("wrapped", &self.wrapped, PAYLOAD_LEN + TAG_LEN)?;
        let mac = field("mac", &self.mac, 32)?;
        Ok((
            salt,
            nonce.try_into().expect("checked"),
            wrapped,
            mac.try_into().expect("checked"),
        ))
    }

    fn compute_mac(
        &self,
        master: &MasterKey,
        salt: &[u8],
        nonce: &[u8],
        wrapped: &[u8],
    ) -> [u8; 32] {
        let mut input = self.ad(salt);
        input.extend_from_slice(nonce);
        input.extend_from_slice(wrapped);
        *blake3::keyed_hash(&master.mac_key(), &input).as_bytes()
    }
}

/// Derives the 32-byte key-encryption key with Argon2id, wiping Argon2's work area after.
fn derive_kek(
    password: &Password,
    salt: &[u8],
    kdf: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, String> {
    kdf.check_caps()?;
    let params = argon2::Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| format!("argon2 parameters: {e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut blocks = vec![argon2::Block::default(); argon.params().block_count()];
    let mut kek = Zeroizing::new([0u8; 32]);
    let result = argon.hash_password_into_with_memory(
        password.expose(),
        salt,
        &mut kek[..],
        &mut blocks[..],
    );
    blocks.zeroize();
    result.map_err(|e| format!("argon2: {e}"))?;
    Ok(kek)
}

/// Wraps `master` with `password` into a new key file bound to the repository `repo` and its
/// config (`config_hash` = BLAKE3 of the config's bytes). Runs Argon2id: call it on
/// `spawn_blocking`. Fails only for KDF parameters outside [`KdfParams::check_caps`].
pub fn wrap(
    master: &MasterKey,
    repo: &RepoId,
    config_hash: &[u8; 32],
    password: &Password,
    kdf: KdfParams,
    meta: &KeyMeta,
) -> Result<KeyFile, String> {
    let mut salt = [0u8; KDF_SALT_LEN];
    getrandom::fill(&mut salt).expect("the OS provides random bytes");
    let mut nonce = [0u8; KEY_NONCE_LEN];
    getrandom::fill(&mut nonce).expect("the OS provides random bytes");
    let kek = derive_kek(password, &salt, kdf)?;
    let mut file = KeyFile {
        version: KEY_FILE_VERSION,
        created: meta.created.clone(),
        hostname: meta.hostname.clone(),
        username: meta.username.clone(),
        kdf: KeyFileKdf {
            algorithm: "argon2id".into(),
            version: ARGON2_VERSION,
            memory_kib: kdf.memory_kib,
            iterations: kdf.iterations,
            parallelism: kdf.parallelism,
            salt: BASE64.encode(salt),
        },
        cipher: "aes-256-gcm".into(),
        nonce: BASE64.encode(nonce),
        wrapped: String::new(),
        mac: String::new(),
    };
    let mut payload = Zeroizing::new(Vec::with_capacity(PAYLOAD_LEN + TAG_LEN));
    payload.push(1);
    payload.extend_from_slice(&master.enc);
    payload.extend_from_slice(&master.ids);
    payload.extend_from_slice(&repo.0);
    payload.extend_from_slice(config_hash);
    let cipher = aes_key(&kek);
    let wrapped = seal(&cipher, &nonce, &file.ad(&salt), &payload);
    file.wrapped = BASE64.encode(&wrapped);
    file.mac = BASE64.encode(file.compute_mac(master, &salt, &nonce, &wrapped));
    Ok(file)
}

/// What [`unwrap`] found.
#[derive(Debug)]
pub enum Unwrap {
    /// The password opens it, and it belongs to this repository and config.
    Opened(MasterKey),
    /// The password does not open it (or its sealed part was changed).
    WrongPassword,
    /// It opens, but belongs to another repository or another config.
    OtherRepository,
    /// It cannot be used: a field is malformed or out of bounds, or its MAC is wrong.
    Damaged(String),
}

/// Opens a key file with `password` and checks that it belongs to the repository `repo` with
/// the config whose BLAKE3 is `config_hash`. Runs Argon2id: call it on `spawn_blocking`.
pub fn unwrap(
    file: &KeyFile,
    password: &Password,
    repo: &RepoId,
    config_hash: &[u8; 32],
) -> Unwrap {
    if let Err(e) = file.check_fields() {
        return Unwrap::Damaged(e);
    }
    let (salt, nonce, wrapped, mac) = match file.decoded() {
        Ok(fields) => fields,
        Err(e) => return Unwrap::Damaged(e),
    };
    let kek = match derive_kek(password, &salt, file.kdf_params()) {
        Ok(kek) => kek,
        Err(e) => return Unwrap::Damaged(e),
    };
    let cipher = aes_key(&kek);
    let Ok(payload) = open(&cipher, &nonce, &file.ad(&salt), &wrapped) else {
        return Unwrap::WrongPassword;
    };
    let payload = Zeroizing::new(payload);
    if payload.len() != PAYLOAD_LEN || payload[0] != 1 {
        return Unwrap::Damaged("unknown payload version".into());
    }
    let mut master = MasterKey {
        enc: [0; 32],
        ids: [0; 32],
    };
    master.enc.copy_from_slice(&payload[1..33]);
    master.ids.copy_from_slice(&payload[33..65]);
    if payload[65..97] != repo.0 || payload[97..129] != config_hash[..] {
        return Unwrap::OtherRepository;
    }
    if !constant_time_eq(&file.compute_mac(&master, &salt, &nonce, &wrapped), &mac) {
        return Unwrap::Damaged("its mac does not match".into());
    }
    Unwrap::Opened(master)
}

/// Whether `master` authenticates the key file (its `mac`): lets whoever holds the master key
/// check every key file, not only the one their password opens.
pub fn verify_mac(file: &KeyFile, master: &MasterKey) -> bool {
    let Ok((salt, nonce, wrapped, mac)) = file.decoded() else {
        return false;
    };
    constant_time_eq(&file.compute_mac(master, &salt, &nonce, &wrapped), &mac)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    blake3::Hash::from(*a) == blake3::Hash::from(*b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(s: &str) -> Password {
        Password::new(s.as_bytes().into())
    }

    fn key() -> Crypto {
        Crypto::Key(Arc::new(MasterKey::generate()))
    }

    fn meta() -> KeyMeta {
        KeyMeta {
            hostname: "backup-host".into(),
            username: "alice".into(),
            created: "2026-11-22T15:00:00Z".into(),
        }
    }

    #[test]
    fn objects_round_trip_and_any_flipped_byte_fails() {
        let crypto = key();
        for len in [0usize, 1, 15, 16, 17, 100] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let sealed = crypto.seal_object(ObjectKind::Snapshot, &plain);
            assert_eq!(sealed.len(), plain.len() + OBJECT_OVERHEAD);
            assert_eq!(sealed[0], OBJECT_VERSION);
            assert_eq!(
                crypto.open_object(ObjectKind::Snapshot, &sealed).unwrap(),
                plain
            );
            // Bound to its kind.
            assert_eq!(
                crypto.open_object(ObjectKind::Index, &sealed),
                Err(AuthError)
            );
            for i in 0..sealed.len() {
                for bit in [0x01, 0x80] {
                    let mut bad = sealed.clone();
                    bad[i] ^= bit;
                    assert_eq!(
                        crypto.open_object(ObjectKind::Snapshot, &bad),
                        Err(AuthError),
                        "flipped byte {i} of {len}"
                    );
                }
            }
            assert_eq!(
                crypto.open_object(ObjectKind::Snapshot, &sealed[..sealed.len() - 1]),
                Err(AuthError)
            );
        }
        // Another repository's key does not open it.
        let sealed = crypto.seal_object(ObjectKind::Lock, b"lock");
        assert!(key().open_object(ObjectKind::Lock, &sealed).is_err());
        // Two seals of the same plaintext differ (fresh salts).
        assert_ne!(
            crypto.seal_object(ObjectKind::Lock, b"lock"),
            crypto.seal_object(ObjectKind::Lock, b"lock")
        );
    }

    #[test]
    fn format_1_is_the_identity() {
        let none = Crypto::None;
        assert!(!none.is_encrypted());
        assert_eq!(none.seal_object(ObjectKind::Index, b"abc"), b"abc");
        assert_eq!(none.open_object(ObjectKind::Index, b"abc").unwrap(), b"abc");
        assert_eq!(none.blob_id(b"abc"), BlobId::of(b"abc"));
        assert_eq!(none.chunker_seed(Some(7)), 7);
        assert!(none.pack_sealer().is_none());
        assert!(none.pack_opener(&[0; 16]).is_none());
    }

    #[test]
    fn ids_and_seeds_are_keyed() {
        let (a, b) = (key(), key());
        assert_ne!(a.blob_id(b"abc"), BlobId::of(b"abc"));
        assert_ne!(a.blob_id(b"abc"), b.blob_id(b"abc"));
        assert_eq!(a.blob_id(b"abc"), a.blob_id(b"abc"));
        assert_ne!(a.chunker_seed(None), b.chunker_seed(None));
        assert_eq!(a.chunker_seed(Some(1)), a.chunker_seed(None));
    }

    #[test]
    fn pack_blobs_and_header_round_trip_and_any_flipped_byte_fails() {
        let crypto = key();
        let sealer = crypto.pack_sealer().unwrap();
        let opener = crypto.pack_opener(&sealer.salt()).unwrap();
        let id = BlobId::of(b"x");
        let ad = BlobAd {
            kind: 1,
            compression: 1,
            raw_length: 5,
            id: &id,
        };
        let plain = b"hello".to_vec();
        let mut buf = plain.clone();
        let tag = sealer.seal_blob(64, &ad, &mut buf);
        buf.extend_from_slice(&tag);
        assert_eq!(opener.open_blob(64, &ad, &buf).unwrap(), plain);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x04;
            assert!(opener.open_blob(64, &ad, &bad).is_err(), "byte {i}");
        }
        // Bound to its offset, its entry and its pack.
        assert!(opener.open_blob(65, &ad, &buf).is_err());
        for other in [
            BlobAd { kind: 0, ..ad },
            BlobAd {
                compression: 0,
                ..ad
            },
            BlobAd {
                raw_length: 6,
                ..ad
            },
            BlobAd {
                id: &BlobId::of(b"y"),
                ..ad
            },
        ] {
            assert!(opener.open_blob(64, &other, &buf).is_err());
        }
        let other_pack = crypto.pack_opener(&[9; 16]).unwrap();
        assert!(other_pack.open_blob(64, &ad, &buf).is_err());
        // Distinct offsets give distinct ciphertexts (distinct nonces).
        let mut again = plain.clone();
        sealer.seal_blob(80, &ad, &mut again);
        assert_ne!(again, buf[..5]);

        let header = b"\x02\x01\x00\x00\x00\x00".to_vec();
        let sealed = sealer.seal_header(&header);
        assert_eq!(opener.open_header(&sealed).unwrap(), header);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x10;
            assert!(opener.open_header(&bad).is_err(), "byte {i}");
        }
        // A blob's bytes are not a header and a header is not a blob at offset 0.
        assert!(opener.open_header(&buf).is_err());
        assert!(opener.open_blob(0, &ad, &sealed).is_err());
    }

    #[test]
    fn nonces_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for offset in [0u32, 1, 16, 17, 1 << 20, u32::MAX] {
            assert!(seen.insert(blob_nonce(offset)));
        }
        assert!(seen.insert(HEADER_NONCE));
        assert!(!seen.insert(OBJECT_NONCE)); // same as offset 0, but under a different key
    }

    #[test]
    fn key_files_wrap_unwrap_and_authenticate_every_field() {
        let master = MasterKey::generate();
        let repo = RepoId([7; 32]);
        let config_hash = [8; 32];
        let file = wrap(
            &master,
            &repo,
            &config_hash,
            &password("right"),
            KdfParams::FOR_TESTS,
            &meta(),
        )
        .unwrap();
        assert_eq!(BASE64.decode(&file.wrapped).unwrap().len(), 145);
        let back = KeyFile::from_bytes(&file.to_bytes()).unwrap();
        assert_eq!(back, file);
        match unwrap(&file, &password("right"), &repo, &config_hash) {
            Unwrap::Opened(opened) => {
                assert_eq!(opened.enc, master.enc);
                assert_eq!(opened.ids, master.ids);
            }
            other => panic!("{other:?}"),
        }
        assert!(verify_mac(&file, &master));
        assert!(!verify_mac(&file, &MasterKey::generate()));
        assert!(matches!(
            unwrap(&file, &password("wrong"), &repo, &config_hash),
            Unwrap::WrongPassword
        ));
        assert!(matches!(
            unwrap(&file, &password("right"), &RepoId([1; 32]), &config_hash),
            Unwrap::OtherRepository
        ));
        assert!(matches!(
            unwrap(&file, &password("right"), &repo, &[0; 32]),
            Unwrap::OtherRepository
        ));
        // A changed clear field: the password no longer opens it, and the MAC fails.
        let mut changed = file.clone();
        changed.hostname = "backup-hosT".into();
        assert!(matches!(
            unwrap(&changed, &password("right"), &repo, &config_hash),
            Unwrap::WrongPassword
        ));
        assert!(!verify_mac(&changed, &master));
        let mut changed = file.clone();
        changed.created = "2026-11-22T15:00:01Z".into();
        assert!(!verify_mac(&changed, &master));
        // Caps.
        let mut greedy = file.clone();
        greedy.kdf.memory_kib = KdfParams::MAX_MEMORY_KIB + 1;
        assert!(matches!(
            unwrap(&greedy, &password("right"), &repo, &config_hash),
            Unwrap::Damaged(_)
        ));
        let mut bad_b64 = file.clone();
        bad_b64.nonce = "!!".into();
        assert!(matches!(
            unwrap(&bad_b64, &password("right"), &repo, &config_hash),
            Unwrap::Damaged(_)
        ));
    }

    #[test]
    fn a_flipped_byte_anywhere_in_a_key_file_is_caught() {
        let master = MasterKey::generate();
        let repo = RepoId([7; 32]);
        let file = wrap(
            &master,
            &repo,
            &[8; 32],
            &password("pw"),
            KdfParams::FOR_TESTS,
            &meta(),
        )
        .unwrap();
        let bytes = file.to_bytes();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            // Either it is no longer a key file, or its MAC (or the password) fails.
            let Ok(parsed) = KeyFile::from_bytes(&bad) else {
                continue;
            };
            if parsed == file {
                continue; // a change JSON cannot see (whitespace)
            }
            // `version` is not in the MAC; its check refuses any other value.
            assert!(
                parsed.check_fields().is_err() || !verify_mac(&parsed, &master),
                "byte {i}"
            );
        }
    }

    #[test]
    fn the_kek_is_pinned() {
        // A crate upgrade that changes key derivation must fail this test.
        let kek = derive_kek(&password("airback"), &[0x5a; 32], KdfParams::FOR_TESTS).unwrap();
        assert_eq!(
            hex::encode(*kek),
            "0e56ec52b4828f65e3374544bd3e1812a6aeaad0167dff8a8ae8c3e83e884244"
        );
    }

    #[test]
    fn argon2id_matches_rfc_9106() {
        // RFC 9106 §5.3: Argon2id, m = 32, t = 3, p = 4, with a secret and associated data.
        let secret = [3u8; 8];
        let params = argon2::ParamsBuilder::new()
            .m_cost(32)
            .t_cost(3)
            .p_cost(4)
            .data(argon2::AssociatedData::new(&[4u8; 12]).unwrap())
            .output_len(32)
            .build()
            .unwrap();
        let argon = argon2::Argon2::new_with_secret(
            &secret,
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        )
        .unwrap();
        let mut out = [0u8; 32];
        let mut blocks = vec![argon2::Block::default(); argon.params().block_count()];
        argon
            .hash_password_into_with_memory(&[1u8; 32], &[2u8; 16], &mut out, &mut blocks[..])
            .unwrap();
        assert_eq!(
            hex::encode(out),
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
        );
    }

    #[test]
    fn kdf_caps() {
        assert!(KdfParams::DEFAULT.check_caps().is_ok());
        assert!(KdfParams::FOR_TESTS.check_caps().is_ok());
        for bad in [
            KdfParams {
                iterations: 65,
                ..KdfParams::DEFAULT
            },
            KdfParams {
                parallelism: 17,
                ..KdfParams::DEFAULT
            },
            KdfParams {
                parallelism: 0,
                ..KdfParams::DEFAULT
            },
            KdfParams {
                memory_kib: 4,
                ..KdfParams::DEFAULT
            },
        ] {
            assert!(bad.check_caps().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_shows_no_secret_bytes() {
        let pw = password("hunter2-secret");
        assert_eq!(format!("{pw:?}"), "Password(***)");
        let master = MasterKey::generate();
        let shown = format!("{master:?}");
        assert_eq!(shown, "MasterKey(..)");
        assert!(!shown.contains(&hex::encode(master.enc)[..8]));
        let crypto = Crypto::Key(Arc::new(master));
        assert_eq!(format!("{crypto:?}"), "Crypto::Key(MasterKey(..))");
        let sealer = crypto.pack_sealer().unwrap();
        assert_eq!(format!("{sealer:?}"), "PackSealer(..)");
    }
}
