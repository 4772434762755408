//! The pyo3 binding layer: thin wrappers that convert arguments, release the GIL and map errors.

pub mod codec;
pub mod errors;
pub mod hub;
mod subscription;
