"""HTTP errors as Tiled (FastAPI) reports them: a status code and ``{"detail": ...}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ferrotile.errors import (
    CatalogError,
    FerrotileError,
    InvalidKey,
    KeyConflict,
    NotEmpty,
    PatchOutOfBounds,
    StreamUnavailable,
)
from ferrotile.validation import InputRejected

log = logging.getLogger("ferrotile.api")


class ApiError(FerrotileError):
    """Raised by a handler to answer with ``status`` and ``{"detail": detail}``."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"detail": detail}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.detail, exc.headers)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return error_response(exc.status_code, detail, exc.headers)


async def domain_error_handler(request: Request, exc: Exception) -> Response:
    """Map the domain exceptions that carry their own meaning to status codes."""
    if isinstance(exc, InputRejected):
        return error_response(exc.status, str(exc))
    if isinstance(exc, KeyConflict | NotEmpty | PatchOutOfBounds):
        return error_response(409, str(exc))
    if isinstance(exc, InvalidKey):
        return error_response(422, str(exc))
    if isinstance(exc, CatalogError):
        return error_response(500, f"Catalog error: {exc}")
    return error_response(400, str(exc))


async def client_disconnect_handler(request: Request, exc: Exception) -> Response:
    """The request body ended early: the client went away mid-upload, or its chunked encoding
    was malformed (Granian reports both as a disconnect). Bodies are read whole before anything
    is stored, so nothing was written; this is the client's doing, so no traceback."""
    log.info(
        "%s %s: request body incomplete (client disconnected or malformed chunked encoding); "
        "nothing was stored",
        request.method,
        request.url.path,
    )
    return error_response(
        400, "The request body is incomplete or malformed (e.g. invalid chunked encoding)"
    )


async def stream_unavailable_handler(request: Request, exc: Exception) -> Response:
    """A streaming-cache outage not handled where it happened: 503, retry shortly."""
    return error_response(503, str(exc), {"Retry-After": "1"})


EXCEPTION_HANDLERS = {
    StreamUnavailable: stream_unavailable_handler,
    ApiError: api_error_handler,
    HTTPException: http_exception_handler,
    KeyConflict: domain_error_handler,
    NotEmpty: domain_error_handler,
    PatchOutOfBounds: domain_error_handler,
    InvalidKey: domain_error_handler,
    CatalogError: domain_error_handler,
    InputRejected: domain_error_handler,
    ClientDisconnect: client_disconnect_handler,
}
