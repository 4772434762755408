//! `RedisHub` as seen from Python: the Redis-backed hub's async entry points (awaitables on the
//! shared Tokio runtime) and its synchronous subscribe.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::entries::{self, EntryArgs, EntrySource, Payloads, PyEntrySubscription};
use super::hub::{policy, PySubscription};
use crate::codec::Envelope;
use crate::error::CoreError;
use crate::redis::{RedisConfig, RedisHub};

/// Payloads at least this large are encoded with the GIL released.
const DETACH_PAYLOAD_BYTES: usize = 256 * 1024;

/// A streaming hub backed by Redis (see `ferrotile/_core.pyi`).
#[pyclass(name = "RedisHub", module = "ferrotile._core", frozen)]
pub struct PyRedisHub {
    inner: Arc<RedisHub>,
}

fn seconds(name: &str, value: f64) -> Result<std::time::Duration, CoreError> {
    std::time::Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| CoreError::Config(format!("{name} must be a positive number of seconds")))
}

#[pymethods]
impl PyRedisHub {
    #[new]
    #[pyo3(signature = (url, *, max_count = 10_000, max_bytes = 268_435_456, data_ttl = 3600.0, seq_ttl = 2_592_000.0, key_prefix = "ferrotile:"))]
    fn new(
        url: String,
        max_count: usize,
        max_bytes: usize,
        data_ttl: f64,
        seq_ttl: f64,
        key_prefix: &str,
    ) -> PyResult<Self> {
        let config = RedisConfig {
            url,
            max_count,
            max_bytes,
            data_ttl: seconds("data_ttl", data_ttl)?,
            seq_ttl: seconds("seq_ttl", seq_ttl)?,
            key_prefix: key_prefix.to_owned(),
        };
        Ok(Self { inner: Arc::new(RedisHub::new(config)?) })
    }

    /// Connects, loads the publish script and starts the reader.
    fn connect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let hub = Arc::clone(&self.inner);
        pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(hub.connect().await?) })
    }

    /// Publishes one message; returns its sequence (one Redis round trip).
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
        let hint = || array_json.as_ref().map(|(dtype, shape)| (dtype.as_str(), shape.clone()));
        let prepare = || self.inner.prepare(header, payload, hint(), payload_json);
        // Validation errors are raised here, before anything is sent.
        let record =
            if payload.is_some_and(|p| p.len() >= DETACH_PAYLOAD_BYTES) { py.detach(prepare) } else { prepare() }?;
        let hub = Arc::clone(&self.inner);
        pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(hub.publish_prepared(topic, record).await?) })
    }

    /// Publishes raw entries in one Redis round trip; returns their ids.
    #[pyo3(signature = (topic, payloads, entry_ids = None, *, header))]
    fn publish_entries<'py>(
        &self,
        py: Python<'py>,
        topic: u64,
        payloads: Vec<Bound<'py, PyAny>>,
        entry_ids: Option<Vec<Option<String>>>,
        header: &[u8],
    ) -> PyResult<Bound<'py, PyAny>> {
        let (header, ids) = entries::entry_args(header, entry_ids, payloads.len())?;
        let payloads = Payloads::borrow(&payloads)?;
        // Validation errors are raised here, before anything is sent.
        let events = payloads.with(py, |p| self.inner.prepare_entries(&header, p, &ids))?;
        let hub = Arc::clone(&self.inner);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            Ok(entries::id_strings(&hub.publish_prepared_entries(topic, events).await?))
        })
    }

    /// Subscribes by entry id to `topics` (replays from Redis happen in `next_read`).
    #[pyo3(signature = (topics, names, after, *, count = 1, latest = false, header = true, max_queue_bytes = None))]
    #[allow(clippy::too_many_arguments)]
    fn subscribe_entries(
        &self,
        topics: Vec<u64>,
        names: Vec<String>,
        after: Vec<String>,
        count: i64,
        latest: bool,
        header: bool,
        max_queue_bytes: Option<usize>,
    ) -> PyResult<PyEntrySubscription> {
        let args = EntryArgs::parse(topics.len(), names, &after, count, latest, header, max_queue_bytes)?;
        let subscription = self.inner.subscribe_entries(&topics, &args.starts, args.options)?;
        Ok(PyEntrySubscription::new(EntrySource::Redis(subscription), args))
    }

    /// The node's stream description from Redis, or None if it never had an entry.
    fn stream_info<'py>(&self, py: Python<'py>, topic: u64) -> PyResult<Bound<'py, PyAny>> {
        let hub = Arc::clone(&self.inner);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let info = hub.stream_info(topic).await?;
            Python::attach(|py| Ok(entries::info_dict(py, info)?.map(Bound::unbind)))
        })
    }

    /// Gives the node its own retention limits (None: the hub's), in Redis and every mirror.
    #[pyo3(signature = (topic, *, max_count = None, max_bytes = None, max_age = None))]
    fn set_retention<'py>(
        &self,
        py: Python<'py>,
        topic: u64,
        max_count: Option<usize>,
        max_bytes: Option<usize>,
        max_age: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let retention = entries::retention(max_count, max_bytes, max_age)?;
        let hub = Arc::clone(&self.inner);
        pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(hub.set_retention(topic, retention).await?) })
    }

    /// Appends an end-of-stream marker; returns its sequence.
    fn close_stream<'py>(&self, py: Python<'py>, topic: u64) -> PyResult<Bound<'py, PyAny>> {
        let hub = Arc::clone(&self.inner);
        pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(hub.close_stream(topic).await?) })
    }

    /// Subscribes (registers locally at once; replay from Redis happens in `next_batch`).
    #[pyo3(signature = (
        topic, start = None, envelope = "msgpack", *,
        notify_gaps = false, max_queue_bytes = None, on_overflow = "close"
    ))]
    fn subscribe(
        &self,
        topic: u64,
        start: Option<u64>,
        envelope: &str,
        notify_gaps: bool,
        max_queue_bytes: Option<usize>,
        on_overflow: &str,
    ) -> PyResult<PySubscription> {
        let envelope = Envelope::parse(envelope)?;
        let policy = policy(notify_gaps, max_queue_bytes, on_overflow)?;
        Ok(PySubscription::redis(self.inner.subscribe_with(topic, start, envelope, policy)?))
    }

    /// Closes this process's current subscribers (of `topic`, all if None) with 1012.
    #[pyo3(signature = (topic = None))]
    fn interrupt(&self, topic: Option<u64>) {
        self.inner.interrupt(topic);
    }

    /// The node's last sequence in Redis (0 if none).
    fn current_sequence<'py>(&self, py: Python<'py>, topic: u64) -> PyResult<Bound<'py, PyAny>> {
        let hub = Arc::clone(&self.inner);
        pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(hub.current_sequence(topic).await?) })
    }

    /// Forgets the local mirror of a topic; its subscribers close with 1001.
    fn drop_topic(&self, topic: u64) {
        self.inner.drop_topic(topic);
    }

    /// Closes all subscribers with 1001, stops the reader, refuses later calls.
    fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// The local hub's counts plus the backend's counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, value) in self.inner.stats() {
            dict.set_item(name, value)?;
        }
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "RedisHub({:?}, max_count={}, max_bytes={}, data_ttl={}, seq_ttl={}, key_prefix={:?})",
            crate::redis::redact(&c.url),
            c.max_count,
            c.max_bytes,
            c.data_ttl.as_secs_f64(),
            c.seq_ttl.as_secs_f64(),
            c.key_prefix
        )
    }
}
