"""Client-side inference: what a POST /api/v1/register body says about some files.

Used by ``ferrotile register`` (and tests) to build the same bodies as Tiled's client: open the
file(s), read only headers where possible, and describe structure, metadata and assets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from ferrotile.storage.dtypes import numpy_to_data_type
from ferrotile.storage.external import mimetypes as mt
from ferrotile.storage.external.arrays import (
    FileArray,
    Hdf5Dataset,
    ImageFiles,
    NpyFile,
    ZarrDirectory,
)
from ferrotile.storage.external.errors import UnsupportedMimetype
from ferrotile.storage.external.tables import check_csv_parameters, read_csv, read_parquet
from ferrotile.storage.tables.arrow_io import encode_schema


@dataclass(frozen=True)
class Described:
    """What to register for some files: one node with one external data source.

    Attributes
    ----------
    structure_family : str
        ``"array"``, ``"table"`` or ``"container"``.
    mimetype : str
        The data source's media type.
    structure : dict or None
        Tiled structure JSON (None for containers).
    metadata : dict
        Node metadata read from the file (HDF5/zarr attributes), else empty.
    assets : list of dict
        Asset JSON: ``data_uri``, ``is_directory``, ``parameter``, ``num``, ``size``, ``id``.
    parameters : dict
        Adapter arguments the server applies when reading (e.g. CSV ``sep``).
    """

    structure_family: str
    mimetype: str
    structure: dict[str, Any] | None
    metadata: dict[str, Any]
    assets: list[dict[str, Any]]
    parameters: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)

    def data_source(self) -> dict[str, Any]:
        """The data source JSON of a POST /register body."""
        return {
            "id": None,
            "structure_family": self.structure_family,
            "structure": self.structure,
            "mimetype": self.mimetype,
            "parameters": self.parameters,
            "properties": self.properties,
            "assets": self.assets,
            "management": "external",
        }

    def body(self, key: str, specs: Sequence[str] = ()) -> dict[str, Any]:
        """A complete POST /api/v1/register body creating child ``key``."""
        return {
            "id": key,
            "structure_family": self.structure_family,
            "metadata": self.metadata,
            "specs": [{"name": s, "version": None} for s in specs],
            "data_sources": [self.data_source()],
            "access_tags": None,
        }


def file_uri(path: Path) -> str:
    """``file://localhost/abs/path`` as Tiled's ``ensure_uri`` writes it (symlinks kept)."""
    return "file://localhost" + quote(str(path.absolute()))


def _assets(paths: Sequence[Path], plural: bool) -> list[dict[str, Any]]:
    def one(path: Path, num: int | None) -> dict[str, Any]:
        is_dir = path.is_dir()
        return {
            "data_uri": file_uri(path),
            "is_directory": is_dir,
            "parameter": "data_uris" if plural else "data_uri",
            "num": num,
            "size": None if is_dir else path.stat().st_size,
            "id": None,
        }

    if plural:
        return [one(p, i) for i, p in enumerate(paths)]
    return [one(paths[0], None)]


def array_structure(array: FileArray, chunks: Sequence[Sequence[int]] | None = None) -> dict:
    """Tiled ``ArrayStructure`` JSON of an on-disk array (one chunk per dim unless given)."""
    shape = array.shape
    if chunks is None:
        chunks = [[n] for n in shape]
    return {
        "data_type": numpy_to_data_type(array.dtype),
        "chunks": [list(c) for c in chunks],
        "shape": list(shape),
        "dims": None,
        "resizable": False,
    }


