"""Servers and clients for the Redis Streamer API tests: the in-process hub and Redis with two
workers (both on a SQLite catalog; the catalog backends are covered by the Tiled API tests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import RunningServer, has_redis_hub, start_server, stop_server

AUTH = {"Authorization": "Apikey secret"}
HUBS = ["memory", "redis-2w"]


@pytest.fixture(scope="session", params=HUBS)
def rs_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    extra: tuple[str, ...] = ()
    if request.param == "redis-2w":
        if not has_redis_hub():
            pytest.skip("the native module was built without the Redis hub")
        redis_url: str = request.getfixturevalue("redis_url")
        extra = ("--cache", f"{redis_url}/5", "--workers", "2")
    running = start_server(tmp_path_factory.mktemp("streamer"), *extra)
    yield running
    stop_server(running)


@pytest.fixture
def sid() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


def ws(server: RunningServer, path: str, query: str = "", **kwargs: Any) -> ClientConnection:
    url = f"{server.ws_url}{path}" + (f"?{query}" if query else "")
    return connect(
        url, additional_headers=kwargs.pop("headers", AUTH), open_timeout=10, close_timeout=2,
        max_size=None, **kwargs,
    )  # fmt: skip


def http(server: RunningServer) -> httpx.Client:
    """New connection per request, so that with two workers requests spread over both."""
    return httpx.Client(
        base_url=server.url,
        headers={**AUTH, "Connection": "close"},
        limits=httpx.Limits(max_keepalive_connections=0),
        timeout=15,
    )


def split(header: str, data: bytes) -> list[tuple[str, str, bytes]]:
    """``(sid, entry_id, payload)`` of a pull read (end offsets)."""
    import orjson

    out, start = [], 0
    for name, entry_id, end in orjson.loads(header):
        out.append((name, entry_id, data[start:end]))
        start = end
    return out
