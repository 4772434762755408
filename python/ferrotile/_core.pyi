"""Type stubs for ``ferrotile._core``, the Rust data plane (streaming hub and envelope codec).

Errors are raised as :class:`ferrotile.errors.EnvelopeError` (bad header JSON, bad array hint,
unknown envelope name), :class:`ferrotile.errors.HubError` (hub shut down),
:class:`ferrotile.errors.EntryIdError` (bad or non-increasing entry id; nothing was published) and
:class:`ferrotile.errors.StreamUnavailable` (Redis unreachable; nothing was applied).

Entry ids
---------
Every data message (from :meth:`Hub.publish` or :meth:`Hub.publish_entries`) gets an entry id
``"<ms>-<n>"``, strictly increasing per topic and assigned like Redis ``XADD *``: ``<now_ms>-0``
if the clock is past the last id's millisecond, else ``<last ms>-<last n + 1>`` (so a clock going
backwards never makes ids decrease). With Redis the id comes from Redis's clock inside the
publish script, so every process sees the same ids. End-of-stream markers have no id.
"""

from collections.abc import Awaitable, Sequence
from typing import Any, Self, final

from typing_extensions import Buffer

__all__ = [
    "Body",
    "Edge",
    "EntrySubscription",
    "Hub",
    "Subscription",
    "disable_transparent_huge_pages",
    "encode_message",
    "read_zarr_box",
]

