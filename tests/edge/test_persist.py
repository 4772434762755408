"""Persisted writes stored by the edge's zarr writer (``rust/src/store/``): what the stock
client writes (PUT full/block, PATCH with and without ``extend``) reads back equal through
ferrotile, the stock client and zarr-python opening the directory itself, and the shape seen
after each acknowledged write covers it."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import zarr
from tiled.client import from_uri

from ferrotile.state import path_from_file_uri
from tests.api.conftest import array_body
from tests.conftest import RunningServer

AUTH = {"Authorization": "Apikey secret"}
OCTET = {"Content-Type": "application/octet-stream"}


def http(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=15)


def directory(server: RunningServer, key: str) -> Path:
    """The node's zarr directory, as the catalog names it."""
    with http(server) as client:
        meta = client.get(f"/metadata/{key}", params={"include_data_sources": "true"}).json()
    source = meta["data"]["attributes"]["data_sources"][0]
    return path_from_file_uri(source["assets"][0]["data_uri"])


def shape_of(server: RunningServer, key: str) -> list[int]:
    with http(server) as client:
        meta = client.get(f"/metadata/{key}").json()
    return list(meta["data"]["attributes"]["structure"]["shape"])


def test_patch_extend_frame_by_frame_with_the_stock_client(
    edge_server: RunningServer, key: str
) -> None:
    client = from_uri(edge_server.url, api_key=edge_server.api_key)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 60_000, (4, 3), dtype="<u2") for _ in range(12)]
    x = client.write_array(frames[0][np.newaxis], key=key)
    for i, frame in enumerate(frames[1:], start=1):
        x.patch(frame[np.newaxis], offset=(i,), extend=True)
        assert shape_of(edge_server, key) == [i + 1, 4, 3]  # covers the acknowledged append
    expected = np.stack(frames)
    np.testing.assert_array_equal(client[key].read(), expected)
    on_disk = zarr.open_array(store=str(directory(edge_server, key)), mode="r")
    assert on_disk.shape == (12, 4, 3)
    np.testing.assert_array_equal(on_disk[:], expected)
    # zarr.json records the structure ferrotile reads back: the appended axis regrown as a
    # regular grid, kept as its block size however many frames (the catalog keeps the same).
    stored = on_disk.attrs["ferrotile"]["structure"]
    assert (stored["shape"], stored["chunks"]) == ([12, 4, 3], [{"regular": n} for n in (1, 4, 3)])
    # Served with every block listed, as Tiled does: to the stock client, in the metadata and
    # in a PATCH's answer; a block of the grown grid is written where the listed one says.
    assert client[key].structure().chunks == ((1,) * 12, (4,), (3,))
    client[key].write_block(frames[0][np.newaxis] + 1, block=(7, 0, 0))
    expected[7] = frames[0] + 1
    np.testing.assert_array_equal(client[key].read(), expected)
    with http(edge_server) as raw:
        body = (frames[0] + 2).tobytes()
        params = {"offset": "12", "shape": "1,4,3", "extend": "true"}
        answer = raw.patch(f"/array/full/{key}", content=body, params=params, headers=OCTET)
        assert answer.status_code == 200, answer.text
        assert answer.json()["chunks"] == [[1] * 13, [4], [3]]
        meta = raw.get(f"/metadata/{key}", params={"include_data_sources": "true"}).json()
    attributes = meta["data"]["attributes"]
    assert attributes["structure"]["chunks"] == [[1] * 13, [4], [3]]
    assert attributes["data_sources"][0]["structure"]["chunks"] == [[1] * 13, [4], [3]]


