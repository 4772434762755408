"""Redis lost while running: writes answer 503 with a ``detail`` and store nothing, subscribers
are closed with 1012, and everything recovers by itself when Redis is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from tests.compat.conftest import Collector
from tests.conftest import RunningServer, needs_redis_hub, start_server, stop_server
from tests.integration.conftest import fresh
from tests.integration.test_redis_workers import OCTET, create, subscribe
from tests.redis import RedisServer

pytestmark = needs_redis_hub

RECOVERY = 20.0


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def faulty(own_redis: RedisServer, tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path, "--cache", own_redis.url, "--workers", "2")
    yield running
    stop_server(running)


def put(http: httpx.Client, key: str, value: int) -> httpx.Response:
    body = np.full(3, value, dtype="<i8").tobytes()
    return http.put(f"/array/full/{key}", content=body, headers=OCTET)


def until_ok(http: httpx.Client, key: str, value: int) -> None:
    deadline = time.monotonic() + RECOVERY
    while True:
        response = put(http, key, value)
        if response.status_code == 200:
            return
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, "did not recover after Redis came back"
        time.sleep(0.2)


def test_redis_lost_then_back(own_redis: RedisServer, faulty: RunningServer, key: str) -> None:
    from tiled.client import from_uri

    client = from_uri(faulty.url, api_key=faulty.api_key)
    with fresh(faulty) as http:
        create(http, key, np.zeros(3, dtype="<i8"))
        updates = Collector()
        sub = client[key].subscribe()
        sub.new_data.add_callback(updates)
        sub.start_in_thread()
        raw = [subscribe(faulty, key) for _ in range(4)]
        try:
            assert put(http, key, 1).status_code == 200
            np.testing.assert_array_equal(updates.get().data(), [1, 1, 1])

            own_redis.stop()
            for conn in raw:  # subscribers on every worker are told to come back later
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        conn.recv(timeout=10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            for _ in range(4):
                response = put(http, key, 2)
                assert response.status_code == 503, response.text
                assert response.json()["detail"]
                assert "Retry-After" in response.headers
            # Nothing half-applied: the refused writes were not stored.
            stored = http.get(f"/array/full/{key}", headers={"Accept": "application/octet-stream"})
            assert np.frombuffer(stored.content, "<i8").tolist() == [1, 1, 1]

            own_redis.start()
            until_ok(http, key, 3)
            # The stock client reconnects by itself and sees writes made after the recovery.
            got = updates.wait_for(lambda u: u.data()[0] == 3, timeout=RECOVERY)
            np.testing.assert_array_equal(got.data(), [3, 3, 3])
            for _ in range(4):  # both workers serve writes again
                assert put(http, key, 4).status_code == 200
        finally:
            sub.disconnect()
            for conn in raw:
                conn.close()
