"""Sparse (COO) arrays: Tiled's ``COOStructure``, COO slicing, and block storage in Parquet.

Layout decisions
----------------
* One directory per node holding one Parquet file per block, ``block-i.j.parquet`` (as Tiled's
  ``SparseBlocksParquetAdapter``), with columns ``dim0..dimN`` (coordinates *within the block*)
  and ``data``. A block never written is all fill value (0).
* Every file is written to a temporary name in the same directory and renamed over the old one,
  so a reader sees the old block or the new one, never a partial file. A full write stages all
  blocks first and renames them last, so a failure while staging changes nothing.
* Coordinates are stored in the structure's ``coord_data_type`` and values in ``data_type``,
  both in native byte order (Arrow has no big-endian types).

All functions are synchronous; the HTTP layer calls them from worker threads.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .dtypes import data_type_to_numpy
from .slicing import Selection, normalize_selection
from .structure import ArrayStructure

__all__ = ["SparseBlocks", "SparseStructure", "coo_from_table", "coo_table", "slice_coo"]

#: Value kinds Arrow and Parquet can hold as plain numpy columns.
_DATA_KINDS = frozenset("biuf")
_DEFAULT_DATA_TYPE = {"endianness": "little", "kind": "f", "itemsize": 8, "dt_units": None}
_DEFAULT_COORD_TYPE = {"endianness": "little", "kind": "u", "itemsize": 8, "dt_units": None}


@dataclass(frozen=True)
class SparseStructure:
    """Validated Tiled ``COOStructure``.

    Attributes
    ----------
    array : ArrayStructure
        Shape, chunks, dims and value ``data_type`` (validated like a dense array's). Tiled
        allows a null ``data_type`` (its own ``write_block`` example omits it), but the stock
        client then cannot open the node (``BuiltinDtype.from_json(None)``), so null means
        float64, the default dtype of ``sparse.COO``.
    coord_data_type : dict
        Tiled BuiltinDtype JSON of the coordinates (an integer type; Tiled's default is uint64).
    """

    array: ArrayStructure
    coord_data_type: dict[str, Any]

    @classmethod
    def from_json(cls, d: Any) -> SparseStructure:
        """Parse and validate COO structure JSON.

        Parameters
        ----------
        d : dict
            ``{"chunks", "shape", "data_type", "coord_data_type", "dims", "resizable",
            "layout"}``; ``coord_data_type``, ``dims``, ``resizable`` and ``layout`` may be
            omitted.

        Raises
        ------
        ValueError
            With a message naming the first problem found.
        """
        if not isinstance(d, dict):
            raise ValueError("Invalid sparse structure: expected a JSON object")
        layout = d.get("layout", "COO")
        if layout != "COO":
            raise ValueError(
                f"Invalid sparse structure: only layout 'COO' is supported: {layout!r}"
            )
        data_type = d.get("data_type") or _DEFAULT_DATA_TYPE
        try:
            array = ArrayStructure.from_json({**d, "data_type": data_type})
        except ValueError as exc:
            message = str(exc).replace("Invalid array structure", "Invalid sparse structure")
            raise ValueError(message) from None
        if array.dtype.kind not in _DATA_KINDS:
            raise ValueError(
                f"Invalid sparse structure: values of dtype {array.dtype} are not supported "
                "(use a boolean, integer or floating-point type)"
            )
        coord_type = d.get("coord_data_type") or _DEFAULT_COORD_TYPE
        if not isinstance(coord_type, dict):
            raise ValueError("Invalid sparse structure: coord_data_type must be an object")
        if data_type_to_numpy(coord_type).kind not in "iu":
            raise ValueError("Invalid sparse structure: coord_data_type must be an integer type")
        return cls(array, dict(coord_type))

    def to_json(self) -> dict[str, Any]:
        """Return the structure as Tiled JSON, keys in Tiled's order."""
        dense = self.array.to_json()
        return {
            "chunks": dense["chunks"],
            "shape": dense["shape"],
            "data_type": dense["data_type"],
            "coord_data_type": dict(self.coord_data_type),
            "dims": dense["dims"],
            "resizable": False,
            "layout": "COO",
        }

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """Value dtype in native byte order (what is stored and served)."""
        return self.array.dtype.newbyteorder("=")

    @property
    def coord_dtype(self) -> np.dtype[Any]:
        """Coordinate dtype in native byte order."""
        return data_type_to_numpy(self.coord_data_type).newbyteorder("=")


COO = tuple[np.ndarray, np.ndarray]
"""``(coords, data)``: coords of shape ``(ndim, nnz)``, data of shape ``(nnz,)``."""


def coo_from_table(table: Any, shape: tuple[int, ...], structure: SparseStructure) -> COO:
    """Validate a ``pyarrow.Table`` with columns ``dim0..dimN, data`` against ``shape``.

    Other columns (e.g. the pandas index the stock client sends) are ignored.

    Parameters
    ----------
    table : pyarrow.Table
    shape : tuple of int
        Shape the coordinates index (the whole array or one block).
    structure : SparseStructure
        Gives the value and coordinate dtypes.

    Returns
    -------
    tuple
        ``(coords, data)`` cast to the structure's dtypes.

    Raises
    ------
    ValueError
        Missing columns, nulls, non-integer or out-of-range coordinates, or values that cannot
        be cast to the structure's dtype without changing their kind.
    """
    names = [f"dim{i}" for i in range(len(shape))]
    missing = [n for n in (*names, "data") if n not in table.column_names]
    if missing:
        raise ValueError(f"Sparse body lacks column(s) {missing}; expected {[*names, 'data']}")
    columns = {}
    for name in (*names, "data"):
        column = table.column(name)
        if column.null_count:
            raise ValueError(f"Column {name!r} contains nulls")
        columns[name] = column.to_numpy()
    data = columns["data"]
    target = structure.dtype
    if data.dtype.kind not in _DATA_KINDS or not np.can_cast(
        data.dtype, target, casting="same_kind"
    ):
        raise ValueError(f"Values of dtype {data.dtype} do not fit the structure's {target}")
    coord_dtype = structure.coord_dtype
    coords = np.empty((len(shape), len(data)), dtype=coord_dtype)
    for axis, (name, size) in enumerate(zip(names, shape, strict=True)):
        values = columns[name]
        if values.dtype.kind not in "iu":
            raise ValueError(f"Coordinates {name!r} must be integers, not {values.dtype}")
        if len(values) and (values.min() < 0 or values.max() >= size):
            raise ValueError(
                f"Coordinates {name!r} must lie in [0, {size}) for shape {shape}, got range "
                f"[{values.min()}, {values.max()}]"
            )
        coords[axis] = values
    return coords, data.astype(target, copy=False)


def coo_table(coords: np.ndarray, data: np.ndarray) -> Any:
    """The ``pyarrow.Table`` Tiled serves: columns ``dim0..dimN`` then ``data``."""
    import pyarrow as pa

    arrays = [pa.array(c) for c in coords] + [pa.array(data)]
    return pa.Table.from_arrays(arrays, names=[f"dim{i}" for i in range(len(coords))] + ["data"])


def slice_coo(
    coords: np.ndarray, data: np.ndarray, selection: Selection, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Apply a numpy-style selection to a COO array without densifying it.

    Parameters
    ----------
    coords, data : numpy.ndarray
        The COO array (``coords`` of shape ``(ndim, nnz)``).
    selection : tuple
        From :func:`~ferrotile.storage.slicing.parse_slice` (ints, slices, ``...``).
    shape : tuple of int
        Shape of the array being sliced.

    Returns
    -------
    tuple
        ``(coords, data, shape)`` of the result; integer indices drop their dimension.
    """
    norm = normalize_selection(selection, shape)
    keep = np.ones(coords.shape[1], dtype=bool)
    out_axes: list[np.ndarray] = []
    for axis, index in enumerate(norm.forward):
        c = coords[axis].astype(np.int64)
        if isinstance(index, int):
            keep &= c == index
            continue
        start, stop, step = index.start, index.stop, index.step
        keep &= (c >= start) & (c < stop) & ((c - start) % step == 0)
        out_axes.append((c - start) // step)
    for axis in norm.flip_axes:
        out_axes[axis] = norm.shape[axis] - 1 - out_axes[axis]
    if out_axes:
        new = np.stack([a[keep] for a in out_axes]).astype(coords.dtype, copy=False)
    else:
        new = np.empty((0, int(keep.sum())), dtype=coords.dtype)
    return new, data[keep], norm.shape


class SparseBlocks:
    """One node's COO blocks in a directory of Parquet files."""

    def __init__(self, directory: Path, structure: SparseStructure) -> None:
        self.directory = directory
        self.structure = structure

    def _path(self, block: tuple[int, ...]) -> Path:
        return self.directory / f"block-{'.'.join(map(str, block))}.parquet"

    def _stage(self, block: tuple[int, ...], coords: np.ndarray, data: np.ndarray) -> Path:
        import pyarrow.parquet as pq

        temp = self.directory / f".tmp-{uuid.uuid4().hex}.parquet"
        try:
            with temp.open("wb") as out:
                pq.write_table(coo_table(coords, data), out)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        return temp

    def _commit(self, staged: dict[tuple[int, ...], Path]) -> None:
        try:
            for block, temp in staged.items():
                os.replace(temp, self._path(block))
        finally:
            for temp in staged.values():
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()

    def write_block(self, block: tuple[int, ...], coords: np.ndarray, data: np.ndarray) -> None:
        """Replace one block (``coords`` relative to the block's origin, already validated)."""
        self._commit({block: self._stage(block, coords, data)})

    def write_full(self, coords: np.ndarray, data: np.ndarray) -> None:
        """Replace the whole array: split the entries by block and rewrite every block."""
        chunks = self.structure.array.chunks
        edges = [np.cumsum(c) for c in chunks]
        # Block index of each entry along each axis: the first block whose end exceeds it.
        block_ids = [
            np.searchsorted(e, c, side="right") for e, c in zip(edges, coords, strict=True)
        ]
        staged: dict[tuple[int, ...], Path] = {}
        try:
            for block in itertools.product(*(range(len(c)) for c in chunks)):
                mask = np.ones(len(data), dtype=bool)
                for ids, b in zip(block_ids, block, strict=True):
                    mask &= ids == b
                origin = [int(e[b] - c[b]) for e, c, b in zip(edges, chunks, block, strict=True)]
                local = coords[:, mask] - np.array(origin, dtype=coords.dtype).reshape(-1, 1)
                staged[block] = self._stage(block, local.astype(coords.dtype), data[mask])
        except BaseException:
            # Nothing was renamed yet: dropping the staged files leaves the old data intact.
            for temp in staged.values():
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            raise
        self._commit(staged)

    def read_block(self, block: tuple[int, ...]) -> COO:
        """One block's entries, coordinates relative to the block (empty if never written)."""
        import pyarrow.parquet as pq

        ndim = len(self.structure.shape)
        path = self._path(block)
        if not path.exists():
            return (
                np.empty((ndim, 0), dtype=self.structure.coord_dtype),
                np.empty(0, dtype=self.structure.dtype),
            )
        table = pq.read_table(path)
        coords = np.empty((ndim, table.num_rows), dtype=self.structure.coord_dtype)
        for axis in range(ndim):
            coords[axis] = table.column(f"dim{axis}").to_numpy()
        return coords, table.column("data").to_numpy().astype(self.structure.dtype, copy=False)

    def read_full(self) -> COO:
        """All entries in global coordinates."""
        chunks = self.structure.array.chunks
        parts_c, parts_d = [], []
        for block in itertools.product(*(range(len(c)) for c in chunks)):
            coords, data = self.read_block(block)
            if not len(data):
                continue
            origin = [sum(c[:b]) for c, b in zip(chunks, block, strict=True)]
            parts_c.append(coords + np.array(origin, dtype=coords.dtype).reshape(-1, 1))
            parts_d.append(data)
        if not parts_d:
            return (
                np.empty((len(chunks), 0), dtype=self.structure.coord_dtype),
                np.empty(0, dtype=self.structure.dtype),
            )
        return np.concatenate(parts_c, axis=1), np.concatenate(parts_d)
