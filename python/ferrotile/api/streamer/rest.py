"""``GET /data/{sid}`` and ``POST /data/{sid}``: Redis Streamer's REST data routes.

GET reads once: up to ``count`` entries per stream after ``last_entry_id`` (default ``$``:
the next entry, waiting up to ``block`` ms, default 500; ``0``/``-``: from the oldest kept;
``<ms>-<n>``: after that id or time) or, with ``latest``, the newest. The body is the entries'
bytes concatenated; ``x-offsets`` is ``[[sid, entry_id, end_offset], ...]`` and
``x-last-entry-id`` the cursor to pass next time (the starting one if nothing came). ``a+b``
reads several streams (``x-last-entry-id`` then has one cursor per stream, ``c1+c2``).

POST takes ``multipart/form-data`` parts named ``entries`` (one entry each) and answers the JSON
list of their ids. With ``sid`` ``*`` each part's filename names its stream.
"""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from ferrotile.api.auth import Access
from ferrotile.api.common import json_response, unavailable
from ferrotile.api.errors import ApiError
from ferrotile.api.streamer.common import authorized, bad_input, existing, header_names, names
from ferrotile.errors import EntryIdError, StreamUnavailable
from ferrotile.streamer import streams
from ferrotile.streamer.params import StreamerInputError, pull_options

DEFAULT_BLOCK_MS = 500
#: A GET never holds its request longer than this (``block=0`` means "wait this long").
MAX_BLOCK_MS = 60_000


async def get_data(request: Request) -> Response:
    state = authorized(request, Access.READ)
    query = request.query_params
    try:
        wanted = names(state, request)
        # The pull socket's parameters and rules; header, ack and max_fps are checked but
        # change nothing here (one read; the offsets are always in x-offsets).
        options = pull_options(query, len(wanted), DEFAULT_BLOCK_MS)
        labels = header_names(query, wanted)
    except StreamerInputError as exc:
        raise bad_input(exc) from None
    nodes = await existing(state, wanted)
    assert state.hub is not None
    try:
        subscription = await state.hub.subscribe_entries(
            [n.id for n in nodes],
            labels,
            options.after,
            count=options.count,
            latest=options.latest,
            max_queue_bytes=options.max_queue_bytes,
        )
    except StreamUnavailable as exc:
        raise unavailable(str(exc)) from None
    try:
        block = options.block or MAX_BLOCK_MS
        frames, close = await subscription.next_read(min(block, MAX_BLOCK_MS))
        cursor = "+".join(subscription.cursors)
    finally:
        subscription.cancel()
    if close is not None and not frames:
        raise unavailable(f"the stream ended: {close[1]}")
    offsets, body = frames if len(frames) == 2 else ("[]", b"")
    return Response(
        body if isinstance(body, bytes) else body.encode(),
        media_type="application/octet-stream",
        headers={"x-offsets": str(offsets), "x-last-entry-id": cursor},
    )


async def post_data(request: Request) -> Response:
    state = authorized(request, Access.WRITE)
    limit = state.settings.streamer_max_message_bytes
    sid = request.path_params["sid"]
    query = request.query_params
    async with _capped(request, limit).form(max_files=10_000, max_fields=0) as form:
        parts = [p for p in form.getlist("entries") if isinstance(p, UploadFile)]
        if not parts:
            raise ApiError(422, "Send the entries as multipart/form-data parts named 'entries'")
        by_stream: dict[str, list[bytes]] = {}
        for part in parts:
            target = part.filename if sid == "*" else sid
            if not target:
                raise ApiError(422, "With stream id '*' every part needs a filename (its stream)")
            by_stream.setdefault(target, []).append(await part.read())
    hub = state.hub
    assert hub is not None
    try:
        # Every stream is checked and resolved before the first entry is published.
        names = [
            streams.stream_name(state, target, query.get("device_id"), query.get("prefix", ""))
            for target in by_stream
        ]
        nodes = [await streams.ensure(state, name) for name in names]
        header = streams.entry_header()
        ids: list[str] = []
        for node, payloads in zip(nodes, by_stream.values(), strict=True):
            ids += await hub.publish_entries(node.id, payloads, header=header)
    except StreamerInputError as exc:
        raise bad_input(exc) from None
    except EntryIdError as exc:
        raise ApiError(422, str(exc)) from None
    except StreamUnavailable as exc:
        raise unavailable(str(exc)) from None
    return json_response(ids)


def _capped(request: Request, limit: int) -> Request:
    """``request`` whose body may not exceed ``limit`` bytes, declared or not (chunked): 413."""
    declared = int(request.headers.get("content-length") or 0)
    if declared > limit:
        raise ApiError(413, f"The body of {declared} bytes is over the {limit}-byte limit")
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise ApiError(413, f"The body is over the {limit}-byte limit")
        return message

    return Request(request.scope, receive)
