"""One server process: the Rust edge on the public port in front of the Python app.

The edge (``ferrotile._core.Edge``) owns the public socket and serves the data plane itself;
every other request goes to the Starlette app, which Granian serves in this process on a private
Unix socket (in a directory only this user can enter). Python runs once per control-plane
request, per connection, or per node-cache miss of the edge.

Start-up order: Granian first (its lifespan opens the catalog and the hub), then, once the app
answers on the Unix socket, the edge binds the public port; so a client never meets a half-started
server. Shutdown is the reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ferrotile import _core
from ferrotile.api import growth_journal
from ferrotile.api.control import EdgeControl
from ferrotile.api.metrics import LATENCY_BUCKETS
from ferrotile.app import build_app
from ferrotile.config import Settings
from ferrotile.errors import ServeError
from ferrotile.state import AppState

log = logging.getLogger("ferrotile.server")

#: Longest wait for the app to answer on its Unix socket after Granian starts.
STARTUP_TIMEOUT = 60.0
#: Largest WebSocket message a client may send on the edge's other routes (close 1009 beyond):
#: subscribers send only their auth; push writers one frame per message.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Longest wait at shutdown for the catalog to record growth the edge acknowledged.
SETTLE_TIMEOUT = 10.0
#: Name of the control plane's socket inside its private directory.
SOCKET_NAME = "control.sock"


async def _answers(socket_path: Path) -> bool:
    """Whether the app answers ``GET /healthz`` with 200 on its Unix socket."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
    except OSError:
        return False
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5.0)
        return status.split(b" ")[1:2] == [b"200"]
    except (OSError, TimeoutError, IndexError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _wait_until_answering(socket_path: Path, serving: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT
    while not await _answers(socket_path):
        if serving.done():
            serving.result()  # re-raise what stopped Granian (e.g. a failed lifespan)
            raise ServeError("The application stopped while starting")
        if loop.time() > deadline:
            raise ServeError(f"The application did not start within {STARTUP_TIMEOUT:.0f} s")
        await asyncio.sleep(0.02)


def _start_edge(settings: Settings, socket_path: Path, state: AppState) -> _core.Edge:
    journal = growth_journal.journal_directory(state)
    edge = _core.Edge(
        host=settings.host,
        port=settings.port,
        upstream=str(socket_path),
        api_key=settings.api_key,
        control=EdgeControl(state),
        hub=state.hub.native if state.hub is not None else None,
        public=settings.public,
        reuse_port=settings.workers > 1,
        access_log=settings.access_log,
        max_body_bytes=settings.max_request_bytes,
        max_message_bytes=max(settings.streamer_max_message_bytes, MAX_MESSAGE_BYTES),
        streamer_max_message_bytes=settings.streamer_max_message_bytes,
        header_timeout=settings.client_timeout,
        body_timeout=settings.client_timeout,
        latency_buckets=list(LATENCY_BUCKETS),
        growth_journal=None if journal is None else str(journal),
    )

    def forget(path: tuple[str, ...] | None, subtree: bool) -> None:
        if path is None:
            edge.invalidate_all()
        else:
            edge.invalidate(list(path), subtree)

    state.catalog.watch(forget)
    state.edge = edge
    return edge


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve until ``stop`` is set (or the app fails); ``on_ready(port)`` once the edge listens.

    Raises
    ------
    ServeError
        The public port cannot be bound, or the app did not start.
    """
    from granian.constants import Interfaces
    from granian.server.embed import Server

    directory = Path(tempfile.mkdtemp(prefix="ferrotile-"))
    os.chmod(directory, 0o700)
    socket_path = directory / SOCKET_NAME
    app = build_app(settings)
    server = Server(
        app,
        uds=socket_path,
        interface=Interfaces.ASGI,
        websockets=True,
        log_enabled=False,
    )
    serving = asyncio.create_task(server.serve(), name="ferrotile-granian")
    edge: _core.Edge | None = None
    try:
        await _wait_until_answering(socket_path, serving)
        edge = _start_edge(settings, socket_path, app.state.ferrotile)
        if on_ready is not None:
            on_ready(edge.port)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if serving.done():
            serving.result()
    finally:
        if edge is not None:
            edge.stop()
            # The catalog records what was acknowledged (else the journal does at next start).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(edge.settled(), SETTLE_TIMEOUT)
        server.stop()
        with contextlib.suppress(Exception):
            await serving
        shutil.rmtree(directory, ignore_errors=True)
