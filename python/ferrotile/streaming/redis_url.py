"""Redis cache URLs (``redis://``, ``rediss://``): validation, redaction and a reachability probe.

The probe runs in the CLI process before any worker starts, so that an unreachable Redis is
reported once, as one line. It speaks just enough RESP (``AUTH``, ``SELECT``, ``PING``) to need
no Redis client library; the data plane uses the Rust client of ``ferrotile._core``.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ferrotile.errors import FerrotileError

SCHEMES = ("redis", "rediss")
DEFAULT_PORT = 6379


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


def is_redis_url(value: str) -> bool:
    return value.split("://", 1)[0].lower() in SCHEMES and "://" in value


def parse_redis_url(url: str) -> RedisLocation:
    """Parse ``redis[s]://[[user]:password@]host[:port][/db]``.

    Raises
    ------
    RedisUrlError
        With a message that never contains the password.
    """
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


def ping(location: RedisLocation, timeout: float = 5.0) -> None:
    """Connect, authenticate, select the database and ``PING``; raise :class:`RedisUrlError`."""
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
            line = reader.readline()
            if not line:
                raise RedisUrlError(f"Redis at {where} closed the connection")
            if line.startswith(b"-"):
                message = line[1:].decode(errors="replace").strip()
                raise RedisUrlError(f"Redis at {where} refused {command[0]}: {message}")
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise RedisUrlError(f"Redis at {where} is unreachable: {reason}") from None
    finally:
        sock.close()
