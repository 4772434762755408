"""Array storage in a zarr v3 directory, with Tiled's write/read/patch semantics.

Layout decisions
----------------
* One zarr array per node, chunk shape = first block size along each dimension (as Tiled does),
  zarr's default codecs and fill value (0, ``False``, ``NaT`` for datetimes, empty strings).
  Small chunks are grouped into shards along the first axis (see :mod:`.layout`).
* The zarr shape is exactly the structure's shape (Tiled pads it to a whole number of chunks and
  trims on read; not padding keeps PATCH bounds checks honest).
* The Tiled structure is kept in the zarr attributes under ``"ferrotile"`` so the directory is
  self-describing: block boundaries may be irregular and cannot be recovered from zarr alone.
* Fixed-width ``S``/``U``/``V`` dtypes have no stable zarr v3 specification (zarr-python warns
  and may change their encoding), so they are stored as ``uint8`` with one extra trailing axis
  of ``itemsize`` bytes and viewed back as the logical dtype on read.
* zarr v3 always stores native byte order internally (the ``bytes`` codec handles endianness),
  so big-endian structures are converted back to the structure's dtype on read.

All methods are synchronous; the HTTP layer calls them from worker threads.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .._core import read_zarr_box
from ..errors import PatchOutOfBounds, StorageError
from . import layout
from .slicing import NormalizedSelection, Selection, normalize_selection
from .structure import ArrayStructure

__all__ = ["ZarrArray", "array_from_body"]

_ATTRS_KEY = "ferrotile"
_SPARSE_SLACK = 1 << 20
"""Elements a strided read through the engine may read beyond four times what it returns."""
_OPAQUE_KINDS = frozenset("SUV")


def array_from_body(
    body: bytes | bytearray | memoryview,
    structure_or_dtype: ArrayStructure | np.dtype[Any] | str,
    shape: Sequence[int],
) -> np.ndarray:
    """Interpret a request body as a C-ordered array without copying it.

    Parameters
    ----------
    body : bytes-like
        Raw element bytes (``ndarray.tobytes()`` on the client).
    structure_or_dtype : ArrayStructure or dtype
        Element type of the body.
    shape : sequence of int
        Shape the body encodes.

    Returns
    -------
    numpy.ndarray
        A read-only view on ``body``.

    Raises
    ------
    ValueError
        If the body length is not ``prod(shape) * itemsize``.
    """
    if isinstance(structure_or_dtype, ArrayStructure):
        dtype = structure_or_dtype.dtype
    else:
        dtype = np.dtype(structure_or_dtype)
    shape = tuple(shape)
    expected = math.prod(shape) * dtype.itemsize
    actual = memoryview(body).nbytes
    if actual != expected:
        raise ValueError(
            f"Expected {expected} bytes for shape {shape} and dtype {dtype}, got {actual}"
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def _describe(slices: Sequence[slice]) -> str:
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in slices) + "]"


class ZarrArray:
    """A Tiled array node stored as a zarr v3 array.

    Create with `ZarrArray.create` or `ZarrArray.open`; keep the object and reuse it (it holds
    the opened zarr array, so calls do not re-read metadata).
    """

    def __init__(self, directory: Path, array: zarr.Array, structure: ArrayStructure) -> None:
        self._directory = str(directory)
        self._zarr = array
        self._structure = structure
        self._dtype = structure.dtype
        self._opaque = structure.dtype.kind in _OPAQUE_KINDS
        # What zarr holds in memory: native order (or the logical dtype, viewed as bytes later).
        self._write_dtype = self._dtype if self._opaque else self._dtype.newbyteorder("=")
        # Serialises PATCHes on this object: resize + write + metadata update must not interleave.
        self._lock = threading.Lock()

    @classmethod
    def create(
        cls, directory: Path, structure: ArrayStructure, per_shard: int | None = None
    ) -> ZarrArray:
        """Create an empty (fill-valued) zarr v3 array for ``structure`` in ``directory``,
        with ``per_shard`` chunks per shard file (None: chosen from the chunk size).

        Raises
        ------
        StorageError
            If ``directory`` already holds a zarr node or cannot be written.
        """
        dtype = structure.dtype
        # Blocks may be irregular; zarr needs one size per dimension (>= 1 even if empty).
        chunks = tuple(max(c[0], 1) if c else 1 for c in structure.chunks)
        shape = structure.shape
        if dtype.kind in _OPAQUE_KINDS:
            shape, chunks = (*shape, dtype.itemsize), (*chunks, dtype.itemsize)
            dtype = np.dtype(np.uint8)
        else:
            # zarr keeps native order in memory and records endianness in the bytes codec.
            dtype = dtype.newbyteorder("=")
        dimension_names = None
        if structure.dims is not None:
            dimension_names = structure.dims + (("bytes",) if len(shape) > structure.ndim else ())
        per_shard = layout.chunks_per_shard(chunks, dtype.itemsize, per_shard)
        try:
            array = zarr.create_array(
                store=str(directory),
                shape=shape,
                **layout.sharding(chunks, per_shard),
                dtype=dtype,
                zarr_format=3,
                dimension_names=dimension_names,
                attributes={_ATTRS_KEY: {"structure": structure.to_stored_json()}},
            )
        except (zarr.errors.ContainsArrayError, zarr.errors.ContainsGroupError) as err:
            raise StorageError(f"{directory} already holds zarr data") from err
        except OSError as err:
            raise StorageError(f"Cannot create zarr array in {directory}: {err}") from err
        return cls(directory, array, structure)

    @classmethod
    def open(cls, directory: Path, structure: ArrayStructure | None = None) -> ZarrArray:
        """Open an array previously made by `ZarrArray.create`, as ``structure`` (the catalog's,
        which is what was acknowledged) or else as its own attributes say. After a crash the
        zarr metadata may be one append ahead of the catalog (its data is on disk, it was never
        acknowledged); reads then stop at the catalog's shape and the next append replaces it.

        Raises
        ------
        StorageError
            If there is no ferrotile zarr array in ``directory``.
        """
        try:
            array = zarr.open_array(store=str(directory), mode="r+", zarr_format=3)
            ours: Any = array.attrs[_ATTRS_KEY]
            structure = structure or ArrayStructure.from_json(ours["structure"], stored=True)
        except (OSError, KeyError, TypeError, ValueError, zarr.errors.BaseZarrError) as err:
            raise StorageError(f"No ferrotile zarr array in {directory}: {err}") from err
        return cls(directory, array, structure)

    @property
    def structure(self) -> ArrayStructure:
        """The current structure (updated by `patch`)."""
        return self._structure

    # -- conversions between logical arrays and what zarr holds ------------------------------

    def _to_storage(self, data: np.ndarray) -> np.ndarray:
        try:
            data = np.asarray(data).astype(self._write_dtype, casting="same_kind", copy=False)
        except TypeError as err:
            raise ValueError(f"Cannot store {data.dtype} data in a {self._dtype} array") from err
        if self._opaque:
            flat = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
            return flat.reshape((*data.shape, self._dtype.itemsize))
        return data

    def _read(self, sel: NormalizedSelection) -> np.ndarray:
        index = sel.forward + ((slice(None),) if self._opaque else ())
        raw = self._read_stored(index)
        if self._opaque:
            out = np.ascontiguousarray(raw).view(self._dtype).reshape(sel.shape)
        else:
            out = raw.astype(self._dtype, copy=False)
        if sel.flip_axes:
            # Reversed slices: zarr only reads forward, so flip here and hand back C order.
            out = np.ascontiguousarray(np.flip(out, axis=sel.flip_axes))
        return out

    def _read_stored(self, index: tuple[int | slice, ...]) -> np.ndarray:
        """``zarr[index]`` (forward slices and integers), read by the engine's reader when the
        array is in a layout it writes: the bounding box in one call without the GIL, then the
        steps and integers applied to it (zarr-python costs ~0.1 ms per chunk read, which an
        array appended frame by frame has one of per frame)."""
        start: list[int] = []
        size: list[int] = []
        within: list[int | slice] = []
        shape = self._structure.shape + ((self._dtype.itemsize,) if self._opaque else ())
        returned = 1  # elements the selection gives
        for i, n in zip(index, shape, strict=True):
            if isinstance(i, int):
                start.append(i)
                size.append(1)
                within.append(0)
                continue
            first, stop, step = i.indices(n)
            count = len(range(first, stop, step))
            returned *= count
            start.append(first)
            size.append((count - 1) * step + 1 if count else 0)
            within.append(slice(None, None, step))
        # A strided selection far sparser than its bounding box (``::1000`` of a long array) is
        # left to zarr-python, which reads only the chunks it touches.
        sparse = math.prod(size) > 4 * returned + _SPARSE_SLACK
        found = None if sparse else read_zarr_box(self._directory, start, size)
        if found is None:
            return np.asarray(self._zarr[index])
        data, big_endian = found
        stored = np.dtype(self._zarr.dtype).newbyteorder(">" if big_endian else "<")
        # The Ellipsis keeps a 0-d array (not a NumPy scalar) when every index is an integer.
        box = np.frombuffer(data, dtype=stored).reshape(size)[(*within, ...)]
        return box if box.flags.c_contiguous else box.copy()  # C order, as zarr gives

    def _check_shape(self, data: np.ndarray, expected: tuple[int, ...], what: str) -> None:
        if tuple(data.shape) != tuple(expected):
            raise ValueError(f"Expected data of shape {expected} for {what}, got {data.shape}")

    # -- public operations --------------------------------------------------------------------

    def write_full(self, data: np.ndarray) -> None:
        """Overwrite the whole array; ``data.shape`` must equal the structure's shape."""
        self._check_shape(data, self._structure.shape, "the full array")
        self._zarr[...] = self._to_storage(data)

    def write_block(self, block: tuple[int, ...], data: np.ndarray) -> None:
        """Overwrite one block; ``data.shape`` must equal the block's shape.

        Raises
        ------
        ValueError
            "Block index out of range" for a bad block, or a shape mismatch.
        """
        slices = self._structure.block_slices(tuple(block))
        self._check_shape(data, self._structure.block_shape(tuple(block)), f"block {block}")
        index = slices + ((slice(None),) if self._opaque else ())
        self._zarr[index] = self._to_storage(data)

    def read(self, slice_tuple: Selection = ()) -> np.ndarray:
        """Read ``array[slice_tuple]`` (numpy semantics, negative steps allowed).

        Returns
        -------
        numpy.ndarray
            C-contiguous, in the structure's dtype (byte order included).
        """
        return self._read(normalize_selection(tuple(slice_tuple), self._structure.shape))

    def read_block(self, block: tuple[int, ...], slice_tuple: Selection = ()) -> np.ndarray:
        """Read ``block`` or ``block[slice_tuple]`` (same return type as `read`)."""
        block_slices = self._structure.block_slices(tuple(block))
        block_shape = self._structure.block_shape(tuple(block))
        sel = normalize_selection(tuple(slice_tuple), block_shape)
        # Normalised indices are non-negative and forward, so composing is just an offset.
        forward: list[int | slice] = []
        for outer, inner in zip(block_slices, sel.forward, strict=True):
            base = outer.start
            if isinstance(inner, slice):
                forward.append(slice(base + inner.start, base + inner.stop, inner.step))
            else:
                forward.append(base + inner)
        return self._read(NormalizedSelection(tuple(forward), sel.flip_axes, sel.shape))

    def patch(
        self,
        data: np.ndarray,
        offset: tuple[int, ...],
        extend: bool,
        structure: ArrayStructure,
    ) -> ArrayStructure:
        """Write ``data`` at ``offset``, growing the array if ``extend``.

        Parameters
        ----------
        data : numpy.ndarray
            Same rank as the array.
        offset : tuple of int
            Where ``data[0, 0, ...]`` goes; missing trailing dimensions default to 0.
        extend : bool
            Allow the array to grow to ``max(shape, offset + data.shape)`` per dimension; any
            gap is filled with the fill value.
        structure : ArrayStructure
            The catalog's current structure; it is authoritative for the current shape.

        Returns
        -------
        ArrayStructure
            The structure after the patch (chunks regrown regularly if the shape changed).

        Raises
        ------
        PatchOutOfBounds
            If the data does not fit and ``extend`` is false ("... Use ?extend=true ...").
        ValueError
            Negative or too-long offset, or rank mismatch.
        """
        ndim = structure.ndim
        if len(offset) > ndim or any(o < 0 for o in offset):
            raise ValueError(
                f"Invalid offset {tuple(offset)} for a {ndim}-dimensional array: "
                "expected at most one non-negative integer per dimension"
            )
        if data.ndim != ndim:
            raise ValueError(f"Expected {ndim}-dimensional data for PATCH, got {data.ndim}")
        full_offset = tuple(offset) + (0,) * (ndim - len(offset))
        target = tuple(slice(o, o + n) for o, n in zip(full_offset, data.shape, strict=True))
        current = structure.shape
        new_shape = tuple(max(c, s.stop) for c, s in zip(current, target, strict=True))
        if new_shape != current and not extend:
            # Tiled's wording; the client rewrites "Use ?" to "Pass keyword argument ".
            raise PatchOutOfBounds(
                f"Slice {_describe(target)} does not fit within current array shape "
                f"{current}. Use ?extend=true to extend the array dimensions to fit."
            )
        new_structure = structure if new_shape == current else structure.with_shape(new_shape)
        payload = self._to_storage(data)
        extra = (self._dtype.itemsize,) if self._opaque else ()
        with self._lock:
            if tuple(self._zarr.shape) != new_shape + extra:
                # The catalog is authoritative: bring the zarr shape in line with it.
                self._zarr.resize(new_shape + extra)
            self._zarr[target + ((slice(None),) if self._opaque else ())] = payload
            if new_structure != self._structure:
                stored = new_structure.to_stored_json()
                self._zarr.update_attributes({_ATTRS_KEY: {"structure": stored}})
            self._structure = new_structure
        return new_structure
