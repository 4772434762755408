"""REST ``GET``/``POST /data/{sid}`` of the Redis Streamer API, the stock tiled client on a
pushed stream, and the server options of the streamer (size cap, public mode, no devices)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from tests.compat.conftest import Collector
from tests.conftest import RunningServer, start_server, stop_server
from tests.streamer.conftest import AUTH, http, split, ws


def post(client: httpx.Client, sid: str, payloads: list[bytes], **params: str) -> list[str]:
    files = [("entries", (f"e{i}", p)) for i, p in enumerate(payloads)]
    response = client.post(f"/data/{sid}", files=files, params=params)
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()
    return ids


def test_post_then_walk_with_the_cursor(rs_server: RunningServer, sid: str) -> None:
    payloads = [b"alpha", b"beta", b"gamma"]
    with http(rs_server) as client:
        ids = post(client, sid, payloads)
        assert len(ids) == 3
        cursor, got = "0", []
        for _ in range(10):
            response = client.get(f"/data/{sid}", params={"last_entry_id": cursor, "block": 200})
            assert response.status_code == 200
            offsets = orjson.loads(response.headers["x-offsets"])
            if not offsets:
                assert response.content == b""
                assert response.headers["x-last-entry-id"] == cursor  # polling goes on from here
                break
            got += [(entry_id, p) for _, entry_id, p in split(response.headers["x-offsets"],
                                                             response.content)]  # fmt: skip
            cursor = response.headers["x-last-entry-id"]
        assert got == list(zip(ids, payloads, strict=True))
        # count and latest
        response = client.get(f"/data/{sid}", params={"last_entry_id": "0", "count": 10})
        assert response.content == b"alphabetagamma"
        response = client.get(f"/data/{sid}", params={"last_entry_id": "0", "latest": "true"})
        assert response.content == b"gamma" and response.headers["x-last-entry-id"] == ids[2]


def test_time_cursor(rs_server: RunningServer, sid: str) -> None:
    with http(rs_server) as client:
        first = post(client, sid, [b"old"])[0]
        time.sleep(0.01)
        middle_ms = int(time.time() * 1000)
        time.sleep(0.01)
        post(client, sid, [b"new"])
        assert int(first.split("-")[0]) < middle_ms
        response = client.get(f"/data/{sid}", params={"last_entry_id": f"{middle_ms}-0"})
        assert response.content == b"new"
        response = client.get(f"/data/{sid}", params={"last_entry_id": str(middle_ms)})
        assert response.content == b"new"


def test_get_waits_for_the_next_entry_by_default(rs_server: RunningServer, sid: str) -> None:
    with http(rs_server) as client:
        post(client, sid, [b"existing"])
        response = client.get(f"/data/{sid}", params={"block": 100})  # "$": only new entries
        assert response.content == b"" and response.headers["x-offsets"] == "[]"
        cursor = response.headers["x-last-entry-id"]
        post(client, sid, [b"next"])
        response = client.get(f"/data/{sid}", params={"last_entry_id": cursor})
        assert response.content == b"next"


def test_trailing_slash_is_the_same_route(rs_server: RunningServer, sid: str) -> None:
    """``/data/{sid}/`` is served like ``/data/{sid}`` (as Redis Streamer's route patch does),
    not redirected: a multipart POST does not follow a 307."""
    with http(rs_server) as client:
        files = [("entries", ("e0", b"one")), ("entries", ("e1", b"two"))]
        posted = client.post(f"/data/{sid}/", files=files)
        assert posted.status_code == 200, posted.text
        ids = posted.json()
        assert len(ids) == 2
        response = client.get(f"/data/{sid}/", params={"last_entry_id": "0", "count": 10})
        assert response.status_code == 200
        assert response.content == b"onetwo"
        assert orjson.loads(response.headers["x-offsets"]) == [[sid, ids[0], 3], [sid, ids[1], 6]]
        assert client.get(f"/data/{sid}x/", params={"last_entry_id": "0"}).status_code == 404
        graphql = client.post("/graphql/", json={"query": "{ streamIds }"})
        assert graphql.status_code == 200
        assert f"default:{sid}" in graphql.json()["data"]["streamIds"]


def test_rest_errors(rs_server: RunningServer, sid: str) -> None:
    with http(rs_server) as client:
        assert client.get(f"/data/{sid}").status_code == 404
        response = client.post(f"/data/{sid}", files=[("other", ("x", b"1"))])
        assert response.status_code == 422 and "entries" in response.json()["detail"]
        post(client, sid, [b"x"])
        response = client.get(f"/data/{sid}", params={"last_entry_id": "tomorrow"})
        assert response.status_code == 400 and "last_entry_id" in response.json()["detail"]
        response = client.get(f"/data/{sid}", params={"count": "-1"})
        assert response.status_code == 400
    anonymous = httpx.post(f"{rs_server.url}/data/{sid}", files=[("entries", ("x", b"1"))])
    assert anonymous.status_code == 401
    assert httpx.get(f"{rs_server.url}/data/{sid}").status_code == 401


def test_star_posts_each_part_to_its_filename(rs_server: RunningServer, sid: str) -> None:
    with http(rs_server) as client:
        files = [("entries", (f"{sid}x", b"to-x")), ("entries", (f"{sid}y", b"to-y"))]
        assert len(client.post("/data/*", files=files).json()) == 2
        assert client.get(f"/data/{sid}x", params={"last_entry_id": "0"}).content == b"to-x"
        assert client.get(f"/data/{sid}y", params={"last_entry_id": "0"}).content == b"to-y"


def test_stock_tiled_client_subscribes_to_a_pushed_stream(
    rs_server: RunningServer, sid: str
) -> None:
    from tiled.client import from_uri

    updates = Collector()  # a bound method: tiled keeps callbacks by weak reference
    with http(rs_server) as client:
        post(client, sid, [b"\x01\x02"])
        node = from_uri(rs_server.url, api_key=rs_server.api_key)["streams"]["default"][sid]
        subscription = node.subscribe()
        subscription.new_data.add_callback(updates)
        with subscription.start_in_thread(start=1):
            first = updates.get()
            post(client, sid, [b"\x03\x04\x05"])
            second = updates.get()
    received = [first.data(), second.data()]
    assert [a.tolist() for a in received] == [[1, 2], [3, 4, 5]]
    assert all(a.dtype == np.uint8 for a in received)
    assert second.sequence == first.sequence + 1


@pytest.fixture(scope="module")
def options_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        Path(tmp_path_factory.mktemp("streamer-options")), "--public",
        "--streamer-max-message-bytes", "1000", "--streamer-no-device-prefixing",
        "--streamer-maxlen", "5",
    )  # fmt: skip
    yield running
    stop_server(running)


def test_server_options(options_server: RunningServer, sid: str) -> None:
    with ws(options_server, f"/data/{sid}/push", "header=0") as conn:
        for i in range(8):
            conn.send(b"%d" % i)
        conn.send(b"x" * 1001)
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # Public: anonymous reads work, writes do not.
    response = httpx.get(f"{options_server.url}/data/{sid}",
                         params={"last_entry_id": "0", "count": 100})  # fmt: skip
    assert response.status_code == 200
    assert response.content == b"34567"  # --streamer-maxlen 5 kept the newest five
    assert httpx.post(f"{options_server.url}/data/{sid}",
                      files=[("entries", ("x", b"1"))]).status_code == 401  # fmt: skip
    # No device prefixing: the stream is the node streams/{sid}.
    meta = httpx.get(f"{options_server.url}/api/v1/metadata/streams/{sid}", headers=AUTH)
    assert (
        meta.status_code == 200 and meta.json()["data"]["attributes"]["structure_family"] == "array"
    )
    big = httpx.post(f"{options_server.url}/data/{sid}", headers=AUTH,
                     files=[("entries", ("x", b"y" * 2000))])  # fmt: skip
    assert big.status_code == 413

    def chunked() -> Iterator[bytes]:  # no Content-Length: the cap counts what arrives
        boundary = b"--b\r\nContent-Disposition: form-data; name=entries; filename=x\r\n\r\n"
        yield boundary
        for _ in range(5):
            yield b"z" * 500
        yield b"\r\n--b--\r\n"

    response = httpx.post(
        f"{options_server.url}/data/{sid}",
        headers={**AUTH, "Content-Type": "multipart/form-data; boundary=b"},
        content=chunked(),
    )
    assert response.status_code == 413
    # A part for a stream name that cannot be one: nothing of the request is written.
    files = [("entries", ("ok" + sid, b"1")), ("entries", ("..", b"2"))]
    response = httpx.post(f"{options_server.url}/data/*", headers=AUTH, files=files)
    assert response.status_code == 400
    assert httpx.get(f"{options_server.url}/data/ok{sid}", headers=AUTH).status_code == 404
