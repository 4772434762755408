//! `ShardFile`: one shard of a `sharding_indexed` array whose index (no checksum) is at the
//! start of the file. An inner chunk is written by appending its bytes at the end of the file,
//! then rewriting its 16-byte index entry in place: one shard file holds many frames, and an
//! append costs two small writes, not a rewrite of the shard.
//!
//! Crash safety: an entry is 16 bytes at a 16-byte aligned offset (never across a page), written
//! by one `pwrite` after the bytes it points to, so a process killed at any moment leaves the
//! old entry or the new one, each pointing at complete bytes. Large new chunks may be staged
//! and written together by one direct write ([`ShardFile::stage`], [`ShardFile::flush`]); their
//! entries are written after it, in the same way. Bytes of replaced chunks (and of
//! appends cut short) are dead space until the shard is compacted: rewritten whole beside the
//! old one and renamed over it, once its dead bytes outweigh its live ones.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::direct::{
    aligned, open_direct, refused, with_staging, worth_direct, write_direct, AlignedBuf, STAGE_BYTES, STAGE_CHUNK_MAX,
};
use super::files::{io_error, make_parent, replace};
use crate::error::{CoreError, CoreResult};

/// Both halves of an absent chunk's entry.
const ABSENT: u64 = u64::MAX;
/// Bytes of one index entry (offset, size).
const ENTRY: u64 = 16;
/// Dead bytes tolerated whatever the live size (no compaction of small shards).
const DEAD_SLACK: u64 = 1 << 20;

/// An open shard.
pub struct ShardFile {
    path: PathBuf,
    file: File,
    chunks: u64,
    /// The shard opened for direct writes, once a large chunk came (`None` inside: the
    /// filesystem refuses them).
    direct: Option<Option<File>>,
    /// Large new chunks gathered in the thread's staging buffer, not written yet.
    staged: Option<Staged>,
}

/// Chunks in the staging buffer: where its bytes go in the file, and each chunk's index, offset
/// and length.
struct Staged {
    base: u64,
    end: u64,
    entries: Vec<(u64, u64, u64)>,
}

