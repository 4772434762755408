"""Readers of registered table files: CSV (``sep`` and friends as ``parameters``) and Parquet.

One file is one partition (Tiled's CSV and Parquet adapters map ``data_uris[i]`` to partition
``i``). Rows are conformed to the registered Arrow schema, so the client gets the columns and
types it was promised, or a 422 naming what differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ferrotile.storage.external.errors import Unreadable

#: pandas.read_csv keyword arguments we honour (Tiled forwards ``parameters`` to pandas).
CSV_PARAMETERS = frozenset({"sep", "delimiter", "quotechar", "skiprows", "encoding"})


def check_csv_parameters(parameters: Mapping[str, Any]) -> None:
    """Refuse CSV reading options this server cannot apply (at registration, not at read)."""
    unknown = set(parameters) - CSV_PARAMETERS
    if unknown:
        raise Unreadable(
            f"Unsupported CSV parameters {sorted(unknown)}; supported: {sorted(CSV_PARAMETERS)}"
        )
    sep = parameters.get("sep", parameters.get("delimiter", ","))
    if not isinstance(sep, str) or len(sep) != 1:
        raise Unreadable(f"CSV separator must be a single character, not {sep!r}")


def read_csv(path: Path, parameters: Mapping[str, Any]) -> pa.Table:
    """Read one CSV file with pandas-style options (``sep``, ``quotechar``, ``skiprows``)."""
    check_csv_parameters(parameters)
    sep = parameters.get("sep", parameters.get("delimiter", ","))
    parse = pacsv.ParseOptions(delimiter=sep, quote_char=parameters.get("quotechar", '"'))
    read = pacsv.ReadOptions(
        skip_rows=int(parameters.get("skiprows", 0)),
        encoding=parameters.get("encoding", "utf8"),
    )
    try:
        return pacsv.read_csv(path, read_options=read, parse_options=parse)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise Unreadable(f"Cannot read {str(path)!r} as CSV: {exc}") from None


def read_parquet(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=list(columns) if columns else None)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise Unreadable(f"Cannot read {str(path)!r} as Parquet: {exc}") from None


def conform_to(table: pa.Table, schema: pa.Schema, columns: Sequence[str] | None) -> pa.Table:
    """The registered schema's fields (or ``columns`` of them), cast to the registered types.

    Fields that are a pandas index (``__index_level_0__``) may be absent from a CSV file; they
    are then left out, as pandas rebuilds a default index.
    """
    wanted = list(columns) if columns else list(schema.names)
    arrays, fields = [], []
    for name in wanted:
        field = schema.field(name)
        if name not in table.column_names:
            if name.startswith("__index_level_"):
                continue
            raise Unreadable(f"The file has no column {name!r} (it has {table.column_names})")
        try:
            arrays.append(table.column(name).cast(field.type))
        except (pa.ArrowException, ValueError) as exc:
            raise Unreadable(f"Column {name!r} cannot be read as {field.type}: {exc}") from None
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))


def read_table(
    mimetype: str,
    paths: Sequence[Path],
    parameters: Mapping[str, Any],
    schema: pa.Schema,
    partition: int | None,
    columns: Sequence[str] | None,
) -> pa.Table:
    """Read one partition (one file), or all of them concatenated when ``partition`` is None."""
    chosen = paths if partition is None else [paths[partition]]
    parts = []
    for path in chosen:
        if not path.is_file():
            raise Unreadable(f"The file {str(path)!r} does not exist")
        if mimetype.startswith("text/csv") or mimetype.endswith("type=text/csv"):
            raw = read_csv(path, parameters)
        else:
            raw = read_parquet(path)
        parts.append(conform_to(raw, schema, columns))
    if not parts:
        return schema.empty_table()
    return pa.concat_tables(parts)
