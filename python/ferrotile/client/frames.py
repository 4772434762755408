"""WebSocket frames (RFC 6455 section 5) as the client writes and reads them: client frames
framed and masked here, so that many can go out in one system call; server frames parsed from
large receive buffers, many per ``recv``, their payloads left in place as views.

A receive buffer is never written twice: a payload handed out (a frame's numpy view) stays valid
for as long as it is referenced; a new buffer is taken when one is full.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

_c_mask: Any
try:  # websockets' C masking (a pass over the frame at memory speed)
    from websockets.speedups import apply_mask as _c_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    _c_mask = None

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# Receive buffers: messages up to this size are read many per recv into a buffer of this size;
# a larger message gets a buffer of its own size (plus room for the next frame's header).
CHUNK = 1 << 20
_HEADROOM = 14
_SPARE = 4 << 20  # a buffer for large frames holds a few of them, or one and at most this
_KEYS = 4096  # masking keys drawn from the OS at once (one getrandom call per 1,024 frames)


def _numpy_mask(data: Any, key: bytes) -> bytes:
    raw = np.frombuffer(data, np.uint8)
    keys = np.frombuffer(key * ((len(raw) + 3) // 4), np.uint8)[: len(raw)]
    return np.bitwise_xor(raw, keys).tobytes()


def mask(data: Any, key: bytes) -> bytes:
    """``data`` (any buffer of bytes) XORed with the 4-byte masking ``key``."""
    return _c_mask(data, key) if _c_mask is not None else _numpy_mask(data, key)


class Masks:
    """Fresh random masking keys, drawn from the OS in bulk."""

    def __init__(self) -> None:
        self._pool = b""
        self._next = 0

    def key(self) -> bytes:
        if self._next >= len(self._pool):
            self._pool, self._next = os.urandom(_KEYS), 0
        key = self._pool[self._next : self._next + 4]
        self._next += 4
        return key


_SHORT = struct.Struct("!BB4s")
_MEDIUM = struct.Struct("!BBH4s")
_LONG = struct.Struct("!BBQ4s")


def client_header(opcode: int, length: int, key: bytes) -> bytes:
    """The header of a final, masked client frame of ``length`` payload bytes."""
    if length < 126:
        return _SHORT.pack(0x80 | opcode, 0x80 | length, key)
    if length < 1 << 16:
        return _MEDIUM.pack(0x80 | opcode, 0xFE, length, key)
    return _LONG.pack(0x80 | opcode, 0xFF, length, key)


def client_frame(opcode: int, payload: Any, masks: Masks) -> tuple[bytes, bytes]:
    """A final client frame: its header and its masked payload (write both, in order)."""
    key = masks.key()
    body = mask(payload, key)
    return client_header(opcode, len(body), key), body


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()[:123]


def close_reason(payload: memoryview) -> tuple[int, str]:
    """(code, reason) of a close frame's payload (1005: no code given)."""
    if len(payload) < 2:
        return 1005, ""
    (code,) = struct.unpack_from("!H", payload)
    return code, bytes(payload[2:]).decode(errors="replace")


class ProtocolError(Exception):
    """The server broke the protocol (or sent a message over the size limit: ``code`` 1009)."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code} {reason}")


class Reader:
    """Server frames parsed from receive buffers: read into :meth:`space` (``recv_into``), call
    :meth:`filled`, then take messages from :meth:`next` until it returns None.

    Messages are ``(opcode, payload)``: data messages whole (fragments joined, a copy),
    control frames as they come; a payload is a read-only view of the receive buffer.
    """

    def __init__(self, max_size: int, received: bytes = b"") -> None:
        self.max_size = max_size
        self._buffer = np.empty(CHUNK, np.uint8)
        self._view = memoryview(self._buffer)  # type: ignore[arg-type]
        self._start = 0  # the first byte not parsed yet
        self._end = 0  # the first byte not received yet
        self._need = 2  # bytes from _start the next frame needs, as far as known
        self._expect = 0  # the size of the last frame: the next is likely the same
        self._fragments: list[bytes] = []
        self._fragmented = 0  # the opcode of the message being reassembled
        self._fragmented_size = 0
        if received:
            space = self.space()
            space[: len(received)] = received
            self.filled(len(received))

    def space(self) -> memoryview:
        """Where to receive next: the free end of the buffer, or of a new one if the frame in
        progress does not fit (its bytes so far are moved there), or if no frame is in progress
        and the free end is smaller than the last frame (none is moved then: frames of a steady
        size are never split between two buffers)."""
        free = len(self._buffer) - self._end
        idle = self._start == self._end
        if (
            self._start + self._need > len(self._buffer)
            or free == 0
            or (idle and free < self._expect)
        ):
            size = max(CHUNK, self._need + _HEADROOM)
            if idle:
                size = max(size, min(4 * self._expect, self._expect + _SPARE))
            fresh = np.empty(size, np.uint8)
            kept = self._end - self._start
            fresh[:kept] = self._buffer[self._start : self._end]
            self._buffer, self._view = fresh, memoryview(fresh)  # type: ignore[arg-type]
            self._start, self._end = 0, kept
        return self._view[self._end :]

    def filled(self, count: int) -> None:
        self._end += count

    def next(self) -> tuple[int, Any] | None:
        """The next complete message or control frame, or None if more bytes are needed."""
        while True:
            start, available = self._start, self._end - self._start
            if available < 2:
                self._need = 2
                return None
            view = self._view
            first, second = view[start], view[start + 1]
            if second & 0x80:
                raise ProtocolError(1002, "the server masked a frame")
            length = second & 0x7F
            head = 2
            if length == 126:
                head = 4
                if available < head:
                    self._need = head
                    return None
                (length,) = struct.unpack_from("!H", view, start + 2)
            elif length == 127:
                head = 10
                if available < head:
                    self._need = head
                    return None
                (length,) = struct.unpack_from("!Q", view, start + 2)
            if length > self.max_size:
                raise ProtocolError(1009, f"a message of {length} bytes is over the limit")
            total = head + length
            if available < total:
                self._need = total
                return None
            self._start = start + total
            self._need = 2
            self._expect = total
            payload = view[start + head : start + total].toreadonly()
            opcode, final = first & 0x0F, first & 0x80
            if opcode >= CLOSE:
                return opcode, payload
            if opcode != CONTINUATION:
                if self._fragments:
                    raise ProtocolError(1002, "a new message inside a fragmented one")
                if final:
                    return opcode, payload
                self._fragmented, self._fragmented_size = opcode, 0
            elif not self._fragments and not self._fragmented:
                raise ProtocolError(1002, "a continuation frame with no message to continue")
            self._fragments.append(bytes(payload))
            self._fragmented_size += length
            if self._fragmented_size > self.max_size:
                raise ProtocolError(1009, "a fragmented message over the limit")
            if final:
                whole = b"".join(self._fragments)
                opcode, self._fragments, self._fragmented = self._fragmented, [], 0
                return opcode, memoryview(whole)
