"""Sparse (COO) arrays with the stock tiled client: write_sparse, read, slicing, blocks."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
import sparse
from tiled.client import from_uri
from tiled.structures.core import StructureFamily
from tiled.structures.data_source import DataSource
from tiled.structures.sparse import COOStructure

from tests.conftest import RunningServer

ARROW = "application/vnd.apache.arrow.file"


def _http(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/api/v1",
        headers={"Authorization": f"Apikey {server.api_key}"},
        timeout=10,
    )


def _arrow(columns: dict[str, Any]) -> bytes:
    table = pa.table(columns)
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _assert_same(actual: sparse.COO, expected: sparse.COO) -> None:
    assert isinstance(actual, sparse.COO)
    assert actual.shape == expected.shape
    assert actual.fill_value == expected.fill_value
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual.todense(), expected.todense())


@pytest.mark.parametrize(
    ("coords", "data", "shape"),
    [
        (np.array([[2, 5, 9]]), np.array([1.3, 7.5, -2.0]), (10,)),
        (np.array([[0, 2, 5], [1, 3, 4]]), np.array([1, 2, 3], dtype=np.int32), (6, 5)),
        (
            np.array([[0, 1, 3, 3], [0, 2, 1, 1], [4, 0, 2, 3]]),
            np.array([0.5, 1.5, 2.5, 3.5], dtype=np.float32),
            (4, 3, 5),
        ),
    ],
    ids=["1d", "2d", "3d"],
)
def test_write_sparse_round_trip(
    client: Any, key: str, coords: np.ndarray, data: np.ndarray, shape: tuple[int, ...]
) -> None:
    expected = sparse.COO(coords=coords, data=data, shape=shape)
    node = client.write_sparse(coords=coords, data=data, shape=shape, key=key, metadata={"a": 1})
    assert node.shape == shape
    _assert_same(node.read(), expected)
    # A fresh client sees the same node (structure and data come from the server).
    fresh = client[key]
    assert type(fresh).__name__ == "SparseClient"
    assert fresh.structure().data_type.to_numpy_dtype() == data.dtype
    assert fresh.metadata["a"] == 1
    _assert_same(fresh.read(), expected)
    np.testing.assert_array_equal(fresh.todense(), expected.todense())
    # Single-chunk arrays: block (0, ..., 0) is the whole array.
    _assert_same(fresh.read_block((0,) * len(shape)), expected)


def test_slicing(client: Any, key: str) -> None:
    coords = np.array([[0, 2, 5, 5], [1, 3, 4, 0]])
    data = np.array([1.5, 2.5, 3.5, 4.5])
    expected = sparse.COO(coords=coords, data=data, shape=(6, 5))
    node = client.write_sparse(coords=coords, data=data, shape=(6, 5), key=key)
    # Not tested, as the stock client fails on its own: an all-integer index (0-d result) and
    # empty slices like 0:0 (sent as "slice=:" because 0 is falsy).
    for index in [np.s_[1:4, 3], np.s_[5], np.s_[:3], np.s_[-2:, 1:], np.s_[:, -1], np.s_[2:3]]:
        _assert_same(node[index], expected[index])


def test_empty_and_unwritten(client: Any, key: str) -> None:
    node = client.write_sparse(
        coords=np.empty((2, 0), dtype=np.int64), data=np.empty(0), shape=(3, 4), key=key
    )
    assert node.read().nnz == 0
    np.testing.assert_array_equal(node.todense(), np.zeros((3, 4)))
    # A node created without data reads as all fill value.
    structure = COOStructure(shape=(4,), chunks=((4,),))
    blank = client.new(
        StructureFamily.sparse,
        [DataSource(structure=structure, structure_family=StructureFamily.sparse)],
        key=f"{key}-blank",
    )
    assert blank.read().nnz == 0
    assert blank.read().shape == (4,)


def test_chunked_blocks(client: Any, key: str) -> None:
    """Multi-block arrays via the lower-level API from Tiled's write_sparse docstring."""
    structure = COOStructure(shape=(10,), chunks=((5, 5),))
    node = client.new(
        StructureFamily.sparse,
        [DataSource(structure=structure, structure_family=StructureFamily.sparse)],
        key=key,
    )
    node.write_block(coords=np.array([[2, 4]]), data=np.array([3.1, 2.8]), block=(0,))
    node.write_block(coords=np.array([[0, 1]]), data=np.array([6.7, 1.2]), block=(1,))
    dense = np.zeros(10)
    dense[[2, 4, 5, 6]] = [3.1, 2.8, 6.7, 1.2]
    np.testing.assert_array_equal(node.read().todense(), dense)
    # The stock client labels a block with the whole array's shape; coordinates are relative
    # to the block's origin (as Tiled serves them).
    np.testing.assert_array_equal(node.read_block((1,)).todense()[:5], dense[5:])
    np.testing.assert_array_equal(node.read_block((0,), slice=np.s_[1:3]).todense(), dense[1:3])
    np.testing.assert_array_equal(node[3:7].todense(), dense[3:7])
    # A full write of a chunked array is split across its blocks.
    node.write(np.array([[0, 9]]), np.array([1.0, 2.0]))
    expected = np.zeros(10)
    expected[[0, 9]] = [1.0, 2.0]
    np.testing.assert_array_equal(client[key].read().todense(), expected)
    np.testing.assert_array_equal(node.read_block((1,)).todense()[:5], expected[5:])


