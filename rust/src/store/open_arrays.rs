//! `OpenArrays`: the zarr arrays a process writes, opened once per node (their metadata parsed
//! once), each behind its own lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::zarr_array::ZarrArray;
use crate::error::{CoreError, CoreResult};

/// An open array (`None`: a layout the writer does not handle, remembered as such).
type Entry = (PathBuf, Option<Arc<Mutex<ZarrArray>>>);

/// Open arrays by node id.
#[derive(Default)]
pub struct OpenArrays {
    arrays: Mutex<HashMap<u64, Entry>>,
}

impl OpenArrays {
    /// The array of node `id` stored in `dir`, opened on first use.
    ///
    /// # Errors
    /// [`CoreError::StoreUnsupported`] for a layout the writer does not handle (remembered:
    /// asked again, it answers the same without reading the disk), other errors if it cannot be
    /// read (not remembered).
    pub fn get(&self, id: u64, dir: &Path) -> CoreResult<Arc<Mutex<ZarrArray>>> {
        let mut arrays = self.arrays.lock();
        if let Some((known, entry)) = arrays.get(&id) {
            if known == dir {
                return entry.clone().ok_or_else(|| CoreError::StoreUnsupported(dir.display().to_string()));
            }
        }
        if arrays.len() > 1024 {
            // Forget the arrays nobody is writing, so the map stays as small as the writers.
            arrays.retain(|_, (_, entry)| entry.as_ref().is_some_and(|a| Arc::strong_count(a) > 1));
        }
        match ZarrArray::open(dir) {
            Ok(array) => {
                let array = Arc::new(Mutex::new(array));
                arrays.insert(id, (dir.to_owned(), Some(Arc::clone(&array))));
                Ok(array)
            }
            Err(CoreError::StoreUnsupported(why)) => {
                arrays.insert(id, (dir.to_owned(), None));
                Err(CoreError::StoreUnsupported(why))
            }
            Err(e) => Err(e),
        }
    }

    /// Forgets node `id` (its metadata may have been changed by someone else).
    pub fn forget(&self, id: u64) {
        self.arrays.lock().remove(&id);
    }
}
