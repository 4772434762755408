//! ferrotile's native data plane: the streaming hub and envelope codec, plus (feature `python`)
//! the `ferrotile._core` extension module registration.
#![deny(clippy::undocumented_unsafe_blocks)]

/// mimalloc for every Rust allocation of the extension: the data plane allocates a buffer per
/// frame (bodies, envelopes), and glibc's malloc returns large blocks to the system and faults
/// fresh zeroed pages in for each (measured: ~11% of the server's CPU at 256 KiB frames in
/// `clear_page`). Python's own allocations are unaffected.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backends;
pub mod codec;
pub mod edge;
pub mod error;
pub mod hub;
#[cfg(feature = "python")]
mod py;
pub mod redis;
pub mod store;
pub mod text;
pub mod view;

#[cfg(feature = "python")]
use pyo3::prelude::*;

/// The `ferrotile._core` extension module.
#[cfg(feature = "python")]
#[pymodule]
mod _core {
    #[pymodule_export]
    use crate::py::buffer::PyBody;
    #[pymodule_export]
    use crate::py::codec::encode_message;
    #[pymodule_export]
    use crate::py::edge::PyEdge;
    #[pymodule_export]
    use crate::py::entries::PyEntrySubscription;
    #[pymodule_export]
    use crate::py::hub::PyHub;
    #[pymodule_export]
    use crate::py::process::disable_transparent_huge_pages;
    #[pymodule_export]
    use crate::py::store::read_zarr_box;
    #[pymodule_export]
    use crate::py::subscription::PySubscription;

    #[pymodule_init]
    fn init(module: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        crate::py::register(module)
    }
}
