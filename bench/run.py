"""One command for every benchmark: ferrotile side by side with Tiled 0.2.20 and the two reference
relays (the floor of this machine), one table.

Usage (from the repository root, after ``make build``)::

    .venv/bin/python bench/run.py --quick            # ~15 minutes: ferrotile 1w, relays, Tiled
    .venv/bin/python bench/run.py                    # full: every target, median of 3 runs
    .venv/bin/python bench/run.py --only G2,G5 --repeat 2 --readme

Each bench script (``SCRIPTS``) is run as a subprocess through the bench script protocol
(``--quick``, ``--json OUT``; see protocol.py); scripts other helpers add later
(``streamer_bench.py``, ``haproxy_bench.py``) are run when present. The script starts its own
targets on free 127.0.0.1 ports and stops them; this driver stops the script (SIGINT, then
SIGKILL of every process it had started) if it overruns its time limit, fails, or on Ctrl-C /
SIGTERM. Rows of the same case from several runs become one row: the median value, server CPU
and per-CPU figure, loss/dup/gaps summed over the runs. Each ferrotile row gets its ratio to
Tiled's row of the same case from the same run ("x better": higher rate or lower latency), and
each row with a server CPU per frame (or request) its ratio to the Rust relay's row of the same
case ("vs Rust relay"; 1.00x is the floor). G12 (efficiency) is derived from the throughput
rows. Results: ``bench/results/latest.json`` and ``latest.md`` (git-ignored); ``--readme`` also
writes the table into bench/README.md between the result markers.

Before anything runs, Tiled 0.2.20 is installed from PyPI into ~/.cache/ferrotile/tiled-0.2.20
if missing, and the Rust load generator and relay are built (``cargo build --release -p
ferrotile-loadgen -p ferrotile-relay``, incremental).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protocol
import run_report
from stream_procs import tree_pids

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"


@dataclass
class Script:
    """One bench script, the scenarios it can produce, and its arguments per mode."""

    name: str
    scenarios: set[str]
    quick_args: list[str] = field(default_factory=list)
    full_args: list[str] = field(default_factory=list)
    takes_only: bool = False  # passes --only through (else rows are filtered afterwards)
    optional: bool = False  # written by another helper; skipped with a note if absent
    self_repeats: bool = False  # takes its own medians of several runs: run it once
    limit_quick: float = 150.0  # seconds before the script is stopped
    limit_full: float = 3600.0


RELAYS = "granian-relay,rust-relay"
QUICK_STREAM_TARGETS = "ferrotile-memory,tiled"
ALL_STREAM_TARGETS = "ferrotile-memory,ferrotile-redis,ferrotile-redis-2w,tiled"
QUICK_LOADGEN_TARGETS = f"ferrotile-memory,{RELAYS},tiled"
ALL_LOADGEN_TARGETS = f"ferrotile-memory,ferrotile-redis-2w,{RELAYS},tiled"

SCRIPTS = [
    Script("stream_bench.py", {"G2", "G4", "G5", "G7", "G8", "G13"},
           ["--targets", f"{QUICK_STREAM_TARGETS},{RELAYS}"],
           ["--targets", f"{ALL_STREAM_TARGETS},{RELAYS}"], takes_only=True, limit_quick=180),
    Script("run_loadgen.py", {"G1", "G2", "G3", "G5", "G6", "G10", "G11"},
           ["--targets", QUICK_LOADGEN_TARGETS, "--no-build"],
           ["--targets", ALL_LOADGEN_TARGETS, "--no-build"], takes_only=True, limit_quick=360),
    Script("put_loop.py", {"G1"}, ["--targets", QUICK_STREAM_TARGETS],
           ["--targets", "ferrotile-memory,ferrotile-redis-2w,tiled"], limit_quick=60),
    Script("gap_bench.py", {"G9"}, [], [], takes_only=True, limit_quick=90),
    Script("persist_bench.py", {"G13"}, ["--targets", QUICK_STREAM_TARGETS],
           ["--targets", QUICK_STREAM_TARGETS], limit_quick=150),
    Script("client_bench.py", {"C1", "C2"}, takes_only=True, limit_quick=240),
    Script("streamer_bench.py", {"G1", "G2", "G5"}, optional=True, limit_quick=90),
    Script("multi_bench.py", {"M1", "M2", "M3"}, ["--no-build"], ["--no-build"], takes_only=True,
           limit_quick=150, limit_full=600),
    Script("haproxy_bench.py", {"D1", "D2", "D3"}, optional=True, self_repeats=True,
           limit_quick=60),
]  # fmt: skip


# ------------------------------------------------------------------------ running scripts


def _start_time(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    return None


def stop_script(process: subprocess.Popen[bytes], grace: float = 25.0) -> None:
    """SIGINT to the script (it stops its targets in ``finally``); after ``grace`` seconds,
    SIGKILL every process of its tree as it was when asked to stop (by pid, checked against its
    start time so a reused pid is left alone)."""
    if process.poll() is not None:
        return
    tree = {pid: _start_time(pid) for pid in tree_pids(process.pid)}
    with contextlib.suppress(OSError):
        process.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    for pid, started in tree.items():
        if started is not None and _start_time(pid) == started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)  # its own session: anything left in it
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@contextlib.contextmanager
def signals_ignored() -> Any:
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_script(script: Script, args: argparse.Namespace, run: int, logdir: Path) -> dict[str, Any]:
    """Run one script once; returns {"rows": [...], "seconds": s, "error": str | None}."""
    out_json = logdir / f"{script.name.removesuffix('.py')}-{run}.json"
    command = [sys.executable, str(BENCH / script.name), "--json", str(out_json)]
    if args.quick:
        command.append("--quick")
    command += script.quick_args if args.quick else script.full_args
    if script.takes_only and args.only:
        command += ["--only", ",".join(sorted(args.only & script.scenarios))]
    if script.name == "run_loadgen.py" and args.control_uds:
        command += ["--control-uds", args.control_uds]
    limit = (script.limit_quick if args.quick else script.limit_full) * args.time_scale
    log = logdir / f"{script.name.removesuffix('.py')}-{run}.log"
    print(f"== {script.name} (run {run}, limit {limit:.0f} s): {' '.join(command[1:])}",
          file=sys.stderr)  # fmt: skip
    started = time.monotonic()
    error = None
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True
        )
        pump = threading.Thread(target=_pump, args=(process, log_file), daemon=True)
        pump.start()
        try:
            code = process.wait(timeout=limit)
            if code != 0:
                error = f"exit status {code} (log: {log})"
        except subprocess.TimeoutExpired:
            error = f"stopped after its {limit:.0f} s limit (log: {log})"
        finally:
            with signals_ignored():  # a second Ctrl-C must not cut the clean-up short
                stop_script(process)
            pump.join(timeout=5)
    rows: list[dict[str, Any]] = []
    if out_json.exists():
        rows = json.loads(out_json.read_text()).get("rows", [])
    elif error is None:
        error = f"wrote no {out_json.name} (log: {log})"
    if args.only:
        rows = [r for r in rows if r.get("scenario") in args.only]
    seconds = time.monotonic() - started
    print(f"   {script.name}: {len(rows)} rows in {seconds:.0f} s"
          + (f"; ERROR {error}" if error else ""), file=sys.stderr)  # fmt: skip
    return {"rows": rows, "seconds": seconds, "error": error}


def _pump(process: subprocess.Popen[bytes], log_file: Any) -> None:
    """Copy the script's stderr (its progress lines) to ours and to its log."""
    assert process.stderr is not None
    for line in iter(process.stderr.readline, b""):
        log_file.write(line)
        sys.stderr.write("   " + line.decode(errors="replace"))
        sys.stderr.flush()


