"""``WS /api/v1/stream/push/{path}``: frames of an array node over one WebSocket, acknowledged by
sequence, stored (``persist``) and streamed; a bad frame is neither, and names itself."""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.api.conftest import array_body
from tests.conftest import RunningServer

AUTH = {"Authorization": "Apikey secret"}
OCTET = {"Content-Type": "application/octet-stream"}


def client(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=15)


def create(server: RunningServer, key: str, array: np.ndarray, chunks: Any = None) -> None:
    with client(server) as http:
        assert http.post("/metadata/", json=array_body(key, array, chunks)).status_code == 200
        assert (
            http.put(f"/array/full/{key}", content=array.tobytes(), headers=OCTET).status_code
            == 200
        )


def pusher(server: RunningServer, key: str, query: str = "") -> ClientConnection:
    url = f"{server.ws_url}/api/v1/stream/push/{key}" + (f"?{query}" if query else "")
    return connect(url, additional_headers=AUTH, open_timeout=10, close_timeout=5, max_size=None)


def subscriber(server: RunningServer, key: str, query: str = "") -> ClientConnection:
    url = f"{server.ws_url}/api/v1/stream/single/{key}?envelope_format=msgpack" + (
        f"&{query}" if query else ""
    )
    ws = connect(url, additional_headers=AUTH, open_timeout=10, max_size=None)
    assert msgpack.unpackb(ws.recv(timeout=10))["type"] == "array-schema"
    return ws


def acks_until(ws: ClientConnection, frames: int) -> list[dict[str, Any]]:
    acks: list[dict[str, Any]] = []
    while not acks or acks[-1]["frames"] < frames:
        message = json.loads(ws.recv(timeout=15))
        assert "error" not in message, message
        acks.append(message)
    return acks


