"""Catalog tables and their versioned migrations.

``MIGRATIONS[i]`` holds the steps that bring the schema from version ``i`` to ``i + 1``. Applied
versions are recorded in ``ferrotile_schema_version``; :func:`migrate` applies the missing ones
in one transaction, so a failed migration leaves the database as it was. Never edit a released
step: append a new version instead.
"""

from __future__ import annotations

from collections.abc import Callable

from ferrotile.catalog.dialect import Connection, Cursor, Dialect, transaction
from ferrotile.catalog.rows import encode_json, utc_now_text

Step = str | Callable[[Cursor, Dialect], None]
"""A SQL statement (``{pk}`` stands for the dialect's auto-increment key) or a function."""

VERSION_TABLE = "ferrotile_schema_version"


def _insert_root(cursor: Cursor, dialect: Dialect) -> None:
    # The root is a real row, with id 0 as in Tiled (streaming uses the id as the root's topic),
    # so that children reference it through parent_id like any other container.
    now = utc_now_text()
    cursor.execute(
        dialect.sql(
            "INSERT INTO nodes (id, parent_id, key, path, structure_family, metadata, specs,"
            " access_tags, time_created, time_updated)"
            " VALUES (0, NULL, '', '', 'container', ?, ?, ?, ?, ?)"
        ),
        (encode_json({}), encode_json([]), encode_json([]), now, now),
    )


MIGRATIONS: tuple[tuple[Step, ...], ...] = (
    # Version 1: nodes, data sources, assets.
    (
        """CREATE TABLE nodes (
            id {pk},
            parent_id BIGINT REFERENCES nodes (id),
            key TEXT NOT NULL,
            path TEXT NOT NULL UNIQUE,
            structure_family TEXT NOT NULL,
            metadata TEXT NOT NULL,
            specs TEXT NOT NULL,
            access_tags TEXT NOT NULL,
            time_created TEXT NOT NULL,
            time_updated TEXT NOT NULL,
            UNIQUE (parent_id, key)
        )""",
        """CREATE TABLE data_sources (
            id {pk},
            node_id BIGINT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
            structure_family TEXT NOT NULL,
            structure TEXT,
            mimetype TEXT NOT NULL,
            parameters TEXT NOT NULL,
            properties TEXT NOT NULL,
            management TEXT NOT NULL
        )""",
        "CREATE INDEX data_sources_node_id ON data_sources (node_id)",
        """CREATE TABLE assets (
            id {pk},
            data_uri TEXT NOT NULL UNIQUE,
            is_directory BOOLEAN NOT NULL,
            size BIGINT
        )""",
        """CREATE TABLE data_source_assets (
            data_source_id BIGINT NOT NULL REFERENCES data_sources (id) ON DELETE CASCADE,
            asset_id BIGINT NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
            parameter TEXT,
            num INTEGER
        )""",
        "CREATE INDEX data_source_assets_data_source_id ON data_source_assets (data_source_id)",
        "CREATE INDEX data_source_assets_asset_id ON data_source_assets (asset_id)",
        _insert_root,
    ),
    # Version 2: metadata revisions (previous metadata and specs of a node, numbered per node).
    (
        """CREATE TABLE revisions (
            id {pk},
            node_id BIGINT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
            revision_number INTEGER NOT NULL,
            metadata TEXT NOT NULL,
            specs TEXT NOT NULL,
            time_updated TEXT NOT NULL,
            UNIQUE (node_id, revision_number)
        )""",
    ),
)

LATEST_VERSION = len(MIGRATIONS)


def _read_version(cursor: Cursor, dialect: Dialect) -> int:
    cursor.execute(dialect.sql(dialect.table_exists), (VERSION_TABLE,))
    if cursor.fetchone() is None:
        return 0
    cursor.execute(f"SELECT MAX(version) FROM {VERSION_TABLE}")
    row = cursor.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def schema_version(connection: Connection, dialect: Dialect) -> int:
    """Return the catalog schema version of a database.

    Parameters
    ----------
    connection : Connection
        An open connection.
    dialect : Dialect
        The database's dialect.

    Returns
    -------
    int
        0 if the database has no ferrotile schema, else the highest applied version.
    """
    return _read_version(connection.cursor(), dialect)


def migrate(connection: Connection, dialect: Dialect) -> int:
    """Apply the migrations the database is missing, in one transaction.

    Parameters
    ----------
    connection : Connection
        A connection in autocommit mode.
    dialect : Dialect
        The database's dialect.

    Returns
    -------
    int
        The schema version after migrating (:data:`LATEST_VERSION`).

    Raises
    ------
    ValueError
        If the database was created by a newer ferrotile (its version is above
        :data:`LATEST_VERSION`).
    """
    with transaction(connection, dialect) as cursor:
        # Read the version inside the write transaction: a concurrent process migrating the
        # same file then either finished first (nothing left to do) or waits for us.
        current = _read_version(cursor, dialect)
        if current > LATEST_VERSION:
            raise ValueError(
                f"catalog schema version {current} is newer than this ferrotile supports "
                f"({LATEST_VERSION})"
            )
        if current == 0:
            cursor.execute(
                f"CREATE TABLE {VERSION_TABLE} (version INTEGER PRIMARY KEY,"
                " applied_at TEXT NOT NULL)"
            )
        for version in range(current + 1, LATEST_VERSION + 1):
            for step in MIGRATIONS[version - 1]:
                if isinstance(step, str):
                    cursor.execute(step.format(pk=dialect.autoincrement_pk))
                else:
                    step(cursor, dialect)
            cursor.execute(
                dialect.sql(f"INSERT INTO {VERSION_TABLE} (version, applied_at) VALUES (?, ?)"),
                (version, utc_now_text()),
            )
    return LATEST_VERSION
