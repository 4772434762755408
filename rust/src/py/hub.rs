//! `Hub` as seen from Python: the one hub class whatever the backend (chosen by the
//! constructor's `cache`), its I/O methods as awaitables, argument conversion and GIL handling
//! around the engine's [`Hub`].

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::args::{self, entry_args, id_strings, EntryArgs, Payloads};
use super::deliver;
use super::entries::PyEntrySubscription;
use super::objects::shared_payload;
use super::subscription::PySubscription;
use super::DETACH_PAYLOAD_BYTES;
use crate::codec::Envelope;
use crate::error::CoreResult;
use crate::hub::{BackendConfig, EntryBatch, Hub, HubConfig, Outgoing, StreamInfo};

/// The streaming hub (see `ferrotile/_core.pyi`).
#[pyclass(name = "Hub", module = "ferrotile._core", frozen)]
pub struct PyHub {
    inner: Hub,
}

/// Runs `f` with the GIL released when `bytes` are worth it.
fn maybe_detached<T: Send>(py: Python<'_>, bytes: usize, f: impl FnOnce() -> T + Send) -> T {
    if bytes >= DETACH_PAYLOAD_BYTES {
        py.detach(f)
    } else {
        f()
    }
}

fn integer(py: Python<'_>, value: u64) -> PyResult<Bound<'_, PyAny>> {
    Ok(value.into_pyobject(py)?.into_any())
}

impl PyHub {
    /// The engine's hub (shared with the edge).
    pub(crate) fn hub(&self) -> &Hub {
        &self.inner
    }
}

#[pymethods]
impl PyHub {
    #[new]
    #[pyo3(signature = (
        cache = "memory", *, max_count = None, max_bytes = None, max_age = None, seq_ttl = None,
        max_queue_bytes = None, max_total_bytes = None, key_prefix = "ferrotile:"
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        cache: &str,
        max_count: Option<usize>,
        max_bytes: Option<usize>,
        max_age: Option<f64>,
        seq_ttl: Option<f64>,
        max_queue_bytes: Option<usize>,
        max_total_bytes: Option<usize>,
        key_prefix: &str,
    ) -> PyResult<Self> {
        let defaults = HubConfig::default();
        let config = HubConfig {
            max_count: max_count.unwrap_or(defaults.max_count),
            max_bytes: max_bytes.unwrap_or(defaults.max_bytes),
            max_age: max_age.map(|s| args::seconds("max_age", s)).transpose()?.unwrap_or(defaults.max_age),
            seq_ttl: seq_ttl.map(|s| args::seconds("seq_ttl", s)).transpose()?.unwrap_or(defaults.seq_ttl),
            max_queue_bytes: max_queue_bytes.unwrap_or(defaults.max_queue_bytes),
            max_total_bytes: max_total_bytes.unwrap_or(defaults.max_total_bytes),
            backend: BackendConfig::parse(cache, key_prefix)?,
        };
        Ok(Self { inner: Hub::new(config)? })
    }

    /// Connects the backend (in process: nothing to do).
    fn connect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        deliver::future(py, self.inner.connect(), deliver::none)
    }

    /// Whether several processes share the streams (Redis).
    #[getter]
    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    /// Whether the backend can be used now (in process: always).
    #[getter]
    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// Publishes one message; resolves to its sequence. Invalid messages raise at once.
    #[pyo3(signature = (topic, header, payload = None, array_json = None, *, payload_json = None))]
    fn publish<'py>(
        &self,
        py: Python<'py>,
        topic: u64,
        header: &[u8],
        payload: Option<&[u8]>,
        array_json: Option<(String, Vec<usize>)>,
        payload_json: Option<&[u8]>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let hint = array_json.as_ref().map(|(dtype, shape)| (dtype.as_str(), shape.as_slice()));
        // Encoding (and the Redis record) is done here, before anything is sent.
        let call = maybe_detached(py, payload.map_or(0, <[u8]>::len), || -> CoreResult<_> {
            Ok(self.inner.publish(topic, Outgoing::new(header, payload, hint, payload_json)?))
        })?;
        deliver::future(py, call, integer)
    }

    /// Publishes raw entries (one data message each); resolves to their ids.
    #[pyo3(signature = (topic, payloads, entry_ids = None, *, header))]
    fn publish_entries<'py>(
        &self,
        py: Python<'py>,
        topic: u64,
        payloads: Vec<Bound<'py, PyAny>>,
        entry_ids: Option<Vec<Option<String>>>,
        header: &[u8],
    ) -> PyResult<Bound<'py, PyAny>> {
        let (header, ids) = entry_args(header, entry_ids, payloads.len())?;
        let payloads = Payloads::borrow(&payloads)?;
        let call = payloads.with(py, |p| -> CoreResult<_> {
            Ok(self.inner.publish_batch(topic, EntryBatch::new(&header, p, &ids)?))
        })?;
        deliver::future(py, call, |py, ids| Ok(id_strings(&ids).into_pyobject(py)?.into_any()))
    }

    /// Subscribes by entry id to `topics`; resolves to an `EntrySubscription`.
    #[pyo3(signature = (topics, names, after, *, count = 1, latest = false, header = true, max_queue_bytes = None))]
    #[allow(clippy::too_many_arguments)]
    fn subscribe_entries<'py>(
        &self,
        py: Python<'py>,
        topics: Vec<u64>,
        names: Vec<String>,
        after: Vec<String>,
        count: i64,
        latest: bool,
        header: bool,
        max_queue_bytes: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let cap = self.inner.config().max_queue_bytes;
        let args = EntryArgs::parse(topics.len(), names, &after, count, latest, header, max_queue_bytes, cap)?;
        let call = self.inner.subscribe_entries(&topics, &args.starts, args.options);
        let framing = PyEntrySubscription::new_framing(&args);
        deliver::future(py, async move { Ok((call.await?, framing)) }, |py, (subscription, framing)| {
            Ok(Bound::new(py, PyEntrySubscription::new(subscription, framing))?.into_any())
        })
    }

    /// The topic's stream description, or None if it never had an entry.
    fn stream_info<'py>(&self, py: Python<'py>, topic: u64) -> PyResult<Bound<'py, PyAny>> {
        deliver::future(py, self.inner.stream_info(topic), |py, info| match info {
            Some(info) => Ok(info_dict(py, info)?.into_any()),
            None => Ok(py.None().into_bound(py)),
        })
    }

    /// Gives `topic` its own retention limits (None: the hub's).
    #[pyo3(signature = (topic, *, max_count = None, max_bytes = None, max_age = None))]
    fn set_retention<'py>(
        &self,
        py: Python<'py>,
        topic: u64,
        max_count: Option<usize>,
        max_bytes: Option<usize>,
        max_age: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let retention = args::retention(max_count, max_bytes, max_age)?;
        retention.apply(self.inner.config().retention())?;
        deliver::future(py, self.inner.set_retention(topic, retention), deliver::none)
    }

    /// Appends an end-of-stream marker; resolves to its sequence.
    fn close_stream<'py>(&self, py: Python<'py>, topic: u64) -> PyResult<Bound<'py, PyAny>> {
        deliver::future(py, self.inner.close_stream(topic), integer)
    }

    /// Subscribes to a topic by sequence (live, or replaying from `start`); resolves to a
    /// `Subscription`.
    #[pyo3(signature = (
        topic, start = None, envelope = "msgpack", *,
        notify_gaps = false, max_queue_bytes = None, on_overflow = "close"
    ))]
    #[allow(clippy::too_many_arguments)]
    fn subscribe<'py>(
        &self,
        py: Python<'py>,
        topic: u64,
        start: Option<u64>,
        envelope: &str,
        notify_gaps: bool,
        max_queue_bytes: Option<usize>,
        on_overflow: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let envelope = Envelope::parse(envelope)?;
        let policy = args::policy(notify_gaps, max_queue_bytes, on_overflow, self.inner.config().max_queue_bytes)?;
        deliver::future(py, self.inner.subscribe(topic, start, envelope, policy), |py, subscription| {
            Ok(Bound::new(py, PySubscription::new(subscription))?.into_any())
        })
    }

    /// Closes current subscribers of `topic` (all if None) with 1012 "Live subscription lost".
    #[pyo3(signature = (topic = None))]
    fn interrupt(&self, topic: Option<u64>) {
        self.inner.interrupt(topic);
    }

    /// The topic's last sequence (0 if none).
    fn current_sequence<'py>(&self, py: Python<'py>, topic: u64) -> PyResult<Bound<'py, PyAny>> {
        deliver::future(py, self.inner.current_sequence(topic), integer)
    }

    /// Forgets a topic in this process; its subscribers close with 1001.
    fn drop_topic(&self, topic: u64) {
        self.inner.drop_topic(topic);
    }

    /// Closes all subscribers with 1001, stops the backend, refuses later calls.
    fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// This process's figures and the backend's counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let b = s.backend;
        let dict = PyDict::new(py);
        for (name, value) in [
            ("topics", s.topics as u64),
            ("retained_messages", s.retained_messages as u64),
            ("retained_bytes", s.retained_bytes as u64),
            ("subscribers", s.subscribers as u64),
            ("max_total_bytes", s.max_total_bytes as u64),
            ("evicted_messages", s.evicted_messages),
            ("evicted_bytes", s.evicted_bytes),
            ("connected", u64::from(s.connected)),
            ("received", b.received),
            ("reconnects", b.reconnects),
            ("epoch_changes", b.epoch_changes),
            ("gap_fills", b.gap_fills),
            ("bad_messages", b.bad_messages),
        ] {
            dict.set_item(name, value)?;
        }
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        let backend = match &c.backend {
            BackendConfig::Memory => "\"memory\"".to_owned(),
            BackendConfig::Redis { url, key_prefix } => {
                format!("{:?}, key_prefix={key_prefix:?}", crate::hub::redact(url))
            }
        };
        format!(
            "Hub({backend}, max_count={}, max_bytes={}, max_age={}, seq_ttl={}, max_queue_bytes={}, \
             max_total_bytes={})",
            c.max_count,
            c.max_bytes,
            c.max_age.as_secs_f64(),
            c.seq_ttl.as_secs_f64(),
            c.max_queue_bytes,
            c.max_total_bytes,
        )
    }
}

/// `stream_info`'s dictionary.
fn info_dict(py: Python<'_>, info: StreamInfo) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("length", info.length)?;
    dict.set_item("entries_added", info.entries_added)?;
    dict.set_item("first_entry_id", info.first.as_ref().map(|m| m.entry_id().to_string()))?;
    let last_id = info.last.as_ref().map_or(info.last_id, |m| m.entry_id());
    dict.set_item("last_entry_id", last_id.to_string())?;
    dict.set_item("max_deleted_entry_id", info.max_deleted.to_string())?;
    dict.set_item("first_entry", info.first.as_deref().map(|m| shared_payload(py, m)))?;
    dict.set_item("last_entry", info.last.as_deref().map(|m| shared_payload(py, m)))?;
    Ok(dict)
}
