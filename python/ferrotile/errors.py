"""Exceptions raised by ferrotile, including those raised by the native core (``ferrotile._core``).

They live in Python (not in Rust) so that they are documented, picklable and importable without
the compiled module. The native module raises them through ``pyo3::import_exception!``.
"""

from __future__ import annotations


class FerrotileError(Exception):
    """Base class of every ferrotile error."""


class HubError(FerrotileError):
    """The streaming hub refused an operation (for example, it has been shut down)."""


class EnvelopeError(HubError, ValueError):
    """A stream message could not be encoded (malformed header JSON, unknown envelope format)."""


class StreamUnavailable(HubError):
    """The stream backend (Redis) is unreachable; the operation was not applied (HTTP 503)."""


class EntryIdError(HubError, ValueError):
    """An entry id or cursor is malformed, ``0-0``, or not greater than the stream's last id;
    nothing of the batch was published."""


class ServeError(FerrotileError):
    """The server cannot start (port in use, unwritable directory, bad settings, ...)."""


class CatalogError(FerrotileError):
    """The catalog database could not be opened or used."""


class KeyConflict(CatalogError):
    """A node with this key already exists under the parent."""


class NotEmpty(CatalogError):
    """A container that still has children cannot be deleted without ``recursive``."""


class InvalidKey(FerrotileError, ValueError):
    """A node key is empty, too long, or contains ``/``, ``..`` or control characters."""


class StorageError(FerrotileError):
    """Array or table storage failed."""


class PatchOutOfBounds(StorageError, ValueError):
    """A PATCH writes outside the array's current shape and ``extend`` was not given."""
