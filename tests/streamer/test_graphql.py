"""``/graphql``: every query and mutation with checked results, the ``streams`` subscription over
graphql-transport-ws, auth, ``flush`` sparing Tiled nodes, and devices shared by two workers
through Redis."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.api.conftest import array_body
from tests.conftest import RunningServer, needs_redis_hub, start_server, stop_server
from tests.streamer.conftest import AUTH

PROTOCOL = "graphql-transport-ws"
JSON = "application/json"


def gql(client: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    """POST a query; assert it succeeded without errors; return ``data``."""
    response = client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def gql_errors(client: httpx.Client, query: str, **variables: Any) -> list[str]:
    response = client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    return [e["message"] for e in response.json()["errors"]]


def push(client: httpx.Client, sid: str, entries: list[bytes], device: str) -> list[str]:
    files = [("entries", (f"e{i}", e, "application/octet-stream")) for i, e in enumerate(entries)]
    response = client.post(f"/data/{sid}", params={"device_id": device}, files=files)
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()
    assert len(ids) == len(entries)
    return ids


def iso(entry_id: str) -> str:
    return datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, tz=UTC).isoformat()


STREAM_FIELDS = """
  id length entriesAdded firstEntryId lastEntryId lastGeneratedId recordedFirstEntryId
  maxDeletedEntryId radixTreeKeys groups error meta firstEntryData lastEntryData
  firstEntryString lastEntryString firstEntryJson lastEntryJson firstEntryTime
  lastEntryTime year: lastEntryTime(format: "%Y")
