"""The inside of a registered HDF5 file or zarr group: groups as containers, datasets as arrays.

``tiled register`` (and ``Container.register`` without a dataset) records an HDF5 file or a zarr
group as *one* container node. Its children are not catalog rows: like Tiled's ``HDF5Adapter``
and ``ZarrGroupAdapter``, the server reads them from the file when asked. Each one is served as
a synthetic, read-only :class:`Node` whose data source is the file plus the path inside it
(``parameters.dataset`` for HDF5, ``parameters.path`` for zarr), so the ordinary external array
readers (:mod:`ferrotile.storage.external.serve`) read its data.

Synthetic nodes have negative ids: catalog ids are never negative, so they cannot collide with a
catalog row, an open writable array or a stream topic.

Every call resolves the file against the readable directories again (the allowlist may have
changed since the file was registered). What was read from a file is cached briefly per process,
keyed by the file's modification time and size too, so a file written in place is seen soon.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ferrotile.catalog.models import DataSource, Node
from ferrotile.storage.dtypes import numpy_to_data_type
from ferrotile.storage.external import mimetypes as mt
from ferrotile.storage.external.allowlist import check_readable
from ferrotile.storage.external.describe import _attrs, _regular
from ferrotile.storage.external.errors import ExternalDataError, Unreadable

#: How long (seconds) a listing or description read from a file is reused.
CACHE_SECONDS = 2.0
CACHE_ENTRIES = 256

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One group or dataset inside a file, as the catalog would have described it."""

    key: str
    family: str  # "container" or "array"
    structure: dict[str, Any] | None
    metadata: dict[str, Any]


def is_file_container(node: Node) -> bool:
    """Whether ``node`` is a container whose children live inside an HDF5 file or zarr group."""
    if node.structure_family != "container" or not node.data_sources:
        return False
    ds = node.data_sources[0]
    return ds.management == "external" and mt.normalize(ds.mimetype) in (mt.HDF5, mt.ZARR)


def synthetic_id(path: Sequence[str]) -> int:
    """A stable negative id for a node inside a file (catalog ids are >= 0)."""
    return -1 - zlib.crc32("/".join(path).encode())


def _param_key(ds: DataSource) -> str:
    return "dataset" if mt.normalize(ds.mimetype) == mt.HDF5 else "path"


def inner_path(ds: DataSource) -> tuple[str, ...]:
    """The group (or dataset) of the file that ``ds`` points at, as path segments."""
    raw = ds.parameters.get(_param_key(ds))
    if raw is None and mt.normalize(ds.mimetype) == mt.HDF5:
        raw = ds.parameters.get("path")
    if isinstance(raw, list):
        raw = "/".join(str(part) for part in raw)
    return tuple(part for part in str(raw or "").split("/") if part)


def _dims(array: Any) -> list[str] | None:
    """zarr v3 ``dimension_names`` or the v2 ``_ARRAY_DIMENSIONS`` attribute (all named)."""
    names = getattr(getattr(array, "metadata", None), "dimension_names", None)
    if names is None:
        names = array.attrs.get("_ARRAY_DIMENSIONS")
    if names is None or any(name is None for name in names):
        return None
    return [str(name) for name in names]


def _array(
    key: str, shape: tuple[int, ...], dtype: Any, chunks: Any, attrs: Any, dims: Any = None
) -> Entry:
    structure = {
        "data_type": numpy_to_data_type(dtype),
        "chunks": _regular(shape, chunks or shape),
        "shape": list(shape),
        "dims": dims,
        "resizable": False,
    }
    return Entry(key, "array", structure, _attrs(attrs))


def _h5_entry(key: str, obj: Any) -> Entry:
    import h5py

    if isinstance(obj, h5py.Dataset):
        dtype = obj.dtype
        if dtype.kind == "O" and h5py.check_string_dtype(dtype) is not None:
            # Variable-length strings are served as fixed-length bytes, as Tiled does.
            dtype = np.asarray(obj[()], dtype=bytes).dtype
        return _array(key, tuple(obj.shape), dtype, obj.chunks, obj.attrs)
    return Entry(key, "container", None, _attrs(obj.attrs))


def _zarr_entry(key: str, obj: Any) -> Entry:
    import zarr

    if isinstance(obj, zarr.Array):
        return _array(key, tuple(obj.shape), obj.dtype, obj.chunks, obj.attrs, _dims(obj))
    return Entry(key, "container", None, _attrs(dict(obj.attrs)))


def _skippable(describe: Callable[[str, Any], Entry], key: str, obj: Any) -> Entry | None:
    """Describe a child for a listing; None for one this server cannot serve (e.g. a
    structured dtype or a broken link), which a listing leaves out."""
    if obj is None:
        return None
    try:
        return describe(key, obj)
    except (ValueError, TypeError, OSError):
        return None


