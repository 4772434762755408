"""G9: when history is lost, is the subscriber told? ferrotile (``notify_gaps=true``) vs Tiled.

Usage (from the repository root, after ``make build``)::

    .venv/bin/python bench/gap_bench.py [--quick] [--json OUT] \
        [--targets ferrotile-memory,ferrotile-redis,ferrotile-redis-2w,tiled-redis]

Cases (each with several subscribers; every subscriber whose history was lost counts once):

- ``expired``: 20 frames are written, the data TTL passes (``--cache-data-ttl 2``), 5 more are
  written, then subscribers ask for ``start=1``;
- ``evicted`` (ferrotile only; Tiled has no count limit): 80 frames into a node retaining 50
  (``--cache-max-count 50``), then ``start=1``;
- ``flushall`` (Redis targets): live subscribers, 10 frames, ``FLUSHALL``, 10 more frames;
  then new subscribers resume at ``start = last sequence seen + 1``;
- ``restart`` (Redis targets): the same with the private redis-server killed and started again
  on the same port (nothing persisted).

A subscriber counts as told when it receives a ``stream-gap`` / ``stream-epoch`` notice or a
WebSocket close code other than 1000 (a TCP drop with no close frame does not count); the row's
value is the percentage told. loss = frames a subscriber asked for and neither received nor was
told about; gaps = sequence jumps or restarts it saw without a notice; dup = repeated frame ids.
Frames are 1 KiB uint64 arrays whose element 0 is the frame id, written with
``PUT /array/full?persist=false`` (retried while a restarted Redis comes back, bounded in time).
Every target and redis-server is started here on a free 127.0.0.1 port and stopped afterwards,
also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protocol
from stream_clients import RawPut, create_array
from stream_procs import API_KEY, TARGETS, Target, stop_all

KiB = 1024
DATA_TTL = 2
MAX_COUNT = 50
DRIVER = "python websockets + raw-HTTP writer"
NOTICES = ("stream-gap", "stream-epoch")


@dataclass
class Seen:
    """What one subscriber received."""

    ids: list[int] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    close_code: int | None = None
    dropped: bool = False  # connection lost without a close frame
    silent_gaps: int = 0
    dups: int = 0

    @property
    def told(self) -> bool:
        return bool(self.notices) or (self.close_code is not None and self.close_code != 1000)


async def subscribe(
    url: str,
    want_id: list[int],
    seconds: float,
    ready: asyncio.Event,
    stop: asyncio.Event,
    seen: Seen,
) -> Seen:
    """Read until frame ``want_id[0]`` arrives, the socket closes, ``stop`` is set (checked
    every 0.2 s while nothing arrives) or ``seconds`` pass."""
    import websockets
    from websockets.asyncio.client import connect

    deadline = time.monotonic() + seconds
    last_seq: int | None = None
    notified = False
    try:
        async with connect(
            url, additional_headers={"Authorization": f"Apikey {API_KEY}"}, compression=None,
            max_size=None, open_timeout=10, ping_interval=None, proxy=None,
        ) as ws:  # fmt: skip
            ready.set()
            while time.monotonic() < deadline:
                try:
                    data = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    if stop.is_set():
                        break
                    continue
                message = msgpack.unpackb(data) if isinstance(data, bytes) else {}
                kind = message.get("type")
                if kind in NOTICES:
                    seen.notices.append(kind)
                    notified = True
                    continue
                if kind != "array-data":
                    continue
                frame_id = int(np.frombuffer(message["payload"][:8], dtype="<u8")[0])
                sequence = message.get("sequence")
                if last_seq is not None and sequence != last_seq + 1 and not notified:
                    seen.silent_gaps += 1
                notified = False
                last_seq = sequence
                seen.dups += frame_id in seen.ids
                seen.ids.append(frame_id)
                seen.sequences.append(sequence)
                if frame_id >= want_id[0]:
                    break
    except websockets.ConnectionClosed as closed:
        if closed.rcvd is not None:
            seen.close_code = closed.rcvd.code
        else:
            seen.dropped = True
    except (OSError, websockets.InvalidHandshake, TimeoutError):
        seen.dropped = True
    finally:
        ready.set()
    return seen


class Writer:
    """Stream-only 1 KiB PUTs with consecutive frame ids; retries (bounded) while the server
    answers 503 or the connection drops (Redis restarting)."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key, self.next_id = port, key, 0
        self.frame = np.zeros(KiB // 8, dtype="<u8")

    async def write(self, count: int, retry_seconds: float = 15.0) -> int:
        deadline = time.monotonic() + retry_seconds
        written = 0
        while written < count and time.monotonic() < deadline:
            try:
                async with RawPut(self.port, self.key) as client:
                    while written < count:
                        self.frame[0] = self.next_id
                        await client.put(memoryview(self.frame).cast("B"))
                        self.next_id += 1
                        written += 1
            except (RuntimeError, OSError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.2)
        return written


def stream_url(target: Target, key: str, start: int | None) -> str:
    url = f"{target.ws}/api/v1/stream/single/{key}?envelope_format=msgpack"
    if target.kind == "ferrotile":
        url += "&notify_gaps=true"
    return url + ("" if start is None else f"&start={start}")


async def subscribers(
    urls: list[str],
    want: list[int],
    seconds: float,
    stop: asyncio.Event | None = None,
    seen: list[Seen] | None = None,
) -> list[asyncio.Task[Seen]]:
    """Connected subscribers (tasks returning what each saw, filling ``seen`` meanwhile)."""
    stop = stop or asyncio.Event()
    seen = seen if seen is not None else [Seen() for _ in urls]
    readies = [asyncio.Event() for _ in urls]
    tasks = [
        asyncio.create_task(subscribe(u, want, seconds, r, stop, s))
        for u, r, s in zip(urls, readies, seen, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 15)
    await asyncio.sleep(0.2)  # the server registers the subscription after the handshake
    return tasks


async def case_history(target: Target, key: str, subs: int, evict: bool) -> dict[str, Any]:
    """``start=1`` after the first frames expired (TTL) or were evicted (count)."""
    create_array(target.http, key, KiB)
    writer = Writer(target.port, key)
    if evict:
        await writer.write(MAX_COUNT + 30)
    else:
        await writer.write(20)
        await asyncio.sleep(DATA_TTL + 1.5)
        await writer.write(5)
    want = [writer.next_id - 1]
    tasks = await subscribers([stream_url(target, key, 1)] * subs, want, 5.0)
    seen = [await t for t in tasks]
    return tally(seen, expected=writer.next_id, lost_before=lambda s: min(s.ids, default=0) > 0)


async def case_redis_loss(target: Target, key: str, subs: int, restart: bool) -> dict[str, Any]:
    """Live subscribers while Redis is flushed or restarted; then subscribers resuming at the
    next sequence they would have asked for."""
    assert target.redis is not None
    create_array(target.http, key, KiB)
    writer = Writer(target.port, key)
    await writer.write(1)
    want, stop, seen = [10**9], asyncio.Event(), [Seen() for _ in range(subs)]
    live = await subscribers([stream_url(target, key, None)] * subs, want, 30.0, stop, seen)
    await writer.write(10)
    await asyncio.sleep(0.5)
    # Where a client disconnected by the event would resume: after what it had before it.
    last = max((s.sequences[-1] for s in seen if s.sequences), default=0)
    if restart:
        target.redis.restart()
    else:
        target.flushall()
    await asyncio.sleep(0.3)
    written = await writer.write(10)
    await asyncio.sleep(1.5)
    stop.set()
    seen_live = [await task for task in live]
    resumed = await subscribers([stream_url(target, key, last + 1)] * subs, want, 3.0)
    await writer.write(1)
    want[0] = writer.next_id - 1
    seen_resumed = [await task for task in resumed]
    return {
        "live": tally(seen_live, expected=written, lost_before=lambda s: True),
        "resumed": tally(seen_resumed, expected=written + 1, lost_before=lambda s: True),
    }


def tally(seen: list[Seen], expected: int, lost_before: Any) -> dict[str, Any]:
    """Counts over the subscribers whose history was lost (``lost_before``)."""
    affected = [s for s in seen if lost_before(s)]
    told = [s for s in affected if s.told]
    codes: dict[int, int] = {}
    for s in affected:
        if s.close_code is not None:
            codes[s.close_code] = codes.get(s.close_code, 0) + 1
    notices = sorted({n for s in affected for n in s.notices})
    return {
        "affected": len(affected), "told": len(told),
        "loss": sum(max(0, expected - len(set(s.ids))) for s in affected if not s.told),
        "dup": sum(s.dups for s in affected), "gaps": sum(s.silent_gaps for s in affected),
        "detail": (f"{len(told)} of {len(affected)} told; notices {notices or 'none'}; "
                   f"close codes {codes or 'none'}; dropped without close "
                   f"{sum(s.dropped for s in affected)}"),
    }  # fmt: skip


def add_row(rows: list[dict[str, Any]], case: str, name: str, result: dict[str, Any]) -> None:
    share = 100 * result["told"] / result["affected"] if result["affected"] else None
    rows.append(protocol.row(
        "G9", case, name, DRIVER, "% told", share, loss=result["loss"], dup=result["dup"],
        gaps=result["gaps"], detail=result["detail"],
    ))  # fmt: skip


def run_target(name: str, subs: int, logdir: Path, rows: list[dict[str, Any]]) -> None:
    target = Target(name, logdir)
    ferrotile = target.kind == "ferrotile"
    target.extra = ["--cache-data-ttl", str(DATA_TTL)]
    if ferrotile:
        target.extra += ["--cache-max-count", str(MAX_COUNT)]
    cases: list[tuple[str, Any]] = [
        ("start=1 after the data TTL expired",
         lambda: case_history(target, "expired", subs, evict=False)),
    ]  # fmt: skip
    if ferrotile:
        cases.append(("start=1 after count eviction",
                      lambda: case_history(target, "evicted", subs, evict=True)))  # fmt: skip
    if TARGETS[name][1] == "redis":
        for event, restart in (("FLUSHALL", False), ("restart", True)):
            cases.append(
                (
                    f"Redis {event}",
                    lambda r=restart, e=event: case_redis_loss(target, e.lower(), subs, r),
                )
            )
    try:
        target.start()
        for case, run in cases:
            t0 = time.monotonic()
            try:
                result = asyncio.run(run())
            except Exception as error:
                rows.append(protocol.row("G9", case, name, DRIVER, "error", None,
                                         notes=f"{type(error).__name__}: {error}"))  # fmt: skip
                continue
            if "live" in result:
                add_row(rows, f"{case}: live subscribers", name, result["live"])
                add_row(rows, f"{case}: resume at last+1", name, result["resumed"])
            else:
                add_row(rows, case, name, result)
            print(f"  {name} {case}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    finally:
        target.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    protocol.add_arguments(parser)
    parser.add_argument("--only", default="", help="accepted for run.py (only G9 here)")
    parser.add_argument(
        "--targets",
        help="comma-separated (default: quick ferrotile-redis,"
        "tiled-redis; full adds ferrotile-memory and ferrotile-redis-2w)",
    )
    args = parser.parse_args()
    protocol.interrupt_on_signals()
    default = ("ferrotile-redis,tiled-redis" if args.quick else
               "ferrotile-memory,ferrotile-redis,ferrotile-redis-2w,tiled-redis")  # fmt: skip
    names = [n.strip() for n in (args.targets or default).split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown targets: {unknown}")
    subs = 4 if args.quick else 10
    logdir = Path(tempfile.mkdtemp(prefix="gap-bench-"))
    rows: list[dict[str, Any]] = []
    try:
        for name in names:
            print(f"{name} ...", file=sys.stderr)
            run_target(name, subs, logdir, rows)
    finally:
        stop_all()
    protocol.write(args.json, rows)
    for row in rows:
        value = "-" if row["value"] is None else f"{row['value']:.0f}%"
        print(f"{row['target']:20s} {row['case']:45s} {value:>5s}  {row['detail'] or row['notes']}")
    with contextlib.suppress(OSError):
        print(f"(server logs in {logdir})", file=sys.stderr)


if __name__ == "__main__":
    main()
