"""The live view's routes as plain HTTP: the page and its files need no key, the listing's data
does; the landing page links to it."""

from __future__ import annotations

import httpx
import numpy as np

from ferrotile.api.live import ASSETS, MAX_CHILDREN
from tests.api.conftest import array_body
from tests.api.test_openapi import conforms
from tests.conftest import RunningServer


def test_page_and_assets_need_no_key(live_server: RunningServer) -> None:
    with httpx.Client(base_url=live_server.url, timeout=10) as anonymous:
        for path in ("/live/", "/live/a/b", "/live/static/other"):
            page = anonymous.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert '<script type="module" src="/live/static/live.js">' in page.text
        conforms(page, "/live/{path}")
        for name, media_type in ASSETS.items():
            served = anonymous.get(f"/live/static/{name}")
            assert served.status_code == 200, name
            assert served.headers["content-type"] == media_type
            assert len(served.content) > 100
            conforms(served, "/live/static/{name}")
        redirect = anonymous.get("/live")
        assert (redirect.status_code, redirect.headers["location"]) == (
            307,
            f"{live_server.url}/live/",
        )
        landing = anonymous.get("/")
        assert f'href="{live_server.url}/live/"' in landing.text


def test_streams_lists_children_with_sequences(
    live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    with httpx.Client(base_url=live_server.url, timeout=10) as anonymous:
        refused = anonymous.get("/live/api/streams", params={"path": ""})
        assert refused.status_code == 401
        conforms(refused, "/live/api/streams")
        wrong = anonymous.get(
            "/live/api/streams", headers={"Authorization": "Apikey nope"}, params={"path": ""}
        )
        assert (wrong.status_code, wrong.json()["detail"]) == (401, "Invalid API key")
    assert http.post("/metadata/", json={"id": key, "structure_family": "container",
                                         "metadata": {}, "specs": [], "data_sources": []}
                     ).status_code == 200  # fmt: skip
    frame = np.zeros((3, 4), dtype="<u2")
    assert http.post(f"/metadata/{key}", json=array_body("img", frame)).status_code == 200
    for _ in range(3):
        put = http.put(f"/array/full/{key}/img", content=frame.tobytes(),
                       headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert put.status_code == 200
    response = http.get(f"{live_server.url}/live/api/streams", params={"path": key})
    conforms(response, "/live/api/streams")
    answer = response.json()
    assert answer["node"]["structure_family"] == "container"
    assert answer["node"]["sequence"] == 1  # container-child-created
    assert answer["count"] == 1
    (child,) = answer["children"]
    assert child == {
        "key": "img", "path": [key, "img"], "structure_family": "array", "sequence": 3,
        "shape": [3, 4], "chunks": [[3], [4]], "dtype": "<u2",
    }  # fmt: skip
    assert isinstance(answer["time"], float) and isinstance(answer["utc_offset"], int)
    missing = http.get(f"{live_server.url}/live/api/streams", params={"path": f"{key}/nope"})
    assert missing.status_code == 404


def test_streams_lists_the_image_planes_blocks_only(
    live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    """An array appended frame by frame has a block per frame along its first axis: the listing
    (polled every second) carries the blocks of the last two axes, which the page needs."""
    frame = np.zeros((1, 3, 4), dtype="<u2")
    assert (
        http.post("/metadata/", json=array_body(key, frame, [[1], [2, 1], [4]])).status_code == 200
    )
    for i in range(1, 6):
        params = {"offset": str(i), "shape": "1,3,4", "extend": "true"}
        patched = http.patch(f"/array/full/{key}", params=params, content=frame.tobytes(),
                             headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert patched.status_code == 200, patched.text
    assert patched.json()["chunks"] == [[1] * 6, [2, 1], [4]]  # Tiled's structure: every block
    line = np.zeros(7, dtype="<f8")
    assert http.post("/metadata/", json=array_body(f"{key}-line", line)).status_code == 200
    for path, shape, chunks in [(key, [6, 3, 4], [[2, 1], [4]]), (f"{key}-line", [7], None)]:
        response = http.get(f"{live_server.url}/live/api/streams", params={"path": path})
        conforms(response, "/live/api/streams")
        node = response.json()["node"]
        assert (node["shape"], node.get("chunks")) == (shape, chunks)


def test_streams_shows_the_newest_children(
    live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    assert http.post("/metadata/", json={"id": key, "structure_family": "container",
                                         "metadata": {}, "specs": [], "data_sources": []}
                     ).status_code == 200  # fmt: skip
    for i in range(MAX_CHILDREN + 2):
        body = {"id": f"c{i:03}", "structure_family": "container", "metadata": {},
                "specs": [], "data_sources": []}  # fmt: skip
        assert http.post(f"/metadata/{key}", json=body).status_code == 200
    answer = http.get(f"{live_server.url}/live/api/streams", params={"path": key}).json()
    assert answer["count"] == MAX_CHILDREN + 2
    keys = [child["key"] for child in answer["children"]]
    assert keys == [f"c{i:03}" for i in range(2, MAX_CHILDREN + 2)]
