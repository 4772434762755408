"""Registering a tree of many small files: ``ferrotile register`` vs ``tiled register``.

Usage (from the repository root)::

    .venv/bin/python bench/register_bench.py --files 10000
    .venv/bin/python bench/register_bench.py --files 10000 --tiled /path/to/tiled-venv/bin/tiled

One tree of ``--files`` small ``.npy`` files (100 per directory) is generated once. Each
combination gets a fresh ``serve catalog --temp -r TREE`` server on a free loopback port and the
wall-clock time of the register command is measured (a second run shows the re-run cost:
ferrotile skips unchanged files, ``tiled register`` deletes and re-creates everything):

- ferrotile server, ``ferrotile register`` (first run, then re-run);
- ferrotile server, the stock ``tiled register`` of this virtualenv;
- with ``--tiled``: the Tiled server of that virtualenv, its own ``tiled register``.

Every process started is stopped, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

KEY = "secret"


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        directory = root / f"d{i // 100:04d}"
        directory.mkdir(parents=True, exist_ok=True)
        # A trailing letter keeps the files apart: numbered names would form one series.
        np.save(directory / f"f{i:06d}x.npy", np.full(16, i, dtype=np.int32))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(command: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    stop(process)
    raise RuntimeError(f"{command[0]} did not start:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def timed(command: list[str]) -> float:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    began = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{result.stderr[-2000:]}")
    return elapsed


def run(server: list[str], registers: list[list[str]], tree: Path, work: Path) -> list[float]:
    port = free_port()
    command = [*server, "serve", "catalog", "--temp", "-r", str(tree),
               "--api-key", KEY, "--port", str(port)]  # fmt: skip
    process = start(command, port, work / f"server-{port}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        return [timed([*r, url, str(tree), "--api-key", KEY]) for r in registers]
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--tiled", help="the `tiled` executable of a Tiled 0.2.20 virtualenv")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="register-bench-"))
    try:
        tree = work / "tree"
        make_tree(tree, args.files)
        ferrotile = [sys.executable, "-m", "ferrotile"]
        stock = str(Path(sys.executable).with_name("tiled"))
        rows = []
        first, rerun = run(ferrotile, [[*ferrotile, "register"]] * 2, tree, work)
        rows += [("ferrotile server, ferrotile register", first),
                 ("ferrotile server, ferrotile register (re-run)", rerun)]  # fmt: skip
        (stock_time,) = run(ferrotile, [[stock, "register"]], tree, work)
        rows.append(("ferrotile server, tiled register", stock_time))
        if args.tiled:
            tiled_first, tiled_rerun = run([args.tiled], [[args.tiled, "register"]] * 2, tree, work)
            rows += [("Tiled server, tiled register", tiled_first),
                     ("Tiled server, tiled register (re-run)", tiled_rerun)]  # fmt: skip
        print(f"{args.files} files")
        for name, seconds in rows:
            print(f"{name:48s} {seconds:8.2f} s  {args.files / seconds:8.0f} files/s")
        if args.tiled:
            print(f"first run: Tiled takes {tiled_first / first:.1f}x as long as ferrotile")
            print(f"re-run:    Tiled takes {tiled_rerun / rerun:.1f}x as long as ferrotile")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
