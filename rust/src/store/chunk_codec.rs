//! `ChunkCodec`: a zarr v3 codec chain of `bytes` (endianness), optionally followed by `zstd`,
//! as zarr-python writes by default; encodes and decodes one chunk.

use std::cell::RefCell;

use serde_json::Value;
use zstd::zstd_safe::CParameter;

use super::direct::AlignedBuf;
use super::raw_frame::{not_worth_compressing, sample_slices, write_raw_frame, SAMPLED_MIN};
use crate::error::{CoreError, CoreResult};

thread_local! {
    /// The blocking thread's compressor, kept between chunks: creating one (and its tables)
    /// per chunk cost ~4% of the server's CPU at 256 KiB frames.
    static COMPRESSOR: RefCell<Option<(Zstd, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// Byte order of stored elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// Least significant byte first.
    Little,
    /// Most significant byte first.
    Big,
}

/// `zstd` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zstd {
    /// Compression level (0: zstd's default).
    pub level: i32,
    /// A content checksum in each frame.
    pub checksum: bool,
}

/// How a chunk's bytes are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkCodec {
    /// Byte order of elements (chunks are handled in this order throughout the writer).
    pub endian: Endian,
    /// Compression, if any.
    pub zstd: Option<Zstd>,
}

impl ChunkCodec {
    /// Parses a codec list (`[bytes]` or `[bytes, zstd]`).
    ///
    /// # Errors
    /// [`CoreError::StoreUnsupported`] for any other chain.
    pub fn parse(codecs: &[Value], swap_unit: usize) -> CoreResult<Self> {
        let unsupported = |what: String| CoreError::StoreUnsupported(what);
        let Some((first, rest)) = codecs.split_first() else {
            return Err(unsupported("an empty codec list".into()));
        };
        if first["name"] != "bytes" {
            return Err(unsupported(format!("codec {}", first["name"])));
        }
        let endian = match first["configuration"]["endian"].as_str() {
            Some("big") if swap_unit > 1 => Endian::Big,
            Some("little") | None => Endian::Little,
            Some(_) => Endian::Little,
        };
        let zstd = match rest {
            [] => None,
            [codec] if codec["name"] == "zstd" => {
                let config = &codec["configuration"];
                let level = config["level"].as_i64().and_then(|l| i32::try_from(l).ok()).unwrap_or(0);
                Some(Zstd { level, checksum: config["checksum"].as_bool().unwrap_or(false) })
            }
            [codec] if codec["name"] == "crc32c" => return Err(unsupported("codec crc32c".into())),
            other => {
                let names: Vec<String> = other.iter().map(|c| c["name"].to_string()).collect();
                return Err(unsupported(format!("codecs {}", names.join(", "))));
            }
        };
        Ok(Self { endian, zstd })
    }

    /// Whether the chain compresses (its output size varies).
    pub fn compressed(&self) -> bool {
        self.zstd.is_some()
    }

    /// Encodes a chunk into `out` (the writing thread's aligned buffer, see `direct.rs`):
    /// compressed straight into it, or copied once (no compression, or a large chunk whose
    /// samples do not compress and no checksum is asked for: `raw_frame.rs`).
    ///
    /// # Errors
    /// [`CoreError::Storage`] if compression fails.
    pub fn encode_into(&self, raw: &[u8], out: &mut AlignedBuf) -> CoreResult<()> {
        let Some(zstd) = self.zstd else {
            out.room(raw.len()).copy_from_slice(raw);
            out.set_len(raw.len());
            return Ok(());
        };
        COMPRESSOR.with(|cached| {
            let mut cached = cached.borrow_mut();
            let reuse = matches!(&*cached, Some((settings, _)) if *settings == zstd);
            if !reuse {
                let mut compressor = zstd::bulk::Compressor::new(zstd.level).map_err(storage)?;
                compressor.set_parameter(CParameter::ChecksumFlag(zstd.checksum)).map_err(storage)?;
                *cached = Some((zstd, compressor));
            }
            let (_, compressor) = cached.as_mut().ok_or_else(|| CoreError::Storage("no compressor".into()))?;
            if raw.len() >= SAMPLED_MIN && !zstd.checksum {
                // Samples first: noise is written as raw blocks without the compressor's search.
                let (mut sampled, mut compressed) = (0, 0);
                for slice in sample_slices(raw) {
                    let scratch = out.room(zstd::zstd_safe::compress_bound(slice.len()));
                    compressed += compressor.compress_to_buffer(slice, scratch).map_err(storage)?;
                    sampled += slice.len();
                }
                if not_worth_compressing(sampled, compressed) {
                    write_raw_frame(raw, out);
                    return Ok(());
                }
            }
            let room = out.room(zstd::zstd_safe::compress_bound(raw.len()));
            let len = compressor.compress_to_buffer(raw, room).map_err(storage)?;
            out.set_len(len);
            Ok(())
        })
    }

