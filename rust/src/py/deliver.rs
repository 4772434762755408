//! Handing awaited results to asyncio. A caller describes what an awaitable waits for and takes
//! with a [`Waiter`]; waiting happens on Tokio, then one delivery thread attaches once per burst
//! of woken waiters and schedules, with a single `call_soon_threadsafe` per event loop, a
//! callback that takes the result *on the event loop* and resolves the futures. Results are
//! taken only for a future still pending, so a waiter cancelled at any moment (even while a
//! publish is waking it) loses no message. It also keeps interpreter exit safe: after the
//! `atexit` hook has run, nothing attaches any more. [`future`] makes an awaitable of a Rust
//! future the same way, resolved at once when the future completes on its first poll (every
//! call of the in-process hub).
//!
//! Why not `pyo3_async_runtimes::future_into_py`: it attaches once per future from a fresh
//! blocking thread; when the interpreter exited right after a publish had woken many waiters,
//! those threads raced finalization and CPython aborted ("PyGILState_Release: thread state must
//! be current"). Batching the attach is also much cheaper under fan-out.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;
use tokio::task::AbortHandle;

use crate::error::CoreResult;

/// What an awaitable waits for and then takes (implemented by the modules that make them).
pub(crate) trait Waiter: Send + Sync {
    /// Waits (on Tokio) until [`Waiter::take`] may return something.
    fn ready(&self) -> BoxFuture<'_, ()>;

    /// Takes what is ready now as the awaited result (attached, on the event loop); `None` if
    /// nothing is.
    fn take<'py>(&self, py: Python<'py>) -> Option<PyResult<Bound<'py, PyAny>>>;
}

static EXITING: AtomicBool = AtomicBool::new(false);
static DELIVERING: AtomicBool = AtomicBool::new(false);
static SENDER: OnceLock<Sender<Completion>> = OnceLock::new();

/// Longest the exit hook waits for a delivery under way.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A woken waiter: resolve `future` (of `event_loop`) with what `waiter` takes, on the loop.
pub(crate) struct Completion {
    pub event_loop: Py<PyAny>,
    pub future: Py<PyAny>,
    pub waiter: Box<dyn Waiter>,
    /// Where the current Tokio wait's abort handle lives (replaced when re-armed).
    pub abort: Arc<Mutex<Option<AbortHandle>>>,
}

/// A new asyncio future of the running loop, resolved with what `waiter` takes: at once if
/// something is ready, else once the Tokio wait says so (cancelling the future aborts it).
pub(crate) fn awaitable<'py>(py: Python<'py>, waiter: Box<dyn Waiter>) -> PyResult<Bound<'py, PyAny>> {
    let event_loop = pyo3_async_runtimes::get_running_loop(py)?;
    let future = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
    if let Some(result) = waiter.take(py) {
        // Fast path: no Tokio round trip when something is already there.
        match result {
            Ok(value) => future.call_method1(pyo3::intern!(py, "set_result"), (value,))?,
            Err(err) => future.call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),))?,
        };
        return Ok(future);
    }
    let abort = AbortOnCancel::default();
    let handle = abort.handle();
    future.call_method1(pyo3::intern!(py, "add_done_callback"), (abort,))?;
    arm(Completion { event_loop: event_loop.unbind(), future: future.clone().unbind(), waiter, abort: handle });
    Ok(future)
}

