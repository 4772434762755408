//! Incompressible chunks stored as zstd frames of raw blocks, without running the compressor.
//!
//! Why: on a chunk of noise zstd searches every position for matches, tries Huffman-coding the
//! literals, finds neither worth it and copies the bytes out as raw blocks; that was ~35% of the
//! server's CPU per persisted 256 KiB frame (perf, `WS push persist`). A few slices of the chunk
//! are compressed first; when they do not shrink, the chunk is written as the frame zstd emits
//! for such data (RFC 8878: a header with the content size, then raw blocks of at most 128 KiB),
//! with one copy. Every zstd decoder reads it; only compression that the samples miss (matches
//! farther apart than a slice) is given up.

use super::direct::AlignedBuf;

/// Smallest chunk worth sampling (below it, compressing it whole costs little).
pub const SAMPLED_MIN: usize = 64 * 1024;
/// Bytes of each sampled slice.
const SLICE: usize = 8 * 1024;
/// Slices sampled, spread over the chunk.
const SLICES: usize = 4;
/// The samples count as incompressible when they compress to at least this share of their size
/// (per thousand).
const NOT_WORTH_PER_MILLE: usize = 970;

/// zstd's frame magic number, little-endian.
const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Largest block (the format's limit, and the window this frame declares).
const BLOCK_MAX: usize = 128 * 1024;
/// Window descriptor: 2^(10 + 7) = 128 KiB, the largest block.
const WINDOW_128K: u8 = 7 << 3;

/// The slices of `raw` to sample: [`SLICES`] of [`SLICE`] bytes, from its start to its end.
pub fn sample_slices(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let stride = raw.len().saturating_sub(SLICE) / (SLICES - 1);
    (0..SLICES).map(move |i| &raw[i * stride..(i * stride + SLICE).min(raw.len())])
}

/// Whether samples of `raw_len` bytes that compressed to `compressed_len` are not worth
/// compressing.
pub fn not_worth_compressing(raw_len: usize, compressed_len: usize) -> bool {
    compressed_len * 1000 >= raw_len * NOT_WORTH_PER_MILLE
}

/// Writes `raw` into `out` as one zstd frame of raw blocks (content size in the header, no
/// checksum).
pub fn write_raw_frame(raw: &[u8], out: &mut AlignedBuf) {
    // The content size in 4 bytes (flag 2), or 8 (flag 3).
    let (size_flag, size_len) = if u32::try_from(raw.len()).is_ok() { (2u8, 4) } else { (3u8, 8) };
    let blocks = raw.len().div_ceil(BLOCK_MAX).max(1);
    let header = MAGIC.len() + 2 + size_len;
    let total = header + 3 * blocks + raw.len();
    let room = out.room(total);
    room[..4].copy_from_slice(&MAGIC);
    // Frame header descriptor: content size flag in bits 7-6; not single-segment (a window
    // descriptor follows), no checksum, no dictionary.
    room[4] = size_flag << 6;
    room[5] = WINDOW_128K;
    room[6..header].copy_from_slice(&(raw.len() as u64).to_le_bytes()[..size_len]);
    let mut at = header;
    let mut pieces = raw.chunks(BLOCK_MAX).peekable();
    if pieces.peek().is_none() {
        room[at..at + 3].copy_from_slice(&block_header(0, true));
        at += 3;
    }
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        room[at..at + 3].copy_from_slice(&block_header(piece.len(), last));
        room[at + 3..at + 3 + piece.len()].copy_from_slice(piece);
        at += 3 + piece.len();
    }
    out.set_len(at);
}

/// A raw block's 3-byte header: last-block bit, type 0 (raw), size in bits 3-23.
fn block_header(size: usize, last: bool) -> [u8; 3] {
    let word = ((size as u32) << 3) | u32::from(last);
    let bytes = word.to_le_bytes();
    [bytes[0], bytes[1], bytes[2]]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `len` bytes of noise (xorshift), the same for the same `seed`.
    pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn every_decoder_reads_the_raw_frame() {
        for len in [0, 1, 65_536, BLOCK_MAX, BLOCK_MAX + 1, 262_144, 1_048_581] {
            let raw = noise(len, len as u64);
            let mut out = AlignedBuf::new();
            write_raw_frame(&raw, &mut out);
            let stored = out.bytes();
            assert_eq!(stored.len(), 10 + 3 * len.div_ceil(BLOCK_MAX).max(1) + len);
            assert_eq!(zstd::bulk::decompress(stored, len).unwrap(), raw, "bulk, {len} bytes");
            assert_eq!(zstd::stream::decode_all(stored).unwrap(), raw, "stream, {len} bytes");
            let declared = zstd::zstd_safe::get_frame_content_size(stored).unwrap();
            assert_eq!(declared, Some(len as u64));
        }
    }

    #[test]
    fn samples_cover_the_chunk_and_tell_noise_from_counts() {
        let raw: Vec<u8> = (0..100_000u32).map(|i| (i / 1000) as u8).collect();
        let slices: Vec<&[u8]> = sample_slices(&raw).collect();
        assert_eq!(slices.len(), SLICES);
        assert_eq!(slices[0][0], 0);
        assert_eq!(*slices[SLICES - 1].last().unwrap(), 99);
        assert!(slices.iter().all(|s| s.len() == SLICE));
        let compressed = |data: &[u8]| zstd::bulk::compress(data, 3).unwrap().len();
        let noisy = noise(SLICE, 7);
        assert!(not_worth_compressing(SLICE, compressed(&noisy)));
        let counts: Vec<u8> = noise(SLICE, 9).iter().map(|b| b % 4).collect();
        assert!(!not_worth_compressing(SLICE, compressed(&counts)));
    }
}
