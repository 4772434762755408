"""The limits that keep hostile or mistaken input away from storage, in one place.

Every function here is pure (no I/O, no HTTP): routes call them before anything is stored, and
the same rules can be applied wherever else a request is parsed. Each raises a subclass of
:class:`InputRejected`, which the HTTP layer answers with ``status`` and the message as
``detail``.

- :func:`check_depth`: JSON documents (node metadata, data source structure, parameters and
  properties) nest at most :data:`MAX_JSON_DEPTH` levels. Every stream message embeds them a few
  levels down and the Rust envelope encoder parses message headers with ``serde_json``, which
  refuses nesting beyond 127 levels; this limit keeps every message encodable (see
  :data:`MAX_JSON_DEPTH`).
- :func:`parse_int`: integer query parameters are ASCII digits within a range that every
  database and the native module accept (signed 64 bits), so none can overflow into a 500.
- :func:`check_array_extension`: ``PATCH ...?extend=true`` may grow an array to at most
  ``max_bytes`` bytes and :data:`MAX_BLOCKS_PER_AXIS` blocks along any axis.
- :func:`check_no_nul`: NUL characters cannot be stored or looked up (PostgreSQL refuses them in
  text and JSON, SQLite's JSON paths and the file system too): refused up front.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from ferrotile.errors import FerrotileError
from ferrotile.storage.structure import ArrayStructure

MAX_JSON_DEPTH = 64
"""Deepest nesting accepted in node metadata and in a data source's structure, parameters and
properties (``{}`` is one level, ``{"a": {}}`` two).

Why 64: stream messages carry these documents at most 4 levels below the top of the message
(``container-child-created`` → ``data_sources`` → a data source → ``parameters``), and the envelope
encoder's JSON parser (``serde_json``, ``rust/src/codec/envelope.rs``) stops at 127 levels, so
64 + 4 leaves a wide margin. It also stays far below the Python recursion limit (1000) that
``copy.deepcopy`` and the merge patch meet, below orjson's serialisation limit (254 levels), and
it is deeper than any metadata a real instrument writes.
"""

MAX_INT64 = 2**63 - 1
"""Largest integer query parameter (what SQLite, PostgreSQL ``bigint`` and Rust ``i64`` hold)."""

MAX_BLOCKS_PER_AXIS = 4_000_000
"""Most blocks an extended array may have along one axis.

An extension regrows the chunk grid with the first block's size (as Tiled does). The catalog keeps
that grid as two numbers (``RegularChunks``), but Tiled's structure lists every block's size in
every metadata read and every PATCH answer, so a PATCH of one element far beyond the end of an
array with small blocks would make each of those huge. Four million covers an hour of frames
at 1 kHz appended one block each (3.6 million: 7 MB of JSON per read); beyond that, create the
array with larger blocks.
"""

_DIGITS = re.compile(r"^[+-]?[0-9]{1,30}$")


class InputRejected(FerrotileError, ValueError):
    """Input refused by one of the limits; ``status`` is the HTTP answer."""

    status = 422


class TooDeep(InputRejected):
    """A JSON document nests deeper than :data:`MAX_JSON_DEPTH` levels."""


class ArrayTooLarge(InputRejected):
    """An extension would make an array bigger than the server allows."""


class InvalidParameter(InputRejected):
    """A query parameter is malformed or out of range."""


class NulCharacter(InputRejected):
    """Text contains a NUL character (``\\x00``)."""


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a JSON value: 0 for a scalar, 1 for ``{}``/``[]``, ...

    Iterative (no recursion, so any depth is safe) and stops counting once past ``limit``: the
    result is exact up to ``limit + 1``.
    """
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        current, depth = pending.pop()
        if isinstance(current, dict):
            children: Any = current.values()
        elif isinstance(current, list | tuple):
            children = current
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        pending.extend((child, depth) for child in children)
    return deepest


