"""Reading back what was appended: ``GET /array/full`` of arrays written frame by frame.

Starts one ferrotile server (this checkout's build, or another build given as a copy of
``python/`` with ``--base``), writes each array with ``ferrotile.client`` through the push
WebSocket, checks and times ``GET /array/full`` (best of three) and, with ``--stock``, the stock
tiled client's ``read()``.

    .venv/bin/python bench/read_back.py [--base /tmp/base-python] [--stock]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np

from ferrotile.client import connect

CASES = {
    "small": (50_000, (256,), "uint32"),  # 1 KiB frames: one chunk each, in shards
    "large": (200, (128, 1024), "uint16"),  # 256 KiB frames
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="", help="PYTHONPATH of another build")
    parser.add_argument("--stock", action="store_true", help="also time the stock client's read")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "ferrotile", "serve", "catalog", "--temp"]
    command += ["--api-key", "secret", "--port", str(port)]
    server = subprocess.Popen(
        command,
        cwd=tempfile.mkdtemp(),
        env=dict(os.environ, PYTHONPATH=args.base),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        for name, (n, frame, dtype) in CASES.items():
            run(url, name, n, frame, dtype, args.base or "this build", args.stock)
    finally:
        server.terminate()
        server.wait()


def run(url: str, name: str, n: int, frame: tuple[int, ...], dtype: str, build: str,
        stock: bool) -> None:  # fmt: skip
    with connect(url, api_key="secret").writer(name, dtype=dtype, frame_shape=frame) as writer:
        for i in range(n):
            writer.send(np.full(frame, i % 60_000, dtype=dtype))
    expected = (np.arange(n) % 60_000).astype(dtype)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        response = httpx.get(
            f"{url}/api/v1/array/full/{name}",
            headers={"Authorization": "Apikey secret", "Accept": "application/octet-stream"},
            timeout=600,
        )
        times.append(time.perf_counter() - started)
        got = np.frombuffer(response.content, dtype).reshape(n, -1)
        assert (got == expected[:, None]).all(), name
    line = f"{build:>16} {name}: {n} frames of {frame} {dtype}, {got.nbytes / 2**20:.0f} MiB: "
    line += f"GET full {min(times):.2f} s (best of 3)"
    if stock:
        from tiled.client import from_uri

        started = time.perf_counter()
        assert (from_uri(url, api_key="secret")[name].read().reshape(n, -1)[:, 0] == expected).all()
        line += f", stock client read() {time.perf_counter() - started:.2f} s"
    print(line, flush=True)


if __name__ == "__main__":
    main()
