"""Servers for the edge's own tests: the in-process hub and Redis with two workers (SQLite
catalog; the catalog backends are covered by the Tiled API tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RunningServer, start_server, stop_server

HUBS = ["memory", "redis-2w"]


@pytest.fixture(scope="session", params=HUBS)
def edge_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    extra: tuple[str, ...] = ()
    if request.param == "redis-2w":
        redis_url: str = request.getfixturevalue("redis_url")
        extra = ("--cache", f"{redis_url}/9", "--workers", "2")
    running = start_server(tmp_path_factory.mktemp("edge"), *extra)
    yield running
    stop_server(running)
