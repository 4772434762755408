"""Registering files in place (POST /register, PUT /data_source) with the stock tiled client."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import httpx
import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr
from tiled.client import from_uri
from tiled.structures.array import ArrayStructure, BuiltinDtype
from tiled.structures.core import StructureFamily
from tiled.structures.data_source import Asset, DataSource, Management

from tests.compat.conftest import Collector
from tests.conftest import CATALOGS, RunningServer, _catalog_uri, start_server, stop_server

TIFF_SEQ = "multipart/related;type=image/tiff"


@pytest.fixture(scope="module")
def readable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readable")


@pytest.fixture(scope="module", params=CATALOGS)
def reg_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, readable: Path
) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("server"), "-r", str(readable), catalog=_catalog_uri(request)
    )
    yield running
    stop_server(running)


@pytest.fixture
def c(reg_server: RunningServer) -> Any:
    return from_uri(reg_server.url, api_key=reg_server.api_key)


@pytest.fixture
def http(reg_server: RunningServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Apikey {reg_server.api_key}"}
    with httpx.Client(base_url=reg_server.url, headers=headers) as client:
        yield client


def frames(directory: Path, n: int = 3, shape: tuple[int, int] = (7, 13)) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"img{i}.tif"
        tifffile.imwrite(path, np.arange(np.prod(shape), dtype="int32").reshape(shape) + 100 * i)
        paths.append(path)
    return paths


def tiff_source(paths: list[Path], parameter: str = "data_uris", first: int = 0) -> DataSource:
    data = np.stack([tifffile.imread(p) for p in paths])
    structure = ArrayStructure(
        data_type=BuiltinDtype.from_numpy_dtype(data.dtype),
        shape=data.shape,
        chunks=((1,) * len(paths), (data.shape[1],), (data.shape[2],)),
    )
    return DataSource(
        management=Management.external,
        mimetype=TIFF_SEQ,
        structure_family=StructureFamily.array,
        structure=structure,
        assets=[
            Asset(data_uri=f"file://localhost{p}", is_directory=False, parameter=parameter, num=i)
            for i, p in enumerate(paths, start=first)
        ],
    )


def as_json(ds: DataSource) -> dict[str, Any]:
    """A tiled DataSource as request JSON (its enums are str subclasses)."""
    result: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(ds), default=str))
    return result


def count(c: Any) -> int:
    return len(list(from_uri(c.uri, api_key=c.context.api_key)))


def test_seed_client_new_tiff_sequence(c: Any, readable: Path, key: str) -> None:
    paths = frames(readable / key)
    expected = np.stack([tifffile.imread(p) for p in paths])
    # The documented example verbatim in shape: parameter "data_uri", num starting at 1.
    node = c.new(
        structure_family=StructureFamily.array,
        data_sources=[tiff_source(paths, parameter="data_uri", first=1)],
        metadata={},
        specs=[],
        key=key,
    )
    np.testing.assert_array_equal(node.read(), expected)
    fresh = c[key]
    np.testing.assert_array_equal(fresh.read(), expected)
    np.testing.assert_array_equal(fresh[1:, 2:5, ::3], expected[1:, 2:5, ::3])
    np.testing.assert_array_equal(fresh[2], expected[2])
    np.testing.assert_array_equal(fresh[::-1, 0], expected[::-1, 0])
    np.testing.assert_array_equal(fresh.read_block((1, 0, 0)), expected[1:2])
    assert fresh.data_sources()[0].mimetype == TIFF_SEQ


def _put_data_source(http: httpx.Client, key: str, ds: dict[str, Any], query: str = "") -> Any:
    return http.put(f"/api/v1/data_source/{key}{query}", json={"data_source": ds})


def _subscribe(node: Any) -> tuple[Any, Collector]:
    updates = Collector()
    sub = node.subscribe()
    sub.new_data.add_callback(updates)
    sub.start_in_thread()
    time.sleep(0.3)
    return sub, updates


@pytest.mark.parametrize("patched", [True, False])
def test_put_data_source_array_ref(
    c: Any, http: httpx.Client, readable: Path, key: str, patched: bool
) -> None:
    paths = frames(readable / key)
    expected = np.stack([tifffile.imread(p) for p in paths])
    node = c.new("array", [tiff_source(paths[:2])], key=key)
    np.testing.assert_array_equal(node.read(), expected[:2])
    ds = node.include_data_sources().data_sources()[0]
    full = tiff_source(paths)
    body = as_json(full)
    body["id"] = ds.id
    sub, updates = _subscribe(c[key])
    try:
        # Either patch parameter alone is a 400, before anything changes.
        for query in ("?patch_shape=1,7,13", "?patch_offset=2,0,0"):
            assert _put_data_source(http, key, body, query).status_code == 400
        query = "?patch_shape=1,7,13&patch_offset=2,0,0" if patched else ""
        response = _put_data_source(http, key, body, query)
        assert response.status_code == 200, response.text
        assert response.json() is None
        update = updates.get()
        if patched:
            assert tuple(update.patch.shape) == (1, 7, 13)
            assert tuple(update.patch.offset) == (2, 0, 0)
            np.testing.assert_array_equal(update.data(), expected[2:3])
        else:
            assert update.patch is None
            np.testing.assert_array_equal(update.data(), expected)
        assert tuple(update.shape) == (3, 7, 13)
        assert updates.empty_after(0.5)  # exactly one array-ref
    finally:
        sub.disconnect()
    np.testing.assert_array_equal(c[key].read(), expected)


def test_put_data_source_table_no_event(c: Any, http: httpx.Client, readable: Path, key: str):
    path = readable / f"{key}.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    node = c.register(str(path), key=key)
    ds = as_json(node.include_data_sources().data_sources()[0])
    assert _put_data_source(http, key, ds).status_code == 200
    pd.testing.assert_frame_equal(c[key].read(), pd.DataFrame({"a": [1, 3], "b": [2, 4]}))


def test_register_tiff_series(c: Any, readable: Path, key: str) -> None:
    paths = frames(readable / key, n=2)
    node = c.register(*[str(p) for p in paths], key=key)
    ds = c[key].include_data_sources().data_sources()[0]
    assert ds.mimetype == TIFF_SEQ
    assert [(a.parameter, a.num) for a in ds.assets] == [("data_uris", 0), ("data_uris", 1)]
    np.testing.assert_array_equal(node.read(), np.stack([tifffile.imread(p) for p in paths]))


def test_register_npy_and_reshape(c: Any, readable: Path, key: str) -> None:
    path = readable / f"{key}.npy"
    np.save(path, np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(c.register(str(path), key=key).read(), np.arange(6).reshape(2, 3))
    structure = ArrayStructure(
        data_type=BuiltinDtype.from_numpy_dtype(np.dtype("int64")),
        shape=(3, 2),
        chunks=((3,), (2,)),
    )
    node = c.register(str(path), key=f"{key}r", structure=structure)
    ds = c[f"{key}r"].include_data_sources().data_sources()[0]
    assert ds.properties == {"chunks": [[2], [3]]}
    np.testing.assert_array_equal(node.read(), np.arange(6).reshape(3, 2))
    np.testing.assert_array_equal(c[f"{key}r"][1:], np.arange(6).reshape(3, 2)[1:])


def test_register_csv_with_sep_and_parquet(c: Any, readable: Path, key: str) -> None:
    path = readable / f"{key}.csv"
    path.write_text("x;y\n1;a\n2;b\n")
    node = c.register(str(path), key=key, parameters={"sep": ";"})
    expected = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    pd.testing.assert_frame_equal(node.read(), expected, check_dtype=False)
    df = pd.DataFrame({"p": [1.5, 2.5, 3.5], "q": [1, 2, 3]})
    pq_path = readable / f"{key}.parquet"
    df.to_parquet(pq_path)
    table = c.register(str(pq_path), key=f"{key}p")
    pd.testing.assert_frame_equal(table.read(), df)
    pd.testing.assert_frame_equal(c[f"{key}p"].read(["q"]), df[["q"]])


def test_register_hdf5_dataset_and_zarr(c: Any, readable: Path, key: str) -> None:
    h5 = readable / f"{key}.h5"
    data = np.arange(24, dtype="float32").reshape(4, 6)
    with h5py.File(h5, "w") as f:
        f.create_dataset("g/x", data=data, chunks=(2, 3))
        f["g/x"].attrs["units"] = "mm"
    node = c.register(str(h5), key=key, parameters={"dataset": "g/x"})
    np.testing.assert_array_equal(node.read(), data)
    np.testing.assert_array_equal(c[key][1:3, ::2], data[1:3, ::2])
    zpath = readable / f"{key}.zarr"
    z = zarr.open_array(str(zpath), mode="w", shape=(5, 4), chunks=(2, 4), dtype="int16")
    z[:] = np.arange(20, dtype="int16").reshape(5, 4)
    znode = c.register(str(zpath), key=f"{key}z")
    np.testing.assert_array_equal(znode.read(), np.arange(20).reshape(5, 4))
    np.testing.assert_array_equal(c[f"{key}z"].read_block((2, 0)), [[16, 17, 18, 19]])


def test_shorter_data_is_503_then_422_longer_is_truncated(
    c: Any, http: httpx.Client, readable: Path, key: str
) -> None:
    path = readable / f"{key}.npy"
    np.save(path, np.arange(6).reshape(2, 3))
    ds = {
        "structure_family": "array",
        "mimetype": "application/x-npy",
        "management": "external",
        "parameters": {},
        "properties": {},
        "id": None,
        "assets": [
            {"data_uri": f"file://localhost{path}", "is_directory": False,
             "parameter": "data_uri", "num": None, "id": None}
        ],
    }  # fmt: skip
    dtype = {"endianness": "little", "kind": "i", "itemsize": 8, "dt_units": None}

    def register(name: str, shape: list[int]) -> None:
        structure = {"data_type": dtype, "chunks": [[n] for n in shape], "shape": shape,
                     "dims": None, "resizable": False}  # fmt: skip
        body = {"id": name, "structure_family": "array", "metadata": {}, "specs": [],
                "data_sources": [{**ds, "structure": structure}]}  # fmt: skip
        assert http.post("/api/v1/register/", json=body).status_code == 200

    register(f"{key}long", [4, 3])
    response = http.get(f"/api/v1/array/full/{key}long", headers={"Accept": "application/json"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "only (2, 3) is currently available" in response.json()["detail"]
    old = time.time() - 60
    os.utime(path, (old, old))
    response = http.get(f"/api/v1/array/full/{key}long", headers={"Accept": "application/json"})
    assert response.status_code == 422
    register(f"{key}short", [1, 3])
    np.testing.assert_array_equal(c[f"{key}short"].read(), [[0, 1, 2]])


def test_corrupt_file_is_4xx(c: Any, http: httpx.Client, readable: Path, key: str) -> None:
    paths = frames(readable / key, n=2)
    c.new("array", [tiff_source(paths)], key=key)
    paths[1].write_bytes(paths[1].read_bytes()[:50])  # truncated frame
    response = http.get(f"/api/v1/array/full/{key}", headers={"Accept": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert str(paths[1]) in response.json()["detail"]


def _uri_body(key: str, uri: str, mimetype: str = "application/x-npy") -> dict[str, Any]:
    dtype = {"endianness": "little", "kind": "i", "itemsize": 8, "dt_units": None}
    structure = {"data_type": dtype, "chunks": [[3]], "shape": [3], "dims": None,
                 "resizable": False}  # fmt: skip
    asset = {"data_uri": uri, "is_directory": False, "parameter": "data_uri", "num": None,
             "id": None}  # fmt: skip
    ds = {"structure_family": "array", "structure": structure, "mimetype": mimetype,
          "management": "external", "parameters": {}, "properties": {}, "assets": [asset],
          "id": None}  # fmt: skip
    return {"id": key, "structure_family": "array", "metadata": {}, "specs": [],
            "data_sources": [ds]}  # fmt: skip


def test_refusals_leave_catalog_unchanged(
    c: Any, http: httpx.Client, readable: Path, tmp_path: Path, key: str
) -> None:
    outside = tmp_path / "outside.npy"
    np.save(outside, np.arange(3))
    link = readable / f"{key}-link.npy"
    link.symlink_to(outside)
    before = count(c)
    cases = [
        (f"file://localhost{outside}", 403, str(outside)),
        (f"file://localhost{link}", 403, str(link)),
        (f"file://localhost{readable}/../{outside.parent.name}/outside.npy", 403, "outside"),
        ("http://example.com/x.npy", 403, "http://example.com/x.npy"),
    ]
    for uri, status, named in cases:
        response = http.post("/api/v1/register/", json=_uri_body(key, uri))
        assert response.status_code == status, (uri, response.text)
        assert named in response.json()["detail"]
    inside = readable / f"{key}.npy"
    np.save(inside, np.arange(3))
    response = http.post(
        "/api/v1/register/", json=_uri_body(key, f"file://localhost{inside}", "image/x-nope")
    )
    assert response.status_code == 415
    # POST /metadata refuses assets and points to /register.
    assert (
        http.post("/api/v1/metadata/", json=_uri_body(key, f"file://{inside}")).status_code == 400
    )
    assert count(c) == before
    assert key not in c


def _h5_tree(path: Path) -> dict[str, Any]:
    """An HDF5 file with groups, datasets and attributes; returns the expected arrays."""
    expected = {
        "top": np.linspace(0, 1, 5),
        "g/d": np.arange(24, dtype="int32").reshape(4, 6),
        "g/h/deep": np.eye(3),
    }
    with h5py.File(path, "w") as f:
        f.attrs["sample"] = "quartz"
        f["top"] = expected["top"]
        g = f.create_group("g")
        g.attrs.update({"kind": "group", "n": np.int64(3)})
        g.create_dataset("d", data=expected["g/d"], chunks=(2, 3)).attrs["units"] = "mm"
        g.create_group("h")["deep"] = expected["g/h/deep"]
    return expected


def _zarr_tree(path: Path, zarr_format: int) -> dict[str, Any]:
    expected = {"a": np.arange(10, dtype="f4"), "sub/b": np.arange(12, dtype="i2").reshape(3, 4)}
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    root.attrs["sample"] = "silicon"
    root.create_array("a", shape=(10,), chunks=(4,), dtype="f4")[:] = expected["a"]
    sub = root.create_group("sub")
    sub.attrs["kind"] = "group"
    b = sub.create_array("b", shape=(3, 4), chunks=(2, 2), dtype="i2")
    b[:] = expected["sub/b"]
    b.attrs["units"] = "eV"
    return expected


def _container_source(path: Path, mimetype: str) -> DataSource:
    asset = Asset(
        data_uri=f"file://localhost{path}",
        is_directory=path.is_dir(),
        parameter="data_uris",
        num=0,
    )
    return DataSource(
        management=Management.external,
        mimetype=mimetype,
        structure_family=StructureFamily.container,
        structure=None,
        assets=[asset],
    )


def test_register_hdf5_file_and_zarr_groups_as_containers(
    c: Any, http: httpx.Client, readable: Path, key: str
) -> None:
    # One container node per file; its groups and datasets are read from the file.
    h5 = readable / f"{key}.h5"
    expected = _h5_tree(h5)
    node = c.register(str(h5), key=key)
    assert node.include_data_sources().data_sources()[0].mimetype == "application/x-hdf5"
    node = c[key]
    assert list(node) == ["g", "top"] and len(node) == 2
    assert node.metadata["sample"] == "quartz"
    assert list(node["g"]) == ["d", "h"] and len(node["g"]) == 2
    assert dict(node["g"].metadata) == {"kind": "group", "n": 3}
    for path, value in expected.items():
        np.testing.assert_array_equal(node[path].read(), value)
    d = node["g"]["d"]
    assert d.metadata["units"] == "mm" and d.shape == (4, 6) and d.dtype == np.dtype("int32")
    np.testing.assert_array_equal(d[1:3, ::2], expected["g/d"][1:3, ::2])
    np.testing.assert_array_equal(d[::-1, 4], expected["g/d"][::-1, 4])
    np.testing.assert_array_equal(d.read_block((1, 1)), expected["g/d"][2:4, 3:6])
    assert d.structure().chunks == ((2, 2), (3, 3))
    np.testing.assert_array_equal(node["g", "h", "deep"][1], np.eye(3)[1])

    # Paging, fields and count, as for catalog containers.
    page = http.get(f"/api/v1/search/{key}", params={"page[offset]": 1, "page[limit]": 1})
    assert [item["id"] for item in page.json()["data"]] == ["top"]
    assert page.json()["meta"]["count"] == 2
    keys_only = http.get(f"/api/v1/search/{key}/g", params={"fields": ""}).json()
    assert [item["id"] for item in keys_only["data"]] == ["d", "h"]
    assert keys_only["data"][0]["attributes"]["metadata"] is None
    listed = http.get(f"/api/v1/search/{key}/g", params={"fields": ["metadata", "count"]})
    assert listed.json()["data"][1]["attributes"]["metadata"] == {}
    assert http.get(f"/api/v1/metadata/{key}").json()["data"]["attributes"]["structure"] == {
        "contents": None,
        "count": 2,
    }

    # Missing paths are 404; the nodes are read-only (405).
    for missing in ("nope", "g/nope", "g/d/x", "top/x"):
        assert http.get(f"/api/v1/metadata/{key}/{missing}").status_code == 404, missing
    assert http.get(f"/api/v1/array/full/{key}/g/nope").status_code == 404
    with pytest.raises(KeyError):
        node["g"]["nope"]
    put = http.put(
        f"/api/v1/array/full/{key}/g/d",
        content=expected["g/d"].tobytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 405
    assert http.delete(f"/api/v1/metadata/{key}/g").status_code == 405
    assert http.patch(f"/api/v1/metadata/{key}/g", json={"metadata": {"x": 1}}).status_code == 405

    # zarr v2 and v3 groups, registered with c.new (a container data source) and c.register.
    for fmt in (2, 3):
        zpath = readable / f"{key}-v{fmt}.zarr"
        zexpected = _zarr_tree(zpath, fmt)
        zkey = f"{key}z{fmt}"
        if fmt == 2:
            c.new("container", [_container_source(zpath, "application/x-zarr")], key=zkey)
        else:
            c.register(str(zpath), key=zkey)
        group = c[zkey]
        assert list(group) == ["a", "sub"] and len(group) == 2
        assert group["sub"].metadata["kind"] == "group"
        assert group["sub"]["b"].metadata["units"] == "eV"
        for path, value in zexpected.items():
            np.testing.assert_array_equal(group[path].read(), value)
        np.testing.assert_array_equal(group["sub/b"][1:, 1:3], zexpected["sub/b"][1:, 1:3])
        np.testing.assert_array_equal(group["a"].read_block((2,)), zexpected["a"][8:])
        assert http.get(f"/api/v1/metadata/{zkey}/sub/nope").status_code == 404


def test_file_tree_rechecks_the_allowlist(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from ferrotile.catalog.models import Asset as CatalogAsset
    from ferrotile.catalog.models import DataSource as CatalogDataSource
    from ferrotile.catalog.models import Node
    from ferrotile.storage.external import NotReadable
    from ferrotile.storage.external.tree import FileTrees

    path = tmp_path / "f.h5"
    _h5_tree(path)
    asset = CatalogAsset(None, f"file://localhost{path}", False, "data_uris", 0)
    ds = CatalogDataSource(
        None, "container", None, "application/x-hdf5", {}, {}, "external", (asset,)
    )
    now = datetime.now(UTC)
    node = Node(7, ("f",), "container", {}, [], [], (ds,), now, now)
    trees = FileTrees()
    child = trees.resolve(node, ("g", "d"), [tmp_path])
    assert child is not None and child.id < 0 and child.path == ("f", "g", "d")
    assert child.data_sources[0].parameters == {"dataset": "g/d"}
    assert [n.key for n in trees.children(node, [tmp_path])] == ["g", "top"]
    assert trees.resolve(node, ("g", "nope"), [tmp_path]) is None
    with pytest.raises(NotReadable):  # checked on every call, cached or not
        trees.resolve(node, ("g", "d"), [tmp_path / "elsewhere"])


# --- External data sources created with POST /metadata (Bluesky's TiledWriter) --------------

NPY_SEQ = "multipart/related;type=application/x-npy"
F8 = {"endianness": "little", "kind": "f", "itemsize": 8, "dt_units": None}


def _npy_series_source(paths: list[Path], n: int) -> dict[str, Any]:
    """What TiledWriter sends for ophyd.sim's ``img``: n (10, 10) frames, one .npy each."""
    assets = [
        {"data_uri": f"file://localhost{p}", "is_directory": False, "parameter": "data_uris",
         "num": i}
        for i, p in enumerate(paths[:n])
    ]  # fmt: skip
    structure = {"data_type": F8, "chunks": [[1] * n if n else [], [10], [10]],
                 "shape": [n, 10, 10], "dims": None, "resizable": False}  # fmt: skip
    return {"structure_family": "array", "mimetype": NPY_SEQ, "structure": structure,
            "parameters": {}, "properties": {}, "assets": assets,
            "management": "external"}  # fmt: skip