def check_depth(value: Any, what: str = "Metadata", limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse ``value`` if it nests deeper than ``limit`` levels.

    Raises
    ------
    TooDeep
        Naming ``what`` and the limit.
    """
    if json_depth(value, limit) > limit:
        raise TooDeep(f"{what} is nested more than {limit} levels deep; the limit is {limit}")


def check_data_source_depth(source: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Apply :func:`check_depth` to the documents of a data source (a JSON object) that are
    stored and streamed as given: ``structure``, ``parameters`` and ``properties``."""
    if not isinstance(source, dict):
        return
    for name in ("structure", "parameters", "properties"):
        check_depth(source.get(name), f"Data source {name}", limit)


def parse_int(raw: str, name: str, *, minimum: int = 0, maximum: int = MAX_INT64) -> int:
    """An integer query parameter: optional sign and ASCII digits, ``minimum <= value <= maximum``.

    Python's ``int()`` alone also accepts ``1_000``, surrounding spaces and non-ASCII digits, and
    any magnitude, which then overflows a database or native integer.

    Raises
    ------
    InvalidParameter
        Naming the parameter and the accepted range.
    """
    text = raw.strip()
    if not _DIGITS.match(text):
        raise InvalidParameter(f"Query parameter {name!r} must be an integer, not {raw!r}")
    value = int(text)
    if value < minimum:
        raise InvalidParameter(f"Query parameter {name!r} must be >= {minimum}, not {value}")
    if value > maximum:
        raise InvalidParameter(f"Query parameter {name!r} must be <= {maximum}, not {value}")
    return value


def check_no_nul(text: str, what: str) -> None:
    """Refuse text containing NUL (``\\x00``), naming ``what`` it is.

    Raises
    ------
    NulCharacter
    """
    if "\x00" in text:
        raise NulCharacter(f"{what} must not contain NUL characters: {text!r}")


def check_array_extension(
    structure: ArrayStructure,
    offset: Sequence[int],
    shape: Sequence[int],
    max_bytes: int,
) -> tuple[int, ...]:
    """The shape an array takes when a block of ``shape`` is written at ``offset`` with
    ``extend=true``, once it is within the limits.

    This is the one rule for growing arrays (HTTP ``PATCH`` today, any other writer later); it
    only looks at numbers, so it costs nothing however large the request claims to be.

    Parameters
    ----------
    structure : ArrayStructure
        The array's current structure.
    offset : sequence of int
        Where the block starts; missing trailing dimensions are 0.
    shape : sequence of int
        The block's shape (the array's rank).
    max_bytes : int
        Largest size the array may grow to (``--max-array-bytes``). An array already bigger may
        still be patched as long as it does not grow.

    Returns
    -------
    tuple of int
        The array's shape after the write (its current shape if the block fits).

    Raises
    ------
    ArrayTooLarge
        The grown array would exceed ``max_bytes``, or :data:`MAX_BLOCKS_PER_AXIS` blocks
        along an axis.
    ValueError
        Rank mismatch or a negative offset (the caller's 422).
    """
    current = structure.shape
    if len(shape) != len(current) or len(offset) > len(current):
        raise ValueError(f"shape {tuple(shape)} does not match the array's rank {len(current)}")
    if any(o < 0 for o in offset) or any(n < 0 for n in shape):
        raise ValueError(f"offset {tuple(offset)} and shape {tuple(shape)} must not be negative")
    padded = tuple(offset) + (0,) * (len(current) - len(offset))
    grown = tuple(max(size, o + n) for size, o, n in zip(current, padded, shape, strict=True))
    if grown == current:
        return grown
    nbytes = math.prod(grown) * structure.dtype.itemsize
    if nbytes > max_bytes:
        raise ArrayTooLarge(
            f"Extending the array to shape {grown} would make it {nbytes} bytes; the server's "
            f"limit is {max_bytes} bytes (--max-array-bytes). Nothing was written."
        )
    for axis, (chunks, size) in enumerate(zip(structure.chunks, grown, strict=True)):
        if size == current[axis]:
            continue
        # The regrown grid uses the first block's size (see ArrayStructure.with_shape).
        step = chunks[0] if chunks and chunks[0] > 0 else max(size, 1)
        blocks = -(-size // step)
        if blocks > MAX_BLOCKS_PER_AXIS:
            raise ArrayTooLarge(
                f"Extending the array to shape {grown} would split axis {axis} into {blocks} "
                f"blocks of {step}; the limit is {MAX_BLOCKS_PER_AXIS} blocks per axis (create "
                "the array with larger blocks). Nothing was written."
            )
    return grown
