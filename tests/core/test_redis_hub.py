"""The Redis-backed hub (``ferrotile._core.RedisHub``) against a private ``redis-server``."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import msgpack
import pytest

from ferrotile import _core
from ferrotile.errors import StreamUnavailable
from tests import redis as rd

H = b'{"type":"array-data","timestamp":"t"}'


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


async def connected(url: str, **kw: Any) -> _core.RedisHub:
    hub = _core.RedisHub(url, **kw)
    await hub.connect()
    return hub


async def drain(sub: _core.Subscription, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            frames, close = await sub.next_batch()
            out += [msgpack.unpackb(f) for f in frames]
            if close is not None:
                break
    return out


async def close_of(sub: _core.Subscription, timeout: float = 10.0) -> tuple[int, str]:
    async with asyncio.timeout(timeout):
        while True:
            _, close = await sub.next_batch()
            if close is not None:
                return close


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Runs an async test in a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def with_pair(
    test: Callable[[_core.RedisHub, _core.RedisHub], Coroutine[Any, Any, None]],
) -> Callable[[str], None]:
    """Two hubs (two processes' worth) on the session's Redis, under a fresh key prefix."""

    @functools.wraps(test)
    def wrapper(redis_url: str) -> None:
        async def main() -> None:
            p = prefix()
            a = await connected(redis_url, key_prefix=p)
            b = await connected(redis_url, key_prefix=p)
            try:
                await test(a, b)
            finally:
                a.shutdown()
                b.shutdown()

        asyncio.run(main())

    del wrapper.__wrapped__  # pytest must see ``redis_url``, not the hubs
    return wrapper


@with_pair
async def test_round_trip_and_shared_sequences(a: _core.RedisHub, b: _core.RedisHub) -> None:
    sub = b.subscribe(5)
    assert await a.publish(5, H, b"abc") == 1
    assert await b.publish(5, H, b"def") == 2
    assert await a.current_sequence(5) == 2 and await b.current_sequence(5) == 2
    msgs = await drain(sub, 2)
    assert [(m["sequence"], m["payload"]) for m in msgs] == [(1, b"abc"), (2, b"def")]
    assert list(msgs[0]) == ["type", "sequence", "timestamp", "payload"]
    assert await a.current_sequence(6) == 0


@with_pair
async def test_thousand_messages_cross_process_in_order(
    a: _core.RedisHub, b: _core.RedisHub
) -> None:
    subs = [b.subscribe(1) for _ in range(3)]
    for i in range(1000):
        await a.publish(1, H, i.to_bytes(4, "little"))
    for sub in subs:
        msgs = await drain(sub, 1000)
        assert [m["sequence"] for m in msgs] == list(range(1, 1001))
        assert [int.from_bytes(m["payload"], "little") for m in msgs] == list(range(1000))
    assert b.stats()["subscribers"] == 3


@with_pair
async def test_replay_from_redis_then_live_without_gaps(
    a: _core.RedisHub, b: _core.RedisHub
) -> None:
    for _ in range(700):
        await a.publish(2, H, b"x")
    for start, first in [(0, 1), (1, 1), (650, 650)]:
        sub = b.subscribe(2, start=start)
        seq = await a.publish(2, H, b"live")
        msgs = await drain(sub, seq - first + 1)
        assert [m["sequence"] for m in msgs] == list(range(first, seq + 1))
    beyond = b.subscribe(2, start=10_000)
    seq = await a.publish(2, H, b"after")
    assert [m["sequence"] for m in await drain(beyond, 1)] == [seq]


@with_pair
async def test_json_envelope_and_validation(a: _core.RedisHub, b: _core.RedisHub) -> None:
    sub = b.subscribe(3, envelope="json")
    payload = (7).to_bytes(8, "little") + (9).to_bytes(8, "little")
    with pytest.raises(ValueError):
        await a.publish(3, b"[1]")
    assert await a.publish(3, H, payload, ("<i8", [2])) == 1
    async with asyncio.timeout(5):
        frames, _ = await sub.next_batch()
    assert isinstance(frames[0], str) and '"payload":[7,9]' in frames[0]


@with_pair
async def test_close_semantics(a: _core.RedisHub, b: _core.RedisHub) -> None:
    live = b.subscribe(4)
    await a.publish(4, H, b"1")
    assert await a.close_stream(4) == 2
    assert [m["sequence"] for m in await drain(live, 1)] == [1]
    assert await close_of(live) == (1000, "Producer ended stream")
    await a.publish(4, H, b"3")  # writes continue the same sequence
    replay = b.subscribe(4, start=1)
    msgs = await drain(replay, 2)
    assert [m["sequence"] for m in msgs] == [1, 3]
    assert await close_of(replay) == (1000, "Producer ended stream")


@run
async def test_sequence_restarts_after_seq_ttl(redis_url: str) -> None:
    hub = await connected(redis_url, key_prefix=prefix(), seq_ttl=0.3, data_ttl=0.3)
    try:
        assert [await hub.publish(9, H, b"a") for _ in range(3)] == [1, 2, 3]
        await asyncio.sleep(0.6)
        assert await hub.current_sequence(9) == 0
        assert await hub.publish(9, H, b"b") == 1
    finally:
        hub.shutdown()


@run
async def test_unreachable_at_connect() -> None:
    hub = _core.RedisHub("redis://127.0.0.1:1")
    with pytest.raises(StreamUnavailable, match="cannot reach Redis"):
        await hub.connect()
    with pytest.raises(StreamUnavailable):
        await hub.publish(1, H)


def test_bad_url_and_password_not_shown() -> None:
    with pytest.raises(ValueError):
        _core.RedisHub("http://nope")
    assert "hunter2" not in repr(_core.RedisHub("redis://:hunter2@127.0.0.1:6379/0"))


@run
async def test_restart_gives_1012_and_recovers() -> None:
    server = rd.start()
    try:
        a, b = await connected(server.url), await connected(server.url)
        sub = b.subscribe(1)
        await a.publish(1, H, b"x")
        assert len(await drain(sub, 1)) == 1
        server.stop()
        assert await close_of(sub) == (1012, "Live subscription lost")
        with pytest.raises(StreamUnavailable):
            await a.publish(1, H, b"y")
        server.start()
        async with asyncio.timeout(15):
            while not (a.stats()["connected"] and b.stats()["connected"]):
                await asyncio.sleep(0.05)
        sub = b.subscribe(1)
        seq = await a.publish(1, H, b"z")
        assert seq == 1  # the restarted Redis (no persistence) lost the counter
        assert [m["sequence"] for m in await drain(sub, 1)] == [1]
        assert b.stats()["reconnects"] >= 1
        a.shutdown()
        b.shutdown()
    finally:
        server.close()


@run
async def test_flushall_is_an_epoch_change() -> None:
    server = rd.start()
    try:
        a, b = await connected(server.url), await connected(server.url)
        sub = b.subscribe(1)
        await a.publish(1, H, b"x")
        assert len(await drain(sub, 1)) == 1
        subprocess.run(
            ["redis-cli", "-p", str(server.port), "FLUSHALL"], check=True, capture_output=True
        )
        code, reason = await close_of(sub)
        assert code == 1012 and "history" in reason
        assert b.stats()["epoch_changes"] == 1
        a.shutdown()
        b.shutdown()
    finally:
        server.close()


@run
async def test_replay_past_retention_counts_and_notifies_when_asked(redis_url: str) -> None:
    writer = await connected(redis_url, key_prefix=(p := prefix()), max_count=5)
    reader = await connected(redis_url, key_prefix=p, max_count=5)
    try:
        for i in range(20):
            await writer.publish(3, H, bytes([i]))
        silent = reader.subscribe(3, start=1)
        told = reader.subscribe(3, start=1, notify_gaps=True)
        quiet = await drain(silent, 5)
        assert [m["sequence"] for m in quiet] == [16, 17, 18, 19, 20]
        assert silent.missed == 15
        loud = await drain(told, 6)
        assert loud[0] == {
            "type": "stream-gap",
            "missed_from": 1,
            "missed_to": 15,
            "count": 15,
            "reason": "expired",
        }
        assert [m["sequence"] for m in loud[1:]] == [16, 17, 18, 19, 20]
        await writer.publish(3, H, b"live")
        assert [m["sequence"] for m in await drain(told, 1)] == [21]
    finally:
        writer.shutdown()
        reader.shutdown()


@run
async def test_resuming_beyond_a_flushed_stream_is_an_epoch_notice_when_asked() -> None:
    server = rd.start()
    try:
        a, b = await connected(server.url), await connected(server.url)
        for i in range(5):
            await a.publish(4, H, bytes([i]))
        subprocess.run(
            ["redis-cli", "-p", str(server.port), "FLUSHALL"], check=True, capture_output=True
        )
        await asyncio.sleep(0.3)  # the readers reconnect after the flush
        await a.publish(4, H, b"new")  # the sequence restarted: this is 1
        # A client that saw 1..5 resumes from 6 (what the stock client does after a 1012).
        told = b.subscribe(4, start=6, notify_gaps=True)
        silent = b.subscribe(4, start=6)
        notice = (await drain(told, 1))[0]
        assert notice["type"] == "stream-epoch"
        assert (notice["last_sequence"], notice["current_sequence"]) == (5, 1)
        await a.publish(4, H, b"later")
        assert [m["sequence"] for m in await drain(told, 1)] == [2]
        assert [m["sequence"] for m in await drain(silent, 1)] == [2]  # Tiled's behaviour
        a.shutdown()
        b.shutdown()
    finally:
        server.close()
