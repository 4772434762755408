"""Bluesky's RunEngine writing through TiledWriter (bluesky-tiled-plugins) to ferrotile, and the
same flows against Tiled 0.2.20 (the reference, from the test venv), side by side.

Every test that takes ``target`` runs once per server: ``[ferrotile]`` and ``[tiled]``. Both
serve a temporary catalog and may read the detectors' files (``-r``).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from tiled.client import from_uri

from tests.conftest import API_KEY, RunningServer, free_port, start_server, stop_server

TILED = str(Path(sys.executable).with_name("tiled"))


def start_tiled(log_dir: Path, *extra: str) -> RunningServer:
    """Start the reference ``tiled serve catalog --temp`` on a free port; wait until it answers."""
    port = free_port()
    log = log_dir / f"tiled-{port}.log"
    command = [TILED, "serve", "catalog", "--temp", "--api-key", API_KEY, "--port", str(port),
               *extra]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tiled exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return RunningServer(url, API_KEY, process, log)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"tiled did not start:\n{log.read_text()}")


@pytest.fixture(scope="session")
def detector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the simulated detectors write their files (readable by both servers)."""
    return tmp_path_factory.mktemp("detectors")


@pytest.fixture(scope="session", params=["ferrotile", "tiled"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, detector_dir: Path
) -> Iterator[RunningServer]:
    log_dir = tmp_path_factory.mktemp(request.param)
    if request.param == "ferrotile":
        running = start_server(log_dir, "-r", str(detector_dir))
    else:
        running = start_tiled(log_dir, "-r", str(detector_dir))
    yield running
    stop_server(running)


@pytest.fixture
def client(target: RunningServer) -> Any:
    return from_uri(target.url, api_key=target.api_key)


@dataclass(eq=False)  # hashable: the RunEngine keeps subscribers in a registry
class Recorded:
    """The documents the RunEngine emitted, by name, in order."""

    docs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.docs.append((name, doc))

    def all(self, name: str) -> list[dict[str, Any]]:
        return [doc for n, doc in self.docs if n == name]

    def one(self, name: str) -> dict[str, Any]:
        (doc,) = self.all(name)
        return doc

    def column(self, key: str) -> list[Any]:
        """``key`` of every event, in order."""
        return [event["data"][key] for event in self.all("event")]


@pytest.fixture
def run_engine(client: Any) -> Iterator[tuple[RunEngine, Recorded]]:
    """A RunEngine writing to the server through TiledWriter, recording what it emitted."""
    engine = RunEngine({})
    recorded = Recorded()
    engine.subscribe(recorded)
    engine.subscribe(TiledWriter(client))
    yield engine, recorded
    engine.loop.call_soon_threadsafe(engine.loop.stop)
