"""How a :class:`~ferrotile.client.writer.Writer`'s frames reach the server: the push WebSocket
of ferrotile, or one HTTP ``PATCH`` per message where there is none (stock Tiled)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Protocol

import httpx

from ferrotile.client.errors import ServerError
from ferrotile.client.frames import BINARY, TEXT, ProtocolError, client_header, mask
from ferrotile.client.handshake import Refused, refusal
from ferrotile.client.rest import Http, NewArray, detail_of
from ferrotile.client.websocket import Closed, WebSocket

OCTET = {"Content-Type": "application/octet-stream"}


@dataclass
class Ack:
    """``frames`` messages of this transport are acknowledged, the last with ``sequence``."""

    frames: int
    sequence: int | None


@dataclass
class Refusal:
    """The server refused message ``frame`` (1-based) of this transport."""

    frame: int
    status: int
    detail: str


class Lost(Exception):
    """The transport's connection ended without a refusal."""


class Transport(Protocol):
    def send(self, data: memoryview, frames: int) -> None: ...

    def receive(self, block: bool) -> Ack | Refusal | None:
        """The next acknowledgement or refusal; None if none is due yet (``block`` False)."""
        ...

    def close(self) -> None: ...


class PushTransport:
    """``WS /api/v1/stream/push/{path}``: binary messages pipelined, cumulative JSON acks.

    Writes are batched as Nagle's algorithm does: a message goes out at once when the server
    has acknowledged everything written (a lone frame waits for nothing); otherwise it joins a
    batch written in one system call when an acknowledgement arrives, when the batch reaches
    ``FLUSH_BYTES``, or before waiting. Acknowledgements are read by a thread (blocked in
    ``recv`` without the GIL), so ``send`` makes no system call for them.
    """

    FLUSH_BYTES = 64 * 1024

    def __init__(self, ws_url: str, path: str, headers: dict[str, str], persist: bool) -> None:
        query = "persist=true" if persist else "persist=false"
        url = f"{ws_url}/api/v1/stream/push/{path}?{query}"
        try:
            self.socket = WebSocket(url, headers, max_size=2**20, timeout=30)
        except (OSError, ConnectionError, Refused) as error:
            raise refusal(error, f"push to {path}") from error
        self._changed = threading.Condition()
        self._batch: list[bytes] = []  # framed messages not written yet
        self._batch_bytes = 0
        self._written = 0  # messages written to the socket
        self._acknowledged = 0  # the server's cumulative count
        self._sequence: int | None = None
        self._reported = 0  # the count the last Ack returned by receive() held
        self._refusal: Refusal | None = None
        self._lost: str | None = None
        self._acks = threading.Thread(target=self._read_acks, name="ferrotile-acks", daemon=True)
        self._acks.start()

    def send(self, data: memoryview, frames: int) -> None:
        key = self.socket.masks.key()
        body = mask(data, key)
        header = client_header(BINARY, len(body), key)
        with self._changed:
            if self._refusal is not None:
                return  # reported by the next receive()
            if self._lost is not None:
                raise Lost(self._lost)
            self._batch += (header, body)
            self._batch_bytes += len(body)
            if self._written == self._acknowledged or self._batch_bytes >= self.FLUSH_BYTES:
                self._write_batch()

    def receive(self, block: bool) -> Ack | Refusal | None:
        with self._changed:
            if block:
                self._write_batch()
                self._changed.wait_for(
                    lambda: (
                        self._acknowledged > self._reported
                        or self._refusal is not None
                        or self._lost is not None
                    )
                )
            if self._acknowledged > self._reported:
                self._reported = self._acknowledged
                return Ack(self._acknowledged, self._sequence)
            if self._refusal is not None:
                return self._refusal
            if self._lost is not None:
                raise Lost(self._lost)
            return None

    def close(self) -> None:
        with self._changed:
            self._write_batch()
        self.socket.close()
        self._acks.join(timeout=10)  # until the server's close (or the connection's end)
        self.socket.shutdown()

    def _write_batch(self) -> None:
        """Writes the batch (the caller holds ``_changed``)."""
        if not self._batch or self._lost is not None:
            return
        batch, count = self._batch, len(self._batch) // 2
        self._batch, self._batch_bytes = [], 0
        try:
            self.socket.write(batch)
        except OSError as error:
            self._lost = f"{type(error).__name__}: {error}"
            self._changed.notify_all()
            return
        self._written += count

    def _read_acks(self) -> None:
        try:
            while True:
                opcode, payload = self.socket.receive()
                if opcode != TEXT:
                    continue
                answer = json.loads(bytes(payload))
                with self._changed:
                    if "error" in answer:
                        self._refusal = Refusal(answer["frame"], answer["status"], answer["error"])
                    else:
                        self._acknowledged = answer["frames"]
                        self._sequence = answer["sequence"]
                        self._write_batch()  # what waited for this acknowledgement
                    self._changed.notify_all()
        except (Closed, ProtocolError, OSError, ValueError) as error:
            with self._changed:
                if self._lost is None:
                    self._lost = str(error) or type(error).__name__
                self._changed.notify_all()


class PatchTransport:
    """Stock Tiled: each message is ``PATCH /array/full/{path}?offset=n&shape=...&extend=true``
    (persist) and is acknowledged by its answer; the stream sequence is not known."""

    def __init__(
        self,
        http: Http,
        path: str,
        frame_shape: tuple[int, ...],
        length: int,
        persist: bool,
        new: NewArray | None,
    ) -> None:
        self.http = http
        self.new = new  # created with the first message
        self.path = path
        self.frame_shape = frame_shape
        self.length = length  # frames stored (or, stream-only, numbered) so far
        self.persist = persist
        self.frames = 0
        self.answer: Ack | Refusal | None = None

    def send(self, data: memoryview, frames: int) -> None:
        self.frames += 1
        body = bytes(data)  # httpx takes bytes, not any buffer
        try:
            if self.new is not None:
                self.new.create(self.http, frames)
                self.new = None
                response = self.http.client.put(
                    f"/array/full/{self.path}", content=body, headers=OCTET
                )
            else:
                shape = ",".join(str(n) for n in (frames, *self.frame_shape))
                params = {"offset": str(self.length), "shape": shape}
                params.update({"extend": "true"} if self.persist else {"persist": "false"})
                response = self.http.client.patch(
                    f"/array/full/{self.path}", params=params, content=body, headers=OCTET
                )
        except ServerError as error:
            self.answer = Refusal(self.frames, error.status, error.detail)
            return
        except httpx.HTTPError as error:
            raise Lost(f"{type(error).__name__}: {error}") from error
        if response.status_code != 200:
            self.answer = Refusal(self.frames, response.status_code, detail_of(response))
            return
        self.length += frames
        self.answer = Ack(self.frames, None)

    def receive(self, block: bool) -> Ack | Refusal | None:
        answer, self.answer = self.answer, None
        return answer

    def close(self) -> None:
        pass
