//! `ZarrArray`: writes boxes of elements into a zarr v3 array directory in the layout
//! zarr-python reads (chunk keys, codecs, shard files), grows its shape, and reads boxes back
//! (the control plane's reads of arrays in this layout: an array of many small chunks costs
//! zarr-python ~0.1 ms per chunk).
//!
//! Data is written before the shape that exposes it: a box past the current shape is stored
//! first (its chunks are invisible to readers until then), then [`ZarrArray::resize`] replaces
//! `zarr.json`. Whole chunks are replaced atomically (written beside, renamed over); shards are
//! appended to (see `shard_file.rs`). A write that fails (a full disk) leaves every chunk it had
//! not replaced yet as it was; a one-chunk write, such as an appended frame, leaves the array as
//! it was.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::chunk_codec::ChunkCodec;
use super::direct::with_buffer;
use super::files::{io_error, make_parent, replace, replace_chunk};
use super::metadata::ArrayMetadata;
use super::region::{cells_touched, copy_box, inner_cells, overlap, Side};
use super::shard_file::ShardFile;
use crate::error::{CoreError, CoreResult};

/// The metadata file of a zarr v3 node.
const METADATA: &str = "zarr.json";

/// An open zarr v3 array.
pub struct ZarrArray {
    dir: PathBuf,
    meta: ArrayMetadata,
    /// The inode of the `zarr.json` read or written last: another one means another process
    /// replaced it since.
    inode: u64,
}

/// The inode of `path`.
fn inode(path: &Path) -> CoreResult<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| io_error(&format!("reading {}", path.display()), &e))?;
    Ok(meta.ino())
}

/// A box of elements to write: where, how big, and the elements (C order, stored byte order).
pub struct Patch<'a> {
    /// Corner.
    pub start: &'a [u64],
    /// Shape.
    pub size: &'a [u64],
    /// `product(size) * item_size` bytes.
    pub data: &'a [u8],
}

impl ZarrArray {
    /// Opens the array in `dir`.
    ///
    /// # Errors
    /// [`CoreError::StoreUnsupported`] if its layout is not one this writer handles,
    /// [`CoreError::Storage`] if it cannot be read.
    pub fn open(dir: &Path) -> CoreResult<Self> {
        let path = dir.join(METADATA);
        let inode = inode(&path)?;
        let text = std::fs::read(&path).map_err(|e| io_error(&format!("reading {}", path.display()), &e))?;
        Ok(Self { dir: dir.to_owned(), meta: ArrayMetadata::parse(&text)?, inode })
    }

    /// Takes the array's lock, shared by every process writing it (an advisory lock on its
    /// directory, released when the returned file is dropped), and tells whether its metadata
    /// was replaced by someone else since this object read or wrote it (then it is read again).
    ///
    /// # Errors
    /// On I/O errors.
    pub fn lock(&mut self) -> CoreResult<(std::fs::File, bool)> {
        let what = || format!("locking {}", self.dir.display());
        let dir = std::fs::File::open(&self.dir).map_err(|e| io_error(&what(), &e))?;
        dir.lock().map_err(|e| io_error(&what(), &e))?;
        let changed = inode(&self.dir.join(METADATA))? != self.inode;
        if changed {
            *self = Self::open(&self.dir)?;
        }
        Ok((dir, changed))
    }

    /// Its metadata.
    pub fn metadata(&self) -> &ArrayMetadata {
        &self.meta
    }

    /// Writes `patch`, which must lie within `bounds` (the shape the array has or is about to
    /// be resized to).
    ///
    /// # Errors
    /// [`CoreError::StorageFull`] when the disk is full, [`CoreError::Storage`] for other I/O
    /// errors or a box outside `bounds`.
    pub fn write(&self, patch: &Patch<'_>, bounds: &[u64]) -> CoreResult<()> {
        self.write_all(std::slice::from_ref(patch), bounds)
    }

