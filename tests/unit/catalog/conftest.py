"""Shared builders for catalog tests, and the ``backend`` fixture that runs a test on SQLite and
on PostgreSQL (a fresh database on the session's private server, see ``tests/postgres.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ferrotile.catalog.dialect import POSTGRESQL, SQLITE, Dialect
from ferrotile.catalog.models import Asset, DataSource
from ferrotile.catalog.postgres import open_postgresql_store
from ferrotile.catalog.sqlite import connect_sqlite, open_sqlite_store
from ferrotile.catalog.store import SqlStore
from ferrotile.catalog.uri import parse_catalog_uri
from tests.postgres import PostgresServer

BACKENDS = ["sqlite", "postgresql"]


@dataclass
class Backend:
    """One empty catalog database of either kind, and a side door into it."""

    name: str
    uri: str
    """The catalog URI, for :meth:`ferrotile.catalog.Catalog.open`."""
    display: str
    """How error messages name the database."""

    @property
    def dialect(self) -> Dialect:
        return SQLITE if self.name == "sqlite" else POSTGRESQL

    def open_store(self, *, init: bool = False, create: bool = False) -> SqlStore:
        location = parse_catalog_uri(self.uri)
        if self.name == "sqlite":
            return open_sqlite_store(location.path, init=init, create=create)
        return open_postgresql_store(location, init=init, create=create)

    def connect(self) -> Any:
        """A new autocommit connection, as the store would open it."""
        if self.name == "sqlite":
            return connect_sqlite(self.display)
        import psycopg

        return psycopg.connect(self.uri, autocommit=True)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders) from another connection, like another
        process would; return its rows (empty for statements without a result)."""
        with closing(self.connect()) as connection:
            cursor = connection.execute(self.dialect.sql(sql), parameters)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def count_rows(self, table: str) -> int:
        return int(self.execute(f"SELECT COUNT(*) FROM {table}")[0][0])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = str(tmp_path / "catalog.db")
        return Backend("sqlite", f"sqlite:///{path}", path)
    return request.getfixturevalue("pg_backend")


@pytest.fixture(scope="session")
def pg_catalogs(postgres: PostgresServer) -> str:
    """One database on the session's private PostgreSQL server for the catalogs of all tests."""
    return postgres.new_database()


@pytest.fixture
def pg_backend(pg_catalogs: str) -> Backend:
    """A new empty catalog location on the private PostgreSQL server: a fresh schema, selected
    through libpq's ``options`` (CREATE DATABASE takes ~0.2-0.5 s here, CREATE SCHEMA ~ms), so
    the catalog also runs outside the ``public`` schema. Tests about whole databases use
    ``postgres.new_database()``."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_catalogs, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return Backend("postgresql", f"{pg_catalogs}?options=-csearch_path%3D{schema}", pg_catalogs)


def array_source(shape: list[int], *, assets: tuple[Asset, ...] = ()) -> DataSource:
    """A data source as the HTTP layer would pass for a new array."""
    structure: dict[str, Any] = {
        "data_type": {"endianness": "little", "kind": "f", "itemsize": 8, "dt_units": None},
        "chunks": [[n] for n in shape],
        "shape": shape,
        "dims": None,
        "resizable": False,
    }
    return DataSource(
        id=None,
        structure_family="array",
        structure=structure,
        mimetype="application/x-zarr",
        parameters={},
        properties={},
        management="writable",
        assets=assets,
    )


def tiff_series(*names: str) -> DataSource:
    """A registered (external) image series with one asset per file."""
    assets = tuple(
        Asset(
            id=None,
            data_uri=f"file://localhost/data/{name}",
            is_directory=False,
            parameter="data_uris",
            num=i,
            size=1000 + i,
        )
        for i, name in enumerate(names)
    )
    source = array_source([len(names), 4, 4], assets=assets)
    return DataSource(
        id=None,
        structure_family="array",
        structure=source.structure,
        mimetype="multipart/related;type=image/tiff",
        parameters={"sep": ";"},
        properties={"chunks": [[1] * len(names), [4], [4]]},
        management="external",
        assets=assets,
    )
