"""Conversion between catalog records and database rows.

JSON documents are stored as TEXT (encoded with orjson) and timestamps as ISO-8601 UTC TEXT with
microseconds, so that both sort correctly as text and read the same in SQLite and PostgreSQL.
The column lists below fix the order that the decoders rely on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from ferrotile.catalog.models import Asset, DataSource, Node

NODE_COLUMNS = (
    "n.id, n.path, n.structure_family, n.metadata, n.specs, n.access_tags,"
    " n.time_created, n.time_updated"
)
NODE_COLUMN_COUNT = 8

DATA_SOURCE_COLUMNS = (
    "ds.node_id, ds.id, ds.structure_family, ds.structure, ds.mimetype, ds.parameters,"
    " ds.properties, ds.management, a.id, a.data_uri, a.is_directory, a.size,"
    " dsa.parameter, dsa.num"
)
# LEFT JOINs: a data source may have no assets (writable data before its first write).
DATA_SOURCE_JOINS = (
    "LEFT JOIN data_source_assets dsa ON dsa.data_source_id = ds.id"
    " LEFT JOIN assets a ON a.id = dsa.asset_id"
)
# Data sources in creation order, assets in creation order within each (file series by num).
DATA_SOURCE_ORDER = "ds.id, a.id"


def encode_json(value: Any) -> str:
    """Encode a JSON-compatible value for a TEXT column.

    Parameters
    ----------
    value : Any
        Dicts, lists, strings, numbers, booleans or None.

    Returns
    -------
    str
        Compact JSON.
    """
    return orjson.dumps(value).decode()


def format_timestamp(moment: datetime) -> str:
    """Return the stored text of a timestamp (UTC, microseconds, fixed width).

    Parameters
    ----------
    moment : datetime
        An aware datetime.

    Returns
    -------
    str
        E.g. ``"2025-01-31T12:00:00.000000+00:00"``.
    """
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def utc_now_text() -> str:
    """Return the current time in stored form."""
    return format_timestamp(utc_now())


def path_from_text(text: str) -> tuple[str, ...]:
    """Return the key tuple of a stored ``nodes.path`` (``""`` is the root)."""
    return tuple(text.split("/")) if text else ()


def node_from_row(row: Sequence[Any], data_sources: tuple[DataSource, ...]) -> Node:
    """Build a node from the first :data:`NODE_COLUMN_COUNT` values of ``row``.

    Parameters
    ----------
    row : sequence
        A row starting with the :data:`NODE_COLUMNS`.
    data_sources : tuple of DataSource
        The node's data sources, decoded separately.

    Returns
    -------
    Node
    """
    return Node(
        id=row[0],
        path=path_from_text(row[1]),
        structure_family=row[2],
        metadata=orjson.loads(row[3]),
        specs=orjson.loads(row[4]),
        access_tags=orjson.loads(row[5]),
        data_sources=data_sources,
        time_created=datetime.fromisoformat(row[6]),
        time_updated=datetime.fromisoformat(row[7]),
    )


def data_sources_from_rows(
    rows: Iterable[Sequence[Any]], offset: int = 0
) -> dict[int, tuple[DataSource, ...]]:
    """Group joined data-source/asset rows by node.

    Parameters
    ----------
    rows : iterable of sequences
        Rows holding the :data:`DATA_SOURCE_COLUMNS` from position ``offset``, one per
        (data source, asset) pair, ordered by :data:`DATA_SOURCE_ORDER`. Rows whose data
        source id is NULL (a node without data sources in a LEFT JOIN) are skipped.
    offset : int
        Index of the first data-source column in each row.

    Returns
    -------
    dict
        Node id -> its data sources in order. Nodes without data sources are absent.
    """
    heads: dict[int, Sequence[Any]] = {}
    assets: dict[int, list[Asset]] = {}
    for row in rows:
        values = row[offset:]
        data_source_id = values[1]
        if data_source_id is None:
            continue
        if data_source_id not in heads:
            heads[data_source_id] = values
            assets[data_source_id] = []
        if values[8] is not None:
            assets[data_source_id].append(
                Asset(
                    id=values[8],
                    data_uri=values[9],
                    is_directory=bool(values[10]),
                    size=values[11],
                    parameter=values[12],
                    num=values[13],
                )
            )
    grouped: dict[int, list[DataSource]] = {}
    for data_source_id, values in heads.items():
        grouped.setdefault(values[0], []).append(
            DataSource(
                id=data_source_id,
                structure_family=values[2],
                structure=orjson.loads(values[3]) if values[3] is not None else None,
                mimetype=values[4],
                parameters=orjson.loads(values[5]),
                properties=orjson.loads(values[6]),
                management=values[7],
                assets=tuple(assets[data_source_id]),
            )
        )
    return {node_id: tuple(sources) for node_id, sources in grouped.items()}


def nodes_from_rows(rows: Sequence[Sequence[Any]]) -> list[Node]:
    """Decode rows of :data:`NODE_COLUMNS` followed by :data:`DATA_SOURCE_COLUMNS`.

    Parameters
    ----------
    rows : sequence of sequences
        Joined rows (a node repeats once per data source and asset), grouped by node.

    Returns
    -------
    list of Node
        One node per distinct id, in order of first appearance.
    """
    sources = data_sources_from_rows(rows, NODE_COLUMN_COUNT)
    nodes: dict[int, Node] = {}
    for row in rows:
        if row[0] not in nodes:
            nodes[row[0]] = node_from_row(row, sources.get(row[0], ()))
    return list(nodes.values())
