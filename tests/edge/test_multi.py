"""``WS /api/v1/stream/multi``: many subscriptions over one WebSocket, message by message (auth,
subscribe, data, unsubscribe, complete, errors, ping), against the real server."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.api.conftest import array_body
from tests.conftest import API_KEY, RunningServer, start_server, stop_server

AUTH = {"Authorization": f"Apikey {API_KEY}"}
OCTET = {"Content-Type": "application/octet-stream"}
Message = dict[str, Any]


def http_client(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=15)


def create(server: RunningServer, key: str, array: np.ndarray) -> None:
    with http_client(server) as http:
        assert http.post("/metadata/", json=array_body(key, array)).status_code == 200
        response = http.put(f"/array/full/{key}", content=array.tobytes(), headers=OCTET)
        assert response.status_code == 200, response.text


@contextmanager
def two_subscriptions(
    server: RunningServer, key: str, sizes: tuple[int, int] = (1, 1), ids: str = "ab"
) -> Iterator[tuple[ClientConnection, httpx.Client, str, str]]:
    """Two int64 arrays of ``sizes``, ``{key}a`` and ``{key}b``, subscribed to with ``ids`` on
    one authenticated msgpack connection."""
    a, b = f"{key}a", f"{key}b"
    create(server, a, np.zeros(sizes[0], dtype="<i8"))
    create(server, b, np.zeros(sizes[1], dtype="<i8"))
    with authed(server) as ws, http_client(server) as http:
        subscribe(ws, ids[0], a)
        subscribe(ws, ids[1], b)
        yield ws, http, a, b


def write(http: httpx.Client, key: str, array: np.ndarray) -> None:
    response = http.put(
        f"/array/full/{key}", content=array.tobytes(), headers=OCTET, params={"persist": "false"}
    )
    assert response.status_code == 200, response.text


def multi(
    server: RunningServer, query: str = "", headers: dict[str, str] | None = None
) -> ClientConnection:
    url = f"{server.ws_url}/api/v1/stream/multi" + (f"?{query}" if query else "")
    return connect(
        url, additional_headers=headers or {}, open_timeout=10, close_timeout=5, max_size=None
    )


def send(ws: ClientConnection, message: Message, binary: bool = False) -> None:
    ws.send(msgpack.packb(message) if binary else json.dumps(message))


def recv(ws: ClientConnection) -> Message:
    frame = ws.recv(timeout=15)
    decoded: Message = msgpack.unpackb(frame) if isinstance(frame, bytes) else json.loads(frame)
    return decoded


def until(ws: ClientConnection, done: Callable[[Message], bool]) -> list[Message]:
    """Every message up to and including the first for which ``done`` holds."""
    messages = [recv(ws)]
    while not done(messages[-1]):
        messages.append(recv(ws))
    return messages


def authed(server: RunningServer, query: str = "envelope_format=msgpack") -> ClientConnection:
    ws = multi(server, query)
    send(ws, {"type": "auth", "api_key": API_KEY})
    assert recv(ws) == {"type": "connection_ack"}
    return ws


def subscribe(ws: ClientConnection, sid: str, key: str, **options: Any) -> Message:
    """Subscribes; returns the schema message (the first ``data`` of the subscription)."""
    send(ws, {"type": "subscribe", "id": sid, "path": key, **options})
    schema = recv(ws)
    assert schema["type"] == "data" and schema["id"] == sid, schema
    assert schema["message"]["type"] == "array-schema"
    return schema


def data_of(messages: list[Message], sid: str) -> list[Message]:
    return [m["message"] for m in messages if m["type"] == "data" and m["id"] == sid]


def values(frames: list[Message], dtype: str = "<i8") -> list[list[int]]:
    return [
        np.frombuffer(f["payload"], dtype).tolist() for f in frames if f["type"] == "array-data"
    ]


def closed(ws: ClientConnection) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=15)
    return info.value


def test_auth_refusals_and_connection_ack(edge_server: RunningServer) -> None:
    with multi(edge_server) as ws:
        send(ws, {"type": "auth", "api_key": "wrong"})
        refused = closed(ws)
    assert refused.rcvd is not None
    assert (refused.rcvd.code, refused.rcvd.reason) == (1008, "Authentication failed")
    with multi(edge_server) as ws:  # anonymous, on a server that is not public
        send(ws, {"type": "auth"})
        refused = closed(ws)
    assert refused.rcvd is not None and refused.rcvd.code == 1008
    assert "Not enough permissions" in refused.rcvd.reason
    with multi(edge_server) as ws:
        send(ws, {"type": "subscribe", "id": "s1", "path": "x"})
        refused = closed(ws)
    assert refused.rcvd is not None and refused.rcvd.code == 1008
    assert "auth" in refused.rcvd.reason
    with pytest.raises(InvalidStatus) as handshake:
        multi(edge_server, headers={"Authorization": "Apikey wrong"})
    assert handshake.value.response.status_code == 401
    # The key of the handshake counts: the auth message may then carry none.
    with multi(edge_server, headers=AUTH) as ws:
        send(ws, {"type": "connection_auth"})
        assert recv(ws) == {"type": "connection_ack"}
    with multi(edge_server, f"api_key={API_KEY}&envelope_format=json") as ws:
        send(ws, {"type": "auth"})
        assert ws.recv(timeout=15) == '{"type":"connection_ack"}'


@pytest.fixture(scope="module")
def public_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("public-multi"), "--public")
    yield running
    stop_server(running)


def test_public_server_accepts_anonymous_auth(public_edge: RunningServer, key: str) -> None:
    create(public_edge, key, np.arange(3))
    with multi(public_edge, "envelope_format=msgpack") as ws:
        send(ws, {"type": "auth", "api_key": ""})
        assert recv(ws) == {"type": "connection_ack"}
        subscribe(ws, "s", key, start=1)
        assert values([recv(ws)["message"]]) == [[0, 1, 2]]
    with multi(public_edge) as ws:  # anonymous, but a wrong key is still refused
        send(ws, {"type": "auth", "api_key": "wrong"})
        assert closed(ws).rcvd.code == 1008  # type: ignore[union-attr]


def test_two_subscriptions_on_one_socket_receive_their_own_frames(
    edge_server: RunningServer, key: str
) -> None:
    with two_subscriptions(edge_server, key, (4, 2), "12") as (ws, http, a, b):
        for i in range(1, 11):
            write(http, a, np.full(4, i, dtype="<i8"))
            write(http, b, np.full(2, -i, dtype="<i8"))
        seen: dict[str, int] = {"1": 0, "2": 0}
        messages: list[Message] = []
        while min(seen.values()) < 10:
            messages.append(recv(ws))
            seen[messages[-1]["id"]] += 1
    first, second = data_of(messages, "1"), data_of(messages, "2")
    assert [f["sequence"] for f in first] == list(range(2, 12))
    assert [f["sequence"] for f in second] == list(range(2, 12))
    assert values(first) == [[i] * 4 for i in range(1, 11)]
    assert values(second) == [[-i] * 2 for i in range(1, 11)]
    assert all(list(m) == ["type", "id", "message"] for m in messages)


def test_errors_mid_session_leave_the_connection_and_other_subscriptions_up(
    edge_server: RunningServer, key: str
) -> None:
    create(edge_server, key, np.zeros(3, dtype="<i8"))
    with authed(edge_server) as ws, http_client(edge_server) as http:
        subscribe(ws, "ok", key)
        send(ws, {"type": "subscribe", "id": "bad", "path": f"{key}/no/such/node"})
        error = recv(ws)
        assert (error["type"], error["id"], error["status"]) == ("error", "bad", 404)
        assert error["detail"]
        send(ws, {"type": "subscribe", "id": "ok", "path": key})
        duplicate = recv(ws)
        assert (duplicate["type"], duplicate["id"], duplicate["status"]) == ("error", "ok", 409)
        send(ws, {"type": "subscribe", "id": "opts", "path": key, "start": -1})
        options = recv(ws)
        assert (options["id"], options["status"], options["detail"]) == (
            "opts",
            400,
            "start must be an integer in range, not '-1'",
        )
        send(ws, {"type": "subscribe", "id": "x", "path": key, "on_overflow": "explode"})
        assert recv(ws)["detail"] == "on_overflow must be one of ['close', 'latest']"
        ws.send("this is not JSON")
        garbage = recv(ws)
        assert (garbage["type"], garbage["id"], garbage["status"]) == ("error", None, 400)
        send(ws, {"type": "teleport", "id": "ok"})
        unknown = recv(ws)
        assert (unknown["id"], unknown["detail"]) == ("ok", 'unknown message type "teleport"')
        send(ws, {"type": "unsubscribe", "id": "never"})
        never = recv(ws)
        assert (never["type"], never["id"], never["status"]) == ("error", "never", 404)
        # The bad path's id is free again, and the good subscription still streams.
        write(http, key, np.array([7, 8, 9], dtype="<i8"))
        data = recv(ws)
    assert (data["type"], data["id"], data["message"]["sequence"]) == ("data", "ok", 2)
    assert values([data["message"]]) == [[7, 8, 9]]


def test_unsubscribe_stops_one_subscription_only(edge_server: RunningServer, key: str) -> None:
    with two_subscriptions(edge_server, key) as (ws, http, a, b):
        write(http, a, np.array([1], dtype="<i8"))
        assert recv(ws)["id"] == "a"
        send(ws, {"type": "unsubscribe", "id": "a"})
        assert recv(ws) == {"type": "complete", "id": "a", "code": 1000, "reason": "unsubscribed"}
        for i in range(2, 6):
            write(http, a, np.array([i], dtype="<i8"))  # published first: would be ready first
            write(http, b, np.array([i], dtype="<i8"))
        messages = until(ws, lambda m: m["type"] == "data" and m["message"]["sequence"] == 5)
        send(ws, {"type": "ping", "payload": "after"})  # a barrier: anything still in flight
        messages += until(ws, lambda m: m["type"] == "pong")
    assert {m["id"] for m in messages if m["type"] == "data"} == {"b"}
    assert values(data_of(messages, "b")) == [[i] for i in range(2, 6)]
    assert messages[-1] == {"type": "pong", "payload": "after"}


def test_replay_with_start_then_live(edge_server: RunningServer, key: str) -> None:
    create(edge_server, key, np.array([0, 0], dtype="<i8"))
    with http_client(edge_server) as http:
        for i in range(1, 4):
            write(http, key, np.array([i, i], dtype="<i8"))
        with authed(edge_server) as ws:
            subscribe(ws, "r", key, start=2)
            replayed = [recv(ws)["message"] for _ in range(3)]
            write(http, key, np.array([4, 4], dtype="<i8"))
            live = recv(ws)["message"]
    assert [f["sequence"] for f in replayed] == [2, 3, 4]
    assert values(replayed) == [[1, 1], [2, 2], [3, 3]]
    assert (live["sequence"], values([live])) == (5, [[4, 4]])


@pytest.mark.parametrize("policy", ["latest", "close"])
def test_slow_subscription_beside_a_fast_one_on_the_same_socket(
    edge_server: RunningServer, key: str, policy: str
) -> None:
    """The client reads nothing while 15 MiB go to one subscription (1 MiB cap) and small
    frames to the other (default cap): the capped one meets its own policy, the other one
    receives every frame."""
    slow, fast, n = f"{key}slow", f"{key}fast", 60
    big = np.zeros(32768)  # 256 KiB frames
    create(edge_server, slow, big)
    create(edge_server, fast, np.zeros(1, dtype="<i8"))
    with authed(edge_server) as ws, http_client(edge_server) as http:
        subscribe(ws, "slow", slow, max_queue_bytes=1048576, on_overflow=policy, notify_gaps=True)
        subscribe(ws, "fast", fast)
        for i in range(n):
            write(http, slow, big)
            write(http, fast, np.array([i], dtype="<i8"))

        def done(m: Message) -> bool:
            return m["type"] == "data" and m["id"] == "fast" and m["message"]["sequence"] == n + 1

        messages = until(ws, done)
        if policy == "latest":
            while not any(f.get("sequence") == n + 1 for f in data_of(messages, "slow")):
                messages.append(recv(ws))
        else:
            while not any(m["type"] == "complete" for m in messages):
                messages.append(recv(ws))
    fast_frames = data_of(messages, "fast")
    assert [f["sequence"] for f in fast_frames] == list(range(2, n + 2))
    assert values(fast_frames) == [[i] for i in range(n)]
    slow_frames = data_of(messages, "slow")
    received = [f["sequence"] for f in slow_frames if f["type"] == "array-data"]
    assert received == sorted(received)
    if policy == "latest":
        gaps = [f for f in slow_frames if f["type"] == "stream-gap"]
        assert gaps and all(g["reason"] == "overflow" for g in gaps)
        assert received[-1] == n + 1
        assert len(received) + sum(g["count"] for g in gaps) == n
    else:
        (complete,) = [m for m in messages if m["type"] == "complete"]
        assert (complete["id"], complete["code"]) == ("slow", 1008)
        assert "max_queue_bytes=1048576" in complete["reason"]
        dropped = int(re.search(r"dropped (\d+)", complete["reason"]).group(1))  # type: ignore[union-attr]
        assert received == list(range(2, 2 + len(received)))
        # Dropped: what was published and unread when the policy closed it (maybe mid-run).
        assert dropped > 0 and len(received) + dropped <= n
    print(f"{policy}: slow subscription received {len(received)} of {n}")


def test_msgpack_connection_takes_json_text_and_msgpack_binary_control_messages(
    edge_server: RunningServer, key: str
) -> None:
    create(edge_server, key, np.arange(3, dtype="<u2"))
    with multi(edge_server, "envelope_format=msgpack") as ws:
        send(ws, {"type": "auth", "api_key": API_KEY})  # JSON text, as a browser sends
        ack = ws.recv(timeout=15)
        assert isinstance(ack, bytes) and msgpack.unpackb(ack) == {"type": "connection_ack"}
        subscribe(ws, "text", key, start=1)
        first = recv(ws)
        send(ws, {"type": "subscribe", "id": "binary", "path": key, "start": 1}, binary=True)
        schema, again = recv(ws), recv(ws)
        send(ws, {"type": "ping", "payload": {"n": 1}}, binary=True)
        pong = ws.recv(timeout=15)
    assert values([first["message"]], "<u2") == [[0, 1, 2]]
    assert (schema["id"], schema["message"]["type"]) == ("binary", "array-schema")
    assert (again["id"], again["message"]["sequence"]) == ("binary", 1)
    assert again["message"]["payload"] == first["message"]["payload"]
    assert isinstance(pong, bytes) and msgpack.unpackb(pong) == {
        "type": "pong",
        "payload": {"n": 1},
    }


def test_json_connection_wraps_the_single_routes_json_envelope(
    edge_server: RunningServer, key: str
) -> None:
    create(edge_server, key, np.arange(6, dtype="<i4").reshape(2, 3))
    with authed(edge_server, "envelope_format=json") as ws:
        send(ws, {"type": "subscribe", "id": "j", "path": key, "start": 1})
        schema, first = ws.recv(timeout=15), ws.recv(timeout=15)
        send(ws, {"type": "ping"})
        pong = ws.recv(timeout=15)
    assert isinstance(schema, str) and isinstance(first, str)
    assert json.loads(schema)["message"]["type"] == "array-schema"
    message = json.loads(first)
    assert (message["type"], message["id"]) == ("data", "j")
    assert message["message"]["payload"] == [[0, 1, 2], [3, 4, 5]]
    assert pong == '{"type":"pong"}'


def test_stream_close_sends_complete(edge_server: RunningServer, key: str) -> None:
    with two_subscriptions(edge_server, key) as (ws, http, a, b):
        write(http, a, np.array([5], dtype="<i8"))
        assert http.delete(f"/stream/close/{a}").status_code == 200
        messages = until(ws, lambda m: m["type"] == "complete")
        write(http, b, np.array([6], dtype="<i8"))
        after = recv(ws)
        send(ws, {"type": "subscribe", "id": "a", "path": b})  # the id is free again
        assert recv(ws)["message"]["type"] == "array-schema"
    assert values(data_of(messages, "a")) == [[5]]
    assert messages[-1] == {
        "type": "complete", "id": "a", "code": 1000, "reason": "Producer ended stream",
    }  # fmt: skip
    assert (after["id"], values([after["message"]])) == ("b", [[6]])


def test_subscription_limits_and_metrics(edge_server: RunningServer, key: str) -> None:
    create(edge_server, key, np.zeros(1, dtype="<i8"))
    with authed(edge_server) as ws, http_client(edge_server) as http:
        for i in range(3):
            subscribe(ws, f"s{i}", key)
        send(ws, {"type": "subscribe", "id": "x" * 257, "path": key})
        assert recv(ws)["status"] == 400
        deadline = time.monotonic() + 15
        while True:  # with several workers the gauges are copied every 2 s
            text = http.get("/metrics").text
            connections = re.search(r"^ferrotile_multi_connections (\S+)", text, re.M)
            subscriptions = re.search(r"^ferrotile_multi_subscriptions (\S+)", text, re.M)
            assert connections and subscriptions, text
            if float(subscriptions.group(1)) >= 3:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        assert float(connections.group(1)) >= 1


def test_views_and_max_fps_per_subscription(edge_server: RunningServer, key: str) -> None:
    """Subscription options are the single route's, views included: a binned view and a
    ``max_fps`` beside the plain frames, on one socket, checked against numpy."""
    frames = [np.arange(16, dtype="<u2").reshape(4, 4) * (i + 1) for i in range(20)]
    create(edge_server, key, frames[0])
    with authed(edge_server) as ws, http_client(edge_server) as http:
        subscribe(ws, "plain", key)
        subscribe(ws, "binned", key, bin="2,sum")
        subscribe(ws, "slow", key, max_fps=2, slice="0")
        send(ws, {"type": "subscribe", "id": "bad", "path": key, "bin": "0"})
        refused = recv(ws)
        assert (refused["type"], refused["id"], refused["status"]) == ("error", "bad", 400)
        for array in frames:
            write(http, key, array)
        assert http.delete(f"/stream/close/{key}").status_code == 200
        messages = until(ws, lambda m: m["type"] == "complete" and m["id"] == "plain")
        while sum(m["type"] == "complete" for m in messages) < 3:
            messages.append(recv(ws))
    plain, binned, slow = (data_of(messages, i) for i in ("plain", "binned", "slow"))
    assert values(plain, "<u2") == [a.ravel().tolist() for a in frames]
    for array, message in zip(frames, binned, strict=True):
        got = np.frombuffer(message["payload"], message["dtype"]).reshape(message["shape"])
        want = array.reshape(2, 2, 2, 2).sum(axis=(1, 3), dtype=np.uint64)
        assert message["dtype"] == "<u4"  # 4 x 65535 needs 32 bits
        assert (got == want).all() and message["view"]
    assert 1 <= len(slow) < len(frames)
    assert len(slow) + sum(m["skipped"] for m in slow) == len(frames)
    assert np.frombuffer(slow[-1]["payload"], slow[-1]["dtype"]).tolist() == frames[-1][0].tolist()
