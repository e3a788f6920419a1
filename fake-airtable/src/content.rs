//! Attachment bytes and the expiring URLs that serve them, standing in for Airtable's content
//! host (`v5.airtableusercontent.com`).
//!
//! Generated attachments are never held in memory: their bytes are a pure function of the world
//! seed and a content key, produced in 64 KiB chunks while they stream out. Uploaded and fetched
//! attachments are kept in memory when small and spilled to a scratch directory otherwise.
//!
//! A URL embeds the URL epoch, its expiry time and a keyed-hash signature:
//! `/attachments/{epoch}/{expires_ms}/{attachment_id}/{variant}/{signature}`. It stops working
//! when it expires, when the epoch moves on (forced expiry), or when the attachment is gone.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::Stream;
use futures::stream::{self, StreamExt};

use super::state::ContentSource;

/// Path prefix of every content URL.
pub(crate) const CONTENT_PREFIX: &str = "/attachments/";

const CHUNK: u64 = 64 * 1024;
/// Uploaded or fetched content above this size is spilled to disk.
const SPILL_THRESHOLD: usize = 1024 * 1024;

/// Which rendition a URL points at: the file or one of its thumbnails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    File,
    Small,
    Large,
    Full,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::File => "file",
            Variant::Small => "small",
            Variant::Large => "large",
            Variant::Full => "full",
        }
    }

    fn parse(text: &str) -> Option<Variant> {
        [Variant::File, Variant::Small, Variant::Large, Variant::Full]
            .into_iter()
            .find(|variant| variant.name() == text)
    }
}

/// Signs and checks content URLs.
#[derive(Debug)]
pub(crate) struct UrlSigner {
    key: [u8; 32],
    /// URLs carrying an older epoch are expired; `expire_all` moves it on.
    epoch: AtomicU64,
}

/// The result of checking a content URL path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UrlCheck {
    Valid { attachment_id: String },
    Expired,
    Invalid,
}

impl UrlSigner {
    pub(crate) fn new(seed: u64) -> UrlSigner {
        let key = *blake3::hash(format!("airback fake url key {seed}").as_bytes()).as_bytes();
        UrlSigner {
            key,
            epoch: AtomicU64::new(1),
        }
    }

    fn signature(&self, epoch: u64, expires_ms: i64, attachment_id: &str, variant: &str) -> String {
        let message = format!("{epoch}/{expires_ms}/{attachment_id}/{variant}");
        blake3::keyed_hash(&self.key, message.as_bytes()).to_hex()[..24].to_owned()
    }

    /// A URL for `attachment_id` valid until `expires_ms`.
    pub(crate) fn url(
        &self,
        base_url: &str,
        attachment_id: &str,
        variant: Variant,
        expires_ms: i64,
    ) -> String {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let signature = self.signature(epoch, expires_ms, attachment_id, variant.name());
        format!(
            "{base_url}{CONTENT_PREFIX}{epoch}/{expires_ms}/{attachment_id}/{}/{signature}",
            variant.name()
        )
    }

    /// Invalidates every URL issued so far.
    pub(crate) fn expire_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Checks the part of a path after [`CONTENT_PREFIX`].
    pub(crate) fn check(&self, rest: &str, now_ms: i64) -> UrlCheck {
        let parts: Vec<&str> = rest.split('/').collect();
        let [epoch, expires_ms, attachment_id, variant, signature] = parts[..] else {
            return UrlCheck::Invalid;
        };
        let (Ok(epoch), Ok(expires_ms), Some(_)) = (
            epoch.parse::<u64>(),
            expires_ms.parse::<i64>(),
            Variant::parse(variant),
        ) else {
            return UrlCheck::Invalid;
        };
        if self.signature(epoch, expires_ms, attachment_id, variant) != signature {
            return UrlCheck::Invalid;
        }
        if epoch != self.epoch.load(Ordering::SeqCst) || now_ms >= expires_ms {
            return UrlCheck::Expired;
        }
        UrlCheck::Valid {
            attachment_id: attachment_id.to_owned(),
        }
    }
}

fn chunk_seed(seed: u64, key: u64, index: u64) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.update(&key.to_le_bytes());
    hasher.update(&index.to_le_bytes());
    let digest = hasher.finalize();
    u64::from_le_bytes(digest.as_bytes()[..8].try_into().unwrap_or_default())
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The first 33 bytes of a PNG of `width`×`height`: signature plus IHDR chunk.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut header = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&width.to_be_bytes());
    chunk.extend_from_slice(&height.to_be_bytes());
    chunk.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32(&chunk);
    header.extend_from_slice(&chunk);
    header.extend_from_slice(&crc.to_be_bytes());
    header
}

/// Width and height read from a PNG header, so uploads of images report their size.
pub(crate) fn png_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((width, height))
}

/// Chunk `index` of generated content of `size` bytes.
pub(crate) fn generated_chunk(
    seed: u64,
    key: u64,
    image: Option<(u32, u32)>,
    size: u64,
    index: u64,
) -> Bytes {
    let start = index * CHUNK;
    let len = CHUNK.min(size.saturating_sub(start)) as usize;
    let mut buffer = vec![0u8; len];
    fastrand::Rng::with_seed(chunk_seed(seed, key, index)).fill(&mut buffer);
    if index == 0
        && let Some((width, height)) = image
    {
        let header = png_header(width, height);
        let n = header.len().min(len);
        buffer[..n].copy_from_slice(&header[..n]);
    }
    Bytes::from(buffer)
}