def test_put_full_block_and_patch_in_place(edge_server: RunningServer, key: str) -> None:
    client = from_uri(edge_server.url, api_key=edge_server.api_key)
    base = np.arange(48, dtype="<f8").reshape(6, 8)
    with http(edge_server) as raw:
        body = array_body(key, base, [[2, 2, 2], [4, 4]])
        assert raw.post("/metadata/", json=body).status_code == 200
    x = client[key]
    x.write(base)
    x.write_block(np.full((2, 4), -1.0), block=(1, 1))
    x.patch(np.full((1, 3), 7.5), offset=(5, 2))
    expected = base.copy()
    expected[2:4, 4:8] = -1.0
    expected[5, 2:5] = 7.5
    np.testing.assert_array_equal(client[key].read(), expected)
    on_disk = zarr.open_array(store=str(directory(edge_server, key)), mode="r")
    np.testing.assert_array_equal(on_disk[:], expected)
    # A PATCH that does not fit, without extend: Tiled's 409, nothing stored.
    with http(edge_server) as raw:
        response = raw.patch(
            f"/array/full/{key}",
            params={"offset": "6", "shape": "1,8"},
            content=np.zeros(8).tobytes(),
            headers=OCTET,
        )
    assert response.status_code == 409
    assert response.json()["detail"].startswith(
        "Slice [6:7, 0:8] does not fit within current array shape (6, 8)."
    )
    np.testing.assert_array_equal(on_disk[:], expected)


@pytest.mark.parametrize("dtype", [">i4", "<c16", "|S5", "<U3", "|b1", "<M8[ns]"])
def test_other_dtypes_extend_and_read_back(
    edge_server: RunningServer, key: str, dtype: str
) -> None:
    if dtype in ("|S5", "<U3"):
        values = np.array([["ab", "cde"], ["f", ""]], dtype=dtype)
    elif dtype == "<M8[ns]":
        values = np.array([[1, 2], [3, -4]], dtype="<i8").view(dtype)
    else:
        values = (np.arange(4).reshape(2, 2) % 2 == 1).astype(dtype)
        values = (np.arange(4).reshape(2, 2) + 1).astype(dtype) if dtype != "|b1" else values
    with http(edge_server) as client:
        body = array_body(key, values[:1], [[1], [2]])
        assert client.post("/metadata/", json=body).status_code == 200
        for i in range(2):
            response = client.patch(
                f"/array/full/{key}",
                params={"offset": str(i), "shape": "1,2", "extend": "true"},
                content=values[i : i + 1].tobytes(),
                headers=OCTET,
            )
            assert response.status_code == 200, response.text
            assert response.json()["shape"] == [max(i + 1, 1), 2]
        got = client.get(f"/array/full/{key}")
    assert got.status_code == 200
    np.testing.assert_array_equal(np.frombuffer(got.content, dtype=dtype).reshape(2, 2), values)


def test_pushed_frames_go_to_a_few_shard_files(edge_server: RunningServer, key: str) -> None:
    from tests.edge.test_push import acks_until, pusher

    client = from_uri(edge_server.url, api_key=edge_server.api_key)
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 60_000, (3000, 16, 32), dtype="<u2")  # 1 KiB frames
    client.write_array(frames[:1], key=key)
    with pusher(edge_server, key) as push:
        for frame in frames[1:1000]:
            push.send(frame.tobytes())
        acks_until(push, 999)
        assert shape_of(edge_server, key)[0] == 1000  # covers every acknowledged frame
        for frame in frames[1000:]:
            push.send(frame.tobytes())
        acks = acks_until(push, 2999)
    assert acks[-1]["frames"] == 2999
    assert shape_of(edge_server, key) == [3000, 16, 32]
    np.testing.assert_array_equal(client[key].read(), frames)
    root = directory(edge_server, key)
    np.testing.assert_array_equal(zarr.open_array(store=str(root), mode="r")[:], frames)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["c/0/0/0", "zarr.json"]  # 4,096 frames per shard


def test_appends_past_a_hundred_thousand_blocks(edge_server: RunningServer, key: str) -> None:
    """One block per frame, as the stock client's arrays grow: past the 100,000 blocks per axis
    the explicit chunk list used to allow, each frame where it was sent, the catalog keeping
    the grid as two numbers and the stock client reading every block listed."""
    from tests.edge.test_push import acks_until, pusher

    n = 120_001
    frames = (np.arange(n * 16) % 251).astype("|u1").reshape(n, 16)
    client = from_uri(edge_server.url, api_key=edge_server.api_key)
    client.write_array(frames[:1], key=key)
    with pusher(edge_server, key) as push:
        for frame in frames[1:]:
            push.send(frame.tobytes())
        assert acks_until(push, n - 1)[-1]["frames"] == n - 1
    assert client[key].structure().chunks == ((1,) * n, (16,))
    # Read back whole by the engine's reader (zarr-python took more than 15 s for these chunks).
    with http(edge_server) as raw:
        got = raw.get(f"/array/full/{key}", headers={"Accept": "application/octet-stream"})
    np.testing.assert_array_equal(np.frombuffer(got.content, "|u1").reshape(n, 16), frames)
    on_disk = zarr.open_array(store=str(directory(edge_server, key)), mode="r")
    stored = on_disk.attrs["ferrotile"]["structure"]
    assert (stored["shape"], stored["chunks"]) == ([n, 16], [{"regular": 1}, {"regular": 16}])


