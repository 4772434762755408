"""Soak (issue 18, not in CI): 256 KiB frames at 100 Hz to 32 subscribers that keep leaving and
joining again, for ``--minutes`` (30 for the goal; a short run takes 3-5).

Usage (from the repository root)::

    .venv/bin/python bench/soak.py [--minutes 30] [--target ferrotile-memory] [--out soak.json]

The server (``serve catalog --temp``, any ferrotile target of ``stream_procs.TARGETS``) is
started here and stopped at the end. One writer sends ``PUT /api/v1/array/full/KEY?persist=false``
at 100 Hz (``stream_clients.write_frames``). Each of the 32 subscriber slots (forked processes,
8 slots each) stays connected for a random 5-30 s, leaves, waits a random 0.2-2 s, and joins
again with ``start = last sequence + 1`` and ``notify_gaps=true``: nothing may be lost across a
leave, and anything the server can no longer replay is announced by a ``stream-gap`` notice.

Per minute: frames written (and the writer's rate), frames delivered, joins, server RSS (the
server's process tree from /proc, sampled at the end of the minute; "flat within 10% after
warm-up" compares minutes 2.. with minute 2), latency p99 of live frames (writer stamp ->
subscriber decode; frames written before a subscriber joined are replay and not counted).
At the end: frames lost = sequences a slot never received between its first and last frame;
how many of those notices announced, and how many were lost silently (the goal: 0 lost; silent
loss is a defect, announced loss means the subscribers could not keep up); slots that missed
the final frame; the close codes seen.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

import protocol
from stream_clients import CTX, create_array, write_frames
from stream_procs import API_KEY, TARGETS, Target, rss_bytes, stop_all

KiB, MiB = 1024, 1024 * 1024
FRAME = 256 * KiB
RATE = 100.0
SLOTS, PER_PROCESS = 32, 8
KEY = "soak"


def minute_of(ns: int, t0_ns: int) -> int:
    return max(0, (ns - t0_ns) // 60_000_000_000)


async def _slot(url: str, t0_ns: int, end_ns: int, seed: int) -> dict[str, Any]:
    """One subscriber slot: join, read a while, leave, come back after the last sequence."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    rng = random.Random(seed)
    seqs: set[int] = set()
    told = 0  # sequences a notice declared lost
    latencies: dict[int, array.array[int]] = {}
    joins: dict[int, int] = {}
    closes: list[str] = []
    last: int | None = None
    final = False
    headers = {"Authorization": f"Apikey {API_KEY}"}
    while not final and time.monotonic_ns() < end_ns:
        query = "envelope_format=msgpack&notify_gaps=true"
        if last is not None:
            query += f"&start={last + 1}"
        joined = time.monotonic_ns()
        stay_until = joined + int(rng.uniform(5, 30) * 1e9)
        joins[minute_of(joined, t0_ns)] = joins.get(minute_of(joined, t0_ns), 0) + 1
        try:
            async with connect(
                f"{url}?{query}", additional_headers=headers, compression=None, max_size=None,
                open_timeout=20, ping_interval=None, proxy=None,
            ) as ws:  # fmt: skip
                while time.monotonic_ns() < stay_until:
                    message = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 15))
                    now = time.monotonic_ns()
                    kind = message.get("type")
                    if kind == "stream-gap":
                        told += message["count"]
                        continue
                    if kind != "array-data":
                        continue
                    payload = np.frombuffer(message["payload"], dtype="<u8")
                    stamp = int(payload[1])
                    seq = message["sequence"]
                    seqs.add(seq)
                    last = seq
                    if stamp >= joined:  # live, not replay
                        bucket = latencies.setdefault(minute_of(now, t0_ns), array.array("q"))
                        bucket.append(now - stamp)
                    if payload[2]:
                        final = True
                        break
        except ConnectionClosed as closed:
            closes.append(f"{closed.rcvd.code if closed.rcvd else 1006}")
        except (TimeoutError, OSError) as error:
            closes.append(type(error).__name__)
        if not final:
            await asyncio.sleep(rng.uniform(0.2, 2.0))
    expected = (max(seqs) - min(seqs) + 1) if seqs else 0
    return {
        "received": len(seqs), "lost": expected - len(seqs), "told": told, "final": final,
        "joins": joins, "closes": closes, "latencies": latencies,
    }  # fmt: skip


def _slots_process(url: str, t0_ns: int, end_ns: int, first_seed: int, conn: Any) -> None:
    async def run() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                *(_slot(url, t0_ns, end_ns, first_seed + i) for i in range(PER_PROCESS))
            )
        )

    try:
        conn.send(("result", asyncio.run(run())))
    except BaseException as error:
        conn.send(("error", f"{type(error).__name__}: {error}"))