def test_post_metadata_external_then_put_data_source(
    c: Any, http: httpx.Client, readable: Path, tmp_path: Path, key: str
) -> None:
    """The node is created before its files exist; the files come with PUT /data_source,
    which checks them against the readable directories (nothing changes when refused)."""
    paths = [readable / f"{key}_{i}.npy" for i in range(3)]
    c.create_container(key)
    collector = Collector()
    sub = c[key].subscribe()
    sub.child_created.add_callback(collector)
    sub.start_in_thread(0)
    try:
        body = {"id": "img", "structure_family": "array", "metadata": {}, "specs": [],
                "data_sources": [_npy_series_source(paths, 0)]}  # fmt: skip
        response = http.post(f"/api/v1/metadata/{key}", json=body)
        assert response.status_code == 200, response.text
        (created,) = response.json()["data_sources"]
        assert created["management"] == "external" and created["assets"] == []
        event = collector.get()  # the stock client parses the event
        assert event.key == "img" and event.data_sources[0].assets == []
    finally:
        sub.disconnect()
    read = http.get(f"/api/v1/array/full/{key}/img")
    assert read.status_code == 422 and "no assets" in read.json()["detail"]
    for i, path in enumerate(paths):
        np.save(path, np.full((10, 10), float(i)))
    update = _npy_series_source(paths, 3) | {"id": created["id"]}
    outside = tmp_path / "outside.npy"
    np.save(outside, np.zeros((10, 10)))
    refused = json.loads(json.dumps(update))
    refused["assets"][1]["data_uri"] = f"file://localhost{outside}"
    response = _put_data_source(http, f"{key}/img", refused)
    assert response.status_code == 403 and str(outside) in response.json()["detail"]
    assert c[key]["img"].shape == (0, 10, 10)  # unchanged
    response = _put_data_source(
        http, f"{key}/img", update, "?patch_shape=3,10,10&patch_offset=0,0,0"
    )
    assert response.status_code == 200, response.text
    node = c[key]["img"]
    np.testing.assert_array_equal(
        node.read(), np.stack([np.full((10, 10), float(i)) for i in range(3)])
    )
    assert [a.num for a in node.data_sources()[0].assets] == [0, 1, 2]


