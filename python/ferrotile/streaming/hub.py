"""Thin façade over the native hub: topic ids, header encoding, lifecycle. No per-frame loops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ferrotile import _core
from ferrotile.config import Settings

ENVELOPES = ("json", "msgpack")


class StreamHub:
    """Per-node streams of one server process (``--cache memory``).

    Topics are catalog node ids (the root is 0), so a node that is deleted and created again
    starts a fresh stream, as in Tiled.
    """

    def __init__(self, settings: Settings) -> None:
        self._hub = _core.Hub(
            max_count=settings.retention_count,
            max_bytes=settings.retention_bytes,
            max_age=settings.cache_data_ttl,
            seq_ttl=settings.cache_seq_ttl,
        )

    def publish(
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
        """
        return self._hub.publish(
            topic, orjson.dumps(header), payload, array_json, payload_json=payload_json
        )

    def close_stream(self, topic: int) -> int:
        return self._hub.close_stream(topic)

    def subscribe(
        self,
        topic: int,
        start: int | None,
        envelope: str,
        *,
        notify_gaps: bool = False,
        max_queue_bytes: int | None = None,
        on_overflow: str = "close",
    ) -> _core.Subscription:
        return self._hub.subscribe(
            topic,
            start,
            envelope,
            notify_gaps=notify_gaps,
            max_queue_bytes=max_queue_bytes,
            on_overflow=on_overflow,
        )

    def interrupt(self, topic: int | None = None) -> None:
        """Close current subscribers (of ``topic``, or all) with 1012 "Live subscription lost"."""
        self._hub.interrupt(topic)

    def drop_topic(self, topic: int) -> None:
        self._hub.drop_topic(topic)

    def shutdown(self) -> None:
        self._hub.shutdown()

    def stats(self) -> dict[str, int]:
        return self._hub.stats()


def encode_once(header: dict[str, Any], envelope: str) -> bytes | str:
    """Encode a per-connection message (the schema): ``bytes`` for msgpack, ``str`` for JSON."""
    return _core.encode_message(orjson.dumps(header), envelope)
