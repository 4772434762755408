"""Hostile and mistaken input found by fuzzing (issue 18): each case is refused with a 4xx and a
``detail`` before anything is stored, never a 500 (both catalog backends)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ferrotile.validation import MAX_BLOCKS_PER_AXIS, MAX_JSON_DEPTH
from tests.api.conftest import AUTH, array_body, create_array
from tests.conftest import RunningServer, start_server, stop_server

OCTET = {"Content-Type": "application/octet-stream"}
JSON = {"Content-Type": "application/json"}


def nested(levels: int) -> dict[str, Any]:
    """``{"a": {"a": ... {}}}`` with ``levels`` objects."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def nested_json(levels: int) -> str:
    """:func:`nested` as JSON text: deeper than the JSON encoders of the client go."""
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


def send_json(http: httpx.Client, method: str, url: str, text: str) -> httpx.Response:
    return http.request(
        method, url, content=text.encode(), headers={"Content-Type": "application/json"}
    )


def read(http: httpx.Client, key: str) -> list[int]:
    response = http.get(f"/array/full/{key}", headers={"Accept": "application/octet-stream"})
    assert response.status_code == 200, response.text
    return np.frombuffer(response.content, "<i8").tolist()


def graphql(server: RunningServer, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/graphql", json={"query": query, "variables": variables}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# --- 1. metadata nested too deep ------------------------------------------------------------


def test_deepest_accepted_metadata_is_stored_and_streamed(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    """At the limit, metadata and data source parameters reach subscribers in both envelopes:
    the limit is within what the envelope encoder accepts."""
    assert http.post("/metadata/", json={"id": key, "structure_family": "container"}).is_success
    url = f"{server.ws_url}/api/v1/stream/single/{key}"
    with (
        connect(f"{url}?envelope_format=msgpack", additional_headers=AUTH) as packed,
        connect(url, additional_headers=AUTH) as plain,
    ):
        packed.recv(timeout=5), plain.recv(timeout=5)  # the schemas
        body = array_body("child", np.arange(3))
        body["metadata"] = nested(MAX_JSON_DEPTH)
        body["data_sources"][0]["parameters"] = nested(MAX_JSON_DEPTH)
        response = http.post(f"/metadata/{key}", json=body)
        assert response.status_code == 200, response.text
        for message in (msgpack.unpackb(packed.recv(timeout=5)), orjson.loads(plain.recv(5))):
            assert message["type"] == "container-child-created"
            assert message["metadata"] == nested(MAX_JSON_DEPTH)
            assert message["data_sources"][0]["parameters"] == nested(MAX_JSON_DEPTH)
        edit = {"metadata": nested(MAX_JSON_DEPTH), "specs": None}
        assert http.put(f"/metadata/{key}/child", json=edit).status_code == 200
        message = msgpack.unpackb(packed.recv(timeout=5))
        assert message["type"] == "container-child-metadata-updated"


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 200, 1000])
def test_too_deep_metadata_creates_nothing(http: httpx.Client, key: str, levels: int) -> None:
    body = f'{{"id": "{key}", "structure_family": "container", "metadata": {nested_json(levels)}}}'
    for route in ("/metadata/", "/register/"):
        response = send_json(http, "POST", route, body)
        assert response.status_code == 422, response.text
        assert f"more than {MAX_JSON_DEPTH} levels" in response.json()["detail"]
        assert http.get(f"/metadata/{key}").status_code == 404
    array = array_body(key, np.arange(3))
    array["data_sources"][0]["properties"] = nested(min(levels, 200))
    response = http.post("/metadata/", content=orjson.dumps(array))
    assert response.status_code == 422 and "properties" in response.json()["detail"]
    assert http.get(f"/metadata/{key}").status_code == 404


