"""The subscriber: resume after the server drops the connection (no loss, no duplicate), gaps
reported or raised, the async form, and a slow subscriber skipping to the newest frame."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from ferrotile.client import Frame, Gap, GapError, Message, connect
from tests.client.collect import Collected
from tests.conftest import RunningServer, start_server, stop_server


def test_resumes_after_the_server_drops_the_connection(
    hooks_server: RunningServer, key: str
) -> None:
    headers = {"Authorization": f"Apikey {hooks_server.api_key}"}
    with (
        connect(hooks_server.url, api_key=hooks_server.api_key) as client,
        httpx.Client(base_url=f"{hooks_server.url}/api/v1", headers=headers) as http,
    ):
        writer = client.writer(key, dtype="<i4", frame_shape=(8,))
        received = Collected(client, key, start=0).start()
        for i in range(5):
            writer.send(np.full(8, i, dtype="<i4"))
        received.wait_frames(5)
        # The server drops the subscriber's live feed (close 1012, as when it loses Redis).
        assert http.post(f"/_test/interrupt-streams/{key}").status_code == 200
        for i in range(5, 12):  # some while the subscriber reconnects
            writer.send(np.full(8, i, dtype="<i4"))
        writer.close()
        received.join()
    assert [e.type for e in received.events] == ["array-schema", "reconnected"]
    assert [f.sequence for f in received.frames] == list(range(1, 13))  # no loss, no duplicate
    assert [int(f.array[0, 0]) for f in received.frames] == list(range(12))
    assert received.gaps == []
    assert received.subscription.reconnects == 1


def test_gaps_after_retention_are_yielded_or_raised(short_memory: RunningServer, key: str) -> None:
    def replay(**options: Any) -> list[Message]:
        """From sequence 1 up to the last frame (the stream stays open)."""
        messages: list[Message] = []
        with client.subscribe(key, start=1, **options) as subscription:
            for message in subscription:
                messages.append(message)
                if isinstance(message, Frame) and message.sequence == 12:
                    break
        return messages

    with connect(short_memory.url, api_key=short_memory.api_key) as client:
        with client.writer(key, dtype="u1", frame_shape=(2,)) as writer:
            for i in range(12):
                writer.send(np.full(2, i, dtype="u1"))
            writer.close(close_stream=False)
        # The server keeps the newest 5 messages (8..12): a replay from 1 misses 1..7.
        messages = replay()
        gaps = [(m.missed_from, m.missed_to, m.reason) for m in messages if isinstance(m, Gap)]
        frames = [m for m in messages if isinstance(m, Frame)]
        assert gaps == [(1, 7, "expired")]
        assert [f.sequence for f in frames] == [8, 9, 10, 11, 12]
        assert [int(f.array[0, 0]) for f in frames] == [7, 8, 9, 10, 11]
        with pytest.raises(GapError, match=r"sequences 1\.\.7 lost \(expired\)"):
            replay(gaps="raise")


def test_async_form(hub_server: RunningServer, key: str) -> None:
    with connect(hub_server.url, api_key=hub_server.api_key) as client:
        with client.writer(key, dtype="<f8", frame_shape=(3,)) as writer:
            for i in range(4):
                writer.send(np.full(3, i / 2, dtype="<f8"))

        async def receive() -> list[Message]:
            return [message async for message in client.subscribe(key, start=0)]

        messages = asyncio.run(receive())
    frames = [m for m in messages if isinstance(m, Frame)]
    assert [f.sequence for f in frames] == [1, 2, 3, 4]
    assert [f.array.ravel().tolist() for f in frames] == [[i / 2] * 3 for i in range(4)]


def test_a_slow_subscriber_with_latest_skips_to_the_newest(
    hub_server: RunningServer, key: str
) -> None:
    frame_bytes = 256 * 1024
    with connect(hub_server.url, api_key=hub_server.api_key) as client:
        writer = client.writer(key, dtype="u1", frame_shape=(frame_bytes,), persist=False)
        subscription = client.subscribe(key, latest=True, max_queue_bytes=2**20)
        messages = iter(subscription)
        assert next(messages).type == "array-schema"  # connected; now it reads nothing
        for i in range(100):  # 25 MiB: far more than sockets buffer
            writer.send(np.full(frame_bytes, i % 256, dtype="u1"))
        # The stream stays open: the newest message is frame 100 (after close_stream the
        # server would keep frame 100 and the end marker).
        writer.close(close_stream=False)
        received: list[Message] = []
        for message in messages:
            received.append(message)
            if isinstance(message, Frame | Gap) and (subscription.last_sequence or 0) >= 100:
                break
        subscription.close()
    frames = [m for m in received if isinstance(m, Frame)]
    gaps = [m for m in received if isinstance(m, Gap)]
    assert gaps and {g.reason for g in gaps} == {"overflow"}
    # Nothing lost silently: every sequence was delivered or reported missing.
    assert len(frames) + sum(g.count for g in gaps) == 100
    assert frames[-1].sequence == writer.last_sequence == 100
    assert int(frames[-1].array[0, 0]) == 99


def test_resumes_across_a_server_restart(tmp_path: Path, redis_url: str, key: str) -> None:
    """Redis keeps the stream and the SQLite file the catalog: the subscriber (closed with 1001
    when the server stops, then refused while it is down) reconnects to the new server."""
    options = ("--cache", f"{redis_url}/11", "--workers", "2")
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    server = start_server(tmp_path, *options, catalog=catalog)
    try:
        with connect(server.url, api_key=server.api_key) as client:
            writer = client.writer(key, dtype="<u8", frame_shape=(4,))
            received = Collected(client, key, start=0).start()
            for i in range(5):
                writer.send(np.full(4, i, dtype="<u8"))
            writer.close(close_stream=False)
            received.wait_frames(5)
            stop_server(server)
            port = int(server.url.rsplit(":", 1)[1])
            server = start_server(tmp_path, *options, catalog=catalog, port=port)
            with client.writer(key, dtype="<u8", frame_shape=(4,), extend=True) as writer:
                for i in range(5, 10):
                    writer.send(np.full(4, i, dtype="<u8"))
            received.join()
    finally:
        stop_server(server)
    assert [e.type for e in received.events] == ["array-schema", "reconnected"]
    assert [f.sequence for f in received.frames] == list(range(1, 11))  # no loss, no duplicate
    assert [int(f.array[0, 0]) for f in received.frames] == list(range(10))
    assert received.gaps == []


def test_a_refused_subscription_names_the_status(hub_server: RunningServer, key: str) -> None:
    """The client's own handshake reports the server's status and detail, sync and async."""
    from ferrotile.client import ServerError

    with connect(hub_server.url, api_key=hub_server.api_key) as client:
        with pytest.raises(ServerError) as refused:
            next(iter(client.subscribe(f"{key}-missing")))
        assert refused.value.status == 404 and f"subscribe to {key}-missing" in str(refused.value)

        async def first() -> Message:
            async for message in client.subscribe(f"{key}-missing"):
                return message
            raise AssertionError("no message")

        with pytest.raises(ServerError) as refused:
            asyncio.run(first())
        assert refused.value.status == 404
