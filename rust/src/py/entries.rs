//! The entries API as seen from Python (both hubs): argument conversion for `publish_entries`
//! (payloads as any contiguous buffer), `subscribe_entries`, `stream_info` and
//! `set_retention`, and `EntrySubscription.next_read`, which turns one read into WebSocket
//! frames sharing one `bytes` object per message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::deliver;
use super::subscription::{cached, Waiter};
use crate::codec::envelope::{parse_header, Header};
use crate::error::CoreError;
use crate::hub::{
    EntryId, EntryOptions, EntryRead, EntrySubscription, IdSpec, Message, RetentionOverride, Start, StreamInfo,
    DEFAULT_MAX_QUEUE_BYTES,
};
use crate::redis::RedisEntrySubscription;

/// Total payload bytes from which bytes-only batches are encoded with the GIL released.
const DETACH_PAYLOAD_BYTES: usize = 256 * 1024;

/// The payloads of one `publish_entries` call, borrowed from their Python objects.
pub(crate) struct Payloads<'py> {
    /// Keeps the buffer exports (and so the memory) of non-`bytes` payloads alive.
    _buffers: Vec<PyUntypedBuffer>,
    slices: Vec<&'py [u8]>,
    /// Every payload is a `bytes` object (immutable): safe to read with the GIL released.
    immutable: bool,
}

impl<'py> Payloads<'py> {
    /// Borrows each payload: `bytes` directly, anything else through the buffer protocol (it
    /// must be C-contiguous). Nothing is copied.
    pub(crate) fn borrow(items: &'py [Bound<'py, PyAny>]) -> PyResult<Self> {
        let mut buffers = Vec::new();
        let mut slices = Vec::with_capacity(items.len());
        let mut immutable = true;
        for item in items {
            if let Ok(bytes) = item.cast::<PyBytes>() {
                slices.push(bytes.as_bytes());
                continue;
            }
            immutable = false;
            let buffer = PyUntypedBuffer::get(item)?;
            if !buffer.is_c_contiguous() {
                return Err(PyValueError::new_err("entry payloads must be C-contiguous buffers"));
            }
            // SAFETY: the buffer export (kept in `_buffers`, released on drop) keeps the memory
            // alive and unmoved; the slice is only read while the GIL is held (mutable buffers
            // make `immutable` false, so the caller never releases the GIL while reading them),
            // so no Python code can write it meanwhile; `len_bytes` is the buffer's size.
            let slice = unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), buffer.len_bytes()) };
            slices.push(slice);
            buffers.push(buffer);
        }
        Ok(Self { _buffers: buffers, slices, immutable })
    }

    /// Runs `f` on the payloads, with the GIL released when that is safe and worth it.
    pub(crate) fn with<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&[&[u8]]) -> T + Send) -> T {
        let total: usize = self.slices.iter().map(|s| s.len()).sum();
        let slices = self.slices.as_slice();
        if self.immutable && total >= DETACH_PAYLOAD_BYTES {
            py.detach(|| f(slices))
        } else {
            f(slices)
        }
    }
}

/// Parses `publish_entries`' header and ids (one per payload; `None`: all automatic).
pub(crate) fn entry_args(header: &[u8], ids: Option<Vec<Option<String>>>, n: usize) -> PyResult<(Header, Vec<IdSpec>)> {
    let header = parse_header(header)?;
    let ids = match ids {
        None => vec![IdSpec::Auto; n],
        Some(ids) if ids.len() == n => ids.iter().map(|id| IdSpec::parse(id.as_deref())).collect::<Result<_, _>>()?,
        Some(ids) => return Err(PyValueError::new_err(format!("{n} payloads but {} entry ids", ids.len()))),
    };
    Ok((header, ids))
}

/// The ids as Python strings.
pub(crate) fn id_strings(ids: &[EntryId]) -> Vec<String> {
    ids.iter().map(EntryId::to_string).collect()
}

/// `subscribe_entries`' arguments, checked before anything is registered.
pub(crate) struct EntryArgs {
    pub starts: Vec<Start>,
    pub options: EntryOptions,
    pub names: Arc<[String]>,
    pub header: bool,
}

