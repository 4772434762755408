"""Tiled's array structure: dtype, shape, chunking and dimension names.

This is the ``structure`` object the stock Tiled client sends when it creates an array node and
reads back from ``/metadata``. Validation happens once, here, so the storage code can trust it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import numpy as np

from .dtypes import data_type_to_numpy

__all__ = ["ArrayStructure"]


def _is_int(value: Any) -> bool:
    # JSON booleans arrive as Python bools, which are ints; they are never valid sizes.
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
        raise ValueError(f"Invalid array structure: {what} must be a list of integers")
    return tuple(value)


@dataclass(frozen=True)
class ArrayStructure:
    """Validated Tiled array structure.

    Attributes
    ----------
    data_type : dict
        Tiled BuiltinDtype JSON.
    chunks : tuple of tuple of int
        Block sizes along each dimension; each tuple sums to that dimension's length.
    shape : tuple of int
    dims : tuple of str or None
        Optional dimension names, one per dimension.
    resizable : bool
        Always False (Tiled does not implement resizable arrays).
    """

    data_type: dict[str, Any]
    chunks: tuple[tuple[int, ...], ...]
    shape: tuple[int, ...]
    dims: tuple[str, ...] | None = None
    resizable: bool = False
    _dtype: np.dtype[Any] = field(init=False, repr=False, compare=False)
    # Start offset of every block along each dimension, so block lookups are O(1).
    _offsets: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen dataclass: derived fields must be set through object.__setattr__.
        object.__setattr__(self, "_dtype", data_type_to_numpy(self.data_type))
        if self.resizable is not False:
            raise ValueError("Invalid array structure: resizable arrays are not supported")
        if len(self.chunks) != len(self.shape):
            raise ValueError(
                f"Invalid array structure: chunks has {len(self.chunks)} dimensions "
                f"but shape {self.shape} has {len(self.shape)}"
            )
        if any(n < 0 for n in self.shape):
            raise ValueError(f"Invalid array structure: negative size in shape {self.shape}")
        for axis, (dim_chunks, size) in enumerate(zip(self.chunks, self.shape, strict=True)):
            if sum(dim_chunks) != size:
                raise ValueError(
                    f"Invalid array structure: chunks {list(dim_chunks)} along dimension "
                    f"{axis} sum to {sum(dim_chunks)}, not to the shape {size}"
                )
            # Zero-size blocks are meaningless except to describe an empty dimension.
            if any(c <= 0 for c in dim_chunks) if size else any(c != 0 for c in dim_chunks):
                raise ValueError(
                    f"Invalid array structure: chunk sizes along dimension {axis} must be "
                    f"positive (zero for an empty dimension), got {list(dim_chunks)}"
                )
        if self.dims is not None and len(self.dims) != len(self.shape):
            raise ValueError(
                f"Invalid array structure: {len(self.dims)} dims names given for "
                f"{len(self.shape)} dimensions"
            )
        offsets = tuple(tuple(accumulate(c, initial=0)) for c in self.chunks)
        object.__setattr__(self, "_offsets", offsets)

    @classmethod
    def from_json(cls, d: Any) -> ArrayStructure:
        """Parse and validate Tiled array structure JSON.

        Parameters
        ----------
        d : dict
            ``{"data_type", "chunks", "shape", "dims", "resizable"}``; ``dims`` and
            ``resizable`` may be omitted.

        Raises
        ------
        ValueError
            With a message naming the first problem found.
        """
        if not isinstance(d, dict):
            raise ValueError("Invalid array structure: expected a JSON object")
        for key in ("data_type", "chunks", "shape"):
            if key not in d:
                raise ValueError(f"Invalid array structure: missing {key!r}")
        data_type = d["data_type"]
        if not isinstance(data_type, dict):
            raise ValueError("Invalid array structure: data_type must be an object")
        chunks_json = d["chunks"]
        if not isinstance(chunks_json, (list, tuple)):
            raise ValueError("Invalid array structure: chunks must be a list of lists")
        chunks = tuple(_int_tuple(c, "each entry of chunks") for c in chunks_json)
        shape = _int_tuple(d["shape"], "shape")
        dims = d.get("dims")
        if dims is not None:
            if not isinstance(dims, (list, tuple)) or not all(isinstance(x, str) for x in dims):
                raise ValueError("Invalid array structure: dims must be null or a list of strings")
            dims = tuple(dims)
        resizable = d.get("resizable", False)
        # Tiled also allows one flag per dimension; all-false is the same as false.
        if isinstance(resizable, (list, tuple)) and not any(resizable):
            resizable = False
        return cls(
            data_type=dict(data_type),
            chunks=chunks,
            shape=shape,
            dims=dims,
            resizable=resizable,
        )

    def to_json(self) -> dict[str, Any]:
        """Return the structure as Tiled JSON (lists, not tuples)."""
        return {
            "data_type": dict(self.data_type),
            "chunks": [list(c) for c in self.chunks],
            "shape": list(self.shape),
            "dims": None if self.dims is None else list(self.dims),
            "resizable": False,
        }

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype described by ``data_type`` (byte order included)."""
        return self._dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def _check_block(self, block: tuple[int, ...]) -> None:
        if len(block) != len(self.chunks) or not all(
            0 <= b < len(c) for b, c in zip(block, self.chunks, strict=True)
        ):
            raise ValueError(
                f"Block index out of range: block {tuple(block)} for chunks "
                f"{[list(c) for c in self.chunks]}"
            )

    def block_slices(self, block: tuple[int, ...]) -> tuple[slice, ...]:
        """Slices that select ``block`` within the whole array.

        Raises
        ------
        ValueError
            "Block index out of range" if the block has the wrong rank or an index is outside
            the chunk grid.
        """
        self._check_block(block)
        return tuple(
            slice(offs[b], offs[b + 1]) for b, offs in zip(block, self._offsets, strict=True)
        )

    def block_shape(self, block: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of ``block`` (same errors as `block_slices`)."""
        self._check_block(block)
        return tuple(c[b] for b, c in zip(block, self.chunks, strict=True))

    def expected_nbytes(self) -> int:
        """Number of bytes of the whole array in C order."""
        return math.prod(self.shape) * self._dtype.itemsize

    def with_shape(self, new_shape: tuple[int, ...]) -> ArrayStructure:
        """Same structure with a new shape, chunks regrown regularly.

        Every dimension is re-chunked with its first chunk size (what Tiled's zarr adapter does
        after a PATCH), e.g. ``[[2, 2, 1]]`` grown to 7 becomes ``[[2, 2, 2, 1]]``.

        Parameters
        ----------
        new_shape : tuple of int
            Same rank as the current shape.
        """
        new_shape = tuple(new_shape)
        if len(new_shape) != len(self.shape) or any(n < 0 for n in new_shape):
            raise ValueError(f"Cannot reshape array of shape {self.shape} to {new_shape}")
        chunks = []
        for dim_chunks, size in zip(self.chunks, new_shape, strict=True):
            # A formerly empty dimension has no meaningful chunk size: use one block.
            step = dim_chunks[0] if dim_chunks and dim_chunks[0] > 0 else max(size, 1)
            chunks.append(_regular_chunks(size, step))
        return ArrayStructure(
            data_type=dict(self.data_type),
            chunks=tuple(chunks),
            shape=new_shape,
            dims=self.dims,
        )


def _regular_chunks(size: int, step: int) -> tuple[int, ...]:
    if size == 0:
        return (0,)
    full, rest = divmod(size, step)
    return (step,) * full + ((rest,) if rest else ())
