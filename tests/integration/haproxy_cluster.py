"""A loopback deployment for tests: Debian's ``haproxy`` in front of ferrotile processes started
with ``ferrotile serve config`` files, sharing a private Redis, PostgreSQL and data directory.

The HAProxy configuration is deploy/haproxy.cfg's, with loopback servers instead of Docker's
DNS and faster health checks.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.conftest import API_KEY, free_port

HAPROXY = "/usr/sbin/haproxy"
DEPLOY_CFG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"


def haproxy_binary() -> str | None:
    return HAPROXY if Path(HAPROXY).exists() else shutil.which("haproxy")


def wait_healthy(url: str, process: subprocess.Popen[bytes] | None, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy:\n{log.read_text()}")


@dataclass
class Node:
    """One ``ferrotile serve config`` process."""

    name: str
    config: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ferrotile", "serve", "config", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        wait_healthy(f"{self.url}/healthz", self.process, self.log)

    def kill(self) -> None:
        """SIGKILL the Granian main process and its worker (as a crashed container)."""
        assert self.process is not None
        children = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        self.process.kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                import os

                os.kill(int(pid), signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Cluster:
    root: Path
    nodes: list[Node] = field(default_factory=list)
    haproxy: subprocess.Popen[bytes] | None = None
    port: int = 0
    stats_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_status(self) -> dict[str, str]:
        """HAProxy's view of each server (``UP``, ``DOWN``, ...), from its CSV stats."""
        url = f"http://127.0.0.1:{self.stats_port}/stats;csv"
        with urllib.request.urlopen(url, timeout=2) as response:
            rows = csv.DictReader(io.StringIO(response.read().decode().lstrip("# ")))
            return {r["svname"]: r["status"] for r in rows if r["pxname"] == "ferrotile"}

    def wait_status(self, name: str, status: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server_status().get(name, "").startswith(status):
                return
            time.sleep(0.1)
        raise AssertionError(f"HAProxy never saw {name} {status}: {self.server_status()}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            try:
                self.haproxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()


def write_config(path: Path, **values: object) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def loopback_haproxy_cfg(deploy_cfg: str, port: int, stats_port: int, nodes: list[Node]) -> str:
    """deploy/haproxy.cfg with loopback binds and servers, faster checks, no DNS, no log."""
    lines = []
    skip = False
    for line in deploy_cfg.splitlines():
        stripped = line.strip()
        if stripped.startswith("resolvers "):
            skip = True
            continue
        if skip and stripped and not line.startswith(" "):
            skip = False
        if stripped.startswith("server-template"):  # every backend gets the loopback servers
            lines += [f"    server {n.name} 127.0.0.1:{n.port}" for n in nodes]
            continue
        if skip or stripped.startswith("log "):
            continue
        if stripped == "bind :8000":
            line = f"    bind 127.0.0.1:{port}"
        elif stripped == "bind :8404":
            line = f"    bind 127.0.0.1:{stats_port}"
        elif stripped.startswith("maxconn"):
            line = "    maxconn 1000"  # within a test runner's file-descriptor limit
        elif stripped.startswith("default-server"):
            line = line.replace("inter 1s", "inter 200ms")
        lines.append(line)
    return "\n".join(lines) + "\n"


def start_cluster(
    root: Path, *, redis_url: str, catalog: str, tables: str, count: int = 2
) -> Cluster:
    cluster = Cluster(root)
    data = root / "data"
    try:
        for i in range(count):
            name = f"p{i + 1}"
            port = free_port()
            config = write_config(
                root / f"{name}.yml",
                database=catalog, init=True, write=[str(data), tables], cache=redis_url,
                api_key=API_KEY, port=port, host="127.0.0.1", access_log=True,
            )  # fmt: skip
            node = Node(name, config, port, root / f"{name}.log")
            node.start()
            cluster.nodes.append(node)
        cluster.port, cluster.stats_port = free_port(), free_port()
        cfg = root / "haproxy.cfg"
        cfg.write_text(
            loopback_haproxy_cfg(
                DEPLOY_CFG.read_text(), cluster.port, cluster.stats_port, cluster.nodes
            )
        )
        binary = haproxy_binary()
        assert binary is not None
        log = root / "haproxy.log"
        cluster.haproxy = subprocess.Popen(
            [binary, "-db", "-f", str(cfg)], stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        wait_healthy(f"{cluster.url}/healthz", cluster.haproxy, log)
        for node in cluster.nodes:
            cluster.wait_status(node.name, "UP")
    except BaseException:
        cluster.stop()
        raise
    return cluster
