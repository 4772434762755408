"""Server CPU per stream-only 1 KiB PUT: a simple loop against ferrotile and, side by side, Tiled.

Usage (from the repository root, after ``make build``)::

    .venv/bin/python bench/put_loop.py --requests 2000
    .venv/bin/python bench/put_loop.py --requests 2000 --tiled /path/to/tiled-venv/bin/tiled

Each target is started on a free loopback port with ``--temp`` and a memory streaming cache,
one array of 128 float64 (1 KiB) is created, then the loop sends ``PUT /array/full?persist=false``
(what ``x.write(frame, persist=False)`` sends) over one keep-alive connection. Server CPU is
utime+stime of the server's whole process tree, read from /proc before and after the loop.
Every process started is stopped, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and all its descendants (threads included)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
        pending.extend(children.get(current, []))
    return total


def start(command: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{command[0]} did not start")


def measure(name: str, command: list[str], port: int, requests: int) -> dict[str, float]:
    process = start(command, port)
    try:
        headers = {"Authorization": "Apikey secret"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers) as http:
            frame = np.random.default_rng(0).standard_normal(128)
            body = {
                "id": "x",
                "structure_family": "array",
                "metadata": {},
                "specs": [],
                "data_sources": [
                    {
                        "structure_family": "array",
                        "structure": {
                            "data_type": {
                                "endianness": "little",
                                "kind": "f",
                                "itemsize": 8,
                                "dt_units": None,
                            },
                            "chunks": [[128]],
                            "shape": [128],
                            "dims": None,
                            "resizable": False,
                        },
                        "id": None,
                        "mimetype": None,
                        "parameters": {},
                        "properties": {},
                        "assets": [],
                        "management": "writable",
                    }
                ],
            }
            http.post("/metadata/", json=body).raise_for_status()
            put_headers = {"Content-Type": "application/octet-stream"}
            for _ in range(50):  # warm-up
                http.put(
                    "/array/full/x",
                    content=frame.tobytes(),
                    params={"persist": "false"},
                    headers=put_headers,
                )
            cpu0, t0 = tree_cpu_seconds(process.pid), time.perf_counter()
            for _ in range(requests):
                response = http.put(
                    "/array/full/x",
                    content=frame.tobytes(),
                    params={"persist": "false"},
                    headers=put_headers,
                )
                response.raise_for_status()
            elapsed = time.perf_counter() - t0
            cpu = tree_cpu_seconds(process.pid) - cpu0
        return {"cpu_us_per_put": cpu / requests * 1e6, "puts_per_s": requests / elapsed}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        print(f"stopped {name}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--tiled", help="path to a `tiled` executable (Tiled 0.2.20) to measure side by side"
    )
    args = parser.parse_args()
    results = {}
    port = free_port()
    ferrotile = [
        sys.executable,
        "-m",
        "ferrotile",
        "serve",
        "catalog",
        "--temp",
        "--api-key",
        "secret",
        "--port",
        str(port),
    ]
    results["ferrotile"] = measure("ferrotile", ferrotile, port, args.requests)
    if args.tiled:
        port = free_port()
        tiled = [
            args.tiled,
            "serve",
            "catalog",
            "--temp",
            "--api-key",
            "secret",
            "--port",
            str(port),
        ]
        results["tiled"] = measure("tiled", tiled, port, min(args.requests, 500))
    print("| target | server CPU per PUT (us) | PUT/s (one client, sequential) |")
    print("|---|---:|---:|")
    for name, result in results.items():
        print(f"| {name} | {result['cpu_us_per_put']:.0f} | {result['puts_per_s']:.0f} |")
    if "tiled" in results:
        ratio = results["tiled"]["cpu_us_per_put"] / results["ferrotile"]["cpu_us_per_put"]
        print(f"\nTiled uses {ratio:.1f}x the server CPU per PUT of ferrotile in this run.")


if __name__ == "__main__":
    main()
