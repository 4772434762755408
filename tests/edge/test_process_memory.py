"""The server's processes run without transparent huge pages (rust/src/edge/pages.rs): a frame
must never wait while a 2 MiB page is found and zeroed; on AMD processors they copy without
``rep movsb`` (ferrotile/memcpy_tuning.py). An embedded SimpleServer leaves the process it runs
in (its user's) as it was."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ferrotile.memcpy_tuning import THRESHOLD_TUNABLE, amd_processor
from ferrotile.server import SimpleServer
from tests.conftest import RunningServer


def edge_processes(server: RunningServer) -> list[int]:
    """The processes that run an edge: the server itself, or with ``--workers N`` the worker
    processes it spawned."""
    parent = server.process.pid
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    workers = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return workers or [parent]


def thp_enabled(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("THP_enabled:"):
            return line.split()[1]
    raise AssertionError(f"no THP_enabled in /proc/{pid}/status")


def test_edge_processes_do_not_use_transparent_huge_pages(edge_server: RunningServer) -> None:
    pids = edge_processes(edge_server)
    assert len(pids) in (1, 2)
    # The server answers once one worker's edge is up; another may still be starting.
    deadline = time.monotonic() + 30
    while True:
        states = {pid: thp_enabled(pid) for pid in pids}
        if set(states.values()) == {"0"} or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert states == dict.fromkeys(pids, "0")


def tunables(pid: int) -> str:
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if entry.startswith(b"GLIBC_TUNABLES="):
            return entry.split(b"=", 1)[1].decode()
    return ""


@pytest.mark.skipif(not amd_processor(), reason="the copies are tuned on AMD processors only")
def test_edge_processes_copy_without_rep_movsb(edge_server: RunningServer) -> None:
    pids = edge_processes(edge_server)
    assert {pid: tunables(pid) for pid in pids} == dict.fromkeys(
        pids, f"{THRESHOLD_TUNABLE}={1 << 62}"
    )


def test_simple_server_leaves_its_host_process_alone() -> None:
    before = thp_enabled(os.getpid())
    with SimpleServer() as server:
        assert server.port > 0
        assert thp_enabled(os.getpid()) == before
