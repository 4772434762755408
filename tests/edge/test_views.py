"""Server-side views on ``WS /api/v1/stream/single/{path}``: ``slice``, ``bin``, ``dtype`` with
``range``, ``max_fps``: every view checked against numpy on the same frame, bad options refused
as the array GET refuses them, one computation per frame per view for all its subscribers,
and ``max_fps`` accounting for every frame (received + skipped == published)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.api.conftest import array_body
from tests.conftest import RunningServer

AUTH = {"Authorization": "Apikey secret"}
OCTET = {"Content-Type": "application/octet-stream"}


def client(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=15)


def create(server: RunningServer, key: str, array: np.ndarray) -> None:
    with client(server) as http:
        assert http.post("/metadata/", json=array_body(key, array)).status_code == 200


def publish(server: RunningServer, key: str, frames: list[np.ndarray]) -> None:
    """Stream-only writes of whole frames (one message each)."""
    with client(server) as http:
        for frame in frames:
            response = http.put(
                f"/array/full/{key}?persist=false", content=frame.tobytes(), headers=OCTET
            )
            assert response.status_code == 200, response.text


def subscribe(
    server: RunningServer, key: str, query: str, envelope: str = "msgpack"
) -> ClientConnection:
    url = f"{server.ws_url}/api/v1/stream/single/{key}?envelope_format={envelope}&{query}"
    ws = connect(url, additional_headers=AUTH, open_timeout=10, max_size=None)
    schema = ws.recv(timeout=10)
    assert (msgpack.unpackb(schema) if envelope == "msgpack" else json.loads(schema))[
        "type"
    ] == "array-schema"
    return ws


def array_of(message: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(message["payload"], dtype=message["dtype"]).reshape(message["shape"])


def binned(a: np.ndarray, k: int, reduce: str) -> np.ndarray:
    """numpy's reshape-based binning over the last two axes (one for 1-D), remainder dropped."""
    if a.ndim == 1:
        n = a.shape[0] // k
        blocks = a[: n * k].reshape(n, k)
        axes: tuple[int, ...] = (-1,)
    else:
        h, w = a.shape[-2] // k, a.shape[-1] // k
        blocks = a[..., : h * k, : w * k].reshape(*a.shape[:-2], h, k, w, k)
        axes = (-3, -1)
    if reduce == "mean":
        return blocks.mean(axis=axes, dtype=np.float64)
    wide = np.float64 if a.dtype.kind == "f" else (np.int64 if a.dtype.kind == "i" else np.uint64)
    sums = blocks.sum(axis=axes, dtype=wide)
    narrow = sum_dtype(a.dtype, k if a.ndim == 1 else k * k)
    if narrow.kind != "f":
        assert (sums.astype(narrow) == sums).all()  # exact: the narrow type holds every sum
    return sums.astype(narrow)


