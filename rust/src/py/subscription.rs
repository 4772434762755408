//! `Subscription` as seen from Python: the awaitable `next_batch` and the conversion of a batch
//! into `(list[bytes], close)` sharing one `bytes` object per message and envelope.

use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::deliver::{self, AbortOnCancel, Completion};
use crate::codec::Envelope;
use crate::hub::{Batch, Extension, Message, Subscription};

/// A subscription to one topic; created by `Hub.subscribe`.
#[pyclass(name = "Subscription", module = "ferrotile._core", frozen)]
pub struct PySubscription {
    inner: Arc<Subscription>,
}

impl PySubscription {
    pub(crate) fn new(inner: Subscription) -> Self {
        Self { inner: Arc::new(inner) }
    }
}

#[pymethods]
impl PySubscription {
    /// Awaits at least one frame or the close; returns `(frames, close)`.
    #[pyo3(signature = (max_messages = 64))]
    fn next_batch<'py>(&self, py: Python<'py>, max_messages: usize) -> PyResult<Bound<'py, PyAny>> {
        let envelope = self.inner.envelope();
        let event_loop = pyo3_async_runtimes::get_running_loop(py)?;
        let future = event_loop.call_method0(intern!(py, "create_future"))?;
        // JSON frames may be transcoded here (once per message): do that without the GIL.
        let ready = match envelope {
            Envelope::Json => py.detach(|| self.inner.try_next(max_messages)),
            Envelope::Msgpack => self.inner.try_next(max_messages),
        };
        if !ready.frames.is_empty() || ready.close.is_some() {
            // Fast path: no Tokio round trip when something is already there.
            future.call_method1(intern!(py, "set_result"), (PyBatch { batch: ready, envelope },))?;
            return Ok(future);
        }
        let sub = Arc::clone(&self.inner);
        let (event_loop, pending) = (event_loop.unbind(), future.clone().unbind());
        let task = pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            let batch = PyBatch { batch: sub.next_batch(max_messages).await, envelope };
            deliver::submit(Completion { event_loop, future: pending, batch });
        });
        future.call_method1(intern!(py, "add_done_callback"), (AbortOnCancel(task.abort_handle()),))?;
        Ok(future)
    }

    /// Ends the subscription; a pending `next_batch` returns `([], (1001, "subscription cancelled"))`.
    fn cancel(&self) {
        self.inner.cancel();
    }

    /// Sequence of the last frame handed out (0 if none).
    #[getter]
    fn last_sequence(&self) -> u64 {
        self.inner.last_sequence()
    }

    /// Sequences skipped because they were no longer retained.
    #[getter]
    fn missed(&self) -> u64 {
        self.inner.missed()
    }
}

/// A batch on its way to Python.
pub(crate) struct PyBatch {
    batch: Batch,
    envelope: Envelope,
}

impl<'py> IntoPyObject<'py> for PyBatch {
    type Target = PyTuple;
    type Output = Bound<'py, PyTuple>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let frames = PyList::new(py, self.batch.frames.iter().map(|m| shared_frame(py, m, self.envelope)))?;
        let close = self.batch.close.map(|c| (c.code, c.reason.into_owned()));
        (frames, close).into_pyobject(py)
    }
}

/// The one Python object of this message and envelope (`bytes` for msgpack, `str` for JSON, which
/// goes out as a text frame), created on first use and cached in the message's extension slot so
/// every subscriber gets the same object: no per-subscriber copy or decode.
fn shared_frame<'py>(py: Python<'py>, message: &Message, envelope: Envelope) -> Bound<'py, PyAny> {
    let slot = message.extension(envelope);
    if slot.get().is_none() {
        // `set` rather than `get_or_init`: never block on another thread while attached.
        let created: Extension = Arc::new(frame_object(py, message.envelope(envelope), envelope).unbind());
        let _ = slot.set(created);
    }
    match slot.get().and_then(|ext| (**ext).downcast_ref::<Py<PyAny>>()) {
        Some(frame) => frame.bind(py).clone(),
        None => frame_object(py, message.envelope(envelope), envelope),
    }
}

/// A Python object for encoded envelope bytes: `str` for JSON (always valid UTF-8), else `bytes`.
pub(crate) fn frame_object<'py>(py: Python<'py>, encoded: &[u8], envelope: Envelope) -> Bound<'py, PyAny> {
    match (envelope, std::str::from_utf8(encoded)) {
        (Envelope::Json, Ok(text)) => PyString::new(py, text).into_any(),
        _ => PyBytes::new(py, encoded).into_any(),
    }
}
