//! Arguments from Python, converted and checked before anything is registered or published:
//! durations, subscriber policies, entry subscriptions' options, retention overrides, entry
//! ids, and payloads borrowed from any contiguous buffer.

use std::sync::Arc;
use std::time::Duration;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::DETACH_PAYLOAD_BYTES;
use crate::codec::envelope::{parse_header, Header};
use crate::error::CoreError;
use crate::hub::{EntryId, EntryOptions, IdSpec, Overflow, Policy, RetentionOverride, Start};

/// Seconds as a `Duration` (finite and non-negative).
pub(crate) fn seconds(name: &str, value: f64) -> Result<Duration, CoreError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| CoreError::Config(format!("{name} must be a non-negative number of seconds")))
}

/// The subscriber policy from `subscribe`'s keyword arguments; no cap given: `default_cap`.
pub(crate) fn policy(
    notify_gaps: bool,
    max_queue_bytes: Option<usize>,
    on_overflow: &str,
    default_cap: usize,
) -> PyResult<Policy> {
    Ok(Policy {
        notify_gaps,
        max_queue_bytes: max_queue_bytes.unwrap_or(default_cap),
        on_overflow: Overflow::parse(on_overflow)?,
    })
}

/// A retention override from `set_retention`'s keyword arguments.
pub(crate) fn retention(
    max_count: Option<usize>,
    max_bytes: Option<usize>,
    max_age: Option<f64>,
) -> Result<RetentionOverride, CoreError> {
    let max_age = max_age.map(|s| seconds("max_age", s)).transpose()?;
    Ok(RetentionOverride { max_count, max_bytes, max_age })
}

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
    /// Topic names, JSON-encoded once (they go into every header frame).
    pub names: Arc<[String]>,
    pub header: bool,
}

impl EntryArgs {
    /// Checks the lengths, `count` and the starting points; no cap given: `default_cap`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn parse(
        topics: usize,
        names: Vec<String>,
        after: &[String],
        count: i64,
        latest: bool,
        header: bool,
        max_queue_bytes: Option<usize>,
        default_cap: usize,
    ) -> PyResult<Self> {
        if names.len() != topics || after.len() != topics {
            let msg = format!("{topics} topics, {} names and {} starting points must match", names.len(), after.len());
            return Err(PyValueError::new_err(msg));
        }
        let count = usize::try_from(count).ok().filter(|c| *c >= 1);
        let count = count.ok_or_else(|| PyValueError::new_err("count must be at least 1"))?;
        let starts = after.iter().map(|a| Start::parse(a)).collect::<Result<Vec<_>, _>>()?;
        let names = names.iter().map(|n| serde_json::to_string(n).unwrap_or_default()).collect();
        let max_queue_bytes = max_queue_bytes.unwrap_or(default_cap);
        Ok(Self { starts, options: EntryOptions { count, latest, max_queue_bytes }, names, header })
    }
}