def test_too_deep_metadata_edits_change_nothing(http: httpx.Client, key: str) -> None:
    body = {"id": key, "structure_family": "container", "metadata": {"x": 1}}
    assert http.post("/metadata/", json=body).status_code == 200
    too_deep = nested_json(MAX_JSON_DEPTH + 1)
    merge = '"content-type": "application/merge-patch+json", "specs": null'
    edits = [
        ("PUT", f'{{"metadata": {too_deep}}}'),
        ("PUT", f'{{"metadata": {nested_json(900)}}}'),
        ("PATCH", f'{{{merge}, "metadata": {too_deep}}}'),
        ("PATCH", f'{{{merge}, "metadata": {nested_json(900)}}}'),
        # Each op is shallow, but the document it makes is one level too deep.
        (
            "PATCH",
            '{"content-type": "application/json-patch+json", "specs": null, "metadata": '
            f'[{{"op": "add", "path": "/y", "value": {nested_json(MAX_JSON_DEPTH)}}}]}}',
        ),
    ]
    for method, edit in edits:
        response = send_json(http, method, f"/metadata/{key}", edit)
        assert response.status_code == 422, response.text
        assert f"{MAX_JSON_DEPTH} levels" in response.json()["detail"]
    node = http.get(f"/metadata/{key}").json()["data"]["attributes"]
    assert node["metadata"] == {"x": 1}
    assert http.get(f"/revisions/{key}").json()["meta"]["count"] == 0


def test_too_deep_graphql_meta_stores_nothing(server: RunningServer, key: str) -> None:
    too_deep = nested(MAX_JSON_DEPTH + 1)
    mutations = [
        'updateStreamMeta(streamId: "s", deviceId: $d, meta: $m)',
        "connectDevice(deviceId: $d, meta: $m)",
    ]
    for mutation in mutations:
        query = f"mutation($m: JSON!, $d: String!) {{ {mutation} }}"
        result = graphql(server, query, {"m": too_deep, "d": key})
        assert result["data"] is None
        assert f"{MAX_JSON_DEPTH} levels" in result["errors"][0]["message"]
    # Neither the device nor the stream was created.
    about = httpx.get(f"{server.url}/api/v1/metadata/streams/{key}", headers=AUTH)
    assert about.status_code == 404


# --- 2. reads sized from the structure -------------------------------------------------------


def _peak_rss_kib(server: RunningServer) -> int:
    """Largest peak RSS (VmHWM) of the server's processes (Granian runs workers as children)."""
    pids = [server.process.pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server.process.pid:
            pids.append(int(stat.parent.name))
    peaks = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]))
    return max(peaks)


def test_oversized_reads_are_refused_before_reading(tmp_path: Path, key: str) -> None:
    """A 1 GB array (over the 500 MB response limit) is refused from its structure: the server
    never allocates it (it did: 1.1 GB before answering 400)."""
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=60) as http:
            body = array_body(key, np.zeros(1, "u1"))
            body["data_sources"][0]["structure"].update(shape=[10**9], chunks=[[10**9]])
            assert http.post("/metadata/", json=body).status_code == 200
            before = _peak_rss_kib(server)
            for url, params in [
                (f"/array/full/{key}", {}),
                (f"/array/full/{key}", {"slice": "0:600000000"}),
                (f"/array/block/{key}", {"block": "0"}),
                (f"/array/block/{key}", {"block": "0", "slice": "::1"}),
            ]:
                response = http.get(url, params=params, headers={"Accept": OCTET["Content-Type"]})
                assert response.status_code == 400, response.text
                assert "Response would exceed 500000000" in response.json()["detail"]
            small = http.get(f"/array/full/{key}", params={"slice": "0:4"}, headers=OCTET)
            assert small.status_code == 200 and small.content == b"\x00" * 4
            # Ten elements spread over the whole array: only what is returned is allocated.
            sparse = http.get(f"/array/full/{key}", params={"slice": "::100000000"}, headers=OCTET)
            assert sparse.status_code == 200 and sparse.content == b"\x00" * 10
            grown_mib = (_peak_rss_kib(server) - before) / 1024
            assert grown_mib < 200, f"peak RSS grew by {grown_mib:.0f} MiB"
    finally:
        stop_server(server)


# --- 3. extension bounded --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "why"),
    [
        (str(2**40), "--max-array-bytes"),  # 1 TiB + 1 byte: was a MemoryError (500)
        (str(3 * MAX_BLOCKS_PER_AXIS), "blocks per axis"),  # was a 100,000-entry structure
    ],
)
def test_extension_beyond_the_limits_is_refused(
    http: httpx.Client, key: str, offset: str, why: str
) -> None:
    create_array(http, key, np.arange(3))  # blocks of 3 elements
    response = http.patch(
        f"/array/full/{key}",
        params={"offset": offset, "shape": "1", "extend": "true"},
        content=np.array([7]).tobytes(),
        headers=OCTET,
    )
    assert response.status_code == 422, response.text
    assert why in response.json()["detail"] and "Nothing was written" in response.json()["detail"]
    structure = http.get(f"/metadata/{key}").json()["data"]["attributes"]["structure"]
    assert structure["shape"] == [3] and structure["chunks"] == [[3]]
    assert read(http, key) == [0, 1, 2]


