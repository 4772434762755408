"""Lazy readers of registered array files: images (single or numbered series), ``.npy``, HDF5
datasets (in one file, or the same dataset in several files joined along the first axis) and
zarr arrays.

Each reader knows the shape and dtype that are *on disk now* and reads only what a forward
selection (non-negative ints, positive-step slices, one per dimension) needs. Comparing that
shape with the advertised structure is :mod:`ferrotile.storage.external.serve`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ferrotile.storage.external.errors import Unreadable

Forward = tuple[int | slice, ...]


class FileArray(Protocol):
    """What the array routes need from a registered file (or series of files)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype[Any]: ...

    @property
    def paths(self) -> tuple[Path, ...]: ...

    def read(self, forward: Forward) -> np.ndarray: ...


def _corrupt(path: Path, exc: BaseException) -> Unreadable:
    return Unreadable(f"Cannot read {str(path)!r}: {type(exc).__name__}: {exc}")


def read_image(path: Path, kind: str) -> np.ndarray:
    """Decode a whole TIFF (all pages), PNG or JPEG file."""
    try:
        if kind == "application/x-npy":  # a numbered series of .npy files stacks like frames
            return np.load(path, allow_pickle=False)
        if kind == "image/tiff":
            import tifffile

            return np.asarray(tifffile.imread(path))
        from PIL import Image

        with Image.open(path) as image:
            return np.asarray(image)
    except Exception as exc:  # every decoder has its own error types; all mean "bad file"
        raise _corrupt(path, exc) from None


