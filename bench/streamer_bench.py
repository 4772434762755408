"""The Redis Streamer API's push and pull on ferrotile (in-process hub; Redis with 2 workers).

Usage (from the repository root, after ``make build``)::

    .venv/bin/python bench/streamer_bench.py [--quick] [--json OUT]

One pusher (``WS /data/{sid}/push``, a ``websockets`` asyncio client, one frame in flight per
``send``) writes frames flat out: ``header=0`` (one binary message per entry) or batches of 100
entries with a JSON header. Pullers (``WS /data/{sid}/pull?header=0``, ``websockets`` clients in
2 forked processes) count frames, duplicates and frame-id gaps (the id is stamped in each
frame's first 8 bytes). Server CPU is the server's process tree plus its Redis, from /proc. The
rows sit beside stream_bench.py's Tiled-API rows of the same scenarios (G2, G5) in run.py's
table; Redis Streamer itself is not run here (see performance.md for its figures).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protocol
from stream_clients import Subscribers, SubSpec
from stream_procs import API_KEY, Target, stop_all

KiB = 1024
DRIVER = "python websockets pusher x1 + pullers (2 procs)"
BATCH = 100


async def push_frames(url: str, nbytes: int, seconds: float, batch: int) -> tuple[int, float]:
    """Push frames flat out for ``seconds`` (then one last, flagged); frames and seconds."""
    frame = np.random.default_rng(0).integers(0, 2**63, nbytes // 8, dtype="<u8")
    headers = {"Authorization": f"Apikey {API_KEY}"}
    sent = 0
    async with connect(url, additional_headers=headers, compression=None, max_size=None,
                       proxy=None) as ws:  # fmt: skip
        t0 = time.monotonic()
        deadline = t0 + seconds
        last = False
        while not last:
            last = time.monotonic() >= deadline
            chunk = []
            for k in range(batch):
                frame[0], frame[1], frame[2] = (
                    sent,
                    time.monotonic_ns(),
                    int(last and k == batch - 1),
                )
                chunk.append(frame.tobytes())
                sent += 1
            if batch == 1:
                await ws.send(chunk[0])
            else:
                await ws.send(str([nbytes * (k + 1) for k in range(batch)]))
                await ws.send(b"".join(chunk))
        return sent, time.monotonic() - t0


def run_case(target: Target, sid: str, nbytes: int, subs: int, seconds: float,
             batch: int) -> dict[str, Any]:  # fmt: skip
    base = f"{target.ws}/data/{sid}"
    query = "header=0" if batch == 1 else ""
    asyncio.run(push_frames(f"{base}/push?header=0", nbytes, 0.0, 1))  # the stream exists now
    # A reader may fall behind as far as retention goes: the figure is throughput, not skipping.
    url = f"{base}/pull?header=0&block=1000&count=64&max_queue_bytes={2**31}&api_key={API_KEY}"
    pullers = Subscribers(SubSpec(url, 0, seconds + 30, raw=True), subs, 1 if subs == 1 else 2)
    try:
        pullers.wait_ready()
        time.sleep(0.2)
        cpu0 = target.cpu()
        frames, elapsed = asyncio.run(push_frames(f"{base}/push?{query}", nbytes, seconds, batch))
        results = pullers.results(timeout=seconds + 45)
        cpu = target.cpu() - cpu0
    finally:
        pullers.close()
    t_end = max((r["last_ns"] or 0) for r in results)
    t_start = min((r["first_ns"] or t_end) for r in results)
    span = max(elapsed, (t_end - t_start) / 1e9, 1e-6)
    unique = sum(r["unique"] for r in results)
    return {
        "frames": frames, "writer_fps": frames / elapsed, "delivered": unique,
        "delivered_fps": unique / span, "MBps": unique * nbytes / span / 1e6,
        "lost": frames * subs - unique, "dups": sum(r["dups"] for r in results),
        "gaps": sum(r["id_gaps"] for r in results), "server_cpu_s": cpu,
        "closed": sorted({r["close_code"] for r in results if r["close_code"]}),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    protocol.add_arguments(parser)
    parser.add_argument("--targets", default="ferrotile-memory,ferrotile-redis-2w")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    seconds = 2.0 if args.quick else 6.0
    cases = [  # scenario, case, frame bytes, pullers, batch
        ("G1", "RS WS push 1 KiB header=0 -> 1 pull", KiB, 1, 1),
        ("G1", f"RS WS push 1 KiB, batches of {BATCH} -> 1 pull", KiB, 1, BATCH),
        ("G2", "RS WS push 256 KiB -> 1 pull", 256 * KiB, 1, 1),
        ("G5", "RS WS push 256 KiB -> 8 pulls", 256 * KiB, 8, 1),
        ("G5", "RS WS push 256 KiB -> 32 pulls", 256 * KiB, 32, 1),
    ]
    logdir = Path(tempfile.mkdtemp(prefix="streamer-bench-"))
    rows: list[dict[str, Any]] = []
    try:
        for name in [n.strip() for n in args.targets.split(",") if n.strip()]:
            # Retention well above a run's frames: this measures throughput, not eviction.
            target = Target(
                name,
                logdir,
                extra=["--streamer-maxlen", "10000000", "--streamer-max-bytes", str(2**31)],
            )
            try:
                target.start()
                for i, (scenario, case, nbytes, subs, batch) in enumerate(cases):
                    r = run_case(target, f"b{i}", nbytes, subs, seconds, batch)
                    detail = (f"writer {r['writer_fps']:,.0f} frames/s; {r['MBps']:,.0f} MB/s"
                              f" delivered; closes {r['closed'] or 'none'}")  # fmt: skip
                    rows.append(protocol.row(
                        scenario, case, name, DRIVER, "delivered frames/s", r["delivered_fps"],
                        server_cpu_s=r["server_cpu_s"], work=r["delivered"],
                        per_cpu_unit="frames", loss=r["lost"], dup=r["dups"], gaps=r["gaps"],
                        detail=detail,
                    ))  # fmt: skip
                    print(f"{name} {case}: {r['delivered_fps']:,.0f} frames/s, {detail}",
                          file=sys.stderr)  # fmt: skip
            finally:
                target.close()
    finally:
        stop_all()
    protocol.write(args.json, rows)


if __name__ == "__main__":
    main()