@final
class Hub:
    """Per-topic streams: sequence numbers from 1, a bounded retention ring, replay and fan-out,
    kept in this process or in Redis (chosen once, by ``cache``).

    Every message is encoded once (msgpack at publish, JSON on first demand) and the same
    ``bytes`` object is handed to every subscriber of that envelope. Every I/O method returns
    an awaitable (and must be called with an asyncio event loop running); in process they
    complete at once. Invalid arguments raise when the method is called, before anything is
    published or registered.

    Parameters
    ----------
    cache
        ``"memory"``: streams inside this process. ``redis://[[user]:password@]host[:port][/db]``
        or ``rediss://...``: streams in Redis, shared by every process using the same URL and
        ``key_prefix``: each event is one Redis round trip (a Lua script: ``INCR`` the node's
        counter, ``XADD`` to its stream, refresh TTLs, ``PUBLISH`` on the live channel), so
        sequence numbers are global per node; each process runs one reader that receives every
        event once and fans it out to its local subscribers (its mirror of the node). Nothing
        connects until :meth:`connect`.
    max_count
        Most messages (including end-of-stream markers) retained per topic; at least 1
        (default 10,000).
    max_bytes
        Most msgpack envelope bytes retained per topic (the newest message is always kept;
        approximate in Redis); default 256 MiB.
    max_age
        Seconds a message is retained (Tiled's ``data_ttl``); also, a stream closed this long
        ago (with no publish since) restarts its sequence at 1. Default 3600. Positive with
        Redis.
    seq_ttl
        Seconds without any event after which a topic restarts its sequence at 1. Default 30
        days. Positive with Redis.
    max_queue_bytes
        The per-subscriber cap on the live backlog when :meth:`subscribe` or
        :meth:`subscribe_entries` names none (default 64 MiB).
    max_total_bytes
        One budget for the msgpack bytes retained in this process over all topics (with Redis:
        in this process's mirrors); default 1 GiB. Past it the oldest messages of any topic are
        evicted first, down to 15/16 of the budget; each topic keeps its newest message (so
        many topics of big messages may stay over). Subscribers behind an evicted message are
        handled as after any eviction (``on_overflow``; replays skip it), and those with
        ``notify_gaps`` get a ``stream-gap`` notice with reason ``"evicted"``.
    key_prefix
        Prefix of every Redis key and of the live channel (Redis only).

    If Redis is lost: publishes raise :class:`~ferrotile.errors.StreamUnavailable` (HTTP 503),
    every subscriber of this process closes with ``(1012, "Live subscription lost")``, and the
    reader reconnects by itself. If Redis lost its history (flushed, restarted), subscribers
    close with 1012 as well and ``stats()["epoch_changes"]`` counts it. Sequences restart at 1
    only as Tiled's do (``seq_ttl`` without events, or ``max_age`` after a close).

    Examples
    --------
    >>> async def main() -> int:
    ...     hub = Hub(max_count=100)
    ...     return await hub.publish(1, b'{"type": "array-data", "timestamp": "t"}', b"\\x01")
    >>> asyncio.run(main())
    1
    """

    def __new__(
        cls,
        cache: str = "memory",
        *,
        max_count: int | None = None,
        max_bytes: int | None = None,
        max_age: float | None = None,
        seq_ttl: float | None = None,
        max_queue_bytes: int | None = None,
        max_total_bytes: int | None = None,
        key_prefix: str = "ferrotile:",
    ) -> Self: ...
    async def connect(self) -> None:
        """Connect the backend (Redis: connect, load the publish script, start the reader; in
        process: nothing to do).

        Raises :class:`~ferrotile.errors.StreamUnavailable` if Redis cannot be reached.
        """

    @property
    def is_shared(self) -> bool:
        """Whether several processes share the streams (Redis)."""

    @property
    def is_connected(self) -> bool:
        """Whether the backend can be used now (in process: always)."""

    async def publish(
        self,
        topic: int,
        header: bytes,
        payload: bytes | None = None,
        array_json: tuple[str, Sequence[int]] | None = None,
        *,
        payload_json: bytes | None = None,
    ) -> int:
        """Publish one message on ``topic`` and return its sequence number.

        ``header`` is a JSON object (UTF-8, e.g. from ``orjson.dumps``) without ``sequence`` and
        ``payload``; ``"sequence"`` is inserted after ``"type"``. ``payload`` becomes msgpack
        ``bin`` in the msgpack envelope. ``array_json=(numpy dtype str, shape)`` makes the JSON
        envelope carry the payload as a nested list (``tolist()``); without it, JSON subscribers
        get base64. ``payload_json`` (one encoded JSON value, e.g. a table's
        ``{column: [values]}``) is put verbatim as the JSON envelope's payload instead (not with
        ``array_json``). The message is validated and encoded when called: a bad one raises
        :class:`~ferrotile.errors.EnvelopeError` at once and consumes no sequence number.
        """

    async def publish_entries(
        self,
        topic: int,
        payloads: Sequence[Buffer],
        entry_ids: Sequence[str | None] | None = None,
        *,
        header: bytes,
    ) -> list[str]:
        """Publish raw entries (Redis Streamer's push) on ``topic``; return their ids.

        Each payload (``bytes`` or any C-contiguous buffer, read without copying it first)
        becomes one data message whose Tiled envelope is the JSON object ``header`` (without
        ``sequence``/``payload``, e.g. ``{"type": "array-data", "timestamp": ..., "mimetype":
        "application/octet-stream", "offset": null, "block": null}``) with ``"sequence"`` inserted
        and ``"shape": [len(payload)]`` set, the payload as msgpack ``bin`` (a ``uint8`` list in
        the JSON envelope): stock tiled subscribers get each entry as a 1-D ``uint8`` array.
        With Redis the batch is ONE round trip and the ids are assigned in Redis (the same in
        every process).

        ``entry_ids[i]`` is the id asked for payload ``i``: ``"<ms>-<n>"``, ``"<ms>"``
        (= ``<ms>-0``), ``"<ms>-*"`` (next counter value in that millisecond) or ``None`` (from
        the clock). Malformed ids, ``0-0``, parts of 2^53 or more, ids not increasing within the
        batch and bad headers raise when called (:class:`~ferrotile.errors.EntryIdError`,
        :class:`~ferrotile.errors.EnvelopeError`); an explicit id at or below the topic's last
        id raises :class:`~ferrotile.errors.EntryIdError` when published. Either way nothing of
        the batch is published and no sequence is used.
        """

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
    ) -> EntrySubscription:
        """Subscribe by entry id to ``topics`` (Redis Streamer's pull); registered when this
        returns, so nothing published after it is missed.

        ``names[i]`` names topic ``i`` in the frames' headers. ``after[i]`` is where topic ``i``
        starts: ``"$"`` only entries published from now on; ``"0"``, ``"0-0"`` or ``"-"`` from
        the oldest retained; ``"<ms>-<n>"`` or ``"<ms>"`` entries with a greater id (a time
        cursor; one older than retention starts at the oldest retained). ``count`` (>= 1) is the
        most entries per topic per read; ``latest`` makes each read return only the newest
        ``count`` entries past the cursor, newest first, counting the skipped ones in
        :attr:`EntrySubscription.dropped`. ``header`` chooses the frame layout (see
        :meth:`EntrySubscription.next_read`). ``max_queue_bytes`` caps the unread envelope bytes
        past the cursors (None: the hub's ``max_queue_bytes``); a read over it skips to the
        newest ``count`` entries per topic (still oldest first), counting the skipped ones as
        dropped.

        With Redis: a cursor older than what this process's mirror holds (``"0"``, or a time
        cursor from before this process followed the node) is replayed from Redis inside the
        first reads (bounded by Redis's retention: the newest entries are probed first, else
        the retained stream is scanned once, filtered by id), then hands over to the mirror
        without gap or duplicate; with ``latest`` only the newest ``count`` entries are fetched.
        ``"$"`` on a node this process did not follow yet learns the node's last id from Redis
        here (so :attr:`EntrySubscription.cursors` is right even after a heartbeat); entries up
        to it were published before this returned and are skipped even if they reach this
        process later. Entries skipped by a replay with ``latest`` are not counted as dropped.
        While Redis is disconnected the subscription closes with ``(1012, ...)`` at once.

        Raises :class:`~ferrotile.errors.EntryIdError` for a bad ``after`` and ``ValueError``
        for ``count < 1`` or lengths that differ, before anything is registered. End-of-stream
        markers are skipped (entry streams do not end).
        """

    async def stream_info(self, topic: int) -> dict[str, Any] | None:
        """Describe the topic's stream as Redis ``XINFO STREAM`` would (data messages only).

        None if it has no retained data message and never had one. Keys: ``length`` (retained
        data messages; with Redis, the stream's length there, which includes end-of-stream
        markers), ``entries_added`` (data messages ever published, by any process),
        ``first_entry_id`` (None when nothing is retained), ``last_entry_id`` (the newest
        retained, else the last id ever assigned), ``max_deleted_entry_id`` (``"0-0"`` if
        nothing was evicted), ``first_entry`` / ``last_entry`` (the payload ``bytes``: the raw
        entry of :meth:`publish_entries` messages, the payload or ``b""`` of others; None when
        nothing is retained).
        """

    async def set_retention(
        self,
        topic: int,
        *,
        max_count: int | None = None,
        max_bytes: int | None = None,
        max_age: float | None = None,
    ) -> None:
        """Give ``topic`` its own retention (Redis Streamer's ``REDIS_STREAM_MAXLEN``, plus bytes
        and age in seconds); each None keeps the hub's limit, so ``set_retention(t)`` restores
        the defaults. Applied at once (evicting what is over the new limits) and to every later
        publish. ``max_count`` must be at least 1 (``ValueError``, raised when called).

        With Redis the override is stored in Redis, so that every process's publishes apply
        it, and announced to every process's mirror. Approximations: a new ``max_count`` trims
        the Redis stream at once, ``max_bytes`` applies from the next publish (the stream is
        trimmed to ``max_bytes / size of that event`` events, as the hub's own byte limit);
        ``max_age`` is the time the stream key lives after its last event (Redis expires keys,
        not entries), while each mirror drops events older than it. The override lives as long
        as the node's sequence (``seq_ttl`` after its last event).
        """

    async def close_stream(self, topic: int) -> int:
        """Append an end-of-stream marker and return its sequence (each call appends one).

        The marker is never delivered as a frame; subscribers reaching it close with
        ``(1000, "Producer ended stream")``.
        """

    async def subscribe(
        self,
        topic: int,
        start: int | None = None,
        envelope: str = "msgpack",
        *,
        notify_gaps: bool = False,
        max_queue_bytes: int | None = None,
        on_overflow: str = "close",
    ) -> Subscription:
        """Subscribe to ``topic``; registered when this returns: nothing published after it is
        missed, and with ``start=None`` nothing published before it is delivered (with Redis
        too: what another process published before, and reaches this one after, is skipped).

        ``start=None`` (or beyond the head): only later messages. ``start=N``: replay retained
        messages from ``N`` (from the oldest retained if ``N`` is gone, counting the skipped ones
        in :attr:`Subscription.missed`), then live. ``start=0``: from the oldest retained.
        ``envelope`` is ``"msgpack"`` or ``"json"``. With Redis, a ``start`` older than this
        process's mirror is replayed from Redis inside :meth:`Subscription.next_batch`, and
        while Redis is disconnected the subscription closes with ``(1012, "Live subscription
        lost")`` at once.

        Beyond Tiled: ``notify_gaps`` sends a ``stream-gap`` / ``stream-epoch`` notice frame
        before data that follows skipped sequences or a sequence restart. ``max_queue_bytes``
        caps the live backlog (envelope bytes between this subscriber and the head, past its
        replay range; None: the hub's ``max_queue_bytes``); beyond it ``on_overflow="close"``
        closes with 1008 and the dropped count, ``"latest"`` skips to the newest message
        (counted in :attr:`Subscription.dropped`). The newest message is always deliverable,
        even above the cap. A replay is not capped.
        """

    def interrupt(self, topic: int | None = None) -> None:
        """Close this process's current subscribers of ``topic`` (every topic if None) with
        ``(1012, "Live subscription lost")``; topics and retained messages stay, so clients
        reconnect and resume."""

    async def current_sequence(self, topic: int) -> int:
        """The topic's last sequence number (with Redis, read from Redis), 0 if it has none."""

    def drop_topic(self, topic: int) -> None:
        """Forget this process's topic (node deleted); its subscribers close with
        ``(1001, "node was deleted")``. With Redis the keys expire by themselves, as Tiled's."""

    def shutdown(self) -> None:
        """Close every subscriber with ``(1001, "server shutting down")``, stop the backend;
        later calls raise :class:`~ferrotile.errors.HubError`."""

    def stats(self) -> dict[str, int]:
        """This process's ``topics``, ``retained_messages``, ``retained_bytes`` and
        ``subscribers`` (with Redis: its mirrors), the budget ``max_total_bytes`` and what it
        evicted (``evicted_messages``, ``evicted_bytes``), ``connected`` (1 or 0), and the Redis
        reader's counters ``received``, ``reconnects``, ``epoch_changes``, ``gap_fills``,
        ``bad_messages`` (0 in process)."""

