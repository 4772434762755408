//! The pyo3 binding layer: thin wrappers that convert arguments, release the GIL and map errors.

pub mod codec;
pub mod buffer;
pub mod control;
mod deliver;
pub mod edge;
pub mod entries;
pub mod errors;
pub mod hub;
pub mod redis;
pub(crate) mod subscription;

use pyo3::prelude::*;

/// Module initialisation beyond the exported names: the interpreter-exit hook.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    deliver::register(module)
}
