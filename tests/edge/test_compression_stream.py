"""Compress once: ``compression=zstd|lz4|blosc`` on a subscription (decoded by the reference
libraries: ``zstandard``, ``lz4.frame``, ``blosc2``, byte for byte), and writers sending frames
already compressed (``Content-Encoding`` on PUT/PATCH, ``encoding=`` on the push WebSocket):
stored decompressed, passed through as sent to subscribers of the same codec, refused with
nothing stored or streamed when they do not decompress to the write's size."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import blosc2
import httpx
import lz4.frame
import msgpack
import numpy as np
import pytest
import zstandard
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.api.conftest import array_body
from tests.conftest import RunningServer
from tests.edge.test_views import binned, metric, one_process, publish, subscribe

AUTH = {"Authorization": "Apikey secret"}
OCTET = {"Content-Type": "application/octet-stream"}

DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "zstd": zstandard.decompress,
    "lz4": lz4.frame.decompress,
    "blosc": blosc2.decompress,
}
ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "zstd": lambda data: zstandard.ZstdCompressor(level=3).compress(data),
    "lz4": lz4.frame.compress,
}


def client(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=15)


def create(server: RunningServer, key: str, array: np.ndarray) -> None:
    with client(server) as http:
        assert http.post("/metadata/", json=array_body(key, array)).status_code == 200
        response = http.put(f"/array/full/{key}", content=array.tobytes(), headers=OCTET)
        assert response.status_code == 200, response.text


def stored(server: RunningServer, key: str, like: np.ndarray) -> np.ndarray:
    with client(server) as http:
        response = http.get(f"/array/full/{key}")
        assert response.status_code == 200, response.text
    return np.frombuffer(response.content, dtype=like.dtype).reshape(like.shape)


RNG = np.random.default_rng(3)


@pytest.mark.parametrize("codec", sorted(DECODERS))
@pytest.mark.parametrize("dtype", ["<u2", "<f4", ">i8"])
def test_compressed_frames_decode_byte_for_byte(
    edge_server: RunningServer, key: str, codec: str, dtype: str
) -> None:
    frames = [np.repeat(RNG.integers(0, 50, (16, 6)), 4, axis=1).astype(dtype) for _ in range(3)]
    create(edge_server, key, frames[0])
    with (
        subscribe(edge_server, key, f"compression={codec}") as packed,
        subscribe(edge_server, key, f"compression={codec}", envelope="json") as text,
        subscribe(edge_server, key, "") as plain,
    ):
        publish(edge_server, key, frames)
        messages = [msgpack.unpackb(packed.recv(timeout=15)) for _ in frames]
        texts = [json.loads(text.recv(timeout=15)) for _ in frames]
        raws = [msgpack.unpackb(plain.recv(timeout=15)) for _ in frames]
    for original, message, as_text, raw in zip(frames, messages, texts, raws, strict=True):
        assert message["compression"] == codec and message["view"] == f"compression={codec}"
        assert message["dtype"] == dtype and message["shape"] == [16, 24]
        assert DECODERS[codec](message["payload"]) == original.tobytes()
        assert len(message["payload"]) < original.nbytes
        assert base64.b64decode(as_text["payload"]) == message["payload"]
        assert raw["payload"] == original.tobytes() and "compression" not in raw


def test_a_view_compressed(edge_server: RunningServer, key: str) -> None:
    original = RNG.integers(0, 4096, (12, 12)).astype("<u2")
    create(edge_server, key, original)
    with subscribe(edge_server, key, "bin=4,sum&compression=zstd") as ws:
        publish(edge_server, key, [original])
        message = msgpack.unpackb(ws.recv(timeout=15))
    assert message["dtype"] == "<u4" and message["shape"] == [3, 3]  # 16 x 65535 needs 32 bits
    got = np.frombuffer(zstandard.decompress(message["payload"]), "<u4").reshape(3, 3)
    assert (got == binned(original, 4, "sum")).all()


def test_two_subscribers_of_a_codec_share_one_compression(
    edge_server: RunningServer, key: str, request: pytest.FixtureRequest
) -> None:
    frames = [RNG.integers(0, 9, (32, 32)).astype("<u2") for _ in range(4)]
    create(edge_server, key, frames[0])
    before = metric(edge_server, "ferrotile_stream_view_frames_computed_total", "compression=lz4")
    with (
        subscribe(edge_server, key, "compression=lz4") as a,
        subscribe(edge_server, key, "compression=lz4", envelope="json") as b,
    ):
        publish(edge_server, key, frames)
        got_a = [msgpack.unpackb(a.recv(timeout=15))["payload"] for _ in frames]
        got_b = [json.loads(b.recv(timeout=15))["payload"] for _ in frames]
    assert got_a == [base64.b64decode(p) for p in got_b]
    assert [lz4.frame.decompress(p) for p in got_a] == [f.tobytes() for f in frames]
    if one_process(request):
        after = metric(
            edge_server, "ferrotile_stream_view_frames_computed_total", "compression=lz4"
        )
        assert after - before == len(frames)
        packed = "ferrotile_stream_view_bytes_after_compression_total"
        raw = "ferrotile_stream_view_bytes_before_compression_total"
        assert metric(edge_server, packed, "compression=lz4") >= sum(len(p) for p in got_a)
        assert metric(edge_server, raw, "compression=lz4") >= sum(f.nbytes for f in frames)


@pytest.mark.parametrize("codec", sorted(ENCODERS))
def test_precompressed_writes_round_trip(
    edge_server: RunningServer, key: str, codec: str, request: pytest.FixtureRequest
) -> None:
    first = np.zeros((6, 8), "<i4")
    create(edge_server, key, first)
    frame = RNG.integers(-100, 100, (6, 8)).astype("<i4")
    patch = np.full((2, 8), 5, "<i4")
    sent = ENCODERS[codec](frame.tobytes())
    sent_patch = ENCODERS[codec](patch.tobytes())
    encoded = {**OCTET, "Content-Encoding": codec}
    with (
        subscribe(edge_server, key, f"compression={codec}") as same,
        subscribe(edge_server, key, "") as plain,
        client(edge_server) as http,
    ):
        response = http.put(f"/array/full/{key}", content=sent, headers=encoded)
        assert response.status_code == 200, response.text
        response = http.patch(
            f"/array/full/{key}?offset=2,0&shape=2,8", content=sent_patch, headers=encoded
        )
        assert response.status_code == 200, response.text
        passed = [msgpack.unpackb(same.recv(timeout=15)) for _ in range(2)]
        raws = [msgpack.unpackb(plain.recv(timeout=15)) for _ in range(2)]
    assert raws[0]["payload"] == frame.tobytes() and raws[1]["payload"] == patch.tobytes()
    assert DECODERS[codec](passed[0]["payload"]) == frame.tobytes()
    assert DECODERS[codec](passed[1]["payload"]) == patch.tobytes()
    if one_process(request):  # through Redis another process compresses again
        assert passed[0]["payload"] == sent and passed[1]["payload"] == sent_patch
    want = frame.copy()
    want[2:4] = 5
    assert (stored(edge_server, key, first) == want).all()


def test_bad_compressed_writes_are_neither_stored_nor_streamed(
    edge_server: RunningServer, key: str
) -> None:
    first = np.arange(12, dtype="<u2").reshape(3, 4)
    create(edge_server, key, first)
    good = np.full((3, 4), 9, "<u2")
    with subscribe(edge_server, key, "") as ws, client(edge_server) as http:
        zstd = {**OCTET, "Content-Encoding": "zstd"}
        garbage = http.put(f"/array/full/{key}", content=b"not zstd at all", headers=zstd)
        assert garbage.status_code == 400 and "Nothing was stored" in garbage.json()["detail"]
        short = zstandard.compress(good.tobytes()[:-2])
        wrong_size = http.put(f"/array/full/{key}", content=short, headers=zstd)
        assert wrong_size.status_code == 400, wrong_size.text
        assert "Expected 24 bytes" in wrong_size.json()["detail"]
        too_long = zstandard.compress(good.tobytes() + b"xx")
        assert http.put(f"/array/full/{key}", content=too_long, headers=zstd).status_code == 400
        truncated = lz4.frame.compress(good.tobytes())[:-6]
        lz4_headers = {**OCTET, "Content-Encoding": "lz4"}
        refused = http.put(f"/array/full/{key}", content=truncated, headers=lz4_headers)
        assert refused.status_code == 400, refused.text
        unknown = http.put(
            f"/array/full/{key}", content=b"x", headers={**OCTET, "Content-Encoding": "gzip"}
        )
        assert unknown.status_code == 415 and "'gzip'" in unknown.json()["detail"]
        assert (stored(edge_server, key, first) == first).all()
        ok = http.put(
            f"/array/full/{key}", content=zstandard.compress(good.tobytes()), headers=zstd
        )
        assert ok.status_code == 200, ok.text
        message = msgpack.unpackb(ws.recv(timeout=15))  # the good write is the first streamed
    assert message["payload"] == good.tobytes()
    assert (stored(edge_server, key, first) == good).all()


def pusher(server: RunningServer, key: str, query: str) -> ClientConnection:
    url = f"{server.ws_url}/api/v1/stream/push/{key}?{query}"
    return connect(url, additional_headers=AUTH, open_timeout=10, close_timeout=5, max_size=None)


def test_push_of_compressed_frames(edge_server: RunningServer, key: str) -> None:
    first = np.zeros((1, 4, 4), "<f4")
    create(edge_server, key, first)
    frames = [np.full((4, 4), i, "<f4") for i in range(1, 6)]
    with (
        subscribe(edge_server, key, "") as plain,
        pusher(edge_server, key, "encoding=lz4") as push,
    ):
        for frame in frames:
            push.send(lz4.frame.compress(frame.tobytes()))
        acks = []
        while not acks or acks[-1]["frames"] < len(frames):
            acks.append(json.loads(push.recv(timeout=15)))
            assert "error" not in acks[-1], acks[-1]
        received = [msgpack.unpackb(plain.recv(timeout=15)) for _ in frames]
    assert [m["payload"] for m in received] == [f.tobytes() for f in frames]
    with client(edge_server) as http:
        response = http.get(f"/array/full/{key}")
    whole = np.frombuffer(response.content, "<f4").reshape(6, 4, 4)
    assert (whole[1:] == np.stack(frames)).all()
    with pusher(edge_server, key, "encoding=zstd") as push:
        push.send(b"garbage")
        error = json.loads(push.recv(timeout=15))
        with pytest.raises(ConnectionClosed) as closed:
            push.recv(timeout=15)
    assert error["status"] == 400 and error["frame"] == 1
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    with client(edge_server) as http:
        assert len(http.get(f"/array/full/{key}").content) == whole.nbytes  # nothing appended
