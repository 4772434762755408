"""Startup guards for several ``ferrotile`` processes serving one catalog.

Several processes behave as one server only if they share the streaming cache (Redis), the
catalog and the data directory. Two cheap checks, run by ``ferrotile serve`` before any worker
starts, refuse the combinations that would silently diverge:

* **Catalog lock.** The process holds a lock on its catalog for its lifetime: an exclusive one
  with the in-process hub (``--cache memory``/``none``: nobody else may serve this catalog, since
  their writes would never reach our subscribers nor evict our caches), a shared one with Redis.
  SQLite: ``flock`` on ``<catalog>.ferrotile-lock`` next to the database (same host);
  PostgreSQL: a session advisory lock on a connection the process keeps open.
* **Redis membership.** Processes streaming through one Redis database announce themselves in
  it (``ferrotile:members:<id>``: host, catalog, data directory, table storage) with a
  :data:`MEMBER_TTL` heartbeat. A process whose catalog or storage cannot be the same as a live
  member's (another catalog URI, SQLite on another host, another data directory) refuses to
  start, naming the member. It announces first and checks second, so two incompatible
  processes starting at once both refuse.

These are guards against configuration mistakes, not a consensus protocol: a lock is lost
with its PostgreSQL connection, and a killed member's record stays until its TTL runs out.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import socket
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from ferrotile.catalog.uri import parse_catalog_uri
from ferrotile.config import Settings
from ferrotile.errors import FerrotileError
from ferrotile.streaming.redis_url import redis_client

#: Seconds a member record lives without a heartbeat; it is refreshed every third of that.
MEMBER_TTL = 15
#: Redis key prefix of member records (the streams' own prefix, so one Redis database holds
#: one deployment's streams and members).
MEMBER_PREFIX = "ferrotile:members:"
#: PostgreSQL advisory lock key (exclusive: in-process hub; shared: Redis) = "ftserve".
CATALOG_LOCK = 0x66747365_727665


class ClusterError(FerrotileError):
    """This process cannot join the processes already serving the catalog or the Redis."""


@dataclass(frozen=True)
class Member:
    """What a process tells the others about itself."""

    id: str
    host: str
    pid: int
    port: int
    catalog: str
    backend: str
    data: str
    tables: str

    @classmethod
    def of(cls, settings: Settings) -> Member:
        location = parse_catalog_uri(settings.catalog_uri)
        tables = settings.sql_storage or ""
        if "@" in tables:  # never announce a password
            scheme, _, rest = tables.partition("://")
            tables = f"{scheme}://{rest.rpartition('@')[2]}"
        return cls(
            id=uuid.uuid4().hex,
            host=socket.gethostname(),
            pid=os.getpid(),
            port=settings.port,
            catalog=location.display,
            backend=location.backend,
            data=str(settings.writable[0]) if settings.writable else "",
            tables=tables,
        )

    def conflict(self, other: Member) -> str | None:
        """Why ``self`` cannot serve alongside ``other`` (None: it can)."""
        where = f"process {other.pid} on host {other.host!r} (port {other.port})"
        if other.catalog != self.catalog:
            return (
                f"{where} shares this Redis but serves catalog {other.catalog}, not "
                f"{self.catalog}: processes sharing Redis must share the catalog (give each "
                "deployment its own Redis database, e.g. redis://HOST:6379/1)"
            )
        if self.backend == "sqlite" and other.host != self.host:
            return (
                f"{where} serves the SQLite catalog {self.catalog} on another host: SQLite "
                "cannot be shared between hosts or containers; use a PostgreSQL catalog"
            )
        if other.data != self.data:
            return (
                f"{where} writes data under {other.data or '(nothing)'}, this process under "
                f"{self.data or '(nothing)'}: use the same shared directory (-w) everywhere"
            )
        if other.tables != self.tables or (
            self.tables.startswith("sqlite:") and other.host != self.host
        ):
            return (
                f"{where} stores appendable tables in {other.tables}, this process in "
                f"{self.tables}: use one shared table storage (-w postgresql://...)"
            )
        return None


class Membership:
    """This process's record in Redis, refreshed by a daemon thread until :meth:`leave`."""

    def __init__(self, url: str, member: Member) -> None:
        self.member = member
        self._key = MEMBER_PREFIX + member.id
        self._client = redis_client(url)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _announce(self) -> None:
        self._client.set(self._key, orjson.dumps(asdict(self.member)), ex=MEMBER_TTL)

    def others(self) -> list[Member]:
        keys = [k for k in self._client.scan_iter(f"{MEMBER_PREFIX}*", count=1000)]
        records = self._client.mget(keys) if keys else []
        found = []
        for raw in records:
            if raw is None:
                continue  # expired between SCAN and MGET
            with contextlib.suppress(ValueError, TypeError):
                member = Member(**orjson.loads(raw))
                if member.id != self.member.id:
                    found.append(member)
        return found

    def join(self) -> list[Member]:
        """Announce, then check every live member; return them.

        Raises
        ------
        ClusterError
            A live member is incompatible (this process's record is withdrawn).
        """
        import redis

        try:
            self._announce()
            others = self.others()
        except redis.RedisError as exc:
            raise ClusterError(f"Cannot announce this process in Redis: {exc}") from None
        for other in others:
            reason = self.member.conflict(other)
            if reason is not None:
                self.leave()
                raise ClusterError(f"Refusing to start: {reason}")
        self._thread = threading.Thread(target=self._beat, name="ferrotile-member", daemon=True)
        self._thread.start()
        atexit.register(self.leave)
        return others

    def _beat(self) -> None:
        import redis

        while not self._stop.wait(MEMBER_TTL / 3):
            with contextlib.suppress(redis.RedisError):  # Redis away: retried next beat
                self._announce()

    def leave(self) -> None:
        import redis

        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            self._client.delete(self._key)
        self._client.close()


