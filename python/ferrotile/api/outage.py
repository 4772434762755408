"""Answers for a backing service lost during a request: 503 with ``Retry-After``, not 500.

The catalog façade wraps driver errors as :class:`~ferrotile.errors.CatalogError` (chained to
the driver's exception) and reconnects on the next call. A PostgreSQL server that restarts or
goes away mid-request raises ``psycopg.OperationalError``: nothing was committed (catalog
writes are single transactions), so the client may retry the request as is.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.common import RETRY_AFTER
from ferrotile.api.errors import domain_error_handler, error_response


def lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a lost or refused database connection."""
    import psycopg

    cause = exc.__cause__ or exc.__context__
    return isinstance(exc, psycopg.OperationalError) or isinstance(cause, psycopg.OperationalError)


async def catalog_error_handler(request: Request, exc: Exception) -> Response:
    if lost_connection(exc):
        return error_response(
            503,
            "The catalog database is unavailable; nothing was changed. Retry shortly.",
            {"Retry-After": RETRY_AFTER},
        )
    return await domain_error_handler(request, exc)
