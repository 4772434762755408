"""Subscriptions by sequence (Tiled) of the native hub, ``ferrotile._core.Hub``, as seen from
Python: each test that takes ``hubs`` runs in process and through Redis with two hubs acting as
two worker processes (see conftest.py); Redis-only behaviours (reconnects, flushes) at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from typing import Any

import numpy as np
import orjson
import pytest

from ferrotile import _core
from ferrotile.errors import EnvelopeError, HubError, StreamUnavailable
from tests import redis as rd
from tests.core.helpers import (
    H,
    MakeHubs,
    connected,
    drain,
    prefix,
    run,
    seqs,
    unpack,
    until_closed,
)


@run
async def test_msgpack_round_trip_and_shared_sequences(hubs: MakeHubs) -> None:
    a, b = await hubs()
    sub = await b.subscribe(5)
    assert await a.publish(5, H, b"\x00\x01\x02") == 1
    assert await b.publish(5, H, b"def") == 2
    assert await a.current_sequence(5) == 2 and await b.current_sequence(5) == 2
    msgs = await drain(sub, 2)
    assert list(msgs[0]) == ["type", "sequence", "timestamp", "shape", "payload"]
    assert (msgs[0]["type"], msgs[0]["timestamp"]) == ("array-data", "2024-01-01T00:00:00")
    assert [(m["sequence"], m["payload"]) for m in msgs] == [(1, b"\x00\x01\x02"), (2, b"def")]
    assert sub.last_sequence == 2
    assert await a.current_sequence(6) == 0


@run
async def test_json_envelope_with_array_payload(hubs: MakeHubs) -> None:
    a, b = await hubs()
    sub = await b.subscribe(1, envelope="json")
    data = np.array([1, 2, 3], dtype="<i8")
    await a.publish(1, H, data.tobytes(), (data.dtype.str, data.shape))
    frames, _ = await asyncio.wait_for(sub.next_batch(), 5)
    assert isinstance(frames[0], str)
    msg = json.loads(frames[0])
    assert (msg["payload"], msg["content-type"], msg["sequence"]) == (
        [1, 2, 3],
        "application/json",
        1,
    )


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<u2", "|b1", "<c16", "<f2"])
@run
async def test_json_transcoding_matches_numpy_tolist(hubs: MakeHubs, dtype: str) -> None:
    a, b = await hubs()
    sub = await b.subscribe(1, envelope="json")
    data = (np.arange(6).reshape(2, 3) / 4).astype(dtype)
    await a.publish(1, H, data.tobytes(), (data.dtype.str, list(data.shape)))
    frames, _ = await asyncio.wait_for(sub.next_batch(), 5)
    expected = data.tolist()
    if dtype == "<c16":
        expected = [[[z.real, z.imag] for z in row] for row in expected]
    assert json.loads(frames[0])["payload"] == expected


@run
async def test_same_bytes_object_for_every_subscriber(hubs: MakeHubs) -> None:
    a, b = await hubs()
    subs = [await b.subscribe(1) for _ in range(3)]
    jsubs = [await b.subscribe(1, envelope="json") for _ in range(2)]
    await a.publish(1, H, b"abc")
    frames = [(await asyncio.wait_for(s.next_batch(), 5))[0][0] for s in subs]
    assert frames[0] is frames[1] is frames[2]
    jframes = [(await asyncio.wait_for(s.next_batch(), 5))[0][0] for s in jsubs]
    assert jframes[0] is jframes[1]
    assert jframes[0] is not frames[0]
    assert b.stats()["subscribers"] == 5


@run
async def test_thousand_messages_in_order_to_several_subscribers(hubs: MakeHubs) -> None:
    a, b = await hubs()
    subs = [await b.subscribe(1) for _ in range(3)]
    for i in range(1000):
        await a.publish(1, H, i.to_bytes(4, "little"))
    for sub in subs:
        msgs = await drain(sub, 1000)
        assert [m["sequence"] for m in msgs] == list(range(1, 1001))
        assert [int.from_bytes(m["payload"], "little") for m in msgs] == list(range(1000))


@run
async def test_close_semantics(hubs: MakeHubs) -> None:
    a, b = await hubs()
    live = await b.subscribe(4)
    await a.publish(4, H, b"1")
    assert await a.close_stream(4) == 2
    frames, close = await until_closed(live)
    assert ([unpack(f)["sequence"] for f in frames], close) == (
        [1],
        (1000, "Producer ended stream"),
    )
    assert await live.next_batch() == ([], close)
    await a.publish(4, H, b"3")  # writes continue the same sequence
    replay = await b.subscribe(4, start=1)
    frames, close = await until_closed(replay)
    assert ([unpack(f)["sequence"] for f in frames], close) == (
        [1, 3],
        (1000, "Producer ended stream"),
    )


@run
async def test_waiting_subscriber_is_woken(hubs: MakeHubs) -> None:
    a, b = await hubs()
    sub = await b.subscribe(1)
    pending = asyncio.ensure_future(sub.next_batch())
    await asyncio.sleep(0.02)
    assert not pending.done()
    await a.publish(1, H, b"x")
    frames, close = await asyncio.wait_for(pending, 5)
    assert close is None and unpack(frames[0])["payload"] == b"x"


@run
async def test_replay_then_live_without_gaps(hubs: MakeHubs) -> None:
    a, b = await hubs()
    for _ in range(700):
        await a.publish(2, H, b"x")
    for start, first in [(0, 1), (1, 1), (650, 650)]:
        sub = await b.subscribe(2, start=start)
        seq = await a.publish(2, H, b"live")
        assert await seqs(sub, seq - first + 1) == list(range(first, seq + 1))
    beyond = await b.subscribe(2, start=10_000)
    seq = await a.publish(2, H, b"after")
    assert await seqs(beyond, 1) == [seq]


@run
async def test_replay_past_retention_counts_and_notifies_when_asked(
    hubs: MakeHubs, backend: str
) -> None:
    a, b = await hubs(max_count=5)
    for i in range(20):
        await a.publish(3, H, bytes([i]))
    silent = await b.subscribe(3, start=1)
    told = await b.subscribe(3, start=1, notify_gaps=True)
    assert await seqs(silent, 5) == [16, 17, 18, 19, 20]
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
    await a.publish(3, H, b"live")
    assert await seqs(told, 1) == [21]
    oldest = await b.subscribe(3, start=0)
    frames, _ = await asyncio.wait_for(oldest.next_batch(max_messages=2), 5)
    assert ([unpack(f)["sequence"] for f in frames], oldest.missed) == ([17, 18], 0)
    if backend == "memory":  # (b's mirror holds what reached it since it followed the node)
        assert b.stats()["retained_messages"] == 5
    beyond = await b.subscribe(3, start=100)
    await a.close_stream(3)
    assert await until_closed(beyond) == ([], (1000, "Producer ended stream"))


@run
async def test_resuming_beyond_the_head_is_an_epoch_notice_when_asked(hubs: MakeHubs) -> None:
    a, b = await hubs()
    await a.publish(4, H, b"only")  # with Redis it may reach b after b subscribed: not delivered
    # A client that saw 1..5 resumes from 6 (what the stock client does after a 1012).
    told = await b.subscribe(4, start=6, notify_gaps=True)
    silent = await b.subscribe(4, start=6)
    notice = (await drain(told, 1))[0]
    assert notice["type"] == "stream-epoch"
    assert (notice["last_sequence"], notice["current_sequence"]) == (5, 1)
    await a.publish(4, H, b"later")
    assert await seqs(told, 1) == [2]
    assert await seqs(silent, 1) == [2]  # Tiled's behaviour


@run
async def test_sequence_restarts_after_seq_ttl(hubs: MakeHubs) -> None:
    a, _ = await hubs(seq_ttl=0.3, max_age=0.3)
    assert [await a.publish(9, H, b"a") for _ in range(3)] == [1, 2, 3]
    await asyncio.sleep(0.6)
    assert await a.current_sequence(9) == 0
    assert await a.publish(9, H, b"b") == 1


@run
async def test_cancel_wakes_pending_next_batch(hubs: MakeHubs) -> None:
    _, b = await hubs()
    sub = await b.subscribe(1)
    pending = asyncio.ensure_future(sub.next_batch())
    await asyncio.sleep(0.02)
    sub.cancel()
    assert await asyncio.wait_for(pending, 5) == ([], (1001, "subscription cancelled"))
    assert b.stats()["subscribers"] == 0


@run
async def test_cancelling_the_awaiting_task_is_harmless(hubs: MakeHubs) -> None:
    a, b = await hubs()
    sub = await b.subscribe(1)
    pending = asyncio.ensure_future(sub.next_batch())
    await asyncio.sleep(0.02)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await a.publish(1, H)
    assert await seqs(sub, 1) == [1]


@run
async def test_cancelled_waits_never_swallow_messages(hubs: MakeHubs) -> None:
    # A wait cancelled while a publish is waking it must leave the frames for the next wait.
    a, b = await hubs()
    sub = await b.subscribe(1)
    received: list[int] = []
    for _ in range(500):
        pending = asyncio.ensure_future(sub.next_batch())
        await asyncio.sleep(0)
        await a.publish(1, H)
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            frames, _ = await pending
            received += [unpack(f)["sequence"] for f in frames]
    received += await seqs(sub, 500 - len(received))
    assert received == list(range(1, 501))


@run
async def test_drop_topic_and_shutdown(hubs: MakeHubs) -> None:
    _, b = await hubs()
    one, two = await b.subscribe(1), await b.subscribe(2)
    b.drop_topic(1)
    assert await one.next_batch() == ([], (1001, "node was deleted"))
    b.shutdown()
    assert await two.next_batch() == ([], (1001, "server shutting down"))
    with pytest.raises(HubError):
        await b.publish(2, H)
    with pytest.raises(HubError):
        await b.subscribe(2)


@run
async def test_errors(hubs: MakeHubs) -> None:
    a, _ = await hubs()
    with pytest.raises(EnvelopeError):
        a.publish(1, b"[1, 2]")  # raised when called: nothing is sent
    with pytest.raises(ValueError):
        a.publish(1, b"not json")
    with pytest.raises(EnvelopeError):
        a.publish(1, H, b"\x00" * 7, ("<i8", (1,)))
    with pytest.raises(EnvelopeError):
        a.subscribe(1, envelope="xml")
    with pytest.raises(ValueError):
        a.subscribe(1, on_overflow="later")
    with pytest.raises(ValueError):
        _core.Hub(max_count=0)
    with pytest.raises(ValueError):
        _core.Hub(max_age=-1)
    assert await a.publish(1, H) == 1  # failed publishes consumed no sequence


def test_encode_message() -> None:
    schema = {"type": "container-schema", "version": 1}
    header = orjson.dumps(schema)
    assert unpack(_core.encode_message(header)) == schema
    assert json.loads(_core.encode_message(header, "json")) == schema
    with pytest.raises(EnvelopeError):
        _core.encode_message(b"1")
    with pytest.raises(EnvelopeError):
        _core.encode_message(header, "yaml")


EXIT_SCRIPT = """
import asyncio
from ferrotile import _core

