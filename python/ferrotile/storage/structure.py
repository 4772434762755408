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
from .regular_chunks import RegularChunks

__all__ = ["ArrayStructure", "AxisChunks", "tiled_structure"]

AxisChunks = tuple[int, ...] | RegularChunks
"""The block sizes along one axis: Tiled's list, or a regular grid held compact."""


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
    chunks : tuple of (tuple of int or RegularChunks)
        Block sizes along each dimension; each sums to that dimension's length. Axes regrown
        by `with_shape` are `RegularChunks` (a step and a length, whatever the block count).
    shape : tuple of int
    dims : tuple of str or None
        Optional dimension names, one per dimension.
    resizable : bool
        Always False (Tiled does not implement resizable arrays).
    """

    data_type: dict[str, Any]
    chunks: tuple[AxisChunks, ...]
    shape: tuple[int, ...]
    dims: tuple[str, ...] | None = None
    resizable: bool = False
    _dtype: np.dtype[Any] = field(init=False, repr=False, compare=False)
    # Start offset of every block along each listed dimension, so block lookups are O(1)
    # (None for a regular one, which computes it).
    _offsets: tuple[tuple[int, ...] | None, ...] = field(init=False, repr=False, compare=False)

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
            if isinstance(dim_chunks, RegularChunks):
                if dim_chunks.size != size:
                    raise ValueError(
                        f"Invalid array structure: regular chunks of {dim_chunks.size} along "
                        f"dimension {axis}, not of the shape {size}"
                    )
                continue
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
        offsets = tuple(
            None if isinstance(c, RegularChunks) else tuple(accumulate(c, initial=0))
            for c in self.chunks
        )
        object.__setattr__(self, "_offsets", offsets)

    @classmethod
    def from_json(cls, d: Any, *, stored: bool = False) -> ArrayStructure:
        """Parse and validate Tiled array structure JSON.

        Parameters
        ----------
        d : dict
            ``{"data_type", "chunks", "shape", "dims", "resizable"}``; ``dims`` and
            ``resizable`` may be omitted.
        stored : bool
            The structure was read from the catalog or the zarr attributes (`to_stored_json`):
            an axis may be ``{"regular": step}``. Clients send lists only.

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
        shape = _int_tuple(d["shape"], "shape")
        chunks = tuple(
            _regular(c, shape, axis)
            if stored and isinstance(c, dict)
            else _int_tuple(c, "each entry of chunks")
            for axis, c in enumerate(chunks_json)
        )
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
        """Return the structure as Tiled JSON (lists, not tuples; every block listed)."""
        return self._json(
            [c.listed() if isinstance(c, RegularChunks) else list(c) for c in self.chunks]
        )

    def to_stored_json(self) -> dict[str, Any]:
        """Return the structure as the catalog and the zarr attributes keep it: as `to_json`,
        with each regular axis written ``{"regular": step}`` (see `RegularChunks`)."""
        return self._json(
            [c.to_stored() if isinstance(c, RegularChunks) else list(c) for c in self.chunks]
        )

    def _json(self, chunks: list[Any]) -> dict[str, Any]:
        return {
            "data_type": dict(self.data_type),
            "chunks": chunks,
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
            slice(offs[b], offs[b + 1]) if offs is not None else slice(b * c[0], b * c[0] + c[b])
            for b, offs, c in zip(block, self._offsets, self.chunks, strict=True)
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
        chunks: list[AxisChunks] = []
        for dim_chunks, size in zip(self.chunks, new_shape, strict=True):
            # A formerly empty dimension has no meaningful chunk size: use one block.
            step = dim_chunks[0] if dim_chunks and dim_chunks[0] > 0 else max(size, 1)
            chunks.append(RegularChunks(step, size))
        return ArrayStructure(
            data_type=dict(self.data_type),
            chunks=tuple(chunks),
            shape=new_shape,
            dims=self.dims,
        )


def _regular(value: dict[str, Any], shape: tuple[int, ...], axis: int) -> RegularChunks:
    step: Any = value.get("regular")
    if not _is_int(step) or step < 1 or axis >= len(shape) or len(value) != 1:
        raise ValueError(f"Invalid array structure: stored chunks {value!r} along axis {axis}")
    return RegularChunks(step, shape[axis])


def tiled_structure(structure: dict[str, Any]) -> dict[str, Any]:
    """A structure as stored (`ArrayStructure.to_stored_json`) as Tiled serves it: every block
    of a regular axis listed. Any other structure is returned as it is."""
    chunks = structure.get("chunks")
    if not isinstance(chunks, list) or not any(isinstance(c, dict) for c in chunks):
        return structure
    listed = ArrayStructure.from_json(structure, stored=True).to_json()["chunks"]
    return {**structure, "chunks": listed}
