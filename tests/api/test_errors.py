"""Bad input gets a 4xx with a ``detail`` naming the problem, and changes nothing."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.api.conftest import AUTH, array_body, create_array
from tests.conftest import RunningServer

OCTET = {"Content-Type": "application/octet-stream"}


def read(http: httpx.Client, key: str, dtype: str = "<i8") -> np.ndarray:
    response = http.get(f"/array/full/{key}", headers={"Accept": "application/octet-stream"})
    assert response.status_code == 200, response.text
    return np.frombuffer(response.content, dtype=dtype)


def test_wrong_byte_count_is_refused_and_nothing_stored(http: httpx.Client, key: str) -> None:
    create_array(http, key, np.array([1, 2, 3]))
    response = http.put(f"/array/full/{key}", content=b"\x00" * 23, headers=OCTET)
    assert response.status_code == 400
    assert "24" in response.json()["detail"] and "23" in response.json()["detail"]
    np.testing.assert_array_equal(read(http, key), [1, 2, 3])


def test_a_refusal_before_the_body_says_the_connection_closes(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    """The wrong length is refused from the headers, before the body arrives; the connection
    then ends, and the answer says so, so that a client does not send its next request on it
    (httpx did, and found it gone: "Server disconnected without sending a response")."""
    import socket
    from urllib.parse import urlsplit

    create_array(http, key, np.array([1, 2, 3]))
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
        raw.sendall(
            f"PUT /api/v1/array/full/{key} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {AUTH['Authorization']}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 23\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = raw.recv(65536)
            assert chunk, f"closed without an answer: {head!r}"
            head += chunk
    lines = head.split(b"\r\n\r\n")[0].decode().lower().split("\r\n")
    assert lines[0].startswith("http/1.1 400")
    assert "connection: close" in lines[1:]
    np.testing.assert_array_equal(read(http, key), [1, 2, 3])


def test_unknown_dtype_is_422_and_creates_nothing(http: httpx.Client, key: str) -> None:
    body = array_body(key, np.arange(3))
    body["data_sources"][0]["structure"]["data_type"]["kind"] = "z"
    response = http.post("/metadata/", json=body)
    assert response.status_code == 422
    assert "data type" in response.json()["detail"].lower()
    assert http.get(f"/metadata/{key}").status_code == 404


def test_unknown_structure_family_is_422(http: httpx.Client, key: str) -> None:
    response = http.post("/metadata/", json={"id": key, "structure_family": "blob"})
    assert response.status_code == 422
    assert "blob" in response.json()["detail"]


def test_malformed_json_is_422(http: httpx.Client) -> None:
    response = http.post(
        "/metadata/", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "JSON" in response.json()["detail"]


@pytest.mark.parametrize("bad", ["a/b", "..", ".", "tab\there", "nul\x00", ""])
def test_bad_keys_are_refused(http: httpx.Client, bad: str) -> None:
    response = http.post("/metadata/", json={"id": bad, "structure_family": "container"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_duplicate_key_is_409(http: httpx.Client, key: str) -> None:
    body = {"id": key, "structure_family": "container", "data_sources": []}
    assert http.post("/metadata/", json=body).status_code == 200
    response = http.post("/metadata/", json=body)
    assert response.status_code == 409
    assert key in response.json()["detail"]


def test_slice_out_of_range_is_400(http: httpx.Client, key: str) -> None:
    create_array(http, key, np.arange(5))
    response = http.get(f"/array/full/{key}", params={"slice": "99"})
    assert response.status_code == 400
    assert response.json()["detail"]
    assert http.get(f"/array/full/{key}", params={"slice": "bogus"}).status_code == 400


def test_expected_shape_mismatch_is_422(http: httpx.Client, key: str) -> None:
    create_array(http, key, np.arange(5))
    response = http.get(f"/array/full/{key}", params={"slice": "0:2:1", "expected_shape": "3"})
    assert response.status_code == 422
    ok = http.get(f"/array/full/{key}", params={"slice": "0:2:1", "expected_shape": "2"})
    assert np.frombuffer(ok.content, "<i8").tolist() == [0, 1]


def test_patch_out_of_bounds_without_extend_is_409(http: httpx.Client, key: str) -> None:
    create_array(http, key, np.arange(3))
    response = http.patch(
        f"/array/full/{key}",
        params={"offset": "2", "shape": "2"},
        content=np.array([7, 8]).tobytes(),
        headers=OCTET,
    )
    assert response.status_code == 409
    assert "Use ?extend=true" in response.json()["detail"]
    np.testing.assert_array_equal(read(http, key), [0, 1, 2])


def test_patch_extend_returns_new_structure(http: httpx.Client, key: str) -> None:
    create_array(http, key, np.arange(3))
    response = http.patch(
        f"/array/full/{key}",
        params={"offset": "5", "shape": "2", "extend": "true"},
        content=np.array([7, 8]).tobytes(),
        headers=OCTET,
    )
    assert response.status_code == 200, response.text
    assert response.json()["shape"] == [7]
    assert response.json()["chunks"] == [[3, 3, 1]]
    np.testing.assert_array_equal(read(http, key), [0, 1, 2, 0, 0, 7, 8])


def test_unknown_node_is_404(http: httpx.Client) -> None:
    for url in ("/metadata/nope", "/array/full/nope", "/search/nope"):
        response = http.get(url)
        assert response.status_code == 404
        assert "nope" in response.json()["detail"]


def test_empty_path_segments_are_ignored(http: httpx.Client, key: str) -> None:
    create_array(http, key, np.arange(3))
    response = http.get(f"/metadata//{key}")
    assert response.status_code == 200
    assert response.json()["data"]["id"] == key
    assert read(http, f"/{key}/").tolist() == [0, 1, 2]


def test_auth_errors(server: RunningServer) -> None:
    base = f"{server.url}/api/v1/metadata/"
    wrong = httpx.get(base, headers={"Authorization": "Apikey nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "Invalid API key"}
    assert httpx.get(base, params={"api_key": "nope"}).status_code == 401
    assert httpx.get(base).status_code == 401
    assert httpx.get(base, headers={"Authorization": "Basic abc"}).status_code == 400
    assert httpx.get(f"{server.url}/api/v1/").status_code == 200
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_api_key_query_sets_cookie_that_authenticates(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as browser:
        first = browser.get("/api/v1/metadata/", params={"api_key": server.api_key})
        assert first.status_code == 200
        assert browser.cookies.get("tiled_api_key") == server.api_key
        assert browser.get("/api/v1/metadata/").status_code == 200


def test_public_server_reads_anonymously_but_refuses_writes(public_server: RunningServer) -> None:
    base = f"{public_server.url}/api/v1"
    assert httpx.get(f"{base}/metadata/").status_code == 200
    about = httpx.get(f"{base}/").json()
    assert about["authentication"]["required"] is False
    response = httpx.post(f"{base}/metadata/", json={"structure_family": "container"})
    assert response.status_code == 401
    created = httpx.post(
        f"{base}/metadata/", json={"id": "x", "structure_family": "container"}, headers=AUTH
    )
    assert created.status_code == 200


def test_search_pages_and_lookup(http: httpx.Client, key: str) -> None:
    assert (
        http.post("/metadata/", json={"id": key, "structure_family": "container"}).status_code
        == 200
    )
    for i in range(5):
        body = {"id": f"c{i}", "structure_family": "container"}
        assert http.post(f"/metadata/{key}", json=body).status_code == 200
    page = http.get(f"/search/{key}", params={"page[offset]": 1, "page[limit]": 2}).json()
    assert [item["id"] for item in page["data"]] == ["c1", "c2"]
    assert page["meta"]["count"] == 5
    nxt = httpx.get(page["links"]["next"], headers=AUTH).json()
    assert [item["id"] for item in nxt["data"]] == ["c3", "c4"]
    assert nxt["links"]["next"] is None
    count = http.get(f"/search/{key}", params={"fields": "count"}).json()
    assert count["meta"]["count"] == 5 and count["data"] == []
    found = http.get(f"/search/{key}", params={"filter[lookup][condition][key]": "c3"}).json()
    assert [item["id"] for item in found["data"]] == ["c3"]
    keys_only = http.get(f"/search/{key}", params={"fields": ""}).json()
    assert keys_only["data"][0]["attributes"]["metadata"] is None


def test_api_root_without_slash_redirects_keeping_the_query(server: RunningServer) -> None:
    response = httpx.get(f"{server.url}/api/v1", params={"api_key": "secret"})
    assert response.status_code == 307
    assert response.headers["location"].endswith("/api/v1/?api_key=secret")


def test_delete_semantics(http: httpx.Client, key: str) -> None:
    assert http.post("/metadata/", json={"id": key, "structure_family": "container"}).is_success
    create_array(http, "a", np.arange(3), parent=key)
    refused = http.delete(f"/metadata/{key}")
    assert refused.status_code == 409 and "recursive" in refused.json()["detail"]
    internal = http.delete(f"/metadata/{key}", params={"recursive": "true"})
    assert internal.status_code == 409 and "external_only" in internal.json()["detail"]
    done = http.delete(f"/metadata/{key}", params={"recursive": "true", "external_only": "false"})
    assert done.status_code == 200 and done.json() is None
    assert http.get(f"/metadata/{key}/a").status_code == 404
    assert http.get(f"/metadata/{key}").status_code == 404