def test_post_metadata_external_refusals(c: Any, http: httpx.Client, key: str) -> None:
    source = _npy_series_source([], 0)
    cases = [
        ({**source, "mimetype": "application/x-nope"}, 415),
        ({**source, "management": "immutable"}, 422),
        ({**source, "structure": {"shape": "x"}}, 422),
    ]
    for ds, status in cases:
        body = {"id": key, "structure_family": "array", "metadata": {}, "data_sources": [ds]}
        response = http.post("/api/v1/metadata/", json=body)
        assert response.status_code == status, (ds, response.text)
    assert key not in c


def test_registered_array_reshaped_when_element_counts_match(
    c: Any, http: httpx.Client, readable: Path, key: str
) -> None:
    """Tiled's force_reshape: an HDF5 dataset of (3, 5, 7) registered as (3, 1, 5, 7)."""
    path = readable / f"{key}.h5"
    data = np.arange(3 * 5 * 7, dtype="<f8").reshape(3, 5, 7)
    with h5py.File(path, "w") as f:
        f["entry/data"] = data
    expected = data.reshape(3, 1, 5, 7)

    def register(name: str, shape: list[int], chunks: list[list[int]]) -> Any:
        structure = {"data_type": F8, "chunks": chunks, "shape": shape, "dims": None,
                     "resizable": False}  # fmt: skip
        ds = {"structure_family": "array", "mimetype": "application/x-hdf5",
              "structure": structure, "parameters": {"dataset": "entry/data"},
              "properties": {}, "management": "external",
              "assets": [{"data_uri": f"file://localhost{path}", "is_directory": False,
                          "parameter": "data_uris", "num": 0}]}  # fmt: skip
        body = {"id": name, "structure_family": "array", "metadata": {}, "data_sources": [ds]}
        return http.post("/api/v1/register/", json=body)

    assert register(key, [3, 1, 5, 7], [[1, 1, 1], [1], [5], [7]]).status_code == 200
    node = c[key]
    np.testing.assert_array_equal(node.read(), expected)
    np.testing.assert_array_equal(node[1], expected[1])
    np.testing.assert_array_equal(node[::-1, 0, 1:4, ::3], expected[::-1, 0, 1:4, ::3])
    np.testing.assert_array_equal(node.read_block((2, 0, 0, 0)), expected[2:3])
    # Another leading axis: the whole array is reshaped.
    assert register(f"{key}b", [7, 15], [[7], [15]]).status_code == 200
    np.testing.assert_array_equal(c[f"{key}b"][2:5, ::4], data.reshape(7, 15)[2:5, ::4])
    # A different element count is still "Can not reshape" (422).
    assert register(f"{key}c", [3, 2, 5, 7], [[3], [2], [5], [7]]).status_code == 200
    response = http.get(f"/api/v1/array/full/{key}c")
    assert response.status_code == 422 and "Can not reshape" in response.json()["detail"]


