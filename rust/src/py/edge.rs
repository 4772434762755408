//! `Edge` as seen from Python: starting and stopping one process's public server, telling it
//! about changed nodes, and reading its counters for the metrics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::control::PyControl;
use super::deliver;
use super::hub::PyHub;
use crate::edge::{Edge, EdgeConfig, Histogram};
use crate::error::CoreError;

/// The public HTTP/WebSocket server of this process (see `ferrotile/_core.pyi`).
#[pyclass(name = "Edge", module = "ferrotile._core", frozen)]
pub struct PyEdge {
    inner: Edge,
}

fn seconds(name: &str, value: f64) -> Result<Duration, CoreError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| CoreError::Config(format!("{name} must be a positive number of seconds")))
}

fn histogram<'py>(py: Python<'py>, h: &Histogram) -> PyResult<Bound<'py, PyAny>> {
    Ok((h.buckets.clone(), h.sum).into_pyobject(py)?.into_any())
}

#[pymethods]
impl PyEdge {
    #[new]
    #[pyo3(signature = (
        *, host, port, upstream, api_key, control, hub = None, public = false, reuse_port = false,
        access_log = false, max_body_bytes = 4_294_967_296, max_message_bytes = 67_108_864,
        streamer_max_message_bytes = 67_108_864,
        header_timeout = 30.0, body_timeout = 60.0, latency_buckets = Vec::new(),
        growth_journal = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: String,
        port: u16,
        upstream: PathBuf,
        api_key: String,
        control: Py<PyAny>,
        hub: Option<PyRef<'_, PyHub>>,
        public: bool,
        reuse_port: bool,
        access_log: bool,
        max_body_bytes: u64,
        max_message_bytes: usize,
        streamer_max_message_bytes: usize,
        header_timeout: f64,
        body_timeout: f64,
        latency_buckets: Vec<f64>,
        growth_journal: Option<PathBuf>,
    ) -> PyResult<Self> {
        let config = EdgeConfig {
            host,
            port,
            reuse_port,
            upstream,
            api_key,
            public,
            max_body_bytes,
            header_timeout: seconds("header_timeout", header_timeout)?,
            body_timeout: seconds("body_timeout", body_timeout)?,
            max_message_bytes,
            streamer_max_message_bytes,
            access_log,
            growth_journal,
        };
        let control = Arc::new(PyControl::new(py, control)?);
        let hub = hub.map(|h| h.hub().clone());
        let runtime = pyo3_async_runtimes::tokio::get_runtime();
        Ok(Self { inner: Edge::start(config, hub, control, latency_buckets, runtime.handle())? })
    }

    /// The port it listens on.
    #[getter]
    fn port(&self) -> u16 {
        self.inner.port()
    }

    /// The node at `path` (keys from the root) changed or went away (and below it if `subtree`).
    #[pyo3(signature = (path, subtree = false))]
    fn invalidate(&self, path: Vec<String>, subtree: bool) {
        self.inner.invalidate(&path, subtree);
    }

    /// Every node may have changed.
    fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }

    /// The counters' deltas since the last call, and current gauges (see `_core.pyi`).
    fn take_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let snapshot = self.inner.take_stats();
        let out = PyDict::new(py);
        let requests = PyDict::new(py);
        for ((method, route, status), h) in &snapshot.requests {
            requests.set_item((method.as_str(), *route, *status), histogram(py, h)?)?;
        }
        out.set_item("requests", requests)?;
        out.set_item("websockets", snapshot.websockets.into_pyobject(py)?)?;
        let published = PyDict::new(py);
        for (topic, count) in &snapshot.published {
            published.set_item(if *topic == u64::MAX { None } else { Some(*topic) }, *count)?;
        }
        out.set_item("published", published)?;
        out.set_item("publish_latency", histogram(py, &snapshot.publish_latency)?)?;
        out.set_item("queue_bytes", snapshot.queue_bytes)?;
        out.set_item("dropped", snapshot.dropped)?;
        out.set_item("missed", snapshot.missed)?;
        out.set_item("multi_connections", snapshot.multi_connections)?;
        out.set_item("multi_subscriptions", snapshot.multi_subscriptions)?;
        let views = PyList::empty(py);
        for v in &snapshot.views {
            let row = PyDict::new(py);
            row.set_item("node", if v.topic == crate::view::OTHER_TOPIC { None } else { Some(v.topic) })?;
            row.set_item("view", v.view.as_str())?;
            row.set_item("subscribers", v.subscribers)?;
            row.set_item("computed", v.computed)?;
            row.set_item("raw_bytes", v.raw_bytes)?;
            row.set_item("payload_bytes", v.payload_bytes)?;
            row.set_item("skipped", v.skipped)?;
            views.append(row)?;
        }
        out.set_item("views", views)?;
        Ok(out)
    }

    /// Resolves once the catalog holds every array growth acknowledged before the call.
    fn settled<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let settled = self.inner.settled();
        let call = async move {
            settled.await;
            Ok(())
        };
        deliver::future(py, call, deliver::none)
    }

    /// Stops accepting connections; open ones finish their current request.
    fn stop(&self) {
        self.inner.stop();
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!("Edge(host={:?}, port={}, upstream={:?})", c.host, self.inner.port(), c.upstream)
    }
}
