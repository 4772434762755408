"""``Subscription.streams``: entries of one or more streams, base64 in GraphQL messages (a
low-rate API, as Redis Streamer says; binary consumers use ``WS /data/{sid}/pull``).

``streamIds`` is a list of stream ids (new entries only, ``$``) or an object ``{sid: cursor}``
(``0``/``-``: from the oldest retained; ``<ms>-<n>``: after that entry). The streams are the
device's (``{device}:{sid}``) and must exist. With ``count`` 0 every entry is one
``DataPayload``; with ``count`` > 0 every read gives one ``DataPayloads`` per stream with up to
``count`` entries. ``block`` (ms, 0: forever) only paces the wait; ``latest`` skips to the newest
entries. Returned ``streamId`` are full names (``{device}:{sid}``). The subscription ends when
a stream is deleted and fails (with the reason) if the streaming cache is lost.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import orjson
import strawberry
from strawberry.scalars import JSON, Base64
from strawberry.types import Info

from ferrotile.api.graphql.context import Context, state_of
from ferrotile.api.graphql.types import DataPayload, DataPayloads, StreamData
from ferrotile.errors import StreamUnavailable
from ferrotile.streamer import streams
from ferrotile.streamer.params import StreamerInputError, cursor

#: The close code of a subscription whose topic went away (stream deleted) or was cancelled.
CLOSE_GONE = 1001


def requested(stream_ids: Any) -> tuple[list[str], list[str]]:
    """``(sids, cursors)`` from a list of sids or an object ``{sid: cursor}``."""
    if isinstance(stream_ids, list) and all(isinstance(s, str) for s in stream_ids):
        pairs = [(sid, "$") for sid in stream_ids]
    elif isinstance(stream_ids, dict) and all(isinstance(c, str) for c in stream_ids.values()):
        pairs = [(sid, cursor(after)) for sid, after in stream_ids.items()]
    else:
        raise StreamerInputError(
            "streamIds must be a list of stream ids or an object {stream id: last entry id}"
        )
    if not pairs or len({sid for sid, _ in pairs}) != len(pairs):
        raise StreamerInputError("streamIds must name at least one stream, each once")
    return [sid for sid, _ in pairs], [after for _, after in pairs]


def split(header: str | bytes, payload: bytes, grouped: bool) -> list[DataPayload | DataPayloads]:
    """The payloads of one read: ``header`` is ``[[name, entry_id, end_offset], ...]``."""
    entries, start = [], 0
    for name, entry_id, end in orjson.loads(header):
        entries.append((name, entry_id, Base64(payload[start:end])))
        start = end
    if not grouped:
        return [DataPayload(stream_id=n, time=i, data=d) for n, i, d in entries]
    by_stream: dict[str, DataPayloads] = {}
    for name, entry_id, data in entries:
        group = by_stream.setdefault(name, DataPayloads(stream_id=name, time=[], data=[]))
        group.time.append(entry_id)
        group.data.append(data)
    return list(by_stream.values())


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Entries of the device's streams as they are pushed")
    async def streams(
        self,
        info: Info[Context, Any],
        stream_ids: JSON,
        device: str = streams.DEFAULT_DEVICE,
        count: int = 0,
        block: int = 5000,
        latest: bool = False,
    ) -> AsyncGenerator[StreamData, None]:
        state = state_of(info)
        if count < 0 or block < 0:
            raise StreamerInputError("count and block must not be negative")
        sids, after = requested(stream_ids)
        names = [streams.stream_name(state, sid, device) for sid in sids]
        topics = []
        for name in names:
            node = await streams.lookup(state, name)
            if node is None:
                raise StreamerInputError(f"No such stream: {name.full!r} (nothing pushed yet)")
            topics.append(node.id)
        assert state.hub is not None
        subscription = await state.hub.subscribe_entries(
            topics, [n.full for n in names], after, count=max(count, 1), latest=latest
        )
        try:
            while True:
                frames, close = await subscription.next_read(block or None)
                if len(frames) == 2:
                    header, payload = frames
                    data = payload if isinstance(payload, bytes) else payload.encode()
                    for item in split(header, data, grouped=count > 0):
                        yield item
                if close is not None:
                    if close[0] == CLOSE_GONE:
                        return
                    raise StreamUnavailable(f"The subscription ended: {close[1]}")
        finally:
            subscription.cancel()
