"""``GET``/``POST /api/v1/container/full/{path}``: a container's tree as Tiled's JSON export."""

from __future__ import annotations

import json
from typing import Any

import awkward as ak
import httpx
import numpy as np
import pandas as pd
import pytest
from tiled.client import from_uri

from tests.conftest import RunningServer

LEAF: dict[str, Any] = {"contents": {}, "metadata": {}}


@pytest.fixture
def tree(server: RunningServer, key: str) -> str:
    client = from_uri(server.url, api_key=server.api_key)
    top = client.create_container(key, metadata={"a": 1, "nested": {"b": [1, 2]}})
    top.write_array(np.arange(6).reshape(2, 3), key="arr", metadata={"m": "arr"})
    top.create_container("empty", metadata={"e": 1})
    sub = top.create_container("sub")
    sub.write_table(pd.DataFrame({"p": [1, 2], "q": [3.0, 4.0]}), key="tbl", metadata={"t": 1})
    sub.write_sparse(coords=np.array([[0, 2]]), data=np.array([1.0, 2.0]), shape=(3,), key="sp")
    sub.write_awkward(ak.Array([[1, 2], [3]]), key="awk")
    return key


EXPECTED = {
    "contents": {
        "arr": {"contents": {}, "metadata": {"m": "arr"}},
        "empty": {"contents": {}, "metadata": {"e": 1}},
        "sub": {
            "contents": {
                "tbl": {"contents": {"p": LEAF, "q": LEAF}, "metadata": {"t": 1}},
                "sp": LEAF,
                "awk": LEAF,
            },
            "metadata": {},
        },
    },
    "metadata": {"a": 1, "nested": {"b": [1, 2]}},
}


def test_json_export_of_a_tree(http: httpx.Client, tree: str) -> None:
    for query in ("?format=json", "?format=application/json", ""):
        response = http.get(f"/container/full/{tree}{query}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json() == EXPECTED
    # Keys keep the catalog's order (creation), as Tiled lists them.
    assert list(response.json()["contents"]) == ["arr", "empty", "sub"]
    inner = http.get(f"/container/full/{tree}/sub", headers={"Accept": "application/json"})
    assert inner.json() == EXPECTED["contents"]["sub"]


def test_fields_select_children(http: httpx.Client, tree: str) -> None:
    response = http.get(f"/container/full/{tree}?format=json&field=arr&field=sub")
    assert response.json()["contents"].keys() == {"arr", "sub"}
    response = http.post(f"/container/full/{tree}?format=json", json=["arr"])
    assert response.json() == {"contents": {"arr": EXPECTED["contents"]["arr"]},
                               "metadata": EXPECTED["metadata"]}  # fmt: skip
    assert http.get(f"/container/full/{tree}?field=nope").json()["contents"] == {}
    assert http.post(f"/container/full/{tree}", content=b"{").status_code == 422
    assert http.post(f"/container/full/{tree}", json={"arr": 1}).status_code == 422


def test_filename_and_the_stock_client_export(
    http: httpx.Client, server: RunningServer, tree: str, tmp_path: Any
) -> None:
    response = http.get(f"/container/full/{tree}?format=json&filename=tree.json")
    assert response.headers["content-disposition"] == 'attachment; filename="tree.json"'
    client = from_uri(server.url, api_key=server.api_key)
    target = tmp_path / "out.json"
    client[tree].export(str(target), format="application/json")
    assert json.loads(target.read_text()) == EXPECTED


def test_refusals(http: httpx.Client, server: RunningServer, tree: str) -> None:
    response = http.get(f"/container/full/{tree}/arr")
    assert response.status_code == 404 and "structure family array" in response.json()["detail"]
    assert http.get(f"/container/full/{tree}/nope").status_code == 404
    response = http.get(f"/container/full/{tree}?format=text/csv")
    assert response.status_code == 406 and "application/json" in response.json()["detail"]
    anonymous = httpx.get(f"{server.url}/api/v1/container/full/{tree}")
    assert anonymous.status_code == 401