@final
class Subscription:
    """A cursor into one topic's shared ring, created by :meth:`Hub.subscribe`."""

    async def next_batch(
        self, max_messages: int = 64
    ) -> tuple[list[bytes | str], tuple[int, str] | None]:
        """Wait until at least one frame or the close is available.

        Returns up to ``max_messages`` frames (the shared ``bytes`` objects for msgpack, ``str``
        for JSON (sent as text frames), in sequence order)
        and, once the subscription has ended, the close ``(code, reason)``: 1000 producer ended,
        1001 node deleted / server shutting down / subscription cancelled, 1008 fell behind or
        backlog over the cap, 1012 live subscription lost (Redis lost, or :meth:`Hub.interrupt`).
        After a close, further calls return ``([], close)``. The GIL is not held while waiting.
        Must be called with an asyncio event loop running (from a coroutine).
        """

    def cancel(self) -> None:
        """Unregister.

        A pending :meth:`next_batch` returns ``([], (1001, "subscription cancelled"))``.
        """

    @property
    def last_sequence(self) -> int:
        """Sequence of the last frame handed out (0 if none)."""

    @property
    def missed(self) -> int:
        """Sequences this subscriber skipped because they were no longer retained."""

    @property
    def dropped(self) -> int:
        """Messages dropped by the overflow policy (skipped or abandoned)."""

    @property
    def backlog_bytes(self) -> int:
        """Envelope bytes between this subscriber and the head, past its replay range."""

