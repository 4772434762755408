"""Synchronous SQL store of catalog nodes, one DB-API connection per store.

The driver is the standard library's ``sqlite3`` for SQLite (a point lookup by path costs ~17 us
on this machine) and ``psycopg`` 3 for PostgreSQL (~100 us over loopback, mostly the round trip;
see :mod:`ferrotile.catalog.postgres`), against ~150-380 us through ADBC (which remains the
choice for bulk table data). The store is not thread-safe and does no caching;
:class:`ferrotile.catalog.catalog.Catalog` gives it one dedicated thread and caches lookups.

Every read is a single statement (nodes joined to their data sources and assets), so it sees one
consistent snapshot and costs one round trip, including a page of children (no N+1 queries).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from ferrotile.catalog import revisions
from ferrotile.catalog.dialect import SQLITE, Dialect, transaction
from ferrotile.catalog.models import DataSource, Node
from ferrotile.catalog.paths import join_path
from ferrotile.catalog.query_sql import Compiled
from ferrotile.catalog.rows import (
    DATA_SOURCE_COLUMNS,
    DATA_SOURCE_JOINS,
    DATA_SOURCE_ORDER,
    NODE_COLUMNS,
    encode_json,
    format_timestamp,
    nodes_from_rows,
    utc_now,
    utc_now_text,
)
from ferrotile.catalog.sources import insert_data_sources, replace_data_source
from ferrotile.errors import CatalogError, KeyConflict, NotEmpty

_ROOT_ID = 0
_CHUNK = 500  # keeps IN (...) lists under every driver's parameter limit

# All nodes under (and including) the node given as the one parameter, with their depth.
_SUBTREE = (
    "WITH RECURSIVE subtree (id, depth) AS ("
    " SELECT id, 0 FROM nodes WHERE id = ?"
    " UNION ALL SELECT c.id, s.depth + 1 FROM nodes c JOIN subtree s ON c.parent_id = s.id) "
)
_NODE_WITH_SOURCES = (
    f"SELECT {NODE_COLUMNS}, {DATA_SOURCE_COLUMNS} FROM {{nodes}}"
    f" LEFT JOIN data_sources ds ON ds.node_id = n.id {DATA_SOURCE_JOINS}"
)


class SqlStore:
    """Catalog nodes in SQL tables created by :mod:`ferrotile.catalog.schema`.

    Parameters
    ----------
    connection : sqlite3.Connection or psycopg.Connection
        An open connection in autocommit mode, from
        :func:`ferrotile.catalog.sqlite.connect_sqlite` or
        :func:`ferrotile.catalog.postgres.connect_postgresql`. The store owns it and closes it
        in :meth:`close`.
    dialect : Dialect
        The database's SQL dialect.
    driver_error : type of Exception
        Base class of the errors the driver raises (wrapped as CatalogError by the façade).
    integrity_error : type of Exception
        The driver's error for a violated constraint (unique key, foreign key).
    reconnect : callable, optional
        Opens a new connection; :meth:`recover` uses it after the connection was lost (a
        PostgreSQL server restart). None for SQLite, whose connection cannot be lost.
    """

    def __init__(
        self,
        connection: Any,
        dialect: Dialect = SQLITE,
        *,
        driver_error: type[Exception] = sqlite3.Error,
        integrity_error: type[Exception] = sqlite3.IntegrityError,
        reconnect: Callable[[], Any] | None = None,
    ) -> None:
        self._connection = connection
        self._dialect = dialect
        self.driver_error = driver_error
        self._integrity_error = integrity_error
        self._reconnect = reconnect
        sql = dialect.sql
        self._get_by_path = sql(
            _NODE_WITH_SOURCES.format(nodes="nodes n")
            + f" WHERE n.path = ? ORDER BY {DATA_SOURCE_ORDER}"
        )
        self._list_children = sql(
            _NODE_WITH_SOURCES.format(
                nodes="(SELECT * FROM nodes WHERE parent_id = ? ORDER BY id LIMIT ? OFFSET ?) n"
            )
            + f" ORDER BY n.id, {DATA_SOURCE_ORDER}"
        )
        self._subtree = sql(
            _SUBTREE
            + _NODE_WITH_SOURCES.format(nodes="subtree s JOIN nodes n ON n.id = s.id")
            + f" ORDER BY s.depth DESC, n.id, {DATA_SOURCE_ORDER}"
        )

    # -- reads ------------------------------------------------------------------------------

    def get_by_path(self, path: str) -> Node | None:
        """Return the node stored at ``path`` (keys joined by ``/``, ``""`` for the root).

        Parameters
        ----------
        path : str
            The stored path, see :func:`ferrotile.catalog.paths.join_path`.

        Returns
        -------
        Node or None
            The node with its data sources and assets, or None if there is none.
        """
        rows = self._connection.execute(self._get_by_path, (path,)).fetchall()
        return nodes_from_rows(rows)[0] if rows else None

    def list_children(self, parent_id: int, offset: int, limit: int) -> list[Node]:
        """Return a page of a container's children in creation order.

        Parameters
        ----------
        parent_id : int
            The container's id.
        offset, limit : int
            The page: children number ``offset`` to ``offset + limit - 1``.

        Returns
        -------
        list of Node
        """
        rows = self._connection.execute(self._list_children, (parent_id, limit, offset))
        return nodes_from_rows(rows.fetchall())

    def count_children(self, parent_id: int) -> int:
        """Return the number of children of the container ``parent_id``."""
        query = self._dialect.sql("SELECT COUNT(*) FROM nodes WHERE parent_id = ?")
        return int(self._connection.execute(query, (parent_id,)).fetchone()[0])

    # -- writes -----------------------------------------------------------------------------

    def create_node(
        self,
        parent: Node,
        key: str,
        structure_family: str,
        metadata: dict[str, Any],
        specs: list[dict[str, Any]],
        access_tags: list[str],
        data_sources: Sequence[DataSource],
    ) -> Node:
        """Insert a child of ``parent`` with its data sources and assets, in one transaction.

        Parameters
        ----------
        parent : Node
            The container to create the node in.
        key : str
            The new node's key, already validated.
        structure_family, metadata, specs, access_tags
            The node's attributes.
        data_sources : sequence of DataSource
            Their ids (and asset ids) are ignored and assigned by the database. An asset whose
            ``data_uri`` is already known is shared, not duplicated.

        Returns
        -------
        Node
            The stored node, with database ids.

        Raises
        ------
        KeyConflict
            If ``parent`` already has a child ``key``.
        CatalogError
            If ``parent`` no longer exists.
        """
        path = (*parent.path, key)
        now = utc_now()
        stamp = format_timestamp(now)
        sql = self._dialect.sql
        try:
            with transaction(self._connection, self._dialect) as cursor:
                cursor.execute(
                    sql(
                        "INSERT INTO nodes (parent_id, key, path, structure_family, metadata,"
                        " specs, access_tags, time_created, time_updated)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
                    ),
                    (
                        parent.id,
                        key,
                        join_path(path),
                        structure_family,
                        encode_json(metadata),
                        encode_json(specs),
                        encode_json(access_tags),
                        stamp,
                        stamp,
                    ),
                )
                node_id = int(cursor.fetchone()[0])
                stored = insert_data_sources(cursor, self._dialect, node_id, data_sources)
        except self._integrity_error as exc:
            # UNIQUE(path) and the parent foreign key both raise IntegrityError; ask the
            # database which one it was rather than parsing driver messages.
            if self.get_by_path(join_path(path)) is not None:
                raise KeyConflict(f"A node {join_path(path)!r} already exists") from exc
            raise CatalogError(f"Cannot create {join_path(path)!r}: {exc}") from exc
        return Node(
            id=node_id,
            path=path,
            structure_family=structure_family,
            metadata=metadata,
            specs=specs,
            access_tags=access_tags,
            data_sources=stored,
            time_created=now,
            time_updated=now,
        )

    def update_structure(self, data_source_id: int, structure: dict[str, Any]) -> None:
        """Replace a data source's structure and bump its node's ``time_updated``.

        Parameters
        ----------
        data_source_id : int
            The data source to update.
        structure : dict
            The new structure (e.g. an array shape after an extending write).

        Raises
        ------
        CatalogError
            If there is no such data source.
        """
        sql = self._dialect.sql
        with transaction(self._connection, self._dialect) as cursor:
            cursor.execute(
                sql("UPDATE data_sources SET structure = ? WHERE id = ? RETURNING node_id"),
                (encode_json(structure), data_source_id),
            )
            row = cursor.fetchone()
            if row is None:
                raise CatalogError(f"No data source with id {data_source_id}")
            cursor.execute(
                sql("UPDATE nodes SET time_updated = ? WHERE id = ?"), (utc_now_text(), row[0])
            )

    def replace_data_source(self, source: DataSource) -> None:
        """Overwrite data source ``source.id`` and its asset links (one transaction)."""
        with transaction(self._connection, self._dialect) as cursor:
            replace_data_source(cursor, self._dialect, source)

    def delete_node(self, node: Node, recursive: bool) -> list[Node]:
        """Delete a node, and with ``recursive`` its whole subtree, in one transaction.

        Data sources go with their nodes; assets go when no data source references them any
        more. Files on disk are the caller's business: the returned nodes describe them.

        Parameters
        ----------
        node : Node
            The node to delete.
        recursive : bool
            Whether a node with children may be deleted (with them).

        Returns
        -------
        list of Node
            The deleted nodes as they were, deepest first; empty if ``node`` was already gone.

        Raises
        ------
        NotEmpty
            If the node has children and ``recursive`` is false.
        CatalogError
            If ``node`` is the root.
        """
        if node.id == _ROOT_ID:
            raise CatalogError("The root node cannot be deleted")
        sql = self._dialect.sql
        with transaction(self._connection, self._dialect) as cursor:
            if not recursive:
                cursor.execute(sql("SELECT 1 FROM nodes WHERE parent_id = ? LIMIT 1"), (node.id,))
                if cursor.fetchone() is not None:
                    raise NotEmpty(
                        f"{join_path(node.path)!r} has children; delete them or use recursive"
                    )
            cursor.execute(self._subtree, (node.id,))
            deleted = nodes_from_rows(cursor.fetchall())
            cursor.execute(
                sql(_SUBTREE + "DELETE FROM nodes WHERE id IN (SELECT id FROM subtree)"),
                (node.id,),
            )
            asset_ids = sorted(
                {
                    asset.id
                    for gone in deleted
                    for source in gone.data_sources
                    for asset in source.assets
                    if asset.id is not None
                }
            )
            for start in range(0, len(asset_ids), _CHUNK):
                chunk = asset_ids[start : start + _CHUNK]
                cursor.execute(
                    sql(
                        f"DELETE FROM assets WHERE id IN ({', '.join('?' * len(chunk))})"
                        " AND NOT EXISTS (SELECT 1 FROM data_source_assets dsa"
                        " WHERE dsa.asset_id = assets.id)"
                    ),
                    chunk,
                )
        return deleted

    # -- search and metadata edits (SQL in .queries and .revisions) -------------------------

    @property
    def dialect(self) -> Dialect:
        """The database's SQL dialect (callers compile queries for it)."""
        return self._dialect

    def search_children(
        self, parent_id: int, where: Compiled, order: Compiled, offset: int, limit: int
    ) -> list[Node]:
        """Return a page of the children of ``parent_id`` matching ``where``, in ``order``.

        Parameters
        ----------
        parent_id : int
            The container's id.
        where, order : Compiled
            From :func:`~ferrotile.catalog.query_sql.compile_filters` and
            :func:`~ferrotile.catalog.query_sql.compile_sort`.
        offset, limit : int
            The page.

        Returns
        -------
        list of Node
        """
        # The window numbers the matches in sort order, so that the outer join with data
        # sources can keep that order (a subquery's ORDER BY does not survive a join).
        nodes = (
            f"(SELECT n.*, ROW_NUMBER() OVER (ORDER BY {order.sql}) AS ft_rank FROM nodes n"
            f" WHERE n.parent_id = ? AND {where.sql} ORDER BY ft_rank LIMIT ? OFFSET ?) n"
        )
        query = self._dialect.sql(
            _NODE_WITH_SOURCES.format(nodes=nodes) + f" ORDER BY n.ft_rank, {DATA_SOURCE_ORDER}"
        )
        params = [*order.params, parent_id, *where.params, limit, offset]
        return nodes_from_rows(self._connection.execute(query, params).fetchall())

    def count_matching(self, parent_id: int, where: Compiled) -> int:
        """Return how many children of ``parent_id`` match ``where``."""
        query = self._dialect.sql(
            f"SELECT COUNT(*) FROM nodes n WHERE n.parent_id = ? AND {where.sql}"
        )
        return int(self._connection.execute(query, [parent_id, *where.params]).fetchone()[0])

    def replace_metadata(
        self,
        node_id: int,
        metadata: dict[str, Any],
        specs: list[dict[str, Any]],
        access_tags: list[str],
        keep_revision: bool,
    ) -> int | None:
        """See :func:`ferrotile.catalog.revisions.replace_metadata`."""
        return revisions.replace_metadata(
            self._connection, self._dialect, node_id, metadata, specs, access_tags, keep_revision
        )

    def list_revisions(
        self, node_id: int, offset: int, limit: int
    ) -> tuple[list[revisions.Revision], int]:
        """See :func:`ferrotile.catalog.revisions.list_revisions`."""
        return revisions.list_revisions(self._connection, self._dialect, node_id, offset, limit)

    def delete_revision(self, node_id: int, number: int) -> bool:
        """See :func:`ferrotile.catalog.revisions.delete_revision`."""
        return revisions.delete_revision(self._connection, self._dialect, node_id, number)

    def recover(self) -> None:
        """Replace a lost connection (call after a driver error). Never raises.

        If the new connection cannot be opened either, the old one stays and the next call
        fails again, then recovers once the database is back.
        """
        if self._reconnect is None or not getattr(self._connection, "broken", False):
            return
        try:
            connection = self._reconnect()
        except Exception:
            return
        self._connection.close()
        self._connection = connection

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()
