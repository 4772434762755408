"""The entries API of the Redis-backed hub: two ``RedisHub`` instances on one private
``redis-server`` act as two worker processes."""

from __future__ import annotations

import asyncio
import contextlib

import msgpack
import orjson
import pytest

from ferrotile import _core
from ferrotile.errors import EntryIdError
from tests.core.entry_frames import HEADER, split
from tests.core.test_redis_hub import with_pair


async def collect(sub: _core.EntrySubscription, n: int) -> list[tuple[str, str, bytes]]:
    """Reads until ``n`` entries came (header mode), failing on a close."""
    out: list[tuple[str, str, bytes]] = []
    async with asyncio.timeout(10):
        while len(out) < n:
            frames, close = await sub.next_read(5000)
            assert close is None, close
            if frames != ["[]", b""]:
                out += split(frames)
    return out


@with_pair
async def test_ids_are_the_same_in_every_process(a: _core.RedisHub, b: _core.RedisHub) -> None:
    on_b = b.subscribe_entries([1], ["cam"], ["$"], count=10)
    on_a = a.subscribe_entries([1], ["cam"], ["$"], count=10)
    ids = await a.publish_entries(1, [b"one", memoryview(b"two")], header=HEADER)
    ids += await b.publish_entries(1, [b"three"], ["*"], header=HEADER)
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    expected = list(zip(["cam"] * 3, ids, [b"one", b"two", b"three"], strict=True))
    assert await collect(on_b, 3) == expected
    assert await collect(on_a, 3) == expected
    assert on_b.cursors == on_a.cursors == [ids[2]]
    # Tiled publishes get ids from Redis as well.
    assert await a.publish(1, HEADER, b"tiled") == 4
    ((_, tiled_id, payload),) = await collect(on_b, 1)
    assert payload == b"tiled" and tiled_id > ids[2]


@with_pair
async def test_refused_ids_publish_nothing(a: _core.RedisHub, b: _core.RedisHub) -> None:
    ids = await a.publish_entries(2, [b"a", b"b"], ["100-1", "100-*"], header=HEADER)
    assert ids == ["100-1", "100-2"]
    with pytest.raises(EntryIdError):  # checked in Redis, by the other worker
        await b.publish_entries(2, [b"c", b"d"], ["200-0", "100-2"], header=HEADER)
    with pytest.raises(EntryIdError):
        await b.publish_entries(2, [b"c"], ["100-2"], header=HEADER)
    with pytest.raises(EntryIdError):  # checked before sending
        b.publish_entries(2, [b"c", b"d"], ["300-0", "300-0"], header=HEADER)
    assert await a.current_sequence(2) == 2
    info = await b.stream_info(2)
    assert info is not None
    assert (info["length"], info["entries_added"], info["last_entry_id"]) == (2, 2, "100-2")
    assert await a.publish_entries(2, [b"c"], ["100-3"], header=HEADER) == ["100-3"]


@with_pair
async def test_replay_by_entry_id_across_workers(a: _core.RedisHub, b: _core.RedisHub) -> None:
    payloads = [b"%03d" % i for i in range(300)]
    ids = await a.publish_entries(3, payloads, [f"{1000 + i}-0" for i in range(300)], header=HEADER)
    # b never followed node 3: every cursor replays from Redis, then goes live.
    oldest = b.subscribe_entries([3], ["s"], ["0"], count=100)
    recent = b.subscribe_entries([3], ["s"], [ids[279]], count=100)
    by_time = b.subscribe_entries([3], ["s"], ["1100"], count=100)
    newest = b.subscribe_entries([3], ["s"], ["-"], count=2, latest=True)
    live_id = (await a.publish_entries(3, [b"live"], header=HEADER))[0]
    got = await collect(oldest, 301)
    assert [i for _, i, _ in got] == [*ids, live_id]
    assert [p for _, _, p in got[:300]] == payloads
    assert [i for _, i, _ in await collect(recent, 21)] == [*ids[280:], live_id]
    assert [i for _, i, _ in await collect(by_time, 200)] == [*ids[101:], live_id]
    # ``latest`` fetches only the newest ``count`` from Redis, newest first.
    first = split((await newest.next_read(5000))[0])
    assert [p for _, _, p in first] == [b"live", payloads[-1]]
    assert newest.cursors == [live_id]
    assert await newest.next_read(0) == (["[]", b""], None)
    after = (await a.publish_entries(3, [b"after"], header=HEADER))[0]
    assert [i for _, i, _ in await collect(newest, 1)] == [after]
    # A cursor the mirror holds is served from it.
    again = b.subscribe_entries([3], ["s"], [live_id], count=10)
    assert [i for _, i, _ in await collect(again, 1)] == [after]


