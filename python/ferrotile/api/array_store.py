"""The persisted part of dense array writes, which the edge hands over after validating them.

``PUT /api/v1/array/full|block`` and ``PATCH /api/v1/array/full`` are served by the edge
(``rust/src/edge/arrays.rs``): it reads and checks the body, calls :func:`store` with a
read-only buffer over it (no copy) when the write is persisted, then publishes the message
itself. Here the write is checked again against the catalog under the node's lock (another
write may have changed the shape meanwhile), stored in zarr, and an extending PATCH updates the
catalog and tells the other processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ferrotile.api import register as registered
from ferrotile.api.common import changed
from ferrotile.api.errors import ApiError
from ferrotile.errors import PatchOutOfBounds
from ferrotile.state import AppState
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
) -> tuple[ArrayStructure, tuple[int, ...] | None]:
    """Store one validated write (``kind``: ``full``, ``block``, ``patch``, or ``append``:
    ``shape[0]`` whole frames after the last one stored); return the array's structure after it
    and, for an append, where it was stored.

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
        structure = ArrayStructure.from_json(node.data_sources[0].structure or {})
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
                    node = await state.catalog.update_structure(node, ds_id, structure.to_json())
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
    return structure, (tuple(offset or ()) if kind == "append" else None)