@final
class EntrySubscription:
    """Cursors by entry id into one or more topics, created by :meth:`Hub.subscribe_entries`."""

    async def next_read(
        self, block_ms: int | None = None
    ) -> tuple[list[bytes | str], tuple[int, str] | None]:
        """Wait up to ``block_ms`` (None: forever) until at least one entry is available on any
        topic, and return the frames of ONE read, ready to send as WebSocket frames.

        A read takes up to ``count`` entries per topic (oldest first; ``latest``: the newest,
        newest first) and moves each topic's cursor to the newest id it returned. Frames, with
        ``header=True``: ``[header_text, payload]`` where ``header_text`` is the JSON
        ``[[name, entry_id, end_offset], ...]`` (entries grouped by topic in subscription order,
        end offsets into ``payload``) and ``payload`` the payloads concatenated; with exactly
        one entry, ``payload`` is the message's shared ``bytes`` object (the same object for
        every subscriber). With ``header=False``: one shared ``bytes`` per entry.

        On timeout with nothing available: the heartbeat ``(["[]", b""], None)``, or
        ``([b""], None)`` without headers (a replay from Redis the read depends on is not cut
        short by the timeout). Once the subscription has ended, the close ``(code, reason)``
        comes with the frames read before it (1001 topic dropped, server shutting down or
        cancelled; 1012 Redis lost or :meth:`Hub.interrupt`), and later calls return
        ``([], close)``. Entries evicted before they were read are skipped and counted in
        :attr:`missed`. Cancelling the awaiting task never loses entries: they stay for the
        next call. Must be called with an asyncio event loop running.
        """

    def cancel(self) -> None:
        """Unregister.

        A pending :meth:`next_read` returns ``([], (1001, "subscription cancelled"))``.
        """

    @property
    def cursors(self) -> list[str]:
        """Per topic, the id of the last entry handed out, or the starting point (``"$"``: the
        topic's last id at subscribe time, or ``"0-0"``)."""

    @property
    def dropped(self) -> int:
        """Entries skipped by ``latest`` or by the ``max_queue_bytes`` cap."""

    @property
    def missed(self) -> int:
        """Entries that fell out of retention before they were read (a starting cursor older
        than retention counts nothing: it means "from the oldest retained")."""

