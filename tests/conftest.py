"""Fixtures that start real servers: ferrotile under Granian on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")

API_KEY = "secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    url: str
    api_key: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    log_dir: Path,
    *extra: str,
    api_key: str = API_KEY,
    catalog: str | None = None,
    program: Sequence[str] = (sys.executable, "-m", "ferrotile"),
    port: int | None = None,
) -> RunningServer:
    """Start ``ferrotile serve catalog`` on a free port; wait until it is healthy.

    ``catalog`` is a database URI (initialised with ``--init``, data written under
    ``log_dir``); None means ``--temp`` (a SQLite catalog in a new temporary directory).
    ``program`` is the command that runs ferrotile (another installation's, for instance);
    ``port`` a given port (a restart on the port of a stopped server), else a free one.
    """
    port = port or free_port()
    log = log_dir / f"server-{port}.log"
    storage = ["--temp"] if catalog is None else [catalog, "--init", "-w", str(log_dir / "data")]
    command = [
        *program, "serve", "catalog", *storage,
        "--api-key", api_key, "--port", str(port), *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return RunningServer(url, api_key, process, log)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server did not become healthy:\n{log.read_text()}")


def stop_server(server: RunningServer) -> None:
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


CATALOGS = ["sqlite", "postgresql"]
"""Every test using a server runs once per catalog backend (ids ``[sqlite]``, ``[postgresql]``)."""


def _catalog_uri(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None  # --temp
    postgres: Any = request.getfixturevalue("postgres")
    uri: str = postgres.new_database()
    return uri


@pytest.fixture(scope="session", params=CATALOGS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("server"), catalog=_catalog_uri(request))
    yield running
    stop_server(running)


@pytest.fixture(scope="session", params=CATALOGS)
def public_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("public"), "--public", catalog=_catalog_uri(request)
    )
    yield running
    stop_server(running)


@pytest.fixture
def key() -> str:
    """A fresh node key, so tests sharing a server never collide."""
    return f"k{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A private PostgreSQL server for the session (see ``tests/postgres.py``)."""
    from tests import postgres as pg

    server = pg.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[object]:
    """A private ``redis-server`` for the session (see ``tests/redis.py``)."""
    from tests import redis as rd

    server = rd.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: Any) -> str:
    """``redis://127.0.0.1:PORT`` of the session's private Redis."""
    url: str = redis_server.url
    return url


def has_redis_hub() -> bool:
    from ferrotile import _core

    return hasattr(_core, "Hub")  # every build streams through Redis too (`Hub("redis://...")`)


needs_redis_hub = pytest.mark.skipif(
    not has_redis_hub(), reason="ferrotile._core.Hub is not built yet"
)
