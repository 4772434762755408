"""Parsing of database URIs: the catalog (``ferrotile serve catalog DB_URI``) and a DuckDB table
storage (``-w duckdb:///FILE``)."""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from ferrotile.errors import CatalogError

SUPPORTED = (
    "sqlite:///relative.db, sqlite:////absolute.db, sqlite+aiosqlite:///path.db, "
    "sqlite:///:memory:, a file path ending in .db or .sqlite, "
    "or postgresql://user:password@host:port/database"
)
_FILE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_MEMORY = ":memory:"


@dataclass(frozen=True, slots=True)
class CatalogLocation:
    """Where a catalog lives.

    Attributes
    ----------
    backend : str
        ``"sqlite"`` or ``"postgresql"``.
    path : str
        For SQLite the file path or ``:memory:``; for PostgreSQL a libpq connection URI
        (``postgresql://...``, the ``+driver`` part removed), password included.
    display : str
        How to name the catalog in messages: the path, or the PostgreSQL URI without its
        password.
    secrets : tuple of str
        Strings that must never appear in a message (the password, raw and decoded).
    """

    backend: str
    path: str = field(repr=False)
    display: str = ""
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not self.display:
            object.__setattr__(self, "display", self.path)


def parse_catalog_uri(uri: str) -> CatalogLocation:
    """Parse a catalog URI, accepting Tiled's spellings.

    ``sqlite:///x.db`` is the relative path ``x.db`` and ``sqlite:////x.db`` the absolute
    ``/x.db``, as in SQLAlchemy (which Tiled uses); the ``+driver`` part (Tiled writes
    ``sqlite+aiosqlite`` and ``postgresql+asyncpg``) is ignored. ``postgresql://`` and
    ``postgres://`` URIs are passed to libpq as they are (query parameters such as
    ``sslmode`` included).

    Parameters
    ----------
    uri : str
        A URI or a bare file path.

    Returns
    -------
    CatalogLocation

    Raises
    ------
    CatalogError
        For anything unrecognised. Messages never contain a password.
    """
    scheme, separator, rest = uri.partition("://")
    if not separator:
        if uri == _MEMORY:
            return CatalogLocation("sqlite", _MEMORY)
        if uri.lower().endswith(_FILE_SUFFIXES):
            return CatalogLocation("sqlite", os.path.expanduser(uri))
        raise CatalogError(f"Unsupported catalog location; use {SUPPORTED}")
    backend = scheme.lower().split("+", 1)[0]
    if backend in ("postgresql", "postgres"):
        return _postgresql_location(rest)
    if backend != "sqlite":
        raise CatalogError(f"Unsupported catalog URI scheme {scheme!r}; use {SUPPORTED}")
    if "?" in rest:
        raise CatalogError("Query parameters in sqlite catalog URIs are not supported")
    if not rest:  # sqlite:// is SQLAlchemy's in-memory database
        return CatalogLocation("sqlite", _MEMORY)
    if not rest.startswith("/"):
        raise CatalogError(f"A sqlite URI has no host part; use {SUPPORTED}")
    path = rest[1:]
    return CatalogLocation("sqlite", path if path else _MEMORY)


def _postgresql_location(rest: str) -> CatalogLocation:
    try:
        parts = urllib.parse.urlsplit(f"postgresql://{rest}")
    except ValueError:  # e.g. an unbalanced "[" in the host; the message would echo the URI
        raise CatalogError(f"Invalid PostgreSQL catalog URI; use {SUPPORTED}") from None
    # A password should have "@" percent-encoded, but hide it whether the user info is read
    # up to the first "@" (libpq) or the last one (urllib, SQLAlchemy).
    userinfo, at, host = parts.netloc.rpartition("@")
    user, colon, raw = userinfo.partition(":")
    found = {raw, urllib.parse.unquote(raw), raw.partition("@")[0]} if colon else set()
    # The query may carry a password too (?password=...); messages leave the query out.
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if name.lower() == "password":
            found |= {value, urllib.parse.quote(value), urllib.parse.quote_plus(value)}
    secrets = tuple(sorted((s for s in found if s), key=len, reverse=True))
    display = f"postgresql://{user}{at}{host}{parts.path}"
    return CatalogLocation("postgresql", f"postgresql://{rest}", display, secrets)


def redact(text: str, location: CatalogLocation) -> str:
    """Return ``text`` on one line and without any of ``location``'s secrets.

    Parameters
    ----------
    text : str
        E.g. a driver's error message, which may span lines or echo the connection string.
    location : CatalogLocation
        The catalog the message is about.

    Returns
    -------
    str
    """
    for secret in location.secrets:
        text = text.replace(secret, "***")
    return " ".join(text.split())


DUCKDB_EXTRA = (
    "DuckDB table storage needs the duckdb package: pip install 'ferrotile[duckdb]' "
    "(or use sqlite:///FILE or postgresql://...)"
)


def duckdb_path(uri: str) -> Path:
    """The file of a DuckDB URI, as Tiled reads it: ``duckdb:///rel.db`` and ``duckdb://./rel.db``
    are relative to the working directory, ``duckdb:////abs.db`` is absolute.

    Raises
    ------
    ValueError
        Another host part, no path, or ``:memory:`` (not persistent, and not shared between
        connections).
    """
    scheme, _, rest = uri.partition("://")
    if scheme != "duckdb":
        raise ValueError(f"Not a duckdb:// URI: {uri}")
    host, slash, path = rest.partition("/")
    if host not in ("", ".", "localhost") or not slash or not path or "?" in path:
        raise ValueError(
            f"Unsupported DuckDB URI {uri!r}: use duckdb:///relative.db, duckdb://./relative.db "
            "or duckdb:////absolute.db"
        )
    if path == ":memory:":
        raise ValueError("An in-memory DuckDB cannot hold table storage; give a file")
    return Path(path)


def has_duckdb() -> bool:
    """Whether the DuckDB ADBC driver (the ``duckdb`` package) is installed."""
    try:
        import adbc_driver_duckdb

        adbc_driver_duckdb.driver_path()  # the duckdb library itself, not only the shim
    except ImportError:
        return False
    return True
