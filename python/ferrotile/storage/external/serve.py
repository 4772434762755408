"""Serving a registered data source: open the right reader, check the advertised structure.

The structure in the catalog is what the client was told; the files may differ (still being
written, replaced, truncated). As Tiled 0.2.18+: data *longer* than advertised along the
leading axis is served truncated; *shorter* data answers 503 ``Retry-After`` while a file was
modified recently (it is probably being written) and 422 otherwise; anything else is 422.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ferrotile.catalog.models import DataSource
from ferrotile.storage.external import mimetypes as mt
from ferrotile.storage.external.allowlist import check_readable
from ferrotile.storage.external.arrays import (
    FileArray,
    Hdf5Dataset,
    Hdf5Series,
    ImageFiles,
    NpyFile,
    ZarrDirectory,
)
from ferrotile.storage.external.errors import NotReady, Unreadable, UnsupportedMimetype
from ferrotile.storage.slicing import NormalizedSelection, Selection, normalize_selection
from ferrotile.storage.structure import ArrayStructure


def not_ready_window() -> float:
    return float(os.environ.get("TILED_ARRAY_NOT_READY_WINDOW", "10"))


def retry_after() -> str:
    return os.environ.get("TILED_ARRAY_RETRY_AFTER", "1")


def asset_paths(ds: DataSource, readable: Sequence[Path]) -> list[Path]:
    """The data source's files in series order (``num``), each checked against the allowlist."""
    ordered = sorted(
        enumerate(ds.assets), key=lambda ia: (ia[1].num is None, ia[1].num or 0, ia[0])
    )
    return [check_readable(asset.data_uri, readable) for _, asset in ordered]


def open_array(ds: DataSource, readable: Sequence[Path]) -> FileArray:
    """A lazy reader of a registered array data source (nothing is read yet beyond headers)."""
    mimetype = mt.normalize(ds.mimetype)
    paths = asset_paths(ds, readable)
    if not paths:
        raise Unreadable("This registered data source has no assets")
    if mimetype in mt.FRAME_OF:
        return ImageFiles(paths, mt.FRAME_OF[mimetype], stacked=True)
    if mimetype in (mt.TIFF, mt.PNG, mt.JPEG):
        return ImageFiles(paths, mimetype, stacked=False)
    if mimetype == mt.NPY:
        return NpyFile(paths[0])
    if mimetype == mt.HDF5:
        dataset = ds.parameters.get("dataset") or ds.parameters.get("path")
        if not dataset:
            raise Unreadable("An HDF5 array data source needs parameters.dataset")
        if len(paths) > 1:
            return Hdf5Series(paths, str(dataset))
        return Hdf5Dataset(paths[0], str(dataset))
    if mimetype == mt.ZARR:
        return ZarrDirectory(paths[0], str(ds.parameters.get("path") or ""))
    raise UnsupportedMimetype(f"No array reader for media type {ds.mimetype!r}")


def _recently_modified(paths: Sequence[Path]) -> bool:
    now = time.time()
    window = not_ready_window()
    for path in paths:
        try:
            if now - path.stat().st_mtime < window:
                return True
        except OSError:
            continue
    return False


def _apply(data: np.ndarray, selection: Selection) -> np.ndarray:
    norm = normalize_selection(selection, data.shape)
    out = data[norm.forward]
    return np.flip(out, norm.flip_axes) if norm.flip_axes else out


def read_array(
    array: FileArray,
    structure: ArrayStructure,
    selection: Selection,
    disk_chunks: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Read ``selection`` (in advertised coordinates) of a registered array.

    Parameters
    ----------
    array : FileArray
        From :func:`open_array`.
    structure : ArrayStructure
        The advertised structure.
    selection : tuple
        Parsed ``slice=`` (numpy semantics, against ``structure.shape``).
    disk_chunks : sequence of sequence of int, optional
        ``properties.chunks``: the on-disk chunking when the structure reshapes the file.

    Raises
    ------
    NotReady
        Fewer rows on disk than advertised, a file modified within the not-ready window.
    Unreadable
        Any other mismatch, or a corrupt file.
    """
    advertised = structure.shape
    actual = array.shape
    if disk_chunks:
        disk_shape = tuple(sum(c) for c in disk_chunks)
        if actual != disk_shape or int(np.prod(actual)) != int(np.prod(advertised)):
            raise Unreadable(
                f"Can not reshape array of shape {actual} (registered as {disk_shape}) "
                f"to the advertised shape {advertised}"
            )
        whole = array.read(tuple(slice(0, n) for n in actual)).reshape(advertised)
        return _cast(_apply(whole, selection), structure)
    norm = normalize_selection(selection, advertised)
    if actual != advertised:
        # Tiled's order (``force_reshape``): longer along the leading axis is truncated, the
        # same number of elements is reshaped, shorter along the leading axis is "not yet".
        same_rank_tail = len(actual) == len(advertised) and actual[1:] == advertised[1:]
        longer = same_rank_tail and actual[0] > advertised[0]
        if not longer and _count(actual) == _count(advertised):
            return _cast(_read_reshaped(array, advertised, norm), structure)
        if not same_rank_tail:
            raise Unreadable(
                f"Can not reshape array of shape {actual} to the advertised shape {advertised}"
            )
        if actual[0] < advertised[0] and _needs_rows(norm.forward[0]) > actual[0]:
            detail = (
                f"The structure advertises shape {advertised}, but only {actual} is currently "
                "available in the storage."
            )
            if _recently_modified(array.paths):
                raise NotReady(
                    detail + " The data may still be being written; retry shortly.",
                    headers={"Retry-After": retry_after()},
                )
            raise Unreadable(detail)
        # Longer on disk than advertised: the forward selection already stays inside it.
    out = array.read(norm.forward)
    if norm.flip_axes:
        out = np.flip(out, norm.flip_axes)
    return _cast(out, structure)


def _count(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _read_reshaped(
    array: FileArray, advertised: tuple[int, ...], norm: NormalizedSelection
) -> np.ndarray:
    """``norm`` (advertised coordinates) of a file holding the same elements in another shape,
    e.g. an HDF5 dataset of (3, 5, 7) registered as (3, 1, 5, 7).

    When both shapes share the leading axis, row ``i`` of one is row ``i`` of the other, so
    only the selected rows are read; otherwise the whole array is read and reshaped.
    """
    actual = array.shape
    forward = norm.forward
    if actual and advertised and actual[0] == advertised[0]:
        first, rest = forward[0], forward[1:]
        rows = array.read((first, *(slice(0, n) for n in actual[1:])))
        if isinstance(first, int):
            out = rows.reshape(advertised[1:])[rest]
        else:
            out = rows.reshape((rows.shape[0], *advertised[1:]))[(slice(None), *rest)]
    else:
        out = array.read(tuple(slice(0, n) for n in actual)).reshape(advertised)[forward]
    return np.flip(out, norm.flip_axes) if norm.flip_axes else out


def _needs_rows(first: Any) -> int:
    """How many leading rows a forward index touches (its end)."""
    if isinstance(first, int):
        return first + 1
    return int(first.stop) if first.stop > first.start else 0


def _cast(data: np.ndarray, structure: ArrayStructure) -> np.ndarray:
    if data.dtype != structure.dtype:
        try:
            return data.astype(structure.dtype)
        except (TypeError, ValueError) as exc:
            detail = f"Cannot serve {data.dtype} data as {structure.dtype}: {exc}"
            raise Unreadable(detail) from None
    return data
