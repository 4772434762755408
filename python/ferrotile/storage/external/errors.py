"""Errors of registered (external) data, each carrying the HTTP status Tiled answers with."""

from __future__ import annotations

from ferrotile.errors import FerrotileError


class ExternalDataError(FerrotileError, ValueError):
    """Registered data cannot be used; ``status`` is the HTTP answer (4xx/503)."""

    status = 422

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class NotReadable(ExternalDataError):
    """An asset lies outside every readable directory, or its URI scheme is not ``file``."""

    status = 403


class UnsupportedMimetype(ExternalDataError):
    """No adapter reads this media type."""

    status = 415


class Unreadable(ExternalDataError):
    """The file is missing, corrupt, or does not match the advertised structure."""

    status = 422


class NotReady(ExternalDataError):
    """The file holds less data than advertised but was modified recently: retry later."""

    status = 503
