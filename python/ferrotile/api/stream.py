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
import logging
import os
from dataclasses import dataclass
from typing import Any

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
#: Most envelope bytes fetched at once (one frame at least): what a stalled connection holds
#: beyond the shared ring, and how often the hub's overflow policy gets to look.
WINDOW_BYTES = 2 * 1024 * 1024
#: A ``close``-policy subscriber over its cap that completes no send for this long (its peer
#: reads nothing) is dropped; :func:`_supervise` looks every ``STALL_CHECK`` seconds.
FROZEN_TIMEOUT = 5.0
STALL_CHECK = 1.0
#: Set to 1 to expose ``POST /api/v1/_test/interrupt-streams/{path}`` (tests only).
TEST_HOOKS_ENV = "FERROTILE_TEST_HOOKS"

log = logging.getLogger("ferrotile.streaming")


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


class _Pump:
    """One connection's writer: sends the subscription's frames until it ends.

    ``await ws.send`` resolves once Granian has written and flushed the frame, and blocks while
    the peer's TCP window is full, so frames handed over are delivered unless the connection
    dies; what a stalled peer has not read stays in the shared ring, where the hub's policy
    sees it. Each fetch asks for at most ``WINDOW_BYTES`` of frames (one at least), which bounds
    what a stalled connection holds outside the ring. ``sent`` counts completed sends, for the
    watchdog in :func:`_supervise`.
    """

    __slots__ = ("kind", "sent", "subscription", "ws")

    def __init__(self, ws: WebSocket, subscription: _core.Subscription, kind: str) -> None:
        self.ws = ws
        self.subscription = subscription
        self.kind = kind
        self.sent = 0

    async def run(self) -> tuple[int, str]:
        """Send frames until the subscription ends; return its close code and reason."""
        send, kind, limit = self.ws.send, self.kind, BATCH
        while True:
            frames, close = await self.subscription.next_batch(limit)
            for frame in frames:
                await send({"type": "websocket.send", kind: frame})
                self.sent += 1
            if close is not None:
                return close
            if frames:  # O(1) size estimate: frames of one stream are usually alike
                size = max(len(frames[0]), len(frames[-1]), 1)
                limit = max(1, min(BATCH, WINDOW_BYTES // size))


async def _supervise(
    pump: _Pump, tasks: set[asyncio.Task[Any]], subscription: _core.Subscription, options: Options
) -> bool:
    """Wait until one of ``tasks`` ends; return True (tasks still running) if the peer is frozen.

    Frozen: with ``on_overflow=close``, no send completed for ``FROZEN_TIMEOUT`` while the
    backlog stayed over ``max_queue_bytes``. The hub applies its policy only when the pump
    fetches again, which a peer that reads nothing never lets happen; such a connection is
    dropped instead (its close frame could not be written anyway). A peer that resumes earlier
    gets what was handed to Granian, then the hub's 1008 with the exact dropped count.
    """
    if options.on_overflow != "close":
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return False
    loop = asyncio.get_running_loop()
    sent, since = pump.sent, loop.time()
    while True:
        done, _ = await asyncio.wait(
            tasks, timeout=STALL_CHECK, return_when=asyncio.FIRST_COMPLETED
        )
        if done:
            return False
        now = loop.time()
        if pump.sent != sent or subscription.backlog_bytes <= options.max_queue_bytes:
            sent, since = pump.sent, now
        elif now - since >= FROZEN_TIMEOUT:
            return True


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
        subscription = await state.hub.subscribe(
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
        writer = _Pump(ws, subscription, kind)
        pump = asyncio.create_task(writer.run())
        watch = asyncio.create_task(_until_disconnect(ws))
        frozen = await _supervise(writer, {pump, watch}, subscription, options)
        if frozen:
            log.warning(
                "dropping frozen subscriber of node %s: nothing read for %.0f s with %d bytes "
                "queued > max_queue_bytes=%d (last sequence handed to Granian: %d)",
                node.id, FROZEN_TIMEOUT, subscription.backlog_bytes,
                options.max_queue_bytes, subscription.last_sequence,
            )  # fmt: skip
        # Stop the other task before closing: a close must not be cancelled half-way (the peer
        # would never see the close frame), and a departed peer needs no more frames. A frozen
        # peer gets no close frame: returning with the send stuck drops the connection.
        for task in (pump, watch):
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
        if not frozen and pump.done() and not pump.cancelled() and pump.exception() is None:
            code, reason = pump.result()
            # The close frame queues behind unread frames: a peer that never reads again is
            # dropped without it.
            await asyncio.wait_for(ws.close(code, reason), FROZEN_TIMEOUT)
    except (WebSocketDisconnect, OSError, RuntimeError, TimeoutError):
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
