"""Semantics of the native streaming hub (``ferrotile._core.Hub``) as seen from Python."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgpack
import numpy as np
import orjson
import pytest

from ferrotile import _core
from ferrotile.errors import EnvelopeError, HubError

T = TypeVar("T")

HEADER = orjson.dumps({"type": "array-data", "timestamp": "2024-01-01T00:00:00", "shape": [3]})


def run(make: Callable[[], Awaitable[T]], timeout: float = 5.0) -> T:
    """Run ``make()`` (which must be called inside the running loop) with a timeout."""

    async def main() -> T:
        return await asyncio.wait_for(make(), timeout)

    return asyncio.run(main())


def drain(sub: _core.Subscription) -> tuple[list[bytes], tuple[int, str] | None]:
    async def main() -> tuple[list[bytes], tuple[int, str] | None]:
        frames: list[bytes] = []
        while True:
            batch, close = await asyncio.wait_for(sub.next_batch(), 5)
            frames.extend(batch)
            if close is not None:
                return frames, close

    return asyncio.run(main())


def unpack(frame: bytes) -> dict[str, Any]:
    result: dict[str, Any] = msgpack.unpackb(frame)
    return result


def test_msgpack_round_trip() -> None:
    hub = _core.Hub()
    sub = hub.subscribe(5)
    assert hub.publish(5, HEADER, b"\x00\x01\x02") == 1
    frames, close = run(sub.next_batch)
    assert close is None
    msg = unpack(frames[0])
    assert list(msg) == ["type", "sequence", "timestamp", "shape", "payload"]
    assert msg["type"] == "array-data"
    assert msg["sequence"] == 1
    assert msg["timestamp"] == "2024-01-01T00:00:00"
    assert msg["payload"] == b"\x00\x01\x02"
    assert sub.last_sequence == 1
    assert hub.current_sequence(5) == 1
    assert hub.current_sequence(6) == 0


def test_json_envelope_with_array_payload() -> None:
    hub = _core.Hub()
    sub = hub.subscribe(1, envelope="json")
    data = np.array([1, 2, 3], dtype="<i8")
    hub.publish(1, HEADER, data.tobytes(), (data.dtype.str, data.shape))
    frames, _ = run(sub.next_batch)
    msg = json.loads(frames[0])
    assert msg["payload"] == [1, 2, 3]
    assert msg["content-type"] == "application/json"
    assert msg["sequence"] == 1


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<u2", "|b1", "<c16", "<f2"])
def test_json_transcoding_matches_numpy_tolist(dtype: str) -> None:
    hub = _core.Hub()
    sub = hub.subscribe(1, envelope="json")
    data = (np.arange(6).reshape(2, 3) / 4).astype(dtype)
    hub.publish(1, HEADER, data.tobytes(), (data.dtype.str, list(data.shape)))
    frames, _ = run(sub.next_batch)
    expected = data.tolist()
    if dtype == "<c16":
        expected = [[[z.real, z.imag] for z in row] for row in expected]
    assert json.loads(frames[0])["payload"] == expected


def test_same_bytes_object_for_every_subscriber() -> None:
    hub = _core.Hub()
    subs = [hub.subscribe(1) for _ in range(3)]
    jsubs = [hub.subscribe(1, envelope="json") for _ in range(2)]
    hub.publish(1, HEADER, b"abc")
    frames = [run(s.next_batch)[0][0] for s in subs]
    assert frames[0] is frames[1] is frames[2]
    jframes = [run(s.next_batch)[0][0] for s in jsubs]
    assert jframes[0] is jframes[1]
    assert jframes[0] is not frames[0]
    assert hub.stats()["subscribers"] == 5


def test_close_stream_ends_live_subscriber_with_1000() -> None:
    hub = _core.Hub()
    sub = hub.subscribe(1)
    hub.publish(1, HEADER)
    assert hub.close_stream(1) == 2
    frames, close = drain(sub)
    assert [unpack(f)["sequence"] for f in frames] == [1]
    assert close == (1000, "Producer ended stream")
    assert run(sub.next_batch) == ([], close)


def test_waiting_subscriber_is_woken() -> None:
    hub = _core.Hub()
    sub = hub.subscribe(1)

    async def main() -> tuple[list[bytes], tuple[int, str] | None]:
        pending = asyncio.ensure_future(sub.next_batch())
        await asyncio.sleep(0.02)
        assert not pending.done()
        hub.publish(1, HEADER, b"x")
        return await asyncio.wait_for(pending, 5)

    frames, close = asyncio.run(main())
    assert close is None and unpack(frames[0])["payload"] == b"x"


def test_replay() -> None:
    hub = _core.Hub(max_count=3)
    for _ in range(5):
        hub.publish(1, HEADER)
    sub = hub.subscribe(1, start=1)
    assert sub.missed == 2
    hub.publish(1, HEADER)  # evicts 3 before it was replayed: skipped silently, counted
    frames, _ = run(sub.next_batch)
    assert [unpack(f)["sequence"] for f in frames] == [4, 5, 6]
    assert sub.missed == 3
    oldest = hub.subscribe(1, start=0)
    frames, _ = run(lambda: oldest.next_batch(max_messages=2))
    assert [unpack(f)["sequence"] for f in frames] == [4, 5]
    beyond = hub.subscribe(1, start=100)
    hub.close_stream(1)
    assert drain(beyond) == ([], (1000, "Producer ended stream"))
    assert hub.stats()["retained_messages"] == 3


def test_cancel_wakes_pending_next_batch() -> None:
    hub = _core.Hub()
    sub = hub.subscribe(1)

    async def main() -> tuple[list[bytes], tuple[int, str] | None]:
        pending = asyncio.ensure_future(sub.next_batch())
        await asyncio.sleep(0.02)
        sub.cancel()
        return await asyncio.wait_for(pending, 5)

    assert asyncio.run(main()) == ([], (1001, "subscription cancelled"))
    assert hub.stats()["subscribers"] == 0


def test_cancelling_the_awaiting_task_is_harmless() -> None:
    hub = _core.Hub()
    sub = hub.subscribe(1)

    async def main() -> None:
        pending = asyncio.ensure_future(sub.next_batch())
        await asyncio.sleep(0.02)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        hub.publish(1, HEADER)
        frames, _ = await asyncio.wait_for(sub.next_batch(), 5)
        assert [unpack(f)["sequence"] for f in frames] == [1]

    asyncio.run(main())


def test_drop_topic_and_shutdown() -> None:
    hub = _core.Hub()
    a, b = hub.subscribe(1), hub.subscribe(2)
    hub.drop_topic(1)
    assert run(a.next_batch) == ([], (1001, "node was deleted"))
    hub.shutdown()
    assert run(b.next_batch) == ([], (1001, "server shutting down"))
    with pytest.raises(HubError):
        hub.publish(2, HEADER)
    with pytest.raises(HubError):
        hub.subscribe(2)


def test_errors() -> None:
    hub = _core.Hub()
    with pytest.raises(EnvelopeError):
        hub.publish(1, b"[1, 2]")
    with pytest.raises(ValueError):
        hub.publish(1, b"not json")
    with pytest.raises(EnvelopeError):
        hub.publish(1, HEADER, b"\x00" * 7, ("<i8", (1,)))
    with pytest.raises(EnvelopeError):
        hub.subscribe(1, envelope="xml")
    with pytest.raises(ValueError):
        _core.Hub(max_count=0)
    assert hub.publish(1, HEADER) == 1  # failed publishes consumed no sequence


def test_encode_message() -> None:
    schema = {"type": "container-schema", "version": 1}
    header = orjson.dumps(schema)
    assert msgpack.unpackb(_core.encode_message(header)) == schema
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
    subs = [hub.subscribe(1) for _ in range(2000)]
    pending = [asyncio.ensure_future(s.next_batch()) for s in subs]
    await asyncio.sleep(0.01)
    hub.publish(1, b'{"type": "x"}')

asyncio.run(main())
"""


def test_interpreter_exit_right_after_waking_many_waiters_is_clean() -> None:
    # Regression: Tokio threads attaching during finalization used to abort the process.
    for _ in range(5):
        done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_cancelled_waits_never_swallow_messages() -> None:
    # A wait cancelled while a publish is waking it must leave the frames for the next wait.
    hub = _core.Hub()
    sub = hub.subscribe(1)

    async def main() -> list[int]:
        received: list[int] = []
        for _ in range(1000):
            pending = asyncio.ensure_future(sub.next_batch())
            await asyncio.sleep(0)
            hub.publish(1, HEADER)
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                frames, _ = await pending
                received += [unpack(f)["sequence"] for f in frames]
        while len(received) < 1000:
            frames, close = await asyncio.wait_for(sub.next_batch(), 5)
            assert close is None
            received += [unpack(f)["sequence"] for f in frames]
        return received

    assert asyncio.run(main()) == list(range(1, 1001))
