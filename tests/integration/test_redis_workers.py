"""Two workers on one port sharing Redis: writes through any worker reach subscribers on every
worker, in order and without loss; replay works from any worker; a structure change through
one worker is seen by the others (catalog cache invalidation).

Connections cannot be pinned to a worker, so every check is made on several connections and
every write uses a new connection: with two workers, the chance that all of them land on the
subscribers' worker is negligible (2 * 2**-1000 for the fan-out test).
"""

from __future__ import annotations

import time

import httpx
import msgpack
import numpy as np
from websockets.sync.client import ClientConnection, connect

from tests.api.conftest import array_body
from tests.conftest import RunningServer, needs_redis_hub
from tests.integration.conftest import AUTH

pytestmark = needs_redis_hub

OCTET = {"Content-Type": "application/octet-stream"}
SUBSCRIBERS = 6
WRITES = 1000


def subscribe(server: RunningServer, key: str, start: int | None = None) -> ClientConnection:
    query = "envelope_format=msgpack" + ("" if start is None else f"&start={start}")
    conn = connect(
        f"{server.ws_url}/api/v1/stream/single/{key}?{query}",
        additional_headers=AUTH,
        open_timeout=5,
        close_timeout=2,
        max_size=None,
    )
    assert msgpack.unpackb(conn.recv(timeout=5))["type"] == "array-schema"
    return conn


def sequences(conn: ClientConnection, n: int) -> list[tuple[int, int]]:
    """``(sequence, first value of the payload)`` of the next ``n`` messages."""
    out = []
    for _ in range(n):
        message = msgpack.unpackb(conn.recv(timeout=10))
        out.append((message["sequence"], int(np.frombuffer(message["payload"], "<i8")[0])))
    return out


def create(http: httpx.Client, key: str, array: np.ndarray) -> None:
    response = http.post("/metadata/", json=array_body(key, array))
    assert response.status_code == 200, response.text


def test_fan_out_and_replay_across_workers(
    redis_workers: RunningServer, http: httpx.Client, key: str
) -> None:
    create(http, key, np.zeros(4, dtype="<i8"))
    subscribers = [subscribe(redis_workers, key) for _ in range(SUBSCRIBERS)]
    try:
        for i in range(1, WRITES + 1):
            body = np.full(4, i, dtype="<i8").tobytes()
            response = http.put(f"/array/full/{key}", content=body, headers=OCTET)
            assert response.status_code == 200, response.text
        expected = [(i, i) for i in range(1, WRITES + 1)]
        for conn in subscribers:
            assert sequences(conn, WRITES) == expected
    finally:
        for conn in subscribers:
            conn.close()

    for start, first in ((0, 1), (1, 1), (WRITES - 10, WRITES - 10)):
        for _ in range(3):
            with subscribe(redis_workers, key, start) as conn:
                got = sequences(conn, WRITES - first + 1)
                assert got == [(i, i) for i in range(first, WRITES + 1)]