class CatalogLock:
    """Exclusive (in-process hub) or shared (Redis) claim on the catalog, held until exit."""

    def __init__(self, settings: Settings) -> None:
        self.exclusive = not settings.redis
        self.location = parse_catalog_uri(settings.catalog_uri)
        self._handle: Any = None

    def acquire(self) -> None:
        """Raises :class:`ClusterError` if the catalog is served in an incompatible mode."""
        if self.location.backend == "sqlite":
            if self.location.path == ":memory:":
                return
            self._flock(Path(self.location.path + ".ferrotile-lock"))
        else:
            self._advisory_lock()
        atexit.register(self.release)

    def _refusal(self) -> ClusterError:
        if self.exclusive:
            return ClusterError(
                f"Another ferrotile process already serves the catalog {self.location.display}. "
                "Several processes need a shared streaming cache: start every one of them "
                "with --cache redis://HOST:PORT"
            )
        return ClusterError(
            f"Another ferrotile process serves the catalog {self.location.display} with the "
            "in-process hub (--cache memory or none); its subscribers would miss this "
            "process's writes. Restart it with the same --cache redis://... as this one"
        )

    def _flock(self, path: Path) -> None:
        try:
            handle = path.open("a")
        except OSError as exc:
            raise ClusterError(f"Cannot create the catalog lock {path}: {exc.strerror}") from None
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise self._refusal() from None
        self._handle = handle

    def _advisory_lock(self) -> None:
        from ferrotile.catalog.postgres import connect_postgresql

        connection = connect_postgresql(self.location)
        function = "pg_try_advisory_lock" if self.exclusive else "pg_try_advisory_lock_shared"
        row = connection.execute(f"SELECT {function}(%s)", (CATALOG_LOCK,)).fetchone()
        if not row or not row[0]:
            connection.close()
            raise self._refusal()
        self._handle = connection

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.close()


def guard(settings: Settings) -> None:
    """Take the catalog lock and, with Redis, join the members (see the module docstring)."""
    CatalogLock(settings).acquire()
    if settings.redis:
        Membership(settings.cache, Member.of(settings)).join()
