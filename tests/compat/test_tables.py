"""Tables with the stock tiled client: uploaded (Parquet) and appendable (SQL) tables.

Appendable-table tests run twice: against the default SQLite table storage of a ``--temp``
server and against a server whose table storage is a private PostgreSQL database.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dask
import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tiled.client import from_uri
from tiled.client.utils import ClientError
from tiled.structures.core import StructureFamily
from tiled.structures.data_source import DataSource
from tiled.structures.table import TableStructure

from tests.conftest import RunningServer, start_server, stop_server

ARROW = "application/vnd.apache.arrow.file"


@pytest.fixture(autouse=True)
def _no_string_conversion() -> Iterator[None]:
    # dask (inside the client's read()) turns string columns into string[pyarrow] by default;
    # compare what the server sent, not dask's conversion of it.
    with dask.config.set({"dataframe.convert-string": False}):
        yield


def sample_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": np.array([1, -2, 3], dtype="int64"),
            "small": np.array([1, 2, 255], dtype="uint8"),
            "f": [1.5, np.nan, -3.25],
            "f32": np.array([0.5, 1.5, 2.5], dtype="float32"),
            "b": [True, False, True],
            "s": ["x", None, "zé"],
            "t": pd.date_range("2024-03-31 00:30", periods=3, freq="h", tz="Europe/Paris"),
            "n": pd.array([1, None, 3], dtype="Int64"),
        },
        index=pd.Index(["a", "b", "c"], name="label"),
    )


def arrow_body(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def http(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/api/v1", headers={"Authorization": f"Apikey {server.api_key}"}
    )


def raw_read(server: RunningServer, route: str, **params: Any) -> pa.Table:
    with http(server) as h:
        response = h.get(route, params=params, headers={"Accept": ARROW})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW
    return pa.ipc.open_file(response.content).read_all()


# --- uploaded tables ----------------------------------------------------------------------


def test_write_dataframe_round_trips_values_types_and_index(client: Any, key: str) -> None:
    df = sample_frame()
    client.write_dataframe(df, key=key, metadata={"m": 1})
    node = client[key]
    assert node.structure().columns == list(df.columns)
    assert node.structure().npartitions == 1
    pd.testing.assert_frame_equal(node.read(), df)
    pd.testing.assert_frame_equal(node.read_partition(0), df)
    pd.testing.assert_frame_equal(node.read(columns=["t", "i"]), df[["t", "i"]])
    pd.testing.assert_frame_equal(node.read_partition(0, columns=["s"]), df[["s"]])
    (source,) = node.data_sources()
    assert source.mimetype == "application/x-parquet"


def test_full_and_partition_routes_select_columns(
    client: Any, server: RunningServer, key: str
) -> None:
    df = sample_frame()
    client.write_table(df, key=key)
    full = raw_read(server, f"/table/full/{key}", column=["n", "b"])
    pd.testing.assert_frame_equal(full.to_pandas(), df[["n", "b"]])
    part = raw_read(server, f"/table/partition/{key}", partition=0)
    pd.testing.assert_frame_equal(part.to_pandas(), df)
    with http(server) as h:
        assert h.get(f"/table/full/{key}", params={"column": "nope"}).status_code == 400
        response = h.get(f"/table/partition/{key}", params={"partition": 1})
        assert (response.status_code, response.json()) == (
            400,
            {"detail": "Partition out of range"},
        )
        assert h.get(f"/table/partition/{key}").status_code == 422
        assert h.get(f"/array/full/{key}").status_code == 404
        legacy = h.get(f"/node/full/{key}", headers={"Accept": ARROW})
    pd.testing.assert_frame_equal(pa.ipc.open_file(legacy.content).read_pandas(), df)


def test_write_table_from_dict(client: Any, key: str) -> None:
    data = {"x": [1, 2, 3], "y": [0.5, None, 2.5], "name": ["a", "b", None]}
    client.write_table(data, key=key)
    pd.testing.assert_frame_equal(client[key].read(), pa.table(data).to_pandas())


def test_write_pyarrow_table(client: Any, server: RunningServer, key: str) -> None:
    table = pa.table(
        {
            "i32": pa.array([1, None, 3], pa.int32()),
            "ts": pa.array([0, 10**9, None], pa.timestamp("ns", tz="UTC")),
            "s": pa.array(["a", "b", "c"], pa.large_string()),
            "d": pa.array([1, 2, 3], pa.date32()),
        }
    )
    # write_table() of a pyarrow.Table fails inside tiled 0.2.20's client (TableStructure
    # .from_pandas), so create the node from its schema and write the table into it.
    node = client.new(
        StructureFamily.table,
        [DataSource(structure=TableStructure.from_arrow_table(table), structure_family="table")],
        key=key,
    )
    node.write(table)
    assert raw_read(server, f"/table/full/{key}").equals(table)
    pd.testing.assert_frame_equal(client[key].read(), table.to_pandas())


def test_two_partitions_written_one_by_one(client: Any, server: RunningServer, key: str) -> None:
    df = sample_frame()
    structure = TableStructure.from_pandas(df)
    structure.npartitions = 2
    node = client.new(
        StructureFamily.table, [DataSource(structure=structure, structure_family="table")], key=key
    )
    node.write_partition(0, df.iloc[:2])
    # Before partition 1 is written it reads as empty.
    assert len(client[key].read_partition(1)) == 0
    node.write_partition(1, df.iloc[2:])
    fresh = client[key]
    pd.testing.assert_frame_equal(fresh.read(), df)
    pd.testing.assert_frame_equal(fresh.read_partition(1), df.iloc[2:])
    pd.testing.assert_frame_equal(fresh.read_partition(0, columns=["f"]), df.iloc[:2][["f"]])
    # Rewriting a partition replaces it.
    node.write_partition(0, df.iloc[1:2])
    pd.testing.assert_frame_equal(client[key].read(), df.iloc[1:])
    # A whole-table PUT cannot say which partition it means.
    with http(server) as h:
        response = h.put(f"/table/full/{key}", content=arrow_body(pa.Table.from_pandas(df)))
    assert response.status_code == 400
    pd.testing.assert_frame_equal(client[key].read(), df.iloc[1:])


def test_long_column_lists_are_posted(client: Any, server: RunningServer, key: str) -> None:
    names = [f"column_with_a_rather_long_name_number_{i:03d}" for i in range(60)]
    df = pd.DataFrame({name: [i, i + 1] for i, name in enumerate(names)})
    client.write_table(df, key=key)
    wanted = names[5:]  # > 2000 characters of query: the client POSTs the list
    pd.testing.assert_frame_equal(client[key].read(columns=wanted), df[wanted])
    with http(server) as h:
        response = h.post(f"/table/full/{key}", json=names[:2], headers={"Accept": ARROW})
    assert pa.ipc.open_file(response.content).read_pandas().equals(df[names[:2]])


def test_write_replaces_the_table(client: Any, key: str) -> None:
    first = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    node = client.write_table(first, key=key)
    second = pd.DataFrame({"x": [7], "y": ["z"]}, index=pd.Index([42], name="k"))
    node.write(second)
    pd.testing.assert_frame_equal(client[key].read(), second)


def test_bad_uploads_change_nothing(client: Any, server: RunningServer, key: str) -> None:
    df = sample_frame()
    client.write_table(df, key=key)
    wrong_type = pa.Table.from_pandas(df.assign(i=df["i"].astype(str)))
    missing = pa.Table.from_pandas(df.drop(columns=["f"]))
    extra = pa.Table.from_pandas(df.assign(extra=1))
    with http(server) as h:
        cases = [
            (h.put(f"/table/full/{key}", content=b"not arrow"), 400),
            (h.put(f"/table/full/{key}", content=arrow_body(wrong_type)), 422),
            (h.put(f"/table/full/{key}", content=arrow_body(missing)), 422),
            (h.put(f"/table/full/{key}", content=arrow_body(extra)), 422),
            (h.put(f"/table/partition/{key}?partition=1", content=arrow_body(missing)), 400),
            (
                h.put(f"/table/full/{key}", content=b"a,b", headers={"Content-Type": "text/csv"}),
                415,
            ),
            (h.patch(f"/table/partition/{key}?partition=0", content=arrow_body(extra)), 405),
        ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert isinstance(response.json()["detail"], str)
    pd.testing.assert_frame_equal(client[key].read(), df)


@pytest.mark.parametrize("columns", [["_x"], ["a", "_index"]])
def test_underscore_column_names_are_refused(
    client: Any, server: RunningServer, key: str, columns: list[str]
) -> None:
    schema = pa.schema([(name, pa.int64()) for name in columns])
    structure = {
        "arrow_schema": _schema_uri(schema),
        "npartitions": 1,
        "columns": columns,
        "resizable": False,
    }
    for mimetype in (None, "application/x-tiled-sql-table"):
        body = {
            "metadata": {},
            "structure_family": "table",
            "specs": [],
            "data_sources": [
                {
                    "structure_family": "table",
                    "structure": structure,
                    "mimetype": mimetype,
                    "parameters": {},
                    "management": "writable",
                }
            ],
            "id": key,
        }
        with http(server) as h:
            response = h.post("/metadata/", json=body)
            assert response.status_code == 422, response.text
            assert "_" in response.json()["detail"]
            assert h.get(f"/metadata/{key}").status_code == 404


def _schema_uri(schema: pa.Schema) -> str:
    # TableStructure refuses '_' names client-side, so build the data URI by hand.
    import base64

    return (
        "data:application/vnd.apache.arrow.file;base64,"
        + base64.b64encode(schema.serialize().to_pybytes()).decode()
    )


def test_deleting_an_uploaded_table_removes_its_files(client: Any, key: str) -> None:
    node = client.write_table(sample_frame(), key=key)
    (asset,) = node.data_sources()[0].assets
    directory = Path(urlparse(asset.data_uri).path)
    assert (directory / "partition-0.parquet").is_file()
    node.delete(external_only=False)
    assert not directory.exists()
    assert key not in client


def test_table_subscription_gets_the_table_schema(
    client: Any, server: RunningServer, key: str
) -> None:
    from websockets.sync.client import connect

    node = client.write_table({"x": [1]}, key=key)
    url = f"{server.ws_url}/api/v1/stream/single/{key}"
    with connect(url, additional_headers={"Authorization": f"Apikey {server.api_key}"}) as ws:
        schema = json.loads(ws.recv(timeout=10))
    assert schema == {
        "type": "table-schema",
        "version": 1,
        "arrow_schema": node.structure().arrow_schema,
    }


# --- appendable tables (SQLite and PostgreSQL table storage) -------------------------------


@dataclass
class TableStorage:
    server: RunningServer
    client: Any
    count_rows: Callable[[str, int], int]
    storage_uri: str


@pytest.fixture(scope="module")
def postgres_storage_servers(
    tmp_path_factory: pytest.TempPathFactory, postgres: Any
) -> Iterator[Callable[[str], tuple[RunningServer, str]]]:
    """Servers whose table storage is PostgreSQL (``-w postgresql://...``), one per catalog
    backend, started on first use."""
    started: dict[str, tuple[RunningServer, str]] = {}

    def get(catalog: str) -> tuple[RunningServer, str]:
        if catalog not in started:
            uri = postgres.new_database()
            catalog_uri = postgres.new_database() if catalog == "postgresql" else None
            directory = tmp_path_factory.mktemp("pg-tables")
            running = start_server(directory, "-w", uri, catalog=catalog_uri)
            started[catalog] = (running, uri)
        return started[catalog]

    yield get
    for running, _ in started.values():
        stop_server(running)


@pytest.fixture(params=["sqlite-storage", "postgresql-storage"])
def storage(request: pytest.FixtureRequest, server: RunningServer) -> TableStorage:
    """The appendable-table storage under test, with each catalog backend of ``server``."""
    if request.param == "sqlite-storage":
        client = from_uri(server.url, api_key=server.api_key)
        uri = _storage_uri(client)
        assert uri.startswith("sqlite:///")

        def count_sqlite(table: str, dataset: int) -> int:
            with sqlite3.connect(uri[len("sqlite:///") :]) as db:
                sql = f'SELECT count(*) FROM "{table}" WHERE _dataset_id = ?'
                return int(db.execute(sql, (dataset,)).fetchone()[0])

        return TableStorage(server, client, count_sqlite, uri)
    catalog = request.node.callspec.params.get("server", "sqlite")
    pg_server, uri = request.getfixturevalue("postgres_storage_servers")(catalog)
    pg = request.getfixturevalue("postgres")
    database = urlparse(uri).path.lstrip("/")

    def count_pg(table: str, dataset: int) -> int:
        sql = f'SELECT count(*) FROM "{table}" WHERE _dataset_id = {int(dataset)}'
        return int(pg.psql(sql, database=database).strip())

    client = from_uri(pg_server.url, api_key=pg_server.api_key)
    assert _storage_uri(client) == uri
    return TableStorage(pg_server, client, count_pg, uri)


def _storage_uri(client: Any) -> str:
    probe = client.create_appendable_table(pa.schema([("p", pa.int8())]))
    uri: str = probe.data_sources()[0].assets[0].data_uri
    probe.delete(external_only=False)
    return uri


SCHEMA = pa.schema(
    [
        ("i", pa.int64()),
        ("f", pa.float64()),
        ("b", pa.bool_()),
        ("s", pa.string()),
        ("t", pa.timestamp("us", tz="America/New_York")),
        ("n", pa.int32()),
    ]
)


def rows(start: int, count: int) -> pa.Table:
    values = range(start, start + count)
    return pa.table(
        {
            "i": list(values),
            "f": [v / 4 for v in values],
            "b": [v % 2 == 0 for v in values],
            "s": [f"row {v}" if v % 3 else None for v in values],
            "t": pa.array(
                [v * 1_000_000 for v in values], pa.timestamp("us", tz="America/New_York")
            ),
            "n": pa.array([None if v % 2 else v for v in values], pa.int32()),
        },
        schema=SCHEMA,
    )


def test_appends_read_back_in_order(storage: TableStorage, key: str) -> None:
    table = storage.client.create_appendable_table(SCHEMA, npartitions=2, key=key)
    (source,) = table.data_sources()
    assert source.mimetype == "application/x-tiled-sql-table"
    # Descending values: a read that sorted instead of keeping append order would show it.
    first, second, third = rows(100, 5), rows(0, 1200), rows(50, 3)
    table.append_partition(0, first)
    table.append_partition(1, third)
    table.append_partition(0, second)
    fresh = storage.client[key]
    expected0 = pa.concat_tables([first, second])
    pd.testing.assert_frame_equal(fresh.read_partition(0), expected0.to_pandas())
    pd.testing.assert_frame_equal(fresh.read_partition(1), third.to_pandas())
    # The client's dask concatenation keeps each partition's own RangeIndex.
    pd.testing.assert_frame_equal(
        fresh.read().reset_index(drop=True), pa.concat_tables([expected0, third]).to_pandas()
    )
    pd.testing.assert_frame_equal(
        fresh.read_partition(0, columns=["s", "t"]), expected0.select(["s", "t"]).to_pandas()
    )
    exact = raw_read(storage.server, f"/table/partition/{key}", partition=0)
    assert exact.equals(expected0)
    full = raw_read(storage.server, f"/table/full/{key}", column=["n"])
    assert full.equals(pa.concat_tables([expected0, third]).select(["n"]))


def test_append_a_dataframe(storage: TableStorage, key: str) -> None:
    table = storage.client.create_appendable_table(SCHEMA, key=key)
    df = rows(0, 4).to_pandas()
    table.append_partition(0, df)  # the body carries the frame's index; it is not stored
    table.append_partition(0, df.iloc[:1])
    expected = pd.concat([df, df.iloc[:1]], ignore_index=True)
    pd.testing.assert_frame_equal(storage.client[key].read(), expected)


def test_column_types_round_trip_exactly(storage: TableStorage, key: str) -> None:
    data = pa.table(
        {
            "i8": pa.array([-128, 127, None], pa.int8()),
            "u8": pa.array([0, 255, 1], pa.uint8()),
            "u16": pa.array([0, 65535, None], pa.uint16()),
            "u32": pa.array([0, 2**32 - 1, 5], pa.uint32()),
            "u64": pa.array([0, 2**63 - 1, None], pa.uint64()),
            "f16": pa.array([np.float16(0.5), None, np.float16(-2)], pa.float16()),
            "f32": pa.array([0.25, float("nan"), None], pa.float32()),
            "naive": pa.array([1, None, 3], pa.timestamp("ns")),
            "ms_utc": pa.array([1, 2, 3], pa.timestamp("ms", tz="UTC")),
            "date": pa.array([0, 19000, None], pa.date32()),
            "dur": pa.array([1, -5, None], pa.duration("s")),
            "tod": pa.array([1, 2, None], pa.time64("us")),
            "bin": pa.array([b"\x00\x01", None, b""], pa.binary()),
            "ls": pa.array(["long", None, "é"], pa.large_string()),
            "cat": pa.array(["a", "b", "a"]).dictionary_encode(),
            "empty": pa.array([None, None, None], pa.string()),
        }
    )
    table = storage.client.create_appendable_table(data.schema, key=key)
    table.append_partition(0, data)
    table.append_partition(0, data.slice(0, 1))
    got = raw_read(storage.server, f"/table/full/{key}")
    assert got.schema.equals(data.schema)
    expected = pa.concat_tables([data, data.slice(0, 1)])
    nan_free = [name for name in data.column_names if name != "f32"]
    assert got.select(nan_free).to_pydict() == expected.select(nan_free).to_pydict()
    np.testing.assert_array_equal(  # NaN reads back as NaN (pandas would see NaN either way)
        got.column("f32").to_numpy(), expected.column("f32").to_numpy()
    )
    # PostgreSQL keeps NaN distinct from null; SQLite stores a NaN REAL as NULL.
    sqlite = storage.storage_uri.startswith("sqlite:")
    assert got.column("f32").null_count == (2 if sqlite else 1)


def test_bad_appends_change_nothing(storage: TableStorage, key: str) -> None:
    table = storage.client.create_appendable_table(SCHEMA, key=key)
    table.append_partition(0, rows(0, 3))
    bad = [
        (b"\x00garbage", 400),
        (arrow_body(rows(0, 2).drop_columns(["f"])), 422),  # missing column
        (arrow_body(rows(0, 2).append_column("extra", pa.array([1, 2]))), 422),
        (arrow_body(rows(0, 2).set_column(0, "i", pa.array(["1", "2"]))), 422),  # wrong type
        (arrow_body(rows(0, 2).set_column(1, "f", pa.array([True, False]))), 422),
        (arrow_body(rows(0, 2).set_column(5, "n", pa.array([1, 2**40]))), 422),  # overflow
    ]
    with http(storage.server) as h:
        for body, status in bad:
            response = h.patch(f"/table/partition/{key}?partition=0", content=body)
            assert response.status_code == status, response.text
        response = h.patch(f"/table/partition/{key}?partition=1", content=arrow_body(rows(0, 1)))
        assert (response.status_code, response.json()) == (
            400,
            {"detail": "Partition out of range"},
        )
        response = h.put(f"/table/partition/{key}?partition=0", content=arrow_body(rows(0, 1)))
        assert response.status_code == 405
    with pytest.raises(ClientError) as info:
        table.append_partition(1, rows(0, 1))  # the client lets npartitions itself through
    assert info.value.response.status_code == 400
    with pytest.raises(ClientError) as info:
        table.append_partition(0, pa.table({"i": ["not an int"]}))
    assert info.value.response.status_code == 422
    assert raw_read(storage.server, f"/table/full/{key}").equals(rows(0, 3))


def test_unsupported_column_types_are_refused_at_creation(storage: TableStorage, key: str) -> None:
    schema = pa.schema([("ok", pa.int64()), ("nested", pa.list_(pa.int64()))])
    with pytest.raises(ClientError) as info:
        storage.client.create_appendable_table(schema, key=key)
    assert info.value.response.status_code == 422
    assert key not in storage.client


def test_table_name_parameter_shares_storage(storage: TableStorage, key: str) -> None:
    name = f"events_{key.lower()}"
    a = storage.client.create_appendable_table(SCHEMA, key=f"{key}a", table_name=name)
    b = storage.client.create_appendable_table(SCHEMA, key=f"{key}b", table_name=name)
    assert a.data_sources()[0].parameters["table_name"] == name
    assert b.data_sources()[0].parameters["table_name"] == name
    a.append_partition(0, rows(0, 2))
    b.append_partition(0, rows(10, 3))
    assert raw_read(storage.server, f"/table/full/{key}a").equals(rows(0, 2))
    assert raw_read(storage.server, f"/table/full/{key}b").equals(rows(10, 3))
    other = pa.schema([("x", pa.string())])
    with pytest.raises(ClientError) as info:
        storage.client.create_appendable_table(other, key=f"{key}c", table_name=name)
    assert info.value.response.status_code == 409
    with pytest.raises(ClientError) as info:
        storage.client.create_appendable_table(other, key=f"{key}d", table_name="Bad-Name")
    assert info.value.response.status_code == 422
    assert f"{key}c" not in storage.client and f"{key}d" not in storage.client


def test_deleting_an_appendable_table_removes_its_rows(storage: TableStorage, key: str) -> None:
    table = storage.client.create_appendable_table(SCHEMA, key=key)
    keep = storage.client.create_appendable_table(SCHEMA, key=f"{key}keep")
    table.append_partition(0, rows(0, 4))
    keep.append_partition(0, rows(0, 2))
    params = table.data_sources()[0].parameters
    kept = keep.data_sources()[0].parameters
    assert storage.count_rows(params["table_name"], params["dataset_id"]) == 4
    table.delete(external_only=False)
    assert storage.count_rows(params["table_name"], params["dataset_id"]) == 0
    assert storage.count_rows(kept["table_name"], kept["dataset_id"]) == 2
    assert key not in storage.client
    assert raw_read(storage.server, f"/table/full/{key}keep").equals(rows(0, 2))
