"""PostgreSQL going away under a running server: requests answer 503 ``{"detail": ...}`` (not
500) and change nothing; once PostgreSQL is back, the same requests succeed."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests import postgres as pg
from tests.api.conftest import array_body
from tests.conftest import RunningServer, start_server, stop_server

AUTH = {"Authorization": "Apikey secret"}


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


def test_postgres_loss_is_503_and_recovers(
    own_postgres: pg.PostgresServer, tmp_path: Path, key: str
) -> None:
    running: RunningServer = start_server(tmp_path, catalog=own_postgres.new_database())
    try:
        with httpx.Client(base_url=f"{running.url}/api/v1", headers=AUTH, timeout=30) as http:
            assert http.get("/metadata/").status_code == 200
            stop(own_postgres)
            body = array_body(key, np.zeros(3, "<i8"))
            for response in (http.post("/metadata/", json=body), http.get("/search/")):
                assert response.status_code == 503, response.text
                assert "unavailable" in response.json()["detail"]
                assert response.headers["retry-after"] == "1"
            restart(own_postgres)
            # The first call after the restart may still find the old connection broken.
            responses = [http.get("/search/").status_code for _ in range(3)]
            assert responses[-1] == 200, responses
            assert http.get(f"/metadata/{key}").status_code == 404  # nothing half-written
            assert http.post("/metadata/", json=body).status_code == 200
            assert http.get(f"/metadata/{key}").status_code == 200
    finally:
        stop_server(running)
