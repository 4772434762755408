"""Helpers shared by the entries API tests: the entries' Tiled header and header-mode frames."""

from __future__ import annotations

from typing import Any

import orjson

HEADER = orjson.dumps(
    {
        "type": "array-data",
        "timestamp": "2024-01-01T00:00:00",
        "mimetype": "application/octet-stream",
        "offset": None,
        "block": None,
    }
)

Frames = tuple[list[Any], tuple[int, str] | None]


def split(frames: list[Any]) -> list[tuple[str, str, bytes]]:
    """``[(name, id, payload), ...]`` of a header-mode read ``[header_text, payload]``."""
    header, data = frames
    out, start = [], 0
    for name, entry_id, end in orjson.loads(header):
        out.append((name, entry_id, data[start:end]))
        start = end
    return out
