"""Soak (issue 18, not in CI): 256 KiB frames at 100 Hz to 32 subscribers that keep leaving and
joining again, for ``--minutes`` (30 for the goal; a short run takes 3-5).

Usage (from the repository root; needs ``cargo build --release -p ferrotile-loadgen``)::

    .venv/bin/python bench/soak.py [--minutes 30] [--target ferrotile-memory] [--out soak.json]

The server (``serve catalog --temp``, any ferrotile target of ``stream_procs.TARGETS``) is started
here and stopped at the end. One writer sends ``PUT /api/v1/array/full/KEY?persist=false`` at 100 Hz
(``stream_clients.write_frames``; frames it is late for go back to back: frame id, CLOCK_MONOTONIC
send time and a "last" flag in the payload's first three u64). The subscribers are one
``ferrotile-loadgen soak`` process (Rust, tokio): each of the 32 slots stays connected for a random
5-30 s, leaves, waits a random 0.2-2 s, and joins again with ``start = last sequence + 1`` and
``notify_gaps=true``: nothing may be lost across a leave, and anything the server can no longer
replay is announced by a ``stream-gap`` notice.

Per minute (since the start): frames written, frames delivered (all, and live: written after
the slot's join), joins, server RSS (the server's process tree from /proc, sampled at the end of
the minute; "flat within 10% after warm-up" compares minutes 2.. with minute 2), server CPU
seconds (utime + stime from /proc), latency p99 of live frames (writer stamp -> subscriber
decode), sequences missing / announced / duplicated. At the end: frames lost = sequences a slot
skipped between its first and last frame; how many of those ``stream-gap`` notices announced,
and how many were lost silently (the goal: 0 lost; silent loss is a defect, announced loss means
the subscribers could not keep up or retention was too short); slots that missed the final
frame; how visits ended (``left``, ``final``, ``close 1008``, ...).

``--cache-max-bytes`` passes a retention budget to the server: a tiny one (e.g. 4000000) makes
rejoins miss frames, to show the counting can see loss.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import protocol
from stream_clients import create_array, write_frames
from stream_procs import API_KEY, TARGETS, Target, cpu_seconds, rss_bytes, stop_all

KiB, MiB = 1024, 1024 * 1024
FRAME = 256 * KiB
RATE = 100.0
SLOTS = 32
KEY = "soak"
#: The writer may run this long past its minutes (when late); the subscribers twice as long.
GRACE_S = 30.0
PUT_QS = (("p50", 50), ("p99", 99), ("max", 100))


def start_subscribers(url: str, t0_ns: int, seconds: float) -> subprocess.Popen[str]:
    command = [
        str(protocol.rust_binary("ferrotile-loadgen")), "--threads", "2", "soak", "--url", url,
        "--slots", str(SLOTS), "--api-key", API_KEY, "--t0-ns", str(t0_ns),
        "--seconds", str(seconds),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def read_lines(process: subprocess.Popen[str], into: list[dict[str, Any]]) -> None:
    """Collects the loadgen's JSON lines, echoing each minute's on stderr as it comes."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{"):
            into.append(json.loads(line))
            if "minute" in into[-1]:
                print(line.strip(), file=sys.stderr, flush=True)


