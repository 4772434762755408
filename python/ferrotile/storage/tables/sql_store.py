"""Appendable tables in a SQL database (SQLite, PostgreSQL or DuckDB), written through ADBC.

Layout
------
* Tables with the same *storage layout* (the list of column storage types) share one SQL table,
  as Tiled shares one per Arrow schema: thousands of small tables do not make thousands of SQL
  tables. Its name is ``ferrotile_t_<md5 of the layout>``, or the client's ``table_name``.
* Columns are positional, ``c0, c1, ...``: names never reach SQL (no quoting or case-folding
  problems, no collisions between ``A`` and ``a``), and tables differing only by column names
  share storage. The declared schema (names, exact types) lives in the catalog's structure.
* Internal columns: ``_row_id`` (an identity / AUTOINCREMENT key: reads are ordered by it, so
  rows come back in append order on both dialects), ``_dataset_id`` (one per node, from the
  ``ferrotile_datasets`` counter table) and ``_partition_id``.
* Types SQL lacks are stored as their physical integers (timestamps, dates, times, durations),
  dictionaries as their values, narrow or unsigned integers in a wide-enough signed type
  (``uint64`` values above 2**63-1 are refused); reads cast back to the declared types.
* SQLite stores a floating-point NaN as NULL (PostgreSQL and DuckDB keep NaN): on SQLite
  storage a NaN reads back as null (pandas shows both as NaN).
* DuckDB (``duckdb:///FILE``, the ``duckdb`` extra): one database instance per process, shared
  by every pooled connection (two instances of one file in a process would not see each
  other's writes); a DuckDB file is locked by the process that opens it, so it serves one
  process (``--workers 1``). Its ADBC ingest fills every column by position, so rows go
  through a temporary table and ``INSERT ... SELECT`` names the columns.
* ``ferrotile_tables`` records each table's layout, so a ``table_name`` reused with another
  layout is refused instead of corrupting data.

Every operation is one transaction: an append that fails validation or ingest adds no row.
All methods are synchronous; the HTTP layer calls them from worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from ferrotile.catalog.uri import DUCKDB_EXTRA, duckdb_path
from ferrotile.errors import StorageError

from .arrow_io import InvalidTable

__all__ = ["SQLStorage", "TableNameConflict", "layout_of", "sanitize_uri", "storage_for"]

TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: DuckDB: the temporary table an append is staged in (per connection, dropped at once).
_STAGING = "ferrotile_staging"
_IDLE_MAX = 8
_NUMERIC = {
    "bool": (pa.bool_(), "BOOLEAN", "INTEGER"),
    "int16": (pa.int16(), "SMALLINT", "INTEGER"),
    "int32": (pa.int32(), "INTEGER", "INTEGER"),
    "int64": (pa.int64(), "BIGINT", "INTEGER"),
    "float32": (pa.float32(), "REAL", "REAL"),
    "float64": (pa.float64(), "DOUBLE PRECISION", "REAL"),
    "string": (pa.string(), "TEXT", "TEXT"),
    "binary": (pa.binary(), "BYTEA", "BLOB"),
}


class TableNameConflict(InvalidTable):
    """``table_name`` names a SQL table whose layout differs (or that is not ours)."""


def _storage_key(t: pa.DataType) -> str:
    """The storage class of a declared type; :class:`InvalidTable` if SQL cannot hold it."""
    if pa.types.is_dictionary(t):
        return _storage_key(t.value_type)
    if pa.types.is_boolean(t):
        return "bool"
    if t in (pa.int8(), pa.uint8(), pa.int16()):
        return "int16"
    if t in (pa.uint16(), pa.int32()):
        return "int32"
    if pa.types.is_integer(t):
        return "int64"
    if t in (pa.float16(), pa.float32()):
        return "float32"
    if pa.types.is_floating(t):
        return "float64"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    if pa.types.is_date32(t) or pa.types.is_time32(t):
        return "int32"
    if pa.types.is_temporal(t):  # timestamp, date64, time64, duration
        return "int64"
    raise InvalidTable(f"Columns of type {t} cannot be stored in an appendable table")


def layout_of(schema: pa.Schema) -> list[str]:
    """The storage class of every field of ``schema`` (raises :class:`InvalidTable`)."""
    if not len(schema):
        raise InvalidTable("An appendable table needs at least one column")
    layout = []
    for field in schema:
        try:
            layout.append(_storage_key(field.type))
        except InvalidTable as exc:
            raise InvalidTable(f"Column {field.name!r}: {exc}") from None
    return layout


def _to_storage(column: pa.ChunkedArray, key: str) -> pa.ChunkedArray:
    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.cast(t.value_type), t.value_type
    target = _NUMERIC[key][0]
    if pa.types.is_temporal(t):
        column = column.cast(pa.int32() if t.bit_width == 32 else pa.int64())
    try:
        return column.cast(target, safe=True)
    except (pa.ArrowException, ValueError) as exc:
        raise InvalidTable(
            f"Values of type {t} do not fit the storage type {target}: {exc}"
        ) from None


def _from_storage(column: pa.ChunkedArray | pa.Array, key: str, t: pa.DataType) -> Any:
    storage = _NUMERIC[key][0]
    if column.null_count == len(column):
        # SQLite types an all-null result column as int64, whatever it holds.
        return pa.nulls(len(column), t)
    column = column.cast(storage)
    if pa.types.is_dictionary(t):
        return column.cast(t.value_type).cast(t)
    if pa.types.is_temporal(t):
        column = column.cast(pa.int32() if t.bit_width == 32 else pa.int64())
    return column.cast(t)


def sanitize_uri(uri: str) -> str:
    """``uri`` without a password (what is recorded in the catalog)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def sqlite_path(uri: str) -> Path:
    """``sqlite:////abs/file`` (or ``sqlite:///rel/file``) to a path, as SQLAlchemy reads it."""
    if not uri.startswith("sqlite:///"):
        raise ValueError(f"Not a sqlite:/// URI: {uri}")
    return Path(uri[len("sqlite:///") :])