def _regular(shape: Sequence[int], step: Sequence[int]) -> list[list[int]]:
    out = []
    for n, s in zip(shape, step, strict=True):
        s = max(int(s), 1)
        out.append([s] * (n // s) + ([n % s] if n % s else []) if n else [0])
    return out


def _table(schema: pa.Schema, npartitions: int) -> dict[str, Any]:
    return {
        "arrow_schema": encode_schema(schema),
        "npartitions": npartitions,
        "columns": list(schema.names),
        "resizable": False,
    }


def _attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """HDF5/zarr attributes as JSON-able metadata (numpy scalars and arrays made plain)."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        out[str(key)] = value
    return out


def describe(
    mimetype: str, paths: Sequence[Path], parameters: Mapping[str, Any] | None = None
) -> Described:
    """Describe ``paths`` (one file, a numbered series, or a directory) as one node.

    Parameters
    ----------
    mimetype : str
        From :func:`media_type_for` (a series of images uses the ``multipart/related`` type).
    paths : sequence of Path
        The file(s), in series order.
    parameters : mapping, optional
        Adapter arguments (``{"sep": ";"}`` for CSV, ``{"dataset": "g/x"}`` for one HDF5
        dataset, ``{"path": "a"}`` for one array of a zarr group).

    Returns
    -------
    Described

    Raises
    ------
    UnsupportedMimetype
        No reader for ``mimetype``.
    ExternalDataError
        The file cannot be read.
    """
    mimetype = mt.normalize(mimetype)
    params = dict(parameters or {})
    paths = list(paths)
    if mimetype in mt.FRAME_OF and mimetype != mt.CSV_SEQ:
        frames = ImageFiles(paths, mt.FRAME_OF[mimetype], stacked=True)
        n, *frame = frames.shape
        chunks = [[1] * n, *([d] for d in frame)]
        return Described(
            "array", mimetype, array_structure(frames, chunks), {}, _assets(paths, True), params
        )
    if mimetype in (mt.TIFF, mt.PNG, mt.JPEG):
        if len(paths) > 1:
            return describe(mt.SEQUENCE_OF[mimetype], paths, params)
        image = ImageFiles(paths, mimetype, stacked=False)
        return Described("array", mimetype, array_structure(image), {}, _assets(paths, False))
    if mimetype == mt.NPY:
        if len(paths) > 1:
            return describe(mt.NPY_SEQ, paths, params)
        npy = NpyFile(paths[0])
        return Described("array", mimetype, array_structure(npy), {}, _assets(paths, False))
    if mimetype in (mt.CSV, mt.CSV_SEQ, "text/csv;header=present", mt.PARQUET):
        if mimetype == mt.PARQUET:
            schema = read_parquet(paths[0]).schema
        else:
            check_csv_parameters(params)
            schema = read_csv(paths[0], params).schema
        # Tiled's CSV/Parquet adapters take a list of files even for one (data_uris, num 0).
        return Described(
            "table", mimetype, _table(schema, len(paths)), {}, _assets(paths, True), params
        )
    if mimetype == mt.HDF5:
        return _describe_hdf5(paths[0], params)
    if mimetype == mt.ZARR:
        return _describe_zarr(paths[0], params)
    raise UnsupportedMimetype(f"No reader for media type {mimetype!r}")


def _describe_hdf5(path: Path, params: dict[str, Any]) -> Described:
    import h5py

    dataset = params.get("dataset")
    if dataset:
        ds = Hdf5Dataset(path, dataset)
        try:
            h5 = ds._dataset
            chunks = _regular(h5.shape, h5.chunks) if h5.chunks else None
            structure = array_structure(ds, chunks)
            metadata = _attrs(h5.attrs)
        finally:
            ds.close()
        return Described("array", mt.HDF5, structure, metadata, _assets([path], False), params)
    with h5py.File(path, "r", locking=False) as f:
        metadata = _attrs(f.attrs)
    return Described("container", mt.HDF5, None, metadata, _assets([path], False), params)


def _describe_zarr(path: Path, params: dict[str, Any]) -> Described:
    import zarr

    node = zarr.open(str(path), mode="r", path=params.get("path") or None)
    metadata = _attrs(dict(node.attrs))
    if isinstance(node, zarr.Array):
        array = ZarrDirectory(path, params.get("path", ""))
        chunks = _regular(node.shape, node.chunks)
        return Described(
            "array",
            mt.ZARR,
            array_structure(array, chunks),
            metadata,
            _assets([path], False),
            params,
        )
    return Described("container", mt.ZARR, None, metadata, _assets([path], False), params)
