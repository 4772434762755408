"""The control plane's part of persisted dense array writes.

``PUT /api/v1/array/full|block`` and ``PATCH /api/v1/array/full`` are served by the edge
(``rust/src/edge/arrays.rs``), which reads and checks the body and stores it with the engine's
zarr writer (``rust/src/edge/persist.rs``, ``rust/src/store/``) into the directory
:func:`zarr_directory` names; when the write grows the array, the edge calls :func:`grow` once
the data and the zarr shape are on disk, and the catalog follows. Arrays in a layout the
engine's writer does not handle are handed to :func:`store` instead (a read-only buffer over the
body, no copy): the write is checked again against the catalog under the node's lock (another
write may have changed the shape meanwhile), stored by zarr-python, and an extending PATCH
updates the catalog and tells the other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from ferrotile.api import register as registered
from ferrotile.api.arrays import ZARR
from ferrotile.api.common import changed
from ferrotile.api.errors import ApiError
from ferrotile.catalog.models import Node
from ferrotile.errors import PatchOutOfBounds, StreamUnavailable
from ferrotile.state import AppState, path_from_file_uri
from ferrotile.storage.structure import ArrayStructure
from ferrotile.storage.zarr_array import array_from_body
from ferrotile.validation import InputRejected, check_array_extension


async def store(
    state: AppState,
    node_id: int,
    path: str,
    kind: str,
    block: Sequence[int] | None,
    offset: Sequence[int] | None,
    shape: Sequence[int] | None,
    extend: bool,
    body: memoryview,
) -> tuple[Node, ArrayStructure, tuple[int, ...] | None]:
    """Store one validated write (``kind``: ``full``, ``block``, ``patch``, or ``append``:
    ``shape[0]`` whole frames after the last one stored); return the node, the array's structure
    after it and, for an append, where it was stored.

    Raises
    ------
    ApiError
        409 if the node is no longer a writable array, 422/409 if the write does not fit the
        structure the catalog has now; nothing was stored.
    InputRejected
        422: an extension beyond ``--max-array-bytes``; nothing was stored.
    """
    async with state.arrays.lock(node_id):
        node = await state.node(path, fresh=state.shared_catalog)
        if node.id != node_id or node.structure_family != "array" or registered.is_external(node):
            raise ApiError(409, f"{path!r} is no longer a writable array; nothing was stored")
        structure = ArrayStructure.from_json(node.data_sources[0].structure or {}, stored=True)
        array = state.arrays.get(node)
        try:
            if kind == "full":
                data = array_from_body(body, structure.dtype, structure.shape)
                await asyncio.to_thread(array.write_full, data)
            elif kind == "block":
                block_index = tuple(block or ())
                data = array_from_body(body, structure.dtype, structure.block_shape(block_index))
                await asyncio.to_thread(array.write_block, block_index, data)
            else:
                if kind == "append":  # whole frames after the last one stored
                    frames = shape[0] if shape else 1
                    offset = (structure.shape[0] if structure.shape else 0,)
                    shape = (frames, *structure.shape[1:])
                offset, shape = tuple(offset or ()), tuple(shape or ())
                node_shape = grown = structure.shape
                if extend:  # bounded by --max-array-bytes (422, nothing written)
                    limit = state.settings.max_array_bytes
                    grown = check_array_extension(structure, offset, shape, limit)
                data = array_from_body(body, structure.dtype, shape)
                if grown != structure.shape:
                    # The catalog first: while it is unavailable (503) nothing is written at
                    # all; the zarr array then follows the catalog's shape (patch resizes).
                    ds_id = node.data_sources[0].id
                    assert ds_id is not None
                    structure = structure.with_shape(grown)
                    stored = structure.to_stored_json()
                    node = await state.catalog.update_structure(node, ds_id, stored)
                new = await asyncio.to_thread(array.patch, data, offset, extend, structure)
                if grown != node_shape:
                    await changed(state, node, stored=True)  # other workers drop the old shape
                structure = new
        except PatchOutOfBounds as exc:
            raise ApiError(409, str(exc)) from None
        except InputRejected:
            raise
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
    return node, structure, (tuple(offset or ()) if kind == "append" else None)


def zarr_directory(node: Node) -> str | None:
    """The zarr directory of a writable dense array node (None if it has none)."""
    source = node.data_sources[0] if node.data_sources else None
    if source is None or source.mimetype != ZARR or not source.assets:
        return None
    if source.management != "writable" or registered.is_external(node):
        return None
    return str(path_from_file_uri(source.assets[0].data_uri))


async def grow(
    state: AppState, node_id: int, path: str, old: tuple[int, ...], new: tuple[int, ...]
) -> tuple[Node, ArrayStructure]:
    """Record in the catalog that the edge grew an array from shape ``old`` to ``new`` (its
    data and zarr shape are on disk already); return the node and structure after it.

    Raises
    ------
    ApiError
        409 if the node is no longer a writable array of shape ``old`` (the edge then sets the
        zarr shape back; nothing is acknowledged).
    """
    async with state.arrays.lock(node_id):
        node = await state.node(path, fresh=state.shared_catalog)
        if node.id != node_id or node.structure_family != "array" or registered.is_external(node):
            raise ApiError(409, f"{path!r} is no longer a writable array; nothing was stored")
        structure = ArrayStructure.from_json(node.data_sources[0].structure or {}, stored=True)
        if structure.shape != old:
            raise ApiError(
                409,
                f"The array's shape changed to {structure.shape} meanwhile (expected {old}); "
                "nothing was stored. Retry.",
            )
        ds_id = node.data_sources[0].id
        assert ds_id is not None
        structure = structure.with_shape(new)
        node = await state.catalog.update_structure(node, ds_id, structure.to_stored_json())
        state.arrays.close(node_id)  # its zarr metadata changed on disk
        # Other workers drop the old shape. Stored and recorded if the cache is down: the
        # publish that follows reports the outage (503).
        with contextlib.suppress(StreamUnavailable):
            await state.changed(node)
    return node, structure
