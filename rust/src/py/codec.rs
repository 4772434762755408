//! Python entry points of the envelope codec (`encode_message`).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::codec::envelope;
use crate::codec::Envelope;

/// Encodes a one-off message (e.g. the schema frame) as msgpack or JSON, without a sequence.
#[pyfunction]
#[pyo3(signature = (header, envelope = "msgpack"))]
pub fn encode_message<'py>(py: Python<'py>, header: &[u8], envelope: &str) -> PyResult<Bound<'py, PyBytes>> {
    let encoded = envelope::encode_message(header, Envelope::parse(envelope)?)?;
    Ok(PyBytes::new(py, &encoded))
}
