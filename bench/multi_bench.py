"""Issue 14's rows: many streams over one multiplexed socket, views and compression computed once
per frame for every subscriber.

Usage (from the repository root, after ``make build``; the load generator is built here)::

    .venv/bin/python bench/multi_bench.py [--quick] [--json OUT] [--seconds S] [--frame-rate HZ]
        [--view 'bin=4'] [--photons MEAN] [--only M1,M2,M3] [--no-build]

One ferrotile (``serve catalog --temp --api-key secret``, in-memory cache) on a free loopback
port; server CPU = utime+stime of its process tree from /proc, from just before the writers
start until the subscribers stop (last frame + 2 s idle). Scenarios:

- M1: 100 streams x 1 KiB at 100 Hz each (10,000 msgs/s), 100 ``ferrotile-loadgen push``
  writers (``WS /api/v1/stream/push/{key}?persist=false&mode=full``, one process per stream),
  delivered over ONE ``WS /api/v1/stream/multi`` socket vs 100 ``WS /api/v1/stream/single``
  sockets. The subscriber is a Python ``websockets`` client (msgpack envelopes) in its own
  process, counting messages per stream and checking their sequences (loss, duplicates, gaps).
- M2: 2048x2048 uint16 frames (8 MiB, pseudo-random: ``push --noise``; with ``--photons MEAN``,
  Poisson photon counts as a photon-counting detector sends, which zstd shrinks) pushed at
  ``--frame-rate`` (default 100 Hz; the row says what the writer reached) to 32 subscribers
  with ``bin=4`` vs 1 subscriber with the same view (Rust subscribers, ``ferrotile-loadgen
  subscribers``, counting messages and sequences).
- M3: the same frames with ``bin=4&compression=zstd`` to 32 vs 1 (the view binned and then
  compressed, once per frame: full 8 MiB frames to 32 sockets would measure the kernel's copies,
  not the compression); the detail shows ``ferrotile_stream_view_frames_computed_total`` and
  the bytes before/after compression from ``GET /api/v1/metrics`` over the run.

Targets for M2/M3 (issue 14): CPU per frame with 32 subscribers <= 1.2x that with 1.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protocol
from loadgen_driver import Loadgen, create, push_url
from stream_clients import create_node
from stream_procs import API_KEY, Target, stop_all

DRIVER = "ferrotile-loadgen push + "
STREAMS, SMALL, SMALL_RATE = 100, 1024, 100.0
SIDE, SUBSCRIBERS = 2048, 32
IDLE_STOP = 2.0
SIZES = {"full": 15.0, "quick": 4.0}
AUTH = {"Authorization": f"Apikey {API_KEY}"}

# ------------------------------------------------------------------ M1: the Python subscriber


class Counts:
    """Per stream: data messages, duplicates and gaps by sequence."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.received: dict[str, int] = {}
        self.dups = 0
        self.gaps = 0
        self.first_ns = 0
        self.last_ns = 0

    def add(self, stream: str, message: dict[str, Any]) -> None:
        sequence = message.get("sequence")
        if message.get("type") != "array-data" or not isinstance(sequence, int):
            return
        now = time.monotonic_ns()
        self.first_ns = self.first_ns or now
        self.last_ns = now
        last = self.last.get(stream)
        if last is not None and sequence <= last:
            self.dups += 1
            return
        if last is not None and sequence != last + 1:
            self.gaps += 1
        self.last[stream] = sequence
        self.received[stream] = self.received.get(stream, 0) + 1

    def idle(self) -> bool:
        return bool(self.first_ns) and time.monotonic_ns() - self.last_ns > IDLE_STOP * 1e9


