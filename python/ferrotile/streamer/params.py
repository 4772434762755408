"""Pure parsing of the Redis Streamer API's inputs: query flags, ``a+b`` stream lists, cursors
and the push header that splits one binary message into entries.

Every function raises :class:`StreamerInputError` with a message fit for the client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ferrotile.errors import FerrotileError
from ferrotile.validation import MAX_INT64, InvalidParameter, parse_int

#: ``$``, ``0``/``-`` or an entry id ``<ms>[-<n>]`` (what a cursor may be).
_CURSOR = re.compile(r"^(\$|-|0|\d{1,16}(-\d{1,16})?)$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class StreamerInputError(FerrotileError, ValueError):
    """A parameter, header or payload the client sent is not acceptable."""


def flag(query: Mapping[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise StreamerInputError(f"{name} must be true or false, not {raw!r}")


def integer(
    query: Mapping[str, str],
    name: str,
    default: int | None,
    minimum: int,
    maximum: int = MAX_INT64,
) -> int | None:
    """An integer parameter (``None``/``none``/empty: ``default``), ``minimum..maximum`` (by
    default at most what a signed 64-bit integer holds, so no value can overflow the hub)."""
    raw = query.get(name)
    if raw is None or raw == "" or raw.lower() == "none":
        return default
    try:
        value = parse_int(raw, name, minimum=-(10**30), maximum=10**30)  # syntax only
    except InvalidParameter:
        raise StreamerInputError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise StreamerInputError(f"{name} must be at least {minimum}, not {value}")
    if value > maximum:
        raise StreamerInputError(f"{name} must be at most {maximum}, not {value}")
    return value


def number(query: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise StreamerInputError(f"{name} must be a number, not {raw!r}") from None
    if not value >= minimum:  # also refuses nan
        raise StreamerInputError(f"{name} must be at least {minimum}, not {raw}")
    return value


@dataclass(frozen=True)
class PullOptions:
    """The reading parameters shared by ``WS /data/{sid}/pull`` and ``GET /data/{sid}``."""

    after: list[str]
    count: int
    block: int
    max_fps: float
    ack: bool
    header: bool
    latest: bool
    max_queue_bytes: int | None


def pull_options(query: Mapping[str, str], streams: int, default_block: int) -> PullOptions:
    """Parse and check every reading parameter, as both read routes must (one set of rules).

    Parameters
    ----------
    query : mapping
        The request's query parameters.
    streams : int
        How many streams the URL names (``a+b``: 2), for the cursors.
    default_block : int
        ``block`` when absent (pull: 5000 ms, GET: 500 ms).

    Raises
    ------
    StreamerInputError
        Naming the first bad parameter (the routes answer 400).
    """
    after = cursors(query.get("last_entry_id", "$"), streams)
    count = integer(query, "count", 1, 1)
    block = integer(query, "block", default_block, 0)
    options = PullOptions(
        after=after,
        count=1 if count is None else count,
        block=default_block if block is None else block,
        max_fps=number(query, "max_fps", 0.0, 0.0),
        ack=flag(query, "ack", False),
        header=flag(query, "header", True),
        latest=flag(query, "latest", False),
        max_queue_bytes=integer(query, "max_queue_bytes", None, 1),
    )
    if not options.header and streams > 1 and options.count > 1:
        raise StreamerInputError("header=false with several streams and count>1 is ambiguous")
    return options


def stream_ids(raw: str) -> list[str]:
    """``a+b+c`` -> ``["a", "b", "c"]`` (``+`` separates streams, as in Redis Streamer)."""
    ids = raw.split("+")
    if any(not sid for sid in ids):
        raise StreamerInputError(f"empty stream id in {raw!r}")
    if len(set(ids)) != len(ids):
        raise StreamerInputError(f"stream {raw!r} names a stream twice")
    return ids


def cursor(raw: str) -> str:
    """A starting point: ``$`` (new entries), ``0``/``-`` (oldest kept) or ``<ms>[-<n>]``."""
    if not _CURSOR.match(raw):
        raise StreamerInputError(
            f"last_entry_id must be '$', '0', '-' or an entry id '<ms>-<n>', not {raw!r}"
        )
    return raw


def cursors(raw: str, count: int) -> list[str]:
    """One cursor for every stream, or ``c1+c2`` with one per stream."""
    parts = raw.split("+")
    if len(parts) == 1:
        parts = parts * count
    if len(parts) != count:
        raise StreamerInputError(f"{len(parts)} cursors given for {count} streams")
    return [cursor(p) for p in parts]


@dataclass(frozen=True)
class Entry:
    """One entry of a push: its stream, an explicit id (``None``: assigned) and its bytes."""

    sid: str
    entry_id: str | None
    start: int
    end: int


def _offset(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StreamerInputError(f"offsets must be non-negative integers, not {value!r}")
    return value


def split_header(header: bytes | str, url_ids: Sequence[str], size: int) -> list[Entry]:
    """The entries a push header describes in a binary message of ``size`` bytes.

    Forms (Redis Streamer's): ``[end, ...]`` with the streams from the URL (one stream: every
    entry goes to it; several: one entry each), ``[[sid, end], ...]`` and
    ``[[sid, entry_id, end], ...]`` (``entry_id`` ``null``: assigned). Offsets are end
    indices, unless the first is 0: then they are start indices. They must not decrease and
    must cover the message exactly.
    """
    try:
        items = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise StreamerInputError(f"the header is not JSON: {exc}") from None
    if not isinstance(items, list) or not items:
        raise StreamerInputError("the header must be a non-empty JSON list")
    sids: list[str]
    ids: list[str | None]
    if all(not isinstance(item, list) for item in items):
        offsets = [_offset(item) for item in items]
        if len(url_ids) == 1:
            sids = [url_ids[0]] * len(offsets)
        elif len(url_ids) == len(offsets):
            sids = list(url_ids)
        else:
            raise StreamerInputError(
                f"the header has {len(offsets)} offsets for {len(url_ids)} streams in the URL"
            )
        ids = [None] * len(offsets)
    else:
        sids, ids, offsets = [], [], []
        for item in items:
            if not isinstance(item, list) or len(item) not in (2, 3):
                raise StreamerInputError(
                    "header items must all be [sid, offset] or [sid, entry_id, offset], "
                    f"not {item!r}"
                )
            sid, *middle, offset = item
            if not isinstance(sid, str) or not sid:
                raise StreamerInputError(f"stream ids must be non-empty strings, not {sid!r}")
            entry_id = middle[0] if middle else None
            if entry_id is not None and not isinstance(entry_id, str):
                raise StreamerInputError(f"entry ids must be strings or null, not {entry_id!r}")
            sids.append(sid)
            ids.append(entry_id)
            offsets.append(_offset(offset))
    # End indices, unless the first offset is 0: then start indices.
    bounds = [*offsets, size] if offsets[0] == 0 else [0, *offsets]
    if any(b > a for a, b in zip(bounds[1:], bounds, strict=False)):
        raise StreamerInputError(f"offsets must not decrease: {offsets}")
    if bounds[-1] != size:
        raise StreamerInputError(
            f"the header's offsets cover {bounds[-1]} bytes but the binary message has {size}"
        )
    return [
        Entry(sid, entry_id, start, end)
        for sid, entry_id, start, end in zip(sids, ids, bounds, bounds[1:], strict=False)
    ]
