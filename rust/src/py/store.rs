//! Python entry point of the engine's zarr reader (`read_zarr_box`), for the control plane's
//! reads of arrays stored in the layouts the engine writes.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::CoreError;
use crate::store::ZarrArray;

/// The box of `size` at `start` of the zarr v3 array in `directory`, C order, and whether its
/// elements are big-endian; `None` for a layout the engine does not read (zarr-python then
/// does). Runs without the GIL.
#[pyfunction]
pub fn read_zarr_box<'py>(
    py: Python<'py>,
    directory: PathBuf,
    start: Vec<u64>,
    size: Vec<u64>,
) -> PyResult<Option<(Bound<'py, PyBytes>, bool)>> {
    let read = py.detach(|| {
        let array = ZarrArray::open(&directory)?;
        Ok::<_, CoreError>((array.read(&start, &size)?, array.big_endian()))
    });
    match read {
        Ok((bytes, big_endian)) => Ok(Some((PyBytes::new(py, &bytes), big_endian))),
        Err(CoreError::StoreUnsupported(_)) => Ok(None),
        Err(other) => Err(other.into()),
    }
}
