"""Persisted appends under faults: the server killed (SIGKILL) while a writer pushes frames,
and a disk that fills up. After either, the array opens in ferrotile and zarr-python, its shape
covers every acknowledged append and never points past stored data, and every frame equals what
was sent."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import zarr
from websockets.exceptions import ConnectionClosed

from ferrotile.state import path_from_file_uri
from tests.api.conftest import array_body
from tests.conftest import RunningServer, start_server, stop_server
from tests.edge.test_push import pusher

AUTH = {"Authorization": "Apikey secret"}
OCTET = {"Content-Type": "application/octet-stream"}
LAYOUTS = {"sharded": None, "plain": 1}


def frame(i: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Frame ``i`` of a run: random, but the same for the same ``i``."""
    return np.random.default_rng(i).integers(0, 2**15, shape).astype(dtype)


def http(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=30)


def create(server: RunningServer, key: str, first: np.ndarray, per_shard: int | None) -> None:
    body = array_body(key, first)
    if per_shard is not None:
        body["data_sources"][0]["parameters"] = {"chunks_per_shard": per_shard}
    with http(server) as client:
        assert client.post("/metadata/", json=body).status_code == 200
        put = client.put(f"/array/full/{key}", content=first.tobytes(), headers=OCTET)
        assert put.status_code == 200, put.text


def stored(server: RunningServer, key: str, dtype: str) -> tuple[np.ndarray, Path]:
    """The array as ferrotile serves it, and its zarr directory."""
    with http(server) as client:
        meta = client.get(f"/metadata/{key}", params={"include_data_sources": "true"}).json()
        attributes = meta["data"]["attributes"]
        shape = tuple(attributes["structure"]["shape"])
        data = client.get(f"/array/full/{key}")
        assert data.status_code == 200, data.text
    root = path_from_file_uri(attributes["data_sources"][0]["assets"][0]["data_uri"])
    return np.frombuffer(data.content, dtype=dtype).reshape(shape), root


def check_frames(array: np.ndarray, root: Path, shape: tuple[int, ...], dtype: str) -> None:
    for i in range(array.shape[0]):
        np.testing.assert_array_equal(array[i], frame(i, shape, dtype), err_msg=f"frame {i}")
    on_disk = zarr.open_array(store=str(root), mode="r")
    # Killed between an append's zarr.json and its catalog update, zarr may hold that one
    # unacknowledged append beyond what ferrotile serves (a pushed batch: up to 1,024 frames,
    # push.rs MAX_BATCH_FRAMES), its frames all on disk; never less.
    assert on_disk.shape[1:] == array.shape[1:]
    assert array.shape[0] <= on_disk.shape[0] <= array.shape[0] + 1024, (
        on_disk.shape,
        array.shape,
    )
    np.testing.assert_array_equal(on_disk[: array.shape[0]], array)
    for i in range(array.shape[0], on_disk.shape[0]):
        np.testing.assert_array_equal(on_disk[i], frame(i, shape, dtype), err_msg=f"frame {i}")


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_killed_while_appending(tmp_path: Path, key: str, layout: str) -> None:
    shape, dtype = (32, 64), "<u2"  # 4 KiB frames
    catalog = str(tmp_path / "catalog.db")
    server = start_server(tmp_path, catalog=catalog)
    try:
        create(server, key, frame(0, shape, dtype)[np.newaxis], LAYOUTS[layout])
        acked = 0
        enough = threading.Event()

        def write() -> None:
            nonlocal acked
            try:
                with pusher(server, key) as push:
                    for i in range(1, 100_000):
                        push.send(frame(i, shape, dtype).tobytes())
                        # Read the acknowledgements that are there; wait when far behind.
                        while True:
                            behind = i - acked > 100
                            try:
                                message = json.loads(push.recv(timeout=5 if behind else 0))
                            except TimeoutError:
                                break
                            acked = message["frames"]
                            if acked >= 300:
                                enough.set()
            except (ConnectionClosed, OSError):
                pass

        writer = threading.Thread(target=write)
        writer.start()
        assert enough.wait(timeout=120), "the writer got no acknowledgements"
        server.process.kill()  # SIGKILL, mid-stream
        server.process.wait(timeout=10)
        writer.join(timeout=30)
        seen = acked
    finally:
        stop_server(server)
    server = start_server(tmp_path, catalog=catalog)
    try:
        array, root = stored(server, key, dtype)
        assert array.shape[0] >= 1 + seen, (array.shape, seen)  # every acknowledged append
        check_frames(array, root, shape, dtype)  # and nothing past stored data
        # The array takes appends again.
        with pusher(server, key) as push:
            n = array.shape[0]
            push.send(frame(n, shape, dtype).tobytes())
            assert json.loads(push.recv(timeout=15))["frames"] == 1
        array, root = stored(server, key, dtype)
        assert array.shape[0] == n + 1
        check_frames(array, root, shape, dtype)
    finally:
        stop_server(server)