async def _multi(ws_url: str, keys: list[str], deadline: float, ready: Any, counts: Counts) -> None:
    url = f"{ws_url}/api/v1/stream/multi?envelope_format=msgpack"
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        await ws.send(msgpack.packb({"type": "auth", "api_key": API_KEY}))
        ack = msgpack.unpackb(await ws.recv())
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"multi: no connection_ack: {ack}")
        for key in keys:
            await ws.send(msgpack.packb({"type": "subscribe", "id": key, "path": key}))
        schemas = 0
        while schemas < len(keys):  # every subscription's first data is its schema
            message = msgpack.unpackb(await ws.recv())
            if message.get("type") != "data":
                raise RuntimeError(f"multi: {message}")
            schemas += 1
        ready.set()
        while time.monotonic() < deadline and not counts.idle():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            message = msgpack.unpackb(raw)
            if message.get("type") == "data":
                counts.add(message["id"], message["message"])


async def _single(ws_url: str, keys: list[str], deadline: float, ready: Any,
                  counts: Counts) -> None:  # fmt: skip
    sockets = []
    try:
        for key in keys:
            url = f"{ws_url}/api/v1/stream/single/{key}?envelope_format=msgpack"
            ws = await websockets.connect(
                url, max_size=None, compression=None, additional_headers=AUTH
            )
            sockets.append(ws)
            await ws.recv()  # the schema
        ready.set()

        async def read(key: str, ws: Any) -> None:
            while time.monotonic() < deadline and not counts.idle():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                counts.add(key, msgpack.unpackb(raw))

        await asyncio.gather(*(read(k, ws) for k, ws in zip(keys, sockets, strict=True)))
    finally:
        for ws in sockets:
            await ws.close()


def subscriber_process(mode: str, ws_url: str, keys: list[str], seconds: float,
                       ready: Any, results: Any) -> None:  # fmt: skip
    """Runs in a child process: subscribe, signal ``ready``, count until idle, send counts."""
    counts = Counts()
    deadline = time.monotonic() + seconds
    run = _multi if mode == "multi" else _single
    error = None
    try:
        asyncio.run(run(ws_url, keys, deadline, ready, counts))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    results.put({"received": counts.received, "last": counts.last, "dups": counts.dups,
                 "gaps": counts.gaps, "seconds": (counts.last_ns - counts.first_ns) / 1e9,
                 "error": error})  # fmt: skip


def many_streams(target: Target, gen: Loadgen, mode: str, seconds: float) -> dict[str, Any]:
    """M1: 100 push writers at 100 Hz, one subscriber process (multi socket or 100 singles)."""
    keys = [f"{mode}{i:03d}" for i in range(STREAMS)]
    for key in keys:
        create(gen, target, key, SMALL)
    context = multiprocessing.get_context("spawn")
    ready, results = context.Event(), context.Queue()
    child = context.Process(target=subscriber_process,
                            args=(mode, target.ws, keys, seconds + 60, ready, results))  # fmt: skip
    child.start()
    try:
        if not ready.wait(60):
            raise RuntimeError(f"{mode} subscriber not ready")
        cpu0 = target.cpu()
        pace = ["--size", str(SMALL), "--rate", str(SMALL_RATE), "--duration", str(seconds)]
        writers = [
            gen.start("push", "--url", push_url(target, key), *pace, "--api-key", API_KEY)
            for key in keys
        ]
        written = [gen.finish(w, seconds + 60) for w in writers]
        result = results.get(timeout=seconds + 60)
        cpu = target.cpu() - cpu0
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    if result["error"]:
        raise RuntimeError(result["error"])
    sent = sum(int(w["ok"]) for w in written)
    received = sum(result["received"].values())
    short = {k: (int(w["ok"]), int(w["sent"]), result["received"].get(k, 0), result["last"].get(k))
             for k, w in zip(keys, written, strict=True)
             if int(w["ok"]) != result["received"].get(k, 0)}  # fmt: skip
    if short:
        print(f"  {mode}: streams short (acked, sent, received, last seq): {short}",
              file=sys.stderr)  # fmt: skip
    return {"sent": sent, "received": received, "lost": sent - received, "dups": result["dups"],
            "gaps": result["gaps"], "server_cpu_s": cpu, "seconds": result["seconds"],
            "writer_rate": sum(float(w["req_per_s"] or 0) for w in written)}  # fmt: skip


# --------------------------------------------------------------------- M2/M3: one image stream


