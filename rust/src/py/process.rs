//! Python entry point of the process-wide settings a server process makes for itself.

use pyo3::prelude::*;

/// Turns transparent huge pages off for this process (see `edge::disable_transparent_huge_pages`).
#[pyfunction]
pub fn disable_transparent_huge_pages() {
    crate::edge::disable_transparent_huge_pages();
}
