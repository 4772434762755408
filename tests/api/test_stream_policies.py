"""Opt-in stream semantics beyond Tiled (docs/api.md): gap and epoch notices, the slow-subscriber
cap and policies, 1012 "Live subscription lost" with stock-client resume, deflate, big frames."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close, Frame, Opcode
from websockets.sync.client import connect
from websockets.uri import parse_uri

from tests.api.conftest import AUTH, create_array
from tests.api.test_websocket import put, recv, ws
from tests.compat.conftest import Collector
from tests.conftest import RunningServer, start_server, stop_server


def _server(tmp: Path, *extra: str, hooks: bool = False) -> Iterator[RunningServer]:
    if hooks:
        os.environ["FERROTILE_TEST_HOOKS"] = "1"
    try:
        running = start_server(tmp, *extra)
    finally:
        os.environ.pop("FERROTILE_TEST_HOOKS", None)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def short_ttl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Messages expire after 1 s; an idle stream restarts its sequence after 2 s."""
    yield from _server(
        tmp_path_factory.mktemp("ttl"), "--cache-data-ttl", "1", "--cache-seq-ttl", "2"
    )


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from _server(tmp_path_factory.mktemp("hooks"), hooks=True)


def _http(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=10)


def test_replay_of_expired_sequences_notice_only_when_asked(short_ttl: RunningServer) -> None:
    key = f"g{time.monotonic_ns()}"
    with _http(short_ttl) as http:
        create_array(http, key, np.arange(3))  # seq 1
        put(http, key, np.arange(3))  # seq 2
        time.sleep(1.3)  # both expire
        put(http, key, np.array([7, 8, 9]))  # seq 3
        with ws(short_ttl, key, "envelope_format=msgpack&start=1") as conn:
            recv(conn)
            assert recv(conn)["sequence"] == 3  # Tiled: silent skip
        with ws(short_ttl, key, "envelope_format=json&start=1&notify_gaps=true") as conn:
            recv(conn)
            assert recv(conn) == {
                "type": "stream-gap",
                "missed_from": 1,
                "missed_to": 2,
                "count": 2,
                "reason": "expired",
            }
            assert recv(conn)["sequence"] == 3


def test_sequence_restart_and_lost_history_send_epoch_notices(short_ttl: RunningServer) -> None:
    key = f"e{time.monotonic_ns()}"
    with _http(short_ttl) as http:
        create_array(http, key, np.arange(3))  # seq 1
        put(http, key, np.arange(3))  # seq 2
        with ws(short_ttl, key, "envelope_format=msgpack&notify_gaps=true") as conn:
            recv(conn)
            time.sleep(2.3)  # the idle stream's sequence restarts
            put(http, key, np.array([1, 1, 1]))
            epoch = recv(conn)
            assert epoch["type"] == "stream-epoch" and epoch["last_sequence"] == 2
            assert recv(conn)["sequence"] == 1
        # A client resuming at 10 after the restart is told its history is gone.
        with ws(short_ttl, key, "envelope_format=msgpack&start=10&notify_gaps=true") as conn:
            recv(conn)
            notice = recv(conn)
            assert notice["type"] == "stream-epoch" and notice["current_sequence"] == 1
        with ws(short_ttl, key, "envelope_format=msgpack&start=10") as conn:
            recv(conn)
            put(http, key, np.array([2, 2, 2]))
            assert recv(conn)["sequence"] == 2  # Tiled: nothing replayed, then live


def test_query_parameters_are_validated(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(3))
    for query in ("on_overflow=drop", "max_queue_bytes=0", "notify_gaps=maybe"):
        with pytest.raises(InvalidStatus) as info:
            ws(server, key, query)
        assert info.value.response.status_code == 400