    /// A chunk's elements (`expected` bytes) from its stored bytes.
    ///
    /// # Errors
    /// [`CoreError::Storage`] if the bytes do not decode to `expected` bytes.
    pub fn decode(&self, stored: &[u8], expected: usize) -> CoreResult<Vec<u8>> {
        let raw = match self.zstd {
            None => stored.to_vec(),
            Some(_) => zstd::bulk::decompress(stored, expected).map_err(storage)?,
        };
        if raw.len() != expected {
            return Err(CoreError::Storage(format!("a stored chunk holds {} bytes, not {expected}", raw.len())));
        }
        Ok(raw)
    }
}

fn storage(error: std::io::Error) -> CoreError {
    CoreError::Storage(format!("zstd: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::raw_frame::tests::noise;
    use serde_json::json;

    /// The `bytes` + `zstd` chain zarr-python writes, with or without a checksum.
    fn chain(checksum: bool) -> [Value; 2] {
        [
            json!({"name": "bytes", "configuration": {"endian": "little"}}),
            json!({"name": "zstd", "configuration": {"level": 0, "checksum": checksum}}),
        ]
    }

    #[test]
    fn round_trips() {
        let chain = chain(true);
        let codec = ChunkCodec::parse(&chain, 8).unwrap();
        assert_eq!(codec.zstd, Some(Zstd { level: 0, checksum: true }));
        let raw: Vec<u8> = (0..4096u32).flat_map(|i| (i % 7).to_le_bytes()).collect();
        let mut out = AlignedBuf::new();
        codec.encode_into(&raw, &mut out).unwrap();
        let stored = out.bytes().to_vec();
        assert!(stored.len() < raw.len());
        assert_eq!(codec.decode(&stored, raw.len()).unwrap(), raw);
        assert!(codec.decode(&stored, raw.len() + 1).is_err());
        let plain = ChunkCodec::parse(&chain[..1], 8).unwrap();
        plain.encode_into(&raw, &mut out).unwrap();
        assert_eq!(out.bytes(), &raw[..]);
        let gzip = [chain[0].clone(), json!({"name": "gzip"})];
        assert!(matches!(ChunkCodec::parse(&gzip, 8), Err(CoreError::StoreUnsupported(_))));
    }

    #[test]
    fn large_noise_is_stored_in_raw_blocks_and_counts_are_compressed() {
        let codec = ChunkCodec::parse(&chain(false), 2).unwrap();
        let noise = noise(262_144, 5);
        let mut out = AlignedBuf::new();
        codec.encode_into(&noise, &mut out).unwrap();
        // The header (10 bytes) and two raw blocks (3 bytes each) around the bytes as given.
        assert_eq!(out.bytes().len(), 262_144 + 16);
        assert_eq!(&out.bytes()[13..13 + 1000], &noise[..1000]);
        assert_eq!(codec.decode(out.bytes(), noise.len()).unwrap(), noise);
        let counts: Vec<u8> = noise.iter().enumerate().map(|(i, b)| if i % 2 == 0 { b % 5 } else { 0 }).collect();
        codec.encode_into(&counts, &mut out).unwrap();
        assert!(out.bytes().len() < counts.len() / 2, "{} bytes", out.bytes().len());
        assert_eq!(codec.decode(out.bytes(), counts.len()).unwrap(), counts);
        // With a checksum asked for, zstd writes the frame (raw blocks of its own and a checksum).
        let checked = ChunkCodec::parse(&chain(true), 2).unwrap();
        checked.encode_into(&noise, &mut out).unwrap();
        assert_eq!(checked.decode(out.bytes(), noise.len()).unwrap(), noise);
        assert_ne!(out.bytes().len(), 262_144 + 16);
    }
}
