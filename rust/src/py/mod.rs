//! The pyo3 binding layer: thin wrappers that convert arguments, release the GIL and map errors.
//! One class per engine type: `Hub`, `Subscription`, `EntrySubscription`; functions for the
//! envelope codec, the zarr reader and the server process's own settings (`process`).

pub mod args;
pub mod buffer;
pub mod codec;
pub mod control;
mod deliver;
pub mod edge;
pub mod entries;
pub mod errors;
pub mod hub;
mod objects;
pub mod process;
pub mod store;
pub mod subscription;

use pyo3::prelude::*;

/// Payloads at least this large are encoded with the GIL released; smaller ones are not worth
/// the cost (and the risk of waiting for the GIL to come back).
pub(crate) const DETACH_PAYLOAD_BYTES: usize = 256 * 1024;

/// Module initialisation beyond the exported names: the interpreter-exit hook.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    deliver::register(module)
}
