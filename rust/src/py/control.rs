//! The control plane as the edge calls it: [`Control`] over a Python object whose coroutines
//! answer (`resolve(path)`, `store_array(...)`, `grow_array(...)`, `stream(...)`), run on the process's asyncio loop. Called once
//! per node-cache miss or persisted write, never per frame.
//!
//! Each coroutine returns `(status, body, headers)`: 200 with the answer as JSON, or the
//! refusal the client gets as is.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::StatusCode;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3_async_runtimes::TaskLocals;

use super::buffer::PyBody;
use crate::edge::{ArrayInfo, ArrayWrite, Control, NodeInfo, Refusal, Stored, StreamName, StreamNode, WriteKind};

/// The Python side's answer.
type Answer = (u16, Vec<u8>, Vec<(String, String)>);

/// The control plane: a Python object and the loop its coroutines run on.
pub struct PyControl {
    object: Py<PyAny>,
    locals: TaskLocals,
}

impl PyControl {
    /// Wraps `object`; must be called on the running asyncio loop its coroutines will use.
    pub fn new(py: Python<'_>, object: Py<PyAny>) -> PyResult<Self> {
        let locals = TaskLocals::with_running_loop(py)?.copy_context(py)?;
        Ok(Self { object, locals })
    }

    /// Starts `method(*args)` on the loop; the future resolves with its answer.
    fn call(
        &self,
        method: &'static str,
        args: impl FnOnce(Python<'_>) -> PyResult<Bound<'_, PyTuple>>,
    ) -> BoxFuture<'static, Result<(StatusCode, Vec<u8>), Refusal>> {
        let started = Python::attach(|py| {
            let coroutine = self.object.bind(py).call_method1(method, args(py)?)?;
            pyo3_async_runtimes::into_future_with_locals(&self.locals, coroutine)
        });
        async move {
            let answer = started.map_err(|e| internal(method, &e))?.await.map_err(|e| internal(method, &e))?;
            let (status, body, headers): Answer =
                Python::attach(|py| answer.extract(py)).map_err(|e| internal(method, &e))?;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status == StatusCode::OK {
                return Ok((status, body));
            }
            Err(Refusal { status, body: body.into(), headers })
        }
        .boxed()
    }
}

/// A Python exception where an answer was expected: a 500 for the client, logged.
fn internal(method: &str, err: &PyErr) -> Refusal {
    Python::attach(|py| err.print_and_set_sys_last_vars(py));
    Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, &format!("Internal error in the control plane ({method})"))
}

fn parse<T: serde::de::DeserializeOwned>(method: &str, body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Malformed answer of the control plane ({method}): {e}"),
        )
    })
}

impl Control for PyControl {
    fn resolve(&self, path: String) -> BoxFuture<'static, Result<NodeInfo, Refusal>> {
        let answer = self.call("resolve", move |py| PyTuple::new(py, [path]));
        async move { parse("resolve", &answer.await?.1) }.boxed()
    }

    fn store(&self, write: ArrayWrite) -> BoxFuture<'static, Result<Stored, Refusal>> {
        let answer = self.call("store_array", move |py| {
            let (kind, block, offset, shape, extend) = match write.kind {
                WriteKind::Full => ("full", None, None, None, false),
                WriteKind::Block(block) => ("block", Some(block), None, None, false),
                WriteKind::Patch { offset, shape, extend } => ("patch", None, Some(offset), Some(shape), extend),
                WriteKind::Append { frames } => ("append", None, None, Some(vec![frames]), true),
            };
            let buffer = Bound::new(py, PyBody::new(write.body))?;
            let items = (write.node, write.path, kind, block, offset, shape, extend, buffer).into_pyobject(py)?;
            Ok(items)
        });
        async move { parse("store_array", &answer.await?.1) }.boxed()
    }

    fn grow(
        &self,
        node: u64,
        path: String,
        from: Vec<u64>,
        to: Vec<u64>,
    ) -> BoxFuture<'static, Result<ArrayInfo, Refusal>> {
        let answer = self.call("grow_array", move |py| (node, path, from, to).into_pyobject(py));
        async move { parse("grow_array", &answer.await?.1) }.boxed()
    }

    fn stream(&self, name: StreamName) -> BoxFuture<'static, Result<StreamNode, Refusal>> {
        let answer = self.call("stream", move |py| (name.sid, name.device, name.prefix, name.create).into_pyobject(py));
        async move { parse("stream", &answer.await?.1) }.boxed()
    }
}