VIEW_METRIC = re.compile(r"^(ferrotile_stream_view_\w+_total)\{[^}]*\} ([0-9.e+]+)$")


def view_metrics(target: Target) -> dict[str, float]:
    """The ferrotile_stream_view_*_total counters, summed over nodes (labelled by node id) and
    views: the difference over a run is that run's, as one stream is measured at a time."""
    text = httpx.get(f"{target.http}/api/v1/metrics", headers=AUTH, timeout=30).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if match := VIEW_METRIC.match(line):
            out[match.group(1)] = out.get(match.group(1), 0.0) + float(match.group(2))
    return out


def image_stream(target: Target, gen: Loadgen, key: str, view: str, subscribers: int,
                 rate: float, seconds: float, fill: list[str]) -> dict[str, Any]:  # fmt: skip
    """M2/M3: frames pushed at ``rate`` to ``subscribers`` Rust subscribers of ``view``."""
    create_node(target.http, key, [SIDE, SIDE], [[SIDE], [SIDE]], 2)  # uint16
    url = f"{target.ws}/api/v1/stream/single/{key}?envelope_format=msgpack&{view}"
    subs = gen.start("subscribers", "--url", url, "--count", str(subscribers),
                     "--api-key", API_KEY, "--idle-stop", str(IDLE_STOP),
                     "--duration", str(seconds + 30), "--threads", "1")  # fmt: skip
    gen.wait_ready(subs, 60)
    before = view_metrics(target)
    cpu0 = target.cpu()
    written = gen.run("push", "--url", push_url(target, key), "--size", str(SIDE * SIDE * 2),
                      "--rate", str(rate), *fill, "--window", "4",
                      "--duration", str(seconds), "--api-key", API_KEY,
                      timeout=seconds + 60)  # fmt: skip
    delivered = gen.finish(subs, seconds + 60)
    cpu = target.cpu() - cpu0
    after = view_metrics(target)
    sent = int(written["ok"])
    received = int(delivered["data_messages"])  # messages with a sequence: not the schema
    metrics = {name.removeprefix("ferrotile_stream_view_"): after[name] - before.get(name, 0.0)
               for name in after}  # fmt: skip
    return {"sent": sent, "writer_rate": float(written["req_per_s"] or 0),
            "received": received, "lost": sent * subscribers - received,
            "gaps": int(delivered["gap_events"]), "dups": int(delivered["duplicates"]),
            "server_cpu_s": cpu, "metrics": metrics,
            "ended_early": int(delivered.get("ended_early") or 0),
            "problem": delivered.get("first_problem")}  # fmt: skip


# ------------------------------------------------------------------------------------ rows


def m1_rows(target: Target, gen: Loadgen, seconds: float) -> list[dict[str, Any]]:
    rows = []
    for mode, label in (("multi", "1 multiplexed socket"), ("single", "100 single sockets")):
        r = many_streams(target, gen, mode, seconds)
        rows.append(protocol.row(
            "M1", f"100 streams x 1 KiB @100 Hz, {label}", target.name,
            DRIVER + "Python websockets subscriber", "msgs delivered/s",
            r["received"] / r["seconds"] if r["seconds"] else None,
            server_cpu_s=r["server_cpu_s"], work=r["received"], per_cpu_unit="msgs",
            loss=r["lost"], dup=r["dups"], gaps=r["gaps"],
            detail=f"sent {r['sent']} at {r['writer_rate']:.0f}/s, received {r['received']}",
        ))  # fmt: skip
        print(f"  M1 {mode}: {r}", file=sys.stderr)
    return rows