"""
CONNECT = "mutation($d: String!, $m: JSON!) { connectDevice(deviceId: $d, meta: $m) }"
DISCONNECT = "mutation($d: String!) { disconnectDevice(deviceId: $d) }"
DEVICES = "query($all: Boolean!) { devices(includeAll: $all) { id meta } }"


# -- streams --------------------------------------------------------------------------------


def test_stream_describes_pushed_entries(root: httpx.Client, key: str) -> None:
    ids = push(root, "glf", [b'{"x": [1, 2]}', b"\xff\xfe not text", b"hello"], device=key)
    data = gql(
        root, f"query($id: String!) {{ stream(id: $id) {{ {STREAM_FIELDS} }} }}", id=f"{key}:glf"
    )
    assert (
        data["stream"]
        == {
            "id": f"{key}:glf",
            "length": 3,
            "entriesAdded": 3,
            "firstEntryId": ids[0],
            "lastEntryId": ids[2],
            "lastGeneratedId": ids[2],
            "recordedFirstEntryId": ids[0],
            "maxDeletedEntryId": "0-0",
            "radixTreeKeys": 0,
            "groups": 0,
            "error": "",
            "meta": {},
            "firstEntryData": base64.b64encode(b'{"x": [1, 2]}').decode(),
            "lastEntryData": base64.b64encode(b"hello").decode(),
            "firstEntryString": '{"x": [1, 2]}',
            "lastEntryString": "hello",
            "firstEntryJson": {"x": [1, 2]},
            "lastEntryJson": None,  # "hello" is not JSON
            "firstEntryTime": iso(ids[0]),
            "lastEntryTime": iso(ids[2]),
            "year": iso(ids[2])[:4],
        }
    )
    # The same stream through its device; a stream that does not exist.
    data = gql(
        root,
        'query($d: String!) { device(id: $d) { stream(streamId: "glf") { id length } '
        'missing: stream(streamId: "nope") { id error meta length } } }',
        d=key,
    )
    assert data["device"]["stream"] == {"id": f"{key}:glf", "length": 3}
    assert data["device"]["missing"] == {
        "id": f"{key}:nope", "error": "no such key", "meta": {}, "length": 0
    }  # fmt: skip


def test_stream_listing_and_metadata(root: httpx.Client, key: str) -> None:
    push(root, "a", [b"1"], device=key)
    push(root, "b", [b"2", b"3"], device=key)
    meta_only = (
        'mutation($d: String!) { updateStreamMeta(streamId: "c", deviceId: $d, '
        'meta: {format: "mp4"}) }'
    )
    assert gql(root, meta_only, d=key) == {"updateStreamMeta": {"meta_set": True}}

    ids = (
        "query($m: String, $s: Boolean!, $p: String!) "
        "{ streamIds(match: $m, searchMeta: $s, prefix: $p) }"
    )
    assert gql(root, ids, m=f"{key}:*", s=False, p="")["streamIds"] == [f"{key}:a", f"{key}:b"]
    assert gql(root, ids, m=f"{key}:*", s=True, p="")["streamIds"] == [
        f"{key}:a", f"{key}:b", f"{key}:c"
    ]  # fmt: skip
    assert gql(root, ids, m="[bc]", s=True, p=f"{key}:")["streamIds"] == ["b", "c"]
    assert gql(root, ids, m=None, s=False, p=f"{key}:")["streamIds"] == ["a", "b"]
    every = gql(root, "{ streamIds }")["streamIds"]
    assert {f"{key}:a", f"{key}:b"} <= set(every) and f"{key}:c" not in every

    device = gql(
        root,
        "query($d: String!) { device(id: $d) { id streamIds streams { id length error meta } } }",
        d=key,
    )["device"]
    assert device["streamIds"] == ["a", "b"]
    assert device["streams"] == [
        {"id": "a", "length": 1, "error": "", "meta": {}},
        {"id": "b", "length": 2, "error": "", "meta": {}},
        {"id": "c", "length": 0, "error": "no such key", "meta": {"format": "mp4"}},
    ]
    streams = (
        "query($i: [String!], $m: String, $p: String!) "
        "{ streams(ids: $i, match: $m, prefix: $p) { id length lastEntryString } }"
    )
    assert gql(root, streams, i=["b", "zz"], m=None, p=f"{key}:")["streams"] == [
        {"id": "b", "length": 2, "lastEntryString": "3"},
        {"id": "zz", "length": 0, "lastEntryString": ""},
    ]
    assert gql(root, streams, i=None, m="a*", p=f"{key}:")["streams"] == [
        {"id": "a", "length": 1, "lastEntryString": "1"}
    ]

    # update: true merges into the stored metadata, false replaces it.
    update = (
        "mutation($d: String!, $m: JSON!, $u: Boolean!) "
        '{ updateStreamMeta(streamId: "a", deviceId: $d, meta: $m, update: $u) }'
    )
    meta = "query($id: String!) { stream(id: $id) { meta length } }"
    gql(root, update, d=key, m={"fps": 30, "w": 640}, u=False)
    gql(root, update, d=key, m={"fps": 15}, u=True)
    assert gql(root, meta, id=f"{key}:a")["stream"] == {"meta": {"fps": 15, "w": 640}, "length": 1}
    gql(root, update, d=key, m={"h": 480}, u=False)
    assert gql(root, meta, id=f"{key}:a")["stream"]["meta"] == {"h": 480}
    # The metadata is the Tiled node's metadata.
    node = root.get(f"/api/v1/metadata/streams/{key}/a").json()
    assert node["data"]["attributes"]["metadata"] == {"h": 480}
    errors = gql_errors(root, update, d=key, m=[1, 2], u=False)
    assert errors == ["meta must be a JSON object, not [1, 2]"]


def test_metadata_only_stream_as_redis_streamer_lists_it(root: httpx.Client, key: str) -> None:
    """A stream with metadata and no entry (updateStreamMeta only) is in ``streams`` (length 0,
    error "no such key", empty entry fields, its meta) but not in ``streamIds``, as Redis
    Streamer's XINFO on a missing key shows it; deleteStream removes its metadata."""
    set_meta = (
        "mutation($d: String!, $m: JSON!) "
        '{ updateStreamMeta(streamId: "cam", deviceId: $d, meta: $m) }'
    )
    gql(root, set_meta, d=key, m={"fps": 30})
    push(root, "imu", [b'{"g": 9.8}'], device=key)
    listed = gql(
        root,
        f"query($p: String!) {{ streams(prefix: $p) {{ {STREAM_FIELDS} }} }}",
        p=f"{key}:",
    )["streams"]
    assert [s["id"] for s in listed] == ["cam", "imu"]
    assert listed[0] == {
        "id": "cam", "length": 0, "entriesAdded": 0, "firstEntryId": "", "lastEntryId": "",
        "lastGeneratedId": "", "recordedFirstEntryId": "", "maxDeletedEntryId": "",
        "radixTreeKeys": 0, "groups": 0, "error": "no such key", "meta": {"fps": 30},
        "firstEntryData": "", "lastEntryData": "", "firstEntryString": "", "lastEntryString": "",
        "firstEntryJson": {}, "lastEntryJson": {}, "firstEntryTime": "", "lastEntryTime": "",
        "year": "",
    }  # fmt: skip
    assert listed[1]["error"] == "" and listed[1]["lastEntryJson"] == {"g": 9.8}
    ids = "query($p: String!, $s: Boolean!) { streamIds(prefix: $p, searchMeta: $s) }"
    assert gql(root, ids, p=f"{key}:", s=False)["streamIds"] == ["imu"]
    assert gql(root, ids, p=f"{key}:", s=True)["streamIds"] == ["cam", "imu"]

    # As XTRIM, DEL meta, DEL stream answer: no entries, metadata, no stream key.
    delete = "mutation($d: String!, $s: String!) { deleteStream(streamId: $s, deviceId: $d) }"
    assert gql(root, delete, d=key, s="cam")["deleteStream"] == {
        "data_deleted": False, "meta_deleted": True, "stream_deleted": False
    }  # fmt: skip
    assert gql(root, delete, d=key, s="imu")["deleteStream"] == {
        "data_deleted": True, "meta_deleted": False, "stream_deleted": True
    }  # fmt: skip
    assert gql(root, ids, p=f"{key}:", s=True)["streamIds"] == []
    gone = gql(root, "query($i: String!) { stream(id: $i) { error meta length } }", i=f"{key}:cam")
    assert gone["stream"] == {"error": "no such key", "meta": {}, "length": 0}
    assert root.get(f"/api/v1/metadata/streams/{key}/cam").status_code == 404


