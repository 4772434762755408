"""Tiled table structures and Arrow IPC request bodies, and checking a body against a structure.

A Tiled table structure is ``{"arrow_schema": "data:application/vnd.apache.arrow.file;base64,
<IPC-serialized schema>", "npartitions": int, "columns": [str], "resizable": bool}``. The schema
may carry pandas metadata (``b"pandas"``) naming index columns: they are fields of the schema
but not ``columns``, and uploaded tables keep them so that a DataFrame's index round-trips.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from ferrotile.errors import FerrotileError

__all__ = [
    "ARROW_FILE",
    "SCHEMA_PREFIX",
    "InvalidTable",
    "SchemaMismatch",
    "TableStructure",
    "conform",
    "decode_schema",
    "encode_schema",
    "index_columns",
    "read_ipc_file",
    "select_columns",
    "write_ipc_file",
]

ARROW_FILE = "application/vnd.apache.arrow.file"
SCHEMA_PREFIX = f"data:{ARROW_FILE};base64,"
#: Tiled stores the partition number in 16 bits (``_partition_id SMALLINT``); so do we.
MAX_PARTITIONS = 32767


class InvalidTable(FerrotileError, ValueError):
    """A structure or a request body is not a valid table."""


class SchemaMismatch(InvalidTable):
    """A body's columns or types do not fit the table's schema."""


def encode_schema(schema: pa.Schema) -> str:
    """The ``arrow_schema`` data URI of ``schema`` (as Tiled's ``TableStructure`` builds it)."""
    return SCHEMA_PREFIX + base64.b64encode(schema.serialize().to_pybytes()).decode()


def decode_schema(uri: str) -> pa.Schema:
    """Parse an ``arrow_schema`` data URI; :class:`InvalidTable` when it is not one."""
    if not isinstance(uri, str) or not uri.startswith(SCHEMA_PREFIX):
        raise InvalidTable(f"arrow_schema must be a string starting with {SCHEMA_PREFIX!r}")
    try:
        raw = base64.b64decode(uri[len(SCHEMA_PREFIX) :], validate=True)
        return pa.ipc.read_schema(pa.py_buffer(raw))
    except (binascii.Error, pa.ArrowException, ValueError) as exc:
        raise InvalidTable(f"arrow_schema is not a base64 Arrow IPC schema: {exc}") from None


def index_columns(schema: pa.Schema) -> list[str]:
    """Fields that pandas metadata marks as the DataFrame index (``RangeIndex`` has none)."""
    metadata = schema.metadata or {}
    raw = metadata.get(b"pandas")
    if raw is None:
        return []
    try:
        entries = orjson.loads(raw).get("index_columns", [])
    except (orjson.JSONDecodeError, AttributeError):
        return []
    return [name for name in entries if isinstance(name, str) and name in schema.names]


@dataclass(frozen=True)
class TableStructure:
    """A validated Tiled table structure (the JSON is kept as sent, so it reads back as is)."""

    schema: pa.Schema
    arrow_schema: str
    npartitions: int
    columns: tuple[str, ...]
    resizable: bool = False

    @classmethod
    def from_json(cls, data: Any) -> TableStructure:
        """Validate a structure from a request; :class:`InvalidTable` names the problem.

        Column names starting with ``_`` are refused, as Tiled reserves them.
        """
        if not isinstance(data, dict):
            raise InvalidTable("A table structure must be a JSON object")
        schema = decode_schema(data.get("arrow_schema"))  # type: ignore[arg-type]
        npartitions = data.get("npartitions")
        if isinstance(npartitions, bool) or not isinstance(npartitions, int):
            raise InvalidTable("npartitions must be an integer")
        if not 1 <= npartitions <= MAX_PARTITIONS:
            raise InvalidTable(f"npartitions must be between 1 and {MAX_PARTITIONS}")
        columns = data.get("columns")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise InvalidTable("columns must be a list of strings")
        for column in columns:
            if column.startswith("_"):
                raise InvalidTable(
                    "Tiled reserved column names starting with '_' for internal use."
                )
            if column not in schema.names:
                raise InvalidTable(f"Column {column!r} is not a field of arrow_schema")
        if len(set(columns)) != len(columns) or len(set(schema.names)) != len(schema.names):
            raise InvalidTable("Column names must be unique")
        resizable = data.get("resizable", False)
        if not isinstance(resizable, bool):
            raise InvalidTable("resizable must be true or false")
        return cls(schema, data["arrow_schema"], npartitions, tuple(columns), resizable)

    def to_json(self) -> dict[str, Any]:
        return {
            "arrow_schema": self.arrow_schema,
            "npartitions": self.npartitions,
            "columns": list(self.columns),
            "resizable": self.resizable,
        }

    def check_partition(self, partition: int) -> None:
        if not 0 <= partition < self.npartitions:
            raise IndexError(
                f"Partition {partition} out of range: the table has {self.npartitions}"
            )


def read_ipc_file(body: bytes) -> pa.Table:
    """Decode an Arrow IPC *file* body (what ``pyarrow.ipc.new_file`` writes)."""
    try:
        return pa.ipc.open_file(pa.py_buffer(body)).read_all()
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise InvalidTable(f"The body is not an Arrow IPC file: {exc}") from None


def write_ipc_file(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _kind(t: pa.DataType) -> str:
    """A coarse type class: values convert within a class, never across (but int/float)."""
    if pa.types.is_dictionary(t):
        return _kind(t.value_type)
    for kind, test in (
        ("bool", pa.types.is_boolean),
        ("int", pa.types.is_integer),
        ("float", pa.types.is_floating),
        ("string", lambda x: pa.types.is_string(x) or pa.types.is_large_string(x)),
        ("binary", lambda x: pa.types.is_binary(x) or pa.types.is_large_binary(x)),
        ("date", pa.types.is_date),
        ("time", pa.types.is_time),
        ("duration", pa.types.is_duration),
    ):
        if test(t):
            return kind
    if pa.types.is_timestamp(t):
        # Naive and zone-aware times are different things; any two zones are convertible.
        return "timestamp-tz" if t.tz else "timestamp"
    return str(t)


def _convert(column: pa.ChunkedArray, name: str, target: pa.DataType) -> pa.ChunkedArray:
    source = column.type
    if source == target:
        return column
    # int <-> float: pandas turns an integer column with missing values into floats; a safe
    # cast accepts it back as long as every value is integral.
    convertible = (
        pa.types.is_null(source)
        or _kind(source) == _kind(target)
        or {_kind(source), _kind(target)} == {"int", "float"}
    )
    if not convertible:
        raise SchemaMismatch(f"Column {name!r} has type {source}; the table's schema says {target}")
    try:
        return column.cast(target, safe=True)
    except (pa.ArrowException, ValueError) as exc:
        raise SchemaMismatch(f"Column {name!r} cannot be converted to {target}: {exc}") from None


def conform(table: pa.Table, schema: pa.Schema, *, keep_index: bool) -> pa.Table:
    """Check ``table`` (a request body) against ``schema`` and convert it to the schema's types.

    Parameters
    ----------
    table : pyarrow.Table
        The decoded body.
    schema : pyarrow.Schema
        The table's declared schema.
    keep_index : bool
        Uploaded (Parquet) tables keep the body's pandas index columns and metadata, so a
        DataFrame's index round-trips; the schema's own index fields are then optional.
        Appendable (SQL) tables store exactly the schema's fields; the body's pandas index
        columns (``write``/``append`` of a DataFrame adds one) are dropped.

    Returns
    -------
    pyarrow.Table
        Every field of ``schema`` (but optional index fields) present with the schema's type.

    Raises
    ------
    SchemaMismatch
        A column is missing, unexpected, or of an incompatible type (or a value does not fit).
    """
    body_index = set(index_columns(table.schema))
    optional = set(index_columns(schema)) if keep_index else set()
    present = set(table.column_names)
    if len(present) != table.num_columns:
        raise SchemaMismatch("Column names in the body must be unique")
    missing = [f.name for f in schema if f.name not in present and f.name not in optional]
    if missing:
        raise SchemaMismatch(f"Missing columns: {missing}")
    unexpected = [n for n in table.column_names if n not in schema.names and n not in body_index]
    if unexpected:
        raise SchemaMismatch(f"Unexpected columns (not in the table's schema): {unexpected}")
    if not keep_index:
        arrays = [_convert(table.column(f.name), f.name, f.type) for f in schema]
        return pa.Table.from_arrays(arrays, schema=schema)
    names, arrays = [], []
    for name in table.column_names:
        column = table.column(name)
        if name in schema.names and name not in body_index:
            column = _convert(column, name, schema.field(name).type)
        names.append(name)
        arrays.append(column)
    fields = [pa.field(n, a.type) for n, a in zip(names, arrays, strict=True)]
    # The body's metadata describes its own index, which is what is stored.
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=table.schema.metadata))


def select_columns(table: pa.Table, columns: Sequence[str] | None) -> pa.Table:
    """``columns`` of ``table`` plus its index columns (the index goes with any selection).

    Raises
    ------
    KeyError
        With the first name that is not a column.
    """
    if columns is None:
        return table
    for name in columns:
        if name not in table.column_names:
            raise KeyError(name)
    keep = list(dict.fromkeys(columns))
    keep += [name for name in index_columns(table.schema) if name not in keep]
    return table.select(keep)