/// Converts a Rust value into the awaited Python result.
/// `None`, for a future that answers nothing.
pub(crate) fn none(py: Python<'_>, (): ()) -> PyResult<Bound<'_, PyAny>> {
    Ok(py.None().into_bound(py))
}

pub(crate) type Convert<T> = fn(Python<'_>, T) -> PyResult<Bound<'_, PyAny>>;

/// An awaitable of `call`'s output (converted by `convert`; an error raises its exception).
/// `call` is polled once here (inside the Tokio runtime): if it completes, the awaitable is
/// resolved at once, else it runs on Tokio and resolves through the delivery thread.
pub(crate) fn future<'py, T: Send + 'static>(
    py: Python<'py>,
    call: impl Future<Output = CoreResult<T>> + Send + 'static,
    convert: Convert<T>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut call: BoxFuture<'static, CoreResult<T>> = Box::pin(call);
    let first = {
        let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
        call.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    };
    let outcome = match first {
        Poll::Ready(result) => OneShot { call: Mutex::new(None), result: Mutex::new(Some(result)), convert },
        Poll::Pending => OneShot { call: Mutex::new(Some(call)), result: Mutex::new(None), convert },
    };
    awaitable(py, Box::new(outcome))
}

/// A Rust future's output, awaited once (see [`future`]).
struct OneShot<T> {
    call: Mutex<Option<BoxFuture<'static, CoreResult<T>>>>,
    result: Mutex<Option<CoreResult<T>>>,
    convert: Convert<T>,
}

impl<T: Send> Waiter for OneShot<T> {
    fn ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let call = self.call.lock().take();
            match call {
                Some(call) => {
                    let result = call.await;
                    *self.result.lock() = Some(result);
                }
                // Taken by a wait that was aborted (its awaitable cancelled): nothing will come.
                None if self.result.lock().is_none() => std::future::pending().await,
                None => {}
            }
        })
    }

    fn take<'py>(&self, py: Python<'py>) -> Option<PyResult<Bound<'py, PyAny>>> {
        let result = self.result.lock().take()?;
        Some(result.map_err(PyErr::from).and_then(|value| (self.convert)(py, value)))
    }
}

/// Starts (or restarts) the Tokio wait of `completion`; it is submitted once its waiter has
/// something ready.
pub(crate) fn arm(completion: Completion) {
    let abort = Arc::clone(&completion.abort);
    let mut slot = abort.lock();
    let task = pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
        completion.waiter.ready().await;
        submit(completion);
    });
    *slot = Some(task.abort_handle());
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
    let mut by_loop: Vec<(Py<PyAny>, Vec<Bound<'_, Pending>>)> = Vec::new();
    for completion in burst {
        let event_loop = completion.event_loop.clone_ref(py);
        let Ok(pending) = Bound::new(py, Pending(Mutex::new(Some(completion)))) else { continue };
        match by_loop.iter_mut().find(|(l, _)| l.as_ptr() == event_loop.as_ptr()) {
            Some((_, items)) => items.push(pending),
            None => by_loop.push((event_loop, vec![pending])),
        }
    }
    let Ok(resolve) = resolver(py) else { return };
    for (event_loop, items) in by_loop {
        let Ok(items) = PyList::new(py, items) else { continue };
        // Fails only if the loop is closed; its futures can no longer be awaited anyway.
        let _ = event_loop.call_method1(py, pyo3::intern!(py, "call_soon_threadsafe"), (resolve, items));
    }
}

/// A woken waiter travelling to its event loop (taken exactly once there).
#[pyclass(frozen)]
struct Pending(Mutex<Option<Completion>>);

fn resolver(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static RESOLVE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    RESOLVE.get_or_try_init(py, || Ok(wrap_pyfunction!(_resolve_batches, py)?.into_any().unbind())).map(|f| f.bind(py))
}

/// Runs on the event loop: for each future still pending, takes the ready frames and sets the
/// result; if another waiter took them first, waits again. Cancelled futures take nothing.
#[pyfunction]
fn _resolve_batches(items: &Bound<'_, PyList>) -> PyResult<()> {
    let py = items.py();
    for item in items.iter() {
        let Some(completion) = item.cast::<Pending>()?.get().0.lock().take() else { continue };
        let future = completion.future.clone_ref(py).into_bound(py);
        if future.call_method0(pyo3::intern!(py, "done"))?.is_truthy()? {
            continue;
        }
        let Some(batch) = completion.waiter.take(py) else {
            arm(completion);
            continue;
        };
        match batch {
            Ok(value) => future.call_method1(pyo3::intern!(py, "set_result"), (value,))?,
            Err(err) => future.call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),))?,
        };
    }
    Ok(())
}

/// Done-callback of an awaited future: cancelling it aborts the Tokio wait (whichever is
/// current: a re-armed wait replaces the handle).
#[pyclass(frozen)]
#[derive(Default)]
pub(crate) struct AbortOnCancel(Arc<Mutex<Option<AbortHandle>>>);

impl AbortOnCancel {
    /// The shared slot holding the current wait's abort handle.
    pub(crate) fn handle(&self) -> Arc<Mutex<Option<AbortHandle>>> {
        Arc::clone(&self.0)
    }
}

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0(pyo3::intern!(future.py(), "cancelled"))?.is_truthy()? {
            if let Some(handle) = self.0.lock().take() {
                handle.abort();
            }
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
