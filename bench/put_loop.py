"""G1 through the Python clients users run: stream-only 1 KiB writes, one after another.

Usage (from the repository root, after ``make build``)::

    .venv/bin/python bench/put_loop.py [--quick] [--json OUT] \
        [--targets ferrotile-memory,ferrotile-redis-2w,tiled] [--seconds 5]

Two clients, each on one connection, sequential (what a simple acquisition script does):

- ``httpx``: ``PUT /api/v1/array/full/x?persist=false`` with a 1 KiB body (128 float64) from
  ``httpx.Client`` (keep-alive), i.e. what ``x.write(frame, persist=False)`` sends, minus the
  client's own work;
- the stock tiled 0.2.20 client: ``x.write(frame, persist=False)`` on an array created with
  ``write_array``.

Each target is started on a free loopback port (``serve catalog --temp --api-key secret``; see
stream_procs.py) and stopped afterwards, also on error or Ctrl-C. Server CPU is utime+stime of
the server's process tree plus its Redis, from /proc, over the timed loop; the row's
per-CPU-second figure is PUTs per server-CPU-second (the inverse of server CPU per PUT).
Every loop is bounded in count and time.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

import protocol
from stream_clients import create_array
from stream_procs import API_KEY, Target, run_targets, script_parser

FRAME = np.random.default_rng(0).standard_normal(128)  # 1 KiB of float64
CASE = "1 KiB write, stream-only, sequential"


def timed_loop(
    target: Target, write: Callable[[], object], seconds: float, limit: int
) -> dict[str, float]:
    """Warm up, then call ``write`` until ``seconds`` pass or ``limit`` calls are done."""
    for _ in range(min(50, limit)):
        write()
    cpu0, t0 = target.cpu(), time.monotonic()
    deadline = t0 + seconds
    done = 0
    while done < limit and time.monotonic() < deadline:
        write()
        done += 1
    elapsed = time.monotonic() - t0
    return {"writes": done, "seconds": elapsed, "server_cpu_s": target.cpu() - cpu0}


def httpx_loop(target: Target, seconds: float, limit: int) -> dict[str, float]:
    headers = {"Authorization": f"Apikey {API_KEY}"}
    create_array(target.http, "g1h", FRAME.nbytes)
    body = FRAME.tobytes()
    with httpx.Client(base_url=f"{target.http}/api/v1", headers=headers) as http:

        def write() -> None:
            http.put(
                "/array/full/g1h", content=body, params={"persist": "false"},
                headers={"Content-Type": "application/octet-stream"},
            ).raise_for_status()  # fmt: skip

        return timed_loop(target, write, seconds, limit)


def stock_loop(target: Target, seconds: float, limit: int) -> dict[str, float]:
    from tiled.client import from_uri

    client = from_uri(target.http, api_key=API_KEY)
    try:
        array = client.write_array(np.zeros_like(FRAME), key="g1s")
        return timed_loop(target, lambda: array.write(FRAME, persist=False), seconds, limit)
    finally:
        client.context.close()


CLIENTS = {
    "httpx.Client (1 connection)": httpx_loop,
    "stock tiled 0.2.20 client": stock_loop,
}


def main() -> None:
    parser = script_parser(__doc__, "ferrotile-memory,ferrotile-redis-2w,tiled")
    parser.add_argument("--seconds", type=float, help="per client and target (default 5)")
    args = parser.parse_args()
    protocol.interrupt_on_signals()
    seconds = args.seconds or (1.5 if args.quick else 5.0)
    limit = 2_000 if args.quick else 20_000

    def measure(target: Target) -> list[dict[str, Any]]:
        rows = []
        for driver, loop in CLIENTS.items():
            try:
                result = loop(target, seconds, limit)
            except Exception as error:
                rows.append(protocol.row("G1", CASE, target.name, driver, "error", None,
                                         notes=f"{type(error).__name__}: {error}"))  # fmt: skip
                continue
            rate = result["writes"] / result["seconds"]
            per_put = result["server_cpu_s"] / max(result["writes"], 1) * 1e6
            rows.append(protocol.row(
                "G1", CASE, target.name, driver, "writes/s", rate,
                server_cpu_s=result["server_cpu_s"], work=result["writes"],
                per_cpu_unit="writes",
                detail=f"{result['writes']:,} writes; server CPU {per_put:,.0f} us/write",
            ))  # fmt: skip
            print(f"  {target.name} {driver}: {rate:,.0f} writes/s", file=sys.stderr)
        return rows

    rows = run_targets(args.targets, "put-loop-", measure)
    protocol.write(args.json, rows)
    for row in rows:
        print(f"{row['target']:20s} {row['driver']:30s} {row['value'] or 0:10,.0f} "
              f"{row['metric']} {row['detail'] or row['notes']}")  # fmt: skip


if __name__ == "__main__":
    main()
