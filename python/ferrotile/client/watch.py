"""``ferrotile watch URL PATH...``: one live line per stream (frames/s, MB/s, lag, gaps), redrawn
in place on a terminal, printed every few seconds otherwise; ``--count N`` exits after N frames
of every stream."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from ferrotile.client.connection import Client, connect
from ferrotile.client.errors import ClientError
from ferrotile.client.messages import Event, Frame, Gap

BAR = 20  # characters of the progress bar


def add_watch_parser(commands: Any) -> None:
    """Add ``watch URL PATH...`` to the top-level subcommands."""
    watch = commands.add_parser(
        "watch",
        help="follow streams from a terminal: frames/s, MB/s, lag, gaps",
        description=(
            "Subscribe to the streams of the nodes at PATH and print one line per stream: "
            "frames received, frames/s and MB/s over the last interval, lag (receive time "
            "minus the server's timestamp), gaps (sequences lost) and reconnects. Ends when "
            "every stream ends, or after --count frames of each."
        ),
    )
    watch.add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:8000")
    watch.add_argument("paths", nargs="+", metavar="PATH", help="a node whose stream to follow")
    watch.add_argument(
        "--api-key",
        default=os.environ.get("TILED_API_KEY"),
        help="the server's API key (default: $TILED_API_KEY)",
    )
    watch.add_argument("--count", type=int, metavar="N", help="exit after N frames of every stream")
    watch.add_argument(
        "--start",
        type=int,
        metavar="SEQ",
        help="replay from this sequence (0: the oldest retained); default: new frames only",
    )
    watch.add_argument(
        "--latest",
        action="store_true",
        help="when behind, skip to the newest frame (reported as a gap) instead of lagging",
    )
    watch.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between lines (1)"
    )


@dataclass
class Stats:
    path: str
    count: int | None
    frames: int = 0
    bytes: int = 0
    missed: int = 0
    reconnects: int = 0
    lag: float | None = None
    ended: str | None = None
    marks: list[tuple[float, int, int]] = field(default_factory=list)  # (time, frames, bytes)

    def add(self, message: Frame | Gap | Event) -> None:
        if isinstance(message, Frame):
            self.frames += 1
            self.bytes += message.array.nbytes
            if isinstance(message.timestamp, str):
                sent = datetime.fromisoformat(message.timestamp).timestamp()
                self.lag = time.time() - sent
        elif isinstance(message, Gap):
            self.missed += message.count
        elif message.type == "reconnected":
            self.reconnects += 1

    @property
    def done(self) -> bool:
        return self.ended is not None or (self.count is not None and self.frames >= self.count)

    def line(self, now: float) -> str:
        self.marks = [m for m in self.marks if now - m[0] < 5] + [(now, self.frames, self.bytes)]
        then, frames, size = self.marks[0]
        span = now - then
        rate = (self.frames - frames) / span if span > 0 else 0.0
        throughput = (self.bytes - size) / span / 1e6 if span > 0 else 0.0
        lag = f"{self.lag * 1000:7.1f} ms" if self.lag is not None else "      - ms"
        text = (
            f"{self.path}  {self.frames:>8} frames  {rate:9.1f} frames/s  "
            f"{throughput:8.2f} MB/s  lag {lag}  gaps {self.missed}"
        )
        if self.reconnects:
            text += f"  reconnects {self.reconnects}"
        if self.count:
            filled = min(BAR, BAR * self.frames // self.count)
            text += f"  [{'#' * filled}{'.' * (BAR - filled)}] {self.frames}/{self.count}"
        if self.ended:
            text += f"  ({self.ended})"
        return text


async def _follow(client: Client, stats: Stats, args: argparse.Namespace) -> None:
    subscription = client.subscribe(stats.path, start=args.start, latest=args.latest)
    async for message in subscription:
        stats.add(message)
        if stats.done:
            break
    else:
        stats.ended = "stream closed"


class Display:
    """Lines redrawn in place on a terminal; on anything else, printed at each interval."""

    def __init__(self, out: TextIO, streams: list[Stats]) -> None:
        self.out = out
        self.streams = streams
        self.tty = out.isatty()
        self.drawn = 0

    def draw(self) -> None:
        now = time.monotonic()
        lines = [s.line(now) for s in self.streams]
        if self.tty and self.drawn:
            self.out.write(f"\x1b[{self.drawn}F")  # back to the first line drawn
        for text in lines:
            self.out.write(("\x1b[2K" if self.tty else "") + text + "\n")
        self.out.flush()
        self.drawn = len(lines)


async def _watch(args: argparse.Namespace, out: TextIO) -> None:
    with connect(args.url, api_key=args.api_key) as client:
        streams = [Stats(path, args.count) for path in args.paths]
        display = Display(out, streams)
        tasks = [asyncio.create_task(_follow(client, s, args)) for s in streams]
        try:
            while not all(task.done() for task in tasks):
                await asyncio.wait(tasks, timeout=args.interval)
                display.draw()
            for task in tasks:
                task.result()  # raises a stream's error
        finally:
            for task in tasks:
                task.cancel()


def run_watch(args: argparse.Namespace, out: TextIO = sys.stdout) -> None:
    """Raises :class:`ClientError` (the CLI prints it as one line)."""
    if args.count is not None and args.count < 1:
        raise ClientError("--count must be at least 1")
    asyncio.run(_watch(args, out))