def test_links_and_data_source(client: Any, key: str, server: RunningServer) -> None:
    client.write_sparse(coords=np.array([[1], [2]]), data=np.array([1.0]), shape=(3, 4), key=key)
    with _http(server) as http:
        item = http.get(f"/metadata/{key}", params={"include_data_sources": "true"}).json()
    links = item["data"]["links"]
    assert links["full"].endswith(f"/api/v1/array/full/{key}")
    assert links["block"].endswith(f"/api/v1/array/block/{key}?block={{0}},{{1}}")
    attributes = item["data"]["attributes"]
    assert attributes["structure_family"] == "sparse"
    assert attributes["structure"]["layout"] == "COO"
    assert attributes["structure"]["coord_data_type"]["kind"] == "i"
    (ds,) = attributes["data_sources"]
    assert ds["mimetype"] == "application/x-parquet;structure=sparse"
    assert ds["management"] == "writable"


def test_formats(client: Any, key: str, server: RunningServer) -> None:
    client.write_sparse(coords=np.array([[1, 2]]), data=np.array([5, 6]), shape=(4,), key=key)
    with _http(server) as http:
        as_json = http.get(f"/array/full/{key}", headers={"Accept": "application/json"})
        assert as_json.status_code == 200
        assert as_json.json() == {"dim0": [1, 2], "data": [5, 6]}
        default = http.get(f"/array/full/{key}")
        assert default.headers["content-type"] == ARROW
        octet = http.get(f"/array/full/{key}", headers={"Accept": "application/octet-stream"})
        assert octet.status_code == 406
        parquet = http.get(f"/array/full/{key}", params={"format": "parquet"})
        assert parquet.status_code == 200
        about = http.get("/").json()
    assert ARROW in about["formats"]["sparse"]


def test_bad_bodies_change_nothing(client: Any, key: str, server: RunningServer) -> None:
    coords, data = np.array([[1, 3]]), np.array([1.0, 2.0])
    client.write_sparse(coords=coords, data=data, shape=(5,), key=key)
    bad = [
        ({"Content-Type": ARROW}, b"not arrow", 400),
        ({"Content-Type": "application/octet-stream"}, data.tobytes(), 415),
        ({"Content-Type": ARROW}, _arrow({"dim0": [0], "value": [1.0]}), 422),  # no data column
        ({"Content-Type": ARROW}, _arrow({"dim0": [5], "data": [1.0]}), 422),  # out of bounds
        ({"Content-Type": ARROW}, _arrow({"dim0": [-1], "data": [1.0]}), 422),
        ({"Content-Type": ARROW}, _arrow({"dim0": [0.5], "data": [1.0]}), 422),  # float coords
        ({"Content-Type": ARROW}, _arrow({"dim0": [0], "data": ["x"]}), 422),  # wrong dtype
    ]
    with _http(server) as http:
        for headers, body, status in bad:
            response = http.put(f"/array/full/{key}", content=body, headers=headers)
            assert response.status_code == status, response.text
            assert "detail" in response.json()
        response = http.put(
            f"/array/block/{key}",
            params={"block": "1"},
            content=_arrow({"dim0": [0], "data": [1.0]}),
            headers={"Content-Type": ARROW},
        )
        assert response.status_code == 422
    _assert_same(client[key].read(), sparse.COO(coords=coords, data=data, shape=(5,)))


def test_bad_structures(client: Any, key: str) -> None:
    from tiled.client.utils import ClientError

    structure = COOStructure(shape=(4,), chunks=((3,),))  # chunks do not add up
    with pytest.raises(ClientError, match="422"):
        client.new(
            StructureFamily.sparse,
            [DataSource(structure=structure, structure_family=StructureFamily.sparse)],
            key=key,
        )
    assert key not in client


def test_delete_removes_node(client: Any, key: str, server: RunningServer) -> None:
    client.write_sparse(coords=np.array([[0]]), data=np.array([1.0]), shape=(2,), key=key)
    fresh = from_uri(server.url, api_key=server.api_key)
    fresh[key].delete(external_only=False)
    assert key not in fresh