def test_delete_stream(root: httpx.Client, key: str) -> None:
    push(root, "gone", [b"x", b"y"], device=key)
    gql(
        root,
        'mutation($d: String!) { updateStreamMeta(streamId: "gone", deviceId: $d, meta: {a: 1}) }',
        d=key,
    )
    delete = 'mutation($d: String!) { deleteStream(streamId: "gone", deviceId: $d) }'
    assert gql(root, delete, d=key)["deleteStream"] == {
        "data_deleted": True, "meta_deleted": True, "stream_deleted": True
    }  # fmt: skip
    assert gql(root, "query($id: String!) { stream(id: $id) { error } }", id=f"{key}:gone") == {
        "stream": {"error": "no such key"}
    }
    assert root.get(f"/data/gone?device_id={key}&last_entry_id=0").status_code == 404
    assert root.get(f"/api/v1/metadata/streams/{key}/gone").status_code == 404
    assert gql(root, delete, d=key)["deleteStream"] == {
        "data_deleted": False, "meta_deleted": False, "stream_deleted": False
    }  # fmt: skip
    # Pushing again starts a new, empty stream.
    ids = push(root, "gone", [b"z"], device=key)
    data = gql(
        root,
        "query($id: String!) { stream(id: $id) { length firstEntryId meta } }",
        id=f"{key}:gone",
    )
    assert data["stream"] == {"length": 1, "firstEntryId": ids[0], "meta": {}}


# -- devices --------------------------------------------------------------------------------