def test_killed_before_the_catalog_recorded_acknowledged_growth(tmp_path: Path, key: str) -> None:
    """One process acknowledges a PATCH that extends the array once zarr.json has the shape, and
    the catalog records it a moment later (rust/src/edge/unrecorded.rs): killed in between, the
    journal names the array and the next start records the shape from zarr.json."""
    shape, dtype = (8, 16), "<u2"
    catalog = str(tmp_path / "catalog.db")
    server = start_server(tmp_path, catalog=catalog)
    journal = tmp_path / "data" / ".ferrotile-unrecorded"
    try:
        create(server, key, frame(0, shape, dtype)[np.newaxis], None)
        with http(server) as client:
            for i in range(1, 31):
                answer = client.patch(
                    f"/array/full/{key}",
                    params={
                        "offset": f"{i},0,0",
                        "shape": f"1,{shape[0]},{shape[1]}",
                        "extend": "true",
                    },
                    content=frame(i, shape, dtype).tobytes(),
                    headers=OCTET,
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["shape"] == [i + 1, *shape]
            server.process.kill()  # within the linger after the last acknowledgement
            server.process.wait(timeout=10)
        entries = [json.loads(p.read_text()) for p in journal.glob("*.json")]
        assert [entry["path"] for entry in entries] == [key]
    finally:
        stop_server(server)
    server = start_server(tmp_path, catalog=catalog)
    try:
        array, root = stored(server, key, dtype)
        assert array.shape == (31, *shape)  # every acknowledged append
        assert entries[0]["zarr"] == str(root)
        check_frames(array, root, shape, dtype)
        assert list(journal.iterdir()) == []  # applied, then cleared
    finally:
        stop_server(server)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted at ``tmp_path/data`` (the server's data directory)."""
    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(data)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_full_disk_is_507_and_leaves_the_array(
    tmp_path: Path, small_disk: Path, key: str, layout: str
) -> None:
    shape, dtype = (256, 256), "<u4"  # 256 KiB frames, random: zstd cannot shrink them much
    server = start_server(tmp_path, catalog=str(tmp_path / "catalog.db"))
    try:
        create(server, key, frame(0, shape, dtype)[np.newaxis], LAYOUTS[layout])
        with http(server) as client:
            for i in range(1, 100):
                response = client.patch(
                    f"/array/full/{key}",
                    params={"offset": str(i), "shape": f"1,{shape[0]},{shape[1]}", "extend": "1"},
                    content=frame(i, shape, dtype).tobytes(),
                    headers=OCTET,
                )
                if response.status_code != 200:
                    break
        assert response.status_code == 507, response.text
        assert response.json()["detail"].startswith("Insufficient storage")
        array, root = stored(server, key, dtype)
        assert array.shape == (i, *shape)  # the failed write did not grow it
        check_frames(array, root, shape, dtype)
        # Over the push WebSocket: an error naming 507, nothing stored.
        with pusher(server, key) as push:
            push.send(frame(i, shape, dtype).tobytes())
            error = json.loads(push.recv(timeout=15))
        assert error["status"] == 507 and error["frame"] == 1, error
        array, root = stored(server, key, dtype)
        assert array.shape == (i, *shape)
        check_frames(array, root, shape, dtype)
    finally:
        stop_server(server)


def test_disk_full_mid_push_keeps_every_acknowledged_frame_and_nothing_after(
    tmp_path: Path, small_disk: Path, key: str
) -> None:
    """Pushed flat out, one batch is stored while the next is read (push.rs): when the disk
    fills, the error names the first frame not stored, which directly follows the last one
    acknowledged, and exactly the acknowledged frames are kept."""
    shape, dtype = (128, 256), "<u4"  # 128 KiB frames of noise: 3 MiB holds about 20
    server = start_server(tmp_path, catalog=str(tmp_path / "catalog.db"))
    try:
        create(server, key, frame(0, shape, dtype)[np.newaxis], None)
        messages: list[dict[str, Any]] = []
        with pusher(server, key) as push:

            def send_all() -> None:
                with contextlib.suppress(ConnectionClosed):  # the server closes on the error
                    for i in range(1, 61):
                        push.send(frame(i, shape, dtype).tobytes())

            sender = threading.Thread(target=send_all)
            sender.start()
            with pytest.raises(ConnectionClosed):
                while True:
                    messages.append(json.loads(push.recv(timeout=30)))
            sender.join(30)
        acked = max((m["frames"] for m in messages if "frames" in m), default=0)
        error = messages[-1]
        assert error["status"] == 507 and error["frame"] == acked + 1, messages[-3:]
        assert 0 < acked < 60
        array, root = stored(server, key, dtype)
        assert array.shape == (1 + acked, *shape)
        check_frames(array, root, shape, dtype)
    finally:
        stop_server(server)
