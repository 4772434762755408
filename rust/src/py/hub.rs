//! `Hub` as seen from Python: argument conversion and GIL handling around the engine's `Hub`.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::entries::{self, EntryArgs, EntrySource, Payloads, PyEntrySubscription};
pub use super::subscription::PySubscription;
use crate::codec::envelope::Draft;
use crate::codec::Envelope;
use crate::error::CoreError;
use crate::hub::{Hub, HubConfig, Overflow, Policy};

/// Payloads at least this large are copied with the GIL released; smaller ones are not worth
/// the cost (and the risk of waiting for the GIL to come back).
const DETACH_PAYLOAD_BYTES: usize = 256 * 1024;

/// The streaming hub (see `ferrotile/_core.pyi`).
#[pyclass(name = "Hub", module = "ferrotile._core", frozen)]
pub struct PyHub {
    inner: Arc<Hub>,
}

fn seconds(name: &str, value: f64) -> Result<Duration, CoreError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| CoreError::Config(format!("{name} must be a non-negative number of seconds")))
}

#[pymethods]
impl PyHub {
    #[new]
    #[pyo3(signature = (*, max_count = 10_000, max_bytes = 268_435_456, max_age = 3600.0, seq_ttl = 2_592_000.0))]
    fn new(max_count: usize, max_bytes: usize, max_age: f64, seq_ttl: f64) -> PyResult<Self> {
        let config = HubConfig {
            max_count,
            max_bytes,
            max_age: seconds("max_age", max_age)?,
            seq_ttl: seconds("seq_ttl", seq_ttl)?,
        };
        Ok(Self { inner: Arc::new(Hub::new(config)?) })
    }

    /// Publishes one message; returns its sequence. Invalid messages consume no sequence.
    #[pyo3(signature = (topic, header, payload = None, array_json = None, *, payload_json = None))]
    fn publish(
        &self,
        py: Python<'_>,
        topic: u64,
        header: &[u8],
        payload: Option<&[u8]>,
        array_json: Option<(String, Vec<usize>)>,
        payload_json: Option<&[u8]>,
    ) -> PyResult<u64> {
        let hint = || array_json.as_ref().map(|(dtype, shape)| (dtype.as_str(), shape.clone()));
        let run = || {
            let draft = Draft::new(header, payload, hint())?;
            let draft = match payload_json {
                Some(json) => draft.with_json_payload(json)?,
                None => draft,
            };
            self.inner.publish_draft(topic, draft)
        };
        let seq = if payload.is_some_and(|p| p.len() >= DETACH_PAYLOAD_BYTES) { py.detach(run) } else { run() };
        Ok(seq?)
    }

    /// Publishes raw entries (one data message each); returns their ids.
    #[pyo3(signature = (topic, payloads, entry_ids = None, *, header))]
    fn publish_entries(
        &self,
        py: Python<'_>,
        topic: u64,
        payloads: Vec<Bound<'_, PyAny>>,
        entry_ids: Option<Vec<Option<String>>>,
        header: &[u8],
    ) -> PyResult<Vec<String>> {
        let (header, ids) = entries::entry_args(header, entry_ids, payloads.len())?;
        let payloads = Payloads::borrow(&payloads)?;
        let published = payloads.with(py, |p| self.inner.publish_entries(topic, &header, p, &ids))?;
        Ok(entries::id_strings(&published))
    }

    /// Subscribes by entry id to `topics`.
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
        Ok(PyEntrySubscription::new(EntrySource::Local(subscription), args))
    }

    /// The topic's stream description, or None if it never had an entry.
    fn stream_info<'py>(&self, py: Python<'py>, topic: u64) -> PyResult<Option<Bound<'py, PyDict>>> {
        entries::info_dict(py, self.inner.stream_info(topic))
    }

    /// Gives `topic` its own retention limits (None: the hub's).
    #[pyo3(signature = (topic, *, max_count = None, max_bytes = None, max_age = None))]
    fn set_retention(
        &self,
        topic: u64,
        max_count: Option<usize>,
        max_bytes: Option<usize>,
        max_age: Option<f64>,
    ) -> PyResult<()> {
        Ok(self.inner.set_retention(topic, entries::retention(max_count, max_bytes, max_age)?)?)
    }

    /// Appends an end-of-stream marker; returns its sequence.
    fn close_stream(&self, topic: u64) -> PyResult<u64> {
        Ok(self.inner.close_stream(topic)?)
    }

    /// Subscribes to a topic (live, or replaying from `start`).
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
        Ok(PySubscription::new(self.inner.subscribe_with(topic, start, envelope, policy)?))
    }

    /// Closes current subscribers of `topic` (all if None) with 1012 "Live subscription lost".
    #[pyo3(signature = (topic = None))]
    fn interrupt(&self, topic: Option<u64>) {
        self.inner.interrupt(topic);
    }

    /// The topic's last sequence (0 if none).
    fn current_sequence(&self, topic: u64) -> u64 {
        self.inner.current_sequence(topic)
    }

    /// Forgets a topic; its subscribers close with 1001.
    fn drop_topic(&self, topic: u64) {
        self.inner.drop_topic(topic);
    }

    /// Closes all subscribers with 1001 and refuses later publish/subscribe.
    fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// `topics`, `retained_messages`, `retained_bytes`, `subscribers`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.inner.stats();
        let dict = PyDict::new(py);
        dict.set_item("topics", stats.topics)?;
        dict.set_item("retained_messages", stats.retained_messages)?;
        dict.set_item("retained_bytes", stats.retained_bytes)?;
        dict.set_item("subscribers", stats.subscribers)?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "Hub(max_count={}, max_bytes={}, max_age={}, seq_ttl={})",
            c.max_count,
            c.max_bytes,
            c.max_age.as_secs_f64(),
            c.seq_ttl.as_secs_f64()
        )
    }
}

/// The subscriber policy from `subscribe`'s keyword arguments (shared by both hubs).
pub(crate) fn policy(notify_gaps: bool, max_queue_bytes: Option<usize>, on_overflow: &str) -> PyResult<Policy> {
    Ok(Policy {
        notify_gaps,
        max_queue_bytes: max_queue_bytes.unwrap_or(usize::MAX),
        on_overflow: Overflow::parse(on_overflow)?,
    })
}
