"""Decoding of the msgpack stream envelopes with the payload left in place.

``msgpack.unpackb`` copies a ``bin`` value into a new ``bytes``; for detector frames that copy is
the largest cost of receiving. So the top-level map is walked here: every value but the payload
is decoded by msgpack from its own slice, the payload becomes a ``memoryview`` of the received
message (no copy).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from ferrotile.client.errors import ClientError

# Bytes after the type byte, for types of fixed size (nil, bool, numbers, fixext).
_FIXED = {
    0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17,
}  # fmt: skip
# Types followed by a big-endian length of 1, 2 or 4 bytes, then that many bytes (ext: one more,
# its type code).
_SIZED = {
    0xC4: (">B", 0), 0xC5: (">H", 0), 0xC6: (">I", 0),  # bin
    0xC7: (">B", 1), 0xC8: (">H", 1), 0xC9: (">I", 1),  # ext
    0xD9: (">B", 0), 0xDA: (">H", 0), 0xDB: (">I", 0),  # str
}  # fmt: skip
# Containers with a big-endian count: (count format, items per count).
_CONTAINERS = {0xDC: (">H", 1), 0xDD: (">I", 1), 0xDE: (">H", 2), 0xDF: (">I", 2)}


class BadEnvelope(ClientError):
    """A binary message that is not a msgpack map."""


def _skip(buffer: memoryview, position: int) -> int:
    """The offset just past the msgpack value at ``position``."""
    remaining = 1
    try:
        while remaining:
            remaining -= 1
            head = buffer[position]
            position += 1
            if head <= 0x7F or head >= 0xE0:
                continue
            if 0x80 <= head <= 0x8F:
                remaining += 2 * (head & 0x0F)
            elif 0x90 <= head <= 0x9F:
                remaining += head & 0x0F
            elif 0xA0 <= head <= 0xBF:
                position += head & 0x1F
            elif head in _FIXED:
                position += _FIXED[head]
            elif head in _SIZED:
                form, extra = _SIZED[head]
                (size,) = struct.unpack_from(form, buffer, position)
                position += struct.calcsize(form) + extra + size
            elif head in _CONTAINERS:
                form, per = _CONTAINERS[head]
                (count,) = struct.unpack_from(form, buffer, position)
                position += struct.calcsize(form)
                remaining += per * count
            else:
                raise BadEnvelope(f"invalid msgpack type byte 0x{head:02x}")
    except (IndexError, struct.error) as error:
        raise BadEnvelope("truncated msgpack message") from error
    if position > len(buffer):
        raise BadEnvelope("truncated msgpack message")
    return position


def _bin(buffer: memoryview, position: int) -> memoryview | None:
    """The bytes of a ``bin`` value at ``position`` as a view, or None if it is not a bin."""
    head = buffer[position]
    if head not in (0xC4, 0xC5, 0xC6):
        return None
    form, _ = _SIZED[head]
    (size,) = struct.unpack_from(form, buffer, position + 1)
    start = position + 1 + struct.calcsize(form)
    return buffer[start : start + size]


_PAYLOAD_KEY = b"\xa7payload"
_BIN_LENGTH = {0xC4: 1, 0xC5: 2, 0xC6: 4}
_SCAN = 1024  # how far the payload's key is looked for (the fields before it are small)


def _map_header(count: int) -> bytes:
    return bytes([0x80 | count]) if count < 16 else b"\xde" + count.to_bytes(2, "big")


def _payload_last(
    buffer: memoryview, count: int, position: int
) -> tuple[dict[str, Any], memoryview] | None:
    """The fast path for ferrotile's envelopes, whose ``payload`` is the last value: the key is
    found with ``bytes.find``, the fields before it decoded by msgpack in one call; None if the
    message is not so (the walk of :func:`decode` then reads it)."""
    head = bytes(buffer[:_SCAN])
    at = head.find(_PAYLOAD_KEY, position)
    while at >= 0:
        size_at = at + len(_PAYLOAD_KEY) + 1
        width = _BIN_LENGTH.get(head[size_at - 1]) if size_at <= len(head) else None
        if width is not None and size_at + width <= len(head):
            start = size_at + width
            if start + int.from_bytes(head[size_at:start], "big") == len(buffer):
                try:
                    fields = msgpack.unpackb(_map_header(count - 1) + head[position:at])
                except ValueError:  # "payload" inside another value: not the last key
                    fields = None
                if isinstance(fields, dict):
                    return fields, buffer[start:]
        at = head.find(_PAYLOAD_KEY, at + 1)
    return None


def decode(message: bytes) -> tuple[dict[str, Any], memoryview | None]:
    """The envelope's fields (without ``payload``) and its payload as a view of ``message``.

    A payload that is not ``bin`` (never sent by the servers) is decoded into the fields.
    """
    buffer = memoryview(message)
    if not buffer:
        raise BadEnvelope("empty message")
    head = buffer[0]
    if 0x80 <= head <= 0x8F:
        count, position = head & 0x0F, 1
    elif head in (0xDE, 0xDF):
        form = ">H" if head == 0xDE else ">I"
        (count,) = struct.unpack_from(form, buffer, 1)
        position = 1 + struct.calcsize(form)
    else:
        raise BadEnvelope("a stream message must be a msgpack map")
    if count and position < _SCAN:
        fast = _payload_last(buffer, count, position)
        if fast is not None:
            return fast
    fields: dict[str, Any] = {}
    payload: memoryview | None = None
    for _ in range(count):
        key_end = _skip(buffer, position)
        key = msgpack.unpackb(buffer[position:key_end])
        value_end = _skip(buffer, key_end)
        view = _bin(buffer, key_end) if key == "payload" else None
        if view is not None:
            payload = view
        else:
            fields[key] = msgpack.unpackb(buffer[key_end:value_end])
        position = value_end
    return fields, payload
