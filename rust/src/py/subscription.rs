//! `Subscription` as seen from Python: the awaitable `next_batch` and the conversion of a batch
//! into `(list[bytes], close)` sharing one `bytes` object per message and envelope.

use std::sync::{Arc, OnceLock};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::deliver;
use super::entries::EntryWaiter;
use crate::codec::Envelope;
use crate::hub::{Batch, Extension, Message, Subscription};
use crate::redis::RedisSubscription;

/// What a Python `Subscription` reads from: the in-process hub or the Redis backend.
#[derive(Clone)]
pub(crate) enum Source {
    Local(Arc<Subscription>),
    Redis(Arc<RedisSubscription>),
}

impl Source {
    pub(crate) async fn ready(&self) {
        match self {
            Self::Local(s) => s.ready().await,
            Self::Redis(s) => s.ready().await,
        }
    }

    fn try_next(&self, max: usize) -> Batch {
        match self {
            Self::Local(s) => s.try_next(max),
            Self::Redis(s) => s.try_next(max),
        }
    }

    fn envelope(&self) -> Envelope {
        match self {
            Self::Local(s) => s.envelope(),
            Self::Redis(s) => s.envelope(),
        }
    }

    fn cancel(&self) {
        match self {
            Self::Local(s) => s.cancel(),
            Self::Redis(s) => s.cancel(),
        }
    }

    fn last_sequence(&self) -> u64 {
        match self {
            Self::Local(s) => s.last_sequence(),
            Self::Redis(s) => s.last_sequence(),
        }
    }

    fn dropped(&self) -> u64 {
        match self {
            Self::Local(s) => s.dropped(),
            Self::Redis(s) => s.dropped(),
        }
    }

    fn backlog_bytes(&self) -> usize {
        match self {
            Self::Local(s) => s.backlog_bytes(),
            Self::Redis(s) => s.backlog_bytes(),
        }
    }

    fn missed(&self) -> u64 {
        match self {
            Self::Local(s) => s.missed(),
            Self::Redis(s) => s.missed(),
        }
    }
}

/// A subscription to one topic; created by `Hub.subscribe` or `RedisHub.subscribe`.
#[pyclass(name = "Subscription", module = "ferrotile._core", frozen)]
pub struct PySubscription {
    inner: Source,
}

impl PySubscription {
    pub(crate) fn new(inner: Subscription) -> Self {
        Self { inner: Source::Local(Arc::new(inner)) }
    }

    pub(crate) fn redis(inner: RedisSubscription) -> Self {
        Self { inner: Source::Redis(Arc::new(inner)) }
    }
}

#[pymethods]
impl PySubscription {
    /// Awaits at least one frame or the close; returns `(frames, close)`.
    #[pyo3(signature = (max_messages = 64))]
    fn next_batch<'py>(&self, py: Python<'py>, max_messages: usize) -> PyResult<Bound<'py, PyAny>> {
        let envelope = self.inner.envelope();
        deliver::awaitable(py, Waiter::Batch { subscription: self.inner.clone(), max: max_messages, envelope })
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

/// What an awaiting `next_batch` or `next_read` takes once woken.
pub(crate) enum Waiter {
    /// Up to `max` frames of `subscription`.
    Batch { subscription: Source, max: usize, envelope: Envelope },
    /// One read of an entry subscription (or its heartbeat).
    Entries(EntryWaiter),
}

impl Waiter {
    /// Waits (on Tokio) until `take` may return something.
    pub(crate) async fn ready(&self) {
        match self {
            Self::Batch { subscription, .. } => subscription.ready().await,
            Self::Entries(waiter) => waiter.ready().await,
        }
    }

    /// Takes what is ready now (JSON transcoding, once per message, runs without the GIL) as the
    /// awaited result; `None` if nothing is.
    pub(crate) fn take<'py>(&self, py: Python<'py>) -> Option<PyResult<Bound<'py, PyAny>>> {
        let Self::Batch { subscription, max, envelope } = self else {
            let Self::Entries(waiter) = self else { return None };
            return waiter.take(py);
        };
        let batch = match envelope {
            Envelope::Json => py.detach(|| subscription.try_next(*max)),
            Envelope::Msgpack => subscription.try_next(*max),
        };
        let ready = !batch.frames.is_empty() || batch.close.is_some();
        ready.then(|| PyBatch { batch, envelope: *envelope }.into_pyobject(py).map(Bound::into_any))
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
    cached(py, message.extension(envelope), || frame_object(py, message.envelope(envelope), envelope))
}

/// The Python object cached in a message's slot, made by `make` on first use.
pub(crate) fn cached<'py>(
    py: Python<'py>,
    slot: &OnceLock<Extension>,
    make: impl Fn() -> Bound<'py, PyAny>,
) -> Bound<'py, PyAny> {
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