def test_a_node_chooses_plain_chunks(edge_server: RunningServer, key: str) -> None:
    from tiled.structures.array import ArrayStructure
    from tiled.structures.data_source import DataSource

    client = from_uri(edge_server.url, api_key=edge_server.api_key)
    structure = ArrayStructure.from_array(np.zeros((1, 8), dtype="<i4"))
    source = DataSource(
        structure_family="array",
        structure=structure,
        mimetype="application/x-zarr",
        parameters={"chunks_per_shard": 1},
    )
    x = client.new("array", [source], key=key)
    for i in range(1, 4):
        x.patch(np.full((1, 8), i, dtype="<i4"), offset=(i,), extend=True)
    expected = np.repeat(np.arange(4, dtype="<i4"), 8).reshape(4, 8)
    np.testing.assert_array_equal(client[key].read(), expected)
    root = directory(edge_server, key)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["c/1/0", "c/2/0", "c/3/0", "zarr.json"]  # row 0 was never written
    with http(edge_server) as raw:
        body = array_body(f"{key}-bad", np.zeros((1, 8), dtype="<i4"))
        body["data_sources"][0]["parameters"] = {"chunks_per_shard": 0}
        response = raw.post("/metadata/", json=body)
    assert response.status_code == 422
    assert "chunks_per_shard" in response.json()["detail"]


def test_large_frames_are_written_directly_at_aligned_offsets(
    edge_server: RunningServer, key: str
) -> None:
    """Chunks of >= 64 KiB stored go with O_DIRECT (``rust/src/store/direct.rs``): in a shard
    at 4 KiB-aligned offsets (the index gives each one's exact length), as a plain chunk file
    cut to its exact length; zarr-python and the stock client read them back equal."""
    import struct

    import zstandard

    client = from_uri(edge_server.url, api_key=edge_server.api_key)
    rng = np.random.default_rng(3)
    # 128 KiB frames of noise (zstd cannot shrink them below 64 KiB): sharded, 128 per shard.
    frames = rng.integers(0, 2**16, (5, 256, 256), dtype="<u2")
    x = client.write_array(frames[:1], key=key)
    for i in range(1, 5):
        x.patch(frames[i : i + 1], offset=(i,), extend=True)
    np.testing.assert_array_equal(client[key].read(), frames)
    root = directory(edge_server, key)
    np.testing.assert_array_equal(zarr.open_array(store=str(root), mode="r")[:], frames)
    shard = (root / "c/0/0/0").read_bytes()
    entries = [struct.unpack_from("<QQ", shard, 16 * i) for i in range(5)]
    assert all(offset % 4096 == 0 and size > 64 * 1024 for offset, size in entries), entries
    assert [offset for offset, _ in entries] == sorted(offset for offset, _ in entries)
    # A plain chunk per frame (chunks_per_shard=1): each file is its zstd frame, no padding.
    from tiled.structures.array import ArrayStructure
    from tiled.structures.data_source import DataSource

    structure = ArrayStructure.from_array(frames[:1])
    source = DataSource(
        structure_family="array",
        structure=structure,
        mimetype="application/x-zarr",
        parameters={"chunks_per_shard": 1},
    )
    y = client.new("array", [source], key=f"{key}-plain")
    for i in range(5):
        y.patch(frames[i : i + 1], offset=(i,), extend=True)
    plain = directory(edge_server, f"{key}-plain")
    np.testing.assert_array_equal(zarr.open_array(store=str(plain), mode="r")[:], frames)
    for i in range(5):
        stored = (plain / f"c/{i}/0/0").read_bytes()
        assert len(stored) % 4096 != 0  # cut to its length (noise: a few bytes over 128 KiB)
        decoder = zstandard.ZstdDecompressor().decompressobj()
        assert decoder.decompress(stored) == frames[i].tobytes()
        assert decoder.unused_data == b""  # exactly one zstd frame, no padding after it
