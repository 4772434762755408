"""G9: is every loss reported to the subscriber? ferrotile (with ``notify_gaps``) beside Tiled.

Usage (from the repository root, after ``make build``)::

    .venv/bin/python bench/gap_bench.py [--quick] [--json OUT]

Two kinds of loss, each made to happen on purpose, then counted as reported when the
subscriber is told (a ``stream-gap`` / ``stream-epoch`` notice frame, or a close code other than
1000) and as silent otherwise:

- expired: 20 frames written, left to expire (``--cache-data-ttl 1``), 5 more written; a
  subscriber then asks for ``start=1``. Targets: ferrotile in-process, Tiled (Redis cache).
- flushed: a live subscriber; 5 frames; Redis ``FLUSHALL``; 5 more frames. Targets: ferrotile on
  Redis, Tiled on Redis.

Raw ``websockets`` clients (msgpack envelopes); every process started is stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protocol
from stream_clients import create_array, write_frames
from stream_procs import API_KEY, Target, stop_all

DRIVER = "python websockets (1 subscriber)"


async def _read(url: str, expect: int, seconds: float, *, during: Any = None) -> dict[str, Any]:
    """Data frames, notices and the close code a subscriber sees until ``expect`` data frames
    arrived or ``seconds`` passed; ``during`` (a coroutine function) runs once connected."""
    seen: dict[str, Any] = {"data": 0, "notices": [], "close": None}
    headers = {"Authorization": f"Apikey {API_KEY}"}
    async with websockets.connect(url, additional_headers=headers, max_size=None,
                                  compression=None) as ws:  # fmt: skip
        await ws.recv()  # schema
        task = asyncio.ensure_future(during()) if during else None
        deadline = time.monotonic() + seconds
        try:
            while seen["data"] < expect and time.monotonic() < deadline:
                raw = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                kind = msgpack.unpackb(raw).get("type", "")
                if kind.startswith("stream-"):
                    seen["notices"].append(kind)
                else:
                    seen["data"] += 1
        except websockets.ConnectionClosed as closed:
            seen["close"] = closed.rcvd.code if closed.rcvd else 1006
        except TimeoutError:
            pass
        if task is not None:
            await task
    return seen


def _reported(seen: dict[str, Any]) -> bool:
    return bool(seen["notices"]) or seen["close"] not in (None, 1000)


def expired(name: str, logdir: Path) -> dict[str, Any]:
    target = Target(name, logdir, extra=["--cache-data-ttl", "1"])
    try:
        target.start()
        create_array(target.http, "g9", 1024)
        asyncio.run(write_frames(target.port, "g9", 1024, 20, 30.0, None))
        time.sleep(2.0)
        asyncio.run(write_frames(target.port, "g9", 1024, 5, 30.0, None))
        query = "envelope_format=msgpack&start=1&notify_gaps=true"
        seen = asyncio.run(_read(f"{target.ws}/api/v1/stream/single/g9?{query}", 5, 5.0))
    finally:
        target.close()
    return seen


def flushed(name: str, logdir: Path) -> dict[str, Any]:
    target = Target(name, logdir)
    try:
        target.start()
        create_array(target.http, "g9", 1024)

        async def loss() -> None:
            await write_frames(target.port, "g9", 1024, 5, 30.0, None)
            await asyncio.sleep(0.5)
            target.flushall()
            await write_frames(target.port, "g9", 1024, 5, 30.0, None)

        query = "envelope_format=msgpack&notify_gaps=true"
        url = f"{target.ws}/api/v1/stream/single/g9?{query}"
        seen = asyncio.run(_read(url, 10, 8.0, during=loss))
    finally:
        target.close()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    protocol.add_arguments(parser)
    args = parser.parse_args()
    logdir = Path(tempfile.mkdtemp(prefix="gap-bench-"))
    cases = [
        ("expired", "start older than retention", expired, ["ferrotile-memory", "tiled-redis"]),
        ("flushed", "Redis FLUSHALL while subscribed", flushed,
         ["ferrotile-redis", "tiled-redis"]),
    ]  # fmt: skip
    rows = []
    try:
        for _, case, run, targets in cases:
            for name in targets:
                label = protocol.TILED if name.startswith("tiled") else name
                try:
                    seen = run(name, logdir)
                except Exception as error:  # report the other cases even if one fails
                    rows.append(protocol.row("G9", case, label, DRIVER, "error", None,
                                             notes=f"{type(error).__name__}: {error}"))  # fmt: skip
                    continue
                detail = (f"{seen['data']} data frames; notices {seen['notices'] or 'none'};"
                          f" close {seen['close']}")  # fmt: skip
                rows.append(protocol.row(
                    "G9", case, label, DRIVER, "% of losses reported",
                    100.0 if _reported(seen) else 0.0, detail=detail,
                ))  # fmt: skip
                print(f"G9 {case} {label}: {detail}", file=sys.stderr)
    finally:
        stop_all()
    for r in rows:
        print(f"| G9 | {r['case']} | {r['target']} | {r['value']} | {r['detail']}{r['notes']} |")
    protocol.write(args.json, rows)


if __name__ == "__main__":
    main()
