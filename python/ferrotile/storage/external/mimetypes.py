"""Media types of registrable files, and which structure family each one serves.

The names are Tiled's (``tiled/mimetypes.py`` and the 0.2.19+ directory walker), so that
``tiled register`` and ``Container.register`` bodies are accepted unchanged.
"""

from __future__ import annotations

import mimetypes as _stdlib
from collections.abc import Mapping
from pathlib import Path

TIFF = "image/tiff"
PNG = "image/png"
JPEG = "image/jpeg"
TIFF_SEQ = "multipart/related;type=image/tiff"
PNG_SEQ = "multipart/related;type=image/png"
JPEG_SEQ = "multipart/related;type=image/jpeg"
NPY = "application/x-npy"
NPY_SEQ = "multipart/related;type=application/x-npy"
HDF5 = "application/x-hdf5"
ZARR = "application/x-zarr"
CSV = "text/csv"
CSV_SEQ = "multipart/related;type=text/csv"
PARQUET = "application/x-parquet"

#: Image formats and the media type of a numbered series of them.
SEQUENCE_OF = {TIFF: TIFF_SEQ, PNG: PNG_SEQ, JPEG: JPEG_SEQ, NPY: NPY_SEQ, CSV: CSV_SEQ}
#: The frame format of each series media type.
FRAME_OF = {seq: single for single, seq in SEQUENCE_OF.items()}

#: The structure family a readable media type serves when no data source says otherwise
#: (HDF5 and zarr files may hold one array or a tree; the structure decides).
FAMILY = {
    TIFF: "array",
    PNG: "array",
    JPEG: "array",
    TIFF_SEQ: "array",
    PNG_SEQ: "array",
    JPEG_SEQ: "array",
    NPY: "array",
    NPY_SEQ: "array",
    HDF5: "container",
    ZARR: "container",
    CSV: "table",
    CSV_SEQ: "table",
    "text/csv;header=present": "table",
    PARQUET: "table",
}

#: Media types whose data the server can read (a registration with another one gets 415).
READABLE = frozenset(FAMILY)

#: Extensions the stdlib does not know (or knows under another name), as Tiled maps them.
EXTENSIONS = {
    ".h5": HDF5,
    ".hdf": HDF5,
    ".hdf5": HDF5,
    ".nxs": HDF5,
    ".npy": NPY,
    ".csv": CSV,
    ".parquet": PARQUET,
    ".zarr": ZARR,
    ".tif": TIFF,
    ".tiff": TIFF,
    ".png": PNG,
    ".jpg": JPEG,
    ".jpeg": JPEG,
}


def media_type_for(path: Path, ext_map: Mapping[str, str] | None = None) -> str | None:
    """Guess the media type of a file or directory from its name, as Tiled's walker does.

    Parameters
    ----------
    path : Path
        A file or directory (only its name is looked at, plus ``.zarray``/``zarr.json``
        markers for zarr directories without a ``.zarr`` suffix).
    ext_map : mapping, optional
        Extra ``{".ext": "media/type"}`` entries, taking precedence over the defaults.

    Returns
    -------
    str or None
        The media type, or None when the name says nothing known.
    """
    ext = "".join(path.suffixes[-1:]).lower()
    if ext_map and ext in ext_map:
        return ext_map[ext]
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    if path.is_dir():
        if any((path / marker).exists() for marker in ("zarr.json", ".zarray", ".zgroup")):
            return ZARR
        return None
    guessed, _ = _stdlib.guess_type(path.name)
    return guessed


def family_of(mimetype: str) -> str | None:
    """The default structure family of a readable media type (None when unreadable)."""
    return FAMILY.get(normalize(mimetype))


def normalize(mimetype: str) -> str:
    """Drop spaces around ``;`` so ``multipart/related; type=image/tiff`` matches too."""
    return ";".join(part.strip() for part in mimetype.split(";"))
