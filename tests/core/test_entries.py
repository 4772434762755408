"""The entries API (Redis Streamer's push/pull) of the native hub, ``ferrotile._core.Hub``:
each test that takes ``hubs`` runs in process and through Redis with two hubs acting as two
worker processes (see conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgpack
import numpy as np
import orjson
import pytest

from ferrotile import _core
from ferrotile.errors import EntryIdError, EnvelopeError, HubError
from tests.core.helpers import HEADER, Frames, MakeHubs, drain, run, split, watch


async def read(sub: _core.EntrySubscription, block_ms: int | None = 1000) -> Frames:
    return await asyncio.wait_for(sub.next_read(block_ms), 10)


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


def payloads(frames: list[Any]) -> list[bytes]:
    return [p for _, _, p in split(frames)]


def key(entry_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in entry_id.split("-"))


@run
async def test_ids_increase_are_the_same_for_every_process_and_tiled_gets_ids(
    hubs: MakeHubs,
) -> None:
    a, b = await hubs()
    on_b = await b.subscribe_entries([1], ["cam"], ["$"], count=10)
    on_a = await a.subscribe_entries([1], ["cam"], ["$"], count=10)
    ids = await a.publish_entries(1, [b"a", memoryview(b"bc"), bytearray(b"d")], header=HEADER)
    ids += await b.publish_entries(1, [b"e"], ["*"], header=HEADER)
    assert [key(i) for i in ids] == sorted({key(i) for i in ids})
    expected = list(zip(["cam"] * 4, ids, [b"a", b"bc", b"d", b"e"], strict=True))
    assert await collect(on_b, 4) == expected
    assert await collect(on_a, 4) == expected
    assert on_b.cursors == on_a.cursors == [ids[3]]
    assert await a.publish(1, HEADER, b"tiled") == 5
    ((_, tiled_id, payload),) = await collect(on_b, 1)
    assert payload == b"tiled" and key(tiled_id) > key(ids[3])
    info = await b.stream_info(1)
    assert info is not None
    assert info["length"] == info["entries_added"] == 5
    assert info["first_entry_id"] == ids[0] and info["first_entry"] == b"a"
    assert (info["last_entry"], info["last_entry_id"]) == (b"tiled", tiled_id)
    assert info["max_deleted_entry_id"] == "0-0"
    assert await a.stream_info(2) is None
    # Any contiguous buffer, e.g. a NumPy array, is taken as its bytes.
    (arr_id,) = await a.publish_entries(1, [np.arange(3, dtype="<u2")], header=HEADER)
    assert (await b.stream_info(1))["last_entry"] == b"\x00\x00\x01\x00\x02\x00"  # type: ignore[index]
    assert key(arr_id) > key(tiled_id)


@run
async def test_explicit_ids_and_all_or_nothing_validation(hubs: MakeHubs) -> None:
    a, b = await hubs()
    ids = await a.publish_entries(
        1, [b"a", b"b", b"c", b"d"], ["5-1", "5-*", "6", None], header=HEADER
    )
    assert ids[:3] == ["5-1", "5-2", "6-0"]
    sub = await b.subscribe_entries([1], ["s"], ["$"])
    for bad in (["7-0", "7-0"], ["7-0", "5-9"], ["0-0"], ["x"], ["1-2-3"]):
        with pytest.raises(EntryIdError):  # raised when called, before anything is sent
            b.publish_entries(1, [b"x"] * len(bad), bad, header=HEADER)
    for repeated in ([ids[3]], ["900-0", ids[3]]):
        with pytest.raises(EntryIdError):  # checked by the stream (in Redis: by the script)
            await b.publish_entries(1, [b"x"] * len(repeated), repeated, header=HEADER)
    assert issubclass(EntryIdError, ValueError) and issubclass(EntryIdError, HubError)
    with pytest.raises(EnvelopeError):
        b.publish_entries(1, [b"x"], header=b'{"sequence": 1}')
    with pytest.raises(ValueError):
        b.publish_entries(1, [b"x", b"y"], ["9-0"], header=HEADER)
    with pytest.raises(TypeError):
        b.publish_entries(1, ["text"], header=HEADER)  # type: ignore[list-item]
    # Nothing of a refused batch was published or used a sequence.
    assert await a.current_sequence(1) == 4
    assert await read(sub, 0) == (["[]", b""], None)
    assert await b.publish(1, HEADER) == 5
    assert await a.publish_entries(1, [b"e"], [None], header=HEADER) != []


@run
async def test_tiled_subscribers_get_each_entry_as_a_uint8_array(hubs: MakeHubs) -> None:
    a, b = await hubs()
    packed = await b.subscribe(1)
    text = await b.subscribe(1, envelope="json")
    await a.publish_entries(1, [b"\x01\x02\xff", b""], header=HEADER)
    first, second = await drain(packed, 2)
    assert list(first) == [
        "type", "sequence", "timestamp", "mimetype", "offset", "block", "shape", "payload",
    ]  # fmt: skip
    assert (first["type"], first["sequence"], first["shape"]) == ("array-data", 1, [3])
    assert first["payload"] == b"\x01\x02\xff"
    assert second["shape"] == [0]
    frames, _ = await asyncio.wait_for(text.next_batch(), 5)
    assert orjson.loads(frames[0])["payload"] == [1, 2, 255]


@run
async def test_header_frames_share_the_payload_object_between_subscribers(hubs: MakeHubs) -> None:
    a, b = await hubs()
    one = await b.subscribe_entries([1], ["cam"], ["$"])
    two = await b.subscribe_entries([1], ["cam"], ["$"])
    raw = await b.subscribe_entries([1], ["cam"], ["$"], header=False)
    (entry_id,) = await a.publish_entries(1, [b"frame-1"], header=HEADER)
    frames, close = await read(one)
    other, _ = await read(two)
    raw_frames, _ = await read(raw)
    assert close is None
    assert frames[0] == orjson.dumps([["cam", entry_id, 7]]).decode()
    assert frames[1] == b"frame-1"
    assert frames[1] is other[1] is raw_frames[0]
    assert one.cursors == [entry_id]


@run
async def test_count_per_topic_multi_topic_and_header_offsets(hubs: MakeHubs) -> None:
    a, b = await hubs()
    sub = await b.subscribe_entries([1, 2], ["a", "b"], ["$", "$"], count=2)
    arrived = [await watch(b, 1), await watch(b, 2)]
    ones = await a.publish_entries(1, [b"1", b"22", b"333"], header=HEADER)
    twos = await a.publish_entries(2, [b"x"], header=HEADER)
    await drain(arrived[0], 3)
    await drain(arrived[1], 1)
    frames, _ = await read(sub)
    assert split(frames) == [("a", ones[0], b"1"), ("a", ones[1], b"22"), ("b", twos[0], b"x")]
    assert orjson.loads(frames[0])[-1][2] == 4
    frames, _ = await read(sub)
    assert split(frames) == [("a", ones[2], b"333")]
    assert sub.cursors == [ones[2], twos[0]]
    raw = await b.subscribe_entries([1, 2], ["a", "b"], ["0", "-"], header=False, count=5)
    received: list[bytes] = []
    while len(received) < 4:  # with Redis, the replays of the two topics may come apart
        received += (await read(raw))[0]
    assert sorted(received) == sorted([b"1", b"22", b"333", b"x"])


@run
async def test_time_cursors_and_latest(hubs: MakeHubs, backend: str) -> None:
    a, b = await hubs()
    times = ["1000", "2000", "3000", "4000"]
    ids = await a.publish_entries(1, [b"a", b"b", b"c", b"d"], times, header=HEADER)
    sub = await b.subscribe_entries([1], ["s"], ["2500"], count=10)
    assert sub.cursors == ["2500-0"]
    assert payloads((await read(sub))[0]) == [b"c", b"d"]
    newest = await b.subscribe_entries([1], ["s"], ["0"], latest=True, count=2)
    assert [(i, p) for _, i, p in split((await read(newest))[0])] == [
        (ids[3], b"d"),
        (ids[2], b"c"),
    ]
    # With Redis only the newest `count` are fetched: the skipped ones are never seen.
    assert (newest.dropped, newest.cursors) == (2 if backend == "memory" else 0, [ids[3]])
    assert await read(newest, 0) == (["[]", b""], None)
    await a.publish_entries(1, [b"e"], header=HEADER)
    assert payloads((await read(newest))[0]) == [b"e"]


@run
async def test_heartbeat_after_block_ms_and_dollar_cursors(hubs: MakeHubs) -> None:
    a, b = await hubs()
    empty = await b.subscribe_entries([1], ["s"], ["$"])
    assert await read(empty, 30) == (["[]", b""], None)
    assert empty.cursors == ["0-0"]
    ids = await a.publish_entries(5, [b"old"], header=HEADER)
    # "$" on a process that has not seen "old" yet (with Redis) skips it by id and time; an
    # entry of the subscription's own millisecond is ambiguous (documented): let the clock move.
    await asyncio.sleep(0.005)
    sub = await b.subscribe_entries([5], ["s"], ["$"])
    raw = await b.subscribe_entries([5], ["s"], ["$"], header=False)
    assert await read(sub, 0) == (["[]", b""], None)
    assert sub.cursors == ids
    assert await read(raw, 20) == ([b""], None)
    new = await a.publish_entries(5, [b"new"], header=HEADER)
    assert [(i, p) for _, i, p in await collect(sub, 1)] == [(new[0], b"new")]


@run
async def test_missed_dropped_and_retention_override(hubs: MakeHubs) -> None:
    a, b = await hubs(max_count=100)
    await a.set_retention(1, max_count=3)
    sub = await b.subscribe_entries([1], ["s"], ["$"], count=10)
    arrived = await watch(b, 1)
    await a.publish_entries(1, [b"%d" % i for i in range(5)], header=HEADER)
    await drain(arrived, 5)
    assert payloads((await read(sub))[0]) == [b"2", b"3", b"4"]
    assert (sub.missed, sub.dropped) == (2, 0)
    info = await b.stream_info(1)
    assert info is not None and (info["length"], info["entries_added"]) == (3, 5)
    capped = await b.subscribe_entries([1], ["s"], ["$"], count=1, max_queue_bytes=1)
    await a.publish_entries(1, [b"5", b"6"], header=HEADER)
    await drain(arrived, 2)
    assert payloads((await read(capped))[0]) == [b"6"]
    assert capped.dropped == 1
    await b.set_retention(1)
    await a.publish_entries(1, [b"%d" % i for i in range(7, 12)], header=HEADER)
    assert (await a.stream_info(1))["length"] == 8  # type: ignore[index]
    with pytest.raises(ValueError):
        a.set_retention(1, max_count=0)


@run
async def test_stream_info_and_retention_from_any_worker(hubs: MakeHubs) -> None:
    a, b = await hubs()
    follower = await b.subscribe_entries([6], ["s"], ["$"], count=100)
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


@run
async def test_replay_by_entry_id_then_live(hubs: MakeHubs) -> None:
    a, b = await hubs()
    data = [b"%03d" % i for i in range(300)]
    ids = await a.publish_entries(3, data, [f"{1000 + i}-0" for i in range(300)], header=HEADER)
    # With Redis, b never followed node 3: every cursor replays from Redis, then goes live.
    oldest = await b.subscribe_entries([3], ["s"], ["0"], count=100)
    recent = await b.subscribe_entries([3], ["s"], [ids[279]], count=100)
    by_time = await b.subscribe_entries([3], ["s"], ["1100"], count=100)
    newest = await b.subscribe_entries([3], ["s"], ["-"], count=2, latest=True)
    live_id = (await a.publish_entries(3, [b"live"], header=HEADER))[0]
    got = await collect(oldest, 301)
    assert [i for _, i, _ in got] == [*ids, live_id]
    assert [p for _, _, p in got[:300]] == data
    assert [i for _, i, _ in await collect(recent, 21)] == [*ids[280:], live_id]
    assert [i for _, i, _ in await collect(by_time, 200)] == [*ids[101:], live_id]
    assert payloads((await read(newest))[0]) == [b"live", data[-1]]
    assert newest.cursors == [live_id]
    assert await read(newest, 0) == (["[]", b""], None)
    after = (await a.publish_entries(3, [b"after"], header=HEADER))[0]
    assert [i for _, i, _ in await collect(newest, 1)] == [after]
    # A cursor the process holds is served from it.
    again = await b.subscribe_entries([3], ["s"], [live_id], count=10)
    assert [i for _, i, _ in await collect(again, 1)] == [after]


@run
async def test_bad_subscriptions_raise_before_registering(hubs: MakeHubs) -> None:
    _, b = await hubs()
    with pytest.raises(EntryIdError):
        b.subscribe_entries([1], ["s"], ["soon"])
    for kwargs in ({"count": 0}, {"count": -1}):
        with pytest.raises(ValueError):
            b.subscribe_entries([1], ["s"], ["$"], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        b.subscribe_entries([1, 2], ["s"], ["$", "$"])
    with pytest.raises(ValueError):
        await b.subscribe_entries([], [], [])
    assert b.stats()["subscribers"] == 0


@run
async def test_closes(hubs: MakeHubs) -> None:
    a, b = await hubs()
    sub = await b.subscribe_entries([1, 2], ["a", "b"], ["$", "$"])
    arrived = await watch(b, 1)
    await a.publish_entries(1, [b"x"], header=HEADER)
    await drain(arrived, 1)
    b.drop_topic(2)
    frames, close = await read(sub)
    assert (payloads(frames), close) == ([b"x"], (1001, "node was deleted"))
    assert await read(sub) == ([], (1001, "node was deleted"))
    live = await b.subscribe_entries([1], ["a"], ["$"])
    b.interrupt(1)
    assert await read(live) == ([], (1012, "Live subscription lost"))
    waiting = await b.subscribe_entries([1], ["a"], ["$"])
    pending = asyncio.ensure_future(waiting.next_read())
    await asyncio.sleep(0.02)
    waiting.cancel()
    assert await asyncio.wait_for(pending, 5) == ([], (1001, "subscription cancelled"))
    last = await b.subscribe_entries([1], ["a"], ["$"])
    b.shutdown()
    assert await read(last) == ([], (1001, "server shutting down"))


@run
async def test_cancelled_waits_never_swallow_entries(hubs: MakeHubs) -> None:
    # A wait cancelled while a publish is waking it must leave the entries for the next read.
    a, b = await hubs()
    sub = await b.subscribe_entries([7], ["s"], ["$"], header=False, count=1000)
    sent = [b"%d" % i for i in range(300)]
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
        frames, close = await read(sub, 5000)
        assert close is None
        received += [f for f in frames if f]
    assert received == sent


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_stream_hub_facade_for_both_backends(backend: str, request: Any) -> None:
    from ferrotile.config import Settings
    from ferrotile.streaming.hub import StreamHub

    # Its own Redis database: topic 11 here must not be node 11 of a test server on database 0.
    cache = f"{request.getfixturevalue('redis_url')}/8" if backend == "redis" else "memory"

    async def main() -> None:
        hub = StreamHub(Settings(catalog_uri="sqlite://", api_key="k", cache=cache))
        await hub.start()
        try:
            assert hub.shared == (backend == "redis")
            sub = await hub.subscribe_entries([11], ["s"], ["$"], count=5)
            header = orjson.loads(HEADER)
            ids = await hub.publish_entries(11, [b"a", b"b"], [None, None], header=header)
            await hub.set_retention(11, max_count=1)
            info = await hub.stream_info(11)
            assert info is not None and (info["length"], info["last_entry"]) == (1, b"b")
            frames, close = await sub.next_read(5000)
            assert close is None and [i for _, i, _ in split(frames)] == ids[-len(split(frames)) :]
            with pytest.raises(EntryIdError):
                await hub.publish_entries(11, [b"c"], [ids[-1]], header=header)
            tiled = await hub.subscribe(11, None, "msgpack")
            seq = await hub.publish(11, {"type": "array-data", "timestamp": "t"}, b"x")
            frames, _ = await tiled.next_batch()
            assert msgpack.unpackb(frames[0])["sequence"] == seq == await hub.current_sequence(11)
        finally:
            hub.shutdown()

    asyncio.run(main())