def events(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    """Every retained event of ``:event:{name}`` (read through REST ``GET /data``)."""
    response = client.get(
        f"/data/{name}", params={"device_id": ":event", "last_entry_id": "0", "count": 10_000}
    )
    assert response.status_code == 200, response.text
    offsets = json.loads(response.headers["x-offsets"])
    out, start = [], 0
    for _, _, end in offsets:
        out.append(json.loads(response.content[start:end]))
        start = end
    return out


def test_device_lifecycle(root: httpx.Client, key: str) -> None:
    other = f"{key}-other"
    assert gql(root, CONNECT, d=key, m={"model": "hl2"})["connectDevice"] == {
        "connection_status_changed": True,
        "connected": True,
        "is_new_device": True,
        "meta_set": True,
        "fired:device.connected": True,
        "fired:device.meta": True,
    }
    again = gql(root, CONNECT, d=key, m={"model": "hl2", "v": 2})["connectDevice"]
    assert again["connection_status_changed"] is False and again["is_new_device"] is False
    gql(root, CONNECT, d=other, m={})
    connected = gql(root, DEVICES, all=False)["devices"]
    assert {"id": key, "meta": {"model": "hl2", "v": 2}} in connected
    assert {"id": other, "meta": {}} in connected
    assert ":event" not in [d["id"] for d in gql(root, DEVICES, all=True)["devices"]]

    update = "mutation($d: String!, $m: JSON!) { updateDeviceMeta(deviceId: $d, meta: $m) }"
    assert gql(root, update, d=key, m={"model": "ml2"})["updateDeviceMeta"] == {
        "meta_set": True, "fired:device.meta": True
    }  # fmt: skip
    one = "query($d: String!) { device(id: $d) { id meta } }"
    assert gql(root, one, d=key)["device"] == {"id": key, "meta": {"model": "ml2"}}

    assert gql(root, DISCONNECT, d=key)["disconnectDevice"] == {
        "connection_status_changed": True, "connected": False, "fired:device.connected": True
    }  # fmt: skip
    assert gql(root, DISCONNECT, d=key)["disconnectDevice"]["connection_status_changed"] is False
    assert key not in [d["id"] for d in gql(root, DEVICES, all=False)["devices"]]
    assert key in [d["id"] for d in gql(root, DEVICES, all=True)["devices"]]
    listed = gql(root, "query($i: [String!]) { devices(ids: $i) { id meta } }", i=[key, "never"])
    assert listed["devices"] == [{"id": key, "meta": {"model": "ml2"}}, {"id": "never", "meta": {}}]

    mine = [e for e in events(root, "device.connected") if e["device_id"] == key]
    assert mine == [
        {"device_id": key, "connected": True, "meta": {"model": "hl2"}},
        {"device_id": key, "connected": True, "meta": {"model": "hl2", "v": 2}},
        {"device_id": key, "connected": False},
        {"device_id": key, "connected": False},
    ]
    metas = [e["meta"] for e in events(root, "device.meta") if e["device_id"] == key]
    assert metas == [{"model": "hl2"}, {"model": "hl2", "v": 2}, {"model": "ml2"}]
    # The event streams are listed like any other.
    assert ":event:device.connected" in gql(root, "{ streamIds }")["streamIds"]

    errors = gql_errors(root, CONNECT, d=":event", m={})
    assert errors == ["':event' is not a device id (':...' ids are reserved)"]
    assert "cannot name a stream or device" in gql_errors(root, CONNECT, d="a/b", m={})[0]


def test_unparsable_requests_are_400(root: httpx.Client) -> None:
    for body in (b"{", b"\xff\xfe"):  # not JSON; not even UTF-8 (was a 500)
        response = root.post("/graphql", content=body, headers={"Content-Type": JSON})
        assert response.status_code == 400, response.text
        assert response.text == "Unable to parse request body as JSON"


# -- auth -----------------------------------------------------------------------------------


def test_private_server_refuses_anonymous(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        for query in ("{ streamIds }", CONNECT):
            response = anonymous.post(
                "/graphql", json={"query": query, "variables": {"d": "x", "m": {}}}
            )
            assert response.status_code == 401
            assert "Not enough permissions" in response.json()["detail"]
        wrong = anonymous.post(
            "/graphql", json={"query": "{ streamIds }"}, headers={"Authorization": "Apikey nope"}
        )
        assert wrong.status_code == 401 and wrong.json() == {"detail": "Invalid API key"}
        assert (
            anonymous.get(
                "/graphql", params={"api_key": "secret", "query": "{ streamIds }"}
            ).status_code
            == 200
        )
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/graphql", subprotocols=[PROTOCOL], open_timeout=5)
    assert refused.value.response.status_code == 401


def test_public_server_reads_anonymously_but_refuses_mutations(
    public_server: RunningServer,
) -> None:
    with httpx.Client(base_url=public_server.url, timeout=10) as anonymous:
        assert gql(anonymous, "{ devices { id } }") == {"devices": []}
        response = anonymous.post(
            "/graphql", json={"query": CONNECT, "variables": {"d": "x", "m": {}}}
        )
        assert response.status_code == 401
        body = response.json()
        assert body["data"] is None
        assert body["errors"][0]["message"].startswith("Not enough permissions")
        # Nothing was written.
        assert gql(anonymous, DEVICES, all=True) == {"devices": []}
        # GraphiQL for browsers.
        page = anonymous.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()


# -- subscription ---------------------------------------------------------------------------


@pytest.fixture
def subscriber(server: RunningServer) -> Iterator[ClientConnection]:
    with connect(
        f"{server.ws_url}/graphql", subprotocols=[PROTOCOL], additional_headers=AUTH, open_timeout=5
    ) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "connection_ack"}
        yield ws


SUBSCRIBE = """
subscription($ids: JSON!, $d: String!, $c: Int!) {
  streams(streamIds: $ids, device: $d, count: $c) {
    __typename
    ... on DataPayload { streamId time data string json }
    ... on DataPayloads { streamId times: time strings: string jsons: json }
  }
}"""


def subscribe(ws: ClientConnection, op: str, **variables: Any) -> None:
    ws.send(
        json.dumps(
            {"id": op, "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": variables}}
        )
    )


