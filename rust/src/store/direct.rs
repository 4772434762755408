//! Direct I/O of large stored chunks: the encoded bytes sit in a 4 KiB-aligned buffer kept by
//! the writing thread, and are written with `O_DIRECT` at a 4 KiB-aligned offset, bypassing
//! the page cache.
//!
//! Why: writing new file data through the page cache costs the kernel a fresh page per 4 KiB
//! (zeroed, then copied into), ~77% of the server's CPU at 8 MiB frames, and on this class of VM
//! `dd` of new data runs 5-10x faster with `oflag=direct`. The length written is padded to the
//! alignment; the padding is never read (a shard's index gives each chunk's exact length, a
//! whole chunk file is cut to its length after the write). Filesystems that refuse `O_DIRECT`
//! (tmpfs answers `EINVAL`) get the same bytes through the page cache instead. Small chunks
//! (below [`DIRECT_MIN`]) always go through the page cache: padding them to 4 KiB would waste
//! space and a direct write waits for the device.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Alignment of buffers, offsets and lengths of direct writes (a page: covers 512-byte and
/// 4 KiB logical blocks).
pub const ALIGN: u64 = 4096;
/// Smallest stored chunk written directly.
pub const DIRECT_MIN: usize = 64 * 1024;
/// Largest buffer a thread keeps between chunks (a bigger one is dropped after use).
const KEEP_MAX: usize = 64 * 1024 * 1024;

thread_local! {
    /// The writing thread's chunk buffer, kept between chunks: a fresh one per chunk would cost
    /// the page faults and zeroing that direct I/O saves.
    static BUFFER: RefCell<AlignedBuf> = const { RefCell::new(AlignedBuf::new()) };
    /// The writing thread's staging buffer, kept (its size is [`STAGE_BYTES`]).
    static STAGING: RefCell<AlignedBuf> = const { RefCell::new(AlignedBuf::new()) };
}

/// Most bytes of large chunks gathered for one direct write: one write of several MiB runs at
/// ~2 GB/s on this class of VM where one per 256 KiB chunk ran at ~1.3 GB/s (`dd oflag=direct`).
pub const STAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest chunk staged: a bigger one is written alone (it is large enough to write
/// efficiently, and staging would copy it once more).
pub const STAGE_CHUNK_MAX: usize = 1024 * 1024;

/// `n` rounded up to the alignment.
pub fn aligned(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// A byte buffer whose contents start at a 4 KiB-aligned address, with room after them up to
/// the next multiple of 4 KiB (what a direct write sends).
pub struct AlignedBuf {
    storage: Vec<u8>,
    len: usize,
}

impl AlignedBuf {
    /// An empty buffer (it allocates on first use).
    pub const fn new() -> Self {
        Self { storage: Vec::new(), len: 0 }
    }

    /// Where the aligned contents start in `storage`.
    fn start(&self) -> usize {
        let offset = self.storage.as_ptr().align_offset(ALIGN as usize);
        if offset > self.storage.len() {
            0
        } else {
            offset
        }
    }

    /// Room for `capacity` bytes (and the padding after them), contents unspecified: the
    /// writable slice, its length `capacity`.
    pub fn room(&mut self, capacity: usize) -> &mut [u8] {
        let padded = aligned(capacity as u64) as usize;
        if self.storage.len() < padded + ALIGN as usize {
            self.storage = vec![0; padded + ALIGN as usize];
        }
        let start = self.start();
        self.len = 0;
        &mut self.storage[start..start + capacity]
    }

    /// Sets the length of the contents (after writing them into [`AlignedBuf::room`]).
    pub fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// The contents.
    pub fn bytes(&self) -> &[u8] {
        let start = self.start();
        &self.storage[start..start + self.len]
    }

    /// The contents and the padding after them, to the next multiple of 4 KiB (what a direct
    /// write sends; the padding is zeros or bytes of an earlier chunk).
    pub fn padded(&self) -> &[u8] {
        let start = self.start();
        &self.storage[start..start + aligned(self.len as u64) as usize]
    }

    /// Appends `bytes` at the next multiple of 4 KiB after the contents, in a buffer of
    /// `capacity` bytes (allocated once, when empty): their offset, or `None` if they do not fit
    /// (the contents are then unchanged).
    pub fn append_padded(&mut self, bytes: &[u8], capacity: usize) -> Option<usize> {
        if self.len == 0 && self.storage.len() < capacity + ALIGN as usize {
            self.storage = vec![0; capacity + ALIGN as usize];
        }
        let at = aligned(self.len as u64) as usize;
        let start = self.start();
        if start + aligned((at + bytes.len()) as u64) as usize > self.storage.len() {
            return None;
        }
        self.storage[start + at..start + at + bytes.len()].copy_from_slice(bytes);
        self.len = at + bytes.len();
        Some(at)
    }
}

/// Runs `f` with the thread's staging buffer: large chunks gathered for one direct write
/// (`ShardFile::stage`).
pub fn with_staging<T>(f: impl FnOnce(&mut AlignedBuf) -> T) -> T {
    STAGING.with(|cell| f(&mut cell.borrow_mut()))
}

/// Runs `f` with the thread's chunk buffer.
pub fn with_buffer<T>(f: impl FnOnce(&mut AlignedBuf) -> T) -> T {
    BUFFER.with(|cell| {
        let mut buffer = cell.borrow_mut();
        let out = f(&mut buffer);
        if buffer.storage.len() > KEEP_MAX {
            *buffer = AlignedBuf::new();
        }
        out
    })
}

/// Whether a chunk of `len` stored bytes is worth a direct write.
pub fn worth_direct(len: usize) -> bool {
    len >= DIRECT_MIN
}

/// Opens `path` (existing, or created if `create`) for direct writes; `None` where the
/// filesystem refuses `O_DIRECT` (or it cannot be opened that way for another reason: the
/// caller then writes through the page cache, which reports any real error).
pub fn open_direct(path: &Path, create: bool) -> Option<File> {
    std::fs::OpenOptions::new().write(true).create(create).custom_flags(libc::O_DIRECT).open(path).ok()
}

/// Writes `buffer`'s padded contents at `offset` (a multiple of [`ALIGN`]) of `file` opened by
/// [`open_direct`].
///
/// # Errors
/// The I/O error (`EINVAL` if the filesystem refuses this direct write after all: the caller
/// retries through the page cache).
pub fn write_direct(file: &File, buffer: &AlignedBuf, offset: u64) -> std::io::Result<()> {
    debug_assert_eq!(offset % ALIGN, 0);
    file.write_all_at(buffer.padded(), offset)
}

/// Whether `error` means the filesystem refuses direct I/O for this write.
pub fn refused(error: &std::io::Error) -> bool {
    error.raw_os_error() == Some(libc::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_is_aligned_and_padded() {
        let mut buffer = AlignedBuf::new();
        buffer.room(5000).fill(7);
        buffer.set_len(5000);
        assert_eq!(buffer.bytes().as_ptr() as usize % ALIGN as usize, 0);
        assert_eq!(buffer.bytes().len(), 5000);
        assert_eq!(buffer.padded().len(), 8192);
        assert!(buffer.bytes().iter().all(|b| *b == 7));
        assert_eq!(aligned(0), 0);
        assert_eq!(aligned(1), 4096);
        assert_eq!(aligned(4096), 4096);
    }
}
