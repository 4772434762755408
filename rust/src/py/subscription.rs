//! `Subscription` as seen from Python: the awaitable `next_batch` and the conversion of a batch
//! into `(list[bytes], close)` sharing one `bytes` object per message and envelope.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

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
        // JSON frames may be transcoded here (once per message): do that without the GIL.
        let ready = match envelope {
            Envelope::Json => py.detach(|| self.inner.try_next(max_messages)),
            Envelope::Msgpack => self.inner.try_next(max_messages),
        };
        if !ready.frames.is_empty() || ready.close.is_some() {
            // Fast path: skip the runtime round trip when something is already there.
            let future = pyo3_async_runtimes::get_running_loop(py)?.call_method0("create_future")?;
            future.call_method1("set_result", (PyBatch { batch: ready, envelope },))?;
            return Ok(future);
        }
        let sub = Arc::clone(&self.inner);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            Ok(PyBatch { batch: sub.next_batch(max_messages).await, envelope })
        })
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
struct PyBatch {
    batch: Batch,
    envelope: Envelope,
}

impl<'py> IntoPyObject<'py> for PyBatch {
    type Target = PyTuple;
    type Output = Bound<'py, PyTuple>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let frames = PyList::new(py, self.batch.frames.iter().map(|m| shared_bytes(py, m, self.envelope)))?;
        let close = self.batch.close.map(|c| (c.code, c.reason.into_owned()));
        (frames, close).into_pyobject(py)
    }
}

/// The one Python `bytes` object of this message and envelope, created on first use and cached
/// in the message's extension slot so every subscriber gets the same object.
fn shared_bytes<'py>(py: Python<'py>, message: &Message, envelope: Envelope) -> Bound<'py, PyBytes> {
    let slot = message.extension(envelope);
    if slot.get().is_none() {
        // `set` rather than `get_or_init`: never block on another thread while attached.
        let created: Extension = Arc::new(PyBytes::new(py, message.envelope(envelope)).unbind());
        let _ = slot.set(created);
    }
    match slot.get().and_then(|ext| (**ext).downcast_ref::<Py<PyBytes>>()) {
        Some(bytes) => bytes.bind(py).clone(),
        None => PyBytes::new(py, message.envelope(envelope)),
    }
}