def sum_dtype(dtype: np.dtype, count: int) -> np.dtype:
    """The dtype of a binned sum of ``count`` elements of ``dtype``: the narrowest of the same
    signedness holding ``count`` times the input's extremes; float32 for float16 and float32."""
    if dtype.kind == "f":
        return np.dtype("<f8" if dtype.itemsize == 8 else "<f4")
    lo, hi = (0, 1) if dtype.kind == "b" else (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    candidates = ("<i1", "<i2", "<i4", "<i8") if dtype.kind == "i" else ("<u1", "<u2", "<u4", "<u8")
    for candidate in candidates:
        info = np.iinfo(candidate)
        if info.min <= lo * count and hi * count <= info.max:
            return np.dtype(candidate)
    return np.dtype(candidates[-1])  # wraps, like numpy's


def scaled(a: np.ndarray, lo: float, hi: float, dtype: str) -> np.ndarray:
    t = np.clip((a.astype(np.float64) - lo) / (hi - lo), 0, 1)
    return np.rint(t * np.iinfo(dtype).max).astype(dtype)


RNG = np.random.default_rng(14)


def frame(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    kind = np.dtype(dtype).kind
    if kind == "f":
        return RNG.normal(100, 50, shape).astype(dtype)
    if kind == "i":
        return RNG.integers(-3000, 3000, shape).astype(dtype)
    return RNG.integers(0, 4096, shape).astype(dtype)


#: (dtype, frame shape, query, what numpy makes of the frame)
CASES: list[tuple[str, tuple[int, ...], str, Callable[[np.ndarray], np.ndarray]]] = [
    ("<u2", (6, 7), "slice=1:5,::2", lambda a: a[1:5, ::2]),
    ("<i4", (5, 6), "slice=-1:0:-2,-3", lambda a: a[-1:0:-2, -3]),
    (">f8", (4, 5), "slice=...,1", lambda a: a[..., 1]),
    ("<u1", (3, 4, 5), "slice=::-1,1:,-2:", lambda a: a[::-1, 1:, -2:]),
    ("<u2", (7, 9), "bin=2,sum", lambda a: binned(a, 2, "sum")),
    ("<i2", (7, 9), "bin=3,mean", lambda a: binned(a, 3, "mean")),
    ("<f4", (6, 6), "bin=4", lambda a: binned(a, 4, "sum")),
    ("<u2", (11,), "bin=2", lambda a: binned(a, 2, "sum")),
    ("<i8", (3, 4, 5), "bin=2,sum", lambda a: binned(a, 2, "sum")),
    ("<u2", (8, 8), "bin=4", lambda a: binned(a, 4, "sum")),
    ("|u1", (9, 8), "bin=4", lambda a: binned(a, 4, "sum")),
    ("|u1", (5,), "bin=1", lambda a: binned(a, 1, "sum")),
    ("|b1", (6, 6), "bin=3", lambda a: binned(a, 3, "sum")),
    ("|i1", (4, 6), "bin=2", lambda a: binned(a, 2, "sum")),
    (">i2", (4, 4), "bin=2", lambda a: binned(a, 2, "sum")),
    ("<f2", (4, 4), "bin=2", lambda a: binned(a, 2, "sum")),
    ("<u2", (4, 6), "dtype=uint8&range=0,4095", lambda a: scaled(a, 0, 4095, "uint8")),
    ("<f8", (4, 6), "dtype=float32", lambda a: a.astype("<f4")),
    ("<i4", (4, 6), "dtype=int16", lambda a: a.astype("<i2")),
    (
        "<u2",
        (9, 8),
        "slice=1:,1:&bin=2,mean&dtype=uint8&range=0,2000",
        lambda a: scaled(binned(a[1:, 1:], 2, "mean"), 0, 2000, "uint8"),
    ),
]


@pytest.mark.parametrize(("dtype", "shape", "query", "expect"), CASES, ids=[c[2] for c in CASES])
def test_views_match_numpy(
    edge_server: RunningServer,
    key: str,
    dtype: str,
    shape: tuple[int, ...],
    query: str,
    expect: Callable[[np.ndarray], np.ndarray],
) -> None:
    frames = [frame(dtype, shape) for _ in range(3)]
    create(edge_server, key, frames[0])
    with subscribe(edge_server, key, query) as ws:
        publish(edge_server, key, frames)
        received = [msgpack.unpackb(ws.recv(timeout=15)) for _ in frames]
    for original, message in zip(frames, received, strict=True):
        want = expect(original)
        got = array_of(message)
        assert message["type"] == "array-data"
        assert message["view"]
        assert tuple(message["shape"]) == want.shape
        assert np.dtype(message["dtype"]) == want.dtype
        if want.dtype.kind == "f" and "bin" in query:
            np.testing.assert_allclose(got, want, rtol=1e-12 if want.dtype.itemsize == 8 else 1e-6)
        else:
            assert (got == want).all(), (got, want)
    assert [m["sequence"] for m in received] == sorted(m["sequence"] for m in received)


def test_json_envelope_of_a_view(edge_server: RunningServer, key: str) -> None:
    original = frame("<u2", (6, 6))
    create(edge_server, key, original)
    with subscribe(edge_server, key, "bin=3,mean&slice=::-1", envelope="json") as ws:
        publish(edge_server, key, [original])
        message = json.loads(ws.recv(timeout=15))
    want = binned(original[::-1], 3, "mean")
    assert message["dtype"] == "<f8" and message["shape"] == [2, 2]
    assert message["view"] == "slice=::-1&bin=3,mean"
    np.testing.assert_allclose(np.array(message["payload"]), want, rtol=1e-12)


def test_stock_subscriber_sees_no_view_fields(edge_server: RunningServer, key: str) -> None:
    original = frame("<u2", (3, 3))
    create(edge_server, key, original)
    with subscribe(edge_server, key, "") as plain, subscribe(edge_server, key, "bin=3") as view:
        publish(edge_server, key, [original])
        message = msgpack.unpackb(plain.recv(timeout=15))
        viewed = msgpack.unpackb(view.recv(timeout=15))
    assert not {"view", "dtype", "skipped", "compression"} & set(message)
    assert message["payload"] == original.tobytes() and message["shape"] == [3, 3]
    assert viewed["sequence"] == message["sequence"]
    assert array_of(viewed).tolist() == [[int(original.sum())]]


def refusal(server: RunningServer, key: str, query: str) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as refused:
        connect(
            f"{server.ws_url}/api/v1/stream/single/{key}?{query}",
            additional_headers=AUTH,
            open_timeout=10,
        )
    response = refused.value.response
    return response.status_code, json.loads(response.body)["detail"]


def test_bad_slices_are_refused_as_the_array_get_refuses_them(
    edge_server: RunningServer, key: str
) -> None:
    create(edge_server, key, np.zeros((4, 5), "<u2"))
    with client(edge_server) as http:
        for bad in ["a", "0:a", "::0", "4", "0,0,0", "...,...", "1,,2", "-5"]:
            status, detail = refusal(edge_server, key, f"slice={bad}")
            got = http.get(f"/array/full/{key}", params={"slice": bad})
            assert (status, detail) == (got.status_code, got.json()["detail"]), bad
            assert status == 400


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("bin=0", "bin"),
        ("bin=2,max", "bin"),
        ("dtype=complex64", "dtype"),
        ("range=0,10", "range"),
        ("dtype=uint8&range=5,1", "range"),
        ("max_fps=0", "max_fps"),
        ("max_fps=fast", "max_fps"),
    ],
)
def test_bad_view_options_are_refused(
    edge_server: RunningServer, key: str, query: str, words: str
) -> None:
    create(edge_server, key, np.zeros((2, 2), "<u2"))
    status, detail = refusal(edge_server, key, query)
    assert status == 400 and words in detail, detail


