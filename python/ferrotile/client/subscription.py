"""A subscription to a node's stream, iterated with ``for`` or ``async for``; it reconnects
after a dropped connection and resumes after the last sequence it delivered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

from ferrotile.client.closing import Closing
from ferrotile.client.cursor import Cursor
from ferrotile.client.frames import TEXT, ProtocolError
from ferrotile.client.handshake import Refused, refusal
from ferrotile.client.messages import Message
from ferrotile.client.websocket import AsyncWebSocket, Closed, WebSocket

# Handshake answers worth retrying while reconnecting (the server is starting or overloaded).
_RETRY_STATUS = {502, 503, 504}


def _retryable(error: Exception) -> bool:
    if isinstance(error, Refused):
        return error.status in _RETRY_STATUS
    return isinstance(error, OSError | ConnectionError | TimeoutError)


class Subscription(Closing):
    """Made by :meth:`Client.subscribe`. Yields :class:`Frame`, :class:`Gap` and
    :class:`Event` messages until the stream ends (the writer closed it)."""

    def __init__(
        self,
        cursor: Cursor,
        path: str,
        headers: dict[str, str],
        reconnect_timeout: float,
        max_message_bytes: int,
    ) -> None:
        self.cursor = cursor
        self.path = path
        self.headers = headers
        self.reconnect_timeout = reconnect_timeout
        self.max_message_bytes = max_message_bytes
        self._socket: WebSocket | AsyncWebSocket | None = None
        self._closed = False

    @property
    def last_sequence(self) -> int | None:
        return self.cursor.last

    @property
    def reconnects(self) -> int:
        return self.cursor.reconnects

    @property
    def missed(self) -> int:
        return self.cursor.missed

    def _give_up(self, error: Exception, deadline: float | None) -> bool:
        return deadline is None or not _retryable(error) or time.monotonic() > deadline

    # Synchronous form.

    def _open(self, deadline: float | None) -> WebSocket:
        delay = 0.05
        while True:
            try:
                return WebSocket(self.cursor.url(), self.headers, self.max_message_bytes, 30)
            except (OSError, ConnectionError, Refused) as error:
                if self._give_up(error, deadline):
                    raise refusal(error, f"subscribe to {self.path}") from error
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def __iter__(self) -> Iterator[Message]:
        deadline: float | None = None  # the first connection is not retried
        while not self._closed:
            socket = self._open(deadline)
            self._socket = socket
            if deadline is not None:
                yield self.cursor.reconnected()
            handle = self.cursor.handle
            try:
                while True:
                    opcode, payload = socket.receive()
                    yield from handle(bytes(payload).decode() if opcode == TEXT else payload)
            except Closed as closed:
                code, reason = closed.code, closed.reason
            except ProtocolError as broken:  # e.g. a message over max_message_bytes (1009)
                socket.close(broken.code, broken.reason)
                code, reason = broken.code, broken.reason
            except OSError as error:
                code, reason = 1006, str(error)
            finally:
                socket.close()  # a close frame, unless the server's came first
                socket.shutdown()
            if self._closed or not self.cursor.resumable(code, reason):
                return
            deadline = time.monotonic() + self.reconnect_timeout

    # Asynchronous form (the same steps, awaited).

    async def _aopen(self, deadline: float | None) -> AsyncWebSocket:
        delay = 0.05
        while True:
            try:
                url = self.cursor.url()
                return await AsyncWebSocket.connect(url, self.headers, self.max_message_bytes, 30)
            except (OSError, ConnectionError, Refused, TimeoutError) as error:
                if self._give_up(error, deadline):
                    raise refusal(error, f"subscribe to {self.path}") from error
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def __aiter__(self) -> AsyncIterator[Message]:
        deadline: float | None = None
        while not self._closed:
            socket = await self._aopen(deadline)
            self._socket = socket
            if deadline is not None:
                yield self.cursor.reconnected()
            handle = self.cursor.handle
            try:
                while True:
                    opcode, payload = await socket.receive()
                    for message in handle(bytes(payload).decode() if opcode == TEXT else payload):
                        yield message
            except Closed as closed:
                code, reason = closed.code, closed.reason
            except ProtocolError as broken:
                await socket.close(broken.code, broken.reason)
                code, reason = broken.code, broken.reason
            except OSError as error:
                code, reason = 1006, str(error)
            finally:
                await socket.close()
                await socket.shutdown()
            if self._closed or not self.cursor.resumable(code, reason):
                return
            deadline = time.monotonic() + self.reconnect_timeout

    def close(self) -> None:
        """Stop: the iteration ends at its next message (from any thread, sync form)."""
        self._closed = True
        socket = self._socket
        if isinstance(socket, WebSocket):
            socket.close()
            socket.shutdown()
