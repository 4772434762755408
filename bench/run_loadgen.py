"""G6 / G10 / G11 side by side: ferrotile (and ferrotile + Redis, 2 workers) against Tiled 0.2.20.

Usage (from the repository root, after ``make build`` and
``cargo build --release -p ferrotile-loadgen``)::

    .venv/bin/python bench/run_loadgen.py --tiled /path/to/tiled-venv/bin/tiled

Every target is started on a free loopback port with ``serve catalog --temp --api-key secret``
and driven by ``ferrotile-loadgen`` (Rust, tokio; see bench/loadgen), one target at a time:

- G11: ``GET /api/v1/`` and ``GET /api/v1/metadata/x`` with 64 keep-alive connections.
- G6: 1,000 msgpack subscribers on ``x``; one writer PUTs 128-byte frames
  (``/array/full/x?persist=false``) at 100/s for 10 s; deliveries/s, loss, gaps, duplicates.
- G10: 10,000 idle subscribers; connect rate and server RSS (from /proc) while held.

Server CPU (utime+stime of the server's process tree plus its private redis-server, from /proc)
is given next to each figure, and the load generator's own CPU (rusage of the waited child).
Everything started is stopped, also on error or Ctrl-C. Results go to stdout as a markdown table
and to bench/results/loadgen-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

import protocol
import stream_procs
from stream_procs import free_port, tree_pids

ROOT = Path(__file__).resolve().parent.parent
TARGET_DIR = Path(
    os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/ferrotile/target")
).expanduser()
KEY = "secret"


def _trees(pids: list[int]) -> list[int]:
    return [pid for root in pids for pid in tree_pids(root)]


def rss_bytes(pids: list[int]) -> int:
    """RSS of these processes and all their descendants."""
    return stream_procs.rss_bytes(_trees(pids))


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of these processes and all their descendants."""
    return stream_procs.cpu_seconds(_trees(pids))


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def server(name: str, command: list[str], port: int, redis: bool) -> Iterator[list[int]]:
    """Starts the target (and a private redis-server first if asked); yields the pids to meter."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        if redis:
            redis_port = free_port()
            started.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        *f"--port {redis_port} --bind 127.0.0.1 --appendonly no".split(),
                        "--save",
                        "",
                        "--maxclients",
                        "20000",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            time.sleep(0.3)
            command = [*command, "--cache", f"redis://127.0.0.1:{redis_port}", "--workers", "2"]
        started.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or started[-1].poll() is not None:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.2)
        yield [p.pid for p in started]
    finally:
        for process in reversed(started):
            stop(process)
        print(f"stopped {name}", file=sys.stderr)


class Loadgen:
    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.running: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [str(self.binary), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.running.append(process)
        return process

    def wait_ready(self, process: subprocess.Popen[str], timeout: float) -> str:
        """Reads stderr until the READY line (the sockets are connected)."""
        assert process.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                raise RuntimeError("loadgen ended before READY")
            if line.startswith("READY"):
                return line.strip()
        raise RuntimeError("loadgen not READY in time")

    def finish(self, process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out, err = process.communicate(timeout=timeout)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.running.remove(process)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"loadgen failed ({process.returncode}): {err[-2000:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        result["loadgen_cpu_s"] = (after.ru_utime + after.ru_stime) - (
            before.ru_utime + before.ru_stime
        )
        return result

    def run(self, *args: str, timeout: float = 120) -> dict[str, Any]:
        return self.finish(self.start(*args), timeout)

    def kill_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.running.clear()


def measure(
    name: str,
    command: list[str],
    port: int,
    redis: bool,
    gen: Loadgen,
    args: argparse.Namespace,
    results: dict[str, Any],
) -> None:
    base = f"http://127.0.0.1:{port}"
    ws = f"ws://127.0.0.1:{port}/api/v1/stream/single/x?envelope_format=msgpack"
    with server(name, command, port, redis) as pids:
        try:
            # The array (128 uint8) the writer targets; no PUT yet.
            gen.run(
                "put", "--url", base, "--key", "x", "--size", "128", "--create",
                "--rate", "1", "--duration", "0", "--api-key", KEY,
            )  # fmt: skip
            # G11: control-plane GETs.
            g11 = [("root", "/api/v1/"), ("metadata", "/api/v1/metadata/x")]
            for label, path in g11 if wanted(args, "G11") else []:
                cpu0 = cpu_seconds(pids)
                result = gen.run(
                    "get", "--url", base, "--path", path, "--connections", "64",
                    "--duration", str(args.get_seconds), "--api-key", KEY, "--threads", "1",
                )  # fmt: skip
                result["server_cpu_s"] = cpu_seconds(pids) - cpu0
                results[f"G11 GET {label}"] = result
            # G1: stream-only 1 KiB PUTs, flat out, from the lean Rust client (16 connections).
            if wanted(args, "G1"):
                cpu0 = cpu_seconds(pids)
                result = gen.run(
                    "put", "--url", base, "--key", "g1", "--size", "1024", "--create", "--max",
                    "--connections", "16", "--duration", str(args.get_seconds),
                    "--api-key", KEY,
                )  # fmt: skip
                result["server_cpu_s"] = cpu_seconds(pids) - cpu0
                results["G1 PUT"] = result
            if wanted(args, "G6"):
                measure_fanout(base, ws, pids, gen, args, results)
            if wanted(args, "G10"):
                measure_idle(ws, pids, gen, args, results)
        finally:
            gen.kill_all()


def wanted(args: argparse.Namespace, code: str) -> bool:
    return not args.only or code in args.only


def measure_fanout(
    base: str, ws: str, pids: list[int], gen: Loadgen, args: argparse.Namespace,
    results: dict[str, Any],
) -> None:  # fmt: skip
    # G6: small fan-out; the writer sends exactly `frames`.
    frames = int(args.fanout_seconds * args.rate)
    subs = gen.start(
        "subscribers", "--url", ws, "--count", str(args.subscribers), "--api-key", KEY,
        "--duration", str(args.fanout_seconds + 8), "--expect", str(frames),
        "--threads", "1",
    )  # fmt: skip
    ready = gen.wait_ready(subs, 90)
    cpu0 = cpu_seconds(pids)
    writer = gen.run(
        "put", "--url", base, "--key", "x", "--size", "128", "--rate", str(args.rate),
        "--duration", str(args.fanout_seconds + 5), "--requests", str(frames),
        "--api-key", KEY,
    )  # fmt: skip
    delivered = gen.finish(subs, 60)
    delivered["server_cpu_s"] = cpu_seconds(pids) - cpu0
    delivered["ready"] = ready
    delivered["writer"] = writer
    delivered["expected"] = writer["ok"] * delivered["connected"]
    results["G6 fan-out"] = delivered


def measure_idle(
    ws: str, pids: list[int], gen: Loadgen, args: argparse.Namespace, results: dict[str, Any]
) -> None:
    # G10: idle sockets held open.
    rss0 = rss_bytes(pids)
    cpu0 = cpu_seconds(pids)
    idle = gen.start(
        "idle", "--url", ws, "--count", str(args.idle), "--api-key", KEY,
        "--hold", str(args.hold), "--connect-timeout", str(args.idle_connect_timeout),
        "--threads", "1",
    )  # fmt: skip
    idle_ready = gen.wait_ready(idle, args.idle_connect_timeout + 30)
    connect_cpu = cpu_seconds(pids) - cpu0
    time.sleep(min(1.0, args.hold / 2))
    rss_held = rss_bytes(pids)
    held = gen.finish(idle, 60 + args.hold)
    held.update(rss_before=rss0, rss_held=rss_held, server_cpu_s=connect_cpu, ready=idle_ready)
    results["G10 idle"] = held


DRIVER = "ferrotile-loadgen (Rust, tokio)"


def to_rows(all_results: dict[str, dict[str, Any]], subscribers: int) -> list[dict[str, Any]]:
    """The results as protocol rows (G1 PUT, G6, G10, G11)."""
    out: list[dict[str, Any]] = []
    for target, results in all_results.items():
        label = {"ferrotile": "ferrotile-memory", "tiled": "tiled"}.get(
            target, "ferrotile-redis-2w"
        )
        for scenario, r in results.items():
            if not isinstance(r, dict):
                continue
            cpu = r.get("server_cpu_s")
            code, _, case = scenario.partition(" ")
            if code in ("G1", "G11"):
                case = {"G1": "HTTP PUT 1 KiB stream-only, 16 connections"}.get(code, case)
                out.append(protocol.row(
                    code, case, label, DRIVER, "req/s", r["req_per_s"], server_cpu_s=cpu,
                    work=r["ok"], per_cpu_unit="req",
                    detail=f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, non-2xx {r['non_2xx']}",
                ))  # fmt: skip
            elif code == "G6":
                lost = r["expected"] - r["data_messages"]
                out.append(protocol.row(
                    code, f"128 B x {subscribers} subscribers @100 Hz", label, DRIVER,
                    "msgs/s delivered", r["msgs_per_s"], server_cpu_s=cpu,
                    work=r["data_messages"], per_cpu_unit="msgs", loss=lost,
                    dup=r["duplicates"], gaps=r["missing"],
                    detail=f"writer PUT p99 {r['writer']['p99_ms']} ms",
                ))  # fmt: skip
            elif code == "G10":
                per_socket = (r["rss_held"] - r["rss_before"]) / max(r["connected"], 1)
                out.append(protocol.row(
                    code, f"{r['sockets']:,} idle sockets", label, DRIVER, "connects/s",
                    r["connects_per_s"], server_cpu_s=cpu, work=r["connected"],
                    per_cpu_unit="connects",
                    detail=f"{r['connected']:,} of {r['sockets']:,} connected",
                ))  # fmt: skip
                out.append(protocol.row(
                    code, f"{r['sockets']:,} idle sockets", label, DRIVER,
                    "server RSS KiB per socket", per_socket / 1024, higher_is_better=False,
                    detail=(f"server RSS {r['rss_held'] / 2**20:,.0f} MiB held with "
                            f"{r['connected']:,} connected"),
                ))  # fmt: skip
    return out


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.1f}x" if theirs else "-"


def table(all_results: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| scenario | target | result | server CPU | per server-CPU-second | vs Tiled |",
        "|---|---|---|---:|---:|---:|",
    ]
    tiled = all_results.get("tiled", {})
    for scenario in ["G11 GET root", "G11 GET metadata", "G1 PUT", "G6 fan-out", "G10 idle"]:
        for target, results in all_results.items():
            r = results.get(scenario)
            if r is None:
                continue
            base = tiled.get(scenario)
            if scenario.startswith(("G11", "G1 ")):
                secs = r["seconds"]
                cores = r["server_cpu_s"] / secs
                figure = r["req_per_s"]
                text = (
                    f"{figure:,.0f} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms"
                    f" (non-2xx {r['non_2xx']}, errors {r['errors']})"
                )
                per_cpu = f"{r['ok'] / r['server_cpu_s']:,.0f} req" if r["server_cpu_s"] else "-"
                vs = ratio(figure, base["req_per_s"]) if base and target != "tiled" else ""
            elif scenario.startswith("G6"):
                w = r["writer"]
                secs = max(w["seconds"], r["active_seconds"])
                cores = r["server_cpu_s"] / secs
                figure = r["msgs_per_s"]
                lost = r["expected"] - r["data_messages"]
                text = (
                    f"{figure:,.0f} msgs/s delivered ({r['data_messages']:,} of"
                    f" {r['expected']:,}; lost {lost}, gaps {r['missing']}, dups"
                    f" {r['duplicates']}); writer {w['req_per_s']:.0f}/s of {w['target_rate']:.0f},"
                    f" PUT p50 {w['p50_ms']} ms p99 {w['p99_ms']} ms; loadgen CPU"
                    f" {r['loadgen_cpu_s']:.1f} s"
                )
                per_cpu = (
                    f"{r['data_messages'] / r['server_cpu_s']:,.0f} msgs"
                    if r["server_cpu_s"]
                    else "-"
                )
                vs = ratio(figure, base["msgs_per_s"]) if base and target != "tiled" else ""
            else:
                secs = r["connect_seconds"]
                cores = r["server_cpu_s"] / secs if secs else 0.0
                figure = r["connects_per_s"]
                per_socket = (r["rss_held"] - r["rss_before"]) / max(r["connected"], 1)
                text = (
                    f"{r['connected']:,}/{r['sockets']:,} connected at {figure:,.0f}/s;"
                    f" server RSS {r['rss_held'] / 2**20:,.0f} MiB held"
                    f" ({per_socket / 1024:.1f} KiB/socket); not connected (refused or"
                    f" timed out) {r['sockets'] - r['connected']:,}"
                )
                per_cpu = (
                    f"{r['connected'] / r['server_cpu_s']:,.0f} connects"
                    if r["server_cpu_s"]
                    else "-"
                )
                vs = ratio(figure, base["connects_per_s"]) if base and target != "tiled" else ""
            rows.append(f"| {scenario} | {target} | {text} | {cores:.2f} | {per_cpu} | {vs} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    protocol.add_arguments(parser)
    parser.add_argument(
        "--tiled", help="a `tiled` executable (default: the harness's Tiled 0.2.20)"
    )
    parser.add_argument("--no-tiled", action="store_true", help="skip Tiled")
    parser.add_argument("--only", default="", help="scenario codes among G1,G6,G10,G11")
    parser.add_argument("--no-redis", action="store_true", help="skip ferrotile+redis, 2 workers")
    parser.add_argument("--loadgen", default=str(TARGET_DIR / "release/ferrotile-loadgen"))
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="writer frames/s (G6)")
    parser.add_argument("--fanout-seconds", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--hold", type=float, default=3.0)
    parser.add_argument("--idle-connect-timeout", type=float, default=30.0)
    parser.add_argument("--get-seconds", type=float, default=5.0)
    args = parser.parse_args()
    args.only = {code.strip() for code in args.only.split(",") if code.strip()}
    protocol.interrupt_on_signals()
    if args.quick:  # Tiled connects ~60 sockets/s: keep its connect phases short
        args.fanout_seconds, args.subscribers, args.get_seconds = 2.0, 300, 1.5
        args.idle, args.hold, args.idle_connect_timeout = 1000, 1.0, 10.0
    if not args.no_tiled and not args.tiled:
        args.tiled = str(protocol.tiled_executable())
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gen = Loadgen(Path(args.loadgen))
    if not gen.binary.exists():
        sys.exit(f"{gen.binary} missing: cargo build --release -p ferrotile-loadgen")

    def ferrotile(port: int) -> list[str]:
        return [
            sys.executable, "-m", "ferrotile", "serve", "catalog", "--temp",
            "--api-key", KEY, "--port", str(port),
        ]  # fmt: skip

    targets: list[tuple[str, Any, bool]] = [("ferrotile", ferrotile, False)]
    if not args.no_redis and shutil.which("redis-server"):
        targets.append(("ferrotile+redis, 2 workers", ferrotile, True))
    if args.tiled:
        tiled = args.tiled

        def tiled_command(port: int) -> list[str]:
            return [tiled, "serve", "catalog", "--temp", "--api-key", KEY, "--port", str(port)]

        targets.append(("tiled", tiled_command, False))
    all_results: dict[str, dict[str, Any]] = {}
    t0 = time.monotonic()
    for name, command, redis in targets:
        port = free_port()
        try:
            measure(name, command(port), port, redis, gen, args, all_results.setdefault(name, {}))
        except Exception as error:  # report the others even if one target fails
            print(f"{name}: {error}", file=sys.stderr)
            all_results.setdefault(name, {})["error"] = str(error)
        protocol.write(args.json, to_rows(all_results, args.subscribers))  # what is done so far
    print(f"total {time.monotonic() - t0:.0f} s, open-files limit {hard}", file=sys.stderr)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out_dir / f"loadgen-{stamp}.json").write_text(json.dumps(all_results, indent=1))
    print(table(all_results))
    protocol.write(args.json, to_rows(all_results, args.subscribers))
    for name, results in all_results.items():
        if "error" in results:
            print(f"\n{name}: FAILED: {results['error']}")


if __name__ == "__main__":
    main()