# ---------------------------------------------------------------------------- merging rows

KEY_FIELDS = ("scenario", "case", "target", "driver", "metric")


def merge(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per case: medians of value / server CPU / per-CPU figure over the runs, loss,
    dup and gaps summed, detail of the run whose value is the (lower) median."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for rows in runs:
        for row in rows:
            groups.setdefault(tuple(row.get(k) for k in KEY_FIELDS), []).append(row)
    merged = []
    for group in groups.values():
        valued = sorted((r for r in group if r.get("value") is not None), key=lambda r: r["value"])
        middle = valued[(len(valued) - 1) // 2] if valued else group[0]
        row = dict(middle)
        row["runs"] = len(group)
        for name in ("value", "server_cpu_s", "per_server_cpu_s", "cpu_us_per_frame"):
            values = [r[name] for r in group if r.get(name) is not None]
            row[name] = statistics.median(values) if values else None
        for name in ("loss", "dup", "gaps"):
            counts = [r[name] for r in group if r.get(name) is not None]
            row[name] = sum(counts) if counts else None
        notes = sorted({r["notes"] for r in group if r.get("notes")})
        row["notes"] = "; ".join(notes)
        merged.append(row)
    return merged


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``ratio`` = how many times better than Tiled's row of the same case (same scenario, case
    and metric; same driver if Tiled has one): value / Tiled's for rates, Tiled's / value for
    latencies and times."""
    tiled = [r for r in rows if r["target"] == protocol.TILED and r.get("value")]
    for row in rows:
        row.setdefault("ratio", None)
        if row["target"] == protocol.TILED or not row.get("value"):
            continue
        same = [t for t in tiled
                if all(t.get(k) == row.get(k) for k in ("scenario", "case", "metric"))]  # fmt: skip
        peer = next((t for t in same if t.get("driver") == row.get("driver")), None) or (
            same[0] if same else None
        )
        if peer is not None:
            higher = row.get("higher_is_better", True)
            row["ratio"] = row["value"] / peer["value"] if higher else peer["value"] / row["value"]


def add_relay_ratios(rows: list[dict[str, Any]]) -> None:
    """``vs_relay`` = server CPU per frame / the Rust relay's in the row of the same case (same
    scenario and case; same driver if the relay has one): 1.0 is the floor of this machine."""
    relay = [r for r in rows if r["target"] == protocol.RUST_RELAY and r.get("cpu_us_per_frame")]
    for row in rows:
        row.setdefault("vs_relay", None)
        if row["target"] == protocol.RUST_RELAY or not row.get("cpu_us_per_frame"):
            continue
        same = [r for r in relay if r["scenario"] == row["scenario"] and r["case"] == row["case"]]
        peer = next((r for r in same if r["driver"] == row["driver"]), None)
        if peer is not None:
            row["vs_relay"] = row["cpu_us_per_frame"] / peer["cpu_us_per_frame"]


def efficiency_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """G12, derived: per target, the best MB per server-CPU-second of the large-frame delivery
    rows (>= 256 KiB: G2, G5, G8) and the best small messages per server-CPU-second (G6)."""
    derived = []
    targets = sorted({r["target"] for r in rows}, key=run_report.target_order)
    picks = [
        ("large frames (>= 256 KiB) delivered", "MB per server-CPU-s", "MB",
         {"G2", "G5", "G8"}),
        ("small messages (128 B) delivered", "msgs per server-CPU-s", "msgs", {"G6"}),
    ]  # fmt: skip
    for case, metric, unit, scenarios in picks:
        for target in targets:
            candidates = [
                r
                for r in rows
                if r["target"] == target
                and r["scenario"] in scenarios
                and r.get("per_cpu_unit") == unit
                and r.get("per_server_cpu_s")
            ]
            if not candidates:
                continue
            best = max(candidates, key=lambda r: r["per_server_cpu_s"])
            row = protocol.row(
                "G12", case, target, f"derived from {best['scenario']}", metric,
                best["per_server_cpu_s"], server_cpu_s=best.get("server_cpu_s"),
                detail=f"best of {len(candidates)} rows: {best['scenario']} {best['case']}",
            )  # fmt: skip
            row["runs"] = best.get("runs", 1)
            derived.append(row)
    return derived


# ---------------------------------------------------------------------------- environment


def prepare(args: argparse.Namespace, scripts: list[Script]) -> None:
    """Tiled's virtualenv and the Rust load generator, before anything is timed."""
    protocol.tiled_executable()
    if any(s.name in ("run_loadgen.py", "stream_bench.py", "multi_bench.py") for s in scripts):
        protocol.build_rust()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short runs, ferrotile 1 worker (in-process hub) and Tiled only",
    )
    parser.add_argument("--only", default="", help="scenario codes, e.g. G2,G5")
    parser.add_argument("--repeat", type=int, help="runs per script (default: full 3, quick 1)")
    parser.add_argument("--json", default=str(RESULTS / "latest.json"), help="merged rows")
    parser.add_argument("--md", default=str(RESULTS / "latest.md"), help="the Markdown table")
    parser.add_argument(
        "--readme",
        action="store_true",
        help="write the table into bench/README.md between the result markers",
    )
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="multiply every script's time limit (slow machines)")  # fmt: skip
    parser.add_argument("--control-uds",
                        help="the Granian Unix socket behind the edge ({port}: the public port)"
                        " for G11's 'control plane through the edge' rows")  # fmt: skip
    args = parser.parse_args()
    args.only = {c.strip().upper() for c in args.only.split(",") if c.strip()}
    repeat = args.repeat or (1 if args.quick else 3)
    if repeat < 1 or repeat > 10:
        parser.error("--repeat must be between 1 and 10")
    scripts = [s for s in SCRIPTS if not args.only or s.scenarios & args.only]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = RESULTS / f"run-{stamp}"
    logdir.mkdir()
    environment = run_report.environment(sys.argv)
    started = time.monotonic()
    per_script: dict[str, list[list[dict[str, Any]]]] = {}
    status: list[dict[str, Any]] = []
    try:
        prepare(args, scripts)
        for script in scripts:
            if not (BENCH / script.name).exists():
                note = f"{script.name} not present: skipped"
                print(f"== {note}", file=sys.stderr)
                status.append({"script": script.name, "skipped": True, "note": note})
                continue
            for run in range(1, (1 if script.self_repeats else repeat) + 1):
                result = run_script(script, args, run, logdir)
                per_script.setdefault(script.name, []).append(result["rows"])
                status.append({"script": script.name, "run": run, "seconds": result["seconds"],
                               "error": result["error"], "rows": len(result["rows"])})  # fmt: skip
    except KeyboardInterrupt:
        print("\ninterrupted: reporting what finished", file=sys.stderr)
        status.append({"interrupted": True})
    rows: list[dict[str, Any]] = []
    for runs in per_script.values():
        rows += merge(runs)
    rows += efficiency_rows(rows)
    add_ratios(rows)
    add_relay_ratios(rows)
    environment["wall_s"] = round(time.monotonic() - started, 1)
    environment["repeat"] = repeat
    environment["mode"] = "quick" if args.quick else "full"
    environment["load_after"] = os.getloadavg()
    table = run_report.markdown(rows, status)
    header = run_report.header(environment)
    Path(args.json).write_text(
        json.dumps(
            {"environment": environment, "scripts": status, "rows": rows}, indent=1, default=str
        )
    )
    Path(args.md).write_text(header + "\n\n" + table + "\n")
    print(header + "\n\n" + table)
    if args.readme:
        run_report.write_readme(BENCH / "README.md", header + "\n\n" + table)
        print("\n(written into bench/README.md)", file=sys.stderr)
    print(
        f"\nwall time {environment['wall_s']:.0f} s; rows in {args.json}; logs in {logdir}",
        file=sys.stderr,
    )
    if any(s.get("interrupted") for s in status):
        sys.exit(130)
    if any(s.get("error") for s in status):
        sys.exit(1)


if __name__ == "__main__":
    main()
