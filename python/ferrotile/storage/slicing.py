"""Parsing and normalising Tiled's array query parameters (``slice``, ``block``, shapes).

The stock client writes ``slice=`` as numpy-style text, dims joined by ``,``: ``0:2:1``, ``:2:1``
(before 0.2.18), ``3``, ``...``, and reversed slices in ndindex canonical form such as
``4:-6:-1`` (a negative stop meaning "through index 0"). Plain Python/numpy slice semantics
give the intended result for all of them, so we keep the numbers as given and let
``slice.indices`` do the arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import EllipsisType

from ferrotile.errors import FerrotileError

__all__ = [
    "ExpectedShapeMismatch",
    "Index",
    "NormalizedSelection",
    "Selection",
    "check_expected_shape",
    "normalize_selection",
    "parse_int_tuple",
    "parse_slice",
]

Index = int | slice | EllipsisType
Selection = tuple[Index, ...]

# One dimension of a slice string: "int" or "start:stop[:step]" with every part optional.
_SLICE_PART_RE = re.compile(r"^(-?\d+)?:(-?\d+)?(?::(-?\d+)?)?$")
_INT_RE = re.compile(r"^-?\d+$")
_UINT_LIST_RE = re.compile(r"^\d+(,\d+)*$")


class ExpectedShapeMismatch(FerrotileError, ValueError):
    """The client's ``expected_shape`` differs from the shape the request would produce."""


@dataclass(frozen=True)
class NormalizedSelection:
    """A selection rewritten for storage back-ends that only accept forward slices.

    Attributes
    ----------
    forward : tuple of (int or slice)
        One entry per array dimension; integers are non-negative and in range, slices have
        non-negative bounds and a positive step.
    flip_axes : tuple of int
        Axes of the *result* (after integer indices removed their dimensions) that must be
        reversed to honour negative steps.
    shape : tuple of int
        Shape of the result.
    """

    forward: tuple[int | slice, ...]
    flip_axes: tuple[int, ...]
    shape: tuple[int, ...]


def parse_slice(param: str | None, shape: Sequence[int]) -> Selection:
    """Parse a Tiled ``slice=`` query parameter and check it against ``shape``.

    Parameters
    ----------
    param : str or None
        E.g. ``"0:2:1,3"``, ``":,..."``, ``"4:-6:-1"``; ``None`` or ``""`` select everything.
    shape : sequence of int
        Shape of the array being sliced.

    Returns
    -------
    tuple
        Python indices (``int``, ``slice``, ``Ellipsis``) usable directly on a numpy array.

    Raises
    ------
    ValueError
        On malformed text, a zero step, more than one ``...``, too many dimensions, or an
        integer index out of bounds.
    """
    if param is None:
        return ()
    text = param.replace(" ", "").strip("()[]")
    if not text:
        return ()
    selection: list[Index] = []
    for part in text.split(","):
        if part == "...":
            selection.append(Ellipsis)
        elif _INT_RE.match(part):
            selection.append(int(part))
        elif m := _SLICE_PART_RE.match(part):
            start, stop, step = (None if g is None else int(g) for g in m.groups())
            selection.append(slice(start, stop, step))
        else:
            raise ValueError(f"Invalid slice parameter {param!r}: cannot parse {part!r}")
    result = tuple(selection)
    normalize_selection(result, shape)  # validates bounds and rank
    return result


def _expand_ellipsis(selection: Selection, ndim: int) -> list[int | slice]:
    n_ellipsis = sum(1 for s in selection if s is Ellipsis)
    if n_ellipsis > 1:
        raise ValueError("Invalid slice: an index can only have a single ellipsis ('...')")
    explicit = len(selection) - n_ellipsis
    if explicit > ndim:
        raise ValueError(
            f"Too many indices for array: array is {ndim}-dimensional, but {explicit} were indexed"
        )
    fill = [slice(None)] * (ndim - explicit)
    expanded: list[int | slice] = []
    for s in selection:
        if s is Ellipsis:
            expanded.extend(fill)
        else:
            expanded.append(s)
    if not n_ellipsis:
        expanded.extend(fill)
    return expanded


def normalize_selection(selection: Selection, shape: Sequence[int]) -> NormalizedSelection:
    """Rewrite ``selection`` as forward-only indices plus axes to flip.

    Parameters
    ----------
    selection : tuple
        ``int``/``slice``/``Ellipsis`` entries, numpy semantics (negative values allowed).
    shape : sequence of int
        Shape of the array being indexed.

    Returns
    -------
    NormalizedSelection

    Raises
    ------
    ValueError
        Too many indices, several ellipses, zero step, or an integer out of bounds.
    """
    forward: list[int | slice] = []
    flip: list[int] = []
    out_shape: list[int] = []
    for axis, (s, size) in enumerate(
        zip(_expand_ellipsis(selection, len(shape)), shape, strict=True)
    ):
        if isinstance(s, slice):
            if s.step == 0:
                raise ValueError("Invalid slice: slice step cannot be zero")
            start, stop, step = s.indices(size)
            # range() treats a negative stop from indices() as "past index 0", which is exactly
            # what ndindex's canonical reversed slices (e.g. 4:-6:-1) mean.
            positions = range(start, stop, step)
            n = len(positions)
            if n == 0:
                forward.append(slice(0, 0, 1))
            elif step > 0:
                forward.append(slice(positions[0], positions[-1] + 1, step))
            else:
                forward.append(slice(positions[-1], positions[0] + 1, -step))
                flip.append(len(out_shape))
            out_shape.append(n)
        else:
            if not isinstance(s, int) or isinstance(s, bool):
                raise ValueError(f"Invalid index {s!r}: expected an integer, slice or '...'")
            if not -size <= s < size:
                raise ValueError(f"Index {s} is out of bounds for axis {axis} with size {size}")
            forward.append(s + size if s < 0 else s)
    return NormalizedSelection(tuple(forward), tuple(flip), tuple(out_shape))


def parse_int_tuple(param: str, name: str) -> tuple[int, ...]:
    """Parse a comma-separated list of non-negative integers (``block``, ``offset``, ``shape``).

    Parameters
    ----------
    param : str
        E.g. ``"1,2"``. ``""`` and ``"scalar"`` both mean the empty tuple (a 0-d array).
    name : str
        Parameter name, used in error messages.

    Raises
    ------
    ValueError
        If the text is not a list of non-negative integers.
    """
    text = param.replace(" ", "")
    if text in ("", "scalar"):
        return ()
    if not _UINT_LIST_RE.match(text):
        raise ValueError(
            f"Invalid {name} parameter {param!r}: expected comma-separated non-negative integers"
        )
    return tuple(int(x) for x in text.split(","))


def check_expected_shape(expected: tuple[int, ...] | None, actual: tuple[int, ...]) -> None:
    """Raise if the client's ``expected_shape`` differs from the actual result shape.

    Parameters
    ----------
    expected : tuple of int or None
        Parsed ``expected_shape``; ``None`` (parameter absent) always passes.
    actual : tuple of int
        Shape the request produces.

    Raises
    ------
    ExpectedShapeMismatch
        A ``ValueError``; the HTTP layer answers 422 (Tiled's wording is reused).
    """
    if expected is not None and tuple(expected) != tuple(actual):
        raise ExpectedShapeMismatch(
            f"The expected shape {tuple(expected)} does not match the actual shape "
            f"{tuple(actual)} that would result from the requested slice."
        )
