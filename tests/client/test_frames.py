"""The client's WebSocket frames: exact bytes of masked client frames, and server frames parsed
many per receive, split anywhere, with payload views that stay valid."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ferrotile.client import frames
from ferrotile.client.frames import BINARY, CLOSE, TEXT, Masks, ProtocolError, Reader


def server_frame(opcode: int, payload: bytes, final: bool = True) -> bytes:
    first = (0x80 if final else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes([first, n]) + payload
    if n < 1 << 16:
        return bytes([first, 126]) + struct.pack("!H", n) + payload
    return bytes([first, 127]) + struct.pack("!Q", n) + payload


def feed(reader: Reader, data: bytes, step: int) -> list[tuple[int, bytes]]:
    """Everything ``reader`` parses from ``data`` received ``step`` bytes at a time."""
    out: list[tuple[int, bytes]] = []
    views = []
    position = 0
    while True:
        message = reader.next()
        if message is not None:
            views.append(message)
            continue
        if position == len(data):
            break
        space = reader.space()
        chunk = data[position : position + min(step, len(space))]
        space[: len(chunk)] = chunk
        reader.filled(len(chunk))
        position += len(chunk)
    # Read only at the end: a view handed out earlier must not have been overwritten.
    out = [(opcode, bytes(payload)) for opcode, payload in views]
    return out


def test_client_frames_are_masked_with_fresh_keys() -> None:
    masks = Masks()
    payload = bytes(range(200))
    header, body = frames.client_frame(BINARY, payload, masks)
    assert header[:4] == bytes([0x82, 0xFE, 0, 200])  # final binary, masked, 16-bit length
    key = header[4:8]
    assert bytes(b ^ key[i % 4] for i, b in enumerate(body)) == payload
    small, _ = frames.client_frame(TEXT, b"hi", masks)
    assert small[:2] == bytes([0x81, 0x82]) and small[2:6] != key
    big = frames.client_header(BINARY, 1 << 16, b"abcd")
    assert big == bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 16) + b"abcd"
    assert frames._numpy_mask(payload, key) == body  # the fallback masks the same


@pytest.mark.parametrize("step", [1, 7, 4096, 1 << 30])
def test_many_frames_per_receive_split_anywhere(step: int) -> None:
    sizes = [0, 5, 125, 126, 1000, 65535, 65536, 300_000, 3, frames.CHUNK + 5, 2]
    if step < 100:  # headers split anywhere; fewer bytes, to stay quick
        sizes = [0, 5, 125, 126, 1000, 65536, 3, 2]
    messages = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    data = b"".join(server_frame(BINARY, m) for m in messages)
    got = feed(Reader(1 << 30), data, step)
    assert got == [(BINARY, m) for m in messages]


def test_fragments_are_joined_and_control_frames_pass_between() -> None:
    data = (
        server_frame(TEXT, b"he", final=False)
        + server_frame(CLOSE, struct.pack("!H", 1000))
        + server_frame(0, b"llo")
    )
    got = feed(Reader(100), data, 3)
    assert got == [(CLOSE, struct.pack("!H", 1000)), (TEXT, b"hello")]


def test_payloads_are_read_only_views() -> None:
    reader = Reader(1 << 20, server_frame(BINARY, b"abc"))
    message = reader.next()
    assert message is not None
    array = np.frombuffer(message[1], np.uint8)
    assert not array.flags.writeable and bytes(array) == b"abc"


def test_a_message_over_the_limit_is_refused() -> None:
    reader = Reader(10, server_frame(BINARY, b"x" * 11))
    with pytest.raises(ProtocolError) as refused:
        reader.next()
    assert refused.value.code == 1009