class SQLStorage:
    """One SQL database holding appendable tables, with a small pool of ADBC connections.

    Parameters
    ----------
    uri : str
        ``sqlite:///path``, ``postgresql://user@host:port/db`` or ``duckdb:///path``.
    """

    def __init__(self, uri: str) -> None:
        scheme = uri.split(":", 1)[0]
        if scheme == "sqlite":
            self.dialect = "sqlite"
        elif scheme in ("postgresql", "postgres"):
            self.dialect = "postgresql"
        elif scheme == "duckdb":
            self.dialect = "duckdb"
        else:
            raise ValueError(
                f"Unsupported table storage {uri!r}: use sqlite:///, postgresql:// or duckdb:///"
            )
        self.uri = uri
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._ready = False
        #: DuckDB: the first connection; every other one is a clone sharing its database.
        self._duckdb: Any = None
        self._duckdb_lock = threading.Lock()  # not _lock: _ensure_ready connects holding it

    def _connect_duckdb(self, autocommit: bool) -> Any:
        with self._duckdb_lock:
            if self._duckdb is None:
                try:
                    import adbc_driver_duckdb.dbapi as duckdb
                except ImportError:
                    raise StorageError(DUCKDB_EXTRA) from None
                path = duckdb_path(self.uri)
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self._duckdb = duckdb.connect(str(path))
                except Exception as exc:  # e.g. the file is locked by another process
                    raise StorageError(f"Cannot open the DuckDB table storage: {exc}") from exc
            conn = self._duckdb.adbc_clone()
        if autocommit:
            conn.adbc_connection.set_autocommit(True)
        return conn

    def _connect(self, autocommit: bool = False) -> Any:
        if self.dialect == "duckdb":
            return self._connect_duckdb(autocommit)
        if self.dialect == "sqlite":
            import adbc_driver_sqlite.dbapi as sqlite

            path = sqlite_path(self.uri)
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite.connect(str(path), autocommit=autocommit)
            with conn.cursor() as cursor:
                # Concurrent requests use several connections; wait for the write lock.
                cursor.execute("PRAGMA busy_timeout = 30000")
            return conn
        import adbc_driver_postgresql.dbapi as postgresql

        return postgresql.connect(self.uri, autocommit=autocommit)

    def _sql(self, statement: str) -> str:
        if self.dialect != "postgresql":  # SQLite and DuckDB take "?" placeholders
            return statement
        count = iter(range(1, statement.count("?") + 1))
        return re.sub(r"\?", lambda _: f"${next(count)}", statement)

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            pk = {
                "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
                "postgresql": "BIGSERIAL PRIMARY KEY",
                "duckdb": "BIGINT PRIMARY KEY DEFAULT nextval('ferrotile_datasets_id')",
            }[self.dialect]
            conn = self._connect(autocommit=True)
            try:
                with conn.cursor() as cursor:
                    if self.dialect == "sqlite":
                        # Readers do not block the writer (persistent in the file).
                        cursor.execute("PRAGMA journal_mode = WAL")
                    if self.dialect == "duckdb":  # DuckDB has no identity columns
                        cursor.execute("CREATE SEQUENCE IF NOT EXISTS ferrotile_datasets_id")
                    cursor.execute(
                        "CREATE TABLE IF NOT EXISTS ferrotile_tables"
                        " (name TEXT PRIMARY KEY, layout TEXT NOT NULL)"
                    )
                    cursor.execute(
                        f"CREATE TABLE IF NOT EXISTS ferrotile_datasets (id {pk},"
                        " table_name TEXT NOT NULL)"
                    )
            finally:
                conn.close()
            self._ready = True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor in a transaction: committed on success, rolled back on any error."""
        self._ensure_ready()
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            with conn.cursor() as cursor:
                yield cursor
            conn.commit()
        except BaseException:
            # A connection that failed may be broken (server restart...): never reuse it.
            with contextlib.suppress(Exception):
                conn.rollback()
            with contextlib.suppress(Exception):
                conn.close()
            raise
        with self._lock:
            if len(self._idle) < _IDLE_MAX:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        with self._duckdb_lock:
            root, self._duckdb = self._duckdb, None
        for conn in [*idle, *([root] if root is not None else [])]:
            with contextlib.suppress(Exception):
                conn.close()

    def _create_table(self, cursor: Any, name: str, layout: list[str]) -> None:
        column = 2 if self.dialect == "sqlite" else 1  # (arrow, PostgreSQL/DuckDB, SQLite)
        row_id = {
            "sqlite": "_row_id INTEGER PRIMARY KEY AUTOINCREMENT",
            "postgresql": "_row_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            # No key nor index: DuckDB's zone maps find a dataset's rows in appended blocks.
            "duckdb": f"_row_id BIGINT NOT NULL DEFAULT nextval('{name}_row_id')",
        }[self.dialect]
        if self.dialect == "duckdb":  # names match TABLE_NAME: safe inside the literal
            cursor.execute(f'CREATE SEQUENCE "{name}_row_id"')
        columns = ", ".join(f"c{i} {_NUMERIC[key][column]}" for i, key in enumerate(layout))
        cursor.execute(
            f'CREATE TABLE "{name}" ({row_id}, _dataset_id BIGINT NOT NULL,'
            f" _partition_id INTEGER NOT NULL, {columns})"
        )
        if self.dialect != "duckdb":
            cursor.execute(
                f'CREATE INDEX "{name}_dataset" ON "{name}" (_dataset_id, _partition_id, _row_id)'
            )

    def create_dataset(self, schema: pa.Schema, table_name: str | None = None) -> tuple[str, int]:
        """Register a new appendable table; returns its SQL table name and dataset id.

        Raises
        ------
        InvalidTable
            A column type SQL cannot hold, or a malformed ``table_name``.
        TableNameConflict
            ``table_name`` exists with another layout, or is a table ferrotile did not make.
        """
        layout = layout_of(schema)
        encoded = ",".join(layout)
        chosen = table_name is not None
        if table_name is None:
            table_name = "ferrotile_t_" + hashlib.md5(encoded.encode()).hexdigest()
        elif not TABLE_NAME.match(table_name) or table_name.startswith("ferrotile_"):
            raise InvalidTable(
                "table_name must match ^[a-z][a-z0-9_]*$ (at most 63 characters) and must not "
                "start with 'ferrotile_'"
            )
        # Two creators of the same new layout race on CREATE TABLE; the loser retries once and
        # then finds the winner's registration.
        for attempt in range(2):
            try:
                with self.transaction() as cursor:
                    cursor.execute(
                        self._sql("SELECT layout FROM ferrotile_tables WHERE name = ?"),
                        parameters=(table_name,),
                    )
                    row = cursor.fetchone()
                    if row is None:
                        self._create_table(cursor, table_name, layout)
                        cursor.execute(
                            self._sql("INSERT INTO ferrotile_tables (name, layout) VALUES (?, ?)"),
                            parameters=(table_name, encoded),
                        )
                    elif row[0] != encoded:
                        raise TableNameConflict(
                            f"Table {table_name!r} holds columns of other types ({row[0]})"
                        )
                    cursor.execute(
                        self._sql(
                            "INSERT INTO ferrotile_datasets (table_name) VALUES (?) RETURNING id"
                        ),
                        parameters=(table_name,),
                    )
                    return table_name, int(cursor.fetchone()[0])
            except TableNameConflict:
                raise
            except Exception as exc:
                if not attempt:
                    continue
                if chosen:  # most likely a table of that name that ferrotile did not make
                    raise TableNameConflict(
                        f"Cannot create table {table_name!r} in the table storage: {exc}"
                    ) from None
                raise StorageError(f"Cannot create a table in the table storage: {exc}") from exc
        raise AssertionError("unreachable")

    def append(self, table_name: str, dataset_id: int, partition: int, table: pa.Table) -> None:
        """Append ``table`` (conformed to the declared schema) to one partition, atomically."""
        layout = layout_of(table.schema)
        n = table.num_rows
        columns = {
            "_dataset_id": pa.chunked_array([pa.array([dataset_id] * n, pa.int64())]),
            "_partition_id": pa.chunked_array([pa.array([partition] * n, pa.int32())]),
        }
        for i, key in enumerate(layout):
            columns[f"c{i}"] = _to_storage(table.column(i), key)
        if n == 0:
            return
        with self.transaction() as cursor:
            if self.dialect != "duckdb":
                cursor.adbc_ingest(table_name, pa.table(columns), mode="append")
                return
            # DuckDB's ingest appends by position (the table starts with _row_id): stage the
            # rows in a temporary table of this connection, then insert them by name.
            cursor.adbc_ingest(_STAGING, pa.table(columns), mode="create", temporary=True)
            names = ", ".join(columns)
            cursor.execute(f'INSERT INTO "{table_name}" ({names}) SELECT {names} FROM {_STAGING}')
            cursor.execute(f"DROP TABLE {_STAGING}")

    def read(
        self,
        table_name: str,
        dataset_id: int,
        schema: pa.Schema,
        partition: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Rows in append order (partition by partition for a full read), as ``schema``."""
        layout = layout_of(schema)
        names = list(dict.fromkeys(columns)) if columns is not None else schema.names
        positions = [schema.get_field_index(name) for name in names]
        select = ", ".join(f"c{i}" for i in positions)
        where = "_dataset_id = ?"
        values: tuple[int, ...] = (dataset_id,)
        if partition is not None:
            where += " AND _partition_id = ?"
            values += (partition,)
        query = self._sql(
            f'SELECT {select} FROM "{table_name}" WHERE {where} ORDER BY _partition_id, _row_id'
        )
        with self.transaction() as cursor:
            if self.dialect == "sqlite":
                # SQLite result columns are typed from the first batch; one batch for the
                # whole result keeps a leading run of NULLs from mistyping the column.
                cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(2**30)})
            cursor.execute(query, parameters=values)
            result = cursor.fetch_arrow_table()
        arrays = [
            _from_storage(result.column(j), layout[i], schema.field(i).type)
            for j, i in enumerate(positions)
        ]
        fields = [schema.field(i) for i in positions]
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))

    def delete_dataset(self, table_name: str, dataset_id: int) -> None:
        """Remove a table's rows and its registration (the shared SQL table stays)."""
        with self.transaction() as cursor:
            cursor.execute(
                self._sql(f'DELETE FROM "{table_name}" WHERE _dataset_id = ?'),
                parameters=(dataset_id,),
            )
            cursor.execute(
                self._sql("DELETE FROM ferrotile_datasets WHERE id = ?"), parameters=(dataset_id,)
            )


_STORES: dict[str, SQLStorage] = {}
_STORES_LOCK = threading.Lock()


def storage_for(uri: str) -> SQLStorage:
    """The process-wide :class:`SQLStorage` of ``uri`` (its connection pool is shared)."""
    with _STORES_LOCK:
        store = _STORES.get(uri)
        if store is None:
            store = _STORES[uri] = SQLStorage(uri)
        return store