def test_views_need_an_array_of_numbers(edge_server: RunningServer, key: str) -> None:
    create(edge_server, key, np.array([["ab", "cd"]], dtype="<U2"))
    status, detail = refusal(edge_server, key, "bin=2")
    assert status == 400 and "'<U2'" in detail, detail


def test_a_frame_the_view_cannot_apply_to_is_reported(edge_server: RunningServer, key: str) -> None:
    create(edge_server, key, np.zeros((4, 4), "<u2"))
    with subscribe(edge_server, key, "slice=3") as ws:
        with client(edge_server) as http:  # a 2-row block: row 3 is not in it
            response = http.patch(
                f"/array/full/{key}?offset=0,0&shape=2,4&persist=false",
                content=np.ones((2, 4), "<u2").tobytes(),
                headers=OCTET,
            )
            assert response.status_code == 200, response.text
        publish(edge_server, key, [np.full((4, 4), 7, "<u2")])
        error = msgpack.unpackb(ws.recv(timeout=15))
        data = msgpack.unpackb(ws.recv(timeout=15))
    assert error["type"] == "view-error" and error["view"] == "slice=3"
    assert error["detail"] == "Invalid slice: Index 3 is out of bounds for axis 0 with size 2"
    assert data["sequence"] == error["sequence"] + 1
    assert array_of(data).tolist() == [7, 7, 7, 7]


def metric(server: RunningServer, name: str, view: str) -> float:
    with client(server) as http:
        text = http.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if m and f'view="{view}"' in m.group(1):
            total += float(m.group(2))
    return total


def one_process(request: pytest.FixtureRequest) -> bool:
    """Whether the server is one process (with several workers, each process has its own edge,
    views and metrics: subscribers landing on two processes are two computations)."""
    return bool(request.node.callspec.params.get("edge_server") == "memory")


def test_one_computation_per_frame_for_all_subscribers_of_a_view(
    edge_server: RunningServer, key: str, request: pytest.FixtureRequest
) -> None:
    frames = [frame("<u2", (8, 8)) for _ in range(5)]
    create(edge_server, key, frames[0])
    view = "slice=1:,::-1&bin=2,sum"
    before = metric(edge_server, "ferrotile_stream_view_frames_computed_total", view)
    raw_before = metric(edge_server, "ferrotile_stream_view_bytes_before_compression_total", view)
    with subscribe(edge_server, key, view) as a, subscribe(edge_server, key, view) as b:
        if one_process(request):
            assert metric(edge_server, "ferrotile_stream_view_subscribers", view) == 2
        publish(edge_server, key, frames)
        got_a = [a.recv(timeout=15) for _ in frames]
        got_b = [b.recv(timeout=15) for _ in frames]
    assert got_a == got_b  # byte for byte
    for original, message in zip(frames, got_a, strict=True):
        assert (array_of(msgpack.unpackb(message)) == binned(original[1:, ::-1], 2, "sum")).all()
    if one_process(request):
        after = metric(edge_server, "ferrotile_stream_view_frames_computed_total", view)
        assert after - before == len(frames)
        raw = metric(edge_server, "ferrotile_stream_view_bytes_before_compression_total", view)
        assert raw - raw_before == len(frames) * 3 * 4 * 4  # 7 x 8 sliced, binned to 3 x 4 uint32


def test_max_fps_skips_the_oldest_and_counts_every_frame(
    edge_server: RunningServer, key: str, request: pytest.FixtureRequest
) -> None:
    frames = [np.full((2, 2), i, "<u2") for i in range(40)]
    create(edge_server, key, frames[0])
    received: list[dict[str, Any]] = []
    with subscribe(edge_server, key, "max_fps=4&bin=2") as ws:
        publish(edge_server, key, frames)
        with client(edge_server) as http:
            assert http.delete(f"/stream/close/{key}").status_code == 200
        with pytest.raises(ConnectionClosed):
            while True:
                received.append(msgpack.unpackb(ws.recv(timeout=15)))
    assert all(m["type"] == "array-data" for m in received)
    assert 1 <= len(received) < len(frames)
    assert len(received) + sum(m["skipped"] for m in received) == len(frames)
    # The newest wins: the last frame published is the last delivered.
    assert array_of(received[-1]).tolist() == [[4 * 39]]
    sequences = [m["sequence"] for m in received]
    assert sequences == sorted(sequences)
    if one_process(request):
        skipped = metric(edge_server, "ferrotile_stream_view_frames_skipped_total", "bin=2,sum")
        assert skipped >= len(frames) - len(received)