    /// Writes `patches` in order, as [`ZarrArray::write`] does each, with the large chunks new
    /// to a shard gathered into one direct write (a pushed batch of frames: one write of
    /// several MiB instead of one per frame; `ShardFile::stage`). All are checked first.
    ///
    /// # Errors
    /// As [`ZarrArray::write`]; nothing past the first failing write is stored, and chunks
    /// staged with it stay unindexed.
    pub fn write_all(&self, patches: &[Patch<'_>], bounds: &[u64]) -> CoreResult<()> {
        let rank = self.meta.shape.len();
        for patch in patches {
            let elements: u64 = patch.size.iter().product();
            let fits = patch.start.len() == rank
                && patch.size.len() == rank
                && bounds.len() == rank
                && (0..rank).all(|d| patch.start[d].checked_add(patch.size[d]).is_some_and(|end| end <= bounds[d]));
            if !fits || patch.data.len() as u64 != elements * self.meta.item_size as u64 {
                return Err(CoreError::Storage(format!(
                    "a box at {:?} of {:?} ({} bytes) does not fit an array of shape {bounds:?}",
                    patch.start,
                    patch.size,
                    patch.data.len()
                )));
            }
        }
        let grid = &self.meta.chunk_shape;
        // The shard being written (kept open from one patch to the next).
        let mut open: Option<(PathBuf, ShardFile)> = None;
        for patch in patches {
            for cell in cells_touched(patch.start, patch.size, grid) {
                let origin: Vec<u64> = cell.iter().zip(grid).map(|(c, n)| c * n).collect();
                let path = self.dir.join(self.meta.chunk_key(&cell));
                match &self.meta.sharding {
                    None => {
                        let load = || read_chunk(&path);
                        let raw = self.merge(&self.meta.codec, grid, &origin, patch, load)?;
                        make_parent(&path)?;
                        with_buffer(|stored| {
                            self.meta.codec.encode_into(&raw, stored)?;
                            replace_chunk(&path, stored)
                        })?;
                    }
                    Some(sharding) => {
                        let inner = &sharding.inner_shape;
                        let shard = shard_at(&mut open, path, sharding.chunks_per_shard(grid))?;
                        for (inner_origin, index) in inner_cells(patch.start, patch.size, &origin, grid, inner) {
                            let load = || {
                                shard.flush()?;
                                shard.read(index)
                            };
                            let raw = self.merge(&sharding.codec, inner, &inner_origin, patch, load)?;
                            with_buffer(|stored| {
                                sharding.codec.encode_into(&raw, stored)?;
                                shard.stage(index, stored)
                            })?;
                        }
                    }
                }
            }
        }
        match open {
            Some((_, mut shard)) => shard.flush(),
            None => Ok(()),
        }
    }

    /// Whether elements are stored most significant byte first.
    pub fn big_endian(&self) -> bool {
        let codec = self.meta.sharding.as_ref().map_or(&self.meta.codec, |s| &s.codec);
        codec.endian == super::chunk_codec::Endian::Big
    }

    /// The box of `size` at `start`, C order, in the stored byte order
    /// ([`ZarrArray::big_endian`]); chunks never written read as the fill value. The box may
    /// reach past the shape in `zarr.json` (the catalog's shape leads it while the control
    /// plane's writer grows an array): what is stored there is read, as zarr-python does once
    /// resized.
    ///
    /// # Errors
    /// [`CoreError::Storage`] for a box of another rank, I/O errors or a chunk that does not
    /// decode.
    pub fn read(&self, start: &[u64], size: &[u64]) -> CoreResult<Vec<u8>> {
        let shape = &self.meta.shape;
        let fits = start.len() == shape.len()
            && size.len() == shape.len()
            && (0..shape.len()).all(|d| start[d].checked_add(size[d]).is_some());
        if !fits {
            return Err(CoreError::Storage(format!("a box at {start:?} of {size:?} does not fit the shape {shape:?}")));
        }
        let mut out = vec![0u8; size.iter().product::<u64>() as usize * self.meta.item_size];
        if out.is_empty() {
            return Ok(out);
        }
        let grid = &self.meta.chunk_shape;
        for cell in cells_touched(start, size, grid) {
            let origin: Vec<u64> = cell.iter().zip(grid).map(|(c, n)| c * n).collect();
            let path = self.dir.join(self.meta.chunk_key(&cell));
            let Some(sharding) = &self.meta.sharding else {
                let stored = read_chunk(&path)?;
                self.copy_out(&self.meta.codec, grid, &origin, stored, (start, size, &mut out))?;
                continue;
            };
            let inner = &sharding.inner_shape;
            let shard = ShardFile::open_to_read(&path, sharding.chunks_per_shard(grid))?;
            for (inner_origin, index) in inner_cells(start, size, &origin, grid, inner) {
                let stored = match &shard {
                    Some(shard) => shard.read(index)?,
                    None => None,
                };
                self.copy_out(&sharding.codec, inner, &inner_origin, stored, (start, size, &mut out))?;
            }
        }
        Ok(out)
    }

    /// Copies the part of the box in the chunk of `shape` at `origin` (its `stored` bytes, or
    /// the fill value) into `out`.
    fn copy_out(
        &self,
        codec: &ChunkCodec,
        shape: &[u64],
        origin: &[u64],
        stored: Option<Vec<u8>>,
        (start, size, out): (&[u64], &[u64], &mut [u8]),
    ) -> CoreResult<()> {
        let item = self.meta.item_size;
        let (in_box, in_chunk, extent) = overlap(start, size, origin, shape);
        let target = Side { bytes: out, shape: size, at: &in_box };
        let Some(stored) = stored else {
            // Only the part read is filled: a chunk never written may be large.
            let part = extent.iter().product::<u64>() as usize * item;
            let fill: Vec<u8> = self.meta.fill.iter().copied().cycle().take(part).collect();
            let zeros = vec![0; extent.len()];
            copy_box(Side { bytes: &fill[..], shape: &extent, at: &zeros }, target, &extent, item);
            return Ok(());
        };
        let raw = codec.decode(&stored, shape.iter().product::<u64>() as usize * item)?;
        copy_box(Side { bytes: &raw[..], shape, at: &in_chunk }, target, &extent, item);
        Ok(())
    }

    /// The elements of the chunk of `shape` at `origin` once `patch`'s part of it is written
    /// in (to be encoded); the chunk's current bytes are loaded only if the patch covers it in
    /// part.
    fn merge<'a>(
        &self,
        codec: &ChunkCodec,
        shape: &[u64],
        origin: &[u64],
        patch: &Patch<'a>,
        load: impl FnOnce() -> CoreResult<Option<Vec<u8>>>,
    ) -> CoreResult<Cow<'a, [u8]>> {
        let item = self.meta.item_size;
        let (in_patch, in_chunk, extent) = overlap(patch.start, patch.size, origin, shape);
        let chunk_bytes = shape.iter().product::<u64>() as usize * item;
        if extent == shape && patch.size == shape {
            // The patch is exactly this chunk: encode it as it came.
            return Ok(Cow::Borrowed(patch.data));
        }
        let mut raw = if extent == shape {
            vec![0u8; chunk_bytes]
        } else {
            match load()? {
                Some(stored) => codec.decode(&stored, chunk_bytes)?,
                None => self.meta.fill.iter().copied().cycle().take(chunk_bytes).collect(),
            }
        };
        let source = Side { bytes: patch.data, shape: patch.size, at: &in_patch };
        copy_box(source, Side { bytes: &mut raw[..], shape, at: &in_chunk }, &extent, item);
        Ok(Cow::Owned(raw))
    }

    /// Sets the shape (and the ferrotile attributes' `structure`, if given) in `zarr.json`.
    ///
    /// # Errors
    /// [`CoreError::StorageFull`]/[`CoreError::Storage`] if it cannot be written; the old
    /// metadata then stays.
    pub fn resize(&mut self, shape: &[u64], structure: Option<&Value>) -> CoreResult<()> {
        let next = self.meta.resized(shape, structure);
        let text = serde_json::to_vec_pretty(&next.document).map_err(|e| CoreError::Storage(e.to_string()))?;
        let path = self.dir.join(METADATA);
        replace(&path, &text)?;
        self.meta = next;
        self.inode = inode(&path)?;
        Ok(())
    }
}

