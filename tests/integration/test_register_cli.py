"""``ferrotile register`` and ``serve directory`` on a real server, read back by stock Tiled."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile
from tiled.client import from_uri

from tests.conftest import API_KEY, RunningServer, free_port, start_server, stop_server

pytestmark = pytest.mark.timeout(180)

FERROTILE = [sys.executable, "-m", "ferrotile"]
TILED = str(Path(sys.executable).with_name("tiled"))


def make_tree(root: Path) -> dict[str, Any]:
    """A tree of every registrable kind; returns the expected value of each node path."""
    import h5py
    import zarr

    expected: dict[str, Any] = {}
    root.mkdir(parents=True)
    frames = [np.full((4, 5), i, dtype=np.uint16) for i in range(3)]
    for i, frame in enumerate(frames):
        tifffile.imwrite(root / f"img_{i:03d}.tif", frame)
    expected["img_"] = np.stack(frames)
    expected["single"] = np.arange(12, dtype=np.int64).reshape(3, 4)
    np.save(root / "single.npy", expected["single"])
    (root / "tables").mkdir()
    csv = pd.DataFrame({"a": [1, 2, 3], "b": [1.5, 2.5, 3.5]})
    csv.to_csv(root / "tables" / "t.csv", index=False)
    expected["tables/t"] = csv
    parquet = pd.DataFrame({"x": [1, 2], "y": ["p", "q"]})
    parquet.to_parquet(root / "tables" / "p.parquet")
    expected["tables/p"] = parquet
    store = zarr.create_array(str(root / "z.zarr"), shape=(6, 2), chunks=(3, 2), dtype="f8")
    store[:] = expected["z"] = np.arange(12, dtype="f8").reshape(6, 2)
    with h5py.File(root / "scan.h5", "w") as f:
        f.attrs["sample"] = "quartz"
        f["top"] = expected["scan/top"] = np.linspace(0, 1, 5)
        f.create_group("g").create_dataset("deep", data=np.eye(3))
        expected["scan/g/deep"] = np.eye(3)
        f.create_dataset("grow", data=np.ones((2, 3)), maxshape=(None, 3), chunks=(1, 3))
        expected["scan/grow"] = np.ones((2, 3))
    (root / "notes.xyz").write_text("unknown type")
    (root / "broken.npy").write_bytes(b"truncated")
    return expected


@pytest.fixture(scope="module")
def readable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readable")


@pytest.fixture(scope="module")
def reg_server(readable: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("regserver"), "-r", str(readable))
    yield running
    stop_server(running)


@pytest.fixture
def tree(readable: Path) -> tuple[Path, dict[str, Any]]:
    root = readable / uuid.uuid4().hex[:8]
    return root, make_tree(root)


def register(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FERROTILE, "register", *args], capture_output=True, text=True, timeout=timeout
    )


def counts(stderr: str) -> dict[str, int]:
    """Outcome counts from the summary line ``register: 5 registered, 0 unchanged, ...``."""
    line = [ln for ln in stderr.splitlines() if ln.startswith("register:") and " in " in ln][-1]
    words = line.removeprefix("register:").rsplit(" in ", 1)[0].split(",")
    return {w.split()[1]: int(w.split()[0]) for w in words}


def client(server: RunningServer) -> Any:
    return from_uri(server.url, api_key=server.api_key)


def assert_matches(node: Any, value: Any) -> None:
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(node.read(), value, check_dtype=False)
    else:
        np.testing.assert_array_equal(node.read(), value)


def wait_for(condition: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (KeyError, AssertionError):
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for line {condition.__code__.co_firstlineno}")


def test_register_reads_back_and_reruns_are_idempotent(
    reg_server: RunningServer, tree: tuple[Path, dict[str, Any]]
) -> None:
    root, expected = tree
    prefix = f"/{root.name}"
    first = register(reg_server.url, str(root), "--prefix", prefix, "--api-key", API_KEY)
    assert first.returncode == 0, first.stderr
    assert counts(first.stderr)["skipped"] == 2, first.stderr
    assert "notes.xyz" in first.stderr and "broken.npy" in first.stderr
    node = client(reg_server)[root.name]
    for path, value in expected.items():
        assert_matches(node[path], value)
    assert node["scan"].metadata["sample"] == "quartz"
    assert "notes" not in node and "broken" not in node

    second = register(reg_server.url, str(root), "--prefix", prefix, "--api-key", API_KEY)
    assert second.returncode == 0, second.stderr
    outcome = counts(second.stderr)
    assert outcome["registered"] == outcome["updated"] == outcome["removed"] == 0, second.stderr
    assert outcome["unchanged"] >= 6

    (root / "single.npy").unlink()
    shutil.rmtree(root / "tables")
    third = register(reg_server.url, str(root), "--prefix", prefix, "--api-key", API_KEY)
    assert counts(third.stderr)["removed"] == 2, third.stderr
    node = client(reg_server)[root.name]
    assert "single" not in node and "tables" not in node
    assert_matches(node["img_"], expected["img_"])


def test_changed_series_is_updated_in_place(
    reg_server: RunningServer, tree: tuple[Path, dict[str, Any]]
) -> None:
    root, _ = tree
    args = (reg_server.url, str(root), "--prefix", f"/{root.name}", "--api-key", API_KEY)
    assert register(*args).returncode == 0
    tifffile.imwrite(root / "img_003.tif", np.full((4, 5), 3, dtype=np.uint16))
    rerun = register(*args)
    assert counts(rerun.stderr)["updated"] == 1, rerun.stderr
    series = client(reg_server)[root.name]["img_"]
    assert series.shape == (4, 4, 5)
    assert series.read()[3].max() == 3


def test_watch_registers_new_files_and_streams_a_grown_series(
    reg_server: RunningServer, tree: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, _ = tree
    log = (tmp_path / "watch.log").open("w")
    watcher = subprocess.Popen(
        [*FERROTILE, "register", reg_server.url, str(root), "--watch",
         "--prefix", f"/{root.name}", "--api-key", API_KEY],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        node = wait_for(lambda: "img_" in (c := client(reg_server)[root.name]) and c)
        wait_for(lambda: "watching" in (tmp_path / "watch.log").read_text())
        updates: list[Any] = []
        got = threading.Event()

        def on_data(update: Any) -> None:
            updates.append(update)
            got.set()

        subscription = node["img_"].subscribe()
        subscription.new_data.add_callback(on_data)
        with subscription.start_in_thread():
            tifffile.imwrite(root / "img_003.tif", np.full((4, 5), 7, dtype=np.uint16))
            np.save(root / "fresh.npy", np.ones(3))
            assert got.wait(30), (tmp_path / "watch.log").read_text()
        update = updates[0]
        assert tuple(update.patch.offset) == (3, 0, 0) and tuple(update.patch.shape) == (1, 4, 5)
        np.testing.assert_array_equal(update.data(), np.full((1, 4, 5), 7))
        wait_for(lambda: "fresh" in client(reg_server)[root.name])
        np.testing.assert_array_equal(client(reg_server)[root.name]["fresh"].read(), np.ones(3))

    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(timeout=15)
        log.close()


def test_watch_streams_a_grown_hdf5_dataset(
    reg_server: RunningServer, tree: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    # Each HDF5 dataset is its own node, so growth along axis 0 is an array-ref with a patch.
    import h5py

    root, _ = tree
    log_path = tmp_path / "watch.log"
    log = log_path.open("w")
    watcher = subprocess.Popen(
        [*FERROTILE, "register", reg_server.url, str(root), "--watch",
         "--prefix", f"/{root.name}", "--api-key", API_KEY],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: "watching" in log_path.read_text())
        updates: list[Any] = []
        got = threading.Event()

        def on_data(update: Any) -> None:
            updates.append(update)
            got.set()

        subscription = client(reg_server)[root.name]["scan"]["grow"].subscribe()
        subscription.new_data.add_callback(on_data)
        with subscription.start_in_thread():
            with h5py.File(root / "scan.h5", "a") as f:
                f["grow"].resize((5, 3))
                f["grow"][2:] = 2.0
            assert got.wait(30), log_path.read_text()
        assert tuple(updates[0].patch.offset) == (2, 0) and tuple(updates[0].patch.shape) == (3, 3)
        np.testing.assert_array_equal(updates[0].data(), np.full((3, 3), 2.0))
        grown = client(reg_server)[root.name]["scan"]["grow"].read()
        np.testing.assert_array_equal(grown, np.r_[np.ones((2, 3)), np.full((3, 3), 2.0)])
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(timeout=15)
        log.close()


def _stock_register(reg_server: RunningServer, root: Path, prefix: str) -> Any:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    result = subprocess.run(
        [TILED, "register", reg_server.url, str(root), "--prefix", f"/{prefix}",
         "--api-key", API_KEY],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return client(reg_server)[prefix]


def test_stock_tiled_register_works_against_ferrotile(
    reg_server: RunningServer, tree: tuple[Path, dict[str, Any]]
) -> None:
    root, expected = tree
    node = _stock_register(reg_server, root, root.name)
    # Tiled registers an HDF5 file as one container whose children the server reads from it;
    # those children are checked separately below.
    for path, value in expected.items():
        if not path.startswith("scan/"):
            assert_matches(node[path], value)
    assert node["scan"].metadata["sample"] == "quartz"


def test_stock_tiled_register_hdf5_children(
    reg_server: RunningServer, tree: tuple[Path, dict[str, Any]]
) -> None:
    root, expected = tree
    node = _stock_register(reg_server, root, f"{root.name}-h5")
    for path, value in expected.items():
        if path.startswith("scan/"):
            assert_matches(node[path], value)


def test_serve_directory_serves_at_once_and_nodes_appear(
    tree: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, expected = tree
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [*FERROTILE, "serve", "directory", str(root), "--watch", "--api-key", API_KEY,
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        c = wait_for(lambda: from_uri(url, api_key=API_KEY))
        created: list[str] = []
        subscription = c.subscribe()

        def on_created(update: Any) -> None:
            created.append(update.key)

        # The client holds callbacks weakly: a named local function stays alive.
        subscription.child_created.add_callback(on_created)
        with subscription.start_in_thread(start=0):
            for path, value in expected.items():
                # Nodes appear while the walk runs; each is complete once it is there.
                assert_matches(wait_for(lambda path=path: c[path]), value)
            np.save(root / "later.npy", np.arange(4))
            wait_for(lambda: "later" in c)
            np.testing.assert_array_equal(c["later"].read(), np.arange(4))
            wait_for(lambda: {"img_", "later"} <= set(created), timeout=10)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=15)
        log.close()


def assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ferrotile: error: "), result.stderr
    assert needle in lines[0], lines[0]


def test_cli_errors_are_one_line(reg_server: RunningServer, tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    assert_one_line_error(register(unreachable, str(tmp_path)), "cannot reach")
    assert_one_line_error(register(reg_server.url, str(tmp_path), "--api-key", "wrong"), "401")
    assert_one_line_error(
        register(reg_server.url, str(tmp_path / "missing"), "--api-key", API_KEY),
        "does not exist",
    )
    assert_one_line_error(
        register(reg_server.url, str(tmp_path), "--ext", "tif", "--api-key", API_KEY), "--ext"
    )
    assert_one_line_error(register("ftp://x", str(tmp_path)), "not an http")
