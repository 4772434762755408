"""Client to client (issue 20): ``ferrotile.client`` writer -> ``ferrotile.client`` subscribers,
side by side with the stock tiled 0.2.20 client doing the same, against ferrotile and Tiled.

Usage (from the repository root, after ``make build``)::

    .venv/bin/python bench/client_bench.py [--quick] [--json OUT] [--seconds S]
        [--rate-seconds S] [--only C1,C2] [--targets ferrotile-memory,tiled]

Writer and subscribers are separate forked processes (client_roles.py); frames are 1-D uint8
arrays whose first 8 bytes hold the send time. Cases per target and client:

- C1 flat out, 1 writer -> 1 subscriber: 1 KiB and 256 KiB, ``persist=False`` and ``True``
  (ferrotile.client: ``c.writer(..., persist=)`` + ``c.subscribe``; the stock client:
  ``write(frame, persist=False)`` or ``patch(frame, offset=, extend=True)`` + ``subscribe()``
  with a callback). Against Tiled every case runs ``--tiled-seconds`` (Tiled is slow).
  Against ferrotile, also 1 KiB frames sent 64 at a time (one message of ``(64, 1024)``).
- C2 512 KiB at 1 kHz, 1 writer -> 2 subscribers, ``persist=False``, ferrotile.client against
  ferrotile only: delivered %, p50/p99 latency (send -> received by the subscriber).

Each row reports the writer's client CPU per frame sent, each subscriber's per frame received,
and the server's (its process tree, from /proc) per frame delivered. Targets are started on
free loopback ports and stopped afterwards, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protocol
from client_roles import (
    FERROTILE_CLIENT,
    STOCK_CLIENT,
    Case,
    start,
    subscriber_process,
    writer_process,
)
from stream_procs import Target, run_targets, script_parser

KiB = 1024


def _receive(conn: Any, timeout: float, what: str) -> Any:
    if not conn.poll(timeout):
        raise TimeoutError(f"no {what} within {timeout:.0f} s")
    return conn.recv()


def run_case(target: Target, case: Case, subscribers: int) -> dict[str, Any]:
    """One writer and ``subscribers`` subscribers; the figures of the measured window."""
    processes = []
    try:
        writer, writer_conn = start(writer_process, case)
        processes.append(writer)
        created = _receive(writer_conn, 60, "node")
        if created != "created":
            raise RuntimeError(f"writer: {created}")
        subs = [start(subscriber_process, case) for _ in range(subscribers)]
        processes += [process for process, _ in subs]
        for _, conn in subs:
            ready = _receive(conn, 60, "warm-up frame")
            if ready != "ready":
                raise RuntimeError(f"subscriber: {ready.get('error')}")
        cpu0 = target.cpu()
        writer_conn.send("go")
        grace = case.seconds + 120
        sent = _receive(writer_conn, grace, "writer result")
        if "error" in sent:
            raise RuntimeError(f"writer: {sent['error']}")
        received = [_receive(conn, grace, "subscriber result") for _, conn in subs]
        server_cpu = target.cpu() - cpu0
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()  # our own forked child, stuck
    latencies = np.concatenate([r["latencies"] for r in received])
    end = max((r["last_ns"] or sent["t0_ns"]) for r in received)
    unique = [r["unique"] for r in received]
    return {
        "sent": sent["frames"], "writer_s": sent["seconds"], "writer_cpu_s": sent["cpu_s"],
        "close_s": sent["closed_s"], "unique": unique, "delivered": sum(unique),
        "elapsed_s": max(end - sent["t0_ns"], 1) / 1e9,
        "lost": sum(sent["frames"] - n for n in unique),
        "dups": sum(r["dups"] for r in received), "gaps": sum(r["gaps"] for r in received),
        "sub_cpu_s": [r["cpu_s"] for r in received], "server_cpu_s": server_cpu,
        "errors": sorted({r["error"] for r in received if r["error"]}),
        "p50_ms": float(np.percentile(latencies, 50)) / 1e6 if len(latencies) else None,
        "p99_ms": float(np.percentile(latencies, 99)) / 1e6 if len(latencies) else None,
    }  # fmt: skip


def _us(cpu_s: float | None, frames: int) -> str:
    return f"{cpu_s * 1e6 / frames:,.0f}" if cpu_s is not None and frames else "-"


def make_row(scenario: str, label: str, target: str, client: str, r: dict[str, Any],
             rate: float | None) -> dict[str, Any]:  # fmt: skip
    subs_us = "/".join(_us(cpu, n) for cpu, n in zip(r["sub_cpu_s"], r["unique"], strict=True))
    detail = (
        f"writer {r['sent'] / r['writer_s']:,.0f} frames/s; client CPU us/frame: writer "
        f"{_us(r['writer_cpu_s'], r['sent'])}, subscriber {subs_us}; server "
        f"{_us(r['server_cpu_s'], r['delivered'])} us/frame delivered; "
        f"p50 {r['p50_ms'] or 0:.2f} ms p99 {r['p99_ms'] or 0:.2f} ms; "
        f"{r['sent']:,} sent, close {r['close_s']:.2f} s"
    )
    if rate:
        metric, value = "% delivered", 100.0 * r["delivered"] / (r["sent"] * len(r["unique"]))
    else:
        metric, value = "frames/s", min(r["unique"]) / r["elapsed_s"]
    return protocol.row(
        scenario, label, target, client, metric, value, server_cpu_s=r["server_cpu_s"],
        work=r["delivered"], per_cpu_unit="frames", loss=r["lost"], dup=r["dups"],
        gaps=r["gaps"], detail=detail, notes="; ".join(r["errors"]),
    )  # fmt: skip


def cases(target: Target, args: argparse.Namespace) -> list[tuple[str, str, Case, int]]:
    """(scenario, case label, case, subscribers) for one target."""
    tiled = target.kind == "tiled"
    seconds = args.tiled_seconds if tiled else args.seconds
    out = []
    for n, client in enumerate((FERROTILE_CLIENT, STOCK_CLIENT)):
        for nbytes in (KiB, 256 * KiB):
            for persist in (False, True):
                case = Case(target.http, client, f"c{n}_{nbytes}_{persist:d}", nbytes, persist,
                            seconds)  # fmt: skip
                out.append(("C1", f"{nbytes // KiB} KiB flat out, persist={persist}", case, 1))
    if not tiled:
        blocks = Case(target.http, FERROTILE_CLIENT, "c0_blocks", KiB, False, seconds, block=64)
        out.append(("C1", "1 KiB flat out in blocks of 64 frames, persist=False", blocks, 1))
        rate_case = Case(target.http, FERROTILE_CLIENT, "c2", 512 * KiB, False,
                         args.rate_seconds, rate=1000.0)  # fmt: skip
        out.append(("C2", f"512 KiB at 1 kHz to 2 subscribers, {args.rate_seconds:g} s",
                    rate_case, 2))  # fmt: skip
    return out


def main() -> None:
    parser = script_parser(__doc__, "ferrotile-memory,tiled")
    parser.add_argument("--seconds", type=float, help="C1 per case (default 8, quick 2)")
    parser.add_argument("--tiled-seconds", type=float, help="C1 against Tiled (default 3)")
    parser.add_argument("--rate-seconds", type=float, help="C2 (default 12, quick 3)")
    parser.add_argument("--only", default="", help="comma-separated scenario codes: C1, C2")
    args = parser.parse_args()
    args.seconds = args.seconds or (2.0 if args.quick else 8.0)
    args.tiled_seconds = args.tiled_seconds or (1.5 if args.quick else 3.0)
    args.rate_seconds = args.rate_seconds or (3.0 if args.quick else 12.0)
    protocol.interrupt_on_signals()

    def measure(target: Target) -> list[dict[str, Any]]:
        rows = []
        only = {code.strip() for code in args.only.split(",") if code.strip()}
        for scenario, label, case, subscribers in cases(target, args):
            if only and scenario not in only:
                continue
            t0 = time.monotonic()
            try:
                result = run_case(target, case, subscribers)
                row = make_row(scenario, label, target.name, case.client, result, case.rate)
            except Exception as error:
                row = protocol.row(scenario, label, target.name, case.client, "error", None,
                                   notes=f"{type(error).__name__}: {error}")  # fmt: skip
            rows.append(row)
            print(f"  {target.name} {case.client} {scenario} {label}: {row['value'] or 0:,.1f} "
                  f"{row['metric']} ({time.monotonic() - t0:.0f} s) {row['detail']} "
                  f"{row['notes']}", file=sys.stderr)  # fmt: skip
        return rows

    rows = run_targets(args.targets, "client-bench-", measure)
    protocol.write(args.json, rows)
    for row in rows:
        print(f"{row['scenario']} {row['target']:18s} {row['driver']:26s} {row['case']:40s} "
              f"{row['value'] or 0:10,.1f} {row['metric']} | {row['detail']} "
              f"{row['notes']}")  # fmt: skip


if __name__ == "__main__":
    main()
