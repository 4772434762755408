"""The envelope walk decodes what msgpack decodes, with the payload as a view of the message."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from ferrotile.client.envelope import BadEnvelope, decode

FIELDS: dict[str, Any] = {
    "type": "array-data",
    "sequence": 2**40,
    "timestamp": "2026-12-07T02:48:51.274254",
    "shape": [3, 2048, 2048],
    "offset": list(range(20)),  # array16
    "block": None,
    "flags": [True, False, -1, -200, -40000, -(2**40), 1.5, 255, 65535, 2**32],
    "metadata": {"nested": {"deep": ["x" * 40, "y" * 300, "z" * 70000]}, "n": 1},
    "extra": {f"k{i}": i for i in range(20)},  # map16
    "ext": msgpack.ExtType(5, b"abcdefgh"),
}


@pytest.mark.parametrize("size", [0, 200, 300, 70000])  # bin8, bin8, bin16, bin32
@pytest.mark.parametrize("position", ["first", "last"])
def test_decode_matches_msgpack_and_views_the_payload(size: int, position: str) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    envelope = (
        {"payload": payload, **FIELDS} if position == "first" else {**FIELDS, "payload": payload}
    )
    message = msgpack.packb(envelope)
    fields, view = decode(message)
    assert fields == {k: v for k, v in msgpack.unpackb(message).items() if k != "payload"}
    assert view is not None and view.tobytes() == payload
    assert view.obj is message  # a view of the received message, not a copy
    assert np.frombuffer(view, dtype="u1").base is not None


@pytest.mark.parametrize(
    "message", [b"", b"\x93\x01\x02\x03", msgpack.packb({"a": "bcd"})[:-1], b"\x81\xa1a\xc1"]
)
def test_bad_envelopes_are_refused(message: bytes) -> None:
    with pytest.raises(BadEnvelope):
        decode(message)


@pytest.mark.parametrize("size", [0, 5, 300, 70000])
def test_the_fast_path_finds_the_last_payload_key(size: int) -> None:
    """Small fields before the payload (ferrotile's envelopes): the key is found by its bytes,
    also when the same bytes appear earlier as a value."""
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    envelope = {"type": "array-data", "sequence": 7, "what": "payload", "shape": [size],
                "dummy": b"\xa7payload\xc4\x01", "payload": payload}  # fmt: skip
    message = msgpack.packb(envelope)
    fields, view = decode(message)
    assert fields == {k: v for k, v in envelope.items() if k != "payload"}
    assert view is not None and view.obj is message and view.tobytes() == payload
