"""Opening a SQLite catalog file: connection settings, existence and schema checks.

Errors are :class:`~ferrotile.errors.CatalogError` with a one-line message naming the file and
what to do, since they end up printed by ``ferrotile serve`` at startup.
"""

from __future__ import annotations

import os
import sqlite3
import time

from ferrotile.catalog.dialect import SQLITE
from ferrotile.catalog.query_sql import register_sqlite_functions
from ferrotile.catalog.schema import LATEST_VERSION, migrate, schema_version
from ferrotile.catalog.store import SqlStore
from ferrotile.errors import CatalogError

MEMORY = ":memory:"
BUSY_TIMEOUT_MS = 5_000
"""How long a write waits for another process holding the SQLite write lock."""


def connect_sqlite(path: str) -> sqlite3.Connection:
    """Open a SQLite database configured for concurrent readers and one writer.

    Parameters
    ----------
    path : str
        File path, or ``":memory:"``.

    Returns
    -------
    sqlite3.Connection
        In autocommit mode (transactions are explicit, see
        :func:`ferrotile.catalog.dialect.transaction`), WAL journal, ``synchronous=NORMAL``
        (durable at checkpoints and never corrupted in WAL mode), foreign keys enforced. Like
        any ``sqlite3`` connection it may only be used on the thread that opened it.
    """
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        # busy_timeout first: switching to WAL itself needs a lock another process may hold.
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _switch_to_wal(connection)
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        register_sqlite_functions(connection)  # REGEXP and full-text search (.queries)
    except BaseException:
        connection.close()
        raise
    return connection


def _switch_to_wal(connection: sqlite3.Connection) -> None:
    # While another connection switches the same new file to WAL, SQLite fails at once with
    # SQLITE_BUSY instead of waiting on busy_timeout (seen with concurrent --init): retry.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _check_creatable(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CatalogError(
            f"Cannot create catalog database {path}: directory {directory} does not exist"
        )
    if not os.access(directory, os.W_OK):
        raise CatalogError(
            f"Cannot create catalog database {path}: directory {directory} is not writable"
        )


def open_sqlite_store(path: str, *, init: bool = False, create: bool = False) -> SqlStore:
    """Open (and if asked, create or migrate) a SQLite catalog.

    Parameters
    ----------
    path : str
        File path, or ``":memory:"`` (always created afresh with the schema).
    init : bool
        Create the file if needed and apply missing migrations (``--init``). Idempotent.
    create : bool
        Create the file with the schema if it does not exist (or is empty), but refuse an
        existing database without an up-to-date schema.

    Returns
    -------
    SqlStore
        Owning a connection usable only on the calling thread.

    Raises
    ------
    CatalogError
        If the file is missing (without ``init``/``create``), cannot be created or opened,
        is not a ferrotile catalog, or has an older schema (without ``init``) or a newer one.
    """
    memory = path == MEMORY
    new = memory
    if not memory:
        if os.path.isdir(path):
            raise CatalogError(f"Catalog database {path} is a directory")
        if not os.path.exists(path):
            if not (init or create):
                raise CatalogError(f"Database {path} does not exist. Use --init to create it.")
            _check_creatable(path)
            new = True
        elif os.path.getsize(path) == 0:  # e.g. made by mkstemp: an empty SQLite database
            new = True
    try:
        connection = connect_sqlite(path)
    except sqlite3.Error as exc:
        raise CatalogError(f"Cannot open catalog database {path}: {exc}") from exc
    try:
        _prepare_schema(connection, path, may_migrate=init or memory or (create and new))
    except BaseException:
        connection.close()
        raise
    return SqlStore(connection, SQLITE)


def _prepare_schema(connection: sqlite3.Connection, path: str, *, may_migrate: bool) -> None:
    try:
        version = schema_version(connection, SQLITE)
    except sqlite3.Error as exc:
        raise CatalogError(f"Cannot read catalog database {path}: {exc}") from exc
    if version == LATEST_VERSION:
        return
    if version > LATEST_VERSION:
        raise CatalogError(
            f"Database {path} has catalog schema version {version}, newer than this ferrotile "
            f"supports ({LATEST_VERSION}). Upgrade ferrotile."
        )
    if not may_migrate:
        if version == 0:
            raise CatalogError(
                f"Database {path} has no ferrotile catalog schema. Use --init to initialize it."
            )
        raise CatalogError(
            f"Database {path} has catalog schema version {version}, older than "
            f"{LATEST_VERSION}. Use --init to migrate it."
        )
    try:
        migrate(connection, SQLITE)
    except (sqlite3.Error, ValueError) as exc:
        raise CatalogError(f"Cannot initialize catalog database {path}: {exc}") from exc
