//! `Body`: request bytes received by the edge, lent to Python without a copy (a read-only
//! object with the buffer protocol, e.g. for `numpy.frombuffer`).

use std::ffi::{c_int, c_void};

use bytes::Bytes;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// Read-only bytes owned by Rust (see `ferrotile/_core.pyi`).
#[pyclass(name = "Body", module = "ferrotile._core", frozen)]
pub struct PyBody {
    bytes: Bytes,
}

impl PyBody {
    /// Lends `bytes` to Python.
    pub(crate) fn new(bytes: Bytes) -> Self {
        Self { bytes }
    }
}

#[pymethods]
impl PyBody {
    fn __len__(&self) -> usize {
        self.bytes.len()
    }

    /// # Safety
    /// Called by CPython with a `view` to fill, as the buffer protocol specifies.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let bytes = &slf.get().bytes;
        let Ok(len) = isize::try_from(bytes.len()) else {
            return Err(PyBufferError::new_err("buffer too large"));
        };
        // SAFETY: `view` is CPython's to fill (the protocol's contract). The memory is owned by
        // `slf` (a frozen object: `bytes` never changes or moves), and `PyBuffer_FillInfo` takes
        // a reference to `slf` in `view.obj`, so the memory outlives every export. It is
        // exported read-only (`readonly = 1`): a request for a writable buffer fails.
        let filled =
            unsafe { ffi::PyBuffer_FillInfo(view, slf.as_ptr(), bytes.as_ptr() as *mut c_void, len, 1, flags) };
        if filled == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("<Body of {} bytes>", self.bytes.len())
    }
}
