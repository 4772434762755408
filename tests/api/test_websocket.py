"""The WebSocket protocol, checked with a raw ``websockets`` client (spec §6)."""

from __future__ import annotations

import json

import httpx
import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.api.conftest import AUTH, create_array
from tests.conftest import RunningServer

OCTET = {"Content-Type": "application/octet-stream"}


def ws(
    server: RunningServer, path: str, query: str = "envelope_format=msgpack", **kw: object
) -> ClientConnection:
    headers = kw.pop("headers", AUTH)
    return connect(
        f"{server.ws_url}/api/v1/stream/single/{path}?{query}",
        additional_headers=headers,  # type: ignore[arg-type]
        open_timeout=5,
        close_timeout=2,
    )


def recv(conn: ClientConnection) -> dict:
    frame = conn.recv(timeout=5)
    return msgpack.unpackb(frame) if isinstance(frame, bytes) else json.loads(frame)


def put(http: httpx.Client, key: str, array: np.ndarray, **params: str) -> httpx.Response:
    return http.put(f"/array/full/{key}", content=array.tobytes(), headers=OCTET, params=params)


def test_msgpack_messages_have_exact_keys(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(5))
    with ws(server, key, "envelope_format=msgpack&start=1") as conn:
        schema = recv(conn)
        assert schema == {
            "type": "array-schema",
            "version": 1,
            "data_type": {"endianness": "little", "kind": "i", "itemsize": 8, "dt_units": None},
        }
        first = recv(conn)
        assert list(first) == [
            "type", "sequence", "timestamp", "mimetype", "shape", "offset", "block", "payload",
        ]  # fmt: skip
        assert first["sequence"] == 1 and first["shape"] == [5]
        assert first["offset"] is None and first["block"] is None
        assert np.frombuffer(first["payload"], "<i8").tolist() == [0, 1, 2, 3, 4]
        http.patch(
            f"/array/full/{key}",
            params={"offset": "1", "shape": "2"},
            content=np.array([7, 8]).tobytes(),
            headers=OCTET,
        )
        patched = recv(conn)
        assert (patched["sequence"], patched["offset"], patched["shape"]) == (2, [1], [2])


def test_json_envelope_transcodes_payload(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(6).reshape(2, 3))
    with ws(server, key, "envelope_format=json&start=0") as conn:
        assert isinstance(conn.recv(timeout=5), str)
        message = recv(conn)
        assert message["payload"] == [[0, 1, 2], [3, 4, 5]]
        assert message["content-type"] == "application/json"
        assert message["mimetype"] == "application/octet-stream"


def test_rejected_writes_are_not_streamed(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(3))
    with ws(server, key) as conn:
        recv(conn)  # schema
        assert put(http, key, np.arange(2)).status_code == 400  # wrong byte count
        bad_patch = http.patch(
            f"/array/full/{key}",
            params={"offset": "3", "shape": "1"},
            content=np.array([9]).tobytes(),
            headers=OCTET,
        )
        assert bad_patch.status_code == 409
        assert put(http, key, np.array([5, 6, 7])).status_code == 200
        message = recv(conn)
        assert message["sequence"] == 2  # nothing was sequenced for the refused writes
        assert np.frombuffer(message["payload"], "<i8").tolist() == [5, 6, 7]


def test_close_stream_closes_1000_and_sequence_continues(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(3))
    with ws(server, key) as conn:
        recv(conn)
        closed = http.delete(f"/stream/close/{key}")
        assert closed.status_code == 200 and closed.json() is None
        with pytest.raises(ConnectionClosed) as info:
            recv(conn)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1000
        assert info.value.rcvd.reason == "Producer ended stream"
    assert http.delete(f"/stream/close/{key}").status_code == 200  # idempotent
    put(http, key, np.array([1, 1, 1]))
    # seq 1 = initial PUT, 2 and 3 = the two end markers, 4 = the write after closing
    with ws(server, key, "envelope_format=msgpack&start=4") as conn:
        recv(conn)
        assert recv(conn)["sequence"] == 4


