"""Insertion of a node's data sources and their assets."""

from __future__ import annotations

from collections.abc import Sequence

from ferrotile.catalog.dialect import Cursor, Dialect
from ferrotile.catalog.models import Asset, DataSource
from ferrotile.catalog.rows import encode_json, utc_now_text
from ferrotile.errors import CatalogError


def insert_data_sources(
    cursor: Cursor, dialect: Dialect, node_id: int, sources: Sequence[DataSource]
) -> tuple[DataSource, ...]:
    """Insert data sources of the node ``node_id`` with their assets.

    Call inside the transaction that creates the node.

    Parameters
    ----------
    cursor : Cursor
        A cursor in an open write transaction.
    dialect : Dialect
        The database's dialect.
    node_id : int
        The node the data sources belong to.
    sources : sequence of DataSource
        Their ids and their assets' ids are ignored.

    Returns
    -------
    tuple of DataSource
        The data sources as stored, with database ids.
    """
    return tuple(_insert_one(cursor, dialect, node_id, source) for source in sources)


def _insert_one(cursor: Cursor, dialect: Dialect, node_id: int, source: DataSource) -> DataSource:
    sql = dialect.sql
    cursor.execute(
        sql(
            "INSERT INTO data_sources (node_id, structure_family, structure, mimetype,"
            " parameters, properties, management) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
        ),
        (
            node_id,
            source.structure_family,
            encode_json(source.structure) if source.structure is not None else None,
            source.mimetype,
            encode_json(source.parameters),
            encode_json(source.properties),
            source.management,
        ),
    )
    data_source_id = int(cursor.fetchone()[0])
    return _with_assets(cursor, dialect, data_source_id, source)


def replace_data_source(cursor: Cursor, dialect: Dialect, source: DataSource) -> DataSource:
    """Overwrite a stored data source (structure, mimetype, parameters, properties, assets).

    Used by ``PUT /api/v1/data_source`` on registered data: the asset links are replaced, the
    asset rows themselves are shared by URI and kept.

    Raises
    ------
    CatalogError
        If there is no data source ``source.id``.
    """
    sql = dialect.sql
    cursor.execute(
        sql(
            "UPDATE data_sources SET structure = ?, mimetype = ?, parameters = ?, properties = ?"
            " WHERE id = ? RETURNING node_id"
        ),
        (
            encode_json(source.structure) if source.structure is not None else None,
            source.mimetype,
            encode_json(source.parameters),
            encode_json(source.properties),
            source.id,
        ),
    )
    row = cursor.fetchone()
    if row is None or source.id is None:
        raise CatalogError(f"No data source with id {source.id}")
    cursor.execute(sql("DELETE FROM data_source_assets WHERE data_source_id = ?"), (source.id,))
    cursor.execute(sql("UPDATE nodes SET time_updated = ? WHERE id = ?"), (utc_now_text(), row[0]))
    return _with_assets(cursor, dialect, source.id, source)


def _with_assets(
    cursor: Cursor, dialect: Dialect, data_source_id: int, source: DataSource
) -> DataSource:
    sql = dialect.sql
    assets = []
    for asset in source.assets:
        # Files are identified by URI: re-registering a known file reuses its row (as Tiled
        # does), keeping a size learned earlier if none is given now.
        cursor.execute(
            sql(
                "INSERT INTO assets (data_uri, is_directory, size) VALUES (?, ?, ?)"
                " ON CONFLICT (data_uri) DO UPDATE SET size = COALESCE(excluded.size,"
                " assets.size) RETURNING id, size"
            ),
            (asset.data_uri, asset.is_directory, asset.size),
        )
        asset_id, size = cursor.fetchone()
        cursor.execute(
            sql(
                "INSERT INTO data_source_assets (data_source_id, asset_id, parameter, num)"
                " VALUES (?, ?, ?, ?)"
            ),
            (data_source_id, asset_id, asset.parameter, asset.num),
        )
        assets.append(
            Asset(asset_id, asset.data_uri, asset.is_directory, asset.parameter, asset.num, size)
        )
    return DataSource(
        id=data_source_id,
        structure_family=source.structure_family,
        structure=source.structure,
        mimetype=source.mimetype,
        parameters=source.parameters,
        properties=source.properties,
        management=source.management,
        assets=tuple(assets),
    )
