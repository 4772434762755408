"""G2 (1 writer -> 1 subscriber, flat out) of two ferrotile builds and the Rust relay, side by side
in one run: every server is started once, then the cases run in alternating rounds (build A,
build B, relay, A, B, relay, ...) so that the machine's load falls alike on each.

Usage (from the repository root, after ``make build``)::

    .venv/bin/python bench/ab_g2.py --old /tmp/old-python-dir [--rounds 3] [--seconds 5]
        [--size 262144] [--max-queue-bytes N] [--target ferrotile-redis-2w] [--no-relay]

``--old`` is a directory holding another build's ``ferrotile`` package (e.g. a copy of
``python/ferrotile`` with its ``_core.abi3.so`` from before a change): that server runs with it
first on ``PYTHONPATH``; the other runs this checkout's build. Writers: ``ferrotile-loadgen``
HTTP PUT and WS push (16 frames awaiting their ack), ``--max``; one ``ferrotile-loadgen
subscribers`` socket (msgpack envelope). ``--max-queue-bytes`` raises the subscription's byte
cap (8 MiB frames: the default 64 MiB is 8 frames). ``--target`` picks how both builds are
served (``stream_procs.TARGETS``, e.g. ``ferrotile-redis-2w``: each build with two workers and
its own ``redis-server``, whose CPU is counted with the server's). Prints per case the median
over rounds of frames/s delivered and server CPU per frame (utime+stime of the server's process
tree, /proc).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen_driver import Loadgen, Writer, deliver
from stream_procs import Target, stop_all


def start(name: str, logdir: Path, pythonpath: str | None) -> Target:
    """A target started with ``PYTHONPATH`` set to ``pythonpath`` (None: unset)."""
    saved = os.environ.pop("PYTHONPATH", None)
    if pythonpath:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        target = Target(name, logdir)
        target.start()
    finally:
        os.environ.pop("PYTHONPATH", None)
        if saved is not None:
            os.environ["PYTHONPATH"] = saved
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="directory with the other build's package")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=256 * 1024)
    parser.add_argument("--max-queue-bytes", type=int, default=0)
    parser.add_argument("--target", default="ferrotile-memory", help="how both builds are served")
    parser.add_argument("--no-relay", action="store_true", help="leave the Rust relay out")
    args = parser.parse_args()
    logdir = Path(tempfile.mkdtemp(prefix="ab-g2-"))
    gen = Loadgen()
    query = f"&max_queue_bytes={args.max_queue_bytes}" if args.max_queue_bytes else ""
    results: dict[str, list[tuple[float, float]]] = {}
    try:
        targets = {
            "old": start(args.target, logdir, args.old),
            "new": start(args.target, logdir, None),
        }
        if not args.no_relay:
            targets["relay"] = start("rust-relay", logdir, None)
        for round_ in range(args.rounds):
            for label, target in targets.items():
                kinds = ["put"] if target.relay else ["put", "push"]
                for kind in kinds:
                    options = ["--max"] + (["--window", "16"] if kind == "push" else [])
                    writer = Writer(kind, args.size, args.seconds, options)
                    key = f"ab{kind}{args.size}r{round_}"
                    run = deliver(gen, target, key, writer, 1, query="" if target.relay else query)
                    frames = run.frames
                    rate = float(run.subscribers["msgs_per_s"])
                    cpu_us = run.server_cpu_s / max(frames, 1) * 1e6
                    results.setdefault(f"{label} {kind}", []).append((rate, cpu_us))
                    problem = run.subscribers.get("first_problem")
                    print(f"round {round_} {label:5} {kind:4}: {rate:8,.0f} frames/s, "
                          f"{cpu_us:6.1f} us server CPU/frame ({frames} frames, "
                          f"lost {run.expected - frames}{'; ' + problem if problem else ''})",
                          flush=True)  # fmt: skip
    finally:
        gen.kill_all()
        stop_all()
    print(f"\nmedian of {args.rounds} rounds, {args.size:,} B frames:")
    relay_cpu = statistics.median(c for _, c in results.get("relay put", [(0.0, 0.0)]))
    for case, values in results.items():
        rate = statistics.median(r for r, _ in values)
        cpu = statistics.median(c for _, c in values)
        ratio = f"{cpu / relay_cpu:.2f}x relay" if relay_cpu else ""
        print(f"  {case:10} {rate:8,.0f} frames/s  {cpu:6.1f} us/frame  {ratio}")


if __name__ == "__main__":
    main()
