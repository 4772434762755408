//! `Subscription` as seen from Python: the awaitable `next_batch` and the conversion of a batch
//! into `(list[bytes | str], close)` sharing one object per message and envelope.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::deliver::{self, Waiter};
use super::objects::shared_frame;
use crate::codec::Envelope;
use crate::hub::{Batch, Subscription};

/// A subscription to one topic by sequence; made by `Hub.subscribe`.
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
        let waiter = BatchWaiter { subscription: Arc::clone(&self.inner), max: max_messages };
        deliver::awaitable(py, Box::new(waiter))
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

    /// Messages dropped by the overflow policy.
    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }

    /// Envelope bytes between this subscriber and the head (past its replay range).
    #[getter]
    fn backlog_bytes(&self) -> usize {
        self.inner.backlog_bytes()
    }
}

/// An awaiting `next_batch`: up to `max` frames of `subscription`.
struct BatchWaiter {
    subscription: Arc<Subscription>,
    max: usize,
}

impl Waiter for BatchWaiter {
    fn ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.subscription.ready())
    }

    /// The ready frames (JSON transcoding, once per message, runs without the GIL).
    fn take<'py>(&self, py: Python<'py>) -> Option<PyResult<Bound<'py, PyAny>>> {
        let envelope = self.subscription.envelope();
        let batch = match envelope {
            Envelope::Json => py.detach(|| self.subscription.try_next(self.max)),
            Envelope::Msgpack => self.subscription.try_next(self.max),
        };
        let ready = !batch.frames.is_empty() || batch.close.is_some();
        ready.then(|| batch_object(py, batch, envelope))
    }
}

/// `(frames, close)` of a batch.
fn batch_object<'py>(py: Python<'py>, batch: Batch, envelope: Envelope) -> PyResult<Bound<'py, PyAny>> {
    let frames = PyList::new(py, batch.frames.iter().map(|m| shared_frame(py, m, envelope)))?;
    let close = batch.close.map(|c| (c.code, c.reason.into_owned()));
    Ok(PyTuple::new(py, [frames.into_any(), close.into_pyobject(py)?.into_any()])?.into_any())
}