def _h5_at(path: Path, parts: tuple[str, ...], listing: bool) -> Any:
    import h5py

    try:
        f = h5py.File(path, "r", locking=False)
    except Exception as exc:
        raise Unreadable(f"Cannot read {str(path)!r}: {type(exc).__name__}: {exc}") from None
    with f:
        obj: Any = f
        for part in parts:
            if not isinstance(obj, h5py.Group) or part not in obj:
                return None
            obj = obj.get(part)
            if obj is None:  # a broken soft or external link
                return None
        if not listing:
            return _h5_entry(parts[-1] if parts else "", obj)
        if not isinstance(obj, h5py.Group):
            return None
        entries = (_skippable(_h5_entry, str(k), obj.get(k)) for k in obj)
        return [e for e in entries if e is not None]


def _zarr_at(path: Path, parts: tuple[str, ...], listing: bool) -> Any:
    import zarr

    try:
        obj: Any = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise Unreadable(f"Cannot read {str(path)!r}: {type(exc).__name__}: {exc}") from None
    for part in parts:
        if not isinstance(obj, zarr.Group) or part not in obj:
            return None
        obj = obj[part]
    if not listing:
        return _zarr_entry(parts[-1] if parts else "", obj)
    if not isinstance(obj, zarr.Group):
        return None
    # zarr lists members in store order (unordered for a directory): sort, so pages are stable.
    members = sorted(obj.members(), key=lambda kv: str(kv[0]))
    entries = (_skippable(_zarr_entry, str(k), v) for k, v in members)
    return [e for e in entries if e is not None]


class FileTrees:
    """Reads entries and listings inside registered files, with a short per-process cache."""

    def __init__(self, ttl: float = CACHE_SECONDS, size: int = CACHE_ENTRIES) -> None:
        self._ttl = ttl
        self._size = size
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def _read(self, ds: DataSource, parts: tuple[str, ...], listing: bool, readable: Any) -> Any:
        if not ds.assets:
            raise Unreadable("This registered data source has no assets")
        path = check_readable(ds.assets[0].data_uri, readable)  # the allowlist, every time
        try:
            stat = path.stat()
        except OSError as exc:
            raise Unreadable(f"Cannot read {str(path)!r}: {exc}") from None
        key = (str(path), stat.st_mtime_ns, stat.st_size, mt.normalize(ds.mimetype), parts, listing)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(key)
                return hit[1]
        read = _h5_at if mt.normalize(ds.mimetype) == mt.HDF5 else _zarr_at
        try:
            value = read(path, parts, listing)
        except ExternalDataError:
            raise
        except Exception as exc:  # h5py/zarr raise many types; all mean "cannot read this"
            raise Unreadable(f"Cannot read {str(path)!r}: {type(exc).__name__}: {exc}") from None
        with self._lock:
            self._cache[key] = (now + self._ttl, value)
            self._cache.move_to_end(key)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return value

    def resolve(self, ancestor: Node, rest: Sequence[str], readable: Any) -> Node | None:
        """The node at ``rest`` inside the file of ``ancestor`` (a file container), or None.

        Raises
        ------
        ExternalDataError
            The file is outside the readable directories (403) or cannot be read (422).
        """
        ds = ancestor.data_sources[0]
        parts = (*inner_path(ds), *rest)
        entry = self._read(ds, parts, False, readable)
        if entry is None:
            return None
        return _node(ancestor, ds, parts, tuple(rest), entry)

    def children(self, node: Node, readable: Any) -> list[Node]:
        """The groups and datasets directly inside a file container node, in file order."""
        ds = node.data_sources[0]
        parts = inner_path(ds)
        entries = self._read(ds, parts, True, readable)
        if entries is None:
            raise Unreadable(f"{'/'.join(parts)!r} is not a group of {ds.assets[0].data_uri}")
        return [_node(node, ds, (*parts, e.key), (e.key,), e) for e in entries]


def _node(
    base: Node, ds: DataSource, parts: tuple[str, ...], rest: tuple[str, ...], entry: Entry
) -> Node:
    """A synthetic read-only node for ``entry`` (``rest`` below ``base``, ``parts`` in file)."""
    path = (*base.path, *rest)
    source = DataSource(
        id=None,
        structure_family=entry.family,
        structure=entry.structure,
        mimetype=ds.mimetype,
        parameters={**ds.parameters, _param_key(ds): "/".join(parts)},
        properties={},
        management="external",
        assets=ds.assets,
    )
    return Node(
        id=synthetic_id(path),
        path=path,
        structure_family=entry.family,
        metadata=entry.metadata,
        specs=[],
        access_tags=list(base.access_tags),
        data_sources=(source,),
        time_created=base.time_created,
        time_updated=base.time_updated,
    )
