"""Micro-benchmarks of the costs Python sees (pytest-benchmark; ``make bench-micro``).

bench/ is outside the test suite's ``testpaths``, so ``make test`` never runs these; they are
measurements, not assertions (each checks only that the call did its job). The Rust engine's
own costs are measured by criterion in rust/benches/hub_fanout.rs.

- ``publish``: 100 ``await Hub.publish`` of 1 KiB / 256 KiB from Python in one coroutine
  (header check, msgpack envelope, sequence, retention, and the awaitable, resolved at once in
  process), i.e. the one Python call per frame of the write path, times 100 (so the event
  loop's own cost of running a coroutine is spread);
- ``fanout_drain``: one publish read by 32 subscribers through ``next_batch`` (what each
  subscriber's connection pump does per frame, minus the socket);
- ``asgi_put`` / ``asgi_get``: the real application called with ASGI messages: a stream-only
  1 KiB ``PUT /array/full`` (routing, auth, structure check, publish) and ``GET /api/v1/`` /
  ``GET /api/v1/metadata/x``, without Granian or sockets.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
import pytest

from ferrotile._core import Hub

API_KEY = "secret"  # as conftest.py

HEADER = orjson.dumps({"type": "array-data", "timestamp": "2026-01-01T00:00:00"})
SIZES = {"1KiB": 1024, "256KiB": 256 * 1024}


@pytest.mark.parametrize("size", list(SIZES))
def test_publish(benchmark: Any, loop: asyncio.AbstractEventLoop, size: str) -> None:
    hub = Hub(max_count=16)  # steady state: retention recycles memory (no first-touch faults)
    payload = np.random.default_rng(0).bytes(SIZES[size])
    array = ("<u1", [SIZES[size]])
    benchmark.extra_info["bytes"] = SIZES[size]

    async def publish_100() -> int:
        for _ in range(99):
            await hub.publish(1, HEADER, payload, array)
        return await hub.publish(1, HEADER, payload, array)

    benchmark.extra_info["messages"] = 100
    sequence = benchmark(lambda: loop.run_until_complete(publish_100()))
    assert sequence >= 100


def test_fanout_drain_32(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    hub = Hub(max_count=16)

    async def subscribe() -> list[Any]:
        return [await hub.subscribe(1) for _ in range(32)]

    subscriptions = loop.run_until_complete(subscribe())
    payload = bytes(1024)

    async def publish_and_drain() -> int:
        await hub.publish(1, HEADER, payload)
        got = 0
        for subscription in subscriptions:
            frames, _close = await subscription.next_batch(64)
            got += len(frames)
        return got

    benchmark.extra_info["subscribers"] = len(subscriptions)
    got = benchmark(lambda: loop.run_until_complete(publish_and_drain()))
    assert got == 32


async def call(app: Any, method: str, path: str, query: bytes = b"", body: bytes = b"") -> int:
    """One HTTP request through the ASGI app; returns the status."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Apikey {API_KEY}".encode()),
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # a disconnect never comes within a request
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


@pytest.fixture(scope="module")
def array_x(app: Any, loop: asyncio.AbstractEventLoop) -> str:
    structure = {
        "data_type": {"endianness": "little", "kind": "f", "itemsize": 8, "dt_units": None},
        "chunks": [[128]], "shape": [128], "dims": None, "resizable": False,
    }  # fmt: skip
    body = orjson.dumps({
        "id": "x", "structure_family": "array", "metadata": {}, "specs": [],
        "data_sources": [{"structure_family": "array", "structure": structure, "id": None,
                          "mimetype": None, "parameters": {}, "properties": {}, "assets": [],
                          "management": "writable"}],
    })  # fmt: skip
    status = loop.run_until_complete(call(app, "POST", "/api/v1/metadata/", body=body))
    assert status == 200
    return "x"


def test_asgi_put_1KiB_stream_only(
    benchmark: Any, app: Any, loop: asyncio.AbstractEventLoop, array_x: str
) -> None:
    body = np.random.default_rng(0).standard_normal(128).tobytes()
    path = f"/api/v1/array/full/{array_x}"
    benchmark.extra_info["bytes"] = len(body)
    status = benchmark(
        lambda: loop.run_until_complete(call(app, "PUT", path, b"persist=false", body))
    )
    assert status < 300


@pytest.mark.parametrize("path", ["/api/v1/", "/api/v1/metadata/x"])
def test_asgi_get(
    benchmark: Any, app: Any, loop: asyncio.AbstractEventLoop, array_x: str, path: str
) -> None:
    status = benchmark(lambda: loop.run_until_complete(call(app, "GET", path)))
    assert status == 200
