"""Bad input at the edge: each gets a clear status or close code, and everyone else is served.

Malformed HTTP, a body over the cap (413 before it is read), a client gone mid-body (nothing
stored, nothing published), a slow sender (header and body timeouts), garbage and oversized
WebSocket messages (1009/1003/1008 with a reason), and thousands of connections opened and
dropped.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.api.conftest import array_body
from tests.conftest import RunningServer, start_server, stop_server

AUTH = {"Authorization": "Apikey secret"}
OCTET = {"Content-Type": "application/octet-stream"}
#: The short limits of the server these tests use.
TIMEOUT = 1.0
MAX_REQUEST = 1024 * 1024
MAX_STREAMER_MESSAGE = 4096


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("strict"),
        "--client-timeout", str(TIMEOUT),
        "--max-request-bytes", str(MAX_REQUEST),
        "--streamer-max-message-bytes", str(MAX_STREAMER_MESSAGE),
    )  # fmt: skip
    yield running
    stop_server(running)


def port(server: RunningServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def raw(server: RunningServer, data: bytes, *, read: bool = True, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port(server)), timeout=timeout) as sock:
        sock.sendall(data)
        if not read:
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


def healthy(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def make_array(server: RunningServer, key: str, array: np.ndarray) -> None:
    with httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=10) as http:
        assert http.post("/metadata/", json=array_body(key, array)).status_code == 200
        response = http.put(f"/array/full/{key}", content=array.tobytes(), headers=OCTET)
        assert response.status_code == 200, response.text


def stored(server: RunningServer, key: str) -> list[float]:
    response = httpx.get(f"{server.url}/api/v1/array/full/{key}", headers=AUTH, timeout=10)
    assert response.status_code == 200
    return np.frombuffer(response.content, "<f8").tolist()


def test_malformed_http_is_400_and_others_are_served(strict: RunningServer) -> None:
    for garbage in (
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x00\xff" * 100 + b"\r\n\r\n",
    ):
        answer = raw(strict, garbage)
        assert answer.startswith(b"HTTP/1.1 400") or answer == b"", answer
    healthy(strict)


def test_body_over_the_cap_is_413_before_it_is_read(strict: RunningServer, key: str) -> None:
    make_array(strict, key, np.zeros(4))
    head = (
        f"PUT /api/v1/array/full/{key} HTTP/1.1\r\nHost: x\r\nAuthorization: Apikey secret\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {MAX_REQUEST + 1}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = raw(strict, head)  # not one byte of the body is sent
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert time.monotonic() - started < TIMEOUT, "answered only after waiting for the body"
    assert stored(strict, key) == [0.0] * 4


def test_client_gone_mid_body_stores_and_publishes_nothing(strict: RunningServer, key: str) -> None:
    make_array(strict, key, np.zeros(3))
    url = f"{strict.ws_url}/api/v1/stream/single/{key}?envelope_format=msgpack"
    with connect(url, additional_headers=AUTH, open_timeout=10) as sub:
        sub.recv(timeout=10)  # the schema
        head = (
            f"PUT /api/v1/array/full/{key} HTTP/1.1\r\nHost: x\r\nAuthorization: Apikey secret\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 24\r\n\r\n"
        ).encode()
        raw(strict, head + b"\x07" * 10, read=False)  # 10 of 24 bytes, then gone
        time.sleep(0.3)
        assert stored(strict, key) == [0.0, 0.0, 0.0]
        with httpx.Client(headers={**AUTH, **OCTET}, timeout=10) as http:
            body = np.arange(3.0).tobytes()
            assert (
                http.put(f"{strict.url}/api/v1/array/full/{key}", content=body).status_code == 200
            )
        message = msgpack.unpackb(sub.recv(timeout=10))
    assert message["sequence"] == 2, "the abandoned write took a sequence number"
    assert np.frombuffer(message["payload"], "<f8").tolist() == [0.0, 1.0, 2.0]


def test_slow_senders_time_out(strict: RunningServer, key: str) -> None:
    make_array(strict, key, np.zeros(3))
    with socket.create_connection(("127.0.0.1", port(strict)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the headers never end
        started = time.monotonic()
        answer = sock.recv(65536)
        waited = time.monotonic() - started
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    assert TIMEOUT * 0.5 <= waited < TIMEOUT + 5
    head = (
        f"PUT /api/v1/array/full/{key} HTTP/1.1\r\nHost: x\r\nAuthorization: Apikey secret\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 24\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port(strict)), timeout=10) as sock:
        sock.sendall(head + b"\x01" * 8)  # a third of the body, then silence
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"stopped arriving" in answer
    assert stored(strict, key) == [0.0, 0.0, 0.0]
    healthy(strict)


def close_of(ws: object) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=10)  # type: ignore[attr-defined]
    received = closed.value.rcvd
    assert received is not None, "closed without a close frame"
    return received.code, received.reason


def test_oversized_websocket_messages_close_1009(strict: RunningServer, key: str) -> None:
    sid = f"s{key}"
    url = f"{strict.ws_url}/data/{sid}/push?header=0"
    with connect(url, additional_headers=AUTH, open_timeout=10, max_size=None) as push:
        push.send(b"x" * (MAX_STREAMER_MESSAGE + 1))
        code, reason = close_of(push)
    assert code == 1009 and reason, reason
    make_array(strict, key, np.zeros(3))
    url = f"{strict.ws_url}/api/v1/stream/single/{key}"
    with connect(url, additional_headers=AUTH, open_timeout=10, max_size=None) as sub:
        sub.recv(timeout=10)
        sub.send(b"y" * (128 * 1024))  # a subscriber only ever sends its auth
        code, reason = close_of(sub)
    assert code == 1009 and reason, reason
    healthy(strict)


def test_garbage_websocket_messages_are_refused_with_a_reason(
    strict: RunningServer, key: str
) -> None:
    sid = f"g{key}"
    with connect(
        f"{strict.ws_url}/data/{sid}/push", additional_headers=AUTH, open_timeout=10
    ) as push:
        push.send(b"binary where the JSON header belongs")
        code, reason = close_of(push)
    assert code == 1008 and "header" in reason
    with connect(
        f"{strict.ws_url}/data/{sid}/push", additional_headers=AUTH, open_timeout=10
    ) as push:
        push.send("[1, 2, 3")
        push.send(b"abc")
        code, reason = close_of(push)
    assert code == 1008 and "JSON" in reason
    make_array(strict, key, np.zeros(3))
    url = f"{strict.ws_url}/api/v1/stream/single/{key}"
    with connect(url, open_timeout=10) as sub:  # no key: first-message auth expected
        sub.send(b"\x00garbage")
        code, reason = close_of(sub)
    assert code == 4001 and reason
    with connect(f"{strict.ws_url}/api/v1/stream/push/{key}", additional_headers=AUTH) as push:
        push.send("{not a directive")
        text = json.loads(push.recv(timeout=10))
        code, reason = close_of(push)
    assert text["frame"] == 1 and code == 1008 and "directive" in reason
    healthy(strict)


def open_fds(server: RunningServer) -> int:
    return len(os.listdir(Path("/proc") / str(server.process.pid) / "fd"))


def test_thousands_of_connections_opened_and_dropped(strict: RunningServer) -> None:
    before = open_fds(strict)
    for _ in range(4):
        sockets = []
        for i in range(500):
            sock = socket.create_connection(("127.0.0.1", port(strict)), timeout=10)
            if i % 3 == 1:
                sock.sendall(b"GET /api/v1/ HTTP/1.1\r\nHost: x\r\n")  # half a request
            elif i % 3 == 2:
                sock.sendall(b"GET /api/v1/stream/single/ HTTP/1.1\r\nUpgrade: websocket\r\n")
            sockets.append(sock)
        for sock in sockets:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.close()  # reset, not a clean close
        healthy(strict)
    deadline = time.monotonic() + 10
    while open_fds(strict) > before + 20:
        assert time.monotonic() < deadline, f"{open_fds(strict)} fds open, {before} before"
        time.sleep(0.2)
    response = httpx.get(f"{strict.url}/api/v1/", timeout=5)
    assert response.status_code == 200 and response.json()["api_version"] == 0


@pytest.mark.parametrize(
    ("route", "query"),
    [
        ("stream", "start=18446744073709551616"),
        ("stream", "start=-1"),
        ("stream", "max_queue_bytes=18446744073709551616"),
        ("stream", "max_queue_bytes=1e20"),
        ("pull", "count=1e20"),
        ("pull", "block=18446744073709551616"),
        ("pull", "max_queue_bytes=18446744073709551616"),
        ("push", "persist=2"),
    ],
)
def test_out_of_range_websocket_parameters_are_refused_with_a_detail(
    strict: RunningServer, key: str, route: str, query: str
) -> None:
    """Integers that do not fit (or are not integers) are a 4xx with a detail at the handshake,
    never a 403 with an empty body or an accepted-then-dropped socket."""
    make_array(strict, key, np.zeros(2))
    path = {
        "stream": f"/api/v1/stream/single/{key}",
        "pull": f"/data/{key}/pull",
        "push": f"/api/v1/stream/push/{key}",
    }[route]
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{strict.ws_url}{path}?{query}", additional_headers=AUTH, open_timeout=10)
    response = refused.value.response
    assert response.status_code in (400, 422), response.status_code
    detail = json.loads(response.body)["detail"]
    assert query.split("=")[0] in detail, detail