def next_payload(ws: ClientConnection, op: str) -> dict[str, Any]:
    message = json.loads(ws.recv(timeout=10))
    assert message["type"] == "next" and message["id"] == op, message
    assert "errors" not in message["payload"], message
    payload: dict[str, Any] = message["payload"]["data"]["streams"]
    return payload


def test_subscription_from_cursor(
    root: httpx.Client, subscriber: ClientConnection, key: str
) -> None:
    first = push(root, "s", [b"old"], device=key)
    ids = push(root, "s", [b'{"n": 1}', b"two", b"\x00\x01"], device=key)
    subscribe(subscriber, "1", ids={"s": first[0]}, d=key, c=0)
    got = [next_payload(subscriber, "1") for _ in range(3)]
    assert got == [
        {"__typename": "DataPayload", "streamId": f"{key}:s", "time": ids[0],
         "data": base64.b64encode(b'{"n": 1}').decode(), "string": '{"n": 1}', "json": {"n": 1}},
        {"__typename": "DataPayload", "streamId": f"{key}:s", "time": ids[1],
         "data": base64.b64encode(b"two").decode(), "string": "two", "json": None},
        {"__typename": "DataPayload", "streamId": f"{key}:s", "time": ids[2],
         "data": "AAE=", "string": "\x00\x01", "json": None},
    ]  # fmt: skip

    # count > 0: one DataPayloads per stream per read, from the oldest retained.
    subscribe(subscriber, "2", ids={"s": "0"}, d=key, c=10)
    batch = next_payload(subscriber, "2")
    assert batch["__typename"] == "DataPayloads"
    assert batch["times"] == first + ids
    assert batch["strings"] == ["old", '{"n": 1}', "two", "\x00\x01"]
    assert batch["jsons"] == [None, {"n": 1}, None, None]

    # Deleting the stream completes both subscriptions.
    gql(root, 'mutation($d: String!) { deleteStream(streamId: "s", deviceId: $d) }', d=key)
    done = {json.loads(subscriber.recv(timeout=10))["id"] for _ in range(2)}
    assert done == {"1", "2"}


def test_subscription_new_entries(
    root: httpx.Client, subscriber: ClientConnection, key: str
) -> None:
    push(root, "live", [b"before"], device=key)
    subscribe(subscriber, "live", ids=["live"], d=key, c=0)
    # "$" starts at the subscription; keep pushing until it is registered (bounded).
    sent: list[bytes] = []
    for i in range(50):
        sent.append(f"m{i}".encode())
        push(root, "live", [sent[-1]], device=key)
        try:
            received = json.loads(subscriber.recv(timeout=0.2))
            break
        except TimeoutError:
            continue
    else:
        pytest.fail("the subscription received nothing")
    assert received["type"] == "next"
    first = received["payload"]["data"]["streams"]["string"]
    assert first.encode() in sent and first != "before"
    push(root, "live", [b"last"], device=key)
    rest = []
    while not rest or rest[-1] != "last":
        rest.append(next_payload(subscriber, "live")["string"])
    expected = [s.decode() for s in sent[sent.index(first.encode()) + 1 :]] + ["last"]
    assert rest == expected


