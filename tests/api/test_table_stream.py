"""``table-data`` on the raw WebSocket (spec §9 websockets 16-19), both envelopes."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pyarrow as pa
import pytest

from tests.api.test_websocket import recv, ws
from tests.conftest import RunningServer

ARROW = {"Content-Type": "application/vnd.apache.arrow.file"}


def ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def create_table(http: httpx.Client, key: str, schema: pa.Schema, mimetype: Any = None) -> None:
    import base64

    encoded = base64.b64encode(schema.serialize().to_pybytes()).decode()
    body = {
        "id": key,
        "structure_family": "table",
        "metadata": {},
        "specs": [],
        "access_tags": None,
        "data_sources": [
            {
                "structure_family": "table",
                "structure": {
                    "arrow_schema": f"data:application/vnd.apache.arrow.file;base64,{encoded}",
                    "npartitions": 1,
                    "columns": schema.names,
                    "resizable": False,
                },
                "id": None,
                "mimetype": mimetype,
                "parameters": {},
                "properties": {},
                "assets": [],
                "management": "writable",
            }
        ],
    }
    response = http.post("/metadata/", json=body)
    assert response.status_code == 200, response.text


SCHEMA = pa.schema([("label", pa.string()), ("value", pa.float64())])


@pytest.mark.parametrize("envelope", ["msgpack", "json"])
def test_table_partition_write_streams(
    server: RunningServer, http: httpx.Client, key: str, envelope: str
) -> None:
    create_table(http, key, SCHEMA)
    first = pa.table({"label": ["a", "b"], "value": [1.0, 2.0]}, schema=SCHEMA)
    assert http.put(f"/table/full/{key}", content=ipc(first), headers=ARROW).status_code == 200
    with ws(server, key, f"envelope_format={envelope}") as conn:
        schema = recv(conn)
        assert schema["type"] == "table-schema" and isinstance(schema["arrow_schema"], str)
        second = pa.table({"label": ["c", "d"], "value": [3.0, 4.0]}, schema=SCHEMA)
        body = ipc(second)
        response = http.put(
            f"/table/partition/{key}", params={"partition": "0"}, content=body, headers=ARROW
        )
        assert response.status_code == 200
        message = recv(conn)
    assert message["type"] == "table-data"
    assert (message["sequence"], message["partition"], message["append"]) == (2, 0, False)
    assert message["mimetype"] == "application/vnd.apache.arrow.file"
    if envelope == "json":
        assert message["payload"] == {"label": ["c", "d"], "value": [3.0, 4.0]}
        assert message["content-type"] == "application/json"
    else:
        assert message["payload"] == body
        assert list(message) == [
            "type", "sequence", "timestamp", "mimetype", "partition", "append", "payload",
        ]  # fmt: skip


def test_full_write_has_null_partition_and_replays(
    server: RunningServer, http: httpx.Client, key: str
) -> None:
    create_table(http, key, SCHEMA)
    table = pa.table({"label": ["a"], "value": [1.0]}, schema=SCHEMA)
    assert http.put(f"/table/full/{key}", content=ipc(table), headers=ARROW).status_code == 200
    bad = pa.table({"label": [1]})
    assert http.put(f"/table/full/{key}", content=ipc(bad), headers=ARROW).status_code == 422
    with ws(server, key, "envelope_format=json&start=0") as conn:
        recv(conn)
        message = recv(conn)
        assert (message["sequence"], message["partition"]) == (1, None)
        assert message["payload"] == {"label": ["a"], "value": [1.0]}
        # The refused write was neither stored nor sequenced.
        http.put(f"/table/full/{key}", content=ipc(table), headers=ARROW)
        assert recv(conn)["sequence"] == 2