def test_max_array_bytes_setting(tmp_path: Path, key: str) -> None:
    server = start_server(tmp_path, "--max-array-bytes", "80")  # ten int64
    try:
        with httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=10) as http:
            create_array(http, key, np.arange(3))

            def extend(offset: int) -> httpx.Response:
                params = {"offset": str(offset), "shape": "1", "extend": "true"}
                body = np.array([offset]).tobytes()
                return http.patch(f"/array/full/{key}", params=params, content=body, headers=OCTET)

            assert extend(9).status_code == 200  # 10 elements: at the limit
            refused = extend(10)
            assert refused.status_code == 422 and "80 bytes" in refused.json()["detail"]
            assert read(http, key) == [0, 1, 2, 0, 0, 0, 0, 0, 0, 9]
            assert extend(0).status_code == 200  # writing inside is never limited
    finally:
        stop_server(server)


# --- 6. integers that overflow ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "route", "params"),
    [
        ("GET", "/search/", {"page[offset]": "9223372036854775808"}),
        ("GET", "/search/", {"page[limit]": str(2**64)}),
        ("GET", "/search/", {"page[cursor]": str(2**70)}),
        ("GET", "/revisions/{key}", {"page[offset]": str(2**70)}),
        ("DELETE", "/revisions/{key}", {"number": str(2**63)}),
        ("DELETE", "/revisions/{key}", {"number": "1_0"}),
        ("GET", "/search/", {"page[offset]": "٣"}),  # a non-ASCII digit
    ],
)
def test_integer_parameters_out_of_range(
    http: httpx.Client, key: str, method: str, route: str, params: dict[str, str]
) -> None:
    assert http.post("/metadata/", json={"id": key, "structure_family": "container"}).is_success
    response = http.request(method, route.format(key=key), params=params)
    assert response.status_code == 422, response.text
    assert next(iter(params)) in response.json()["detail"]


def test_table_partition_parameter(server: RunningServer, http: httpx.Client, key: str) -> None:
    from tiled.client import from_uri

    from_uri(server.url, api_key=server.api_key).write_table({"x": [1, 2]}, key=key)
    for raw, status in [("1_0", 422), (" 0x1", 422), (str(2**70), 422), ("1", 400), ("0", 200)]:
        response = http.get(f"/table/partition/{key}", params={"partition": raw})
        assert response.status_code == status, (raw, response.text)


# --- 7. NUL characters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "\x00"},
        {"filter[eq][condition][key]": "a\x00b", "filter[eq][condition][value]": "1"},
    ],
)
def test_nul_in_search_is_refused(http: httpx.Client, params: dict[str, str]) -> None:
    response = http.get("/search/", params=params)
    assert response.status_code == 422, response.text
    assert "NUL" in response.json()["detail"]


def test_nul_in_a_data_uri_is_refused(http: httpx.Client, key: str) -> None:
    body = array_body(key, np.arange(3))
    source = body["data_sources"][0]
    source.update(management="external", mimetype="image/tiff")
    source["assets"] = [
        {
            "data_uri": "file://localhost/tmp/a%00.txt",
            "is_directory": False,
            "parameter": "data_uri",
        }
    ]
    response = http.post("/register/", json=body)
    assert response.status_code == 422, response.text
    assert "NUL" in response.json()["detail"]
    assert http.get(f"/metadata/{key}").status_code == 404


# --- 8. control characters in paths ----------------------------------------------------------


def test_control_characters_in_a_path_are_refused(http: httpx.Client, key: str) -> None:
    assert http.post("/metadata/", json={"id": key, "structure_family": "container"}).is_success
    child = {"id": "a", "structure_family": "container"}
    assert http.post(f"/metadata/{key}", json=child).is_success
    response = http.delete(f"/metadata/{key}/a%0A")  # deleted {key}/a before
    assert response.status_code == 422, response.text
    assert "control character" in response.json()["detail"]
    assert http.get(f"/metadata/{key}/a").status_code == 200
    for path in ("%0A", f"{key}%0A", f"{key}/a%0D%0A", f"{key}%0Ab", f"{key}/%09", f"{key}%7F"):
        response = http.get(f"/metadata/{path}")
        assert response.status_code == 422, (path, response.text)
        assert http.get(f"/search/{path}").status_code == 422


