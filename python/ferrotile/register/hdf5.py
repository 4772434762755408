"""HDF5 files as explicit trees: a container per file and group, an array node per dataset.

Tiled's walker registers a whole HDF5 file as one container whose children the server reads
from the file. Registering every dataset as its own node (data source parameter ``dataset``)
instead gives each one a data source to update, so a dataset grown along axis 0 is announced
to its subscribers with an ``array-ref`` carrying just the new rows (``--watch``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferrotile.register.walk import Folder, Item

HDF5 = "application/x-hdf5"


def is_hdf5_file(item: Item) -> bool:
    return item.mimetype == HDF5 and not item.is_directory and not item.parameters


def expand(item: Item) -> Folder:
    """The file as a folder tree (group attributes as metadata); raises if unreadable."""
    import h5py

    path = item.paths[0]
    with h5py.File(path, "r", locking=False) as f:
        return _group(f, item.key, item)


def _group(group: Any, key: str, item: Item) -> Folder:
    import h5py

    folder = Folder(key=key, path=item.paths[0], metadata=_attrs(group.attrs))
    for name, child in group.items():
        if isinstance(child, h5py.Group):
            folder.folders.append(_group(child, name, item))
        elif isinstance(child, h5py.Dataset):
            dataset = child.name.lstrip("/")
            folder.items.append(Item(name, HDF5, item.paths, parameters={"dataset": dataset}))
    return folder


def _attrs(attrs: Any) -> dict[str, Any]:
    # Attributes as JSON-able metadata: numpy values made plain, bytes decoded.
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
