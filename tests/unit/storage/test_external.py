"""Unit tests of registered-file readers, inference and the readable-directory allowlist."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ferrotile.storage.external import (
    NotReadable,
    NotReady,
    Unreadable,
    check_readable,
    describe,
    media_type_for,
)
from ferrotile.storage.external.arrays import NpyFile
from ferrotile.storage.external.serve import read_array
from ferrotile.storage.structure import ArrayStructure


def test_media_types(tmp_path: Path) -> None:
    assert media_type_for(Path("a/b.tif")) == "image/tiff"
    assert media_type_for(Path("x.h5")) == "application/x-hdf5"
    assert media_type_for(Path("x.csv")) == "text/csv"
    assert media_type_for(Path("x.parquet")) == "application/x-parquet"
    assert media_type_for(Path("x.weird"), {".weird": "text/csv"}) == "text/csv"
    assert media_type_for(Path("x.unknownext")) is None


def test_allowlist(tmp_path: Path) -> None:
    inside = tmp_path / "r"
    inside.mkdir()
    assert check_readable(f"file://localhost{inside}/a.npy", [inside]) == inside / "a.npy"
    with pytest.raises(NotReadable):
        check_readable(f"file://localhost{inside}/../a.npy", [inside])
    (inside / "link").symlink_to(tmp_path)
    with pytest.raises(NotReadable):
        check_readable(f"file://localhost{inside}/link/a.npy", [inside])
    with pytest.raises(NotReadable):
        check_readable("http://host/a.npy", [inside])


def test_describe_tiff_series(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"f{i}.tif")
        tifffile.imwrite(paths[-1], np.full((4, 5), i, dtype="uint8"))
    described = describe("multipart/related;type=image/tiff", paths)
    assert described.structure_family == "array"
    assert described.structure is not None
    assert described.structure["shape"] == [3, 4, 5]
    assert described.structure["chunks"] == [[1, 1, 1], [4], [5]]
    assert [a["num"] for a in described.assets] == [0, 1, 2]
    assert described.data_source()["management"] == "external"


def test_read_array_mismatches(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.arange(6).reshape(2, 3))
    dt = {"endianness": "little", "kind": "i", "itemsize": 8, "dt_units": None}
    longer = ArrayStructure.from_json(
        {"data_type": dt, "chunks": [[4], [3]], "shape": [4, 3], "dims": None}
    )
    with pytest.raises(NotReady):
        read_array(NpyFile(path), longer, (slice(None),))
    old = time.time() - 60
    os.utime(path, (old, old))
    with pytest.raises(Unreadable):
        read_array(NpyFile(path), longer, (slice(None),))
    shorter = ArrayStructure.from_json(
        {"data_type": dt, "chunks": [[1], [3]], "shape": [1, 3], "dims": None}
    )
    np.testing.assert_array_equal(read_array(NpyFile(path), shorter, ()), [[0, 1, 2]])
    reshaped = ArrayStructure.from_json(
        {"data_type": dt, "chunks": [[3], [2]], "shape": [3, 2], "dims": None}
    )
    np.testing.assert_array_equal(
        read_array(NpyFile(path), reshaped, (slice(1, None),), [[2], [3]]), [[2, 3], [4, 5]]
    )
