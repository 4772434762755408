"""Tiled's streaming endpoints: ``WS /api/v1/stream/single/{path}`` and ``DELETE /stream/close``.

Per connection, Python runs once to authenticate, subscribe and send the schema; after that one
writer task drains the subscription in batches of frames that the Rust hub encoded once for all
subscribers, and one reader task notices the peer going away. Python never loops over
subscribers: each connection is its own task, so sends to different subscribers run concurrently.

Beyond Tiled, opt-in query parameters (docs/api.md): ``notify_gaps=true`` (gap / epoch notices),
``max_queue_bytes=N`` and ``on_overflow=close|latest`` (the slow-subscriber policy). A client
that sends none of them (the stock client) sees Tiled's behaviour, with the default byte cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from ferrotile import _core
from ferrotile.api.auth import Access, Credentials, check_header, key_matches
from ferrotile.api.common import json_response, require, state_of, unavailable
from ferrotile.api.errors import ApiError, error_response
from ferrotile.catalog.models import Node
from ferrotile.errors import StreamUnavailable
from ferrotile.state import AppState
from ferrotile.storage.structure import ArrayStructure
from ferrotile.streaming import messages
from ferrotile.streaming.hub import ENVELOPES, encode_once

STREAMABLE = frozenset({"array", "container", "ragged", "sparse", "table"})
AUTH_TIMEOUT = 30.0
#: Frames handed over per wake-up: enough to amortize the Rust->Python crossing.
BATCH = 64
#: Close code while the streaming cache (Redis) is unreachable: "service restart", retry.
UNAVAILABLE = 1012
#: Default per-subscriber cap on the live backlog (envelope bytes behind the head).
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
OVERFLOW_POLICIES = ("close", "latest")
#: Set to 1 to expose ``POST /api/v1/_test/interrupt-streams/{path}`` (tests only).
TEST_HOOKS_ENV = "FERROTILE_TEST_HOOKS"


@dataclass(frozen=True)
class Options:
    """What a WebSocket client asked for in its query string."""

    envelope: str
    start: int | None
    notify_gaps: bool = False
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    on_overflow: str = "close"


async def close_stream(request: Request) -> Response:
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    if state.hub is not None:
        try:
            await state.hub.close_stream(node.id)
        except StreamUnavailable as exc:
            raise unavailable(f"{exc}. The stream was not closed.") from None
    return json_response(None)


def _schema(node: Node) -> dict[str, object]:
    if node.structure_family == "array":
        return messages.array_schema(
            ArrayStructure.from_json(node.data_sources[0].structure or {}).data_type
        )
    if node.structure_family == "table":
        # Tiled's table-schema carries the structure's arrow_schema data URI as is.
        structure = (node.data_sources[0].structure if node.data_sources else None) or {}
        return {"type": "table-schema", "version": 1, "arrow_schema": structure.get("arrow_schema")}
    if node.structure_family == "sparse":
        structure = (node.data_sources[0].structure if node.data_sources else None) or {}
        return messages.array_schema(structure.get("data_type") or {})
    return messages.container_schema()


def _int_param(ws: WebSocket, name: str, minimum: int) -> int | None:
    raw = ws.query_params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ApiError(400, f"{name} must be >= {minimum}")
    return value


def _options(ws: WebSocket) -> Options:
    envelope = ws.query_params.get("envelope_format", "json")
    if envelope not in ENVELOPES:
        raise ApiError(400, f"envelope_format must be one of {list(ENVELOPES)}, not {envelope!r}")
    flag = ws.query_params.get("notify_gaps", "false").lower()
    if flag not in ("true", "false", "1", "0"):
        raise ApiError(400, f"notify_gaps must be true or false, not {flag!r}")
    on_overflow = ws.query_params.get("on_overflow", "close")
    if on_overflow not in OVERFLOW_POLICIES:
        raise ApiError(400, f"on_overflow must be one of {list(OVERFLOW_POLICIES)}")
    cap = _int_param(ws, "max_queue_bytes", 1)
    return Options(
        envelope=envelope,
        start=_int_param(ws, "start", 0),
        notify_gaps=flag in ("true", "1"),
        max_queue_bytes=DEFAULT_MAX_QUEUE_BYTES if cap is None else cap,
        on_overflow=on_overflow,
    )


async def _handshake(ws: WebSocket, state: AppState) -> tuple[Node, Credentials, Options]:
    """Validate everything that can be refused with an HTTP status before the upgrade."""
    creds = check_header(ws.headers.get("authorization"), state.settings.api_key)
    if creds is Credentials.INVALID:
        raise ApiError(401, "Invalid API key")
    node = await state.node(ws.path_params["path"])
    if node.structure_family not in STREAMABLE:
        raise ApiError(404, f"{node.structure_family!r} nodes cannot be streamed")
    if state.hub is None:
        raise ApiError(404, "Streaming is not enabled on this server (started with --cache none)")
    return node, creds, _options(ws)


async def _first_message_auth(ws: WebSocket, api_key: str) -> bool:
    """Tiled's first-message auth: ``{"type": "auth", "api_key": ...}``; 4001/4003 on failure."""
    try:
        raw = await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT)
        message = orjson.loads(raw)
    except (TimeoutError, orjson.JSONDecodeError, KeyError):
        await ws.close(4001, "Expected JSON auth message")
        return False
    if not isinstance(message, dict) or message.get("type") != "auth":
        await ws.close(4001, 'Expected {"type": "auth", ...}')
        return False
    candidate = message.get("api_key")
    if not isinstance(candidate, str) or not key_matches(candidate, api_key):
        await ws.close(4003, "Authentication failed")
        return False
    return True


