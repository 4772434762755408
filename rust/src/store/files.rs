//! File operations of the store: whole files replaced atomically (written beside, renamed
//! over), and I/O errors turned into the crate's error (a full disk is its own kind).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::direct::{open_direct, refused, worth_direct, write_direct, AlignedBuf};
use crate::error::CoreError;

/// Distinguishes the temporary files of one process.
static TEMPORARIES: AtomicU64 = AtomicU64::new(0);

/// `error` while doing `what`: [`CoreError::StorageFull`] when the disk or quota is full.
pub fn io_error(what: &str, error: &std::io::Error) -> CoreError {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    if matches!(error.kind(), StorageFull | QuotaExceeded) {
        CoreError::StorageFull(format!("{what}: {error}"))
    } else {
        CoreError::Storage(format!("{what}: {error}"))
    }
}

/// Replaces (or creates) `path` with `bytes`: readers see the old file or the new one, never
/// a part (the new one is written beside it and renamed over it; a failure removes it).
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), CoreError> {
    replace_with(path, |temporary| std::fs::File::create(temporary)?.write_all(bytes))
}

/// [`replace`] with a chunk's stored bytes: written directly (see `direct.rs`) when large and
/// the filesystem allows, through the page cache otherwise.
pub fn replace_chunk(path: &Path, buffer: &AlignedBuf) -> Result<(), CoreError> {
    replace_with(path, |temporary| {
        let bytes = buffer.bytes();
        if let Some(file) = worth_direct(bytes.len()).then(|| open_direct(temporary, true)).flatten() {
            match write_direct(&file, buffer, 0) {
                // The padding goes again.
                Ok(()) => return file.set_len(bytes.len() as u64),
                Err(e) if !refused(&e) => return Err(e),
                Err(_) => {}
            }
        }
        std::fs::File::create(temporary)?.write_all(bytes)
    })
}

/// Writes `path` by `write` into a temporary file beside it, then renames it over `path`.
fn replace_with(path: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<(), CoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let n = TEMPORARIES.fetch_add(1, Ordering::Relaxed);
    let temporary = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let written = write(&temporary).and_then(|()| std::fs::rename(&temporary, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        io_error(&format!("writing {}", path.display()), &e)
    })
}

/// Creates the directories of `path`'s parent.
pub fn make_parent(path: &Path) -> Result<(), CoreError> {
    match path.parent() {
        Some(parent) => {
            std::fs::create_dir_all(parent).map_err(|e| io_error(&format!("creating {}", parent.display()), &e))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files() {
        let dir = std::env::temp_dir().join(format!("ferrotile-files-{}", std::process::id()));
        let path = dir.join("a/b/file");
        make_parent(&path).unwrap();
        replace(&path, b"one").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        // A large chunk, written directly: its exact bytes, no padding left.
        let big: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
        let mut buffer = AlignedBuf::new();
        buffer.room(big.len()).copy_from_slice(&big);
        buffer.set_len(big.len());
        replace_chunk(&path, &buffer).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), big);
        let full = io_error("x", &std::io::Error::from_raw_os_error(28));
        assert!(matches!(full, CoreError::StorageFull(_)));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
