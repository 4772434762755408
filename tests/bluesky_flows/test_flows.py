"""Bluesky flows through TiledWriter, each checked against what the RunEngine emitted, on
ferrotile and on Tiled 0.2.20 (``target``): count, scan, metadata, images inside events, a
file-series detector (ophyd.sim ``img``), an HDF5 detector (StreamResource/StreamDatum), a
run's JSON export, and a subscriber receiving a run while it is written."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter, subscribe_to_streams
from ophyd.sim import hw

from tests.bluesky_flows.conftest import Recorded
from tests.bluesky_flows.devices import FRAME, Hdf5Detector, frame

Engine = tuple[RunEngine, Recorded]


@pytest.fixture(scope="module")
def devices(detector_dir: Path) -> Any:
    return hw(save_path=str(detector_dir))


def run_of(client: Any, recorded: Recorded) -> Any:
    return client[recorded.one("start")["uid"]]


def assert_stopped(run: Any, recorded: Recorded) -> None:
    stop = recorded.one("stop")
    assert stop["exit_status"] == "success"
    assert run.metadata["stop"]["uid"] == stop["uid"]
    assert run.metadata["stop"]["num_events"] == stop["num_events"]


def assert_internal(run: Any, recorded: Recorded, keys: list[str]) -> None:
    """The event table holds every event's values and timestamps, in order."""
    table = run["primary"].base["internal"].read()
    events = recorded.all("event")
    assert list(table["seq_num"]) == [e["seq_num"] for e in events]
    np.testing.assert_array_equal(table["time"], [e["time"] for e in events])
    for key in keys:
        np.testing.assert_array_equal(table[key], recorded.column(key))
        np.testing.assert_array_equal(table[f"ts_{key}"], [e["timestamps"][key] for e in events])


def test_count(client: Any, run_engine: Engine, devices: Any) -> None:
    engine, recorded = run_engine
    engine(bp.count([devices.det], num=3))
    run = run_of(client, recorded)
    assert_stopped(run, recorded)
    assert run.metadata["start"]["plan_name"] == "count"
    assert run.metadata["start"]["num_points"] == 3
    assert list(run) == ["primary"]
    assert_internal(run, recorded, ["det"])
    assert len(recorded.column("det")) == 3


def test_scan(client: Any, run_engine: Engine, devices: Any) -> None:
    engine, recorded = run_engine
    engine(bp.scan([devices.det], devices.motor, -1, 1, 5))
    run = run_of(client, recorded)
    assert_stopped(run, recorded)
    assert_internal(run, recorded, ["det", "motor", "motor_setpoint"])
    np.testing.assert_allclose(recorded.column("motor"), [-1, -0.5, 0, 0.5, 1])
    # The composite stream reads as one xarray Dataset (the BlueskyEventStream client).
    dataset = run["primary"].read()
    np.testing.assert_array_equal(dataset["det"].values, recorded.column("det"))


def test_metadata(client: Any, run_engine: Engine, devices: Any) -> None:
    engine, recorded = run_engine
    md = {"sample": "Si-111", "operator": {"name": "A. Tester", "shift": 3}, "tags": ["a", "b"]}
    engine(bp.count([devices.det], num=1), **md)
    run = run_of(client, recorded)
    start, descriptor = recorded.one("start"), recorded.one("descriptor")
    assert run.metadata["start"]["sample"] == "Si-111"
    assert run.metadata["start"]["operator"] == md["operator"]
    assert run.metadata["start"]["tags"] == ["a", "b"]
    assert run.metadata["start"]["uid"] == start["uid"]
    assert run.metadata["start"]["scan_id"] == start["scan_id"]
    assert {s.name for s in run.specs} == {"BlueskyRun"}
    stream = run["primary"]
    # TiledWriter's normalizer adds dtype_numpy to each data key; the rest is as emitted.
    stored = stream.metadata["data_keys"]
    assert set(stored) == set(descriptor["data_keys"])
    for key, emitted in descriptor["data_keys"].items():
        assert {**emitted, "dtype_numpy": stored[key]["dtype_numpy"]} == stored[key]
    assert (
        stream.metadata["configuration"]["det"]["data"]
        == descriptor["configuration"]["det"]["data"]
    )
    assert {s.name for s in stream.specs} == {"BlueskyEventStream", "composite"}
    # Metadata-only search finds the run (the stock client's query on the server).
    from tiled.queries import Key

    assert start["uid"] in client.search(Key("start.sample") == "Si-111")


def test_images_inside_events(client: Any, run_engine: Engine, devices: Any) -> None:
    engine, recorded = run_engine
    engine(bp.count([devices.direct_img], num=2))
    run = run_of(client, recorded)
    assert_stopped(run, recorded)
    images = run["primary"]["img"].read()  # an internal (writable) array node
    np.testing.assert_array_equal(images, np.stack(recorded.column("img")))
    assert images.shape == (2, 10, 10)
    assert_internal(run, recorded, [])


