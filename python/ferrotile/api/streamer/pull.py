"""``WS /data/{sid}/pull``: consumers read entries (Redis Streamer's pull).

Parameters (Redis Streamer's, same defaults): ``last_entry_id`` (``$``, ``0``/``-``,
``<ms>-<n>``; ``c1+c2`` for one per stream), ``block`` (ms; an idle timeout sends the empty
heartbeat ``[]`` + empty binary frame, or just the empty binary frame without headers; 0 waits
forever), ``latest`` (skip to the newest entries: frame dropping), ``max_fps``, ``ack`` (wait
for any text frame after each send), ``count`` (entries per stream per read), ``header``,
``device_id``, ``prefix``, ``keep_device_id_in_stream_id``; ``a+b`` reads several streams.
Beyond Redis Streamer, ``max_queue_bytes`` sets how far (in bytes) a reader may fall behind the
newest entry before a read skips to the newest (default 64 MiB; the skipped entries are lost to
it, as entries trimmed by Redis Streamer's MAXLEN are).

Unlike Redis Streamer, no socket costs a Redis connection or a copy of each entry: the hub's
entry subscription hands over frames that every subscriber shares (one entry per read is sent as
the very same ``bytes`` object). Bad parameters and streams that do not exist are refused at the
handshake with 400/404 and a ``detail``.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect

from ferrotile import _core
from ferrotile.api.auth import Access
from ferrotile.api.errors import ApiError
from ferrotile.api.streamer.common import (
    CLOSE_UNAVAILABLE,
    authorized,
    existing,
    header_names,
    names,
    refuse,
)
from ferrotile.errors import StreamUnavailable
from ferrotile.streamer.params import StreamerInputError, cursors, flag, integer, number

DEFAULT_BLOCK_MS = 5000


async def pull(ws: WebSocket) -> None:
    try:
        state = authorized(ws, Access.READ)
        query = ws.query_params
        wanted = names(state, ws)
        after = cursors(query.get("last_entry_id", "$"), len(wanted))
        count = integer(query, "count", 1, 1)
        block = integer(query, "block", DEFAULT_BLOCK_MS, 0)
        max_fps = number(query, "max_fps", 0.0, 0.0)
        ack = flag(query, "ack", False)
        with_header = flag(query, "header", True)
        latest = flag(query, "latest", False)
        cap = integer(query, "max_queue_bytes", None, 1)
        if not with_header and len(wanted) > 1 and (count or 1) > 1:
            raise StreamerInputError("header=false with several streams and count>1 is ambiguous")
        labels = header_names(query, wanted)
        nodes = await existing(state, wanted)
    except (StreamerInputError, ApiError) as exc:
        await refuse(ws, exc)
        return
    assert state.hub is not None and count is not None
    try:  # subscribed before accepting: nothing pushed during the handshake is missed
        subscription = await state.hub.subscribe_entries(
            [n.id for n in nodes], labels, after, count=count, latest=latest,
            header=with_header, max_queue_bytes=cap,
        )  # fmt: skip
    except StreamUnavailable:
        await ws.accept()
        await ws.close(CLOSE_UNAVAILABLE, "streaming cache unavailable; reconnect shortly")
        return
    try:
        await ws.accept()
        sender = asyncio.create_task(
            _send(ws, subscription, block or None, 1 / max_fps if max_fps else 0.0, ack)
        )
        tasks = {sender}
        if not ack:  # with ack the sender reads the socket itself
            tasks.add(asyncio.create_task(_until_disconnect(ws)))
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass
    finally:
        subscription.cancel()


async def _send(
    ws: WebSocket,
    subscription: _core.EntrySubscription,
    block_ms: int | None,
    pause: float,
    ack: bool,
) -> None:
    send = ws.send
    while True:
        frames, close = await subscription.next_read(block_ms)
        for frame in frames:
            if isinstance(frame, bytes):
                await send({"type": "websocket.send", "bytes": frame})
            else:
                await send({"type": "websocket.send", "text": frame})
        if close is not None:
            await ws.close(close[0], close[1])
            return
        if pause:
            await asyncio.sleep(pause)
        if ack and (await ws.receive())["type"] == "websocket.disconnect":
            return


async def _until_disconnect(ws: WebSocket) -> None:
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass
