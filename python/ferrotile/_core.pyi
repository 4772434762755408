"""Type stubs for ``ferrotile._core``, the Rust data plane (streaming hub and envelope codec).

Errors are raised as :class:`ferrotile.errors.EnvelopeError` (bad header JSON, bad array hint,
unknown envelope name), :class:`ferrotile.errors.HubError` (hub shut down) and
:class:`ferrotile.errors.StreamUnavailable` (Redis unreachable; nothing was applied).
"""

from collections.abc import Sequence
from typing import Self, final

__all__ = ["Hub", "RedisHub", "Subscription", "encode_message"]

@final
class Hub:
    """Per-topic streams: sequence numbers from 1, a bounded retention ring, replay and fan-out.

    Every message is encoded once (msgpack at publish, JSON on first demand) and the same
    ``bytes`` object is handed to every subscriber of that envelope.

    Parameters
    ----------
    max_count
        Most messages (including end-of-stream markers) retained per topic; at least 1.
    max_bytes
        Most msgpack envelope bytes retained per topic (the newest message is always kept).
    max_age
        Seconds a message is retained; also, a stream closed this long ago (with no publish
        since) restarts its sequence at 1.
    seq_ttl
        Seconds without any event after which a topic restarts its sequence at 1.

    Examples
    --------
    >>> hub = Hub(max_count=100)
    >>> hub.publish(1, b'{"type": "array-data", "timestamp": "t"}', b"\\x01")
    1
    """

    def __new__(
        cls,
        *,
        max_count: int = 10_000,
        max_bytes: int = 268_435_456,
        max_age: float = 3600.0,
        seq_ttl: float = 2_592_000.0,
    ) -> Self: ...
    def publish(
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
        get base64. The message is validated and encoded before a sequence is assigned, so a bad
        message (:class:`~ferrotile.errors.EnvelopeError`) consumes no sequence number.
        ``payload_json`` (one encoded JSON value, e.g. a table's ``{column: [values]}``) is put
        verbatim as the JSON envelope's payload instead (not with ``array_json``).
        """

    def close_stream(self, topic: int) -> int:
        """Append an end-of-stream marker and return its sequence (each call appends one).

        The marker is never delivered as a frame; subscribers reaching it close with
        ``(1000, "Producer ended stream")``.
        """

    def subscribe(
        self,
        topic: int,
        start: int | None = None,
        envelope: str = "msgpack",
        *,
        notify_gaps: bool = False,
        max_queue_bytes: int | None = None,
        on_overflow: str = "close",
    ) -> Subscription:
        """Subscribe to ``topic``; nothing published after this call returns is missed.

        ``start=None`` (or beyond the head): only later messages. ``start=N``: replay retained
        messages from ``N`` (from the oldest retained if ``N`` is gone, counting the skipped ones
        in :attr:`Subscription.missed`), then live. ``start=0``: from the oldest retained.
        ``envelope`` is ``"msgpack"`` or ``"json"``.

        Beyond Tiled (the defaults keep Tiled's behaviour): ``notify_gaps`` sends a
        ``stream-gap`` / ``stream-epoch`` notice frame before data that follows skipped
        sequences or a sequence restart. ``max_queue_bytes`` caps the live backlog (envelope
        bytes between this subscriber and the head, past its replay range); beyond it
        ``on_overflow="close"`` closes with 1008 and the dropped count, ``"latest"`` skips to
        the newest message (counted in :attr:`Subscription.dropped`). The newest message is
        always deliverable, even above the cap.
        """

    def interrupt(self, topic: int | None = None) -> None:
        """Close the current subscribers of ``topic`` (every topic if None) with
        ``(1012, "Live subscription lost")``; topics and retained messages stay, so clients
        reconnect and resume."""

    def current_sequence(self, topic: int) -> int:
        """The topic's last sequence number, 0 if it has no events."""

    def drop_topic(self, topic: int) -> None:
        """Forget a topic (node deleted).

        Its subscribers close with ``(1001, "node was deleted")``.
        """

    def shutdown(self) -> None:
        """Close every subscriber with ``(1001, "server shutting down")``; later publish and
        subscribe raise :class:`~ferrotile.errors.HubError`."""

    def stats(self) -> dict[str, int]:
        """``topics``, ``retained_messages``, ``retained_bytes`` and ``subscribers``."""

@final
class RedisHub:
    """The same streams as :class:`Hub`, shared by every process through one Redis.

    Each event is one Redis round trip (a Lua script: ``INCR`` the node's counter, ``XADD`` to
    its stream, refresh TTLs, ``PUBLISH`` on the live channel), so sequence numbers are global
    per node across processes. Each process runs one reader that receives every event once and
    fans it out to its local subscribers; no Redis connection per subscriber. Sequences restart
    at 1 only as Tiled's do (``seq_ttl`` without events, or ``data_ttl`` after a close).

    ``url`` is ``redis://[:password@]host:port[/db]`` or ``rediss://...``. ``max_count`` and
    ``max_bytes`` cap what is retained per node (bytes approximately, in Redis); ``data_ttl``
    and ``seq_ttl`` are Tiled's ``--cache-data-ttl`` / ``--cache-seq-ttl`` (seconds). Nothing
    connects until :meth:`connect`.

    If Redis is lost: :meth:`publish` and :meth:`close_stream` raise
    :class:`~ferrotile.errors.StreamUnavailable` (HTTP 503), every subscriber of this process
    closes with ``(1012, "Live subscription lost")``, and the reader reconnects by itself. If
    Redis lost its history (flushed, restarted), subscribers close with 1012 as well and
    ``stats()["epoch_changes"]`` counts it.
    """

    def __new__(
        cls,
        url: str,
        *,
        max_count: int = 10_000,
        max_bytes: int = 268_435_456,
        data_ttl: float = 3600.0,
        seq_ttl: float = 2_592_000.0,
        key_prefix: str = "ferrotile:",
    ) -> Self: ...
    async def connect(self) -> None:
        """Connect, load the publish script and start the reader.

        Raises :class:`~ferrotile.errors.StreamUnavailable` if Redis cannot be reached.
        """

    async def publish(
        self,
        topic: int,
        header: bytes,
        payload: bytes | None = None,
        array_json: tuple[str, Sequence[int]] | None = None,
        *,
        payload_json: bytes | None = None,
    ) -> int:
        """Publish one message (as :meth:`Hub.publish`) and return its sequence number.

        The message is validated and encoded when called; an invalid one raises
        :class:`~ferrotile.errors.EnvelopeError` at once and nothing is sent.
        """

    async def close_stream(self, topic: int) -> int:
        """Append an end-of-stream marker; return its sequence."""

    def subscribe(
        self,
        topic: int,
        start: int | None = None,
        envelope: str = "msgpack",
        *,
        notify_gaps: bool = False,
        max_queue_bytes: int | None = None,
        on_overflow: str = "close",
    ) -> Subscription:
        """Subscribe as :meth:`Hub.subscribe`; registers locally at once. The subscriber policy
        applies to the live part; a replay from Redis is delivered whole.

        A ``start`` older than this process's mirror is replayed from Redis inside
        :meth:`Subscription.next_batch`. While Redis is disconnected the subscription closes
        with ``(1012, "Live subscription lost")`` at once.
        """

    def interrupt(self, topic: int | None = None) -> None:
        """Close this process's current subscribers (of ``topic``, or all) with 1012."""

    async def current_sequence(self, topic: int) -> int:
        """The node's last sequence number in Redis, 0 if none."""

    def drop_topic(self, topic: int) -> None:
        """Forget this process's mirror of a topic (node deleted); its subscribers close with
        ``(1001, "node was deleted")``. The Redis keys expire by themselves, as Tiled's."""

    def shutdown(self) -> None:
        """Close every local subscriber with 1001, stop the reader, refuse later calls."""

    def stats(self) -> dict[str, int]:
        """:meth:`Hub.stats` of the local mirror plus ``connected``, ``received``,
        ``reconnects``, ``epoch_changes``, ``gap_fills`` and ``bad_messages``."""

@final
class Subscription:
    """A cursor into one topic's shared ring, created by :meth:`Hub.subscribe` or
    :meth:`RedisHub.subscribe`."""

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

def encode_message(header: bytes, envelope: str = "msgpack") -> bytes | str:
    """Encode a one-off message (e.g. the schema frame) without sequence or payload."""
