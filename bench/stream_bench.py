"""Streaming benchmark: ferrotile (memory / Redis / Redis + 2 workers) side by side with Tiled
and the two reference relays, with Python clients (the Rust load generator's rows of the same
scenarios are in run_loadgen.py).

Usage (from the repository root; ``--quick`` takes ~3-4 minutes on a 2-core machine)::

    .venv/bin/python bench/stream_bench.py [--quick] [--targets ferrotile-memory,ferrotile-redis,
        ferrotile-redis-2w,tiled,granian-relay,rust-relay] [--out results.json]

Each target is started here on a free 127.0.0.1 port (``serve catalog --temp --api-key secret``;
Redis targets get their own ``redis-server`` on a free port), measured, and stopped; everything
started is stopped on error or Ctrl-C too. Frames are 1-D uint64 arrays written with
``PUT /api/v1/array/full/KEY?persist=false`` by a lean raw-HTTP asyncio writer (one request in
flight); element 0 is a frame id, element 1 the send time. Subscribers are ``websockets``
clients (no deflate, ``envelope_format=msgpack``) in forked processes, counting loss, duplicates
and gaps. Server CPU = utime+stime of the server's process tree plus its redis-server, from
/proc, over each measured window. Tiled runs the --quick sizes in every mode (it is too slow for
the full ones). Scenarios (see /work/shared/design/performance.md):

- G2 1 writer -> 1 subscriber, flat out, 256 KiB and 8 MiB frames
- G4 latency (writer call start -> subscriber decoded) at 100 Hz, 1 KiB and 256 KiB
- G5 256 KiB to 32 subscribers: flat out, and at 100 Hz
- G7 catch-up: N x 1 KiB written, then one subscriber with start=0
- G8 G5 flat out plus one frozen subscriber (max_queue_bytes=16 MiB), resumed at the end
- G13 persisted appends (PATCH ... extend=true into a zarr array), 256 KiB and 8 MiB, 1 subscriber

The relays (``granian-relay``, ``rust-relay``) run G2, G4 and G5 only: they have no replay
(G7), no per-subscriber queue policy (G8) and no storage (G13); their subscribers get each PUT
body as one binary message (no schema, no envelope).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protocol
import stream_report
from stream_clients import Subscribers, SubSpec, create_array, write_frames
from stream_procs import RELAYS, TARGETS, Target, stop_all
from stream_report import markdown

KiB, MiB = 1024, 1024 * 1024
#: G2's subscriber byte cap (``max_queue_bytes``, ferrotile's subscribe option): a throughput
#: row measures the subscriber's rate, not the default 64 MiB cap closing it (1008) when it
#: falls 8 frames of 8 MiB behind for a moment.
G2_QUEUE_BYTES = 1 << 30
FROZEN_QUEUE = 16 * MiB

SIZES = {
    "full": {"g2_s": 8.0, "g4_s": 10.0, "g5_s": 8.0, "g5_rate_s": 5.0, "g7_n": 10_000,
             "g8_s": 30.0, "subs": 32, "g13_s": 8.0},
    "quick": {"g2_s": 1.5, "g4_s": 1.5, "g5_s": 2.0, "g5_rate_s": 1.5, "g7_n": 1_000,
              "g8_s": 3.0, "subs": 32, "g13_s": 1.5},
}  # fmt: skip
TILED_G7_N = {"full": 500, "quick": 200}  # Tiled writes ~50 frames/s: 10,000 takes minutes


def pct(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) / 1e6 if len(values) else None  # ms


def latency_summary(stats: list[dict[str, Any]]) -> dict[str, float | None]:
    values = np.concatenate([s["latencies"] for s in stats]) if stats else np.array([])
    return {
        "p50_ms": pct(values, 50), "p99_ms": pct(values, 99), "p999_ms": pct(values, 99.9),
        "max_ms": float(values.max()) / 1e6 if len(values) else None, "samples": len(values),
    }  # fmt: skip


def client_cpu() -> float:
    """CPU seconds of this process (the writer) and of its joined subscriber processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_stream(
    target: Target, key: str, nbytes: int, *, subs: int, seconds: float, rate: float | None,
    frozen: bool = False, count: int = 10_000_000, sample_rss: bool = False,
    extend: bool = False, queue_bytes: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Create node ``key``; connect subscribers (with ``max_queue_bytes=queue_bytes`` on
    ferrotile); write; collect loss/latency/CPU figures."""
    create_array(target.http, key, nbytes, rows=1 if extend else None)
    url = f"{target.ws}/api/v1/stream/single/{key}?envelope_format=msgpack"
    if queue_bytes and target.kind == "ferrotile":
        url += f"&max_queue_bytes={queue_bytes}"
    grace = seconds + 30
    healthy = Subscribers(SubSpec(url, 0, grace, raw=target.relay), subs,
                          processes=1 if subs == 1 else 2)  # fmt: skip
    frozen_subs = None
    rss_samples: list[int] = []
    stop_sampling = threading.Event()
    try:
        healthy.wait_ready()
        if frozen:
            frozen_url = f"{url}&max_queue_bytes={FROZEN_QUEUE}&on_overflow=close"
            frozen_subs = Subscribers(SubSpec(frozen_url, 0, grace, frozen=True), 1, 1)
            frozen_subs.wait_ready()
        time.sleep(0.2)
        rss_before = target.rss()

        def sampler() -> None:
            while not stop_sampling.wait(0.25):
                rss_samples.append(target.rss())

        if sample_rss:
            threading.Thread(target=sampler, daemon=True).start()
        cpu0, t0, client0 = target.cpu(), time.monotonic_ns(), client_cpu()
        writer = asyncio.run(
            write_frames(target.port, key, nbytes, count, seconds, rate, extend=extend)
        )
        results = healthy.results(timeout=grace + 15)
        t_end = max((s["last_ns"] or t0) for s in results)
        cpu = target.cpu() - cpu0
        elapsed = max(t_end - t0, 1) / 1e9
        frozen_result = None
        if frozen_subs is not None:
            rss_frozen = target.rss()
            frozen_subs.resume()
            frozen_result = frozen_subs.results(timeout=grace + 15)[0]
            frozen_result.pop("latencies")
            frozen_result["rss_at_resume"] = rss_frozen
        stop_sampling.set()
        time.sleep(0.3)
        rss_after = target.rss()
    finally:
        stop_sampling.set()
        healthy.close()
        if frozen_subs is not None:
            frozen_subs.close()
    client = client_cpu() - client0
    unique = sum(s["unique"] for s in results)
    delivered_bytes = sum(s["bytes"] for s in results)
    lost = sum(writer.frames - s["unique"] for s in results)
    out: dict[str, Any] = {
        "nbytes": nbytes, "subscribers": subs, "rate_hz": rate,
        "writer_frames": writer.frames, "writer_fps": writer.frames / writer.seconds,
        "writer_call_p50_ms": float(np.median(writer.call_ns)) / 1e6,
        "delivered_frames": unique, "delivered_fps": unique / elapsed,
        "delivered_MBps": delivered_bytes / elapsed / 1e6,
        "lost": lost, "dups": sum(s["dups"] for s in results),
        "id_gaps": sum(s["id_gaps"] for s in results),
        "seq_gaps": sum(s["seq_gaps"] for s in results),
        "closed": [(s["close_code"], s["close_reason"]) for s in results
                   if s["close_code"] is not None],
        "errors": sorted({s["error"] for s in results if s["error"]}),
        "elapsed_s": elapsed, "server_cpu_s": cpu, "server_cores": cpu / elapsed,
        "client_cpu_s": client, "client_cores": client / elapsed,
        "delivered_MB_per_cpu_s": delivered_bytes / 1e6 / cpu if cpu else None,
        "delivered_frames_per_cpu_s": unique / cpu if cpu else None,
        "rss_before_MiB": rss_before / MiB, "rss_after_MiB": rss_after / MiB,
        **latency_summary(results),
    }  # fmt: skip
    if sample_rss:
        out["rss_peak_MiB"] = max([*rss_samples, rss_before, rss_after]) / MiB
    if frozen_result is not None:
        out["frozen"] = {k: v for k, v in frozen_result.items() if not k.endswith("_ns")}
        out["frozen"]["rss_at_resume_MiB"] = frozen_result["rss_at_resume"] / MiB
    return out


def run_catchup(target: Target, key: str, n: int) -> dict[str, Any]:
    create_array(target.http, key, KiB)
    writer = asyncio.run(write_frames(target.port, key, KiB, n, 600.0, None))
    url = f"{target.ws}/api/v1/stream/single/{key}?envelope_format=msgpack&start=0"
    cpu0 = target.cpu()
    subs = Subscribers(SubSpec(url, 0, 60.0, expect=n, latency=False), 1, 1)
    try:
        subs.wait_ready()
        result = subs.results(timeout=75)[0]
    finally:
        subs.close()
    cpu = target.cpu() - cpu0
    seconds = ((result["last_ns"] or result["connect_ns"]) - result["connect_ns"]) / 1e9
    return {
        "n": n, "writer_fps": writer.frames / writer.seconds, "received": result["unique"],
        "lost": n - result["unique"], "dups": result["dups"], "id_gaps": result["id_gaps"],
        "seq_gaps": result["seq_gaps"], "seconds": seconds,
        "msgs_per_s": result["unique"] / seconds if seconds else None,
        "server_cpu_s": cpu, "msgs_per_cpu_s": result["unique"] / cpu if cpu else None,
        "error": result["error"], "close": result["close_code"],
    }  # fmt: skip


def run_target(name: str, mode: str, logdir: Path, only: set[str]) -> dict[str, Any]:
    sizes = SIZES["quick" if name.startswith("tiled") else mode]
    target = Target(name, logdir)
    out: dict[str, Any] = {"sizes": "quick" if sizes is SIZES["quick"] else "full",
                           "command": None, "rows": {}}  # fmt: skip
    subs = sizes["subs"]
    scenarios = {
        "G2 256KiB": lambda: run_stream(target, "g2a", 256 * KiB, subs=1, seconds=sizes["g2_s"],
                                        rate=None, queue_bytes=G2_QUEUE_BYTES),
        "G2 8MiB": lambda: run_stream(target, "g2b", 8 * MiB, subs=1, seconds=sizes["g2_s"],
                                      rate=None, queue_bytes=G2_QUEUE_BYTES),
        "G4 1KiB@100Hz": lambda: run_stream(target, "g4a", KiB, subs=1, seconds=sizes["g4_s"] * 3,
                                            rate=100.0, count=int(sizes["g4_s"] * 100)),
        "G4 256KiB@100Hz": lambda: run_stream(target, "g4b", 256 * KiB, subs=1,
                                              seconds=sizes["g4_s"] * 3, rate=100.0,
                                              count=int(sizes["g4_s"] * 100)),
        "G5 256KiB x32 flat": lambda: run_stream(target, "g5a", 256 * KiB, subs=subs,
                                                 seconds=sizes["g5_s"], rate=None,
                                                 sample_rss=True),
        "G5 256KiB x32 @100Hz": lambda: run_stream(target, "g5b", 256 * KiB, subs=subs,
                                                   seconds=sizes["g5_rate_s"] * 3, rate=100.0,
                                                   count=int(sizes["g5_rate_s"] * 100)),
        "G7 catch-up 1KiB": lambda: run_catchup(
            target, "g7", TILED_G7_N[mode] if name.startswith("tiled") else sizes["g7_n"]),
        "G8 frozen": lambda: run_stream(target, "g8", 256 * KiB, subs=subs, seconds=sizes["g8_s"],
                                        rate=None, frozen=True, sample_rss=True),
        "G13 extend 256KiB": lambda: run_stream(target, "g13a", 256 * KiB, subs=1,
                                                seconds=sizes["g13_s"], rate=None, extend=True),
        "G13 extend 8MiB": lambda: run_stream(target, "g13b", 8 * MiB, subs=1,
                                              seconds=sizes["g13_s"], rate=None, extend=True),
    }  # fmt: skip
    if only:
        scenarios = {k: v for k, v in scenarios.items() if k.split()[0] in only}
    if name in RELAYS:
        scenarios = {k: v for k, v in scenarios.items() if k.split()[0] in ("G2", "G4", "G5")}
    try:
        target.start()
        out["command"] = " ".join(target.command)
        for scenario, run in scenarios.items():
            t0 = time.monotonic()
            try:
                out["rows"][scenario] = run()
            except Exception as error:
                out["rows"][scenario] = {"error": f"{type(error).__name__}: {error}"}
            print(f"  {name} {scenario}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    finally:
        target.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    protocol.add_arguments(parser)
    parser.add_argument("--only", default="", help="comma-separated scenario codes, e.g. G2,G5")
    parser.add_argument(
        "--targets", default="ferrotile-memory,ferrotile-redis,ferrotile-redis-2w,tiled",
        help=f"comma-separated, from: {', '.join(TARGETS)}",
    )  # fmt: skip
    parser.add_argument("--out", help="write the raw results as JSON to this file")
    args = parser.parse_args()
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown targets: {unknown}")
    protocol.interrupt_on_signals()
    mode = "quick" if args.quick else "full"
    only = {code.strip() for code in args.only.split(",") if code.strip()}
    results: dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "mode": mode, "argv": sys.argv[1:], "targets": {},
    }  # fmt: skip
    logdir = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    started = time.monotonic()
    try:
        for name in names:
            print(f"{name} ...", file=sys.stderr)
            results["targets"][name] = run_target(name, mode, logdir, only)
    finally:
        stop_all()
    results["total_s"] = time.monotonic() - started
    print(markdown(results))
    print(f"\n(total {results['total_s']:.0f} s; server logs in {logdir})", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    protocol.write(args.json, stream_report.rows(results))


if __name__ == "__main__":
    main()
