"""Appendable-table SQL storage (sql_store) on SQLite and on a private PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ferrotile.storage.tables.arrow_io import InvalidTable
from ferrotile.storage.tables.sql_store import (
    SQLStorage,
    TableNameConflict,
    layout_of,
    sanitize_uri,
)

SCHEMA = pa.schema(
    [
        ("Name", pa.string()),
        ("name", pa.int64()),  # differs from "Name" only by case: fine, columns are positional
        ("t", pa.timestamp("ns", tz="UTC")),
        ("flag", pa.bool_()),
    ]
)


def rows(*values: int) -> pa.Table:
    return pa.table(
        {
            "Name": [f"r{v}" for v in values],
            "name": list(values),
            "t": pa.array(list(values), pa.timestamp("ns", tz="UTC")),
            "flag": [v % 2 == 0 for v in values],
        },
        schema=SCHEMA,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLStorage]:
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'storage.sqlite'}"
    else:
        postgres: Any = request.getfixturevalue("postgres")
        uri = postgres.new_database()
    storage = SQLStorage(uri)
    yield storage
    storage.close()


def test_appends_read_back_in_order_by_partition(store: SQLStorage) -> None:
    name, dataset = store.create_dataset(SCHEMA)
    store.append(name, dataset, 0, rows(9, 3))
    store.append(name, dataset, 1, rows(5))
    store.append(name, dataset, 0, rows(1, 7))
    assert store.read(name, dataset, SCHEMA, 0).equals(rows(9, 3, 1, 7))
    assert store.read(name, dataset, SCHEMA).equals(rows(9, 3, 1, 7, 5))
    picked = store.read(name, dataset, SCHEMA, 1, ["t", "Name"])
    assert picked.equals(rows(5).select(["t", "Name"]))


def test_datasets_share_a_table_but_not_rows(store: SQLStorage) -> None:
    a_name, a = store.create_dataset(SCHEMA)
    renamed = pa.schema([f.with_name(n) for f, n in zip(SCHEMA, "wxyz", strict=True)])
    b_name, b = store.create_dataset(renamed)
    assert a_name == b_name and a != b  # same layout, same SQL table
    store.append(a_name, a, 0, rows(1, 2))
    store.delete_dataset(a_name, a)
    assert store.read(a_name, a, SCHEMA).num_rows == 0
    store.append(b_name, b, 0, rows(3).rename_columns(list("wxyz")))
    assert store.read(b_name, b, renamed).equals(rows(3).rename_columns(list("wxyz")))


def test_table_name_is_checked(store: SQLStorage) -> None:
    name, _ = store.create_dataset(SCHEMA, "events")
    assert name == "events"
    assert store.create_dataset(SCHEMA, "events")[0] == "events"
    with pytest.raises(TableNameConflict):
        store.create_dataset(pa.schema([("x", pa.float64())]), "events")
    for bad in ("Events", "1x", "ferrotile_x", 'x"; DROP TABLE events; --'):
        with pytest.raises(InvalidTable):
            store.create_dataset(SCHEMA, bad)


def test_values_that_do_not_fit_are_refused_before_any_row(store: SQLStorage) -> None:
    schema = pa.schema([("u", pa.uint64())])
    name, dataset = store.create_dataset(schema)
    store.append(name, dataset, 0, pa.table({"u": pa.array([2**63 - 1], pa.uint64())}))
    with pytest.raises(InvalidTable):
        store.append(name, dataset, 0, pa.table({"u": pa.array([1, 2**63], pa.uint64())}))
    assert store.read(name, dataset, schema).column("u").to_pylist() == [2**63 - 1]


def test_unsupported_types() -> None:
    with pytest.raises(InvalidTable, match="nested"):
        layout_of(pa.schema([("nested", pa.list_(pa.int8()))]))
    with pytest.raises(InvalidTable):
        layout_of(pa.schema([]))
    assert layout_of(pa.schema([("d", pa.dictionary(pa.int8(), pa.string()))])) == ["string"]


def test_leading_nulls_do_not_mistype_sqlite_results(tmp_path: Path) -> None:
    store = SQLStorage(f"sqlite:///{tmp_path / 's.sqlite'}")
    schema = pa.schema([("f", pa.float64()), ("s", pa.string())])
    name, dataset = store.create_dataset(schema)
    table = pa.table({"f": [None] * 3000 + [1.5], "s": [None] * 3000 + ["x"]}, schema=schema)
    store.append(name, dataset, 0, table)
    assert store.read(name, dataset, schema).equals(table)
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sanitize_uri_drops_only_the_password() -> None:
    assert sanitize_uri("postgresql://u:secret@h:5432/db") == "postgresql://u@h:5432/db"
    assert sanitize_uri("postgresql://u@h/db") == "postgresql://u@h/db"
    assert sanitize_uri("sqlite:////a/b.sqlite") == "sqlite:////a/b.sqlite"