# --- 9. request bodies that end early --------------------------------------------------------


def _send_raw(server: RunningServer, request: bytes, *, wait_for_answer: bool = True) -> bytes:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(65536) if wait_for_answer else b""


def test_malformed_chunked_body_is_400(server: RunningServer, key: str) -> None:
    head = (
        b"POST /api/v1/metadata/ HTTP/1.1\r\nHost: x\r\nAuthorization: Apikey secret\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    document = orjson.dumps({"id": key, "structure_family": "container"})
    for body in (b"zz\r\n" + document + b"\r\n0\r\n\r\n", b"5\r\n" + document + b"\r\n0\r\n\r\n"):
        answer = _send_raw(server, head + body)
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert b'"detail"' in answer
    with httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH) as http:
        assert http.get(f"/metadata/{key}").status_code == 404


def test_client_gone_mid_upload_writes_nothing_and_logs_no_traceback(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(3))
    logged = len(server.logs())
    head = (
        f"PUT /api/v1/array/full/{key} HTTP/1.1\r\nHost: x\r\nAuthorization: Apikey secret\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 24\r\n\r\n"
    ).encode()
    _send_raw(server, head + b"\x07" * 10, wait_for_answer=False)  # 10 of 24 bytes, then gone
    time.sleep(0.5)
    assert read(http, key) == [0, 1, 2]
    new_log = server.logs()[logged:]
    assert "Traceback" not in new_log and "ERROR" not in new_log, new_log


# --- 10. GET /data and the pull socket share one validation ----------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "max_fps=-1",
        "ack=2",
        "header=maybe",
        "max_queue_bytes=-5",
        "max_queue_bytes=18446744073709551616",
        "count=99999999999999999999",
        "block=18446744073709551616",
    ],
)
def test_rest_read_refuses_what_the_pull_socket_refuses(
    server: RunningServer, key: str, query: str
) -> None:
    sid = key
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as root:
        assert root.post(f"/data/{sid}", files=[("entries", ("e", b"x"))]).status_code == 200
        rest = root.get(f"/data/{sid}?{query}")
    assert rest.status_code == 400, rest.text
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/data/{sid}/pull?{query}", additional_headers=AUTH)
    assert refused.value.response.status_code == 400
    assert orjson.loads(refused.value.response.body) == rest.json()


# --- 12. authorization schemes as Tiled answers them -----------------------------------------


def test_unknown_authorization_scheme_answers_as_tiled(server: RunningServer) -> None:
    """tiled 0.2.20 (checked with ``tiled serve catalog --api-key``) answers 400, this detail."""
    url = f"{server.url}/api/v1/metadata/"
    for header in ("Basic abc", "Foo"):
        response = httpx.get(url, headers={"Authorization": header})
        assert response.status_code == 400
        assert response.json() == {
            "detail": "Authorization header must include the authorization type followed by a "
            "space and then the secret, as in 'Bearer SECRET' or 'Apikey SECRET'. "
        }
    # "Apikey" without a key counts as no key at all, as in Tiled.
    response = httpx.get(url, headers={"Authorization": "Apikey"})
    assert response.status_code == 401 and "Not enough permissions" in response.json()["detail"]
    assert httpx.get(url, headers={"Authorization": "Apikey secret"}).status_code == 200


def test_a_body_answered_unread_never_costs_a_502(http: httpx.Client) -> None:
    # Found by tests/api/test_fuzz.py: a 404 answered from the path alone, before a 100 KB body
    # was read, made the control plane close its keep-alive connection to the edge; the edge
    # then answered 502 to that request or the next one (about one in three before the fix).
    body = orjson.dumps({"metadata": {"x": "a" * 100_000}})
    statuses = []
    for _ in range(60):
        response = http.post("/metadata/nowhere/deeper", content=body, headers=JSON)
        statuses.append((response.status_code, http.get("/metadata/").status_code))
    assert statuses == [(404, 200)] * 60
