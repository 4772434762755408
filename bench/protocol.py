"""The bench script protocol: every script takes ``--quick`` and ``--json OUT`` and writes
``{"rows": [row, ...]}``; ``run.py`` runs the scripts, takes medians and prints one table.

A row is a dict with ``scenario`` ("G5"), ``case`` ("256 KiB x32 flat out"), ``target``
("ferrotile mem 1w"), ``driver`` (the load generator), ``metric`` (unit text), ``value`` (the
figure), ``higher_is_better``, ``runs``, ``server_cpu_s`` (server processes + Redis over the
measured window, from /proc, or None), ``per_server_cpu_s`` (the work per server-CPU-second:
frames, messages or bytes, named by ``per_cpu_unit``), ``cpu_us_per_frame`` (server CPU per
frame delivered, or per request / write, in microseconds), and for delivery scenarios ``loss``,
``dup`` and ``gaps``; optional ``detail`` (one line of secondary figures) and ``notes``.
``run.py`` adds ``ratio`` (vs Tiled) and ``vs_relay`` (CPU per frame / the Rust relay's).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

TILED = "Tiled 0.2.20"
GRANIAN_RELAY = "Granian ASGI relay"
RUST_RELAY = "Rust relay"
#: Target labels shared by the scripts (so run.py can pair rows with Tiled's and the relay's).
TARGET_LABELS = {
    "ferrotile-memory": "ferrotile mem 1w",
    "ferrotile-redis": "ferrotile redis 1w",
    "ferrotile-redis-2w": "ferrotile redis 2w",
    "tiled": TILED,
    "tiled-redis": TILED,  # G9: Tiled with --cache redis://...
    "granian-relay": GRANIAN_RELAY,
    "rust-relay": RUST_RELAY,
}
#: Units of ``work`` that count frames, messages, requests or writes (one each).
COUNT_UNITS = {"frames", "msgs", "msg", "req", "writes"}


def row(
    scenario: str,
    case: str,
    target: str,
    driver: str,
    metric: str,
    value: float | None,
    *,
    higher_is_better: bool = True,
    server_cpu_s: float | None = None,
    work: float | None = None,
    per_cpu_unit: str | None = None,
    loss: int | None = None,
    dup: int | None = None,
    gaps: int | None = None,
    frames: float | None = None,
    detail: str = "",
    notes: str = "",
) -> dict[str, Any]:
    """One result row; ``work`` (frames, messages or bytes done in the window) divided by
    ``server_cpu_s`` gives ``per_server_cpu_s``; ``server_cpu_s`` over ``frames`` (frames
    delivered, summed over subscribers, or requests; default: ``work`` when it counts them) gives
    ``cpu_us_per_frame``."""
    per_cpu = work / server_cpu_s if work is not None and server_cpu_s else None
    if frames is None and per_cpu_unit in COUNT_UNITS:
        frames = work
    per_frame = server_cpu_s * 1e6 / frames if frames and server_cpu_s is not None else None
    return {
        "scenario": scenario, "case": case, "target": TARGET_LABELS.get(target, target),
        "driver": driver, "metric": metric, "value": value,
        "higher_is_better": higher_is_better, "runs": 1, "server_cpu_s": server_cpu_s,
        "per_server_cpu_s": per_cpu, "per_cpu_unit": per_cpu_unit if per_cpu else None,
        "cpu_us_per_frame": per_frame, "loss": loss, "dup": dup, "gaps": gaps,
        "detail": detail, "notes": notes,
    }  # fmt: skip


def error_row(scenario: str, target: str, driver: str, error: Exception) -> dict[str, Any]:
    """The row of a scenario that failed (the script reports the others and exits 1)."""
    return row(scenario, "error", target, driver, "error", None,
               notes=f"{type(error).__name__}: {error}")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--quick`` and ``--json``, the two options every bench script takes."""
    parser.add_argument("--quick", action="store_true", help="small sizes (well under a minute)")
    parser.add_argument("--json", metavar="OUT", help="write the result rows to this JSON file")


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt (also when started in the background, where
    SIGINT is ignored by default), so every ``finally`` stops what the script started."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def write(path: str | None, rows: list[dict[str, Any]]) -> None:
    if path:
        Path(path).write_text(json.dumps({"rows": rows}, indent=1, default=str))


ROOT = Path(__file__).resolve().parent.parent
#: Cargo's target directory (the Makefile's default), where the bench's Rust binaries are built.
CARGO_TARGET = Path(
    os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "ferrotile" / "target")
).expanduser()
RUST_BINARIES = ("ferrotile-loadgen", "ferrotile-relay")


def rust_binary(name: str) -> Path:
    """The release build of one of the bench's Rust binaries (see :func:`build_rust`)."""
    return CARGO_TARGET / "release" / name


def build_rust() -> None:
    """``cargo build --release`` of the load generator and the Rust relay (incremental: quick
    when nothing changed), before anything is timed."""
    packages = [arg for name in RUST_BINARIES for arg in ("-p", name)]
    print(f"== cargo build --release {' '.join(packages)}", file=sys.stderr)
    env = dict(os.environ, CARGO_TARGET_DIR=str(CARGO_TARGET))
    command = ["cargo", "build", "--release", "--quiet", *packages]
    subprocess.run(command, cwd=ROOT, check=True, timeout=1800, env=env)


#: Where the harness installs the reference Tiled (from PyPI) if it is missing.
TILED_VENV = Path.home() / ".cache" / "ferrotile" / "tiled-0.2.20"


def tiled_executable() -> Path:
    """The ``tiled`` command of Tiled 0.2.20: ``$FERROTILE_BENCH_TILED`` if set, else the
    harness's own virtualenv, created with pip on first use (a few minutes, once)."""
    override = os.environ.get("FERROTILE_BENCH_TILED")
    if override:
        return Path(override)
    tiled = TILED_VENV / "bin" / "tiled"
    if not tiled.exists():
        print(f"installing tiled[server,client]==0.2.20 into {TILED_VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(TILED_VENV)], check=True)
        pip = [str(TILED_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "tiled[server,client]==0.2.20"], check=True)
    return tiled
