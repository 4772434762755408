"""PostgreSQL going away under a running server (the test's own cluster, stopped and started
again): requests answer 503 ``{"detail": ...}`` (not 500) and change nothing, subscribers see no
event for a refused write; once PostgreSQL is back the same server recovers by itself."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest
from websockets.sync.client import connect

from tests import postgres as pg
from tests.api.conftest import array_body, create_array
from tests.conftest import RunningServer, start_server, stop_server

AUTH = {"Authorization": "Apikey secret"}
OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def own_postgres() -> Iterator[pg.PostgresServer]:
    server = pg.start()  # its own: this test stops it
    yield server
    server.stop()


def restart(server: pg.PostgresServer) -> None:
    options = (
        f"-p {server.port} -k {server.root / 'sockets'} -c listen_addresses=127.0.0.1 -c fsync=off"
    )
    subprocess.run(
        [*pg._as_postgres_user(), str(server.bindir / "pg_ctl"), "-D", str(server.datadir),
         "-o", options, "-l", str(server.root / "postgres.log"), "-w", "start"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def stop(server: pg.PostgresServer) -> None:
    subprocess.run(
        [*pg._as_postgres_user(), str(server.bindir / "pg_ctl"), "-D", str(server.datadir),
         "-m", "immediate", "-w", "stop"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def extend(http: httpx.Client, key: str, offset: int) -> httpx.Response:
    return http.patch(
        f"/array/full/{key}",
        params={"offset": str(offset), "shape": "1", "extend": "true"},
        content=np.array([offset], "<i8").tobytes(),
        headers=OCTET,
    )


def test_postgres_loss_is_503_and_recovers(
    own_postgres: pg.PostgresServer, tmp_path: Path, key: str
) -> None:
    running: RunningServer = start_server(tmp_path, catalog=own_postgres.new_database())
    try:
        with httpx.Client(base_url=f"{running.url}/api/v1", headers=AUTH, timeout=30) as http:
            create_array(http, "grows", np.arange(3, dtype="<i8"))
            url = f"{running.ws_url}/api/v1/stream/single/grows?envelope_format=msgpack"
            with connect(url, additional_headers=AUTH) as subscriber:
                assert msgpack.unpackb(subscriber.recv(timeout=5))["type"] == "array-schema"
                # The test cluster runs with synchronous_commit=off: make the commits so far
                # durable, or the immediate stop (a crash) could take the newest with it.
                own_postgres.psql("CHECKPOINT")
                stop(own_postgres)
                body = array_body(key, np.zeros(3, "<i8"))
                for response in (
                    http.post("/metadata/", json=body),
                    http.get("/search/"),
                    http.put("/metadata/grows", json={"metadata": {"lost": True}}),
                    http.delete("/metadata/grows", params={"external_only": "false"}),
                    extend(http, "grows", 3),
                ):
                    assert response.status_code == 503, response.text
                    assert "unavailable" in response.json()["detail"]
                    assert response.headers["retry-after"] == "1"
                with pytest.raises(TimeoutError):  # nothing refused was streamed
                    subscriber.recv(timeout=0.5)

                restart(own_postgres)
                # The first call after the restart may still find the old connection broken.
                responses = [http.get("/search/").status_code for _ in range(3)]
                assert responses[-1] == 200, responses
                # Nothing half-written: no node, no metadata edit, no extension, no deletion.
                assert http.get(f"/metadata/{key}").status_code == 404
                node = http.get("/metadata/grows").json()["data"]["attributes"]
                assert node["metadata"] == {} and node["structure"]["shape"] == [3]
                raw = http.get("/array/full/grows", headers={"Accept": OCTET["Content-Type"]})
                assert np.frombuffer(raw.content, "<i8").tolist() == [0, 1, 2]
                # The same server serves writes again, and they are streamed in order.
                assert http.post("/metadata/", json=body).status_code == 200
                assert http.get(f"/metadata/{key}").status_code == 200
                response = extend(http, "grows", 3)
                assert response.status_code == 200, response.text
                message = msgpack.unpackb(subscriber.recv(timeout=5))
                assert (message["sequence"], message["offset"]) == (2, [3])
            raw = http.get("/array/full/grows", headers={"Accept": OCTET["Content-Type"]})
            assert np.frombuffer(raw.content, "<i8").tolist() == [0, 1, 2, 3]
    finally:
        stop_server(running)
