"""Table structures, body checks (arrow_io) and Parquet partition files (parquet_store)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from ferrotile.storage.tables.arrow_io import (
    InvalidTable,
    SchemaMismatch,
    TableStructure,
    conform,
    decode_schema,
    encode_schema,
    index_columns,
    read_ipc_file,
    select_columns,
    write_ipc_file,
)
from ferrotile.storage.tables.parquet_store import ParquetTable

SCHEMA = pa.schema([("a", pa.int64()), ("s", pa.string())])


def structure_json(schema: pa.Schema = SCHEMA, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "arrow_schema": encode_schema(schema),
        "npartitions": 1,
        "columns": schema.names,
        "resizable": False,
    }
    data.update(changes)
    return data


def test_schema_data_uri_round_trips_and_matches_tiled() -> None:
    from tiled.structures.table import TableStructure as TiledStructure

    uri = encode_schema(SCHEMA)
    assert uri == TiledStructure.from_schema(SCHEMA).arrow_schema
    assert decode_schema(uri).equals(SCHEMA)


@pytest.mark.parametrize(
    "changes",
    [
        {"arrow_schema": "nope"},
        {"arrow_schema": "data:application/vnd.apache.arrow.file;base64,!!!"},
        {"arrow_schema": "data:application/vnd.apache.arrow.file;base64,AAAA"},
        {"npartitions": 0},
        {"npartitions": True},
        {"npartitions": 40000},
        {"columns": ["a", "missing"]},
        {"columns": "a"},
        {"columns": ["a", "a"]},
        {"resizable": "no"},
    ],
)
def test_invalid_structures_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidTable):
        TableStructure.from_json(structure_json(**changes))


def test_underscore_columns_are_reserved_but_index_fields_are_not() -> None:
    with pytest.raises(InvalidTable, match="reserved"):
        TableStructure.from_json(structure_json(pa.schema([("_x", pa.int64())])))
    frame = pd.DataFrame({"a": [1, 2]}, index=[5, 6])
    schema = pa.Table.from_pandas(frame).schema
    assert schema.names == ["a", "__index_level_0__"]
    parsed = TableStructure.from_json(structure_json(schema, columns=["a"]))
    assert parsed.columns == ("a",)
    assert parsed.to_json()["arrow_schema"] == encode_schema(schema)


def test_ipc_file_bodies() -> None:
    table = pa.table({"a": [1, 2], "s": ["x", None]})
    assert read_ipc_file(write_ipc_file(table)).equals(table)
    with pytest.raises(InvalidTable):
        read_ipc_file(b"garbage")


def test_conform_converts_compatible_types_and_refuses_others() -> None:
    body = pa.table(
        {"a": pa.array([1, 2], pa.int32()), "s": pa.array(["x", "y"], pa.large_string())}
    )
    out = conform(body, SCHEMA, keep_index=False)
    assert out.schema.equals(SCHEMA) and out.column("a").to_pylist() == [1, 2]
    # An integer column with missing values arrives from pandas as floats.
    floats = pa.table({"a": [1.0, None], "s": ["x", "y"]})
    assert conform(floats, SCHEMA, keep_index=False).column("a").to_pylist() == [1, None]
    for bad in (
        pa.table({"a": [1.5, 2.0], "s": ["x", "y"]}),  # not integral
        pa.table({"a": ["1", "2"], "s": ["x", "y"]}),  # strings are not numbers
        pa.table({"a": [True, False], "s": ["x", "y"]}),
        pa.table({"a": [1, 2]}),
        pa.table({"a": [1, 2], "s": ["x", "y"], "extra": [0, 0]}),
    ):
        with pytest.raises(SchemaMismatch):
            conform(bad, SCHEMA, keep_index=False)


def test_conform_timestamps_keep_zone_awareness() -> None:
    schema = pa.schema([("t", pa.timestamp("ns", tz="UTC"))])
    aware = pa.table({"t": pa.array([1], pa.timestamp("us", tz="Europe/Paris"))})
    assert conform(aware, schema, keep_index=False).schema.equals(schema)
    naive = pa.table({"t": pa.array([1], pa.timestamp("us"))})
    with pytest.raises(SchemaMismatch):
        conform(naive, schema, keep_index=False)


def test_conform_keeps_or_drops_the_pandas_index() -> None:
    frame = pd.DataFrame({"a": [1, 2], "s": ["x", "y"]}, index=pd.Index([10, 20], name="k"))
    body = pa.Table.from_pandas(frame)
    assert index_columns(body.schema) == ["k"]
    kept = conform(body, SCHEMA, keep_index=True)
    pd.testing.assert_frame_equal(kept.to_pandas(), frame)
    dropped = conform(body, SCHEMA, keep_index=False)
    assert dropped.column_names == ["a", "s"]


def test_select_columns_keeps_the_index() -> None:
    frame = pd.DataFrame({"a": [1], "s": ["x"]}, index=pd.Index(["r"], name="k"))
    table = pa.Table.from_pandas(frame)
    pd.testing.assert_frame_equal(select_columns(table, ["s"]).to_pandas(), frame[["s"]])
    with pytest.raises(KeyError):
        select_columns(table, ["nope"])


def test_parquet_partitions(tmp_path: Path) -> None:
    directory = tmp_path / "t.parquet"
    ParquetTable.create(directory)
    store = ParquetTable(directory, SCHEMA, 2)
    assert store.read().num_rows == 0 and store.read_partition(1).schema.equals(SCHEMA)
    first = pa.table({"a": [1, 2], "s": ["x", "y"]})
    second = pa.table({"a": [3], "s": [None]}, schema=SCHEMA)
    store.write_partition(1, second)
    store.write_partition(0, first)
    assert store.read().to_pydict() == {"a": [1, 2, 3], "s": ["x", "y", None]}
    assert store.read(["s"]).column_names == ["s"]
    assert store.read_partition(1).equals(second)
    with pytest.raises(IndexError):
        store.write_partition(2, first)
    assert sorted(p.name for p in directory.iterdir()) == [
        "partition-0.parquet",
        "partition-1.parquet",
    ]
    ParquetTable.remove(directory)
    assert not directory.exists()


def test_failed_parquet_write_leaves_the_old_partition(tmp_path: Path) -> None:
    directory = tmp_path / "t.parquet"
    ParquetTable.create(directory)
    store = ParquetTable(directory, SCHEMA, 1)
    store.write_partition(0, pa.table({"a": [1], "s": ["x"]}))

    with pytest.raises(Exception):  # noqa: B017 - anything pq.write_table raises
        store.write_partition(0, "not a table")  # type: ignore[arg-type]
    assert store.read().to_pydict() == {"a": [1], "s": ["x"]}
    assert [p.name for p in directory.iterdir()] == ["partition-0.parquet"]