async def _pump(ws: WebSocket, subscription: _core.Subscription, kind: str) -> tuple[int, str]:
    """Send frames until the subscription ends; return its close code and reason."""
    while True:
        frames, close = await subscription.next_batch(BATCH)
        for frame in frames:
            await ws.send({"type": "websocket.send", kind: frame})
        if close is not None:
            return close


async def _until_disconnect(ws: WebSocket) -> None:
    # Tiled clients send nothing after auth; anything but a disconnect is ignored.
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass


async def subscribe(ws: WebSocket) -> None:
    state = state_of(ws)
    try:
        node, creds, options = await _handshake(ws, state)
    except ApiError as exc:
        await ws.send_denial_response(error_response(exc.status, exc.detail))
        return
    assert state.hub is not None
    # Subscribe before accepting, so that no write landing during the handshake is missed.
    try:
        subscription = state.hub.subscribe(
            node.id,
            options.start,
            options.envelope,
            notify_gaps=options.notify_gaps,
            max_queue_bytes=options.max_queue_bytes,
            on_overflow=options.on_overflow,
        )
    except StreamUnavailable:
        # Accept, then 1012 ("service restart"): the stock client retries a closed connection,
        # but gives up for good on a refused handshake.
        await ws.accept()
        await ws.close(UNAVAILABLE, "streaming cache unavailable; reconnect shortly")
        return
    envelope = options.envelope
    try:
        await ws.accept()
        needs_auth = creds is Credentials.NONE and not state.settings.public
        if needs_auth and not await _first_message_auth(ws, state.settings.api_key):
            return
        kind = "bytes" if envelope == "msgpack" else "text"
        schema = encode_once(_schema(node), envelope)
        await ws.send({"type": "websocket.send", kind: schema})
        pump = asyncio.create_task(_pump(ws, subscription, kind))
        watch = asyncio.create_task(_until_disconnect(ws))
        await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
        # Stop the other task before closing: a close must not be cancelled half-way (the peer
        # would never see the close frame), and a departed peer needs no more frames.
        for task in (pump, watch):
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
        if pump.done() and not pump.cancelled() and pump.exception() is None:
            code, reason = pump.result()
            await ws.close(code, reason)
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the peer went away (RuntimeError: Starlette refuses sends on a closed socket)
    finally:
        subscription.cancel()


def test_hooks_enabled() -> bool:
    return os.environ.get(TEST_HOOKS_ENV) == "1"


async def interrupt_streams(request: Request) -> Response:
    """Test hook: close the node's subscribers with 1012, as a lost backing store would."""
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    if state.hub is not None:
        state.hub.interrupt(node.id)
    return json_response(None)