def image_rows(target: Target, gen: Loadgen, scenario: str, view: str, rate: float,
               seconds: float, photons: float | None) -> list[dict[str, Any]]:  # fmt: skip
    rows, per_frame = [], {}
    fill = ["--photons", str(photons)] if photons else ["--noise"]
    frames = f"photon counts (mean {photons:g})" if photons else "noise"
    for subscribers in (1, SUBSCRIBERS):
        key = f"{scenario.lower()}x{subscribers}"
        r = image_stream(target, gen, key, view, subscribers, rate, seconds, fill)
        print(f"  {scenario} x{subscribers}: {r}", file=sys.stderr)
        # CPU per frame written (the view is computed once per frame, whatever the fan-out).
        per_frame[subscribers] = r["server_cpu_s"] * 1e6 / r["sent"] if r["sent"] else None
        m = r["metrics"]
        computed = m.get("frames_computed_total", 0.0)
        detail = (f"writer {r['writer_rate']:.1f} frames/s of {rate:.0f} asked, {r['sent']} "
                  f"frames; views computed {computed:.0f} "
                  f"({computed / r['sent'] if r['sent'] else 0:.2f} per frame)")  # fmt: skip
        if "bytes_after_compression_total" in m and computed:
            detail += (f", {m.get('bytes_before_compression_total', 0) / computed / 1024:.0f} KiB"
                       f" -> {m['bytes_after_compression_total'] / computed / 1024:.0f} KiB"
                       " per frame")  # fmt: skip
        if r["ended_early"]:
            detail += f"; {r['ended_early']} subscribers ended early: {r['problem']}"
        if subscribers > 1 and per_frame[1] and per_frame[subscribers]:
            detail += f"; CPU/frame {per_frame[subscribers] / per_frame[1]:.2f}x of 1 subscriber"
        row = protocol.row(
            scenario, f"2048x2048 uint16 {frames} {view}, {subscribers} sub", target.name,
            DRIVER + "ferrotile-loadgen subscribers", "server CPU us per frame written",
            per_frame[subscribers], higher_is_better=False, server_cpu_s=r["server_cpu_s"],
            work=r["received"], per_cpu_unit="frames", loss=r["lost"], dup=r["dups"],
            gaps=r["gaps"], detail=detail,
        )  # fmt: skip
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    protocol.add_arguments(parser)
    parser.add_argument("--seconds", type=float, help="seconds per case (default full 15, quick 4)")
    parser.add_argument("--frame-rate", type=float, default=100.0, help="M2/M3 frames per second")
    parser.add_argument("--view", default="bin=4",
                        help="M2's view query (M3 adds &compression=zstd)")  # fmt: skip
    parser.add_argument(
        "--photons", type=float, default=None,
        help="M2/M3 frames of uint16 photon counts, Poisson around this mean "
        "(a photon-counting detector's, compressible) instead of noise",
    )  # fmt: skip
    parser.add_argument("--only", default="", help="scenario codes among M1,M2,M3")
    parser.add_argument("--no-build", action="store_true", help="use the Rust binaries as built")
    args = parser.parse_args()
    only = {code.strip().upper() for code in args.only.split(",") if code.strip()}
    seconds = args.seconds or SIZES["quick" if args.quick else "full"]
    protocol.interrupt_on_signals()
    if not args.no_build:
        protocol.build_rust()
    gen = Loadgen()
    target = Target("ferrotile-memory", Path(tempfile.mkdtemp(prefix="multi-bench-")))
    rows: list[dict[str, Any]] = []
    cases = {
        "M1": lambda: m1_rows(target, gen, seconds),
        "M2": lambda: image_rows(target, gen, "M2", args.view, args.frame_rate, seconds,
                                 args.photons),
        "M3": lambda: image_rows(target, gen, "M3", f"{args.view}&compression=zstd",
                                 args.frame_rate, seconds, args.photons),
    }  # fmt: skip
    try:
        target.start()
        for code, run in cases.items():
            if only and code not in only:
                continue
            t0 = time.monotonic()
            try:
                rows += run()
            except Exception as error:  # report the others even if one case fails
                rows.append(protocol.error_row(code, target.name, DRIVER, error))
            finally:
                gen.kill_all()
            print(f"  {code}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
            protocol.write(args.json, rows)
    finally:
        gen.kill_all()
        target.close()
        stop_all()
    protocol.write(args.json, rows)
    for row in rows:
        print(row["scenario"], row["case"], row["value"], row["cpu_us_per_frame"], row["loss"],
              row["detail"] or row["notes"])  # fmt: skip
    if any(row["metric"] == "error" for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
