"""Metadata edits and their history: the SQL behind PATCH/PUT ``/metadata`` and ``/revisions``.

Replacing a node's metadata first copies the current metadata and specs into ``revisions``
(table of schema version 2) under the next revision number of that node, unless the caller
drops the revision. Numbers count from 1 per node; as in Tiled, the next number is one more
than the highest remaining, so deleting the newest revision frees its number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ferrotile.catalog.dialect import Connection, Dialect, transaction
from ferrotile.catalog.rows import encode_json, utc_now_text
from ferrotile.errors import CatalogError


@dataclass(frozen=True, slots=True)
class Revision:
    """A previous version of a node's metadata and specs.

    ``time_updated`` is when this version was replaced (when the revision was recorded).
    """

    revision_number: int
    metadata: dict[str, Any]
    specs: list[dict[str, Any]]
    time_updated: datetime

    def to_json(self) -> dict[str, Any]:
        """Return the revision as an item of ``GET /api/v1/revisions``.

        Returns
        -------
        dict
            ``{"revision_number", "attributes": {"metadata", "specs", "time_updated"}}``.
        """
        return {
            "revision_number": self.revision_number,
            "attributes": {
                "metadata": self.metadata,
                "specs": self.specs,
                "time_updated": self.time_updated.isoformat(),
            },
        }


def replace_metadata(
    connection: Connection,
    dialect: Dialect,
    node_id: int,
    metadata: dict[str, Any],
    specs: list[dict[str, Any]],
    access_tags: list[str],
    keep_revision: bool,
) -> int | None:
    """Store new metadata, specs and access tags for a node, in one transaction.

    Parameters
    ----------
    connection : Connection
        An autocommit connection.
    dialect : Dialect
    node_id : int
    metadata, specs, access_tags
        The complete new values.
    keep_revision : bool
        Record the current metadata and specs as a revision first.

    Returns
    -------
    int or None
        The new revision's number, or None without ``keep_revision``.

    Raises
    ------
    CatalogError
        If the node does not exist.
    """
    sql = dialect.sql
    now = utc_now_text()
    with transaction(connection, dialect) as cursor:
        # Touching the row first locks it on PostgreSQL, so that two concurrent edits of one
        # node number their revisions one after the other (SQLite's BEGIN IMMEDIATE already
        # serialises writers); RETURNING gives the values current under that lock.
        cursor.execute(
            sql("UPDATE nodes SET time_updated = ? WHERE id = ? RETURNING metadata, specs"),
            (now, node_id),
        )
        current = cursor.fetchone()
        if current is None:
            raise CatalogError(f"No node with id {node_id}")
        number = None
        if keep_revision:
            cursor.execute(
                sql(
                    "INSERT INTO revisions (node_id, revision_number, metadata, specs,"
                    " time_updated) VALUES (?, (SELECT COALESCE(MAX(revision_number), 0) + 1"
                    " FROM revisions WHERE node_id = ?), ?, ?, ?) RETURNING revision_number"
                ),
                (node_id, node_id, current[0], current[1], now),
            )
            number = int(cursor.fetchone()[0])
        cursor.execute(
            sql("UPDATE nodes SET metadata = ?, specs = ?, access_tags = ? WHERE id = ?"),
            (encode_json(metadata), encode_json(specs), encode_json(access_tags), node_id),
        )
    return number


def list_revisions(
    connection: Connection, dialect: Dialect, node_id: int, offset: int, limit: int
) -> tuple[list[Revision], int]:
    """Return a page of a node's revisions, oldest first, and how many it has in all.

    Parameters
    ----------
    connection : Connection
    dialect : Dialect
    node_id : int
    offset, limit : int
        The page.

    Returns
    -------
    (list of Revision, int)
    """
    sql = dialect.sql
    cursor = connection.cursor()
    # One statement, so the page and the count come from one snapshot.
    cursor.execute(
        sql(
            "SELECT r.revision_number, r.metadata, r.specs, r.time_updated, c.total"
            " FROM (SELECT COUNT(*) AS total FROM revisions WHERE node_id = ?) c"
            " LEFT JOIN (SELECT * FROM revisions WHERE node_id = ?"
            " ORDER BY revision_number LIMIT ? OFFSET ?) r ON 1 = 1"
            " ORDER BY r.revision_number"
        ),
        (node_id, node_id, limit, offset),
    )
    rows = cursor.fetchall()
    total = int(rows[0][4]) if rows else 0
    revisions = [
        Revision(
            revision_number=int(row[0]),
            metadata=orjson.loads(row[1]),
            specs=orjson.loads(row[2]),
            time_updated=datetime.fromisoformat(row[3]),
        )
        for row in rows
        if row[0] is not None
    ]
    return revisions, total


def delete_revision(connection: Connection, dialect: Dialect, node_id: int, number: int) -> bool:
    """Delete revision ``number`` of a node.

    Returns
    -------
    bool
        Whether there was such a revision.
    """
    with transaction(connection, dialect) as cursor:
        cursor.execute(
            dialect.sql(
                "DELETE FROM revisions WHERE node_id = ? AND revision_number = ?"
                " RETURNING revision_number"
            ),
            (node_id, number),
        )
        return cursor.fetchone() is not None