def soak(target: Target, minutes: float) -> dict[str, Any]:
    create_array(target.http, KEY, FRAME)
    url = f"{target.ws}/api/v1/stream/single/{KEY}"
    count = int(minutes * 60 * RATE)
    t0_ns = time.monotonic_ns()
    end_ns = t0_ns + int(minutes * 60e9) + int(30e9)  # subscribers give up 30 s after the end
    procs = []
    for index in range(SLOTS // PER_PROCESS):
        parent, child = CTX.Pipe()
        process = CTX.Process(
            target=_slots_process, args=(url, t0_ns, end_ns, index * 100, child), daemon=True
        )
        process.start()
        procs.append((process, parent))
    time.sleep(2)  # let the first joins happen
    rss: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:  # the server's RSS at the end of each minute
        minute = 0
        while not stop.wait(max(0.0, (t0_ns + (minute + 1) * 60e9 - time.monotonic_ns()) / 1e9)):
            rss[minute] = rss_bytes(target.server_pids())
            minute += 1

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    writer = asyncio.run(write_frames(target.port, KEY, FRAME, count, minutes * 60, RATE))
    written_by_minute: dict[int, int] = {}
    for i in range(writer.frames):  # paced: frame i is sent at i / RATE (or late, if behind)
        minute = int(i / RATE // 60)
        written_by_minute[minute] = written_by_minute.get(minute, 0) + 1
    rss.setdefault(int(minutes * 60 // 60), rss_bytes(target.server_pids()))
    stop.set()
    slots: list[dict[str, Any]] = []
    for process, parent in procs:
        if not parent.poll(120):
            raise RuntimeError("subscriber process did not report")
        kind, value = parent.recv()
        if kind != "result":
            raise RuntimeError(value)
        slots.extend(value)
        process.join(timeout=10)
    return report(writer.frames, writer.seconds, written_by_minute, rss, slots)


def report(
    frames: int, seconds: float, written: dict[int, int], rss: dict[int, int],
    slots: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    rows = []
    for minute in sorted(set(written) | set(rss)):
        lat = [s["latencies"].get(minute) for s in slots]
        merged = np.concatenate([np.frombuffer(a, dtype=np.int64) for a in lat if a] or [[]])
        joins = sum(s["joins"].get(minute, 0) for s in slots)
        rows.append({
            "minute": minute + 1, "written": written.get(minute, 0),
            "rss_MiB": round(rss[minute] / MiB, 1) if minute in rss else None,
            "live_frames": int(merged.size), "joins": joins,
            "p99_ms": round(float(np.percentile(merged, 99)) / 1e6, 2) if merged.size else None,
        })  # fmt: skip
    steady = [r["rss_MiB"] for r in rows[1:] if r["rss_MiB"] is not None and r["written"]]
    return {
        "frames": frames, "writer_fps": round(frames / seconds, 1),
        "lost": sum(s["lost"] for s in slots), "told": sum(s["told"] for s in slots),
        "silent": sum(max(0, s["lost"] - s["told"]) for s in slots),
        "missed_final": sum(not s["final"] for s in slots),
        "closes": sorted({c for s in slots for c in s["closes"]}),
        "rss_spread_after_warmup": round((max(steady) - min(steady)) / steady[0], 3)
        if steady else None,
        "minutes": rows,
    }  # fmt: skip


def markdown(result: dict[str, Any], command: str) -> str:
    lines = [
        f"`{command}`: {result['frames']} frames at {result['writer_fps']}/s; frames lost "
        f"{result['lost']}, announced by notices {result['told']}, silently lost "
        f"{result['silent']}; slots that missed the final frame "
        f"{result['missed_final']}; RSS spread after minute 1: {result['rss_spread_after_warmup']}",
        "",
        "| minute | written | live frames delivered | joins | server RSS MiB | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["minutes"]:
        lines.append(
            f"| {r['minute']} | {r['written']} | {r['live_frames']} | {r['joins']} | "
            f"{r['rss_MiB']} | {r['p99_ms']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    ferrotile = [name for name, spec in TARGETS.items() if spec[0] == "ferrotile"]
    parser.add_argument("--target", default="ferrotile-memory", choices=ferrotile)
    parser.add_argument("--out", help="write the raw results as JSON to this file")
    args = parser.parse_args()
    protocol.interrupt_on_signals()
    target = Target(args.target, Path(tempfile.mkdtemp(prefix="soak-")))
    try:
        target.start()
        result = soak(target, args.minutes)
    finally:
        target.close()
        stop_all()
    command = f"bench/soak.py --minutes {args.minutes:g} --target {args.target}"
    print(markdown(result, command))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"(server log in {target.logdir})", file=sys.stderr)


if __name__ == "__main__":
    main()
