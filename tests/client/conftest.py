"""Servers for the client's tests: ferrotile with the in-process hub and with Redis and two
workers (test hooks on: the route that drops subscribers' live feed), a ferrotile that keeps
only 5 messages per stream (gaps), and the reference Tiled 0.2.20 (the fallback)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.bluesky_flows.conftest import start_tiled
from tests.conftest import RunningServer, start_server, stop_server

HUBS = ["memory", "redis-2w"]


@pytest.fixture(scope="session", params=HUBS)
def hub_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    extra: tuple[str, ...] = ()
    if request.param == "redis-2w":
        redis_url: str = request.getfixturevalue("redis_url")
        extra = ("--cache", f"{redis_url}/10", "--workers", "2")
    os.environ["FERROTILE_TEST_HOOKS"] = "1"
    try:
        running = start_server(tmp_path_factory.mktemp("client"), *extra)
    finally:
        os.environ.pop("FERROTILE_TEST_HOOKS", None)
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def short_memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Keeps the last 5 messages of each stream: replays from further back have gaps."""
    running = start_server(tmp_path_factory.mktemp("short"), "--cache-max-count", "5")
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def tiled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_tiled(tmp_path_factory.mktemp("tiled"))
    yield running
    stop_server(running)
