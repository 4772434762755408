"""Table serializers: ``pyarrow.Table`` in, response body out, one function per media type.

Layouts follow Tiled 0.2.20 (``tiled/serialization/table.py``):

- JSON is one object ``{column: [values, ...]}``; JSON sequence (RFC 7464, Tiled 0.2.19+) is one
  record per row, each ``\\x1e`` + JSON object + ``\\n``. Missing values and NaN are ``null``,
  timestamps ISO 8601, bytes decoded as UTF-8 (latin-1 when that fails).
- CSV and HTML are pandas' ``to_csv`` / ``to_html`` without the index, as Tiled writes them;
  ``text/csv;header=absent`` leaves out the header line. They need pandas, so they are offered
  only where pandas is installed (:data:`PANDAS_AVAILABLE`).
- A pandas index stored in the table (pandas metadata) is not a column: JSON leaves it out, like
  Tiled; Arrow and Parquet keep the table as stored, pandas metadata included.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import pyarrow as pa

TableSerializer = Callable[[pa.Table, Mapping[str, str]], bytes]

#: CSV and HTML exports are pandas' layouts; without pandas they are not offered.
PANDAS_AVAILABLE = importlib.util.find_spec("pandas") is not None


def as_arrow_file(table: pa.Table, params: Mapping[str, str]) -> bytes:
    """The Arrow IPC *file* format (what the stock client reads tables in)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def as_parquet(table: pa.Table, params: Mapping[str, str]) -> bytes:
    """A Parquet file with the table's schema (pandas metadata included)."""
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue())


def _index_columns(table: pa.Table) -> set[str]:
    """Columns that only hold a pandas index (pandas metadata lists them by name)."""
    meta = table.schema.pandas_metadata or {}
    return {name for name in meta.get("index_columns", []) if isinstance(name, str)}


def _safe(value: Any) -> Any:
    # Whatever orjson cannot write itself: bytes as text (as Tiled), the rest (Decimal,
    # timedelta, ...) as its string form rather than failing the whole export.
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    return str(value)


def _columns(table: pa.Table) -> dict[str, list[Any]]:
    hidden = _index_columns(table)
    return {
        name: table.column(name).to_pylist() for name in table.column_names if name not in hidden
    }


def as_json(table: pa.Table, params: Mapping[str, str]) -> bytes:
    """``{"column": [values, ...], ...}`` (Tiled's JSON shape for tables)."""
    return orjson.dumps(_columns(table), default=_safe)


def as_json_seq(table: pa.Table, params: Mapping[str, str]) -> bytes:
    """RFC 7464 JSON text sequence: ``\\x1e{"a": 1, "b": 4}\\n`` per row."""
    columns = _columns(table)
    names = list(columns)
    parts = [
        b"\x1e" + orjson.dumps(dict(zip(names, row, strict=True)), default=_safe) + b"\n"
        for row in zip(*columns.values(), strict=True)
    ]
    return b"".join(parts)


def as_csv(table: pa.Table, params: Mapping[str, str]) -> bytes:
    """pandas ``to_csv`` without the index; ``header=absent`` drops the header line."""
    header = params.get("header", "present") != "absent"
    text: str = table.to_pandas().to_csv(header=header, index=False)
    return text.encode()


def as_html(table: pa.Table, params: Mapping[str, str]) -> bytes:
    """pandas ``to_html`` without the index."""
    file = io.StringIO()
    table.to_pandas().to_html(file, index=False)
    return file.getvalue().encode()
