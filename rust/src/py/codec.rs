//! Python entry points of the envelope codec (`encode_message`).

use pyo3::prelude::*;

use crate::codec::envelope;
use crate::codec::Envelope;
use crate::py::objects::frame_object;

/// Encodes a one-off message (e.g. the schema frame) as msgpack (`bytes`) or JSON (`str`),
/// without a sequence.
#[pyfunction]
#[pyo3(signature = (header, envelope = "msgpack"))]
pub fn encode_message<'py>(py: Python<'py>, header: &[u8], envelope: &str) -> PyResult<Bound<'py, PyAny>> {
    let envelope = Envelope::parse(envelope)?;
    let encoded = envelope::encode_message(header, envelope)?;
    Ok(frame_object(py, &encoded, envelope))
}
