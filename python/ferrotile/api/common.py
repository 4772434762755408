"""Helpers every resource module uses: auth + state lookup, request parsing, JSON responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from ferrotile.api.auth import Access, authorize, credentials
from ferrotile.api.errors import ApiError
from ferrotile.catalog.models import Node
from ferrotile.errors import StreamUnavailable
from ferrotile.state import AppState
from ferrotile.validation import MAX_INT64, parse_int

JSON = "application/json"


def state_of(conn: HTTPConnection) -> AppState:
    state: AppState = conn.app.state.ferrotile
    return state


def require(request: Request, access: Access) -> AppState:
    """Authenticate the request for ``access`` and return the worker's state."""
    state = state_of(request)
    creds = credentials(
        request.headers, request.query_params, request.cookies, state.settings.api_key
    )
    authorize(creds, access, public=state.settings.public)
    return state


def base_url(conn: HTTPConnection) -> str:
    """``scheme://host:port`` as the client addressed us (used to build absolute links)."""
    return str(conn.base_url).rstrip("/")


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type=JSON, headers=headers)


async def read_json_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(422, f"Request body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ApiError(422, "Request body must be a JSON object")
    return parsed


def query_bool(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ApiError(422, f"Query parameter {name!r} must be true or false, not {raw!r}")


def query_int(
    request: Request, name: str, default: int, *, minimum: int = 0, maximum: int = MAX_INT64
) -> int:
    """An integer query parameter (absent: ``default``); 422 naming it when malformed or out of
    ``minimum..maximum`` (see :func:`ferrotile.validation.parse_int`)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    return parse_int(raw, name, minimum=minimum, maximum=maximum)


#: Seconds a client is asked to wait after a 503 from an unavailable streaming cache.
RETRY_AFTER = "1"


def unavailable(detail: str) -> ApiError:
    return ApiError(503, detail, headers={"Retry-After": RETRY_AFTER})


def ensure_streamable(state: AppState) -> None:
    """Refuse a write before anything is stored while the streaming cache is known to be down.

    Raises
    ------
    ApiError
        503 with ``Retry-After``: nothing was stored or streamed.
    """
    if state.hub is None:
        return
    try:
        state.hub.check_available()
    except StreamUnavailable as exc:
        raise unavailable(f"{exc}. Nothing was stored or streamed.") from None


async def publish(
    state: AppState,
    topic: int,
    header: dict[str, Any],
    payload: bytes | None = None,
    array_json: tuple[str, Sequence[int]] | None = None,
    *,
    stored: bool,
    payload_json: bytes | None = None,
) -> None:
    """Publish one stream message after (``stored``) or instead of storing the write.

    Raises
    ------
    ApiError
        503 with ``Retry-After`` when the streaming cache cannot be reached; the detail says
        whether the write was stored (it stays stored: it is not rolled back) or not.
    """
    if state.hub is None:
        return
    try:
        await state.hub.publish(topic, header, payload, array_json, payload_json=payload_json)
    except StreamUnavailable as exc:
        raise unavailable(_detail(exc, stored)) from None


async def changed(
    state: AppState,
    node: Node,
    *,
    subtree: bool = False,
    dropped: Sequence[int] = (),
    stored: bool,
) -> None:
    """Tell the other workers that ``node`` changed (503 like :func:`publish` on failure)."""
    try:
        await state.changed(node, subtree=subtree, dropped=dropped)
    except StreamUnavailable as exc:
        raise unavailable(_detail(exc, stored)) from None


def _detail(exc: StreamUnavailable, stored: bool) -> str:
    if stored:
        return (
            f"{exc}. The write WAS stored, but was not streamed to subscribers "
            "(they are disconnected with 1012 and resume when the cache is back)."
        )
    return f"{exc}. Nothing was stored or streamed."
