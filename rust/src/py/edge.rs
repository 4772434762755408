//! `Edge` as seen from Python: starting and stopping one process's public server.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;

use crate::edge::{Edge, EdgeConfig};
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

#[pymethods]
impl PyEdge {
    #[new]
    #[pyo3(signature = (
        *, host, port, upstream, api_key, public = false, reuse_port = false, access_log = false,
        max_body_bytes = 4_294_967_296, max_message_bytes = 67_108_864,
        header_timeout = 30.0, body_timeout = 60.0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        host: String,
        port: u16,
        upstream: PathBuf,
        api_key: String,
        public: bool,
        reuse_port: bool,
        access_log: bool,
        max_body_bytes: u64,
        max_message_bytes: usize,
        header_timeout: f64,
        body_timeout: f64,
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
            access_log,
        };
        let runtime = pyo3_async_runtimes::tokio::get_runtime();
        Ok(Self { inner: Edge::start(config, runtime.handle())? })
    }

    /// The port it listens on.
    #[getter]
    fn port(&self) -> u16 {
        self.inner.port()
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
