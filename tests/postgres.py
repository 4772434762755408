"""A private PostgreSQL server for tests: ``initdb`` into a temporary directory and ``pg_ctl``
on a free loopback port (never the machine's own PostgreSQL). Debian's binaries are used; the
Makefile installs them when missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port


def find_bindir() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL binaries not found; run `make build` (installs postgresql)")


def _as_postgres_user() -> list[str]:
    # initdb and postgres refuse to run as root; Debian's package creates the `postgres` user.
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    datadir: Path
    port: int

    def uri(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        return subprocess.run(
            [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
             "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip

    def new_database(self) -> str:
        """Create an empty database; returns its URI."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}")
        return self.uri(name)

    def stop(self) -> None:
        subprocess.run(
            [*_as_postgres_user(), str(self.bindir / "pg_ctl"), "-D", str(self.datadir),
             "-m", "immediate", "-w", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> PostgresServer:
    """Start a server in a new temporary directory (outside pytest's, which is private to
    root while the server runs as ``postgres``); :meth:`PostgresServer.stop` removes it."""
    bindir = find_bindir()
    root = Path(tempfile.mkdtemp(prefix="ferrotile-pg-"))
    datadir, sockets = root / "pgdata", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    runner = _as_postgres_user()
    subprocess.run(
        [*runner, str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres",
         "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = free_port()
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    subprocess.run(
        [*runner, str(bindir / "pg_ctl"), "-D", str(datadir), "-o", options,
         "-l", str(root / "postgres.log"), "-w", "start"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return PostgresServer(bindir, root, datadir, port)