def test_large_frames_cross_workers_byte_exact(
    redis_workers: RunningServer, http: httpx.Client, key: str
) -> None:
    """Frames of 64 KiB and more travel through Redis in keys of their own (never through the
    publish script): live and replayed on every worker, byte for byte, mixed with small ones."""
    elements = (2 * 2**20) // 8  # 2 MiB: more than one pub/sub message should carry
    create(http, key, np.zeros(elements, dtype="<i8"))
    rng = np.random.default_rng(7)
    sizes = [elements, 8, 64 * 1024 // 8, 64 * 1024 // 8 - 1, 300 * 1024 // 8, 16, elements]
    frames = [rng.integers(0, 2**62, n, dtype="<i8").tobytes() for n in sizes]
    subscribers = [subscribe(redis_workers, key) for _ in range(4)]

    def payloads(conn: ClientConnection, n: int) -> list[tuple[int, bytes]]:
        return [
            (m["sequence"], m["payload"])
            for m in (msgpack.unpackb(conn.recv(timeout=10)) for _ in range(n))
        ]

    try:
        for size, frame in zip(sizes, frames, strict=True):
            response = http.patch(
                f"/array/full/{key}",
                params={"persist": "false", "offset": "0", "shape": str(size)},
                content=frame,
                headers=OCTET,
            )
            assert response.status_code == 200, response.text
        expected = list(enumerate(frames, 1))
        for conn in subscribers:
            assert payloads(conn, len(frames)) == expected
    finally:
        for conn in subscribers:
            conn.close()
    for _ in range(3):
        with subscribe(redis_workers, key, 1) as conn:
            assert payloads(conn, len(frames)) == expected


def test_extend_through_any_worker_is_seen_by_every_worker(
    redis_workers: RunningServer, http: httpx.Client, key: str
) -> None:
    create(http, key, np.array([0], dtype="<i8"))
    for n in range(1, 30):
        response = http.patch(
            f"/array/full/{key}",
            params={"offset": str(n), "shape": "1", "extend": "true"},
            content=np.array([n], dtype="<i8").tobytes(),
            headers=OCTET,
        )
        assert response.status_code == 200, response.text
        # Reads through every worker converge on the new shape (the other worker applies the
        # invalidation from Redis within moments; reads are not a catalog query each).
        deadline = time.monotonic() + 1.0
        seen: list[list[int]] = []
        while time.monotonic() < deadline:
            meta = http.get(f"/metadata/{key}").json()["data"]["attributes"]["structure"]
            seen.append(meta["shape"])
            if seen[-4:] == [[n + 1]] * 4:
                break
        assert seen[-4:] == [[n + 1]] * 4, seen
        # An in-bounds PATCH without extend at the new end, through either worker: structure-
        # changing writes read the catalog, so none may answer 409 (or shrink the array).
        response = http.patch(
            f"/array/full/{key}",
            params={"offset": str(n), "shape": "1"},
            content=np.array([n], dtype="<i8").tobytes(),
            headers=OCTET,
        )
        assert response.status_code == 200, response.text
    data = http.get(f"/array/full/{key}", headers={"Accept": "application/octet-stream"})
    assert np.frombuffer(data.content, "<i8").tolist() == list(range(30))


def test_delete_through_one_worker_is_seen_by_every_worker(
    redis_workers: RunningServer, http: httpx.Client, key: str
) -> None:
    create(http, key, np.arange(3, dtype="<i8"))
    for _ in range(4):  # warm both workers' caches
        assert http.get(f"/metadata/{key}").status_code == 200
    response = http.delete(f"/metadata/{key}", params={"external_only": "false"})
    assert response.status_code == 200, response.text
    for _ in range(6):
        assert http.get(f"/metadata/{key}").status_code == 404


def test_replay_from_zero_of_an_empty_stream_reports_no_gap(
    redis_workers: RunningServer, http: httpx.Client, key: str
) -> None:
    """``start=0`` with ``notify_gaps`` before anything was written: sequence 0 does not exist,
    so nothing was lost (a gap notice 0..0 'evicted' was sent before)."""
    create(http, key, np.zeros(4, dtype="<i8"))
    conns = [
        connect(
            f"{redis_workers.ws_url}/api/v1/stream/single/{key}"
            "?envelope_format=msgpack&start=0&notify_gaps=true",
            additional_headers=AUTH,
            open_timeout=5,
            close_timeout=2,
        )
        for _ in range(4)
    ]
    try:
        for conn in conns:
            assert msgpack.unpackb(conn.recv(timeout=5))["type"] == "array-schema"
        body = np.full(4, 7, dtype="<i8").tobytes()
        assert http.put(f"/array/full/{key}", content=body, headers=OCTET).status_code == 200
        for conn in conns:
            first = msgpack.unpackb(conn.recv(timeout=10))
            assert (first["type"], first.get("sequence")) == ("array-data", 1), first
    finally:
        for conn in conns:
            conn.close()
