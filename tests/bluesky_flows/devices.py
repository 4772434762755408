"""A simulated area detector that writes HDF5 and announces it with StreamResource/StreamDatum
documents, as ophyd-async detectors do (ophyd.sim has no HDF5 writer).

Each trigger appends one (5, 7) frame to ``/entry/data`` of its file, which holds (N, 5, 7);
the descriptor declares each event's datum as (1, 5, 7), so TiledWriter registers the data
source with shape (N, 1, 5, 7): the server reshapes (same element count), as Tiled does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ophyd.sim import NullStatus

FRAME = (5, 7)
DATASET = "/entry/data"


def frame(index: int) -> np.ndarray:
    """The frame written at trigger ``index`` (distinct values per frame and pixel)."""
    return np.arange(FRAME[0] * FRAME[1], dtype="<f8").reshape(FRAME) + 100.0 * index


class Hdf5Detector:
    """Bluesky's readable/triggerable/stageable protocols plus ``collect_asset_docs``."""

    parent = None

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self._directory = directory
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._resource = ""
        self._count = 0
        self.path: Path | None = None

    def stage(self) -> list[Any]:
        self.path = self._directory / f"{uuid.uuid4().hex}.h5"
        with h5py.File(self.path, "w") as f:
            f.create_dataset(DATASET, shape=(0, *FRAME), maxshape=(None, *FRAME), dtype="<f8")
        self._resource = str(uuid.uuid4())
        self._count = 0
        self._pending = [
            (
                "stream_resource",
                {
                    "uid": self._resource,
                    "data_key": self.name,
                    "mimetype": "application/x-hdf5",
                    "uri": f"file://localhost{self.path}",
                    "parameters": {"dataset": DATASET},
                },
            )
        ]
        return [self]

    def unstage(self) -> list[Any]:
        return [self]

    def trigger(self) -> NullStatus:
        assert self.path is not None
        with h5py.File(self.path, "a") as f:
            data = f[DATASET]
            data.resize(self._count + 1, axis=0)
            data[self._count] = frame(self._count)
        self._pending.append(
            (
                "stream_datum",
                {
                    "uid": f"{self._resource}/{self._count}",
                    "stream_resource": self._resource,
                    "descriptor": "",
                    "indices": {"start": self._count, "stop": self._count + 1},
                    "seq_nums": {"start": 0, "stop": 0},
                },
            )
        )
        self._count += 1
        return NullStatus()

    def describe(self) -> dict[str, Any]:
        return {
            self.name: {
                "source": "sim://hdf5",
                "dtype": "array",
                "shape": [1, *FRAME],
                "external": "STREAM:",
                "dtype_numpy": "<f8",
            }
        }

    def read(self) -> dict[str, Any]:
        return {}

    def describe_configuration(self) -> dict[str, Any]:
        return {}

    def read_configuration(self) -> dict[str, Any]:
        return {}

    def collect_asset_docs(self, index: int | None = None) -> Iterator[tuple[str, Any]]:
        pending, self._pending = self._pending, []
        yield from pending
