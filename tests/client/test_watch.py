"""``ferrotile watch``: a line per stream, exit after ``--count`` frames, errors in one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from ferrotile.client import connect
from tests.conftest import RunningServer

WATCH = [sys.executable, "-m", "ferrotile", "watch"]


def test_watch_count_exits_after_n_frames_of_every_stream(
    hub_server: RunningServer, key: str
) -> None:
    paths = [f"{key}a", f"{key}b"]
    with connect(hub_server.url, api_key=hub_server.api_key) as client:
        writers = [client.writer(p, dtype="<u2", frame_shape=(64, 64)) for p in paths]
        for writer in writers:
            for i in range(7):
                writer.send(np.full((64, 64), i, dtype="<u2"))
            writer.flush()
        # Replayed from the start: 7 frames each are there, 5 are asked for.
        command = [*WATCH, hub_server.url, *paths, "--start", "0", "--count", "5"]
        done = subprocess.run(
            [*command, "--api-key", hub_server.api_key, "--interval", "0.2"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        for writer in writers:
            writer.close()
    assert done.returncode == 0, done.stderr
    last = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert set(last) == set(paths)
    for path in paths:
        words = last[path].split()
        assert words[1:3] == ["5", "frames"]
        assert "gaps 0" in last[path] and last[path].endswith("5/5")


def test_watch_errors_are_one_line(hub_server: RunningServer, key: str) -> None:
    for args, message in (
        ([key, "--api-key", hub_server.api_key], f"subscribe to {key}: 404"),
        ([key, "--api-key", "wrong"], f"subscribe to {key}: 401"),
        ([key, "--count", "0"], "--count must be at least 1"),
    ):
        done = subprocess.run(
            [*WATCH, hub_server.url, *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1
        assert done.stderr.startswith(f"ferrotile: error: {message}"), done.stderr
        assert "Traceback" not in done.stderr