def test_subscription_errors(subscriber: ClientConnection, key: str) -> None:
    subscribe(subscriber, "x", ids=["nothing"], d=key, c=0)
    message = json.loads(subscriber.recv(timeout=10))
    assert message["type"] == "next" and message["id"] == "x"
    assert (
        message["payload"]["errors"][0]["message"]
        == f"No such stream: '{key}:nothing' (nothing pushed yet)"
    )
    assert json.loads(subscriber.recv(timeout=10)) == {"id": "x", "type": "complete"}
    subscribe(subscriber, "y", ids={"a": "later"}, d=key, c=0)
    message = json.loads(subscriber.recv(timeout=10))
    assert "last_entry_id must be" in message["payload"]["errors"][0]["message"]


# -- flush ----------------------------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server of its own: flush deletes every stream."""
    running = start_server(tmp_path)
    yield running
    stop_server(running)


def test_flush_deletes_streams_only(own_server: RunningServer) -> None:
    with httpx.Client(base_url=own_server.url, headers=AUTH, timeout=10) as client:
        tiled = client.post("/api/v1/metadata/", json=array_body("kept", np.arange(3)))
        assert tiled.status_code == 200, tiled.text
        written = client.put(
            "/api/v1/array/full/kept",
            content=np.arange(3).tobytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert written.status_code == 200, written.text
        push(client, "a", [b"1"], device="d1")
        gql(client, CONNECT, d="d2", m={})
        assert gql(client, "{ streamIds }")["streamIds"] == [
            ":event:device.connected", ":event:device.meta", "d1:a"
        ]  # fmt: skip
        assert gql(client, "mutation { flush }") == {"flush": {"flushed": True}}
        assert gql(client, "{ streamIds(searchMeta: true) }") == {"streamIds": []}
        assert gql(client, DEVICES, all=True) == {"devices": []}
        assert client.get("/api/v1/metadata/streams").status_code == 404
        kept = client.get("/api/v1/array/full/kept", headers={"Accept": "application/json"})
        assert kept.status_code == 200 and kept.json() == [0, 1, 2]
        assert gql(client, "mutation { flush }") == {"flush": {"flushed": True}}


# -- several workers through Redis ------------------------------------------------------------


@pytest.fixture(scope="module")
def graphql_workers(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[RunningServer]:
    """Two workers on Redis, in their own Redis database (node ids of different catalogs must
    not share stream keys; the server refuses a Redis another catalog uses)."""
    running = start_server(
        Path(tmp_path_factory.mktemp("graphql-workers")),
        "--cache", f"{redis_url}/6", "--workers", "2",
    )  # fmt: skip
    yield running
    stop_server(running)


@needs_redis_hub
def test_devices_shared_by_workers(graphql_workers: RunningServer, key: str) -> None:
    def fresh() -> httpx.Client:  # a new connection per request: any worker may answer
        return httpx.Client(
            base_url=graphql_workers.url,
            headers={**AUTH, "Connection": "close"},
            limits=httpx.Limits(max_keepalive_connections=0),
            timeout=10,
        )

    with fresh() as client:
        assert gql(client, CONNECT, d=key, m={"n": 1})["connectDevice"]["is_new_device"] is True
        for _ in range(10):
            devices = gql(client, DEVICES, all=False)["devices"]
            assert {"id": key, "meta": {"n": 1}} in devices
        gql(
            client,
            "mutation($d: String!, $m: JSON!) { updateDeviceMeta(deviceId: $d, meta: $m) }",
            d=key,
            m={"n": 2},
        )
        for _ in range(10):
            data = gql(client, "query($d: String!) { device(id: $d) { meta } }", d=key)
            assert data == {"device": {"meta": {"n": 2}}}
        assert gql(client, DISCONNECT, d=key)["disconnectDevice"]["connection_status_changed"]
        for _ in range(10):
            assert key not in [d["id"] for d in gql(client, DEVICES, all=False)["devices"]]
