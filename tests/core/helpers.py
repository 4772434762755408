"""Helpers of the native hub's tests: the async test runner, hubs, frames and entries."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import msgpack
import orjson

from ferrotile import _core

#: A Tiled header for the by-sequence tests.
H = orjson.dumps({"type": "array-data", "timestamp": "2024-01-01T00:00:00", "shape": [3]})
#: The entries' Tiled header.
HEADER = orjson.dumps(
    {
        "type": "array-data",
        "timestamp": "2024-01-01T00:00:00",
        "mimetype": "application/octet-stream",
        "offset": None,
        "block": None,
    }
)

Frames = tuple[list[Any], tuple[int, str] | None]


class MakeHubs(Protocol):
    """The ``hubs`` fixture: ``await hubs(**options)`` gives a writer and a reader hub (the same
    hub in process, two processes' worth with Redis)."""

    def __call__(self, **options: Any) -> Awaitable[tuple[_core.Hub, _core.Hub]]: ...


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Runs an async test in a fresh event loop (the suite has no asyncio plugin); pytest sees
    its fixtures through the wrapper."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def prefix() -> str:
    """A fresh Redis key prefix (streams no other test sees)."""
    return f"t{uuid.uuid4().hex[:8]}:"


async def connected(cache: str, **options: Any) -> _core.Hub:
    hub = _core.Hub(cache, **options)
    await hub.connect()
    return hub


def unpack(frame: bytes | str) -> dict[str, Any]:
    assert isinstance(frame, bytes)
    result: dict[str, Any] = msgpack.unpackb(frame)
    return result


async def drain(sub: _core.Subscription, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Up to ``n`` msgpack messages (fewer if the subscription closes first)."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            frames, close = await sub.next_batch()
            out += [unpack(f) for f in frames]
            if close is not None:
                break
    return out


async def until_closed(
    sub: _core.Subscription, timeout: float = 10.0
) -> tuple[list[bytes | str], tuple[int, str]]:
    """Every frame until the close, and the close."""
    frames: list[bytes | str] = []
    async with asyncio.timeout(timeout):
        while True:
            batch, close = await sub.next_batch()
            frames += batch
            if close is not None:
                return frames, close


async def seqs(sub: _core.Subscription, n: int) -> list[int]:
    return [m["sequence"] for m in await drain(sub, n)]


async def watch(hub: _core.Hub, topic: int) -> _core.Subscription:
    """A live subscription that tells when ``hub`` has received what was published (with Redis
    a publish reaches a process's mirror a moment after it returns): :func:`drain` it."""
    return await hub.subscribe(topic)


def split(frames: list[Any]) -> list[tuple[str, str, bytes]]:
    """``[(name, id, payload), ...]`` of a header-mode read ``[header_text, payload]``."""
    header, data = frames
    out, start = [], 0
    for name, entry_id, end in orjson.loads(header):
        out.append((name, entry_id, data[start:end]))
        start = end
    return out
