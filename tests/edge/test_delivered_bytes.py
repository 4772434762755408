"""The exact bytes a subscriber receives for frames small and large (a large payload is written
to sockets from the buffers it arrived in, never joined): written by HTTP PUT (stream-only and
persisted) and WS push, received on ``/stream/single`` in msgpack and JSON and on
``/stream/multi`` in msgpack."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import numpy as np
import pytest
from websockets.sync.client import connect

from tests.conftest import RunningServer
from tests.edge.test_multi import authed, recv, subscribe
from tests.edge.test_push import AUTH, OCTET, acks_until, client, create, pusher

#: Elements of uint32 frames: 100 B (joined when published), 300 KiB and 2.4 MiB (in pieces).
SIZES = [25, 75_000, 600_000]


def frame_of(size: int, seed: int) -> np.ndarray:
    return (np.arange(size, dtype="<u4") * 7 + seed).astype("<u4")


def bin_header(n: int) -> bytes:
    """The msgpack ``bin`` header of an ``n``-byte payload."""
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def check_msgpack(raw: bytes, payload: bytes, sequence: int) -> dict[str, Any]:
    """``raw`` is one msgpack map (nothing after it) ending with ``payload`` as its last value,
    with ``type`` first and ``sequence`` second."""
    assert isinstance(raw, bytes)
    assert raw.endswith(b"\xa7payload" + bin_header(len(payload)) + payload)
    message: dict[str, Any] = msgpack.unpackb(raw)  # raises on bytes after the map
    assert list(message)[:2] == ["type", "sequence"] and list(message)[-1] == "payload"
    assert message["sequence"] == sequence and message["payload"] == payload
    return message


def single(server: RunningServer, key: str, envelope: str) -> Any:
    url = f"{server.ws_url}/api/v1/stream/single/{key}?envelope_format={envelope}"
    ws = connect(url, additional_headers=AUTH, open_timeout=10, max_size=None)
    schema = ws.recv(timeout=10)
    assert (msgpack.unpackb(schema) if envelope == "msgpack" else json.loads(schema))["type"] == (
        "array-schema"
    )
    return ws


@pytest.mark.parametrize("size", SIZES)
def test_put_and_push_frames_arrive_byte_for_byte(
    edge_server: RunningServer, key: str, size: int
) -> None:
    create(edge_server, key, np.zeros(size, dtype="<u4"))
    frames = [frame_of(size, seed) for seed in (1, 2, 3)]
    with (
        single(edge_server, key, "msgpack") as packed,
        single(edge_server, key, "json") as text,
        authed(edge_server) as mux,
    ):
        subscribe(mux, "s", key)
        with client(edge_server) as http:
            for frame, persist in [(frames[0], "false"), (frames[1], "true")]:
                response = http.put(
                    f"/array/full/{key}",
                    content=frame.tobytes(),
                    headers=OCTET,
                    params={"persist": persist},
                )
                assert response.status_code == 200, response.text
        with pusher(edge_server, key, "mode=full&persist=false") as push:
            push.send(frames[2].tobytes())
            acks_until(push, 1)
        for i, frame in enumerate(frames):
            sequence = i + 2  # the node's creation wrote sequence 1
            message = check_msgpack(packed.recv(timeout=15), frame.tobytes(), sequence)
            assert message["type"] == "array-data" and message["shape"] == [size]
            decoded = json.loads(text.recv(timeout=15))
            assert decoded["sequence"] == sequence and decoded["payload"] == frame.tolist()
            assert list(decoded)[:2] == ["type", "sequence"]
            wrapped = recv(mux)
            assert wrapped["type"] == "data" and wrapped["id"] == "s"
            assert wrapped["message"]["sequence"] == sequence
            assert wrapped["message"]["payload"] == frame.tobytes()
