"""Redis cache URLs (``redis://``, ``rediss://``, ``redis+sentinel://``): validation, redaction
and a reachability probe.

``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER[/DB]`` names Sentinels
(port 26379 by default) that monitor the master ``MASTER``; the credentials and the database are
the master's. Whoever connects asks the Sentinels for the master, again after every loss, so a
failover is followed (the Rust client of ``ferrotile._core`` and :func:`redis_client`).

The probe runs in the CLI process before any worker starts, so that an unreachable Redis is
reported once, as one line. It speaks just enough RESP (``SENTINEL``, ``AUTH``, ``SELECT``,
``PING``) to need no Redis client library.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ferrotile.errors import FerrotileError

SENTINEL_SCHEME = "redis+sentinel"
SCHEMES = ("redis", "rediss", SENTINEL_SCHEME)
DEFAULT_PORT = 6379
SENTINEL_PORT = 26379


class RedisUrlError(FerrotileError, ValueError):
    """A ``--cache`` Redis URL is malformed, or Redis cannot be reached with it."""


@dataclass(frozen=True)
class RedisLocation:
    """The parts of a Redis URL. ``password`` is never part of :attr:`redacted`."""

    tls: bool
    host: str
    port: int
    db: int
    username: str | None
    password: str | None

    @property
    def redacted(self) -> str:
        """The URL with any password replaced by ``***``, safe to print and log."""
        scheme = "rediss" if self.tls else "redis"
        user = self.username or ""
        auth = f"{user}:***@" if self.password is not None else (f"{user}@" if user else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{auth}{host}:{self.port}/{self.db}"


@dataclass(frozen=True)
class SentinelLocation:
    """The parts of a ``redis+sentinel://`` URL; ``master`` is the name Sentinels monitor."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None

    @property
    def redacted(self) -> str:
        user = self.username or ""
        auth = f"{user}:***@" if self.password is not None else (f"{user}@" if user else "")
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        return f"{SENTINEL_SCHEME}://{auth}{hosts}/{self.master}/{self.db}"

    def master_location(self, host: str, port: int) -> RedisLocation:
        return RedisLocation(False, host, port, self.db, self.username, self.password)


def is_redis_url(value: str) -> bool:
    return value.split("://", 1)[0].lower() in SCHEMES and "://" in value


