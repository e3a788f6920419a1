//! Content-defined chunking: FastCDC (2020 variant, normalization level 1) with a per-repository
//! seed, so that an insertion in the middle of a stream changes only the chunks around it.
//!
//! Pure and synchronous. [`Chunker::cut_ready`] lets callers chunk a stream buffer by buffer and
//! get exactly the chunks that chunking the whole stream at once would give.

use std::borrow::Cow;
use std::ops::Range;

use fastcdc::v2020::{self, Normalization};
use serde::{Deserialize, Serialize};

/// Minimum, average and maximum chunk size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    /// No chunk is smaller, except the last one of a stream.
    pub min_size: u32,
    /// The target average.
    pub avg_size: u32,
    /// No chunk is larger.
    pub max_size: u32,
}

impl ChunkerParams {
    /// Attachments (file data): 10 KB to 20 MB files, replaced whole far more often than edited.
    /// See docs/BENCHMARKS.md ("chunk sizes") for the measurement behind these numbers.
    pub const DATA: ChunkerParams = ChunkerParams {
        min_size: 256 * 1024,
        avg_size: 1024 * 1024,
        max_size: 4 * 1024 * 1024,
    };

    /// Table data (canonical JSON lines) and other metadata: small chunks so that a nightly
    /// change to a few records rewrites only a few KiB around each record.
    pub const META: ChunkerParams = ChunkerParams {
        min_size: 1024,
        avg_size: 4 * 1024,
        max_size: 16 * 1024,
    };

    /// Checks the limits FastCDC needs.
    pub fn validate(&self) -> Result<(), String> {
        let (min, avg, max) = (
            self.min_size as usize,
            self.avg_size as usize,
            self.max_size as usize,
        );
        let even = min % 2 == 0 && avg % 2 == 0 && max % 2 == 0;
        let in_range = (v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min)
            && (v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg)
            && (v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&max);
        if !(in_range && min < avg && avg < max && even) {
            return Err(format!(
                "chunker sizes min {min}, avg {avg}, max {max} are out of range \
                 (even numbers with {} <= min < avg < max <= {})",
                v2020::MINIMUM_MIN,
                v2020::MAXIMUM_MAX
            ));
        }
        Ok(())
    }
}

/// A configured chunker. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Chunker {
    params: ChunkerParams,
    mask_s: u64,
    mask_l: u64,
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
    seed: u64,
}

impl Chunker {
    /// A chunker with `params` (validated by the caller) and the repository's gear `seed`.
    pub(crate) fn new(params: ChunkerParams, seed: u64) -> Self {
        let (mask_s, mask_l) = v2020::select_masks(params.avg_size as usize, Normalization::Level1);
        let (gear, gear_ls) = v2020::get_gear_with_seed(seed);
        Chunker {
            params,
            mask_s,
            mask_l,
            gear,
            gear_ls,
            seed,
        }
    }

    /// The gear seed this chunker was made with (format 2 derives it from the master key).
    /// The ingest benchmark reads it to give an unencrypted repository the same chunk
    /// boundaries as an encrypted one.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The sizes this chunker cuts at.
    pub(crate) fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Cuts the chunks of `buf` whose boundaries are final. Without `eof`, a chunk is cut only
    /// when at least `max_size` bytes follow its start, because FastCDC's choice near the end of
    /// its input depends on how much input there is. Returns the chunk ranges in order; bytes
    /// after the last range must be kept and prefixed to the next buffer.
    pub(crate) fn cut_ready(&self, buf: &[u8], eof: bool) -> Vec<Range<usize>> {
        let max = self.params.max_size as usize;
        let mut ranges = Vec::new();
        let mut pos = 0;
        while buf.len() - pos >= max || (eof && pos < buf.len()) {
            let (_, len) = v2020::cut_gear(
                &buf[pos..],
                self.params.min_size as usize,
                self.params.avg_size as usize,
                max,
                self.mask_s,
                self.mask_l,
                self.mask_s << 1,
                self.mask_l << 1,
                &self.gear,
                &self.gear_ls,
            );
            ranges.push(pos..pos + len);
            pos += len;
        }
        ranges
    }

    /// All chunks of a complete input.
    pub fn chunks(&self, data: &[u8]) -> Vec<Range<usize>> {
        self.cut_ready(data, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> Chunker {
        Chunker::new(
            ChunkerParams {
                min_size: 256,
                avg_size: 1024,
                max_size: 4096,
            },
            42,
        )
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n).map(|_| rng.u8(..)).collect()
    }

    #[test]
    fn default_params_are_valid() {
        ChunkerParams::DATA.validate().unwrap();
        ChunkerParams::META.validate().unwrap();
        assert!(
            ChunkerParams {
                min_size: 10,
                avg_size: 5,
                max_size: 1
            }
            .validate()
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn chunks_cover_the_input_within_limits(len in 0usize..40_000, seed in any::<u64>()) {
            let data = pseudo_random(len, seed);
            let c = small();
            let ranges = c.chunks(&data);
            let mut pos = 0;
            for (i, r) in ranges.iter().enumerate() {
                prop_assert_eq!(r.start, pos);
                prop_assert!(r.len() <= 4096);
                if i + 1 < ranges.len() { prop_assert!(r.len() > 256); }
                pos = r.end;
            }
            prop_assert_eq!(pos, data.len());
        }

        #[test]
        fn streaming_gives_the_same_chunks(len in 0usize..60_000, step in 1usize..9000, seed in any::<u64>()) {
            let data = pseudo_random(len, seed);
            let c = small();
            let whole: Vec<Vec<u8>> = c.chunks(&data).into_iter().map(|r| data[r].to_vec()).collect();
            let mut streamed = Vec::new();
            let mut buf = Vec::new();
            for piece in data.chunks(step) {
                buf.extend_from_slice(piece);
                let ranges = c.cut_ready(&buf, false);
                let consumed = ranges.last().map_or(0, |r| r.end);
                streamed.extend(ranges.into_iter().map(|r| buf[r].to_vec()));
                buf.drain(..consumed);
            }
            streamed.extend(c.cut_ready(&buf, true).into_iter().map(|r| buf[r].to_vec()));
            prop_assert_eq!(whole, streamed);
        }

        #[test]
        fn boundaries_resynchronise_after_an_insertion(seed in any::<u64>(), at in 0usize..100_000, insert in 1usize..3000) {
            let data = pseudo_random(100_000, seed);
            let mut changed = data[..at].to_vec();
            changed.extend(pseudo_random(insert, seed ^ 1));
            changed.extend_from_slice(&data[at..]);
            let c = small();
            let before: std::collections::HashSet<Vec<u8>> = c.chunks(&data).into_iter().map(|r| data[r].to_vec()).collect();
            let after: Vec<Vec<u8>> = c.chunks(&changed).into_iter().map(|r| changed[r].to_vec()).collect();
            let new_bytes: usize = after.iter().filter(|ch| !before.contains(*ch)).map(Vec::len).sum();
            // Only the chunks around the insertion change: the inserted bytes plus the few
            // chunks (at most max_size each) until the boundaries meet again. Fixed-size
            // chunking would rewrite everything after the insertion.
            prop_assert!(new_bytes <= insert + 6 * 4096, "new bytes {} for an insertion of {}", new_bytes, insert);
        }
    }
}