impl EntryArgs {
    pub(crate) fn parse(
        topics: usize,
        names: Vec<String>,
        after: &[String],
        count: i64,
        latest: bool,
        header: bool,
        max_queue_bytes: Option<usize>,
    ) -> PyResult<Self> {
        if names.len() != topics || after.len() != topics {
            let msg = format!("{topics} topics, {} names and {} starting points must match", names.len(), after.len());
            return Err(PyValueError::new_err(msg));
        }
        let count = usize::try_from(count).ok().filter(|c| *c >= 1);
        let count = count.ok_or_else(|| PyValueError::new_err("count must be at least 1"))?;
        let starts = after.iter().map(|a| Start::parse(a)).collect::<Result<Vec<_>, _>>()?;
        // Names go into every header: JSON-encode them once.
        let names = names.iter().map(|n| serde_json::to_string(n).unwrap_or_default()).collect();
        let max_queue_bytes = max_queue_bytes.unwrap_or(DEFAULT_MAX_QUEUE_BYTES);
        Ok(Self { starts, options: EntryOptions { count, latest, max_queue_bytes }, names, header })
    }
}

/// A retention override from `set_retention`'s keyword arguments.
pub(crate) fn retention(
    max_count: Option<usize>,
    max_bytes: Option<usize>,
    max_age: Option<f64>,
) -> Result<RetentionOverride, CoreError> {
    let max_age = max_age
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| CoreError::Config("max_age must be a non-negative number of seconds".into()))
        })
        .transpose()?;
    Ok(RetentionOverride { max_count, max_bytes, max_age })
}

/// `stream_info`'s dictionary.
pub(crate) fn info_dict<'py>(py: Python<'py>, info: Option<StreamInfo>) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(info) = info else { return Ok(None) };
    let dict = PyDict::new(py);
    dict.set_item("length", info.length)?;
    dict.set_item("entries_added", info.entries_added)?;
    dict.set_item("first_entry_id", info.first.as_ref().map(|m| m.entry_id().to_string()))?;
    let last_id = info.last.as_ref().map_or(info.last_id, |m| m.entry_id());
    dict.set_item("last_entry_id", last_id.to_string())?;
    dict.set_item("max_deleted_entry_id", info.max_deleted.to_string())?;
    dict.set_item("first_entry", info.first.as_deref().map(|m| shared_payload(py, m)))?;
    dict.set_item("last_entry", info.last.as_deref().map(|m| shared_payload(py, m)))?;
    Ok(Some(dict))
}

/// The one Python `bytes` of a message's raw payload (`b""` if it has none), shared by every
/// subscriber through the message's payload slot.
pub(crate) fn shared_payload<'py>(py: Python<'py>, message: &Message) -> Bound<'py, PyAny> {
    let payload = || PyBytes::new(py, message.payload().map_or(&[][..], |p| p.as_ref())).into_any();
    cached(py, message.payload_extension(), payload)
}

/// What an `EntrySubscription` reads from.
pub(crate) enum EntrySource {
    Local(EntrySubscription),
    Redis(RedisEntrySubscription),
}

impl EntrySource {
    /// Runs the Redis fetches a read depends on (replays, `$` resolution); no-op in process.
    async fn settle(&self) {
        if let Self::Redis(s) = self {
            s.settle().await;
        }
    }

    fn unsettled(&self) -> bool {
        matches!(self, Self::Redis(s) if s.unsettled())
    }

    async fn ready(&self) {
        match self {
            Self::Local(s) => s.ready().await,
            Self::Redis(s) => s.ready().await,
        }
    }

    fn try_read(&self) -> EntryRead {
        match self {
            Self::Local(s) => s.try_read(),
            Self::Redis(s) => s.try_read(),
        }
    }

    fn local(&self) -> &EntrySubscription {
        match self {
            Self::Local(s) => s,
            Self::Redis(s) => s.local(),
        }
    }

    fn cancel(&self) {
        match self {
            Self::Local(s) => s.cancel(),
            Self::Redis(s) => s.cancel(),
        }
    }
}