/// The shard at `path`, kept in `open`; the one open before is flushed first.
fn shard_at(open: &mut Option<(PathBuf, ShardFile)>, path: PathBuf, chunks: u64) -> CoreResult<&mut ShardFile> {
    if open.as_ref().is_none_or(|(at, _)| *at != path) {
        if let Some((_, mut previous)) = open.take() {
            previous.flush()?;
        }
        let shard = ShardFile::open(&path, chunks)?;
        *open = Some((path, shard));
    }
    open.as_mut().map(|(_, shard)| shard).ok_or_else(|| CoreError::Storage("no shard open".into()))
}

/// A whole chunk's stored bytes, if it was written.
fn read_chunk(path: &Path) -> CoreResult<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(&format!("reading {}", path.display()), &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes` then `zstd`, as zarr-python writes by default.
    const ZSTD: &str = r#"[{"name":"bytes","configuration":{"endian":"little"}},{"name":"zstd","configuration":{"level":0,"checksum":false}}]"#;

    /// Shards of `ZSTD` chunks of one row of `width` elements, index at the start.
    fn sharded(width: u64) -> String {
        format!(
            r#"[{{"name":"sharding_indexed","configuration":{{"chunk_shape":[1,{width}],"codecs":{ZSTD},"index_codecs":[{{"name":"bytes","configuration":{{"endian":"little"}}}}],"index_location":"start"}}}}]"#
        )
    }

    fn array(dir: &Path, codecs: &str, chunks: &str) -> ZarrArray {
        array_of(dir, codecs, chunks, 3)
    }

    /// An empty int16 array of rows of `width` elements.
    fn array_of(dir: &Path, codecs: &str, chunks: &str, width: u64) -> ZarrArray {
        std::fs::create_dir_all(dir).unwrap();
        let doc = format!(
            r#"{{"shape":[0,{width}],"data_type":"int16","chunk_grid":{{"name":"regular","configuration":{{"chunk_shape":{chunks}}}}},"chunk_key_encoding":{{"name":"default","configuration":{{"separator":"/"}}}},"fill_value":-1,"codecs":{codecs},"attributes":{{}},"zarr_format":3,"node_type":"array","storage_transformers":[]}}"#
        );
        std::fs::write(dir.join(METADATA), doc).unwrap();
        ZarrArray::open(dir).unwrap()
    }

    fn read_all(a: &ZarrArray, rows: u64) -> Vec<i16> {
        // Reads back through the writer's own pieces (zarr-python reads them in the Python tests).
        let meta = a.metadata();
        let mut out = Vec::new();
        for r in 0..rows {
            let probe = [r, 0];
            let cell: Vec<u64> = probe.iter().zip(&meta.chunk_shape).map(|(p, c)| p / c).collect();
            let path = a.dir.join(meta.chunk_key(&cell));
            let (codec, shape, stored) = match &meta.sharding {
                None => (meta.codec.clone(), meta.chunk_shape.clone(), read_chunk(&path).unwrap()),
                Some(s) => {
                    let per = meta.chunk_shape[0] / s.inner_shape[0];
                    let shard = ShardFile::open(&path, per).unwrap();
                    let i = (r % meta.chunk_shape[0]) / s.inner_shape[0];
                    (s.codec.clone(), s.inner_shape.clone(), shard.read(i).unwrap())
                }
            };
            let raw = codec.decode(&stored.unwrap(), (shape[0] * 3 * 2) as usize).unwrap();
            let row = (r % shape[0]) as usize * 6;
            out.extend(raw[row..row + 6].chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
        }
        out
    }

    fn frame(values: [i16; 3]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn appends(codecs: &str, chunks: &str, name: &str) {
        let dir = std::env::temp_dir().join(format!("ferrotile-zarr-{name}-{}", std::process::id()));
        let mut a = array(&dir, codecs, chunks);
        for i in 0..5u64 {
            let bytes = frame([i as i16, 10, 20]);
            a.write(&Patch { start: &[i, 0], size: &[1, 3], data: &bytes }, &[i + 1, 3]).unwrap();
            a.resize(&[i + 1, 3], None).unwrap();
        }
        // A partial overwrite keeps the rest of its chunk.
        let two = [7i16.to_le_bytes(), 8i16.to_le_bytes()].concat();
        a.write(&Patch { start: &[3, 1], size: &[1, 2], data: &two }, &[5, 3]).unwrap();
        assert_eq!(ZarrArray::open(&dir).unwrap().metadata().shape, vec![5, 3]);
        assert_eq!(read_all(&a, 5), vec![0, 10, 20, 1, 10, 20, 2, 10, 20, 3, 7, 8, 4, 10, 20]);
        // Read back as boxes: the whole array, one across chunks (or shards), an empty one.
        let values = |bytes: Vec<u8>| bytes.chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect::<Vec<_>>();
        assert_eq!(values(a.read(&[0, 0], &[5, 3]).unwrap()), read_all(&a, 5));
        assert_eq!(values(a.read(&[1, 1], &[3, 2]).unwrap()), vec![10, 20, 10, 20, 7, 8]);
        assert!(a.read(&[5, 0], &[0, 3]).unwrap().is_empty() && !a.big_endian());
        assert!(a.read(&[4, 0], &[2]).is_err() && a.read(&[u64::MAX, 0], &[2, 3]).is_err());
        // Another writer of the same directory replaces zarr.json: the next lock says so.
        let (_, changed) = a.lock().unwrap();
        assert!(!changed);
        let mut other = ZarrArray::open(&dir).unwrap();
        other.resize(&[6, 3], None).unwrap();
        let (_, changed) = a.lock().unwrap();
        assert!(changed && a.metadata().shape == vec![6, 3]);
        // Never written: the fill value.
        assert_eq!(values(a.read(&[4, 1], &[2, 2]).unwrap()), vec![10, 20, -1, -1]);
        let outside = a.write(&Patch { start: &[5, 0], size: &[1, 3], data: &frame([0; 3]) }, &[5, 3]);
        assert!(outside.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn appends_to_chunks_and_shards() {
        appends(ZSTD, "[2,3]", "chunks");
        appends(&sharded(3), "[4,3]", "shards");
    }

    #[test]
    fn several_large_frames_written_together_read_back() {
        let dir = std::env::temp_dir().join(format!("ferrotile-write-all-{}", std::process::id()));
        let a = array_of(&dir, &sharded(40_000), "[4,40000]", 40_000);
        // 80,000-byte frames of noise (stored as raw blocks, written directly), across two shards.
        let frames: Vec<Vec<u8>> = (0..6).map(|i| crate::store::raw_frame::tests::noise(80_000, i)).collect();
        let starts: Vec<[u64; 2]> = (0..6).map(|i| [i, 0]).collect();
        let patches: Vec<Patch<'_>> =
            frames.iter().zip(&starts).map(|(data, start)| Patch { start, size: &[1, 40_000], data }).collect();
        a.write_all(&patches[..5], &[6, 40_000]).unwrap();
        a.write(&patches[5], &[6, 40_000]).unwrap();
        assert_eq!(a.read(&[0, 0], &[6, 40_000]).unwrap(), frames.concat());
        // A patch that does not fit refuses the whole call before anything is written.
        let outside = Patch { start: &[6, 0], size: &[1, 40_000], data: &frames[0] };
        assert!(a.write_all(&[outside], &[6, 40_000]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