def soak(target: Target, minutes: float) -> dict[str, Any]:
    create_array(target.http, KEY, FRAME)
    url = f"{target.ws}/api/v1/stream/single/{KEY}?envelope_format=msgpack&notify_gaps=true"
    count = int(minutes * 60 * RATE)
    t0_ns = time.monotonic_ns()
    subscribers = start_subscribers(url, t0_ns, minutes * 60 + 2 * GRACE_S)
    lines: list[dict[str, Any]] = []
    reader = threading.Thread(target=read_lines, args=(subscribers, lines), daemon=True)
    reader.start()
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:  # the server's RSS and CPU at the end of each minute
        minute, before = 0, cpu_seconds(target.server_pids())
        while not stop.wait(max(0.0, (t0_ns + (minute + 1) * 60e9 - time.monotonic_ns()) / 1e9)):
            pids = target.server_pids()
            rss[minute], now = rss_bytes(pids), cpu_seconds(pids)
            cpu[minute], before = now - before, now
            minute += 1

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(2)  # let the first joins happen
    writer_offset = (time.monotonic_ns() - t0_ns) / 1e9
    # The writer may fall behind its pace on a loaded machine; it then sends late (back to back)
    # rather than stopping at the deadline, so every run writes the same frames.
    writer = asyncio.run(write_frames(target.port, KEY, FRAME, count, minutes * 60 + GRACE_S, RATE))
    written_by_minute: dict[int, int] = {}
    sent = 0.0  # frame i is sent at i / RATE, or when the PUT before it returned if later
    for i, call_ns in enumerate(writer.call_ns):
        sent = max(sent, i / RATE)
        minute = int((writer_offset + sent) // 60)
        written_by_minute[minute] = written_by_minute.get(minute, 0) + 1
        sent += call_ns / 1e9
    try:
        subscribers.wait(timeout=GRACE_S + 60)
    finally:
        if subscribers.poll() is None:
            subscribers.kill()
            subscribers.wait()
    reader.join(timeout=10)
    last = int((time.monotonic_ns() - t0_ns) // 60e9)
    pids = target.server_pids()
    rss.setdefault(last, rss_bytes(pids))
    stop.set()
    summary = next((line["summary"] for line in lines if "summary" in line), None)
    if subscribers.returncode != 0 or summary is None:
        raise RuntimeError(f"ferrotile-loadgen soak failed ({subscribers.returncode})")
    rows = [line for line in lines if "minute" in line]
    result = report(writer.frames, writer.seconds, written_by_minute, rss, cpu, rows, summary)
    put_ms = np.array(writer.call_ns) / 1e6
    result["writer_put_ms"] = {q: round(float(np.percentile(put_ms, p)), 2) for q, p in PUT_QS}
    return result


def report(
    frames: int, seconds: float, written: dict[int, int], rss: dict[int, int],
    cpu: dict[int, float], loadgen_rows: list[dict[str, Any]], summary: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    by_minute = {row["minute"] - 1: row for row in loadgen_rows}
    rows = []
    ends: dict[str, int] = {}
    for minute in sorted(set(written) | set(rss) | set(by_minute)):
        got = by_minute.get(minute, {})
        for reason, n in got.get("ends", {}).items():
            ends[reason] = ends.get(reason, 0) + n
        delivered = got.get("delivered", 0)
        rows.append({
            "minute": minute + 1, "written": written.get(minute, 0),
            "delivered": delivered, "live_frames": got.get("live", 0),
            "joins": got.get("joins", 0),
            "rss_MiB": round(rss[minute] / MiB, 1) if minute in rss else None,
            "server_cpu_s": round(cpu[minute], 2) if minute in cpu else None,
            "cpu_us_per_frame": round(cpu[minute] / delivered * 1e6, 1)
            if minute in cpu and delivered else None,
            "missing": got.get("missing", 0), "told": got.get("told", 0),
            "dups": got.get("dups", 0),
            "p50_ms": got.get("p50_ms"), "p99_ms": got.get("p99_ms"), "max_ms": got.get("max_ms"),
        })  # fmt: skip
    steady = [r["rss_MiB"] for r in rows[1:] if r["rss_MiB"] is not None and r["written"]]
    return {
        "frames": frames, "writer_fps": round(frames / seconds, 1),
        "expected": frames * SLOTS, "received": summary["received"],
        "lost": summary["missing"], "told": summary["told"], "silent": summary["silent"],
        "dups": summary["dups"], "epochs": summary["epochs"], "joins": summary["joins"],
        "missed_final": summary["missed_final"], "ends": ends,
        "rss_spread_after_warmup": round((max(steady) - min(steady)) / steady[0], 3)
        if steady else None,
        "minutes": rows, "slots": summary["slots"],
    }  # fmt: skip


def markdown(result: dict[str, Any], command: str) -> str:
    ends = ", ".join(f"{reason} {n}" for reason, n in sorted(result["ends"].items()))
    lines = [
        f"`{command}`: {result['frames']} frames at {result['writer_fps']}/s to {SLOTS} slots "
        f"(writer PUT ms {result['writer_put_ms']}); "
        f"frames received {result['received']} (first join to final frame); frames lost "
        f"{result['lost']}, announced by notices {result['told']}, silently lost "
        f"{result['silent']}; duplicates {result['dups']}; epoch notices {result['epochs']}; "
        f"joins {result['joins']}; slots that missed the final frame {result['missed_final']}; "
        f"visits ended: {ends}; RSS spread after minute 1: {result['rss_spread_after_warmup']}",
        "",
        "| minute | written | delivered | live | joins | server RSS MiB | server CPU s "
        "| CPU us/frame | lost | announced | dups | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["minutes"]:
        lines.append(
            f"| {r['minute']} | {r['written']} | {r['delivered']} | {r['live_frames']} | "
            f"{r['joins']} | {r['rss_MiB']} | {r['server_cpu_s']} | {r['cpu_us_per_frame']} | "
            f"{r['missing']} | {r['told']} | {r['dups']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['max_ms']} |"
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
    parser.add_argument("--cache-max-bytes", type=int, help="the server's retention budget")
    args = parser.parse_args()
    protocol.interrupt_on_signals()
    target = Target(args.target, Path(tempfile.mkdtemp(prefix="soak-")))
    if args.cache_max_bytes:
        target.extra = ["--cache-max-bytes", str(args.cache_max_bytes)]
    try:
        target.start()
        result = soak(target, args.minutes)
    finally:
        target.close()
        stop_all()
    command = f"bench/soak.py --minutes {args.minutes:g} --target {args.target}"
    if args.cache_max_bytes:
        command += f" --cache-max-bytes {args.cache_max_bytes}"
    print(markdown(result, command))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"(server log in {target.logdir})", file=sys.stderr)


if __name__ == "__main__":
    main()
