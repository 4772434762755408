"""Process side of the bench scripts: free loopback ports, a private ``redis-server``, the
targets (ferrotile / Tiled servers and the two reference relays), and /proc CPU and RSS of a
server's process tree.

Every process started here is recorded in ``STARTED`` and stopped by :func:`stop_all` (SIGINT,
then SIGKILL of the process group it was started in, by pid), which the bench calls in a
``finally``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import protocol

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
API_KEY = "secret"
ROOT = Path(__file__).resolve().parent.parent
FERROTILE_PYTHON = ROOT / ".venv" / "bin" / "python"
GRANIAN = ROOT / ".venv" / "bin" / "granian"

STARTED: list[subprocess.Popen[bytes]] = []
"""Every process started by this module that has not been stopped yet."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of these processes (all threads; exited children are not counted)."""
    total = 0.0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return total


def unix_listeners(pids: list[int]) -> list[str]:
    """Paths of the Unix sockets these processes listen on (their descriptors' socket inodes,
    matched in /proc/net/unix; flag 0x10000 = listening)."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    paths = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 8 and fields[6] in inodes and int(fields[3], 16) & 0x10000:
                paths.append(fields[7])
    return paths


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    STARTED.append(process)
    return process


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGINT, then SIGKILL of the process group the process leads (started by us)."""
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, OSError):
            pass
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)  # its own session: workers it left behind
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    if process in STARTED:
        STARTED.remove(process)


def stop_all() -> None:
    for process in list(STARTED):
        stop(process, timeout=5)


@dataclass
class Redis:
    """A private ``redis-server`` on a free loopback port, no persistence."""

    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-redis-")))
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        command = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.directory), "--maxclients", "20000",
        ]  # fmt: skip
        self.process = _spawn(command, self.directory / "redis.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def restart(self) -> None:
        """Stop it (nothing is persisted) and start a new one on the same port."""
        if self.process is not None:
            stop(self.process, timeout=3)
        self.start()

    def close(self) -> None:
        if self.process is not None:
            stop(self.process, timeout=3)
        shutil.rmtree(self.directory, ignore_errors=True)


TARGETS = {
    # name: (server, cache, workers)
    "ferrotile-memory": ("ferrotile", "memory", 1),
    "ferrotile-redis": ("ferrotile", "redis", 1),
    "ferrotile-redis-2w": ("ferrotile", "redis", 2),
    "tiled": ("tiled", "memory", 1),
    "tiled-redis": ("tiled", "redis", 1),
    # The reference relays (the floor): PUT body / push message -> every subscriber, as is.
    "granian-relay": ("granian-relay", "memory", 1),
    "rust-relay": ("rust-relay", "memory", 1),
}
RELAYS = ("granian-relay", "rust-relay")


def script_parser(doc: str | None, targets: str) -> argparse.ArgumentParser:
    """The parser of a bench script that runs targets: its docstring as help, the protocol's
    ``--quick`` and ``--json``, and ``--targets`` (comma-separated, default ``targets``)."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    protocol.add_arguments(parser)
    parser.add_argument("--targets", default=targets,
                        help=f"comma-separated, from: {', '.join(TARGETS)}")  # fmt: skip
    return parser


@dataclass
class Target:
    name: str
    logdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    redis: Redis | None = None
    command: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # more `serve` options (e.g. retention)

    @property
    def kind(self) -> str:
        return TARGETS[self.name][0]

    @property
    def workers(self) -> int:
        return TARGETS[self.name][2]

    @property
    def relay(self) -> bool:
        """A reference relay: no auth, no schema message, each message is the frame as is."""
        return self.kind in RELAYS

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        server, cache, workers = TARGETS[self.name]
        extra: list[str] = []
        if cache == "redis":
            self.redis = Redis()
            self.redis.start()
            extra = ["--cache", f"redis://127.0.0.1:{self.redis.port}/0"]
        if workers > 1:
            extra += ["--workers", str(workers)]
        common = ["serve", "catalog", "--temp", "--api-key", API_KEY, "--port", str(self.port)]
        extra += self.extra
        if server == "ferrotile":
            self.command = [str(FERROTILE_PYTHON), "-m", "ferrotile", *common, *extra]
        elif server == "granian-relay":
            self.command = [
                str(GRANIAN), "--interface", "asgi", "--workers", "1", "--host", "127.0.0.1",
                "--port", str(self.port), "--working-dir", str(ROOT / "bench"),
                "--log-level", "warning", "granian_relay:app",
            ]  # fmt: skip
        elif server == "rust-relay":
            self.command = [str(protocol.rust_binary("ferrotile-relay")), str(self.port)]
        else:
            self.command = [str(protocol.tiled_executable()), *common, *extra]
        self.process = _spawn(self.command, self.logdir / f"{self.name}.log")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.logdir / self.name}.log")
            try:
                if httpx.get(f"{self.http}/healthz", timeout=1).status_code == 200:
                    time.sleep(0.5 if workers == 1 else 2.0)  # let every worker come up
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become healthy")

    def server_pids(self) -> list[int]:
        return tree_pids(self.process.pid) if self.process is not None else []

    def all_pids(self) -> list[int]:
        pids = self.server_pids()
        if self.redis is not None and self.redis.process is not None:
            pids.append(self.redis.process.pid)
        return pids

    def control_socket(self) -> Path | None:
        """The Unix socket of the Granian app behind ferrotile's edge (``control.sock`` in a
        private directory, the first one if there are several workers), found in /proc."""
        found = [p for p in unix_listeners(self.server_pids()) if p.endswith("/control.sock")]
        return Path(sorted(found)[0]) if found else None

    def cpu(self) -> float:
        """Server CPU seconds so far: the server's process tree plus its redis-server."""
        return cpu_seconds(self.all_pids())

    def rss(self) -> int:
        """RSS of the server's process tree (redis not included)."""
        return rss_bytes(self.server_pids())

    def redis_rss(self) -> int:
        return rss_bytes([self.redis.process.pid]) if self.redis and self.redis.process else 0

    def flushall(self) -> None:
        """FLUSHALL on the target's private Redis (G9: the store loses its history)."""
        assert self.redis is not None
        with socket.create_connection(("127.0.0.1", self.redis.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            if not sock.recv(64).startswith(b"+OK"):
                raise RuntimeError("FLUSHALL failed")

    def close(self) -> None:
        if self.process is not None:
            stop(self.process)
        if self.redis is not None:
            self.redis.close()


def run_targets(
    targets: str, prefix: str, measure: Callable[[Target], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Start each target of a ``--targets`` value in turn (logs in a new temporary directory
    named ``prefix...``), ``measure`` it, stop it; every process is stopped on error too."""
    logdir = Path(tempfile.mkdtemp(prefix=prefix))
    rows: list[dict[str, Any]] = []
    try:
        for name in [name.strip() for name in targets.split(",") if name.strip()]:
            target = Target(name, logdir)
            try:
                target.start()
                rows += measure(target)
            finally:
                target.close()
    finally:
        stop_all()
    return rows
