"""A client WebSocket on a blocking socket the client owns: writes of many frames in one system
call, reads of many frames per ``recv`` (:mod:`ferrotile.client.frames`), pings answered; and
the same reading on an asyncio stream (:class:`AsyncWebSocket`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from typing import Any

from ferrotile.client import handshake
from ferrotile.client.frames import (
    CLOSE,
    PING,
    PONG,
    Masks,
    Reader,
    client_frame,
    close_payload,
    close_reason,
)


class Closed(Exception):
    """The connection ended: the server's close ``code`` and ``reason`` (1006: no close frame)."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code} {reason}".strip())


class WebSocket:
    def __init__(self, url: str, headers: dict[str, str], max_size: int, timeout: float) -> None:
        self.sock, received = handshake.connect(url, headers, timeout)
        self.reader = Reader(max_size, received)
        self.masks = Masks()
        self.tls = isinstance(self.sock, ssl.SSLSocket)
        self._write_lock = threading.Lock()  # frames from two threads never interleave
        self.close_sent = False

    def write(self, parts: list[Any]) -> None:
        """Writes the buffers in order, in as few system calls as the kernel allows."""
        with self._write_lock:
            if self.tls:  # SSL sockets have no sendmsg
                self.sock.sendall(b"".join(parts))
                return
            views = [memoryview(p).cast("B") for p in parts]
            while views:
                sent = self.sock.sendmsg(views[:1024])  # IOV_MAX
                while views and sent >= len(views[0]):
                    sent -= len(views[0])
                    views.pop(0)
                if sent:
                    views[0] = views[0][sent:]

    def send_frame(self, opcode: int, payload: Any) -> None:
        self.write(list(client_frame(opcode, payload, self.masks)))

    def receive(self) -> tuple[int, Any]:
        """The next data message ``(opcode, payload)``; raises :class:`Closed` at the end (the
        server's close is answered)."""
        reader = self.reader
        while True:
            message = reader.next()
            if message is None:
                count = self.sock.recv_into(reader.space())
                if not count:
                    raise Closed(1006, "connection lost")
                reader.filled(count)
                continue
            opcode, payload = message
            if opcode == PING:
                self.send_frame(PONG, payload)
            elif opcode == CLOSE:
                code, reason = close_reason(payload)
                self.close(code if code != 1005 else 1000)
                raise Closed(code, reason)
            elif opcode != PONG:
                return opcode, payload

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Sends a close frame (once); errors of a connection already gone are ignored."""
        if self.close_sent:
            return
        self.close_sent = True
        with contextlib.suppress(OSError):
            self.send_frame(CLOSE, close_payload(code, reason))

    def shutdown(self) -> None:
        """Ends the connection now: a ``receive`` blocked on another thread returns."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class AsyncWebSocket:
    """The asyncio form of :meth:`WebSocket.receive` (subscriptions only: it writes nothing but
    pongs and the close). The stream's reads are copied into the frame buffers once."""

    def __init__(
        self, stream: asyncio.StreamReader, writer: asyncio.StreamWriter, max_size: int
    ) -> None:
        self.stream = stream
        self.writer = writer
        self.reader = Reader(max_size)
        self.masks = Masks()
        self.close_sent = False

    @classmethod
    async def connect(
        cls, url: str, headers: dict[str, str], max_size: int, timeout: float
    ) -> AsyncWebSocket:
        stream, writer, _ = await handshake.connect_async(url, headers, timeout)
        return cls(stream, writer, max_size)

    async def receive(self) -> tuple[int, Any]:
        reader = self.reader
        while True:
            message = reader.next()
            if message is None:
                space = reader.space()
                data = await self.stream.read(len(space))
                if not data:
                    raise Closed(1006, "connection lost")
                space[: len(data)] = data
                reader.filled(len(data))
                continue
            opcode, payload = message
            if opcode == PING:
                self.writer.writelines(client_frame(PONG, payload, self.masks))
            elif opcode == CLOSE:
                code, reason = close_reason(payload)
                await self.close(code if code != 1005 else 1000)
                raise Closed(code, reason)
            elif opcode != PONG:
                return opcode, payload

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.close_sent:
            return
        self.close_sent = True
        with contextlib.suppress(OSError):
            self.writer.writelines(client_frame(CLOSE, close_payload(code, reason), self.masks))
            await self.writer.drain()

    async def shutdown(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
