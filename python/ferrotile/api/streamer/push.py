"""``WS /data/{sid}/push``: producers send entries (Redis Streamer's push).

``header=true`` (default): each batch is a text frame (the JSON header, see
:func:`ferrotile.streamer.params.split_header`) then a binary frame; ``header=false``: each
binary frame is one entry of the single stream in the URL. ``ack=true`` answers every batch with
the JSON list of its new entry ids. Python runs once per batch: the binary frame is split with
memoryview slices and each stream's entries go to the hub in one call (one Redis round trip).

A bad batch (malformed header, offsets that do not cover the frame, an entry id that does not
increase, a frame over ``--streamer-max-message-bytes``) closes the socket with a reason and
writes none of its entries; earlier batches stay.
"""

from __future__ import annotations

import contextlib
from collections.abc import MutableMapping
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from ferrotile.api.auth import Access
from ferrotile.api.errors import ApiError
from ferrotile.api.streamer.common import (
    CLOSE_BAD_INPUT,
    CLOSE_TOO_BIG,
    CLOSE_UNAVAILABLE,
    authorized,
    names,
    refuse,
)
from ferrotile.catalog.models import Node
from ferrotile.errors import EntryIdError, EnvelopeError, StreamUnavailable
from ferrotile.state import AppState
from ferrotile.streamer import streams
from ferrotile.streamer.params import Entry, StreamerInputError, flag, split_header
from ferrotile.streamer.streams import StreamName


class _Rejected(Exception):
    """Close the connection with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


async def push(ws: WebSocket) -> None:
    try:
        state = authorized(ws, Access.WRITE)
        url_names = names(state, ws)
        with_header = flag(ws.query_params, "header", True)
        ack = flag(ws.query_params, "ack", False)
        if not with_header and len(url_names) != 1:
            raise StreamerInputError("header=false pushes to exactly one stream")
    except (StreamerInputError, ApiError) as exc:
        await refuse(ws, exc)
        return
    await ws.accept()
    batches = _Batches(state, ws, url_names)
    try:
        while True:
            entries, data = await _next_batch(ws, state, with_header, url_names)
            ids = await batches.publish(entries, data)
            if ack:
                await ws.send_text(orjson.dumps(ids).decode())
    except _Rejected as exc:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close(exc.code, exc.reason[:120])
    except (WebSocketDisconnect, OSError):
        pass


async def _receive(ws: WebSocket) -> MutableMapping[str, Any]:
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message


async def _next_batch(
    ws: WebSocket, state: AppState, with_header: bool, url_names: list[StreamName]
) -> tuple[list[Entry], bytes]:
    limit = state.settings.streamer_max_message_bytes
    header: str | None = None
    if with_header:
        first = await _receive(ws)
        header = first.get("text")
        if header is None:
            raise _Rejected(CLOSE_BAD_INPUT, "expected a text frame (the JSON header) first")
    message = await _receive(ws)
    data = message.get("bytes")
    if data is None:
        raise _Rejected(CLOSE_BAD_INPUT, "expected a binary frame (the entries)")
    if len(data) > limit:
        raise _Rejected(CLOSE_TOO_BIG, f"message of {len(data)} bytes over the {limit} limit")
    if header is None:
        return [Entry(url_names[0].sid, None, 0, len(data))], data
    try:
        return split_header(header, [n.sid for n in url_names], len(data)), data
    except StreamerInputError as exc:
        raise _Rejected(CLOSE_BAD_INPUT, str(exc)) from None


class _Batches:
    """One connection's publisher: stream nodes resolved once per stream id."""

    def __init__(self, state: AppState, ws: WebSocket, url_names: list[StreamName]) -> None:
        self.state = state
        self.query = ws.query_params
        self.nodes: dict[str, Node] = {}
        self.known = {name.sid: name for name in url_names}

    async def node(self, sid: str) -> Node:
        node = self.nodes.get(sid)
        if node is None:
            name = self.known.get(sid)
            if name is None:
                name = streams.stream_name(
                    self.state, sid, self.query.get("device_id"), self.query.get("prefix", "")
                )
            node = await streams.ensure(self.state, name)
            self.nodes[sid] = node
        return node

    async def publish(self, entries: list[Entry], data: bytes) -> list[str]:
        """Publish a batch; ids in the batch's order. Nothing is published if a stream's ids
        are refused before any other stream of the batch was written."""
        hub = self.state.hub
        assert hub is not None
        view = memoryview(data)
        groups: dict[str, list[int]] = {}
        try:
            for index, entry in enumerate(entries):
                groups.setdefault(entry.sid, []).append(index)
            nodes = {sid: await self.node(sid) for sid in groups}
        except StreamerInputError as exc:
            raise _Rejected(CLOSE_BAD_INPUT, str(exc)) from None
        if len(groups) > 1:
            await self._check_ids(entries, groups, nodes)
        header = streams.entry_header()
        ids: list[str] = [""] * len(entries)
        try:
            for sid, indices in groups.items():
                new = await hub.publish_entries(
                    nodes[sid].id,
                    [view[entries[i].start : entries[i].end] for i in indices],
                    [entries[i].entry_id for i in indices],
                    header=header,
                )
                for i, entry_id in zip(indices, new, strict=True):
                    ids[i] = entry_id
        except (EntryIdError, EnvelopeError) as exc:
            raise _Rejected(CLOSE_BAD_INPUT, f"{exc} (nothing of this batch was written)") from None
        except StreamUnavailable as exc:
            raise _Rejected(CLOSE_UNAVAILABLE, str(exc)) from None
        return ids

    async def _check_ids(
        self, entries: list[Entry], groups: dict[str, list[int]], nodes: dict[str, Node]
    ) -> None:
        """A batch over several streams is published one stream at a time: refuse explicit ids
        that do not follow each stream's last one before writing any (a concurrent push to the
        same stream can still slip in between; the hub then refuses that stream's part)."""
        hub = self.state.hub
        assert hub is not None
        for sid, indices in groups.items():
            explicit = [e for i in indices if (e := entries[i].entry_id)]
            if not explicit:
                continue
            info = await hub.stream_info(nodes[sid].id)
            last = _id_tuple((info or {}).get("last_entry_id") or "0-0")
            first = _id_tuple(explicit[0].removesuffix("-*"))
            auto_n = explicit[0].endswith("-*")  # <ms>-*: any ms from the last one on
            if first is None or last is None or (first[0] < last[0] if auto_n else first <= last):
                raise _Rejected(
                    CLOSE_BAD_INPUT,
                    f"entry id {explicit[0]!r} of stream {sid!r} is not greater than its last "
                    "id (nothing of this batch was written)",
                )


def _id_tuple(text: str) -> tuple[int, int] | None:
    ms, _, n = text.partition("-")
    try:
        return int(ms), int(n or 0)
    except ValueError:
        return None
