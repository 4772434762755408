"""The scenarios of run_loadgen.py, each a function of (target, load generator, sizes) returning
protocol rows (see protocol.py). Server CPU is read from /proc over each measured window; the
per-frame figure divides it by the frames delivered (summed over subscribers) or the requests.

- G11 control plane: ``GET /api/v1/`` and ``GET /api/v1/metadata/x``, 64 keep-alive connections;
  with a Granian socket (the edge's private Unix socket), the same requests sent straight to it.
- G1 ingest, 1 KiB stream-only: HTTP PUT flat out over 16 connections; WS push (one message per
  frame, 64 awaiting their ack) where the target serves the route.
- G2 1 writer -> 1 subscriber flat out, 256 KiB and 8 MiB, HTTP PUT and (where served) WS push.
- G5 256 KiB to 32 subscribers: flat out (writer rate vs its G2 rate), and at 100 Hz with p99.
- G3 512 KiB at 1 kHz to 2 subscribers (full 60 s), HTTP PUT and (where served) WS push.
- G6 128 B to 1,000 subscribers: at 100 Hz with p99, and flat out (4 PUT connections).
- G10 10,000 idle subscribers: connect rate and server RSS per socket.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import protocol
from loadgen_driver import DRIVER, Delivery, Loadgen, Writer, create, deliver, has_push, stream_url
from stream_procs import API_KEY, Target

KiB = 1024
Row = dict[str, Any]
#: The G2 subscriber's byte cap (``max_queue_bytes``): 1 GiB, above the server's retention.
G2_QUEUE_BYTES = 1 << 30

SIZES = {
    "full": {"get_s": 5.0, "put_s": 5.0, "g2_s": 8.0, "g5_s": 8.0, "g5_rate_s": 5.0,
             "g3_s": 60.0, "g6_subs": 1000, "g6_s": 10.0, "g6_flat_s": 5.0, "idle": 10_000,
             "hold": 3.0, "idle_connect_s": 30.0},
    "quick": {"get_s": 1.5, "put_s": 1.5, "g2_s": 1.5, "g5_s": 2.0, "g5_rate_s": 1.5,
              "g3_s": 3.0, "g6_subs": 300, "g6_s": 2.0, "g6_flat_s": 1.5, "idle": 1000,
              "hold": 1.0, "idle_connect_s": 10.0},
}  # fmt: skip


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


def _driver(writer: Writer, subscribers: bool = True) -> str:
    return f"{DRIVER}: {writer.label} writer" + (" + subscribers" if subscribers else "")


def delivery_row(code: str, case: str, target: Target, writer: Writer, run: Delivery,
                 extra: str = "") -> Row:  # fmt: skip
    """A throughput row: frames delivered per second (over the window from the first to the
    last frame received), loss = frames written x subscribers - frames received."""
    w, s = run.writer, run.subscribers
    mb_s = (s.get("bytes_per_s") or 0) / 1e6
    detail = (
        f"writer {w['req_per_s']:,.0f} frames/s ({w['ok']:,} frames, "
        f"{'ack' if writer.kind == 'push' else 'PUT'} p99 {_ms(w.get('p99_ms'))} ms); "
        f"{mb_s:,.0f} MB/s delivered; latency p50 {_ms(s.get('lat_p50_ms'))} / p99 "
        f"{_ms(s.get('lat_p99_ms'))} / max {_ms(s.get('lat_max_ms'))} ms; "
        f"{s['connected']} of {s['sockets']} subscribers, fewest frames on one "
        f"{s.get('min_unique_per_socket', 0):,}"
    )
    if s.get("connect_failed"):
        detail += f"; {s['connect_failed']} could not connect ({s.get('first_problem', '?')})"
    elif s.get("ended_early"):
        detail += f"; {s['ended_early']} ended early ({s.get('first_problem', '?')})"
    if extra:
        detail += f"; {extra}"
    return protocol.row(
        code, case, target.name, _driver(writer), "delivered frames/s", s["msgs_per_s"],
        server_cpu_s=run.server_cpu_s, work=run.frames * writer.size / 1e6, per_cpu_unit="MB",
        frames=run.frames, loss=run.expected - run.frames, dup=s.get("frame_dups"),
        gaps=s.get("frame_holes"), detail=detail,
    )  # fmt: skip


def paced_row(code: str, case: str, target: Target, writer: Writer, run: Delivery,
              rate: float, frames: int) -> Row:  # fmt: skip
    """A paced row: p99 latency first, with the share delivered of what the pace asked for."""
    row = delivery_row(code, case, target, writer, run)
    asked = frames * int(run.subscribers["connected"])
    share = 100 * run.frames / asked if asked else 0.0
    row.update(metric="p99 ms", value=run.subscribers.get("lat_p99_ms"), higher_is_better=False)
    row["detail"] = (f"{share:.1f}% of {asked:,} delivered, {run.subscribers['msgs_per_s']:,.0f}"
                     f" frames/s; " + row["detail"])  # fmt: skip
    if run.writer["req_per_s"] < 0.95 * rate:
        row["notes"] = f"writer reached only {run.writer['req_per_s']:,.0f} of {rate:,.0f}/s"
    return row


# ------------------------------------------------------------------------------ scenarios


def g11_control(target: Target, gen: Loadgen, size: dict[str, Any], uds: Path | None) -> list[Row]:
    create(gen, target, "x", 128)  # the node of the metadata GET
    rows = []
    for label, path in [("GET /api/v1/", "/api/v1/"), ("GET metadata", "/api/v1/metadata/x")]:
        rates = {}
        for via, extra in [("public port", []), ("Granian socket", ["--unix", str(uds)])]:
            if extra and uds is None:
                continue
            cpu0 = target.cpu()
            r = gen.run("get", "--url", target.http, "--path", path, "--connections", "64",
                        "--duration", str(size["get_s"]), "--api-key", API_KEY, *extra)  # fmt: skip
            cpu = target.cpu() - cpu0
            rates[via] = r["req_per_s"]
            detail = f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, non-2xx {r['non_2xx']}"
            if via == "Granian socket" and r["req_per_s"]:
                detail += f"; public port / socket = {rates['public port'] / r['req_per_s']:.2f}"
            case = label if via == "public port" else f"{label} straight to the Granian socket"
            rows.append(protocol.row(
                "G11", case, target.name, DRIVER, "req/s", r["req_per_s"], server_cpu_s=cpu,
                work=r["ok"], per_cpu_unit="req", detail=detail,
            ))  # fmt: skip
    return rows


def g1_ingest(target: Target, gen: Loadgen, size: dict[str, Any],
              cache: dict[str, Any]) -> list[Row]:  # fmt: skip
    rows = []
    writers = [("HTTP PUT 1 KiB stream-only, 16 connections",
                Writer("put", KiB, size["put_s"], ["--max", "--connections", "16"]))]  # fmt: skip
    if has_push(gen, target, cache):
        push = Writer("push", KiB, size["put_s"], ["--max", "--window", "64"])
        writers.append(("WS push 1 KiB, one message per frame", push))
    for case, writer in writers:
        cpu0 = target.cpu()
        r = gen.run(*writer.command(target, f"g1{writer.kind}"))
        cpu = target.cpu() - cpu0
        rows.append(protocol.row(
            "G1", case, target.name, _driver(writer, subscribers=False),
            "frames/s" if writer.kind == "push" else "req/s", r["req_per_s"], server_cpu_s=cpu,
            work=r["ok"], per_cpu_unit="req",
            detail=f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, non-2xx {r['non_2xx']}"
                   + (f", unacked {r['unacked']}" if writer.kind == "push" else ""),
        ))  # fmt: skip
    if not cache["push"]:
        rows[0]["notes"] = f"no WS push route ({cache.get('push_error', '?')})"
    return rows


def _writers(gen: Loadgen, target: Target, cache: dict[str, Any], size: int, seconds: float,
             options: list[str]) -> list[Writer]:  # fmt: skip
    """HTTP PUT, and WS push where the target serves it (16 frames awaiting their ack)."""
    writers = [Writer("put", size, seconds, options)]
    if has_push(gen, target, cache):
        writers.append(Writer("push", size, seconds, [*options, "--window", "16"]))
    return writers


def g2_one_to_one(target: Target, gen: Loadgen, size: dict[str, Any],
                  cache: dict[str, Any]) -> list[Row]:  # fmt: skip
    rows = []
    for label, nbytes in [("256 KiB", 256 * KiB), ("8 MiB", 8192 * KiB)]:
        # A throughput row measures the subscriber's rate, not the byte cap of a slow one: the
        # default 64 MiB is 8 frames of 8 MiB, and a subscriber that falls that far behind for
        # a moment is closed (1008). ferrotile's subscribe option raises it (not the relays').
        ours = target.kind == "ferrotile"
        query = f"&max_queue_bytes={G2_QUEUE_BYTES}" if ours else ""
        for writer in _writers(gen, target, cache, nbytes, size["g2_s"], ["--max"]):
            run = deliver(gen, target, f"g2{writer.kind}{nbytes}", writer, 1, query=query)
            cache[f"g2 {label} {writer.kind}"] = run.writer["req_per_s"]
            rows.append(delivery_row("G2", f"{label}, 1 writer -> 1 subscriber", target, writer,
                                     run))  # fmt: skip
    return rows


def g5_fanout(target: Target, gen: Loadgen, size: dict[str, Any],
              cache: dict[str, Any]) -> list[Row]:  # fmt: skip
    writer = Writer("put", 256 * KiB, size["g5_s"], ["--max"])
    run = deliver(gen, target, "g5flat", writer, 32)
    one = cache.get("g2 256 KiB put")
    share = (f"writer at {100 * run.writer['req_per_s'] / one:.0f}% of its 1-subscriber rate "
             f"({one:,.0f}/s)") if one else ""  # fmt: skip
    rows = [delivery_row("G5", "256 KiB x 32 subscribers, flat out", target, writer, run, share)]
    frames = int(size["g5_rate_s"] * 100)
    paced = Writer("put", 256 * KiB, size["g5_rate_s"] + 5,
                   ["--rate", "100", "--requests", str(frames)])  # fmt: skip
    run = deliver(gen, target, "g5paced", paced, 32)
    rows.append(paced_row("G5", "256 KiB x 32 subscribers @100 Hz", target, paced, run, 100.0,
                          frames))  # fmt: skip
    return rows


def g3_khz(target: Target, gen: Loadgen, size: dict[str, Any], cache: dict[str, Any]) -> list[Row]:
    frames = int(size["g3_s"] * 1000)
    rows = []
    options = ["--rate", "1000", "--requests", str(frames)]
    for writer in _writers(gen, target, cache, 512 * KiB, size["g3_s"] + 5, options):
        run = deliver(gen, target, f"g3{writer.kind}", writer, 2)
        rows.append(paced_row("G3", f"512 KiB @1 kHz x 2 subscribers, {size['g3_s']:g} s",
                              target, writer, run, 1000.0, frames))  # fmt: skip
    return rows


def g6_small_fanout(target: Target, gen: Loadgen, size: dict[str, Any]) -> list[Row]:
    subs, seconds = size["g6_subs"], size["g6_s"]
    frames = int(seconds * 100)
    paced = Writer("put", 128, seconds + 5, ["--rate", "100", "--requests", str(frames)])
    run = deliver(gen, target, "g6paced", paced, subs)
    rows = [paced_row("G6", f"128 B x {subs} subscribers @100 Hz", target, paced, run, 100.0,
                      frames)]  # fmt: skip
    rows[0].update(
        per_cpu_unit="msgs",
        per_server_cpu_s=(run.frames / run.server_cpu_s if run.server_cpu_s else None),
    )  # G12 small messages
    flat = Writer("put", 128, size["g6_flat_s"], ["--max", "--connections", "4"])
    run = deliver(gen, target, "g6flat", flat, subs)
    row = delivery_row("G6", f"128 B x {subs} subscribers, flat out (4 PUT connections)",
                       target, flat, run)  # fmt: skip
    row.update(
        metric="delivered msgs/s",
        per_cpu_unit="msgs",
        per_server_cpu_s=run.frames / run.server_cpu_s if run.server_cpu_s else None,
    )
    return [*rows, row]


def g10_idle(target: Target, gen: Loadgen, size: dict[str, Any]) -> list[Row]:
    """Runs first on a fresh server: memory freed by earlier scenarios would hide the growth."""
    create(gen, target, "g10", 128)
    rss0, cpu0 = target.rss(), target.cpu()
    idle = gen.start(
        "idle", "--url", stream_url(target, "g10"), "--count", str(size["idle"]),
        "--api-key", API_KEY, "--hold", str(size["hold"]),
        "--connect-timeout", str(size["idle_connect_s"]),
    )  # fmt: skip
    gen.wait_ready(idle, size["idle_connect_s"] + 30)
    connect_cpu = target.cpu() - cpu0
    time.sleep(min(1.0, size["hold"] / 2))
    rss_held = target.rss()
    r = gen.finish(idle, 60 + size["hold"])
    connected = r["connected"]
    case = f"{r['sockets']:,} idle sockets"
    per_socket = (rss_held - rss0) / max(connected, 1) / 1024
    return [
        protocol.row("G10", case, target.name, DRIVER, "connects/s", r["connects_per_s"],
                     server_cpu_s=connect_cpu, work=connected, per_cpu_unit="connects",
                     detail=f"{connected:,} of {r['sockets']:,} connected"),
        protocol.row("G10", case, target.name, DRIVER, "server RSS KiB per socket", per_socket,
                     higher_is_better=False,
                     detail=f"server RSS {rss0 / 2**20:,.0f} -> {rss_held / 2**20:,.0f} MiB "
                            f"with {connected:,} connected"),
    ]  # fmt: skip


#: Scenario code -> the function measuring it, in the order they run on each target (all but
#: G6, G10 and G11 take the per-target cache).
SCENARIOS: dict[str, Callable[..., list[Row]]] = {
    "G10": g10_idle, "G11": g11_control, "G1": g1_ingest, "G2": g2_one_to_one, "G5": g5_fanout,
    "G3": g3_khz, "G6": g6_small_fanout,
}  # fmt: skip
