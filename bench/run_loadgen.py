"""The Rust load generator's scenarios (G1, G2, G3, G5, G6, G10, G11), every target side by side.

Usage (from the repository root, after ``make build``; the Rust binaries are built here)::

    .venv/bin/python bench/run_loadgen.py [--quick] [--json OUT] [--only G2,G5]
        [--targets ferrotile-memory,ferrotile-redis-2w,granian-relay,rust-relay,tiled]
        [--control-uds PATH]

Every target is started in turn on a free loopback port (ferrotile and Tiled with ``serve
catalog --temp --api-key secret``; the Granian ASGI relay and the Rust relay, the floor of this
machine; see stream_procs.py) and driven by ``ferrotile-loadgen`` (Rust, tokio; bench/loadgen):
Rust writers (HTTP PUT, and WS push where the target serves ``/api/v1/stream/push``) and Rust
subscribers counting frames by the id embedded in each payload, with latency from the writer's
timestamp. The scenarios are described in loadgen_scenarios.py. Server CPU is utime+stime of the
target's process tree plus its Redis, from /proc, over each measured window; run.py divides it
by the frames (or requests) for "server CPU per frame" and compares with the Rust relay.

G11 also sends the same GETs straight to the Unix socket of the Granian app behind ferrotile's
edge ("control plane through the edge"): the ``control.sock`` the server process listens on,
found in /proc, or ``--control-uds PATH`` (``{port}`` = the target's public port); skipped when
there is none. Everything started is stopped,
also on error or Ctrl-C. Rows: ``--json OUT`` (protocol rows) and bench/results/loadgen-*.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protocol
import run_report
from loadgen_driver import DRIVER, Loadgen
from loadgen_scenarios import SCENARIOS, SIZES
from stream_procs import TARGETS, Target, stop_all

DEFAULT_TARGETS = "ferrotile-memory,ferrotile-redis-2w,granian-relay,rust-relay,tiled"
#: Scenarios a target cannot run: the relays have no control plane (metadata, GET /api/v1/).
SKIPPED = {"granian-relay": {"G11"}, "rust-relay": {"G11"}}


def measure(target: Target, gen: Loadgen, size: dict[str, Any], only: set[str],
            uds: str | None) -> list[dict[str, Any]]:  # fmt: skip
    rows: list[dict[str, Any]] = []
    cache: dict[str, Any] = {}  # per target: push route served?, G2 writer rates for G5
    target.start()
    try:
        for code, scenario in SCENARIOS.items():
            if (only and code not in only) or code in SKIPPED.get(target.name, set()):
                continue
            t0 = time.monotonic()
            try:
                if code == "G11":
                    path = Path(uds.format(port=target.port)) if uds else target.control_socket()
                    rows += scenario(target, gen, size, path if path and path.exists() else None)
                elif code in ("G6", "G10"):
                    rows += scenario(target, gen, size)
                else:
                    rows += scenario(target, gen, size, cache)
            except Exception as error:  # report the others even if one scenario fails
                rows.append(protocol.error_row(code, target.name, DRIVER, error))
            finally:
                gen.kill_all()
            print(f"  {target.name} {code}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    finally:
        target.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    protocol.add_arguments(parser)
    parser.add_argument("--only", default="", help=f"scenario codes among {','.join(SCENARIOS)}")
    parser.add_argument("--targets", default=DEFAULT_TARGETS,
                        help=f"comma-separated, from: {', '.join(TARGETS)}")  # fmt: skip
    parser.add_argument("--control-uds", help="the Granian socket behind the edge (default: found)")
    parser.add_argument("--no-build", action="store_true", help="use the Rust binaries as built")
    args = parser.parse_args()
    only = {code.strip().upper() for code in args.only.split(",") if code.strip()}
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    if unknown := [n for n in names if n not in TARGETS]:
        parser.error(f"unknown targets: {unknown}")
    protocol.interrupt_on_signals()
    if not args.no_build:
        protocol.build_rust()
    # Thousands of sockets: the generator, the servers and Redis inherit the hard limit.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    size = SIZES["quick" if args.quick else "full"]
    gen = Loadgen()
    logdir = Path(tempfile.mkdtemp(prefix="loadgen-bench-"))
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        for name in names:
            print(f"{name} ...", file=sys.stderr)
            rows += measure(Target(name, logdir), gen, size, only, args.control_uds)
            protocol.write(args.json, rows)  # what is done so far
    finally:
        gen.kill_all()
        stop_all()
    print(f"total {time.monotonic() - t0:.0f} s, open-files limit {hard}, server logs in "
          f"{logdir}", file=sys.stderr)  # fmt: skip
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"loadgen-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(rows))
    protocol.write(args.json, rows)
    print(run_report.markdown(rows, []))
    if any(row["metric"] == "error" for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