def read(server: RunningServer, key: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    with client(server) as http:
        response = http.get(f"/array/full/{key}")
        assert response.status_code == 200, response.text
        return np.frombuffer(response.content, dtype=dtype).reshape(shape)


def test_appended_frames_are_stored_streamed_and_acknowledged(
    edge_server: RunningServer, key: str
) -> None:
    first = np.zeros((1, 4, 3), dtype="<u2")
    create(edge_server, key, first)
    frames = [np.full((4, 3), i, dtype="<u2") for i in range(1, 21)]
    with subscriber(edge_server, key) as sub, pusher(edge_server, key) as push:
        for frame in frames:  # pipelined: every frame sent before any acknowledgement is read
            push.send(frame.tobytes())
        acks = acks_until(push, len(frames))
        received = [msgpack.unpackb(sub.recv(timeout=15)) for _ in frames]
    assert acks[-1]["frames"] == len(frames)
    sequences = [m["sequence"] for m in received]
    assert sequences == list(range(2, 2 + len(frames)))
    assert acks[-1]["sequence"] == sequences[-1]
    for i, message in enumerate(received):
        assert message["type"] == "array-data"
        assert message["offset"] == [i + 1] and message["shape"] == [1, 4, 3]
        got = np.frombuffer(message["payload"], dtype="<u2").reshape(1, 4, 3)
        assert (got == frames[i]).all()
    stored = read(edge_server, key, "<u2", (21, 4, 3))
    assert (stored[1:] == np.stack(frames)).all() and (stored[0] == 0).all()


def test_several_frames_per_message_and_stream_only(edge_server: RunningServer, key: str) -> None:
    create(edge_server, key, np.zeros((2, 5), dtype="<f8"))
    block = np.arange(15.0).reshape(3, 5)
    with subscriber(edge_server, key) as sub:
        with pusher(edge_server, key) as push:
            push.send(block.tobytes())  # three frames in one message
            assert acks_until(push, 1)[-1]["frames"] == 1
        with pusher(edge_server, key, "persist=false") as push:
            for value in (9.0, 10.0, 11.0):  # sent together: published as one batch
                push.send(np.full(5, value).tobytes())
            push.send(block.tobytes())
            assert acks_until(push, 4)[-1]["frames"] == 4
        stored_message = msgpack.unpackb(sub.recv(timeout=15))
        live = [msgpack.unpackb(sub.recv(timeout=15)) for _ in range(4)]
    assert stored_message["offset"] == [2] and stored_message["shape"] == [3, 5]
    # Stream-only frames are numbered on from what is stored, one after the other, and not
    # stored.
    assert [(m["offset"], m["shape"]) for m in live] == [
        ([5], [1, 5]),
        ([6], [1, 5]),
        ([7], [1, 5]),
        ([8], [3, 5]),
    ]
    assert [m["sequence"] for m in live] == list(
        range(live[0]["sequence"], live[0]["sequence"] + 4)
    )
    got = [np.frombuffer(m["payload"], "<f8").reshape(m["shape"]) for m in live]
    assert [g[0, 0] for g in got[:3]] == [9.0, 10.0, 11.0] and (got[3] == block).all()
    stored = read(edge_server, key, "<f8", (5, 5))
    assert (stored[2:] == block).all()


def test_full_mode_and_directives(edge_server: RunningServer, key: str) -> None:
    create(edge_server, key, np.zeros((4, 4), dtype="<i4"), chunks=[[2, 2], [4]])
    with subscriber(edge_server, key) as sub, pusher(edge_server, key, "mode=full") as push:
        push.send(np.full((4, 4), 1, "<i4").tobytes())
        push.send(json.dumps({"block": [1, 0]}))
        push.send(np.full((2, 4), 2, "<i4").tobytes())
        push.send(json.dumps({"offset": [0, 1], "shape": [1, 2]}))
        push.send(np.array([[3, 3]], "<i4").tobytes())
        acks = acks_until(push, 3)
        messages = [msgpack.unpackb(sub.recv(timeout=15)) for _ in range(3)]
    assert [a["frames"] for a in acks][-1] == 3
    assert messages[1]["block"] == [1, 0] and messages[2]["offset"] == [0, 1]
    expected = np.full((4, 4), 1, "<i4")
    expected[2:] = 2
    expected[0, 1:3] = 3
    assert (read(edge_server, key, "<i4", (4, 4)) == expected).all()


def test_a_bad_frame_is_named_and_nothing_of_it_kept(edge_server: RunningServer, key: str) -> None:
    create(edge_server, key, np.zeros((1, 8), dtype="<f4"))
    with subscriber(edge_server, key) as sub, pusher(edge_server, key) as push:
        push.send(np.ones(8, "<f4").tobytes())
        push.send(np.ones(8, "<f4").tobytes())
        push.send(b"\x00" * 5)  # not a whole frame
        push.send(np.ones(8, "<f4").tobytes())  # after the error: never read
        messages = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                messages.append(json.loads(push.recv(timeout=15)))
        error = messages[-1]
        assert error["frame"] == 3 and error["status"] == 400
        assert "not a whole number of frames" in error["error"]
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "frame 3" in closed.value.rcvd.reason
        assert [
            m["sequence"] for m in (msgpack.unpackb(sub.recv(timeout=15)) for _ in range(2))
        ] == [2, 3]
        with pytest.raises(TimeoutError):
            sub.recv(timeout=1)
    assert read(edge_server, key, "<f4", (3, 8)).shape == (3, 8)


def test_handshake_refusals(edge_server: RunningServer, key: str) -> None:
    create(edge_server, key, np.zeros(3))
    base = f"{edge_server.ws_url}/api/v1/stream/push"
    with client(edge_server) as http:
        http.post(
            "/metadata/",
            json={"id": f"{key}c", "structure_family": "container", "metadata": {}, "specs": []},
        )
    cases = [
        (f"{base}/{key}", {}, 401),
        (f"{base}/{key}-missing", AUTH, 404),
        (f"{base}/{key}c", AUTH, 400),
        (f"{base}/{key}?mode=sideways", AUTH, 400),
        (f"{base}/{key}?persist=maybe", AUTH, 422),
    ]
    for url, headers, status in cases:
        with pytest.raises(Exception) as refused:
            connect(url, additional_headers=headers, open_timeout=10)
        response = getattr(refused.value, "response", None)
        assert response is not None and response.status_code == status, (url, refused.value)
        assert "detail" in json.loads(response.body)


@pytest.mark.parametrize("persist", ["false", "true"])
def test_a_burst_of_messages_is_acknowledged_in_batches(
    edge_server: RunningServer, key: str, persist: str
) -> None:
    """200 messages written at once (one system call): the acknowledgements are cumulative,
    fewer than the messages, and reach 200: appends, stored or stream-only, once per batch
    published together."""
    from ferrotile.client.frames import BINARY, Masks, client_frame
    from ferrotile.client.websocket import WebSocket

    create(edge_server, key, np.zeros((0, 8), dtype="u1"))
    url = f"{edge_server.ws_url}/api/v1/stream/push/{key}?persist={persist}"
    ws = WebSocket(url, AUTH, max_size=2**20, timeout=10)
    masks = Masks()
    parts = [p for i in range(200) for p in client_frame(BINARY, bytes([i]) * 8, masks)]
    ws.write(parts)
    acks: list[dict[str, Any]] = []
    while not acks or acks[-1]["frames"] < 200:
        _, payload = ws.receive()
        acks.append(json.loads(bytes(payload)))
    ws.close()
    ws.shutdown()
    counts = [a["frames"] for a in acks]
    assert counts == sorted(set(counts)) and counts[-1] == 200
    # Batched: ~200 / 16 on an idle machine; more when messages take long enough for the
    # 2 ms bound to fire (the suite's load), never one per message.
    assert len(acks) <= 100, counts
    if persist == "true":
        assert read(edge_server, key, "u1", (200, 8))[:, 0].tolist() == list(range(200))
