//! Handing awaited batches to asyncio. Waiting happens on Tokio; one delivery thread then
//! attaches once per burst of ready batches and resolves their asyncio futures with a single
//! `call_soon_threadsafe` per event loop. It also keeps interpreter exit safe: after the
//! `atexit` hook has run, nothing attaches any more.
//!
//! Why not `pyo3_async_runtimes::future_into_py`: it attaches once per future from a fresh
//! blocking thread; when the interpreter exited right after a publish had woken many waiters,
//! those threads raced finalization and CPython aborted ("PyGILState_Release: thread state must
//! be current"). Batching the attach is also much cheaper under fan-out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple};
use tokio::task::AbortHandle;

use super::subscription::PyBatch;

static EXITING: AtomicBool = AtomicBool::new(false);
static DELIVERING: AtomicBool = AtomicBool::new(false);
static SENDER: OnceLock<Sender<Completion>> = OnceLock::new();

/// Longest the exit hook waits for a delivery under way.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A finished wait: resolve `future` (of `event_loop`) with `batch`, converted once attached.
pub(crate) struct Completion {
    pub event_loop: Py<PyAny>,
    pub future: Py<PyAny>,
    pub batch: PyBatch,
}

/// Queues a completion for the delivery thread (started on first use).
pub(crate) fn submit(completion: Completion) {
    let sender = SENDER.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        // If the thread cannot start, sends fail and awaiting callers never resolve; there is
        // no better fallback (attaching from Tokio workers is what this module avoids).
        let _ = std::thread::Builder::new().name("ferrotile-deliver".into()).spawn(move || run(rx));
        tx
    });
    // Dropping a `Py` without the GIL is fine: PyO3 defers the decref.
    let _ = sender.send(completion);
}

fn run(rx: Receiver<Completion>) {
    while let Ok(first) = rx.recv() {
        let mut burst = vec![first];
        burst.extend(rx.try_iter());
        // SeqCst on both sides: either the exit hook sees DELIVERING, or this sees EXITING.
        DELIVERING.store(true, Ordering::SeqCst);
        if !EXITING.load(Ordering::SeqCst) {
            Python::attach(|py| deliver(py, burst));
        }
        DELIVERING.store(false, Ordering::SeqCst);
    }
}

fn deliver(py: Python<'_>, burst: Vec<Completion>) {
    let mut by_loop: Vec<(Py<PyAny>, Vec<Bound<'_, PyTuple>>)> = Vec::new();
    for Completion { event_loop, future, batch } in burst {
        let value = match batch.into_pyobject(py) {
            Ok(value) => value.into_any(),
            Err(err) => err.into_value(py).into_bound(py).into_any(),
        };
        let Ok(pair) = PyTuple::new(py, [future.into_bound(py), value]) else { continue };
        match by_loop.iter_mut().find(|(l, _)| l.as_ptr() == event_loop.as_ptr()) {
            Some((_, pairs)) => pairs.push(pair),
            None => by_loop.push((event_loop, vec![pair])),
        }
    }
    let Ok(resolve) = resolver(py) else { return };
    for (event_loop, pairs) in by_loop {
        let Ok(pairs) = PyList::new(py, pairs) else { continue };
        // Fails only if the loop is closed; its futures can no longer be awaited anyway.
        let _ = event_loop.call_method1(py, pyo3::intern!(py, "call_soon_threadsafe"), (resolve, pairs));
    }
}

fn resolver(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static RESOLVE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    RESOLVE.get_or_try_init(py, || Ok(wrap_pyfunction!(_resolve_batches, py)?.into_any().unbind())).map(|f| f.bind(py))
}

/// Runs on the event loop: sets each `(future, result)` pair (exceptions via `set_exception`)
/// unless the future was cancelled meanwhile.
#[pyfunction]
fn _resolve_batches(pairs: &Bound<'_, PyList>) -> PyResult<()> {
    let py = pairs.py();
    for pair in pairs.iter() {
        let (future, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
        if future.call_method0(pyo3::intern!(py, "done"))?.is_truthy()? {
            continue;
        }
        if value.is_instance_of::<pyo3::exceptions::PyBaseException>() {
            future.call_method1(pyo3::intern!(py, "set_exception"), (value,))?;
        } else {
            future.call_method1(pyo3::intern!(py, "set_result"), (value,))?;
        }
    }
    Ok(())
}

/// Done-callback of an awaited future: cancelling it aborts the Tokio wait.
#[pyclass(frozen)]
pub(crate) struct AbortOnCancel(pub AbortHandle);

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0(pyo3::intern!(future.py(), "cancelled"))?.is_truthy()? {
            self.0.abort();
        }
        Ok(())
    }
}

/// `atexit` hook: stop attaching and wait (GIL released) for a delivery under way.
#[pyfunction]
fn _stop_delivery_at_exit(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while DELIVERING.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// Registers the exit hook with Python's `atexit`.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let hook = wrap_pyfunction!(_stop_delivery_at_exit, module)?;
    module.py().import("atexit")?.call_method1("register", (hook,))?;
    Ok(())
}
