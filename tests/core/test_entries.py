"""The entries API (Redis Streamer's push/pull) of the in-process hub, ``ferrotile._core.Hub``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgpack
import numpy as np
import orjson
import pytest

from ferrotile import _core
from ferrotile.errors import EntryIdError, EnvelopeError, HubError
from tests.core.entry_frames import HEADER, Frames, split

T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]], timeout: float = 5.0) -> T:
    """Run ``make()`` (called inside the running loop) with a timeout."""

    async def main() -> T:
        return await asyncio.wait_for(make(), timeout)

    return asyncio.run(main())


def read(sub: _core.EntrySubscription, block_ms: int | None = 1000) -> Frames:
    return run(lambda: sub.next_read(block_ms))


def test_publish_returns_increasing_ids_and_tiled_publish_gets_ids_too() -> None:
    hub = _core.Hub()
    ids = hub.publish_entries(1, [b"a", memoryview(b"bc"), bytearray(b"d")], header=HEADER)
    assert len(ids) == 3
    keys = [tuple(int(p) for p in i.split("-")) for i in ids]
    assert keys == sorted(set(keys))
    seq = hub.publish(1, HEADER, b"tiled")
    assert seq == 4
    info = hub.stream_info(1)
    assert info is not None
    assert info["length"] == info["entries_added"] == 4
    assert info["first_entry_id"] == ids[0] and info["first_entry"] == b"a"
    assert info["last_entry"] == b"tiled" and info["last_entry_id"] > ids[2]
    assert info["max_deleted_entry_id"] == "0-0"
    assert hub.stream_info(2) is None
    # Any contiguous buffer, e.g. a NumPy array, is taken as its bytes.
    (arr_id,) = hub.publish_entries(1, [np.arange(3, dtype="<u2")], header=HEADER)
    assert hub.stream_info(1)["last_entry"] == b"\x00\x00\x01\x00\x02\x00"  # type: ignore[index]
    assert arr_id > ids[2]


def test_explicit_ids_and_all_or_nothing_validation() -> None:
    hub = _core.Hub()
    ids = hub.publish_entries(1, [b"a", b"b", b"c", b"d"], ["5-1", "5-*", "6", None], header=HEADER)
    assert ids[:3] == ["5-1", "5-2", "6-0"]
    sub = hub.subscribe_entries([1], ["s"], ["$"])
    for bad in (["7-0", "7-0"], ["7-0", "5-9"], ["0-0"], ["x"], ["1-2-3"], [ids[3]]):
        with pytest.raises(EntryIdError):
            hub.publish_entries(1, [b"x"] * len(bad), bad, header=HEADER)
    assert issubclass(EntryIdError, ValueError) and issubclass(EntryIdError, HubError)
    with pytest.raises(EnvelopeError):
        hub.publish_entries(1, [b"x"], header=b'{"sequence": 1}')
    with pytest.raises(ValueError):
        hub.publish_entries(1, [b"x", b"y"], ["9-0"], header=HEADER)
    with pytest.raises(TypeError):
        hub.publish_entries(1, ["text"], header=HEADER)  # type: ignore[list-item]
    # Nothing of a refused batch was published or used a sequence.
    assert hub.current_sequence(1) == 4
    assert read(sub, 0) == (["[]", b""], None)
    assert hub.publish(1, HEADER) == 5


def test_tiled_subscribers_get_each_entry_as_a_uint8_array() -> None:
    hub = _core.Hub()
    packed = hub.subscribe(1)
    text = hub.subscribe(1, envelope="json")
    hub.publish_entries(1, [b"\x01\x02\xff", b""], header=HEADER)
    frames, _ = run(lambda: packed.next_batch())
    first = msgpack.unpackb(frames[0])
    assert list(first) == [
        "type",
        "sequence",
        "timestamp",
        "mimetype",
        "offset",
        "block",
        "shape",
        "payload",
    ]
    assert (first["type"], first["sequence"], first["shape"]) == ("array-data", 1, [3])
    assert first["payload"] == b"\x01\x02\xff"
    assert msgpack.unpackb(frames[1])["shape"] == [0]
    frames, _ = run(lambda: text.next_batch())
    assert orjson.loads(frames[0])["payload"] == [1, 2, 255]


def test_header_frames_share_the_payload_object_between_subscribers() -> None:
    hub = _core.Hub()
    one = hub.subscribe_entries([1], ["cam"], ["$"])
    two = hub.subscribe_entries([1], ["cam"], ["$"])
    raw = hub.subscribe_entries([1], ["cam"], ["$"], header=False)
    (entry_id,) = hub.publish_entries(1, [b"frame-1"], header=HEADER)
    frames, close = read(one)
    other, _ = read(two)
    raw_frames, _ = read(raw)
    assert close is None
    assert frames[0] == orjson.dumps([["cam", entry_id, 7]]).decode()
    assert frames[1] == b"frame-1"
    assert frames[1] is other[1] is raw_frames[0]
    assert one.cursors == [entry_id]


def test_count_per_topic_multi_topic_and_header_offsets() -> None:
    hub = _core.Hub()
    sub = hub.subscribe_entries([1, 2], ["a", "b"], ["$", "$"], count=2)
    a = hub.publish_entries(1, [b"1", b"22", b"333"], header=HEADER)
    b = hub.publish_entries(2, [b"x"], header=HEADER)
    frames, _ = read(sub)
    assert split(frames) == [("a", a[0], b"1"), ("a", a[1], b"22"), ("b", b[0], b"x")]
    assert orjson.loads(frames[0])[-1][2] == 4
    frames, _ = read(sub)
    assert split(frames) == [("a", a[2], b"333")]
    assert sub.cursors == [a[2], b[0]]
    raw = hub.subscribe_entries([1, 2], ["a", "b"], ["0", "-"], header=False, count=5)
    assert read(raw)[0] == [b"1", b"22", b"333", b"x"]


def test_time_cursors_and_latest() -> None:
    hub = _core.Hub()
    times = ["1000", "2000", "3000", "4000"]
    ids = hub.publish_entries(1, [b"a", b"b", b"c", b"d"], times, header=HEADER)
    sub = hub.subscribe_entries([1], ["s"], ["2500"], count=10)
    assert sub.cursors == ["2500-0"]
    assert [p for _, _, p in split(read(sub)[0])] == [b"c", b"d"]
    newest = hub.subscribe_entries([1], ["s"], ["0"], latest=True, count=2)
    assert [(i, p) for _, i, p in split(read(newest)[0])] == [(ids[3], b"d"), (ids[2], b"c")]
    assert (newest.dropped, newest.cursors) == (2, [ids[3]])
    assert read(newest, 0) == (["[]", b""], None)
    hub.publish_entries(1, [b"e"], header=HEADER)
    assert [p for _, _, p in split(read(newest)[0])] == [b"e"]
    assert newest.dropped == 2


def test_heartbeat_after_block_ms() -> None:
    hub = _core.Hub()
    sub = hub.subscribe_entries([1], ["s"], ["$"])
    raw = hub.subscribe_entries([1], ["s"], ["$"], header=False)
    assert read(sub, 30) == (["[]", b""], None)
    assert read(raw, 0) == ([b""], None)
    assert sub.cursors == ["0-0"]


def test_missed_dropped_and_retention_override() -> None:
    hub = _core.Hub(max_count=100)
    hub.set_retention(1, max_count=3)
    sub = hub.subscribe_entries([1], ["s"], ["$"], count=10)
    hub.publish_entries(1, [b"%d" % i for i in range(5)], header=HEADER)
    assert [p for _, _, p in split(read(sub)[0])] == [b"2", b"3", b"4"]
    assert (sub.missed, sub.dropped) == (2, 0)
    info = hub.stream_info(1)
    assert info is not None and (info["length"], info["entries_added"]) == (3, 5)
    capped = hub.subscribe_entries([1], ["s"], ["$"], count=1, max_queue_bytes=1)
    hub.publish_entries(1, [b"5", b"6"], header=HEADER)
    assert [p for _, _, p in split(read(capped)[0])] == [b"6"]
    assert capped.dropped == 1
    hub.set_retention(1)
    hub.publish_entries(1, [b"%d" % i for i in range(7, 12)], header=HEADER)
    assert hub.stream_info(1)["length"] == 8  # type: ignore[index]
    with pytest.raises(ValueError):
        hub.set_retention(1, max_count=0)


def test_bad_subscriptions_raise_before_registering() -> None:
    hub = _core.Hub()
    with pytest.raises(EntryIdError):
        hub.subscribe_entries([1], ["s"], ["soon"])
    for kwargs in ({"count": 0}, {"count": -1}):
        with pytest.raises(ValueError):
            hub.subscribe_entries([1], ["s"], ["$"], **kwargs)
    with pytest.raises(ValueError):
        hub.subscribe_entries([1, 2], ["s"], ["$", "$"])
    with pytest.raises(ValueError):
        hub.subscribe_entries([], [], [])
    assert hub.stats()["subscribers"] == 0


def test_closes() -> None:
    hub = _core.Hub()
    sub = hub.subscribe_entries([1, 2], ["a", "b"], ["$", "$"])
    hub.publish_entries(1, [b"x"], header=HEADER)
    hub.drop_topic(2)
    frames, close = read(sub)
    assert [p for _, _, p in split(frames)] == [b"x"]
    assert close == (1001, "node was deleted")
    assert read(sub) == ([], (1001, "node was deleted"))
    live = hub.subscribe_entries([1], ["a"], ["$"])
    hub.interrupt(1)
    assert read(live) == ([], (1012, "Live subscription lost"))

    async def cancel_pending() -> Frames:
        waiting = hub.subscribe_entries([1], ["a"], ["$"])
        pending = asyncio.ensure_future(waiting.next_read())
        await asyncio.sleep(0.02)
        waiting.cancel()
        return await asyncio.wait_for(pending, 5)

    assert asyncio.run(cancel_pending()) == ([], (1001, "subscription cancelled"))
    last = hub.subscribe_entries([1], ["a"], ["$"])
    hub.shutdown()
    assert read(last) == ([], (1001, "server shutting down"))


def test_cancelled_waits_never_swallow_entries() -> None:
    # A wait cancelled while a publish is waking it must leave the entries for the next read.
    hub = _core.Hub()
    sub = hub.subscribe_entries([1], ["s"], ["$"], header=False, count=1000)

    async def main() -> list[bytes]:
        received: list[bytes] = []
        for i in range(500):
            pending = asyncio.ensure_future(sub.next_read())
            await asyncio.sleep(0)
            hub.publish_entries(1, [b"%d" % i], header=HEADER)
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                frames, _ = await pending
                received += frames
        while len(received) < 500:
            frames, close = await asyncio.wait_for(sub.next_read(), 5)
            assert close is None
            received += frames
        return received

    assert asyncio.run(main()) == [b"%d" % i for i in range(500)]


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_stream_hub_facade_is_awaitable_for_both_backends(backend: str, request: Any) -> None:
    from ferrotile.config import Settings
    from ferrotile.streaming.hub import StreamHub

    # Its own Redis database: topic 11 here must not be node 11 of a test server on database 0.
    cache = f"{request.getfixturevalue('redis_url')}/8" if backend == "redis" else "memory"

    async def main() -> None:
        hub = StreamHub(Settings(catalog_uri="sqlite://", api_key="k", cache=cache))
        await hub.start()
        try:
            sub = hub.subscribe_entries([11], ["s"], ["$"], count=5)
            header = orjson.loads(HEADER)
            ids = await hub.publish_entries(11, [b"a", b"b"], [None, None], header=header)
            await hub.set_retention(11, max_count=1)
            info = await hub.stream_info(11)
            assert info is not None and (info["length"], info["last_entry"]) == (1, b"b")
            frames, close = await sub.next_read(5000)
            assert close is None and [i for _, i, _ in split(frames)] == ids[-len(split(frames)) :]
            with pytest.raises(EntryIdError):
                await hub.publish_entries(11, [b"c"], [ids[-1]], header=header)
        finally:
            hub.shutdown()

    asyncio.run(main())
