"""Redis lost while running (killed with SIGKILL mid-stream, then restarted empty on the same
port): writes answer 503 with a ``detail`` and store nothing, subscribers are closed with 1012
and resume by themselves, subscribers that asked for ``notify_gaps`` are told what the restart
cost them, and nothing is lost silently (sequences and values are counted)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.api.conftest import array_body
from tests.compat.conftest import Collector
from tests.conftest import RunningServer, needs_redis_hub, start_server, stop_server
from tests.integration.conftest import AUTH, fresh
from tests.integration.test_redis_workers import OCTET, create, subscribe
from tests.redis import RedisServer

pytestmark = needs_redis_hub

RECOVERY = 20.0
BEFORE = 100
"""Writes before the outage. A resuming subscriber asks for ``start = last + 1``; the restarted
stream must not have reached that sequence yet, or the resume could not tell the two apart."""


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@contextmanager
def two_workers(tmp_path: Path, cache: str, *extra: str) -> Iterator[RunningServer]:
    """A ferrotile server with two workers streaming through ``cache``."""
    running = start_server(tmp_path, "--cache", cache, "--workers", "2", *extra)
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture
def faulty(own_redis: RedisServer, tmp_path: Path) -> Iterator[RunningServer]:
    with two_workers(tmp_path, own_redis.url) as running:
        yield running


def put(http: httpx.Client, key: str, value: int) -> httpx.Response:
    body = np.full(3, value, dtype="<i8").tobytes()
    return http.put(f"/array/full/{key}", content=body, headers=OCTET)


def stored(http: httpx.Client, key: str) -> list[int]:
    response = http.get(f"/array/full/{key}", headers={"Accept": "application/octet-stream"})
    assert response.status_code == 200, response.text
    values: list[int] = np.frombuffer(response.content, "<i8").tolist()
    return values


@dataclass
class Resuming:
    """A raw subscriber with ``notify_gaps`` that resumes as the stock client does: after an
    abnormal close (1012) it reconnects with ``start = last sequence + 1``, retrying while the
    server refuses. It keeps every frame after the schemas, and every close code."""

    server: RunningServer
    key: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    closes: list[int] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def data(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "array-data"]

    def _run(self) -> None:
        last: int | None = None
        while not self.stop.is_set():
            query = "envelope_format=msgpack&notify_gaps=true"
            if last is not None:
                query += f"&start={last + 1}"
            url = f"{self.server.ws_url}/api/v1/stream/single/{self.key}?{query}"
            try:
                with connect(url, additional_headers=AUTH, open_timeout=5) as conn:
                    assert msgpack.unpackb(conn.recv(timeout=5))["type"] == "array-schema"
                    self.connected.set()
                    while not self.stop.is_set():
                        try:
                            frame = msgpack.unpackb(conn.recv(timeout=0.2))
                        except TimeoutError:
                            continue
                        self.frames.append(frame)
                        if "sequence" in frame:
                            last = frame["sequence"]
            except ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd else 1006)
            except Exception:  # refused or dropped while the server recovers: try again
                pass
            self.connected.clear()
            time.sleep(0.2)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = RECOVERY) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@dataclass
class Watchers:
    """Subscribers of one node, connected before a fault: the stock client (``updates``), four
    raw sockets spread over the workers, and a resuming ``notify_gaps`` subscriber."""

    updates: Collector
    raw: list[ClientConnection]
    told: Resuming

    def all_closed_with_1012(self) -> None:
        """Every raw subscriber is closed with 1012 (told to come back later)."""
        for conn in self.raw:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    conn.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012


@contextmanager
def watched(server: RunningServer, http: httpx.Client, key: str, before: int) -> Iterator[Watchers]:
    """Creates the node, connects the :class:`Watchers`, writes 1..``before`` (each answered
    200) and waits until every subscriber has them all."""
    from tiled.client import from_uri

    create(http, key, np.zeros(3, dtype="<i8"))
    updates = Collector()
    sub = from_uri(server.url, api_key=server.api_key)[key].subscribe()
    sub.new_data.add_callback(updates)
    sub.start_in_thread()
    watchers = Watchers(updates, [subscribe(server, key) for _ in range(4)], Resuming(server, key))
    try:
        wait_until(watchers.told.connected.is_set, "the notify_gaps subscriber")
        for value in range(1, before + 1):
            assert put(http, key, value).status_code == 200
        wait_until(lambda: len(watchers.told.data()) == before, "the writes before the fault")
        assert [int(u.data()[0]) for u in updates.take(before)] == list(range(1, before + 1))
        yield watchers
    finally:
        sub.disconnect()
        watchers.told.close()
        for conn in watchers.raw:
            conn.close()


def write_through_recovery(
    http: httpx.Client, key: str, first: int, count: int
) -> tuple[list[int], int]:
    """Writes ``first``, ``first + 1``, ... until ``count`` of them answered 200 (within
    ``RECOVERY``). Every other answer must be 503 with nothing stored (the node still holds the
    last value written). Returns the values written and the number of refusals."""
    written: list[int] = []
    refused = 0
    deadline = time.monotonic() + RECOVERY
    while len(written) < count:
        value = first + len(written)
        response = put(http, key, value)
        if response.status_code == 200:
            written.append(value)
            continue
        assert response.status_code == 503, response.text  # the cache is still away
        assert "Nothing was stored" in response.json()["detail"]
        assert stored(http, key) == [value - 1] * 3  # nothing half-written
        refused += 1
        assert time.monotonic() < deadline, "writes did not resume"
        time.sleep(0.1)
    return written, refused


def test_redis_killed_mid_stream_then_back(
    own_redis: RedisServer, faulty: RunningServer, key: str
) -> None:
    ok = list(range(1, BEFORE + 1))  # values whose write answered 200, in order
    with fresh(faulty) as http, watched(faulty, http, key, BEFORE) as watchers:
        updates, told = watchers.updates, watchers.told
        own_redis.stop()  # SIGKILL, mid-stream: subscribers are connected and live
        watchers.all_closed_with_1012()
        wait_until(lambda: 1012 in told.closes, "the notify_gaps subscriber's 1012")
        for n in range(1, 9):
            response = put(http, key, -n)
            assert response.status_code == 503, response.text
            assert "Nothing was stored" in response.json()["detail"]
            assert response.headers["Retry-After"] == "1"
        patch = http.patch(
            f"/array/full/{key}",
            params={"offset": "3", "shape": "1", "extend": "true"},
            content=np.array([-1], "<i8").tobytes(),
            headers=OCTET,
        )
        assert patch.status_code == 503, patch.text
        created = http.post("/metadata/", json=array_body(f"{key}b", np.zeros(1)))
        edited = http.put(f"/metadata/{key}", json={"metadata": {"lost": True}})
        for response in (created, edited):
            assert response.status_code == 503, response.text
            assert "Nothing was stored" in response.json()["detail"]
        # Nothing half-applied: the refused writes were not stored.
        assert stored(http, key) == [BEFORE] * 3
        assert http.get(f"/metadata/{key}b").status_code == 404
        node = http.get(f"/metadata/{key}").json()["data"]["attributes"]
        assert node["metadata"] == {} and node["structure"]["shape"] == [3]

        own_redis.start()  # same port, empty: every stream restarts at sequence 1
        after, _ = write_through_recovery(http, key, BEFORE + 1, 20)
        ok.extend(after)
        assert stored(http, key) == [after[-1]] * 3

        # The stock client resumed by itself and sees the writes made after the recovery.
        got = updates.wait_for(lambda u: u.data()[0] == after[-1], timeout=RECOVERY)
        np.testing.assert_array_equal(got.data(), [after[-1]] * 3)

        # notify_gaps: every write that succeeded arrived, or a notice covers it.
        def accounted() -> bool:
            epochs = [f for f in told.frames if f["type"] == "stream-epoch"]
            lost_to_restart = epochs[-1]["current_sequence"] if epochs else 0
            return len(told.data()) + lost_to_restart >= len(ok)

        wait_until(accounted, "every write after the restart")
        check_notified(told.frames, ok)


def check_notified(frames: list[dict[str, Any]], ok: list[int]) -> None:
    """Sequences run on one by one; a jump or a restart comes right after a notice saying so,
    and the values received are the written ones minus exactly those the notices declared
    lost (those of the restarted stream published before the subscriber was back)."""
    expected_next: int | None = None
    notice: dict[str, Any] | None = None
    received: list[int] = []
    declared_lost = 0
    for frame in frames:
        if frame["type"] in ("stream-gap", "stream-epoch"):
            notice = frame
            continue
        sequence = frame["sequence"]
        if expected_next is not None and sequence != expected_next:
            assert notice is not None, f"sequence {sequence} after {expected_next - 1}, untold"
            if notice["type"] == "stream-gap":
                assert notice["missed_to"] + 1 == sequence, notice
                declared_lost += notice["count"]
            else:
                assert sequence <= notice["current_sequence"] + 1, notice
                declared_lost += sequence - 1
        notice = None
        expected_next = sequence + 1
        received.append(int(np.frombuffer(frame["payload"], "<i8")[0]))
    if notice is not None:  # a last notice, no frame after it: it declares the tail lost
        declared_lost += (
            notice["count"] if notice["type"] == "stream-gap" else notice["current_sequence"]
        )
    assert received == ok[:BEFORE] + ok[BEFORE + declared_lost :]
    assert len(received) + declared_lost == len(ok)
