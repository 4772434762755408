"""A private Redis server for tests: ``redis-server`` on a free loopback port, no persistence
(never the machine's own Redis). The Makefile's ``system-deps`` installs the binary when missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port

BINARY = "/usr/bin/redis-server"


def find_binary() -> str:
    if Path(BINARY).exists():
        return BINARY
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server not found; run `make system-deps` (installs it)")
    return found


@dataclass
class RedisServer:
    """One ``redis-server`` process; :meth:`stop` and :meth:`start` again keep the port."""

    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="redis-")))
    process: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()
    """More arguments, e.g. ``("--replicaof", host, port)``."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        command = [
            find_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.directory), *self.args,
        ]  # fmt: skip
        self._run(command, timeout)

    def _run(self, command: list[str], timeout: float) -> None:
        """Start ``command`` and wait until the server answers PING."""
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited: {(self.directory / 'redis.log').read_text()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def stop(self) -> None:
        """Kill the server (as a crash would: no clean shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start() -> RedisServer:
    server = RedisServer()
    server.start()
    return server


@dataclass
class Sentinel(RedisServer):
    """One Redis Sentinel (``redis-server CONF --sentinel``) monitoring ``master_port`` as
    ``name``, with quorum 1 and a 1 s down-after: a killed master is failed over in seconds."""

    master_port: int = 0
    name: str = "ferrotile"

    def start(self, timeout: float = 10.0) -> None:
        config = self.directory / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor {self.name} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {self.name} 1000\n"
            f"sentinel failover-timeout {self.name} 10000\n"
        )
        self._run([find_binary(), str(config), "--sentinel"], timeout)
