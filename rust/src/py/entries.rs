//! `EntrySubscription` as seen from Python: the awaitable `next_read`, which turns one read
//! into WebSocket frames sharing one `bytes` object per message (Redis Streamer's header
//! frames, or one payload per entry), or the heartbeat after `block_ms`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::args::{id_strings, EntryArgs};
use super::deliver::{self, Waiter};
use super::objects::shared_payload;
use crate::codec::entry_frames;
use crate::hub::{EntryRead, EntrySubscription, Message};

/// A subscription by entry id to one or more topics (see `ferrotile/_core.pyi`).
#[pyclass(name = "EntrySubscription", module = "ferrotile._core", frozen)]
pub struct PyEntrySubscription {
    inner: Arc<EntrySubscription>,
    framing: Framing,
}

/// How a subscription's reads become frames: the topics' names (JSON-encoded) and whether
/// reads have a header frame.
pub(crate) struct Framing {
    names: Arc<[String]>,
    header: bool,
}

impl PyEntrySubscription {
    /// The framing `subscribe_entries`' arguments ask for.
    pub(crate) fn new_framing(args: &EntryArgs) -> Framing {
        Framing { names: Arc::clone(&args.names), header: args.header }
    }

    pub(crate) fn new(inner: EntrySubscription, framing: Framing) -> Self {
        Self { inner: Arc::new(inner), framing }
    }
}

#[pymethods]
impl PyEntrySubscription {
    /// Awaits one read (or the heartbeat after `block_ms`); returns `(frames, close)`.
    #[pyo3(signature = (block_ms = None))]
    fn next_read<'py>(&self, py: Python<'py>, block_ms: Option<u64>) -> PyResult<Bound<'py, PyAny>> {
        let waiter = EntryWaiter {
            subscription: Arc::clone(&self.inner),
            deadline: block_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
            names: Arc::clone(&self.framing.names),
            header: self.framing.header,
        };
        deliver::awaitable(py, Box::new(waiter))
    }

    /// Ends the subscription; a pending `next_read` returns `([], (1001, "subscription cancelled"))`.
    fn cancel(&self) {
        self.inner.cancel();
    }

    /// Per topic, the last id handed out (or the starting point).
    #[getter]
    fn cursors(&self) -> Vec<String> {
        id_strings(&self.inner.cursors())
    }

    /// Entries skipped by `latest` or the byte cap.
    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }

    /// Entries that fell out of retention before they were read.
    #[getter]
    fn missed(&self) -> u64 {
        self.inner.missed()
    }
}

/// An awaiting `next_read`: what it reads from, until when, and how it frames a read.
struct EntryWaiter {
    subscription: Arc<EntrySubscription>,
    deadline: Option<Instant>,
    names: Arc<[String]>,
    header: bool,
}

impl Waiter for EntryWaiter {
    /// Waits until a read would give something, or the deadline (the replay round trips a read
    /// depends on are not bounded by it: each is one round trip).
    fn ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.subscription.settle().await;
            match self.deadline {
                Some(deadline) => {
                    let _ = tokio::time::timeout_at(deadline.into(), self.subscription.ready()).await;
                }
                None => self.subscription.ready().await,
            }
        })
    }

    /// The frames of one read; the heartbeat once the deadline has passed; `None` otherwise.
    fn take<'py>(&self, py: Python<'py>) -> Option<PyResult<Bound<'py, PyAny>>> {
        if !self.subscription.is_settled() {
            return None;
        }
        let read = self.subscription.try_read();
        if read.entries.is_empty() && read.close.is_none() {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Some(self.heartbeat(py));
            }
            return None;
        }
        Some(self.frames(py, read))
    }
}

impl EntryWaiter {
    /// Redis Streamer's empty reply on timeout: `["[]", b""]`, or `[b""]` without headers.
    fn heartbeat<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let empty = PyBytes::new(py, b"").into_any();
        let frames = if self.header {
            PyList::new(py, [PyString::new(py, "[]").into_any(), empty])?
        } else {
            PyList::new(py, [empty])?
        };
        Ok((frames, None::<(u16, String)>).into_pyobject(py)?.into_any())
    }

    fn frames<'py>(&self, py: Python<'py>, read: EntryRead) -> PyResult<Bound<'py, PyAny>> {
        let close = read.close.map(|c| (c.code, c.reason.into_owned()));
        let entries = &read.entries;
        let frames = if entries.is_empty() {
            PyList::empty(py)
        } else if self.header {
            PyList::new(py, [PyString::new(py, &self.header_text(entries)).into_any(), self.joined(py, entries)?])?
        } else {
            PyList::new(py, entries.iter().map(|(_, m)| shared_payload(py, m)))?
        };
        Ok(PyTuple::new(py, [frames.into_any(), close.into_pyobject(py)?.into_any()])?.into_any())
    }

    /// `[[name, id, end offset], ...]`, end offsets into the joined payloads.
    fn header_text(&self, entries: &[(usize, Arc<Message>)]) -> String {
        entry_frames::header_text(&self.names, entries)
    }

    /// The payloads concatenated: the message's shared object when there is one entry.
    fn joined<'py>(&self, py: Python<'py>, entries: &[(usize, Arc<Message>)]) -> PyResult<Bound<'py, PyAny>> {
        if let [(_, message)] = entries {
            return Ok(shared_payload(py, message));
        }
        let joined = PyBytes::new(py, &entry_frames::joined(entries));
        Ok(joined.into_any())
    }
}
