"""Opening a PostgreSQL catalog: connection, schema checks and ``--init``.

The driver is ``psycopg`` 3, used synchronously on the catalog's dedicated thread exactly like
``sqlite3`` (see :mod:`ferrotile.catalog.catalog`), so the same :class:`SqlStore` runs on both
databases. Per-request lookups must be cheap. Measured on this machine against the private test
PostgreSQL (tests/postgres.py), the store's one-statement ``get_by_path`` of an array node with
one data source and two assets costs ~100 us per call over loopback TCP (~90 us over the Unix
socket), of which ~70-77 us is the bare round trip of ``SELECT 1``; stdlib ``sqlite3`` does the
same lookup in ~17 us, ADBC a point query in ~150-380 us. psycopg switches to server-side
prepared statements after a few executions, so the planning cost is paid once. An
asynchronous driver (``asyncpg``, psycopg's async API) would not shorten the round trip and
would fork the store into an async and a sync (SQLite) version; SQLAlchemy would add its
per-statement overhead on top of psycopg. The catalog thread serialises calls, so one
connection per process is enough, and warm lookups are served by the catalog's cache.

Errors are :class:`~ferrotile.errors.CatalogError` with a one-line message naming the database
without its password (libpq echoes the whole connection string in some of its errors), since
they end up printed by ``ferrotile serve`` at startup.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ferrotile.catalog.dialect import POSTGRESQL
from ferrotile.catalog.schema import LATEST_VERSION, migrate, schema_version
from ferrotile.catalog.store import SqlStore
from ferrotile.catalog.uri import CatalogLocation, redact
from ferrotile.errors import CatalogError

CONNECT_TIMEOUT_S = 10
"""libpq's ``connect_timeout`` unless the URI sets one (libpq's default is to wait forever)."""

MIGRATION_LOCK = 0x66657272_6F74696C  # "ferrotil"
"""Key of the session advisory lock held while migrating, so concurrent ``--init`` runs
(several containers starting at once) apply each migration once, one after the other."""

_PROBLEMS = (psycopg.Error, ValueError)  # psycopg raises ValueError for some bad parameters


def connect_postgresql(location: CatalogLocation) -> psycopg.Connection[Any]:
    """Open a connection to a PostgreSQL catalog database.

    Parameters
    ----------
    location : CatalogLocation
        A ``postgresql`` location from :func:`ferrotile.catalog.uri.parse_catalog_uri`.

    Returns
    -------
    psycopg.Connection
        In autocommit mode (transactions are explicit, see
        :func:`ferrotile.catalog.dialect.transaction`). Use it from one thread at a time.

    Raises
    ------
    CatalogError
        If the URI is invalid or the server cannot be reached or refuses the connection.
    """
    try:
        params = conninfo_to_dict(location.path)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        params.setdefault("application_name", "ferrotile")
        return psycopg.connect(make_conninfo("", **params), autocommit=True)
    except _PROBLEMS as exc:
        raise CatalogError(
            f"Cannot connect to catalog database {location.display}: {redact(str(exc), location)}"
        ) from None  # the chained driver error may show the connection string


def open_postgresql_store(
    location: CatalogLocation, *, init: bool = False, create: bool = False
) -> SqlStore:
    """Open (and if asked, initialise or migrate) a PostgreSQL catalog.

    The database itself must exist (``CREATE DATABASE`` is the administrator's business, as
    for Tiled); ``init`` creates the catalog tables in it.

    Parameters
    ----------
    location : CatalogLocation
        A ``postgresql`` location from :func:`ferrotile.catalog.uri.parse_catalog_uri`.
    init : bool
        Create the schema if missing and apply missing migrations (``--init``). Idempotent and
        safe to run from several processes at once.
    create : bool
        Create the schema in a database without any table, but refuse a database with other
        tables or an older catalog schema.

    Returns
    -------
    SqlStore
        Owning the connection; it reconnects after the connection is lost.

    Raises
    ------
    CatalogError
        If the database cannot be reached, has no (or an older) catalog schema without
        ``init``, or has a newer one.
    """
    connection = connect_postgresql(location)
    try:
        _prepare_schema(connection, location, init=init, create=create)
    except BaseException:
        connection.close()
        raise
    return SqlStore(
        connection,
        POSTGRESQL,
        driver_error=psycopg.Error,
        integrity_error=psycopg.IntegrityError,
        reconnect=lambda: connect_postgresql(location),
    )


def _prepare_schema(
    connection: psycopg.Connection[Any], location: CatalogLocation, *, init: bool, create: bool
) -> None:
    name = location.display
    try:
        version = schema_version(connection, POSTGRESQL)
        empty = version == 0 and _has_no_tables(connection)
    except psycopg.Error as exc:
        raise CatalogError(
            f"Cannot read catalog database {name}: {redact(str(exc), location)}"
        ) from None
    if version == LATEST_VERSION:
        return
    if version > LATEST_VERSION:
        raise CatalogError(
            f"Database {name} has catalog schema version {version}, newer than this ferrotile "
            f"supports ({LATEST_VERSION}). Upgrade ferrotile."
        )
    if not (init or (create and empty)):
        if version == 0:
            raise CatalogError(
                f"Database {name} has no ferrotile catalog schema. Use --init to initialize it."
            )
        raise CatalogError(
            f"Database {name} has catalog schema version {version}, older than "
            f"{LATEST_VERSION}. Use --init to migrate it."
        )
    try:
        connection.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            # migrate() reads the version again inside its transaction: a process that held
            # the lock before us has already done the work.
            migrate(connection, POSTGRESQL)
        finally:
            if not connection.broken:
                connection.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    except (psycopg.Error, ValueError) as exc:
        raise CatalogError(
            f"Cannot initialize catalog database {name}: {redact(str(exc), location)}"
        ) from None


def _has_no_tables(connection: psycopg.Connection[Any]) -> bool:
    row = connection.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() LIMIT 1"
    ).fetchone()
    return row is None
