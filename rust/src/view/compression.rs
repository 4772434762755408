//! `Codec`: the compressions a subscriber may ask for (`compression=`) and a writer may send
//! (`Content-Encoding:`): `zstd` (a zstd frame, level 1), `lz4` (an LZ4 *frame*, what Python's
//! `lz4.frame` reads), `blosc` (a c-blosc 1 buffer, byte shuffle by element size, `blosclz`,
//! level 5; what `blosc.decompress` and `blosc2.decompress` read).

use std::ffi::{c_int, c_void, CStr};
use std::io::{Read, Write};

/// A compression (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// A zstd frame.
    Zstd,
    /// An LZ4 frame.
    Lz4,
    /// A c-blosc buffer.
    Blosc,
}

/// Level of zstd: the fastest of the standard ones (a stream is compressed as it flows).
const ZSTD_LEVEL: i32 = 1;
/// Level of blosc (its default).
const BLOSC_LEVEL: c_int = 5;
/// Bytes blosc may add to its input.
const BLOSC_OVERHEAD: usize = 16;
const BLOSC_COMPRESSOR: &CStr = c"blosclz";

impl Codec {
    /// Every codec, by name.
    pub const ALL: [Codec; 3] = [Codec::Zstd, Codec::Lz4, Codec::Blosc];

    /// The codec called `name`.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|c| c.name() == name).ok_or_else(|| {
            format!("compression must be one of ['zstd', 'lz4', 'blosc'], not {}", crate::text::py_repr(name))
        })
    }

    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
            Self::Blosc => "blosc",
        }
    }

    /// Compresses `data` whose elements are `typesize` bytes (blosc shuffles by it).
    pub fn compress(self, data: &[u8], typesize: usize) -> Result<Vec<u8>, String> {
        match self {
            Self::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL).map_err(|e| format!("zstd: {e}")),
            Self::Lz4 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(data.len() / 2 + 64));
                encoder.write_all(data).map_err(|e| format!("lz4: {e}"))?;
                encoder.finish().map_err(|e| format!("lz4: {e}"))
            }
            Self::Blosc => blosc_compress(data, typesize),
        }
    }

    /// Decompresses `data`, which must hold exactly `expected` bytes once decompressed (more is
    /// refused without being produced).
    pub fn decompress(self, data: &[u8], expected: usize) -> Result<Vec<u8>, String> {
        let out = match self {
            Self::Zstd => {
                let mut out = Vec::with_capacity(expected);
                let mut decoder = zstd::stream::read::Decoder::new(data).map_err(|e| format!("zstd: {e}"))?;
                (&mut decoder).take(expected as u64 + 1).read_to_end(&mut out).map_err(|e| format!("zstd: {e}"))?;
                out
            }
            Self::Lz4 => {
                let mut out = Vec::with_capacity(expected);
                let decoder = lz4_flex::frame::FrameDecoder::new(data);
                decoder.take(expected as u64 + 1).read_to_end(&mut out).map_err(|e| format!("lz4: {e}"))?;
                out
            }
            Self::Blosc => blosc_decompress(data, expected)?,
        };
        if out.len() != expected {
            let more = if out.len() > expected { "more than " } else { "" };
            return Err(format!("{} data decompresses to {more}{} bytes, {expected} expected", self.name(), out.len()));
        }
        Ok(out)
    }
}

fn blosc_compress(data: &[u8], typesize: usize) -> Result<Vec<u8>, String> {
    let capacity = data.len() + BLOSC_OVERHEAD;
    let mut out: Vec<u8> = Vec::with_capacity(capacity);
    // SAFETY: `data` is valid for `data.len()` bytes of reads and `out` for `capacity` bytes of
    // writes; the `_ctx` function keeps no global state (safe from several threads) and writes
    // at most `destsize` bytes, returning how many (or <= 0 on failure).
    let written = unsafe {
        blosc_src::blosc_compress_ctx(
            BLOSC_LEVEL,
            1, // byte shuffle
            typesize.clamp(1, 255),
            data.len(),
            data.as_ptr().cast::<c_void>(),
            out.as_mut_ptr().cast::<c_void>(),
            capacity,
            BLOSC_COMPRESSOR.as_ptr(),
            0, // automatic block size
            1, // no internal threads
        )
    };
    let written = usize::try_from(written).ok().filter(|n| *n > 0).ok_or("blosc: compression failed")?;
    // SAFETY: blosc initialised the first `written` (<= capacity) bytes.
    unsafe { out.set_len(written) };
    Ok(out)
}

fn blosc_decompress(data: &[u8], expected: usize) -> Result<Vec<u8>, String> {
    let mut nbytes = 0usize;
    // SAFETY: validates the header against `data.len()` before reading further; writes one usize.
    let valid = unsafe { blosc_src::blosc_cbuffer_validate(data.as_ptr().cast::<c_void>(), data.len(), &mut nbytes) };
    if valid < 0 {
        return Err("blosc: not a valid blosc buffer".into());
    }
    if nbytes != expected {
        return Err(format!("blosc data decompresses to {nbytes} bytes, {expected} expected"));
    }
    let mut out: Vec<u8> = Vec::with_capacity(expected);
    // SAFETY: the buffer was validated against its length above; `out` has room for
    // `expected` bytes, which bounds what is written.
    let written = unsafe {
        blosc_src::blosc_decompress_ctx(data.as_ptr().cast::<c_void>(), out.as_mut_ptr().cast::<c_void>(), expected, 1)
    };
    let written = usize::try_from(written).ok().filter(|n| *n == expected).ok_or("blosc: corrupt data")?;
    // SAFETY: blosc wrote `written` == `expected` bytes.
    unsafe { out.set_len(written) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        let data: Vec<u8> = (0..10_000u32).flat_map(|i| (i / 7).to_le_bytes()).collect();
        for codec in Codec::ALL {
            let packed = codec.compress(&data, 4).unwrap();
            assert!(packed.len() < data.len() / 2, "{codec:?}");
            assert_eq!(codec.decompress(&packed, data.len()).unwrap(), data);
            assert!(codec.decompress(&packed, data.len() - 1).is_err(), "{codec:?}");
            assert!(codec.decompress(&packed, data.len() + 1).is_err(), "{codec:?}");
            assert!(codec.decompress(b"not compressed at all", 10).is_err(), "{codec:?}");
            assert_eq!(Codec::parse(codec.name()), Ok(codec));
        }
        assert!(Codec::parse("gzip").is_err());
    }
}