/// A subscription by entry id to one or more topics (see `ferrotile/_core.pyi`).
#[pyclass(name = "EntrySubscription", module = "ferrotile._core", frozen)]
pub struct PyEntrySubscription {
    source: Arc<EntrySource>,
    names: Arc<[String]>,
    header: bool,
}

impl PyEntrySubscription {
    pub(crate) fn new(source: EntrySource, args: EntryArgs) -> Self {
        Self { source: Arc::new(source), names: args.names, header: args.header }
    }
}

#[pymethods]
impl PyEntrySubscription {
    /// Awaits one read (or the heartbeat after `block_ms`); returns `(frames, close)`.
    #[pyo3(signature = (block_ms = None))]
    fn next_read<'py>(&self, py: Python<'py>, block_ms: Option<u64>) -> PyResult<Bound<'py, PyAny>> {
        let waiter = EntryWaiter {
            source: Arc::clone(&self.source),
            deadline: block_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
            names: Arc::clone(&self.names),
            header: self.header,
        };
        deliver::awaitable(py, Waiter::Entries(waiter))
    }

    /// Ends the subscription; a pending `next_read` returns `([], (1001, "subscription cancelled"))`.
    fn cancel(&self) {
        self.source.cancel();
    }

    /// Per topic, the last id handed out (or the starting point).
    #[getter]
    fn cursors(&self) -> Vec<String> {
        id_strings(&self.source.local().cursors())
    }

    /// Entries skipped by `latest` or the byte cap.
    #[getter]
    fn dropped(&self) -> u64 {
        self.source.local().dropped()
    }

    /// Entries that fell out of retention before they were read.
    #[getter]
    fn missed(&self) -> u64 {
        self.source.local().missed()
    }
}

/// An awaiting `next_read`: what it reads from, until when, and how it frames a read.
pub(crate) struct EntryWaiter {
    source: Arc<EntrySource>,
    deadline: Option<Instant>,
    names: Arc<[String]>,
    header: bool,
}

impl EntryWaiter {
    /// Waits until a read would give something, or the deadline.
    pub(crate) async fn ready(&self) {
        self.source.settle().await;
        match self.deadline {
            Some(deadline) => {
                let _ = tokio::time::timeout_at(deadline.into(), self.source.ready()).await;
            }
            None => self.source.ready().await,
        }
    }

    /// The frames of one read; the heartbeat once the deadline has passed; `None` otherwise.
    pub(crate) fn take<'py>(&self, py: Python<'py>) -> Option<PyResult<Bound<'py, PyAny>>> {
        if self.source.unsettled() {
            return None;
        }
        let read = self.source.try_read();
        if read.entries.is_empty() && read.close.is_none() {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Some(self.heartbeat(py));
            }
            return None;
        }
        Some(self.frames(py, read))
    }

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
        let mut text = String::with_capacity(2 + entries.len() * 48);
        text.push('[');
        let mut end = 0;
        for (k, (topic, message)) in entries.iter().enumerate() {
            end += message.payload().map_or(0, |p| p.len());
            if k > 0 {
                text.push(',');
            }
            let name = self.names.get(*topic).map_or("\"\"", String::as_str);
            text.push_str(&format!("[{name},\"{}\",{end}]", message.entry_id()));
        }
        text.push(']');
        text
    }

    /// The payloads concatenated: the message's shared object when there is one entry.
    fn joined<'py>(&self, py: Python<'py>, entries: &[(usize, Arc<Message>)]) -> PyResult<Bound<'py, PyAny>> {
        if let [(_, message)] = entries {
            return Ok(shared_payload(py, message));
        }
        let parts: Vec<&[u8]> = entries.iter().filter_map(|(_, m)| m.payload().map(|p| p.as_ref())).collect();
        let total = parts.iter().map(|p| p.len()).sum();
        let joined = PyBytes::new_with(py, total, |buf| {
            let mut at = 0;
            for part in &parts {
                buf[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Ok(())
        })?;
        Ok(joined.into_any())
    }
}
