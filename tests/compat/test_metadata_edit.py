"""Metadata edits and revisions with the stock tiled client: update/replace, revisions, events."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from tiled.client import from_uri

from tests.compat.conftest import Collector
from tests.conftest import RunningServer


def test_update_metadata_json_patch_keeps_revisions(client: Any, key: str) -> None:
    x = client.write_array(np.arange(3), key=key, metadata={"a": 1, "nested": {"b": 2}})
    x.update_metadata(metadata={"a": 10, "nested": {"b": 2, "c": 3}}, specs=["s1"])
    assert x.metadata == {"a": 10, "nested": {"b": 2, "c": 3}}
    fresh = client[key]
    assert fresh.metadata == {"a": 10, "nested": {"b": 2, "c": 3}}
    assert [s.name for s in fresh.specs] == ["s1"]

    revisions = fresh.metadata_revisions
    assert len(revisions) == 1
    (first,) = revisions[0:1]
    assert first["revision_number"] == 1
    assert first["attributes"]["metadata"] == {"a": 1, "nested": {"b": 2}}
    assert first["attributes"]["specs"] == []
    assert first["attributes"]["time_updated"]


def test_replace_metadata_and_revision_paging_and_delete(
    server: RunningServer, client: Any, key: str
) -> None:
    x = client.create_container(key, metadata={"v": 0})
    for v in range(1, 6):
        x.replace_metadata(metadata={"v": v})
    assert client[key].metadata == {"v": 5}
    revisions = client[key].metadata_revisions
    assert len(revisions) == 5
    # Pages of two chain through links.next; the 0.2.20 client concatenates such pages.
    with _raw(server) as http:
        body = http.get(f"/revisions/{key}", params={"page[limit]": 2}).json()
        assert [r["revision_number"] for r in body["data"]] == [1, 2]
        second = http.get(body["links"]["next"]).json()
        assert [r["revision_number"] for r in second["data"]] == [3, 4]
        assert http.get(second["links"]["next"]).json()["links"]["next"] is None
    assert body["meta"]["count"] == 5 and len(body["data"]) == 2
    assert body["links"]["next"] is not None
    assert [r["attributes"]["metadata"]["v"] for r in revisions[0:5]] == [0, 1, 2, 3, 4]
    # The 0.2.20 client follows links.next to the end even when the slice has a stop (the
    # reference server answers the same way), so [1:3] reads revisions 2..5.
    assert [r["revision_number"] for r in revisions[1:3]] == [2, 3, 4, 5]
    assert revisions[4]["attributes"]["metadata"] == {"v": 4}

    revisions.delete_revision(2)
    assert [r["revision_number"] for r in revisions[0:10]] == [1, 3, 4, 5]
    with pytest.raises(Exception, match="No revision 2"):
        revisions.delete_revision(2)

    # drop_revision replaces the current version without recording it.
    x.replace_metadata(metadata={"v": 6}, drop_revision=True)
    assert client[key].metadata == {"v": 6}
    assert len(client[key].metadata_revisions) == 4


def test_merge_patch_and_specs(client: Any, key: str) -> None:
    x = client.create_container(key, metadata={"keep": 1, "drop": 2, "d": {"x": 1}})
    x.patch_metadata(
        metadata_patch={"drop": None, "d": {"y": 2}, "new": [1, 2]},
        specs_patch=["merged"],
        content_type="application/merge-patch+json",
    )
    fresh = client[key]
    assert fresh.metadata == {"keep": 1, "d": {"x": 1, "y": 2}, "new": [1, 2]}
    assert [s.name for s in fresh.specs] == ["merged"]
    # specs=None leaves specs alone.
    x.patch_metadata(metadata_patch={"keep": 3}, content_type="application/merge-patch+json")
    assert [s.name for s in client[key].specs] == ["merged"]
    assert client[key].metadata["keep"] == 3


def test_access_tags_are_dropped_without_policy(client: Any, key: str) -> None:
    x = client.write_array(np.arange(3), key=key)
    x.update_metadata(metadata={"k": 1}, access_tags=["foo"])
    assert x.access_tags == []
    assert client[key].metadata == {"k": 1}
    x.replace_metadata(metadata={"k": 2}, access_tags=["foo"])
    assert x.access_tags == []
    assert client[key].access_tags == []


def test_child_metadata_updated_on_parent_stream(client: Any, key: str) -> None:
    parent = client.create_container(key)
    child = parent.write_array(np.arange(3), key="child", metadata={"n": 0})
    updates = Collector()
    sub = parent.subscribe()
    sub.child_metadata_updated.add_callback(updates)
    sub.start_in_thread(1)
    try:
        child.update_metadata(metadata={"n": 1}, specs=["s"])
        first = updates.wait_for(lambda u: u.key == "child")
        assert first.metadata == {"n": 1}
        assert [s.name for s in first.specs] == ["s"]
        child.replace_metadata(metadata={"n": 2}, drop_revision=True)
        second = updates.wait_for(lambda u: u.key == "child")
        assert second.metadata == {"n": 2}
    finally:
        sub.disconnect()


def _raw(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/api/v1", headers={"Authorization": f"Apikey {server.api_key}"}
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        # A patch op that does not apply (missing path) and a failed "test" op.
        ({"content-type": "application/json-patch+json", "metadata": [
            {"op": "remove", "path": "/missing"}], "specs": None}, 409),
        ({"content-type": "application/json-patch+json", "metadata": [
            {"op": "test", "path": "/a", "value": 2}, {"op": "add", "path": "/b", "value": 1}],
          "specs": None}, 409),
        ({"content-type": "application/json-patch+json", "metadata": [{"nop": 1}],
          "specs": None}, 422),
        ({"content-type": "application/json-patch+json", "metadata": [
            {"op": "replace", "path": "", "value": [1]}], "specs": None}, 422),
        ({"content-type": "application/json-patch+json", "metadata": []}, 422),  # no specs key
        ({"content-type": "text/plain", "metadata": {}, "specs": None}, 406),
        ({"content-type": "application/merge-patch+json", "metadata": {"b": 1},
          "specs": [f"s{i}" for i in range(21)]}, 422),
        ({"content-type": "application/merge-patch+json", "metadata": {"b": 1},
          "specs": ["dup", "dup"]}, 422),
        ({"content-type": "application/merge-patch+json", "metadata": {"b": 1},
          "specs": ["x" * 256]}, 422),
        ({"content-type": "application/json-patch+json", "metadata": [], "specs": None,
          "access_tags": [{"op": "add", "path": "/0", "value": {"not": "a string"}}]}, 422),
    ],
)  # fmt: skip
def test_bad_patch_changes_nothing(
    server: RunningServer, client: Any, key: str, body: dict[str, Any], status: int
) -> None:
    client.create_container(key, metadata={"a": 1})
    with _raw(server) as http:
        response = http.patch(f"/metadata/{key}", json=body)
        assert response.status_code == status, response.text
        assert "detail" in response.json()
        assert http.get(f"/revisions/{key}").json()["meta"]["count"] == 0
    assert client[key].metadata == {"a": 1}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"metadata": [1, 2], "specs": None}, 422),
        ({"metadata": {"b": 1}, "specs": ["dup", "dup"]}, 422),
        ({"metadata": {"b": 1}, "access_tags": "foo"}, 422),
    ],
)
def test_bad_put_changes_nothing(
    server: RunningServer, client: Any, key: str, body: dict[str, Any], status: int
) -> None:
    client.create_container(key, metadata={"a": 1})
    with _raw(server) as http:
        assert http.put(f"/metadata/{key}", json=body).status_code == status
    assert client[key].metadata == {"a": 1}


def test_revision_errors_and_wire_shape(server: RunningServer, client: Any, key: str) -> None:
    client.create_container(key, metadata={"a": 1})
    with _raw(server) as http:
        put = http.put(f"/metadata/{key}", json={"metadata": {"a": 2}, "specs": None})
        assert put.json() == {"id": key}
        tagged = http.put(f"/metadata/{key}", json={"metadata": None, "access_tags": ["t"]})
        assert tagged.json()["access_tags"] == []
        body = http.get(f"/revisions/{key}").json()
        assert body["meta"] == {"count": 2}
        assert body["links"]["next"] is None
        assert body["data"][0]["revision_number"] == 1
        assert set(body["data"][0]["attributes"]) == {"metadata", "specs", "time_updated"}
        assert http.delete(f"/revisions/{key}").status_code == 422
        assert http.delete(f"/revisions/{key}", params={"number": "x"}).status_code == 422
        assert http.delete(f"/revisions/{key}", params={"number": 99}).status_code == 404
        assert http.get("/revisions/nope").status_code == 404
        assert http.patch("/metadata/nope", json={"specs": None}).status_code == 404


def test_edits_need_write_access(public_server: RunningServer, key: str) -> None:
    writer = from_uri(public_server.url, api_key=public_server.api_key)
    writer.create_container(key, metadata={"a": 1})
    with httpx.Client(base_url=f"{public_server.url}/api/v1") as anonymous:
        body = {"metadata": {"a": 2}, "specs": None}
        assert anonymous.put(f"/metadata/{key}", json=body).status_code == 401
        assert anonymous.delete(f"/revisions/{key}", params={"number": 1}).status_code == 401
        assert anonymous.get(f"/revisions/{key}").status_code == 200
    assert writer[key].metadata == {"a": 1}
