"""Thin façade over the native hub (:class:`ferrotile._core.Hub`): settings, topic ids,
header encoding, availability, metrics hooks, lifecycle.

No per-frame loops, and no backend choice here: the native hub takes ``--cache`` as it is
(``memory``: streams inside one process; ``redis://...``: streams through Redis so that a write
through any worker reaches subscribers on every worker and replay works from any worker) and
offers the same awaitable methods for both.

Catalog cache invalidation across workers
-----------------------------------------
Each worker caches catalog nodes (and open zarr handles). When a write changes a node's
structure or metadata, or deletes it, the worker that did it publishes a small
``catalog-invalidate`` message (node id, path, whether the subtree goes) on a reserved control
topic of the same hub, and every worker evicts that node (and its subtree) when the message
arrives; so a write costs no catalog query. The writer waits (briefly, bounded) for its own
copy of the message to come back through Redis before answering, so by the time the client sees
the response, Redis has already handed the message to every worker's reader. If the control
stream is interrupted (Redis lost), each worker drops its whole cache when it resubscribes,
since it may have missed invalidations meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ferrotile import _core
from ferrotile.config import Settings
from ferrotile.errors import HubError, StreamUnavailable

if TYPE_CHECKING:
    from typing_extensions import Buffer

ENVELOPES = ("json", "msgpack")

#: Reserved topic for control messages between workers (never a catalog node id).
CONTROL_TOPIC = 2**63 - 1
#: After a failure, writes are refused before storing anything for this long (then one probes).
PROBE_INTERVAL = 1.0
#: Seconds a writer waits for its invalidation to come back through Redis.
ECHO_TIMEOUT = 1.0
#: Pause between attempts to resubscribe to the control topic while Redis is away.
RESUBSCRIBE_DELAY = 0.2

log = logging.getLogger("ferrotile.streaming")

#: ``(node_id, path, subtree)``: evict one node (and its subtree if ``subtree``); ``None``: all.
Invalidator = Callable[[tuple[int, tuple[str, ...], bool] | None], None]
#: Told once per successful publish call: ``(topic, messages, seconds the call took)`` (with
#: Redis, the seconds are the round trip of the pipelined write). Set by the metrics.
PublishObserver = Callable[[int, int, float], None]
#: The subscriptions opened by the current WebSocket connection, when something (the metrics
#: middleware) wants to read their counters (``dropped``, ``backlog_bytes``) while it lasts.
connection_subscriptions: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "connection_subscriptions", default=None
)


def _track(subscription: Any) -> None:
    tracked = connection_subscriptions.get()
    if tracked is not None:
        tracked.append(subscription)


class StreamHub:
    """Per-node streams of one server process, in process or through Redis.

    Topics are catalog node ids (the root is 0), so a node that is deleted and created again
    starts a fresh stream, as in Tiled.
    """

    def __init__(self, settings: Settings) -> None:
        self._hub = _core.Hub(
            settings.cache,
            max_count=settings.retention_count,
            max_bytes=settings.retention_bytes,
            max_age=settings.cache_data_ttl,
            seq_ttl=settings.cache_seq_ttl,
            max_total_bytes=settings.cache_max_total_bytes,
        )
        self.shared = self._hub.is_shared
        self._down_since: float | None = None
        self._control: asyncio.Task[None] | None = None
        self._control_seen = 0
        self._control_epoch = 0
        self._control_event = asyncio.Event()
        self._origin = f"{os.getpid()}-{id(self)}"
        self.observer: PublishObserver | None = None

    @property
    def native(self) -> _core.Hub:
        """The native hub, shared with the edge (which serves the data plane on it)."""
        return self._hub

    async def start(self, invalidate: Invalidator | None = None) -> None:
        """Connect (Redis) and, with a shared cache, start listening for invalidations."""
        await self._hub.connect()
        if self.shared and invalidate is not None:
            self._control = asyncio.create_task(self._listen(invalidate), name="ferrotile-control")

    # -- availability ----------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._down_since is None

    def check_available(self) -> None:
        """Raise :class:`StreamUnavailable` if the cache failed very recently.

        Called before a write stores anything, so that while Redis is away a write changes
        nothing. After :data:`PROBE_INTERVAL` one write is let through to probe.
        """
        down = self._down_since
        if down is not None and time.monotonic() - down < PROBE_INTERVAL:
            raise StreamUnavailable("The streaming cache (Redis) is unavailable; retry shortly")
        # The process's Redis reader notices a loss at once (and closes subscribers with 1012).
        if not self._hub.is_connected:
            raise StreamUnavailable("The streaming cache (Redis) is unavailable; retry shortly")

    def _failed(self) -> None:
        self._down_since = time.monotonic()

    def _ok(self) -> None:
        self._down_since = None

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = await method(*args, **kwargs)
        except StreamUnavailable:
            self._failed()
            raise
        self._ok()
        return result

    # -- operations ------------------------------------------------------------------------

    async def publish(
        self,
        topic: int,
        header: dict[str, Any],
        payload: bytes | None = None,
        array_json: tuple[str, Sequence[int]] | None = None,
        *,
        payload_json: bytes | None = None,
    ) -> int:
        """Encode ``header`` (+ ``payload``) once and hand it to every subscriber of ``topic``.

        ``payload_json`` (one encoded JSON value) is what JSON subscribers get as the payload.

        Raises
        ------
        StreamUnavailable
            The shared cache cannot be reached; nothing was published.
        """
        started = time.perf_counter()
        seq: int = await self._call(
            self._hub.publish,
            topic,
            orjson.dumps(header),
            payload,
            array_json,
            payload_json=payload_json,
        )
        if self.observer is not None:
            self.observer(topic, 1, time.perf_counter() - started)
        return seq

    async def publish_entries(
        self,
        topic: int,
        payloads: Sequence[Buffer],
        entry_ids: Sequence[str | None] | None = None,
        *,
        header: dict[str, Any],
    ) -> list[str]:
        """Publish raw entries (Redis Streamer's push), one data message each; return their ids.

        ``header`` is the Tiled envelope of every entry (``"shape": [len]`` is added per entry).
        See :meth:`ferrotile._core.Hub.publish_entries` for the ids.

        Raises
        ------
        EntryIdError
            An id is malformed or not greater than the last one; nothing was published.
        StreamUnavailable
            The shared cache cannot be reached; nothing was published.
        """
        started = time.perf_counter()
        ids: list[str] = await self._call(
            self._hub.publish_entries, topic, payloads, entry_ids, header=orjson.dumps(header)
        )
        if self.observer is not None:
            self.observer(topic, len(ids), time.perf_counter() - started)
        return ids

    async def subscribe_entries(
        self,
        topics: Sequence[int],
        names: Sequence[str],
        after: Sequence[str],
        *,
        count: int = 1,
        latest: bool = False,
        header: bool = True,
        max_queue_bytes: int | None = None,
    ) -> _core.EntrySubscription:
        """Subscribe by entry id (Redis Streamer's pull); see
        :meth:`ferrotile._core.Hub.subscribe_entries`."""
        subscription = await self._hub.subscribe_entries(
            topics,
            names,
            after,
            count=count,
            latest=latest,
            header=header,
            max_queue_bytes=max_queue_bytes,
        )
        _track(subscription)
        return subscription

    async def stream_info(self, topic: int) -> dict[str, Any] | None:
        """The topic's stream description (Redis ``XINFO STREAM`` style), None if it never had
        an entry."""
        info: dict[str, Any] | None = await self._call(self._hub.stream_info, topic)
        return info

    async def set_retention(
        self,
        topic: int,
        *,
        max_count: int | None = None,
        max_bytes: int | None = None,
        max_age: float | None = None,
    ) -> None:
        """Give ``topic`` its own retention limits (None: the server's)."""
        await self._call(
            self._hub.set_retention,
            topic,
            max_count=max_count,
            max_bytes=max_bytes,
            max_age=max_age,
        )

    async def close_stream(self, topic: int) -> int:
        seq: int = await self._call(self._hub.close_stream, topic)
        return seq

    async def current_sequence(self, topic: int) -> int:
        seq: int = await self._call(self._hub.current_sequence, topic)
        return seq

    async def subscribe(
        self,
        topic: int,
        start: int | None,
        envelope: str,
        *,
        notify_gaps: bool = False,
        max_queue_bytes: int | None = None,
        on_overflow: str = "close",
    ) -> _core.Subscription:
        """Subscribe by sequence (Tiled); see :meth:`ferrotile._core.Hub.subscribe`."""
        subscription = await self._hub.subscribe(
            topic,
            start,
            envelope,
            notify_gaps=notify_gaps,
            max_queue_bytes=max_queue_bytes,
            on_overflow=on_overflow,
        )
        _track(subscription)
        return subscription

    def interrupt(self, topic: int | None = None) -> None:
        """Close current subscribers (of ``topic``, or all) with 1012 "Live subscription lost"."""
        self._hub.interrupt(topic)

    def drop_topic(self, topic: int) -> None:
        self._hub.drop_topic(topic)

    def shutdown(self) -> None:
        if self._control is not None:
            self._control.cancel()
        self._hub.shutdown()

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = self._hub.stats()
        return stats

    # -- catalog invalidation across workers -------------------------------------------------

    async def invalidate(
        self,
        node_id: int,
        path: tuple[str, ...],
        *,
        subtree: bool,
        dropped: Sequence[int] = (),
    ) -> None:
        """Tell every worker to evict ``path`` (and below it if ``subtree``) from its caches,
        and to close its local subscribers of the ``dropped`` topics (deleted nodes) with 1001.

        A no-op without a shared cache (the writer's own cache is already right). Waits up to
        :data:`ECHO_TIMEOUT` for the message to come back, i.e. to have reached every reader.
        """
        if not self.shared:
            return
        header = {
            "type": "catalog-invalidate",
            "node": node_id,
            "path": list(path),
            "subtree": subtree,
            "dropped": list(dropped),
            "origin": self._origin,
        }
        seq = await self.publish(CONTROL_TOPIC, header)
        if self._control is None:
            return
        deadline = time.monotonic() + ECHO_TIMEOUT
        epoch = self._control_epoch
        while self._control_seen < seq and self._control_epoch == epoch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("catalog invalidation %d not echoed within %ss", seq, ECHO_TIMEOUT)
                return
            self._control_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._control_event.wait(), remaining)

    async def _listen(self, invalidate: Invalidator) -> None:
        """Apply invalidations from every worker; resubscribe (and drop all) after a loss."""
        first = True
        while True:
            try:
                start = await self.current_sequence(CONTROL_TOPIC)
                subscription = await self.subscribe(CONTROL_TOPIC, start + 1, "json")
            except (HubError, OSError):
                await asyncio.sleep(RESUBSCRIBE_DELAY)
                continue
            if not first:
                invalidate(None)  # invalidations may have been missed while disconnected
            first = False
            self._control_seen = start
            self._control_epoch += 1
            self._control_event.set()
            try:
                while True:
                    frames, close = await subscription.next_batch(256)
                    for frame in frames:
                        message = orjson.loads(frame)
                        if message.get("origin") != self._origin:  # ours: already right here
                            path = tuple(message.get("path") or ())
                            subtree = bool(message.get("subtree"))
                            invalidate((int(message["node"]), path, subtree))
                            for topic in message.get("dropped") or ():
                                self._hub.drop_topic(int(topic))
                        self._control_seen = max(self._control_seen, int(message["sequence"]))
                    self._control_event.set()
                    if close is not None:
                        break
            finally:
                subscription.cancel()
            if close[0] == 1001 and "shutting down" in close[1]:
                return
            await asyncio.sleep(RESUBSCRIBE_DELAY)


def encode_once(header: dict[str, Any], envelope: str) -> bytes | str:
    """Encode a per-connection message (the schema): ``bytes`` for msgpack, ``str`` for JSON."""
    return _core.encode_message(orjson.dumps(header), envelope)
