"""How a :class:`~ferrotile.client.writer.Writer`'s frames reach the server: the push WebSocket
of ferrotile, or one HTTP ``PATCH`` per message where there is none (stock Tiled)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from ferrotile.client.rest import Http, detail_of, handshake_refusal


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
    """``WS /api/v1/stream/push/{path}``: binary messages pipelined, cumulative JSON acks."""

    def __init__(self, ws_url: str, path: str, headers: dict[str, str], persist: bool) -> None:
        query = "persist=true" if persist else "persist=false"
        url = f"{ws_url}/api/v1/stream/push/{path}?{query}"
        try:
            self.socket: ClientConnection = ws_connect(
                url,
                additional_headers=headers,
                max_size=2**20,
                compression=None,  # frames are mostly incompressible; the edge never accepts it
                open_timeout=30,
                close_timeout=10,
            )
        except (OSError, InvalidHandshake, TimeoutError) as error:
            raise handshake_refusal(error, f"push to {path}") from error

    def send(self, data: memoryview, frames: int) -> None:
        try:
            self.socket.send(data)
        except ConnectionClosed as error:
            raise Lost(str(error)) from error

    def receive(self, block: bool) -> Ack | Refusal | None:
        try:
            message = self.socket.recv(timeout=None if block else 0)
        except TimeoutError:
            return None
        except ConnectionClosed as error:
            raise Lost(str(error)) from error
        answer = json.loads(message)
        if "error" in answer:
            return Refusal(answer["frame"], answer["status"], answer["error"])
        return Ack(answer["frames"], answer["sequence"])

    def close(self) -> None:
        self.socket.close()


class PatchTransport:
    """Stock Tiled: each message is ``PATCH /array/full/{path}?offset=n&shape=...&extend=true``
    (persist) and is acknowledged by its answer; the stream sequence is not known."""

    def __init__(
        self, http: Http, path: str, frame_shape: tuple[int, ...], length: int, persist: bool
    ) -> None:
        self.http = http
        self.path = path
        self.frame_shape = frame_shape
        self.length = length  # frames stored (or, stream-only, numbered) so far
        self.persist = persist
        self.frames = 0
        self.answer: Ack | Refusal | None = None

    def send(self, data: memoryview, frames: int) -> None:
        shape = ",".join(str(n) for n in (frames, *self.frame_shape))
        params = {"offset": str(self.length), "shape": shape}
        params.update({"extend": "true"} if self.persist else {"persist": "false"})
        self.frames += 1
        try:
            response = self.http.client.patch(
                f"/array/full/{self.path}",
                params=params,
                content=bytes(data),  # httpx takes bytes, not any buffer
                headers={"Content-Type": "application/octet-stream"},
            )
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