def encode_message(header: bytes, envelope: str = "msgpack") -> bytes | str:
    """Encode a one-off message (e.g. the schema frame) without sequence or payload."""

def disable_transparent_huge_pages() -> None:
    """Turn transparent huge pages off for this process (``prctl(PR_SET_THP_DISABLE)``; best
    effort): ``ferrotile serve`` calls it for its process or each worker, so that no frame waits
    while a fresh 2 MiB page is zeroed."""

def read_zarr_box(
    directory: str, start: Sequence[int], size: Sequence[int]
) -> tuple[bytes, bool] | None:
    """The box of ``size`` at ``start`` of the zarr v3 array in ``directory`` (C order) and
    whether its elements are stored big-endian; None for a layout the engine does not read.
    Parts never written read as the fill value. Raises :class:`ferrotile.errors.StorageError` for
    a box of another rank, an I/O error or a chunk that does not decode. Runs without the GIL."""

@final
class Edge:
    """The public HTTP/WebSocket server of one process: the data plane's sockets.

    It binds ``host:port`` at once (``port=0``: any free port, see :attr:`port`) and serves on
    the native runtime: ``WS /api/v1/stream/single/{path}`` and ``/api/v1/stream/push/{path}``,
    ``PUT /api/v1/array/full|block/{path}``, ``PATCH /api/v1/array/full/{path}`` and the Redis
    Streamer ``WS /data/{sid}/push|pull``, on ``hub`` (None: streaming is off). Every other
    request is forwarded to the Python app that Granian serves on the Unix socket ``upstream``.
    ``reuse_port`` shares the port with the other processes of the same server
    (``SO_REUSEPORT``).

    ``control`` answers the edge, once per node-cache miss or persisted write: its coroutines
    ``resolve(path)``, ``store_array(node_id, path, kind, block, offset, shape, extend, body)``
    (``body`` a read-only :class:`Body`) and ``stream(sid, device, prefix, create)`` each
    return ``(status, body, headers)``: 200 with the answer as JSON, else the refusal the client
    gets (see :mod:`ferrotile.api.control`). It must be created on the running asyncio loop
    those coroutines run on. ``latency_buckets`` are the metrics' histogram bounds (seconds).

    With ``growth_journal`` (a directory; only for a process whose catalog no other process
    writes), a write that grows an array is acknowledged once ``zarr.json`` holds the new shape,
    and ``control.grow_array`` records it in the catalog behind the writes, coalesced; the
    journal names the arrays so grown (:mod:`ferrotile.api.growth_journal`), and every
    forwarded request waits until what was acknowledged before it is recorded. Without it, each
    growth is recorded before the write is acknowledged.

    Raises :class:`~ferrotile.errors.ServeError` if the address cannot be bound.
    """

    def __new__(
        cls,
        *,
        host: str,
        port: int,
        upstream: str,
        api_key: str,
        control: Any,
        hub: Hub | None = None,
        public: bool = False,
        reuse_port: bool = False,
        access_log: bool = False,
        max_body_bytes: int = 4_294_967_296,
        max_message_bytes: int = 67_108_864,
        streamer_max_message_bytes: int = 67_108_864,
        header_timeout: float = 30.0,
        body_timeout: float = 60.0,
        latency_buckets: Sequence[float] = ...,
        growth_journal: str | None = None,
    ) -> Self: ...
    @property
    def port(self) -> int:
        """The port it listens on."""

    def invalidate(self, path: Sequence[str], subtree: bool = False) -> None:
        """The node at ``path`` (keys from the root) changed or went away (and everything below
        it if ``subtree``): the edge asks the control plane again next time."""

    def invalidate_all(self) -> None:
        """Every node may have changed."""

    def take_stats(self) -> dict[str, Any]:
        """The edge's counts since the last call, for the metrics: ``requests`` (``{(method,
        route, status): (bucket_counts, seconds_sum)}``), ``websockets`` (``{route: opened}``),
        ``published`` (``{topic or None: messages}``), ``publish_latency`` (``(bucket_counts,
        seconds_sum)``), the current ``queue_bytes``, ``dropped`` and ``missed`` totals of
        its subscriptions, the ``multi_connections`` and ``multi_subscriptions`` open now
        (``WS /api/v1/stream/multi``), and ``views``: one dict per (stream, view) with ``node``
        (``None`` past the label cap), ``view`` (its canonical name; ``""``: ``max_fps`` only),
        the current ``subscribers`` and the totals ``computed``, ``raw_bytes`` (views' arrays
        before compression), ``payload_bytes`` (after), ``skipped``."""

    def settled(self) -> Awaitable[None]:
        """Resolves once the catalog holds every array growth acknowledged before the call."""

    def stop(self) -> None:
        """Stop accepting connections; open ones finish their current request."""

@final
class Body:
    """Request bytes received by the edge, lent to Python without a copy (read-only, with the
    buffer protocol: ``memoryview(buffer)``, ``numpy.frombuffer(buffer, dtype)``)."""

    def __len__(self) -> int: ...
