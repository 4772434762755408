"""The client's side of a WebSocket handshake (RFC 6455 section 4) over a plain or TLS socket:
the client owns its sockets, so that it can batch its writes and read many frames per system
call (see :mod:`ferrotile.client.frames`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
from urllib.parse import urlsplit

from ferrotile.client.errors import ServerError

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 64 * 1024


class Refused(Exception):
    """The server answered the handshake with an HTTP status other than 101."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}")


def refusal(error: Exception, what: str) -> ServerError:
    """The :class:`ServerError` of a failed handshake: the server's status and ``detail`` if it
    answered, else status 0 and the reason (refused, timed out...)."""
    if isinstance(error, Refused):
        detail = error.body.decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = str(json.loads(detail).get("detail", detail))
        return ServerError(error.status, detail, what)
    return ServerError(0, f"{type(error).__name__}: {error}", what)


def request(url: str, headers: dict[str, str]) -> tuple[str, int, bool, bytes, bytes]:
    """(host, port, tls, the handshake request, the expected ``Sec-WebSocket-Accept``)."""
    parts = urlsplit(url)
    tls = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if tls else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    return host, port, tls, ("\r\n".join(lines) + "\r\n\r\n").encode(), accept


def response(head: bytes, body: bytes, accept: bytes) -> None:
    """Checks the answer's head (status line and headers, without the blank line); raises
    :class:`Refused` (``body``: what followed the head) or ``ConnectionError``."""
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split(" ", 2)[1])
    except (IndexError, ValueError):
        raise ConnectionError(f"not an HTTP answer: {status_line[:80]!r}") from None
    if status != 101:
        raise Refused(status, body)
    fields = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if fields.get("sec-websocket-accept", "").encode() != accept:
        raise ConnectionError("the server's Sec-WebSocket-Accept does not match")


def connect(url: str, headers: dict[str, str], timeout: float) -> tuple[socket.socket, bytes]:
    """A blocking socket past the handshake, and the bytes already read after it."""
    host, port, tls, hello, accept = request(url, headers)
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        sock.sendall(hello)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk or len(received) > _MAX_HEAD:
                raise ConnectionError("the server closed the connection during the handshake")
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        try:
            response(head, rest, accept)
        except Refused as refused:
            refused.body = rest + _rest_of_body(sock, head, rest)
            raise
        sock.settimeout(None)
        return sock, rest
    except BaseException:
        sock.close()
        raise


def _rest_of_body(sock: socket.socket, head: bytes, rest: bytes) -> bytes:
    """The remainder of a refusal's body (by its Content-Length; at most 64 KiB)."""
    length = 0
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = min(int(value), _MAX_HEAD)
    more = b""
    with contextlib.suppress(OSError):
        while len(rest) + len(more) < length:
            chunk = sock.recv(length - len(rest) - len(more))
            if not chunk:
                break
            more += chunk
    return more


async def connect_async(
    url: str, headers: dict[str, str], timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """An asyncio stream past the handshake, and the bytes already read after it."""
    host, port, tls, hello, accept = request(url, headers)
    context = ssl.create_default_context() if tls else None
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, limit=_MAX_HEAD), timeout
    )
    try:
        writer.write(hello)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        head = head[:-4]
        try:
            response(head, b"", accept)
        except Refused as refused:
            refused.body = await _rest_of_body_async(reader, head)
            raise
        return reader, writer, b""
    except asyncio.IncompleteReadError as error:
        writer.close()
        raise ConnectionError("the server closed the connection during the handshake") from error
    except BaseException:
        writer.close()
        raise


async def _rest_of_body_async(reader: asyncio.StreamReader, head: bytes) -> bytes:
    length = 0
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = min(int(value), _MAX_HEAD)
    try:
        return await asyncio.wait_for(reader.readexactly(length), 5)
    except (asyncio.IncompleteReadError, OSError, TimeoutError):
        return b""