def _image_header(path: Path, kind: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype of an image without decoding its pixels where the format allows."""
    if kind == "application/x-npy":
        try:
            header = np.load(path, mmap_mode="r", allow_pickle=False)
            return tuple(header.shape), header.dtype
        except Exception as exc:
            raise _corrupt(path, exc) from None
    if kind == "image/tiff":
        try:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                return tuple(series.shape), np.dtype(series.dtype)
        except Exception as exc:
            raise _corrupt(path, exc) from None
    frame = read_image(path, kind)
    return frame.shape, frame.dtype


class ImageFiles:
    """One image file, or a numbered series stacked along a new leading axis.

    Frames that do not exist yet make the series shorter (the first missing file ends it), so
    a series registered ahead of acquisition reads as "not ready yet" rather than broken.
    """

    def __init__(self, paths: Sequence[Path], kind: str, *, stacked: bool) -> None:
        if not paths:
            raise Unreadable("An image data source needs at least one file")
        if not stacked and len(paths) != 1:
            raise Unreadable(f"A single {kind} data source takes one file, got {len(paths)}")
        self._paths = tuple(paths)
        self._kind = kind
        self._stacked = stacked
        self._header: tuple[tuple[int, ...], np.dtype[Any]] | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        return self._paths

    def _frame(self) -> tuple[tuple[int, ...], np.dtype[Any]]:
        if self._header is None:
            if not self._paths[0].is_file():
                raise Unreadable(f"The file {str(self._paths[0])!r} does not exist")
            self._header = _image_header(self._paths[0], self._kind)
        return self._header

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._frame()[1]

    @property
    def shape(self) -> tuple[int, ...]:
        frame_shape = self._frame()[0]
        if not self._stacked:
            return frame_shape
        present = 0
        for path in self._paths:
            if not path.is_file():
                break
            present += 1
        return (present, *frame_shape)

    def _read_frame(self, index: int, rest: Forward) -> np.ndarray:
        path = self._paths[index]
        frame = read_image(path, self._kind)
        expected = self._frame()[0]
        if frame.shape != expected:
            raise Unreadable(
                f"Frame {index} ({str(path)!r}) has shape {frame.shape}, expected {expected}"
            )
        return frame[rest]

    def read(self, forward: Forward) -> np.ndarray:
        if not self._stacked:
            return read_image(self._paths[0], self._kind)[forward]
        first, rest = forward[0], forward[1:]
        if isinstance(first, int):
            return self._read_frame(first, rest)
        indices = range(*first.indices(len(self._paths)))
        frames = [self._read_frame(i, rest) for i in indices]
        if not frames:
            empty = np.empty((self.shape[0], *self._frame()[0]), dtype=self.dtype)
            return empty[forward]
        return np.stack(frames)


class NpyFile:
    """A ``.npy`` file, memory-mapped so a slice reads only its pages."""

    def __init__(self, path: Path) -> None:
        try:
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise _corrupt(path, exc) from None
        self._path = path

    shape = property(lambda self: tuple(self._array.shape))
    dtype = property(lambda self: self._array.dtype)
    paths = property(lambda self: (self._path,))

    def read(self, forward: Forward) -> np.ndarray:
        try:
            return np.array(self._array[forward])
        except (OSError, ValueError) as exc:  # truncated since it was mapped
            raise _corrupt(self._path, exc) from None


class Hdf5Dataset:
    """One dataset of an HDF5 file (``parameters.dataset`` names it)."""

    def __init__(self, path: Path, dataset: str) -> None:
        import h5py

        try:
            self._file = h5py.File(path, "r", locking=False)
        except Exception as exc:
            raise _corrupt(path, exc) from None
        node = self._file.get(dataset)
        if not isinstance(node, h5py.Dataset):
            self._file.close()
            raise Unreadable(f"{str(path)!r} has no dataset {dataset!r}")
        self._dataset = node
        self._path = path

    shape = property(lambda self: tuple(self._dataset.shape))
    dtype = property(lambda self: np.dtype(self._dataset.dtype))
    paths = property(lambda self: (self._path,))

    def read(self, forward: Forward) -> np.ndarray:
        try:
            return np.asarray(self._dataset[forward])
        except Exception as exc:
            raise _corrupt(self._path, exc) from None

    def close(self) -> None:
        self._file.close()


class ZarrDirectory:
    """A zarr v2 or v3 array directory (``path`` names an array inside a group, if any)."""

    def __init__(self, root: Path, path: str = "") -> None:
        import zarr

        try:
            self._array = zarr.open_array(str(root), mode="r", path=path)
        except Exception as exc:
            raise _corrupt(root, exc) from None
        self._root = root

    shape = property(lambda self: tuple(self._array.shape))
    dtype = property(lambda self: np.dtype(self._array.dtype))
    paths = property(lambda self: (self._root,))

    def read(self, forward: Forward) -> np.ndarray:
        try:
            return np.asarray(self._array[forward])
        except Exception as exc:
            raise _corrupt(self._root, exc) from None


class Hdf5Series:
    """The same dataset in several HDF5 files, concatenated along the first axis: how Tiled's
    HDF5 adapter serves several ``data_uris`` (e.g. one file per Bluesky StreamResource of one
    data key, or an HDF5 file series written from a template)."""

    def __init__(self, paths: Sequence[Path], dataset: str) -> None:
        self._parts: list[Hdf5Dataset] = []
        try:
            for path in paths:
                self._parts.append(Hdf5Dataset(path, dataset))
        except Unreadable:
            self.close()
            raise
        first = self._parts[0].shape
        for part in self._parts[1:]:
            if not first or part.shape[1:] != first[1:] or part.dtype != self._parts[0].dtype:
                found = [(str(p.paths[0]), p.shape, str(p.dtype)) for p in self._parts]
                self.close()
                raise Unreadable(
                    f"The files of {dataset!r} cannot be joined along their first axis: {found}"
                )
        self._starts = np.cumsum([0, *(part.shape[0] for part in self._parts)])

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self._starts[-1]), *self._parts[0].shape[1:])

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._parts[0].dtype

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(part.paths[0] for part in self._parts)

    def read(self, forward: Forward) -> np.ndarray:
        first, rest = forward[0], forward[1:]
        if isinstance(first, int):
            index = int(np.searchsorted(self._starts, first, side="right")) - 1
            return self._parts[index].read((first - int(self._starts[index]), *rest))
        wanted = np.arange(first.start, first.stop, first.step)
        pieces = []
        for part, start, stop in zip(self._parts, self._starts[:-1], self._starts[1:], strict=True):
            local = wanted[(wanted >= start) & (wanted < stop)] - start
            if local.size:
                chosen = slice(int(local[0]), int(local[-1]) + 1, first.step)
                pieces.append(part.read((chosen, *rest)))
        if not pieces:
            return self._parts[0].read((slice(0, 0), *rest))
        return np.concatenate(pieces, axis=0)

    def close(self) -> None:
        for part in self._parts:
            part.close()