hub = _core.Hub()

async def main():
    subs = [await hub.subscribe(1) for _ in range(2000)]
    pending = [asyncio.ensure_future(s.next_batch()) for s in subs]
    await asyncio.sleep(0.01)
    await hub.publish(1, b'{"type": "x"}')

asyncio.run(main())
"""


def test_interpreter_exit_right_after_waking_many_waiters_is_clean() -> None:
    # Regression: Tokio threads attaching during finalization used to abort the process.
    for _ in range(5):
        done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()[-2000:]


# -- Redis only ------------------------------------------------------------------------------


@run
async def test_unreachable_at_connect() -> None:
    hub = _core.Hub("redis://127.0.0.1:1")
    assert hub.is_shared and not hub.is_connected
    with pytest.raises(StreamUnavailable, match="cannot reach Redis"):
        await hub.connect()
    with pytest.raises(StreamUnavailable):
        await hub.publish(1, H)
    # Subscribing while Redis is away gives a subscription that closes with 1012 at once.
    sub = await hub.subscribe(1)
    assert await sub.next_batch() == ([], (1012, "Live subscription lost"))


def test_bad_cache_and_password_not_shown() -> None:
    for bad in ("http://:hunter2@nope", "memroy"):
        with pytest.raises(ValueError) as raised:
            _core.Hub(bad)
        assert "hunter2" not in str(raised.value)
    assert "hunter2" not in repr(_core.Hub("redis://:hunter2@127.0.0.1:6379/0"))
    with pytest.raises(ValueError):
        _core.Hub("redis://127.0.0.1:6379", seq_ttl=0)
    assert not _core.Hub().is_shared and _core.Hub().is_connected


@run
async def test_restart_gives_1012_and_recovers() -> None:
    server = rd.start()
    try:
        a, b = await connected(server.url), await connected(server.url)
        sub = await b.subscribe(1)
        await a.publish(1, H, b"x")
        assert len(await drain(sub, 1)) == 1
        server.stop()
        assert (await until_closed(sub))[1] == (1012, "Live subscription lost")
        with pytest.raises(StreamUnavailable):
            await a.publish(1, H, b"y")
        server.start()
        async with asyncio.timeout(15):
            while not (a.is_connected and b.stats()["connected"]):
                await asyncio.sleep(0.05)
        sub = await b.subscribe(1)
        seq = await a.publish(1, H, b"z")
        assert seq == 1  # the restarted Redis (no persistence) lost the counter
        assert await seqs(sub, 1) == [1]
        assert b.stats()["reconnects"] >= 1
        a.shutdown()
        b.shutdown()
    finally:
        server.close()


@run
async def test_flushall_is_an_epoch_change_and_resumes_get_epoch_notices() -> None:
    server = rd.start()
    try:
        a, b = await connected(server.url), await connected(server.url)
        sub = await b.subscribe(1)
        for i in range(5):
            await a.publish(1, H, bytes([i]))
        assert len(await drain(sub, 5)) == 5
        flush = ["redis-cli", "-p", str(server.port), "FLUSHALL"]
        subprocess.run(flush, check=True, capture_output=True)
        code, reason = (await until_closed(sub))[1]
        assert code == 1012 and "history" in reason
        assert b.stats()["epoch_changes"] == 1
        await a.publish(1, H, b"new")  # the sequence restarted: this is 1
        # The stock client resumes from 6 after the 1012.
        told = await b.subscribe(1, start=6, notify_gaps=True)
        notice = (await drain(told, 1))[0]
        assert (notice["type"], notice["last_sequence"], notice["current_sequence"]) == (
            "stream-epoch",
            5,
            1,
        )
        a.shutdown()
        b.shutdown()
    finally:
        server.close()


@run
async def test_live_subscriber_never_gets_what_another_process_published_before(
    redis_url: str,
) -> None:
    # Issue 19 item 4: with big frames the subscribing process's mirror receives a message
    # another process published (and had acknowledged) only after the subscription registered;
    # it must not be delivered as live. A fresh node each round: this process follows nothing.
    p = prefix()
    a = await connected(redis_url, key_prefix=p, max_age=60)
    b = await connected(redis_url, key_prefix=p, max_age=60)
    try:
        frame = bytes(2 * 1024 * 1024)
        for topic in range(100, 120):
            before = await a.publish(topic, H, frame)
            sub = await b.subscribe(topic)
            after = await a.publish(topic, H, b"after")
            got: list[dict[str, Any]] = await drain(sub, 1)
            assert [m["sequence"] for m in got] == [after], f"got {before} published before"
            sub.cancel()
    finally:
        a.shutdown()
        b.shutdown()