def test_child_created_lists_registered_assets(
    c: Any, http: httpx.Client, readable: Path, key: str
) -> None:
    """As Tiled: a registered series' event carries its assets. A single-file asset (num null)
    is left out: tiled 0.2.20's stream model cannot parse it and would drop the event."""
    c.create_container(key)
    collector = Collector()
    sub = c[key].subscribe()
    sub.child_created.add_callback(collector)
    sub.start_in_thread(0)
    try:
        paths = frames(readable / key)
        c[key].new("array", [tiff_source(paths)], key="series")
        single = readable / f"{key}.npy"
        np.save(single, np.arange(3))
        assert (
            http.post(
                f"/api/v1/register/{key}", json=_uri_body("single", f"file://localhost{single}")
            ).status_code
            == 200
        )
        series, one = collector.take(2)
    finally:
        sub.disconnect()
    assert series.key == "series"
    assert [(a.data_uri, a.parameter, a.num) for a in series.data_sources[0].assets] == [
        (f"file://localhost{p}", "data_uris", i) for i, p in enumerate(paths)
    ]
    assert one.key == "single" and one.data_sources[0].assets == []
    (stored,) = c[key]["single"].include_data_sources().data_sources()
    assert stored.assets[0].data_uri == f"file://localhost{single}"


def test_hdf5_dataset_in_several_files_is_joined_along_the_first_axis(
    c: Any, http: httpx.Client, readable: Path, key: str
) -> None:
    """As Tiled's HDF5 adapter with several data_uris (e.g. Bluesky's HDF5 detectors with one
    file per StreamResource): the files' datasets are concatenated along axis 0."""
    parts = [np.arange(k * 4, dtype="<i4").reshape(k, 4) + 100 * k for k in (2, 3, 1)]
    paths = []
    for i, part in enumerate(parts):
        paths.append(readable / f"{key}_{i}.h5")
        with h5py.File(paths[-1], "w") as f:
            f["d"] = part
    expected = np.concatenate(parts)

    def register(name: str, files: list[Path], shape: list[int]) -> Any:
        dtype = {"endianness": "little", "kind": "i", "itemsize": 4, "dt_units": None}
        structure = {"data_type": dtype, "chunks": [[shape[0]], [4]], "shape": shape,
                     "dims": None, "resizable": False}  # fmt: skip
        assets = [{"data_uri": f"file://localhost{p}", "is_directory": False,
                   "parameter": "data_uris", "num": i} for i, p in enumerate(files)]  # fmt: skip
        ds = {"structure_family": "array", "mimetype": "application/x-hdf5",
              "structure": structure, "parameters": {"dataset": "d"}, "assets": assets,
              "management": "external"}  # fmt: skip
        body = {"id": name, "structure_family": "array", "metadata": {}, "data_sources": [ds]}
        return http.post("/api/v1/register/", json=body)

    assert register(key, paths, [6, 4]).status_code == 200
    node = c[key]
    np.testing.assert_array_equal(node.read(), expected)
    for index in (0, 1, 2, 4, 5):
        np.testing.assert_array_equal(node[index], expected[index])
    np.testing.assert_array_equal(node[1:6:2, ::-1], expected[1:6:2, ::-1])
    np.testing.assert_array_equal(node[3:3], expected[3:3])
    with h5py.File(readable / f"{key}_odd.h5", "w") as f:
        f["d"] = np.zeros((2, 5), dtype="<i4")
    assert register(f"{key}x", [paths[0], readable / f"{key}_odd.h5"], [4, 4]).status_code == 200
    response = http.get(f"/api/v1/array/full/{key}x")
    assert response.status_code == 422 and "cannot be joined" in response.json()["detail"]
