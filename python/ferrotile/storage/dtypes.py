"""Conversion between Tiled's ``data_type`` JSON and numpy dtypes.

Tiled describes an array's element type with a "BuiltinDtype" object::

    {"endianness": "little" | "big" | "not_applicable",
     "kind": "b" | "i" | "u" | "f" | "c" | "m" | "M" | "S" | "U" | "V",
     "itemsize": <bytes per element>,
     "dt_units": null | "[ns]" | "[10s]" ...}

The stock client builds numpy dtypes from exactly this JSON, so what we emit must match what
``tiled.structures.array.BuiltinDtype.from_numpy_dtype`` produces, byte for byte.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import numpy as np

__all__ = ["data_type_to_numpy", "numpy_to_data_type"]

# numpy byte-order characters <-> Tiled endianness names. Native order ("=") is reported as the
# machine's actual order, as Tiled does, so the JSON never depends on how the dtype was spelled.
_ORDER_TO_ENDIANNESS = {
    "<": "little",
    ">": "big",
    "=": sys.byteorder,
    "|": "not_applicable",
}
_ENDIANNESS_TO_ORDER = {"little": "<", "big": ">", "not_applicable": "|"}

# Item sizes (in bytes) we accept per kind. Exotic widths such as float128 are left out: their
# layout is platform-specific and no other Tiled client could decode them.
_FIXED_SIZES: dict[str, frozenset[int]] = {
    "b": frozenset({1}),
    "i": frozenset({1, 2, 4, 8}),
    "u": frozenset({1, 2, 4, 8}),
    "f": frozenset({2, 4, 8}),
    "c": frozenset({8, 16}),
    "m": frozenset({8}),
    "M": frozenset({8}),
}
# Variable-width kinds: any positive size (UCS4 strings in multiples of 4 bytes).
_FLEXIBLE_KINDS = frozenset({"S", "U", "V"})

# Units numpy accepts for datetime64/timedelta64, in Tiled's "[<count><unit>]" spelling.
_DT_UNITS_RE = re.compile(r"^\[([1-9][0-9]*)?(Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as)\]$")


def _unsupported(detail: str) -> ValueError:
    return ValueError(f"Unsupported data type: {detail}")


def data_type_to_numpy(dt: Any) -> np.dtype[Any]:
    """Build the numpy dtype described by a Tiled ``data_type`` JSON object.

    Parameters
    ----------
    dt : dict
        Tiled BuiltinDtype JSON (``endianness``, ``kind``, ``itemsize``, ``dt_units``).

    Returns
    -------
    numpy.dtype
        The dtype, with the byte order the JSON asks for.

    Raises
    ------
    ValueError
        If the object is malformed, structured (has ``fields``), or names a kind or size that
        ferrotile cannot store.
    """
    if not isinstance(dt, dict):
        raise _unsupported(f"expected a JSON object, got {dt!r}")
    if "fields" in dt:
        raise _unsupported("structured data types (with 'fields') are not supported yet")
    kind = dt.get("kind")
    itemsize = dt.get("itemsize")
    endianness = dt.get("endianness")
    dt_units = dt.get("dt_units")
    if not isinstance(kind, str) or (kind not in _FIXED_SIZES and kind not in _FLEXIBLE_KINDS):
        raise _unsupported(f"kind {kind!r}")
    # bool is an int subclass; a JSON `true` itemsize is malformed, not 1.
    if not isinstance(itemsize, int) or isinstance(itemsize, bool) or itemsize <= 0:
        raise _unsupported(f"itemsize {itemsize!r} for kind {kind!r}")
    if endianness not in _ENDIANNESS_TO_ORDER:
        raise _unsupported(f"endianness {endianness!r}")
    if kind in _FIXED_SIZES and itemsize not in _FIXED_SIZES[kind]:
        raise _unsupported(f"itemsize {itemsize} for kind {kind!r}")
    if kind == "U" and itemsize % 4:
        raise _unsupported(f"itemsize {itemsize} for kind 'U' (must be a multiple of 4)")

    units = ""
    if kind in "mM":
        if not isinstance(dt_units, str) or not _DT_UNITS_RE.match(dt_units):
            raise _unsupported(f"dt_units {dt_units!r} for kind {kind!r}")
        units = dt_units
    elif dt_units is not None:
        raise _unsupported(f"dt_units {dt_units!r} given for non-datetime kind {kind!r}")

    # numpy spells unicode widths in characters (4 bytes each), everything else in bytes.
    size = itemsize // 4 if kind == "U" else itemsize
    try:
        return np.dtype(f"{_ENDIANNESS_TO_ORDER[endianness]}{kind}{size}{units}")
    except TypeError as err:  # pragma: no cover - the checks above should make this unreachable
        raise _unsupported(f"{dt!r} ({err})") from err


def numpy_to_data_type(dtype: Any) -> dict[str, Any]:
    """Describe a numpy dtype as Tiled ``data_type`` JSON.

    Parameters
    ----------
    dtype : numpy.dtype or anything ``numpy.dtype()`` accepts

    Returns
    -------
    dict
        ``{"endianness", "kind", "itemsize", "dt_units"}``, as Tiled produces it (for example
        int8 is ``"not_applicable"``, native int32 on x86 is ``"little"``, datetime64[ns] has
        ``dt_units`` ``"[ns]"``).

    Raises
    ------
    ValueError
        For structured, sub-array, object or otherwise unsupported dtypes.
    """
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise _unsupported(f"{dtype!r} is not a numpy dtype") from err
    if dtype.fields is not None or dtype.subdtype is not None:
        raise _unsupported(f"structured or sub-array dtype {dtype} is not supported yet")
    kind = dtype.kind
    if kind in _FIXED_SIZES:
        if dtype.itemsize not in _FIXED_SIZES[kind]:
            raise _unsupported(f"{dtype}")
    elif kind not in _FLEXIBLE_KINDS or dtype.itemsize == 0:
        raise _unsupported(f"{dtype}")

    dt_units = None
    if kind in "mM":
        unit, count = np.datetime_data(dtype)
        if unit == "generic":
            raise _unsupported(f"{dtype} has no time unit")
        dt_units = f"[{count if count > 1 else ''}{unit}]"
    return {
        "endianness": _ORDER_TO_ENDIANNESS[dtype.byteorder],
        "kind": kind,
        "itemsize": dtype.itemsize,
        "dt_units": dt_units,
    }
