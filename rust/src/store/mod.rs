//! The storage engine of persisted array writes: zarr v3 arrays written from Rust, in the
//! layout zarr-python (and so Tiled and every other zarr reader) opens.
//!
//! It covers the arrays ferrotile creates: a `bytes` codec (either byte order) optionally
//! followed by `zstd`, in plain chunks or in shards whose index sits at the start of the shard
//! without a checksum (the layout of appendable arrays, see `docs/storage.md`). Other layouts
//! are [`crate::error::CoreError::StoreUnsupported`]; the control plane's zarr-python writer
//! stores those. Reads stay in Python.
//!
//! Why not the `zarrs` crate: a library writes a shard whole (read, merge, rewrite), so an
//! append of one frame would cost a rewrite of its shard; here a frame is appended to the shard
//! and its index entry rewritten in place (`shard_file.rs`), which is what makes one shard file
//! per thousands of frames affordable at detector rates. The subset needed is small and its
//! output is checked against zarr-python in the tests.

mod chunk_codec;
mod direct;
mod files;
mod metadata;
mod open_arrays;
mod raw_frame;
mod region;
mod shard_file;
mod zarr_array;

pub use chunk_codec::{ChunkCodec, Endian};
pub use metadata::{ArrayMetadata, Sharding};
pub use open_arrays::OpenArrays;
pub use zarr_array::{Patch, ZarrArray};
