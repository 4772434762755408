"""Awkward arrays with the stock tiled client: write_awkward, read, slicing, bad uploads."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import awkward as ak
import httpx
import numpy as np
import pytest

from tests.conftest import RunningServer

ZIP = "application/zip"

ARRAYS = {
    "records": [
        {"x": 1.5, "ys": [1, 2, 3], "name": "a", "inner": {"z": [[1], [], [2, 3]]}},
        {"x": 2.5, "ys": [], "name": "bb", "inner": {"z": []}},
        {"x": None, "ys": [4], "name": None, "inner": {"z": [[4, 5, 6]]}},
    ],
    "jagged": [[1.0, 2.0], [], [3.0], [4.0, 5.0, 6.0]],
    "union": [1, "two", [3, 4], {"k": 5}, None],
    "strings": ["alpha", "", "γάμμα"],
    "empty": [],
}


def _http(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/api/v1",
        headers={"Authorization": f"Apikey {server.api_key}"},
        timeout=10,
    )


def _zip(buffers: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in buffers.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("name", list(ARRAYS))
def test_write_awkward_round_trip(client: Any, key: str, name: str) -> None:
    array = ak.Array(ARRAYS[name])
    node = client.write_awkward(array, key=key, metadata={"kind": name})
    assert ak.to_list(node.read()) == ak.to_list(array)
    fresh = client[key]
    assert type(fresh).__name__ == "AwkwardClient"
    assert fresh.metadata["kind"] == name
    result = fresh.read()
    assert ak.to_list(result) == ak.to_list(array)
    assert str(result.type) == str(array.type)


def test_slicing(client: Any, key: str) -> None:
    array = ak.Array(ARRAYS["records"])
    node = client.write_awkward(array, key=key)
    fresh = client[key]
    for index in [1, np.s_[1:], np.s_[::2], "ys", ("inner", "z"), np.s_[-1, "ys"]]:
        expected = array[index]
        result = fresh[index]
        if isinstance(expected, ak.Array | ak.Record):
            assert ak.to_list(result) == ak.to_list(expected)
        else:
            assert result == expected
    assert ak.to_list(node["x"]) == [1.5, 2.5, None]


def test_partial_buffers(client: Any, key: str, server: RunningServer) -> None:
    """A field selection fetches only that field's buffers (POST and GET)."""
    client.write_awkward(ak.Array(ARRAYS["records"]), key=key)
    form = client[key].structure().form
    ys = next(c for f, c in zip(form["fields"], form["contents"], strict=True) if f == "ys")
    keys = [ys["form_key"], ys["content"]["form_key"]]
    with _http(server) as http:
        posted = http.post(f"/awkward/buffers/{key}", json=keys, headers={"Accept": ZIP})
        got = http.get(f"/awkward/buffers/{key}", params=[("form_key", k) for k in keys])
        full = http.get(f"/awkward/full/{key}")
    for response in (posted, got):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == ZIP
        names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
        assert sorted(names) == sorted([f"{keys[0]}-offsets", f"{keys[1]}-data"])
    assert full.status_code == 200
    assert len(zipfile.ZipFile(io.BytesIO(full.content)).namelist()) > 2


def test_links_and_data_source(client: Any, key: str, server: RunningServer) -> None:
    client.write_awkward(ak.Array([[1, 2], [3]]), key=key)
    with _http(server) as http:
        item = http.get(f"/metadata/{key}", params={"include_data_sources": "true"}).json()
        about = http.get("/").json()
    links = item["data"]["links"]
    assert set(links) == {"self", "buffers", "full"}
    assert links["buffers"].endswith(f"/api/v1/awkward/buffers/{key}")
    assert links["full"].endswith(f"/api/v1/awkward/full/{key}")
    attributes = item["data"]["attributes"]
    assert attributes["structure"]["length"] == 2
    (ds,) = attributes["data_sources"]
    assert ds["mimetype"] == "application/x-awkward-buffers"
    assert ZIP in about["formats"]["awkward"]


def test_bad_uploads_change_nothing(client: Any, key: str, server: RunningServer) -> None:
    array = ak.Array([[1, 2, 3], [], [4]])
    client.write_awkward(array, key=key)
    _, _, good = ak.to_buffers(ak.to_packed(array))
    offsets_key = next(k for k in good if k.endswith("-offsets"))
    data_key = next(k for k in good if k.endswith("-data"))
    wrong_offsets = np.array([0, 2, 9, 10], dtype=np.int64).tobytes()  # past the data
    bad = [
        (ZIP, b"not a zip", 400),
        ("application/octet-stream", _zip(dict(good)), 415),
        (ZIP, _zip({offsets_key: bytes(good[offsets_key])}), 422),  # data missing
        (ZIP, _zip({**good, "node9-data": b"x"}), 422),  # not in the form
        (ZIP, _zip({**good, offsets_key: wrong_offsets}), 422),
        (ZIP, _zip({**good, data_key: b"\x00" * 12}), 422),  # not whole int64s
        (ZIP, _zip({**good, offsets_key: np.array([3, 1, 2, 3]).tobytes()}), 422),
    ]
    with _http(server) as http:
        for content_type, body, status in bad:
            response = http.put(
                f"/awkward/full/{key}", content=body, headers={"Content-Type": content_type}
            )
            assert response.status_code == status, response.text
            assert "detail" in response.json()
    assert ak.to_list(client[key].read()) == ak.to_list(array)


def test_bad_structures(client: Any, key: str, server: RunningServer) -> None:
    base = {"ancestors": [""], "metadata": {}, "structure_family": "awkward", "specs": []}
    ds = {
        "structure_family": "awkward",
        "id": None,
        "mimetype": None,
        "parameters": {},
        "properties": {},
        "assets": [],
        "management": "writable",
    }
    bad = [
        (
            {"length": -1, "form": {"class": "NumpyArray", "primitive": "int64", "form_key": "a"}},
            422,
        ),
        ({"length": 1, "form": {"class": "Nope", "form_key": "a"}}, 422),
        ({"length": 1, "form": {"class": "NumpyArray", "primitive": "int64"}}, 422),
        ({"length": 1}, 422),
    ]
    with _http(server) as http:
        for structure, status in bad:
            body = {**base, "id": key, "data_sources": [{**ds, "structure": structure}]}
            response = http.post("/metadata/", json=body)
            assert response.status_code == status, response.text
        body = {
            **base,
            "id": key,
            "data_sources": [{**ds, "mimetype": "application/x-hdf5", "structure": {}}],
        }
        assert http.post("/metadata/", json=body).status_code == 415
    assert key not in client


def test_unwritten_node_and_wrong_family(client: Any, key: str, server: RunningServer) -> None:
    client.write_array(np.arange(3), key=key)
    with _http(server) as http:
        assert http.get(f"/awkward/full/{key}").status_code == 404
        assert http.post(f"/awkward/buffers/{key}", json=["node0"]).status_code == 404
        assert http.post(f"/awkward/buffers/{key}-nope", json=[]).status_code == 404