def test_file_series_detector(client: Any, run_engine: Engine, devices: Any) -> None:
    """ophyd.sim ``img`` writes one .npy file per event: TiledWriter creates the node with
    POST /metadata (an external data source without assets), then PUT /data_source."""
    engine, recorded = run_engine
    engine(bp.count([devices.img], num=3))
    run = run_of(client, recorded)
    assert_stopped(run, recorded)
    (resource,) = recorded.all("resource")
    stem = Path(resource["root"]) / resource["resource_path"]
    on_disk = np.stack([np.load(f"{stem}_{i}.npy") for i in range(3)])
    node = run["primary"]["img"]
    np.testing.assert_array_equal(node.read(), on_disk)
    np.testing.assert_array_equal(node[1], on_disk[1])
    (source,) = node.data_sources()
    assert source.management == "external"
    assert [a.data_uri for a in source.assets] == [
        f"file://localhost{stem}_{i}.npy" for i in range(3)
    ]
    assert run["primary"].read()["img"].shape == (3, 10, 10)


def test_hdf5_detector_reshaped(client: Any, run_engine: Engine, detector_dir: Path) -> None:
    """The file holds (3, 5, 7); the data source says (3, 1, 5, 7): served reshaped."""
    engine, recorded = run_engine
    detector = Hdf5Detector("h5det", detector_dir)
    engine(bp.count([detector], num=3))
    run = run_of(client, recorded)
    assert_stopped(run, recorded)
    node = run["primary"]["h5det"]
    expected = np.stack([frame(i) for i in range(3)]).reshape(3, 1, *FRAME)
    assert node.shape == (3, 1, *FRAME)
    np.testing.assert_array_equal(node.read(), expected)
    np.testing.assert_array_equal(node[1:, 0, ::2], expected[1:, 0, ::2])
    (source,) = node.data_sources()
    assert [a.data_uri for a in source.assets] == [f"file://localhost{detector.path}"]


def test_run_export_json(client: Any, run_engine: Engine, devices: Any, tmp_path: Path) -> None:
    engine, recorded = run_engine
    engine(bp.count([devices.det, devices.img], num=2))
    run = run_of(client, recorded)
    target = tmp_path / "run.json"
    run.export(str(target), format="application/json")
    exported = json.loads(target.read_text())
    assert exported["metadata"]["start"]["uid"] == recorded.one("start")["uid"]
    assert exported["metadata"]["stop"]["uid"] == recorded.one("stop")["uid"]
    primary = exported["contents"]["primary"]
    assert set(primary["metadata"]["data_keys"]) == set(recorded.one("descriptor")["data_keys"])
    assert primary["metadata"] == dict(run["primary"].metadata)
    assert exported["metadata"] == dict(run.metadata)
    assert set(primary["contents"]) == {"internal", "img"}
    columns = primary["contents"]["internal"]["contents"]
    assert list(columns) == ["seq_num", "time", "det", "ts_det"]
    assert all(c == {"contents": {}, "metadata": {}} for c in columns.values())
    assert primary["contents"]["img"]["contents"] == {}


def _wait(condition: Callable[[], bool], timeout: float = 15.0, what: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; got {what() if what else None}")
        time.sleep(0.05)


def test_subscriber_streams_while_the_run_is_written(client: Any, devices: Any) -> None:
    """subscribe_to_streams (bluesky-tiled-plugins) follows new runs: table rows appended per
    event (batch_size=1) and the file series' frames (array-ref on each PUT /data_source)."""
    engine = RunEngine({})
    recorded = Recorded()
    engine.subscribe(recorded)
    engine.subscribe(TiledWriter(client, batch_size=1))
    lock = threading.Lock()
    # By run: start=0 replays the runs earlier tests wrote to this server too.
    rows: dict[str, dict[str, list[Any]]] = {}
    frames: dict[str, list[np.ndarray]] = {}

    def on_update(update: Any) -> None:
        data = update.data()
        with lock:
            if update.data_keys == ("img",):
                frames.setdefault(update.run_uid, []).append(np.asarray(data))
            else:
                for key in update.data_keys:
                    columns = rows.setdefault(update.run_uid, {})
                    columns.setdefault(key, []).extend(list(data[key]))

    subscription = subscribe_to_streams(
        client, on_update, streams={"primary": ["det", "img"]}, start=0
    )
    try:
        (uid,) = engine(bp.count([devices.det, devices.img], num=3))
        _wait(
            lambda: (
                len(rows.get(uid, {}).get("det", [])) == 3
                and sum(len(f) for f in frames.get(uid, [])) == 3
            ),
            what=lambda: (rows.get(uid), [f.shape for f in frames.get(uid, [])]),
        )
    finally:
        subscription.disconnect()
        engine.loop.call_soon_threadsafe(engine.loop.stop)
    np.testing.assert_array_equal(rows[uid]["det"], recorded.column("det"))
    (resource,) = recorded.all("resource")
    stem = Path(resource["root"]) / resource["resource_path"]
    on_disk = np.stack([np.load(f"{stem}_{i}.npy") for i in range(3)])
    np.testing.assert_array_equal(np.concatenate(frames[uid]), on_disk)