@with_pair
async def test_tiled_subscribers_and_shared_payload_objects(
    a: _core.RedisHub, b: _core.RedisHub
) -> None:
    tiled = b.subscribe(4)
    one = b.subscribe_entries([4], ["x"], ["$"])
    two = b.subscribe_entries([4], ["x"], ["$"])
    raw = b.subscribe_entries([4], ["x"], ["$"], header=False)
    (entry_id,) = await a.publish_entries(4, [b"\x00\x07\xff"], header=HEADER)
    frames, _ = await one.next_read(5000)
    other, _ = await two.next_read(5000)
    raw_frames, _ = await raw.next_read(5000)
    assert frames[0] == orjson.dumps([["x", entry_id, 3]]).decode()
    assert frames[1] == b"\x00\x07\xff"
    assert frames[1] is other[1] is raw_frames[0]
    batch, _ = await tiled.next_batch()
    message = msgpack.unpackb(batch[0])
    assert (message["type"], message["sequence"], message["shape"]) == ("array-data", 1, [3])
    assert message["payload"] == b"\x00\x07\xff"


@with_pair
async def test_heartbeat_and_dollar_cursor_of_a_new_mirror(
    a: _core.RedisHub, b: _core.RedisHub
) -> None:
    ids = await a.publish_entries(5, [b"old"], header=HEADER)
    # "$" on a mirror that has not seen "old" yet skips it by id and time; an entry of the
    # subscription's own millisecond is ambiguous (documented), so let the clock move on.
    await asyncio.sleep(0.005)
    sub = b.subscribe_entries([5], ["s"], ["$"])
    raw = b.subscribe_entries([5], ["s"], ["$"], header=False)
    # b had never followed node 5: "$" is resolved from Redis, not "0-0".
    assert await sub.next_read(0) == (["[]", b""], None)
    assert sub.cursors == ids
    assert await raw.next_read(20) == ([b""], None)
    new = await a.publish_entries(5, [b"new"], header=HEADER)
    assert [(i, p) for _, i, p in await collect(sub, 1)] == [(new[0], b"new")]


@with_pair
async def test_stream_info_and_retention_from_any_worker(
    a: _core.RedisHub, b: _core.RedisHub
) -> None:
    follower = b.subscribe_entries([6], ["s"], ["$"], count=100)
    ids = await a.publish_entries(6, [b"%d" % i for i in range(10)], header=HEADER)
    await collect(follower, 10)
    await b.set_retention(6, max_count=4)
    info = await a.stream_info(6)
    assert info is not None
    assert (info["length"], info["entries_added"]) == (4, 10)
    assert (info["first_entry_id"], info["first_entry"]) == (ids[6], b"6")
    assert (info["last_entry_id"], info["last_entry"]) == (ids[9], b"9")
    assert info["max_deleted_entry_id"] == ids[5]
    # Publishes from the other worker keep the override; b's mirror applies it too.
    await a.publish_entries(6, [b"x"] * 3, header=HEADER)
    assert (await b.stream_info(6))["length"] == 4  # type: ignore[index]
    await collect(follower, 3)
    assert b.stats()["retained_messages"] == 4
    await a.set_retention(6)
    await a.publish_entries(6, [b"y"] * 3, header=HEADER)
    assert (await b.stream_info(6))["length"] == 7  # type: ignore[index]
    assert await a.stream_info(99) is None


@with_pair
async def test_cancelled_reads_never_swallow_entries(a: _core.RedisHub, b: _core.RedisHub) -> None:
    sub = b.subscribe_entries([7], ["s"], ["$"], header=False, count=1000)
    sent = [b"%d" % i for i in range(200)]
    received: list[bytes] = []
    for payload in sent:
        pending = asyncio.ensure_future(sub.next_read())
        await asyncio.sleep(0)
        await a.publish_entries(7, [payload], header=HEADER)
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            frames, _ = await pending
            received += frames
    while len(received) < len(sent):
        frames, close = await sub.next_read(5000)
        assert close is None
        received += [f for f in frames if f]
    assert received == sent


@with_pair
async def test_closes_with_redis_hub(a: _core.RedisHub, b: _core.RedisHub) -> None:
    sub = b.subscribe_entries([8, 9], ["a", "b"], ["$", "$"])
    await a.publish_entries(8, [b"x"], header=HEADER)
    assert [p for _, _, p in await collect(sub, 1)] == [b"x"]
    b.interrupt(9)
    assert await sub.next_read(5000) == ([], (1012, "Live subscription lost"))
    last = b.subscribe_entries([8], ["a"], ["$"])
    b.shutdown()
    assert await last.next_read(5000) == ([], (1001, "server shutting down"))
