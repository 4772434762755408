"""G8 with real processes (issue 18): subscribers frozen during fan-out through a server of two
workers sharing Redis. Only the frozen ones are closed, with the close policy's 1008 and the
count of what they lost; every healthy subscriber, on either worker, receives every frame in
sequence; the workers' memory stays within a stated cap (from /proc). Rates and latencies are
not asserted here (no timed tests): the G8 rows of ``bench/stream_bench.py`` measure them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest
from websockets.sync.client import ClientConnection

from tests.api.conftest import create_array
from tests.api.test_stream_policies import FrozenSubscriber, _dropped
from tests.api.test_websocket import put, recv, ws
from tests.conftest import RunningServer, needs_redis_hub
from tests.integration.conftest import fresh
from tests.integration.test_redis_faults import two_workers
from tests.redis import RedisServer

pytestmark = needs_redis_hub

MiB = 1 << 20
BUDGET = 16 * MiB
"""``--cache-max-total-bytes`` of each worker: less than the 30 MiB written, so it evicts."""
IN_FLIGHT = 8 * MiB
"""Beyond retention: request bodies being stored, encoded frames being written to six sockets,
the Redis reader's buffers (a few 256 KiB frames each)."""
WRITES, FRAME = 120, np.zeros(32768)  # 120 x 256 KiB
HEALTHY, FROZEN = 4, 2
FROZEN_QUERY = "envelope_format=msgpack&max_queue_bytes=1048576&on_overflow=close"


@pytest.fixture
def budgeted(tmp_path: Path) -> Iterator[RunningServer]:
    redis = RedisServer()
    redis.start()
    try:
        with two_workers(tmp_path, f"{redis.url}/0", "--cache-max-total-bytes", str(BUDGET)) as s:
            yield s
    finally:
        redis.close()


def workers(server: RunningServer) -> list[int]:
    """The pids of the server's worker processes (the children it spawned to run the app)."""
    parent = server.process.pid
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    found = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert len(found) == 2, children
    return found


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_frozen_subscribers_through_two_redis_workers(budgeted: RunningServer, key: str) -> None:
    server = budgeted
    with fresh(server) as http:
        create_array(http, key, FRAME)
        # Warm up: a first round of fan-out through both workers, so that each one's baseline
        # holds its allocator arenas, connection pools and Redis reader's buffers.
        pids = workers(server)
        warm_up(server, http, key, pids)
        baseline = {pid: rss(pid) for pid in pids}
        cap = {pid: baseline[pid] + BUDGET + IN_FLIGHT for pid in pids}  # the stated cap

        frozen = [FrozenSubscriber(server, key, FROZEN_QUERY) for _ in range(FROZEN)]
        received: list[list[int]] = [[] for _ in range(HEALTHY)]
        conns = [ws(server, key) for _ in range(HEALTHY)]
        for conn in conns:
            recv(conn)  # the schema
        first = 2 + WRITES // 4  # after the warm-up's writes
        readers = [
            threading.Thread(target=read, args=(conn, seqs, WRITES))
            for conn, seqs in zip(conns, received, strict=True)
        ]
        peak = dict(baseline)
        done = threading.Event()

        def sample() -> None:  # the highest RSS of each worker while it fans out
            while not done.wait(0.05):
                for pid in pids:
                    peak[pid] = max(peak[pid], rss(pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for reader in readers:
                reader.start()
            for _ in range(WRITES):
                assert put(http, key, FRAME).status_code == 200
            for reader in readers:
                reader.join(timeout=60)
            closes = [f.drain() for f in frozen]
            done.set()
            sampler.join()
        finally:
            done.set()
            for conn in conns:
                conn.close()
            for f in frozen:
                f.close()

    expected = list(range(first, first + WRITES))
    assert all(seqs == expected for seqs in received), [s[:3] + s[-3:] for s in received]
    for f, close in zip(frozen, closes, strict=True):
        assert close is not None and close.code == 1008, close
        data = f.data()
        print(f"frozen: {len(data)} received, closed {close.code} {close.reason!r}")
        assert data == list(range(first, first + len(data)))  # what it got, in order
        if "fell behind" in close.reason:  # the budget evicted what it had not read yet
            missed = close.reason.rsplit("sequences ", 1)[1].split("..")[0]
            assert int(missed) == first + len(data), close.reason  # told where to resume
        else:  # over its cap first: the reason counts every message it will not get
            assert "max_queue_bytes=1048576" in close.reason, close.reason
            assert len(data) + _dropped(close) == WRITES
    for pid in pids:
        print(f"worker {pid}: RSS {baseline[pid] / MiB:.0f} MiB -> {peak[pid] / MiB:.0f} MiB")
        assert peak[pid] <= cap[pid] * 1.1, (pid, baseline[pid], peak[pid])


def read(conn: object, seqs: list[int], n: int) -> None:
    while len(seqs) < n:
        seqs.append(msgpack.unpackb(conn.recv(timeout=30))["sequence"])  # type: ignore[attr-defined]


def warm_up(server: RunningServer, http: httpx.Client, key: str, pids: list[int]) -> None:
    """Fan out a quarter of the writes to subscribers on both workers: the kernel spreads
    connections over the workers at random, so subscribe until each worker holds two."""
    conns: list[ClientConnection] = []
    served_by: list[int] = []
    try:
        while min(served_by.count(pid) for pid in pids) < 2:
            assert len(conns) < 40, served_by  # 2 each out of 40 at random: never in practice
            conns.append(ws(server, key))
            served_by.append(worker_of(server, conns[-1], pids))
            recv(conns[-1])  # the schema
        for _ in range(WRITES // 4):
            assert put(http, key, FRAME).status_code == 200
        for conn in conns:
            for _ in range(WRITES // 4):
                recv(conn)
    finally:
        for conn in conns:
            conn.close()


def worker_of(server: RunningServer, conn: object, pids: list[int]) -> int:
    """The worker that accepted ``conn``: the one holding the server side of its TCP socket."""
    client_port = conn.socket.getsockname()[1]  # type: ignore[attr-defined]
    server_port = int(server.url.rsplit(":", 1)[1])
    rows = [
        line.split()
        for table in ("tcp", "tcp6")
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]
    ]
    inode = next(
        fields[9]
        for fields in rows
        if int(fields[1].rsplit(":", 1)[1], 16) == server_port
        and int(fields[2].rsplit(":", 1)[1], 16) == client_port
    )
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if fd.readlink().name == f"socket:[{inode}]":
                    return pid
            except FileNotFoundError:  # closed while listed
                continue
    raise AssertionError(f"no worker holds the socket of port {client_port}")
