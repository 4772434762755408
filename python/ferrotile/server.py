"""Running the app: Granian workers for ``ferrotile serve``; the embedded :class:`SimpleServer`."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from ferrotile import _core, process
from ferrotile.catalog.catalog import Catalog
from ferrotile.config import MULTIPROC_ENV, SETTINGS_ENV, Settings
from ferrotile.errors import ServeError

__all__ = ["ServeError", "SimpleServer", "free_port", "new_api_key", "run_workers"]

#: Seconds a worker process gets to stop before it is killed.
WORKER_STOP_TIMEOUT = 10.0


def new_api_key() -> str:
    # Hex only: the stock client sends a WebSocket API key only when it matches \w+.
    return secrets.token_hex(16)


def prepare_catalog(settings: Settings, *, init: bool) -> None:
    """Create or check the catalog once, before any worker starts, so errors surface once."""

    async def check() -> None:
        catalog = await Catalog.open(settings.catalog_uri, init=init)
        await catalog.close()

    asyncio.run(check())


def prepare_directories(settings: Settings) -> None:
    for directory in settings.writable:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / f".ferrotile-write-check-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ServeError(
                f"Writable directory {directory} is not writable: {exc.strerror}"
            ) from None
    for directory in settings.readable:
        if not directory.is_dir():
            raise ServeError(f"Readable directory {directory} does not exist")


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(f"Port {port} on {host} is already in use") from None
            raise ServeError(f"Cannot listen on {host}:{port}: {exc.strerror}") from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def run_workers(settings: Settings) -> None:
    """Serve in the foreground until interrupted (``ferrotile serve``): this process alone, or
    ``settings.workers`` processes sharing the public port (each one edge + app + hub)."""
    os.environ[SETTINGS_ENV] = settings.to_json().decode()
    if settings.workers == 1:
        _run_process(settings)
        return
    _prepare_multiprocess_metrics()
    _supervise(settings)


def _run_process(settings: Settings) -> None:
    # This process is the server's own (unlike SimpleServer's host): no huge pages, so that a
    # frame never waits while a fresh 2 MiB page is zeroed (rust/src/edge/pages.rs).
    _core.disable_transparent_huge_pages()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await process.serve(settings, stop)

    asyncio.run(main())


def worker_main() -> None:
    """Entry point of a worker process (settings in ``FERROTILE_SETTINGS``)."""
    with contextlib.suppress(KeyboardInterrupt):
        _run_process(Settings.from_env())


def _supervise(settings: Settings) -> None:
    """Start the worker processes and stop them all when one ends or on SIGINT/SIGTERM.

    Workers are fresh interpreters (``spawn``): none inherits this process's threads.
    """
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=worker_main, name=f"ferrotile-worker-{i + 1}")
        for i in range(settings.workers)
    ]
    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for worker in workers:
            worker.start()
        while not stopping.is_set() and all(w.is_alive() for w in workers):
            stopping.wait(0.2)
        failed = [w for w in workers if not w.is_alive() and w.exitcode not in (0, None)]
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join(WORKER_STOP_TIMEOUT)
            if worker.is_alive():
                worker.kill()
                worker.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failed and not stopping.is_set():
        codes = ", ".join(f"{w.name} exited with {w.exitcode}" for w in failed)
        raise ServeError(f"A worker process stopped ({codes}); the server was shut down")


def _prepare_multiprocess_metrics() -> None:
    """Point ``prometheus_client`` at a directory the workers share (before they import it),
    so that ``/api/v1/metrics`` sums every worker (see :mod:`ferrotile.api.metrics`).
    Importing ``prometheus_client`` here would fix its mode in the forked workers too early."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):  # a previous run's values
            stale.unlink(missing_ok=True)
    else:
        directory = tempfile.mkdtemp(prefix="ferrotile-metrics-")
        atexit.register(shutil.rmtree, directory, True)
        os.environ[MULTIPROC_ENV] = directory


class SimpleServer:
    """An embedded ferrotile server on a background thread, with streaming.

    Parameters
    ----------
    directory
        Where the catalog (``catalog.db``), data (``data/``) and appendable tables
        (``storage.sqlite``) live; a temporary directory,
        deleted on :meth:`close`, when ``None``.
    api_key
        The API key; a random one when ``None``.
    port
        TCP port on 127.0.0.1; a free one when 0.
    readable_storage
        Directories whose files may be registered.

    Examples
    --------
    >>> from tiled.client import from_uri
    >>> with SimpleServer() as server:                      # doctest: +SKIP
    ...     client = from_uri(server.uri)
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        api_key: str | None = None,
        port: int = 0,
        readable_storage: str | Path | Sequence[str | Path] | None = None,
    ) -> None:
        self._temporary = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="ferrotile-")) if directory is None else Path(directory)
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.api_key = api_key or new_api_key()
        self.port = port or free_port()
        if isinstance(readable_storage, str | Path):
            readable_storage = [readable_storage]
        self.settings = Settings(
            catalog_uri=f"sqlite:///{self.directory / 'catalog.db'}",
            api_key=self.api_key,
            writable=(self.directory / "data",),
            table_storage=f"sqlite:///{self.directory / 'storage.sqlite'}",
            readable=tuple(Path(p).resolve() for p in readable_storage or ()),
            host="127.0.0.1",
            port=self.port,
        )
        prepare_directories(self.settings)
        prepare_catalog(self.settings, init=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ferrotile-server", daemon=True)
        self._thread.start()
        self._wait_healthy(timeout=20.0)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1?api_key={self.api_key}"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        stop = asyncio.Event()
        self._stop = stop
        try:
            loop.run_until_complete(process.serve(self.settings, stop))
        except BaseException as exc:  # reported by _wait_healthy / close
            self._failure = exc
        finally:
            loop.close()

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/healthz"
        while time.monotonic() < deadline:
            if self._failure is not None or not self._thread.is_alive():
                raise ServeError(f"The embedded server failed to start: {self._failure!r}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
            time.sleep(0.05)
        self.close()
        raise ServeError(
            f"The embedded server did not answer on port {self.port} within {timeout} s"
        )

    def close(self) -> None:
        """Stop the server and delete the temporary directory (if one was made)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=10)
        if self._temporary:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> SimpleServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SimpleServer {self.uri}>"