def parse_redis_url(url: str) -> RedisLocation | SentinelLocation:
    """Parse ``redis[s]://[[user]:password@]host[:port][/db]`` or a ``redis+sentinel://`` URL.

    Raises
    ------
    RedisUrlError
        With a message that never contains the password.
    """
    if url.split("://", 1)[0].lower() == SENTINEL_SCHEME:
        return _parse_sentinel_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise RedisUrlError(f"--cache {_hide(url)}: not a valid Redis URL (bad port?)") from None
    if parts.scheme.lower() not in SCHEMES:
        raise RedisUrlError(f"--cache {_hide(url)}: the scheme must be redis:// or rediss://")
    if not parts.hostname:
        raise RedisUrlError(f"--cache {_hide(url)}: no host, e.g. redis://localhost:6379")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise RedisUrlError(
            f"--cache {_hide(url)}: the path must be a database number, e.g. redis://host:6379/0"
        )
    if parts.query or parts.fragment:
        raise RedisUrlError(f"--cache {_hide(url)}: query parameters are not supported")
    return RedisLocation(
        tls=parts.scheme.lower() == "rediss",
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _parse_sentinel_url(url: str) -> SentinelLocation:
    shown = _hide(url)
    rest = url.split("://", 1)[1]
    authority, _, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if "?" in path or "#" in path:
        raise RedisUrlError(f"--cache {shown}: query parameters are not supported")
    sentinels = []
    for host in hosts.split(","):
        try:
            parts = urlsplit(f"//{host}")
            port = parts.port or SENTINEL_PORT
        except ValueError:
            raise RedisUrlError(f"--cache {shown}: bad Sentinel address {host!r}") from None
        if not parts.hostname:
            raise RedisUrlError(f"--cache {shown}: no Sentinel host, e.g. sentinel1:26379")
        sentinels.append((parts.hostname, port))
    segments = [s for s in path.split("/") if s]
    if not segments or len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise RedisUrlError(
            f"--cache {shown}: the path must be /MASTER[/DB], "
            "e.g. redis+sentinel://sentinel1:26379,sentinel2:26379/mymaster/0"
        )
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    db = int(segments[1]) if len(segments) == 2 else 0
    return SentinelLocation(tuple(sentinels), unquote(segments[0]), db, username, password)


def _hide(url: str) -> str:
    """Hide the password of a URL that may not even parse."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


def _command(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _read_reply(reader: Any) -> Any:
    """One RESP2 reply: str for simple strings, bytes or None for bulk, a list for arrays;
    an error reply raises :class:`_ErrorReply`."""
    line = reader.readline()
    if not line:
        raise OSError("connection closed")
    kind, body = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"-":
        raise _ErrorReply(body.decode(errors="replace"))
    if kind in (b"+", b":"):
        return body.decode(errors="replace")
    if kind == b"$":
        size = int(body)
        return None if size < 0 else reader.read(size + 2)[:size]
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [_read_reply(reader) for _ in range(count)]
    raise OSError(f"unexpected reply {line[:20]!r}")


class _ErrorReply(Exception):
    pass


def ping(location: RedisLocation | SentinelLocation, timeout: float = 5.0) -> None:
    """Connect, authenticate, select the database and ``PING``; raise :class:`RedisUrlError`.

    With Sentinels: the first one that answers names the master, which is then probed.
    """
    if isinstance(location, SentinelLocation):
        location = _ask_sentinels(location, timeout)
    where = location.redacted
    try:
        sock = socket.create_connection((location.host, location.port), timeout=timeout)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise RedisUrlError(f"Redis at {where} is unreachable: {reason}") from None
    try:
        stream: socket.socket = sock
        if location.tls:
            stream = ssl.create_default_context().wrap_socket(sock, server_hostname=location.host)
        commands: list[tuple[str, ...]] = []
        if location.password is not None:
            user = (location.username,) if location.username else ()
            commands.append(("AUTH", *user, location.password))
        if location.db:
            commands.append(("SELECT", str(location.db)))
        commands.append(("PING",))
        reader = stream.makefile("rb")
        for command in commands:
            stream.sendall(_command(*command))
            try:
                _read_reply(reader)
            except _ErrorReply as refused:
                raise RedisUrlError(f"Redis at {where} refused {command[0]}: {refused}") from None
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise RedisUrlError(f"Redis at {where} is unreachable: {reason}") from None
    finally:
        sock.close()


def _ask_sentinels(location: SentinelLocation, timeout: float) -> RedisLocation:
    """The master the first answering Sentinel names; raise :class:`RedisUrlError`."""
    reasons = []
    for host, port in location.sentinels:
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.sendall(_command("SENTINEL", "get-master-addr-by-name", location.master))
                reply = _read_reply(sock.makefile("rb"))
        except (OSError, ValueError, _ErrorReply) as exc:
            reasons.append(f"{host}:{port}: {getattr(exc, 'strerror', None) or exc}")
            continue
        if isinstance(reply, list) and len(reply) == 2 and all(reply):
            return location.master_location(reply[0].decode(), int(reply[1]))
        reasons.append(f"{host}:{port}: does not monitor a master named {location.master!r}")
    raise RedisUrlError(
        f"No Sentinel of {location.redacted} names the master: {'; '.join(reasons)}"
    )


def redis_client(url: str, timeout: float = 5.0) -> Any:
    """A redis-py client of the master a ``--cache`` URL names (one that asks the Sentinels
    again after losing its connection, for ``redis+sentinel://``)."""
    import redis.sentinel

    import redis

    location = parse_redis_url(url)
    if isinstance(location, RedisLocation):
        return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    sentinels = redis.sentinel.Sentinel(
        list(location.sentinels), socket_timeout=timeout, socket_connect_timeout=timeout
    )
    return sentinels.master_for(
        location.master,
        db=location.db,
        username=location.username,
        password=location.password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
