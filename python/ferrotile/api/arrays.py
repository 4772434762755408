"""``/api/v1/array/full|block/{path}``: write (PUT, PATCH) and read (GET) array data.

Every write is validated completely (dtype, byte count, block index, bounds) before anything is
stored or streamed; then it is stored (unless ``persist=false``) and only then published, so a
subscriber never sees data that the server rejected. While the streaming cache (Redis) is known
to be unreachable, a write is refused with 503 before anything is stored; if publishing fails
after storing, the 503's detail says the write was stored (see ``docs/api.md``).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api import register as registered
from ferrotile.api import sparse
from ferrotile.api.auth import Access
from ferrotile.api.common import (
    changed,
    ensure_streamable,
    json_response,
    publish,
    query_bool,
    require,
)
from ferrotile.api.creation import FamilyWriter, ParsedSource, directory_source, register
from ferrotile.api.errors import ApiError
from ferrotile.api.formats import (
    ARRAY_SERIALIZERS,
    OCTET,
    array_response,
    check_response_size,
    negotiate,
)
from ferrotile.catalog.models import DataSource, Node
from ferrotile.errors import PatchOutOfBounds
from ferrotile.state import AppState
from ferrotile.storage.dtypes import data_type_to_numpy
from ferrotile.storage.slicing import (
    check_expected_shape,
    normalize_selection,
    parse_int_tuple,
    parse_slice,
)
from ferrotile.storage.structure import ArrayStructure
from ferrotile.storage.zarr_array import ZarrArray, array_from_body
from ferrotile.streaming import messages
from ferrotile.validation import InputRejected, check_array_extension

ZARR = "application/x-zarr"
EXTEND_NO_PERSIST = (
    "Cannot PATCH an array with both parameters extend=True and persist=False. "
    "To extend the array, you must persist the changes. "
    "To skip persisting the changes, you must not extend the array."
)


def _parse_source(ds: dict[str, Any]) -> ParsedSource:
    mimetype = ds.get("mimetype") or ZARR
    if mimetype != ZARR:
        raise ApiError(415, f"Unsupported mimetype for writable arrays: {mimetype!r}; use {ZARR}")
    try:
        structure = ArrayStructure.from_json(ds.get("structure") or {})
        data_type_to_numpy(structure.data_type)
    except (ValueError, TypeError, KeyError) as exc:
        raise ApiError(422, f"Invalid array structure: {exc}") from None
    return ParsedSource(
        structure=structure.to_json(),
        mimetype=ZARR,
        parameters=ds.get("parameters") or {},
        properties=ds.get("properties") or {},
        detail=structure,
    )


async def _create_storage(state: AppState, source: ParsedSource) -> DataSource:
    return await directory_source(
        state, "array", source, ".zarr", lambda path: ZarrArray.create(path, source.detail)
    )


register("array", FamilyWriter(parse=_parse_source, create=_create_storage))


def _writable_structure(node: Node) -> ArrayStructure:
    if registered.is_external(node):
        raise ApiError(405, registered.READ_ONLY)
    return _structure(node)


def _structure(node: Node) -> ArrayStructure:
    if node.structure_family != "array":
        raise ApiError(404, f"{'/'.join(node.path)!r} is a {node.structure_family}, not an array")
    return ArrayStructure.from_json(node.data_sources[0].structure or {})


def _param(request: Request, name: str) -> tuple[int, ...] | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return parse_int_tuple(raw, name)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


def _block(request: Request, structure: ArrayStructure) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ``block`` query parameter and that block's shape (422 when absent or out of range)."""
    block = _param(request, "block")
    if block is None:
        raise ApiError(422, "Query parameter 'block' is required, e.g. ?block=0,0")
    try:
        return block, structure.block_shape(block)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


async def _body_array(
    request: Request, structure: ArrayStructure, shape: tuple[int, ...]
) -> tuple[bytes, np.ndarray]:
    content_type = request.headers.get("content-type", OCTET).split(";")[0].strip()
    if content_type != OCTET:
        raise ApiError(415, f"Unsupported Content-Type {content_type!r}; send {OCTET}")
    body = await request.body()
    try:
        return body, array_from_body(body, structure.dtype, shape)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


async def _publish(
    state: AppState,
    node: Node,
    body: bytes,
    structure: ArrayStructure,
    shape: tuple[int, ...],
    *,
    stored: bool,
    **where: Any,
) -> None:
    header = messages.array_data(mimetype=OCTET, shape=shape, **where)
    await publish(state, node.id, header, body, (structure.dtype.str, shape), stored=stored)


async def put_full(request: Request) -> Response:
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    if node.structure_family == "sparse":  # Tiled serves sparse arrays on the same routes
        return await sparse.put_full(request, state, node)
    structure = _writable_structure(node)
    persist = query_bool(request, "persist", True)
    body, data = await _body_array(request, structure, structure.shape)
    ensure_streamable(state)
    if persist:
        async with state.arrays.lock(node.id):
            await asyncio.to_thread(state.arrays.get(node).write_full, data)
    await _publish(state, node, body, structure, structure.shape, stored=persist)
    return json_response(None)


async def put_block(request: Request) -> Response:
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    if node.structure_family == "sparse":  # Tiled serves sparse arrays on the same routes
        return await sparse.put_block(request, state, node)
    structure = _writable_structure(node)
    block, shape = _block(request, structure)
    persist = query_bool(request, "persist", True)
    body, data = await _body_array(request, structure, shape)
    ensure_streamable(state)
    if persist:
        async with state.arrays.lock(node.id):
            await asyncio.to_thread(state.arrays.get(node).write_block, block, data)
    await _publish(state, node, body, structure, shape, stored=persist, block=block)
    return json_response(None)