class FrozenSubscriber:
    """A subscriber that reads nothing until told to: a plain socket with a small receive
    buffer and websockets' sans-I/O protocol (the sync client reads in a background thread)."""

    def __init__(self, server: RunningServer, key: str, query: str) -> None:
        uri = parse_uri(f"{server.ws_url}/api/v1/stream/single/{key}?{query}")
        self.protocol = ClientProtocol(uri, max_size=None)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.sock.connect((uri.host, uri.port))
        request = self.protocol.connect()
        request.headers.update(AUTH)
        self.protocol.send_request(request)
        self._flush()
        self.frames: list[dict[str, Any]] = []
        self.eof = False
        while not self.frames:  # the handshake, then the schema frame
            self._read(timeout=10)

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def _read(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        data = self.sock.recv(1 << 20)
        if data:
            self.protocol.receive_data(data)
        else:
            self.eof = True
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.BINARY:
                self.frames.append(msgpack.unpackb(event.data))
        self._flush()

    def drain(self, timeout: float = 10) -> Close | None:
        """Read until the connection ends; return the close frame received (None: none)."""
        with contextlib.suppress(ConnectionError):
            while not self.eof and self.protocol.close_rcvd is None:
                self._read(timeout)
        return self.protocol.close_rcvd

    def close(self) -> None:
        self.sock.close()

    def data(self) -> list[int]:
        return [f["sequence"] for f in self.frames if f["type"] == "array-data"]


def _dropped(close: Close) -> int:
    return int(close.reason.rsplit("dropped ", 1)[1].split()[0])


def _write_with_healthy_reader(
    server: RunningServer, http: httpx.Client, key: str, n: int, array: np.ndarray, query: str
) -> tuple[list[int], float]:
    """Write ``n`` times while a healthy subscriber reads; return its sequences, writing time."""
    seqs: list[int] = []
    with ws(server, key, query) as healthy:
        recv(healthy)

        def read() -> None:
            while len(seqs) < n:
                seqs.append(msgpack.unpackb(healthy.recv(timeout=10))["sequence"])

        reader = threading.Thread(target=read)
        reader.start()
        started = time.monotonic()
        for _ in range(n):
            assert put(http, key, array).status_code == 200
        writing = time.monotonic() - started
        reader.join(timeout=30)
    return seqs, writing


#: The healthy reader keeps the default cap (64 MiB, more than the 30 MiB written): only the
#: frozen subscriber is meant to overflow, and a 1 MiB cap on a healthy Python reader can trip
#: when the machine is busy.
HEALTHY = "envelope_format=msgpack"


@pytest.mark.parametrize("policy", ["close", "latest"])
def test_frozen_then_resumed_subscriber_every_loss_is_counted(
    server: RunningServer, http: httpx.Client, key: str, policy: str
) -> None:
    """received + dropped == published: frames handed to Granian are delivered (its send
    blocks while the peer's window is full), the rest is counted by the policy."""
    n, array = 120, np.zeros(32768)  # 120 x 256 KiB = 30 MiB, sequences 2..121
    create_array(http, key, array)
    query = f"envelope_format=msgpack&max_queue_bytes=1048576&on_overflow={policy}&notify_gaps=1"
    frozen = FrozenSubscriber(server, key, query)
    try:
        healthy, writing = _write_with_healthy_reader(server, http, key, n, array, HEALTHY)
        if policy == "latest":
            # Still subscribed: the newest message always arrives, after gap notices.
            while n + 1 not in frozen.data():
                frozen._read(timeout=10)
            close = None
        else:
            close = frozen.drain()
    finally:
        frozen.close()
    assert healthy == list(range(2, n + 2))
    data = frozen.data()
    gaps = [f for f in frozen.frames if f["type"] == "stream-gap"]
    if policy == "close":
        assert close is not None and close.code == 1008, close
        assert "max_queue_bytes=1048576" in close.reason
        dropped = _dropped(close)
        assert not gaps
        assert data == list(range(2, 2 + len(data)))
    else:
        assert gaps and all(g["reason"] == "overflow" for g in gaps)
        dropped = sum(g["count"] for g in gaps)
        assert data == sorted(data) and data[-1] == n + 1
    print(f"{policy}: {len(data)} received, {dropped} dropped; {n} writes in {writing:.2f}s")
    assert dropped > 0
    assert len(data) + dropped == n


#: The edge's watchdog (rust/src/edge/subscribe.rs): a close-policy subscriber over its cap that
#: completes no write for FROZEN_TIMEOUT seconds is dropped; it looks every STALL_CHECK seconds.
FROZEN_TIMEOUT = 5.0
STALL_CHECK = 1.0


def test_subscriber_frozen_forever_is_dropped_others_unaffected(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    """A close-policy subscriber over its cap that reads nothing is dropped within a bounded
    time (no 1008 frame can reach it), while a healthy subscriber and the writer carry on."""
    n, array = 120, np.zeros(32768)
    create_array(http, key, array)
    query = "envelope_format=msgpack&max_queue_bytes=1048576"
    frozen = FrozenSubscriber(server, key, query)
    try:
        healthy, writing = _write_with_healthy_reader(server, http, key, n, array, HEALTHY)
        assert healthy == list(range(2, n + 2))
        assert writing < FROZEN_TIMEOUT
        deadline = time.monotonic() + FROZEN_TIMEOUT + 2 * STALL_CHECK + 5
        while "dropping frozen subscriber" not in server.logs():
            assert time.monotonic() < deadline, "the frozen subscriber was not dropped"
            time.sleep(0.2)
        # Waking up too late, it gets what was in flight, then the connection ends without a
        # close frame (the 1008 could not be written behind the data).
        close = frozen.drain()
    finally:
        frozen.close()
    data = frozen.data()
    print(f"frozen forever: {len(data)} received before the connection was dropped")
    assert close is None or close.code == 1005, close
    assert data == list(range(2, 2 + len(data))) and len(data) < n


def test_latest_policy_skips_to_newest_with_a_notice(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    n, array = 120, np.zeros(32768)
    create_array(http, key, array)
    query = "envelope_format=msgpack&max_queue_bytes=1048576&on_overflow=latest&notify_gaps=1"
    with ws(server, key, query) as frozen:
        recv(frozen)
        for _ in range(n):
            put(http, key, array)
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1].get("sequence") != n + 1:
            frames.append(msgpack.unpackb(frozen.recv(timeout=10)))
    gaps = [f for f in frames if f["type"] == "stream-gap"]
    data = [f["sequence"] for f in frames if f["type"] == "array-data"]
    print(f"latest: {len(data)} delivered, {len(gaps)} gap notices")
    assert gaps and all(g["reason"] == "overflow" for g in gaps)
    assert data == sorted(data) and data[-1] == n + 1
    assert len(data) + sum(g["count"] for g in gaps) == n


def test_websocket_declines_permessage_deflate(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(3))
    url = f"{server.ws_url}/api/v1/stream/single/{key}?envelope_format=msgpack"
    with connect(url, additional_headers=AUTH, compression="deflate") as conn:
        assert conn.request is not None and conn.response is not None
        offered = conn.request.headers.get("Sec-WebSocket-Extensions") or ""
        assert "permessage-deflate" in offered
        assert conn.response.headers.get("Sec-WebSocket-Extensions") is None
        recv(conn)


def test_stock_client_receives_messages_over_1_mib(server: RunningServer, key: str) -> None:
    from tiled.client import from_uri

    client = from_uri(server.url, api_key=server.api_key)
    big = np.arange(400_000, dtype="float64")  # 3.2 MB
    node = client.write_array(big, key=key)
    collector = Collector()
    sub = node.subscribe()
    sub.new_data.add_callback(collector)
    with sub.start_in_thread(start=1, max_size=16 * 1024 * 1024):
        node.write(big + 1)
        updates = collector.take(2)
    assert [u.sequence for u in updates] == [1, 2]
    np.testing.assert_array_equal(updates[1].data(), big + 1)


def test_1012_live_subscription_lost_then_stock_client_resumes(hooks: RunningServer) -> None:
    from tiled.client import from_uri

    key = f"r{time.monotonic_ns()}"
    client = from_uri(hooks.url, api_key=hooks.api_key)
    node = client.write_array(np.zeros(3), key=key)  # seq 1
    collector = Collector()
    sub = node.subscribe()
    sub.new_data.add_callback(collector)
    with _http(hooks) as http, sub.start_in_thread(start=1):
        assert collector.get().sequence == 1
        node.write(np.ones(3))  # seq 2
        assert collector.get().sequence == 2
        # A raw observer shows the close code and reason the stock client gets.
        with ws(hooks, key) as raw:
            recv(raw)
            assert http.post(f"/_test/interrupt-streams/{key}").status_code == 200
            with pytest.raises(ConnectionClosed) as info:
                recv(raw)
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (1012, "Live subscription lost")
        node.write(np.full(3, 3.0))  # seq 3, possibly while the client reconnects
        node.write(np.full(3, 4.0))  # seq 4
        later = collector.take(2, timeout=20)
    assert [u.sequence for u in later] == [3, 4]
    np.testing.assert_array_equal(later[1].data(), np.full(3, 4.0))
    assert collector.empty_after(0.2)  # no duplicates after the resume


def test_interrupt_hook_is_absent_by_default(http: httpx.Client, key: str) -> None:
    create_array(http, key, np.arange(3))
    assert http.post(f"/_test/interrupt-streams/{key}").status_code in (404, 405)
