//! The Python objects handed out for messages: one `bytes` (msgpack) or `str` (JSON) per
//! message and envelope, and one `bytes` per raw payload, created on first use and cached in
//! the message's extension slots, so every subscriber gets the same object (no per-subscriber
//! copy or decode). A leaf module: the other binding modules use it.

use std::sync::{Arc, OnceLock};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::codec::Envelope;
use crate::hub::{Extension, Message};

/// The one Python object of this message and envelope (`bytes` for msgpack, `str` for JSON,
/// which goes out as a text frame).
pub(crate) fn shared_frame<'py>(py: Python<'py>, message: &Message, envelope: Envelope) -> Bound<'py, PyAny> {
    cached(py, message.extension(envelope), || frame_object(py, message.envelope(envelope), envelope))
}

/// The one Python `bytes` of a message's raw payload (`b""` if it has none).
pub(crate) fn shared_payload<'py>(py: Python<'py>, message: &Message) -> Bound<'py, PyAny> {
    let payload = || PyBytes::new(py, message.payload().map_or(&[][..], |p| p.as_ref())).into_any();
    cached(py, message.payload_extension(), payload)
}

/// The Python object cached in a message's slot, made by `make` on first use.
fn cached<'py>(py: Python<'py>, slot: &OnceLock<Extension>, make: impl Fn() -> Bound<'py, PyAny>) -> Bound<'py, PyAny> {
    if slot.get().is_none() {
        // `set` rather than `get_or_init`: never block on another thread while attached.
        let created: Extension = Arc::new(make().unbind());
        let _ = slot.set(created);
    }
    match slot.get().and_then(|ext| (**ext).downcast_ref::<Py<PyAny>>()) {
        Some(object) => object.bind(py).clone(),
        None => make(),
    }
}

/// A Python object for encoded envelope bytes: `str` for JSON (always valid UTF-8), else `bytes`.
pub(crate) fn frame_object<'py>(py: Python<'py>, encoded: &[u8], envelope: Envelope) -> Bound<'py, PyAny> {
    match (envelope, std::str::from_utf8(encoded)) {
        (Envelope::Json, Ok(text)) => PyString::new(py, text).into_any(),
        _ => PyBytes::new(py, encoded).into_any(),
    }
}