def _check_bounds(
    structure: ArrayStructure, offset: tuple[int, ...], shape: tuple[int, ...]
) -> None:
    padded = offset + (0,) * (len(shape) - len(offset))
    if len(shape) != len(structure.shape) or len(padded) != len(shape):
        raise ApiError(422, f"shape {shape} does not match the array's rank {len(structure.shape)}")
    if any(o < 0 for o in padded):
        raise ApiError(422, f"offset {offset} must not be negative")
    ends = tuple(o + s for o, s in zip(padded, shape, strict=True))
    if any(e > n for e, n in zip(ends, structure.shape, strict=True)):
        raise ApiError(
            409,
            f"Slice at offset {offset} with shape {shape} does not fit within current array "
            f"shape {structure.shape}. Use ?extend=true to extend the array dimensions to fit.",
        )


async def patch_full(request: Request) -> Response:
    state = require(request, Access.WRITE)
    path = request.path_params["path"]
    node = await state.node(path)
    _writable_structure(node)
    offset = _param(request, "offset")
    shape = _param(request, "shape")
    if offset is None or shape is None:
        raise ApiError(422, "Query parameters 'offset' and 'shape' are required")
    extend = query_bool(request, "extend", False)
    persist = query_bool(request, "persist", True)
    if extend and not persist:
        raise ApiError(400, EXTEND_NO_PERSIST)
    async with state.arrays.lock(node.id):
        # Re-read under the lock: a concurrent PATCH may have grown the array (through another
        # worker too: its cache invalidation may still be on its way, so read the catalog then).
        node = await state.node(path, fresh=state.shared_catalog)
        structure = _structure(node)
        grown = node_shape = structure.shape
        if extend:  # bounded before the body is even read (422, nothing written)
            try:
                limit = state.settings.max_array_bytes
                grown = check_array_extension(structure, offset, shape, limit)
            except InputRejected:
                raise
            except ValueError as exc:
                raise ApiError(422, str(exc)) from None
        body, data = await _body_array(request, structure, shape)
        if not persist:
            _check_bounds(structure, offset, shape)
        ensure_streamable(state)
        if persist:
            if grown != structure.shape:
                # The catalog first: while it is unavailable (503) nothing is written at all;
                # the zarr array then follows the catalog's shape (ZarrArray.patch resizes).
                ds_id = node.data_sources[0].id
                assert ds_id is not None
                structure = structure.with_shape(grown)
                node = await state.catalog.update_structure(node, ds_id, structure.to_json())
            array = state.arrays.get(node)
            try:
                new = await asyncio.to_thread(array.patch, data, offset, extend, structure)
            except PatchOutOfBounds as exc:
                raise ApiError(409, str(exc)) from None
            except ValueError as exc:
                raise ApiError(422, str(exc)) from None
            if grown != node_shape:
                await changed(state, node, stored=True)  # other workers drop the old shape
            structure = new
        await _publish(state, node, body, structure, shape, stored=persist, offset=offset)
    return json_response(structure.to_json())


def _selection(
    request: Request, state: AppState, structure: ArrayStructure, shape: tuple[int, ...]
) -> tuple[Any, ...]:
    """The ``slice`` of an array (or block) of ``shape``; refused (400) before anything is read
    when the result would exceed ``response_bytesize_limit``, as computed from the shape."""
    try:
        selection = parse_slice(request.query_params.get("slice"), shape)
        result_shape = normalize_selection(selection, shape).shape
    except (ValueError, IndexError) as exc:
        raise ApiError(400, f"Invalid slice: {exc}") from None
    expected = request.query_params.get("expected_shape")
    if expected is not None:
        try:
            check_expected_shape(parse_int_tuple(expected, "expected_shape"), result_shape)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
    nbytes = math.prod(result_shape) * structure.dtype.itemsize
    check_response_size(nbytes, state.settings.response_bytesize_limit)
    return selection


async def get_full(request: Request) -> Response:
    state = require(request, Access.READ)
    node = await state.node(request.path_params["path"], in_files=True)
    if node.structure_family == "sparse":  # Tiled serves sparse arrays on the same routes
        return await sparse.get_full(request, state, node)
    structure = _structure(node)
    negotiate(request, "array", ARRAY_SERIALIZERS)  # 406 before any read
    selection = _selection(request, state, structure, structure.shape)
    if registered.is_external(node):  # files registered in place: read through their adapter
        data = await registered.read_registered_array(state, node, structure, selection)
        return array_response(request, data, state.settings.response_bytesize_limit)
    data = await asyncio.to_thread(state.arrays.get(node).read, selection)
    return array_response(request, data, state.settings.response_bytesize_limit)


async def get_block(request: Request) -> Response:
    state = require(request, Access.READ)
    node = await state.node(request.path_params["path"], in_files=True)
    if node.structure_family == "sparse":  # Tiled serves sparse arrays on the same routes
        return await sparse.get_block(request, state, node)
    structure = _structure(node)
    block, shape = _block(request, structure)
    negotiate(request, "array", ARRAY_SERIALIZERS)  # 406 before any read
    selection = _selection(request, state, structure, shape)
    if registered.is_external(node):  # files registered in place: read through their adapter
        data = await registered.read_registered_array(state, node, structure, selection, block)
        return array_response(request, data, state.settings.response_bytesize_limit)
    data = await asyncio.to_thread(state.arrays.get(node).read_block, block, selection)
    return array_response(request, data, state.settings.response_bytesize_limit)