def test_replay_through_a_close_marker_sends_the_rest_then_closes(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(3))
    http.delete(f"/stream/close/{key}")
    put(http, key, np.array([4, 5, 6]))
    with ws(server, key, "envelope_format=msgpack&start=0") as conn:
        recv(conn)
        assert [recv(conn)["sequence"], recv(conn)["sequence"]] == [1, 3]
        with pytest.raises(ConnectionClosed) as info:
            recv(conn)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1000


def test_handshake_refusals_are_http_statuses(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(3))
    cases = [
        ("nope", "envelope_format=msgpack", AUTH, 404),
        (key, "envelope_format=msgpack", {"Authorization": "Apikey wrong"}, 401),
        (key, "envelope_format=msgpack", {"Authorization": "Basic x"}, 400),
        (key, "envelope_format=xml", AUTH, 400),
        (key, "start=abc", AUTH, 400),
    ]
    for path, query, headers, status in cases:
        with pytest.raises(InvalidStatus) as info:
            ws(server, path, query, headers=headers)
        assert info.value.response.status_code == status, (path, query)
    assert httpx.get(f"{server.url}/api/v1/stream/single/{key}", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    ("first_message", "code"),
    [
        ('{"type": "auth", "api_key": "wrong"}', 4003),
        ('{"type": "auth", "access_token": "invalid"}', 4003),
        ('{"type": "subscribe"}', 4001),
        ("not json", 4001),
    ],
)
def test_first_message_auth_refusals(
    server: RunningServer, http: httpx.Client, key: str, first_message: str, code: int
) -> None:
    create_array(http, key, np.arange(3))
    with ws(server, key, headers={}) as conn:
        conn.send(first_message)
        with pytest.raises(ConnectionClosed) as info:
            conn.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == code


def test_first_message_auth_then_updates(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(3))
    with ws(server, key, headers={}) as conn:
        conn.send(json.dumps({"type": "auth", "api_key": server.api_key}))
        assert recv(conn)["type"] == "array-schema"
        put(http, key, np.array([7, 8, 9]))
        assert np.frombuffer(recv(conn)["payload"], "<i8").tolist() == [7, 8, 9]


def test_public_server_streams_anonymously(public_server: RunningServer, key: str) -> None:
    with httpx.Client(base_url=f"{public_server.url}/api/v1", headers=AUTH) as http:
        create_array(http, key, np.arange(3))
        with ws(public_server, key, "envelope_format=msgpack&start=0", headers={}) as conn:
            assert recv(conn)["type"] == "array-schema"
            assert recv(conn)["sequence"] == 1


def test_root_stream_reports_child_created(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    with ws(server, "", "envelope_format=msgpack") as conn:
        assert recv(conn) == {"type": "container-schema", "version": 1}
        create_array(http, key, np.arange(3))
        message = recv(conn)
        while message.get("key") != key:
            message = recv(conn)
        assert message["type"] == "container-child-created"
        assert message["structure_family"] == "array"
        assert message["access_tags"] == []
        (source,) = message["data_sources"]
        assert source["mimetype"] == "application/x-zarr" and source["assets"] == []
        assert isinstance(source["id"], int)


def test_empty_segments_collapse_on_websocket(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(3))
    with ws(server, f"//{key}", "envelope_format=msgpack&start=1") as conn:
        assert recv(conn)["type"] == "array-schema"
        assert recv(conn)["sequence"] == 1


def test_deleting_a_node_closes_its_subscribers_1001(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(3))
    with ws(server, key) as conn:
        recv(conn)
        assert http.delete(f"/metadata/{key}", params={"external_only": "false"}).status_code == 200
        with pytest.raises(ConnectionClosed) as info:
            recv(conn)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert http.get(f"/metadata/{key}").status_code == 404


def test_write_right_after_handshake_is_not_lost(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_array(http, key, np.arange(3))
    for i in range(20):
        with ws(server, key) as conn:
            assert put(http, key, np.array([i, i, i])).status_code == 200
            recv(conn)  # schema
            assert np.frombuffer(recv(conn)["payload"], "<i8").tolist() == [i, i, i]
