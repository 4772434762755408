"""Parsing of catalog database URIs (the ``ferrotile serve catalog DB_URI`` argument)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ferrotile.errors import CatalogError

SUPPORTED = (
    "sqlite:///relative.db, sqlite:////absolute.db, sqlite+aiosqlite:///path.db, "
    "sqlite:///:memory:, or a file path ending in .db or .sqlite"
)
_FILE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_MEMORY = ":memory:"


@dataclass(frozen=True, slots=True)
class CatalogLocation:
    """Where a catalog lives: the backend name and, for SQLite, the file path or ``:memory:``."""

    backend: str
    path: str


def parse_catalog_uri(uri: str) -> CatalogLocation:
    """Parse a catalog URI, accepting Tiled's spellings.

    ``sqlite:///x.db`` is the relative path ``x.db`` and ``sqlite:////x.db`` the absolute
    ``/x.db``, as in SQLAlchemy (which Tiled uses); the ``+driver`` part (Tiled writes
    ``sqlite+aiosqlite``) is ignored.

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
        For PostgreSQL (not supported yet) and anything unrecognised. Messages name only the
        scheme, never the whole URI, which may carry a password.
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
        raise CatalogError("PostgreSQL catalogs are not supported yet")
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