/// A stream of content bytes, the error type chosen so hyper accepts it as a body.
pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Streams content of `size` bytes from `source`.
pub(crate) fn stream_content(source: ContentSource, seed: u64, size: u64) -> ByteStream {
    match source {
        ContentSource::Generated { key, image } => {
            let chunks = size.div_ceil(CHUNK);
            stream::iter(0..chunks)
                .map(move |index| Ok(generated_chunk(seed, key, image, size, index)))
                .boxed()
        }
        ContentSource::Memory(bytes) => stream::once(async move { Ok(bytes) }).boxed(),
        ContentSource::File(path) => stream::once(tokio::fs::File::open(path))
            .flat_map(|opened| match opened {
                Ok(file) => read_chunks(file),
                Err(error) => stream::once(async move { Err(error) }).boxed(),
            })
            .boxed(),
    }
}

fn read_chunks(file: tokio::fs::File) -> ByteStream {
    stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buffer = vec![0u8; CHUNK as usize];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), Some(file)))
            }
            Err(error) => Some((Err(error), None)),
        }
    })
    .boxed()
}

/// All bytes of content, for tests and direct state access. Avoid on large content.
pub(crate) fn read_content(
    source: &ContentSource,
    seed: u64,
    size: u64,
) -> std::io::Result<Vec<u8>> {
    match source {
        ContentSource::Generated { key, image } => {
            let mut out = Vec::with_capacity(size as usize);
            for index in 0..size.div_ceil(CHUNK) {
                out.extend_from_slice(&generated_chunk(seed, *key, *image, size, index));
            }
            Ok(out)
        }
        ContentSource::Memory(bytes) => Ok(bytes.to_vec()),
        ContentSource::File(path) => std::fs::read(path),
    }
}

/// The MIME type Airtable would report for a filename, by extension.
pub(crate) fn guess_mime(filename: &str) -> &'static str {
    let extension = filename
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase());
    match extension.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("zip") => "application/zip",
        Some("mp4") => "video/mp4",
        Some("html") => "text/html",
        _ => "application/octet-stream",
    }
}

/// A scratch directory for spilled content, removed when dropped.
#[derive(Debug)]
pub(crate) struct Scratch {
    dir: PathBuf,
    next: AtomicU64,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        let unique = format!(
            "airback-fake-{}-{}",
            std::process::id(),
            super::time::now_ms() as u64 ^ (fastrand::u64(..) & 0xffff_ffff)
        );
        Scratch {
            dir: std::env::temp_dir().join(unique),
            next: AtomicU64::new(0),
        }
    }

    /// Keeps `bytes`, in memory when small, on disk otherwise.
    pub(crate) fn store(&self, bytes: Bytes) -> std::io::Result<ContentSource> {
        if bytes.len() <= SPILL_THRESHOLD {
            return Ok(ContentSource::Memory(bytes));
        }
        std::fs::create_dir_all(&self.dir)?;
        let path = self
            .dir
            .join(format!("{}.bin", self.next.fetch_add(1, Ordering::SeqCst)));
        std::fs::write(&path, &bytes)?;
        Ok(ContentSource::File(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_content_is_deterministic_and_keyed() {
        let one = read_content(
            &ContentSource::Generated {
                key: 5,
                image: None,
            },
            1,
            200_000,
        )
        .unwrap();
        let again = read_content(
            &ContentSource::Generated {
                key: 5,
                image: None,
            },
            1,
            200_000,
        )
        .unwrap();
        let other = read_content(
            &ContentSource::Generated {
                key: 6,
                image: None,
            },
            1,
            200_000,
        )
        .unwrap();
        assert_eq!(one.len(), 200_000);
        assert_eq!(one, again);
        assert_ne!(one, other);
    }

    #[test]
    fn generated_images_carry_their_dimensions() {
        let bytes = read_content(
            &ContentSource::Generated {
                key: 1,
                image: Some((640, 480)),
            },
            3,
            5000,
        )
        .unwrap();
        assert_eq!(png_dimensions(&bytes), Some((640, 480)));
        assert_eq!(crc32(b"IHDR"), 0xa8a1_ae0a);
    }

    #[test]
    fn urls_expire_by_time_and_epoch_and_reject_tampering() {
        let signer = UrlSigner::new(1);
        let url = signer.url("http://h", "attAAAAAAAAAAAAAA", Variant::File, 10_000);
        let rest = url.strip_prefix("http://h/attachments/").unwrap();
        assert_eq!(
            signer.check(rest, 9_999),
            UrlCheck::Valid {
                attachment_id: "attAAAAAAAAAAAAAA".into()
            }
        );
        assert_eq!(signer.check(rest, 10_000), UrlCheck::Expired);
        assert_eq!(
            signer.check(&rest.replace("10000", "99999"), 0),
            UrlCheck::Invalid
        );
        signer.expire_all();
        assert_eq!(signer.check(rest, 0), UrlCheck::Expired);
    }
}