impl ShardFile {
    /// Opens the shard at `path` of `chunks` inner chunks, creating it (empty) if missing.
    ///
    /// # Errors
    /// [`CoreError::Storage`]/[`CoreError::StorageFull`] on I/O errors, or an existing file too
    /// short for its index.
    pub fn open(path: &Path, chunks: u64) -> CoreResult<Self> {
        let open = || OpenOptions::new().read(true).write(true).open(path);
        let file = match open() {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                make_parent(path)?;
                replace(path, &vec![0xff; (chunks * ENTRY) as usize])?;
                open().map_err(|e| io_error(&format!("opening {}", path.display()), &e))?
            }
            Err(e) => return Err(io_error(&format!("opening {}", path.display()), &e)),
        };
        let shard = Self { path: path.to_owned(), file, chunks, direct: None, staged: None };
        if shard.len()? < chunks * ENTRY {
            return Err(CoreError::Storage(format!("{} is shorter than its index", path.display())));
        }
        Ok(shard)
    }

    /// Opens the shard at `path` of `chunks` inner chunks to read it (`None`: never written,
    /// every chunk of it reads as the fill value).
    ///
    /// # Errors
    /// On I/O errors, or a file too short for its index.
    pub fn open_to_read(path: &Path, chunks: u64) -> CoreResult<Option<Self>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&format!("opening {}", path.display()), &e)),
        };
        let shard = Self { path: path.to_owned(), file, chunks, direct: None, staged: None };
        if shard.len()? < chunks * ENTRY {
            return Err(CoreError::Storage(format!("{} is shorter than its index", path.display())));
        }
        Ok(Some(shard))
    }

    fn len(&self) -> CoreResult<u64> {
        let meta = self.file.metadata().map_err(|e| io_error(&format!("reading {}", self.path.display()), &e))?;
        Ok(meta.len())
    }

    fn entry(&self, i: u64) -> CoreResult<Option<(u64, u64)>> {
        let mut raw = [0u8; ENTRY as usize];
        self.file
            .read_exact_at(&mut raw, i * ENTRY)
            .map_err(|e| io_error(&format!("reading {}", self.path.display()), &e))?;
        let (offset, size) = raw.split_at(8);
        let offset = u64::from_le_bytes(offset.try_into().unwrap_or_default());
        let size = u64::from_le_bytes(size.try_into().unwrap_or_default());
        Ok((offset != ABSENT || size != ABSENT).then_some((offset, size)))
    }

    /// The stored bytes of inner chunk `i` (`None`: never written, it reads as the fill value).
    ///
    /// # Errors
    /// On I/O errors.
    pub fn read(&self, i: u64) -> CoreResult<Option<Vec<u8>>> {
        let Some((offset, size)) = self.entry(i)? else { return Ok(None) };
        let mut bytes = vec![0u8; size as usize];
        self.file
            .read_exact_at(&mut bytes, offset)
            .map_err(|e| io_error(&format!("reading {}", self.path.display()), &e))?;
        Ok(Some(bytes))
    }

    /// Stores `stored` (the encoded chunk in the thread's aligned buffer) as inner chunk `i`:
    /// a large chunk directly at the next 4 KiB boundary past the end (see `direct.rs`), a
    /// small one at the end through the page cache. On failure (e.g. a full disk) the shard
    /// reads as before: the bytes appended so far are cut off again and the entry is untouched.
    ///
    /// # Errors
    /// [`CoreError::StorageFull`] when the disk is full, [`CoreError::Storage`] otherwise.
    pub fn write(&mut self, i: u64, stored: &AlignedBuf) -> CoreResult<()> {
        let bytes = stored.bytes();
        let replaced = self.entry(i)?.is_some();
        let end = self.len()?;
        let at = match self.append(stored, end) {
            Ok(at) => at,
            Err(e) => {
                let _ = self.file.set_len(end);
                return Err(io_error(&format!("writing {}", self.path.display()), &e));
            }
        };
        if let Err(e) = self.write_entry(i, at, bytes.len() as u64) {
            let _ = self.file.set_len(end);
            return Err(io_error(&format!("writing {}", self.path.display()), &e));
        }
        if replaced {
            self.compact_if_wasteful()?;
        }
        Ok(())
    }

    /// Index entry `i`: the chunk's offset and length, one `pwrite` (see the module docs).
    fn write_entry(&self, i: u64, at: u64, len: u64) -> std::io::Result<()> {
        let mut raw = [0u8; ENTRY as usize];
        raw[..8].copy_from_slice(&at.to_le_bytes());
        raw[8..].copy_from_slice(&len.to_le_bytes());
        self.file.write_all_at(&raw, i * ENTRY)
    }

    /// Stores chunk `i` as [`ShardFile::write`] does, except that a large chunk (64 KiB to
    /// 1 MiB) new to the shard is gathered in the thread's staging buffer with those staged
    /// before it, to be written with them by one direct write at [`ShardFile::flush`], which the
    /// caller must call (a shard dropped with chunks staged loses them, unindexed: as a write
    /// cut short).
    ///
    /// # Errors
    /// As [`ShardFile::write`]; a failed flush of earlier staged chunks included.
    pub fn stage(&mut self, i: u64, stored: &AlignedBuf) -> CoreResult<()> {
        let len = stored.bytes().len();
        let staged_already = self.staged.as_ref().is_some_and(|s| s.entries.iter().any(|(j, _, _)| *j == i));
        let new = !staged_already && self.entry(i)?.is_none();
        if !(new && worth_direct(len) && len <= STAGE_CHUNK_MAX && self.direct_file().is_some()) {
            self.flush()?;
            return self.write(i, stored);
        }
        if self.staged.is_none() {
            let end = self.len()?;
            with_staging(|staging| staging.set_len(0));
            self.staged = Some(Staged { base: aligned(end), end, entries: Vec::new() });
        }
        let Some(offset) = with_staging(|staging| staging.append_padded(stored.bytes(), STAGE_BYTES)) else {
            // The staging buffer is full: write what it holds, then stage this one anew.
            self.flush()?;
            return self.stage(i, stored);
        };
        if let Some(staged) = self.staged.as_mut() {
            staged.entries.push((i, staged.base + offset as u64, len as u64));
        }
        Ok(())
    }

    /// Writes the staged chunks (one direct write), then their index entries.
    ///
    /// # Errors
    /// The I/O error; the file is then cut back and no staged chunk is indexed.
    pub fn flush(&mut self) -> CoreResult<()> {
        let Some(staged) = self.staged.take() else { return Ok(()) };
        let mut written = match self.direct_file() {
            Some(file) => with_staging(|staging| write_direct(file, staging, staged.base)),
            None => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
        };
        if written.as_ref().is_err_and(refused) {
            // The filesystem refuses this direct write: the same bytes through the page cache.
            self.direct = Some(None);
            written = with_staging(|staging| self.file.write_all_at(staging.bytes(), staged.base));
        }
        let what = || format!("writing {}", self.path.display());
        if let Err(e) = written {
            let _ = self.file.set_len(staged.end);
            return Err(io_error(&what(), &e));
        }
        for (i, at, len) in &staged.entries {
            // On an error, entries already written point at complete bytes; the rest stay absent.
            self.write_entry(*i, *at, *len).map_err(|e| io_error(&what(), &e))?;
        }
        Ok(())
    }

    /// The shard opened for direct writes, if the filesystem takes them.
    fn direct_file(&mut self) -> Option<&File> {
        let path = &self.path;
        self.direct.get_or_insert_with(|| open_direct(path, false)).as_ref()
    }

    /// Appends `stored` past `end` (the file's length); where it starts.
    fn append(&mut self, stored: &AlignedBuf, end: u64) -> std::io::Result<u64> {
        if worth_direct(stored.bytes().len()) {
            if let Some(file) = self.direct_file() {
                let at = aligned(end);
                match write_direct(file, stored, at) {
                    Ok(()) => return Ok(at),
                    Err(e) if !refused(&e) => return Err(e),
                    // Refused after all: through the page cache from now on.
                    Err(_) => self.direct = Some(None),
                }
            }
        }
        self.file.write_all_at(stored.bytes(), end).map(|()| end)
    }

    /// Rewrites the shard without its dead bytes if they outweigh the live ones.
    fn compact_if_wasteful(&mut self) -> CoreResult<()> {
        let mut entries = Vec::with_capacity(self.chunks as usize);
        for i in 0..self.chunks {
            entries.push(self.entry(i)?);
        }
        let live: u64 = entries.iter().flatten().map(|(_, size)| size).sum();
        let dead = self.len()?.saturating_sub(self.chunks * ENTRY + live);
        if dead <= live.max(DEAD_SLACK) {
            return Ok(());
        }
        let mut index = Vec::with_capacity((self.chunks * ENTRY) as usize);
        let mut body = Vec::with_capacity(live as usize);
        for entry in &entries {
            let (offset, size) = match entry {
                Some((offset, size)) => {
                    let mut bytes = vec![0u8; *size as usize];
                    self.file.read_exact_at(&mut bytes, *offset).map_err(|e| io_error("compacting a shard", &e))?;
                    let at = self.chunks * ENTRY + body.len() as u64;
                    body.extend_from_slice(&bytes);
                    (at, *size)
                }
                None => (ABSENT, ABSENT),
            };
            index.extend_from_slice(&offset.to_le_bytes());
            index.extend_from_slice(&size.to_le_bytes());
        }
        index.extend_from_slice(&body);
        replace(&self.path, &index)?;
        *self = Self::open(&self.path, self.chunks)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(bytes: &[u8]) -> AlignedBuf {
        let mut buffer = AlignedBuf::new();
        buffer.room(bytes.len()).copy_from_slice(bytes);
        buffer.set_len(bytes.len());
        buffer
    }

    #[test]
    fn large_chunks_go_at_aligned_offsets() {
        let dir = std::env::temp_dir().join(format!("ferrotile-shard-direct-{}", std::process::id()));
        let path = dir.join("c/0");
        let mut shard = ShardFile::open(&path, 3).unwrap();
        let small = b"tiny".to_vec();
        let big: Vec<u8> = (0..200_001u32).map(|i| (i % 253) as u8).collect();
        shard.write(0, &stored(&small)).unwrap();
        shard.write(1, &stored(&big)).unwrap();
        shard.write(2, &stored(&big[..70_000])).unwrap();
        // Direct writes (the temporary directory's filesystem takes them) start at 4 KiB
        // boundaries, after the small chunk written at the end of the index.
        assert_eq!(shard.entry(0).unwrap(), Some((48, 4)));
        assert_eq!(shard.entry(1).unwrap(), Some((4096, 200_001)));
        assert_eq!(shard.entry(2).unwrap(), Some((4096 + aligned(200_001), 70_000)));
        let shard = ShardFile::open(&path, 3).unwrap();
        assert_eq!(shard.read(0).unwrap().unwrap(), small);
        assert_eq!(shard.read(1).unwrap().unwrap(), big);
        assert_eq!(shard.read(2).unwrap().unwrap(), &big[..70_000]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refused_direct_writes_go_through_the_page_cache() {
        let dir = std::env::temp_dir().join(format!("ferrotile-shard-refused-{}", std::process::id()));
        let path = dir.join("c/0");
        let mut shard = ShardFile::open(&path, 2).unwrap();
        // A kernel refusal looks like this: a direct write of an unaligned buffer is EINVAL.
        if let Some(direct) = open_direct(&path, false) {
            let unaligned = vec![0u8; 4097];
            assert!(refused(&direct.write_all_at(&unaligned[1..], 4096).unwrap_err()));
        }
        // Once refused, large chunks are appended at the end like small ones.
        shard.direct = Some(None);
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
        shard.write(0, &stored(b"x")).unwrap();
        shard.write(1, &stored(&big)).unwrap();
        assert_eq!(shard.entry(1).unwrap(), Some((33, 100_000)));
        assert_eq!(ShardFile::open(&path, 2).unwrap().read(1).unwrap().unwrap(), big);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn appends_replaces_and_compacts() {
        let dir = std::env::temp_dir().join(format!("ferrotile-shard-{}", std::process::id()));
        let path = dir.join("c/0/0");
        let mut shard = ShardFile::open(&path, 4).unwrap();
        assert_eq!(shard.read(2).unwrap(), None);
        shard.write(2, &stored(b"hello")).unwrap();
        shard.write(0, &stored(b"abc")).unwrap();
        let shard = ShardFile::open(&path, 4).unwrap();
        assert_eq!(shard.read(2).unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(shard.read(0).unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 + 8);
        // Replacing a chunk again and again: the file stays bounded.
        let mut shard = shard;
        let big = vec![7u8; 600 << 10];
        for _ in 0..10 {
            shard.write(1, &stored(&big)).unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() < 3 * (600 << 10));
        assert_eq!(shard.read(1).unwrap().unwrap(), big);
        assert_eq!(shard.read(2).unwrap().as_deref(), Some(&b"hello"[..]));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn staged_chunks_go_in_one_write_and_are_indexed_at_flush() {
        let dir = std::env::temp_dir().join(format!("ferrotile-shard-staged-{}", std::process::id()));
        let path = dir.join("c/0");
        let mut shard = ShardFile::open(&path, 5).unwrap();
        let chunk = |seed: u32| -> Vec<u8> { (0..70_001u32).map(|i| ((i * seed) % 251) as u8).collect() };
        shard.write(0, &stored(b"small")).unwrap();
        shard.stage(1, &stored(&chunk(3))).unwrap();
        shard.stage(2, &stored(&chunk(5))).unwrap();
        // Staged, not yet indexed (nor, with direct I/O, written).
        assert_eq!(ShardFile::open(&path, 5).unwrap().read(1).unwrap(), None);
        // A small chunk is written at once, after the staged ones are flushed.
        shard.stage(3, &stored(b"tiny")).unwrap();
        let step = aligned(70_001);
        assert_eq!(shard.entry(1).unwrap(), Some((4096, 70_001)));
        assert_eq!(shard.entry(2).unwrap(), Some((4096 + step, 70_001)));
        shard.stage(4, &stored(&chunk(7))).unwrap();
        // A chunk staged again: the first is flushed, the second written over it as a replacement.
        shard.stage(4, &stored(&chunk(11))).unwrap();
        shard.flush().unwrap();
        let shard = ShardFile::open(&path, 5).unwrap();
        assert_eq!(shard.read(0).unwrap().as_deref(), Some(&b"small"[..]));
        assert_eq!(shard.read(1).unwrap().unwrap(), chunk(3));
        assert_eq!(shard.read(2).unwrap().unwrap(), chunk(5));
        assert_eq!(shard.read(3).unwrap().as_deref(), Some(&b"tiny"[..]));
        assert_eq!(shard.read(4).unwrap().unwrap(), chunk(11));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_shard_dropped_before_its_flush_indexes_nothing_staged() {
        let dir = std::env::temp_dir().join(format!("ferrotile-shard-dropped-{}", std::process::id()));
        let path = dir.join("c/0");
        let big: Vec<u8> = (0..80_000u32).map(|i| (i % 241) as u8).collect();
        let mut shard = ShardFile::open(&path, 2).unwrap();
        shard.stage(0, &stored(&big)).unwrap();
        drop(shard);
        let shard = ShardFile::open(&path, 2).unwrap();
        assert_eq!(shard.read(0).unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
