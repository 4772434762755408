"""``/api/v1/array/full|block/{path}``: read (GET) array data, create writable arrays, and the
writes the edge does not serve.

Writes of dense arrays (PUT full/block, PATCH) are served by the edge
(``rust/src/edge/arrays.rs``), which validates them completely before anything is stored or
streamed and hands the persisted part to :mod:`ferrotile.api.array_store`. It forwards here what
is not a writable dense array: sparse arrays (Tiled serves them on the same routes) and the
refusals worded by this app (not an array: 404; registered files: 405).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api import register as registered
from ferrotile.api import sparse
from ferrotile.api.auth import Access
from ferrotile.api.common import (
    require,
)
from ferrotile.api.creation import FamilyWriter, ParsedSource, directory_source, register
from ferrotile.api.errors import ApiError
from ferrotile.api.formats import (
    ARRAY_SERIALIZERS,
    array_response,
    check_response_size,
    negotiate,
)
from ferrotile.catalog.models import DataSource, Node
from ferrotile.state import AppState
from ferrotile.storage.dtypes import data_type_to_numpy
from ferrotile.storage.slicing import (
    check_expected_shape,
    normalize_selection,
    parse_int_tuple,
    parse_slice,
)
from ferrotile.storage.structure import ArrayStructure
from ferrotile.storage.zarr_array import ZarrArray

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
    parameters = ds.get("parameters") or {}
    per_shard = parameters.get("chunks_per_shard")
    if per_shard is not None and (
        not isinstance(per_shard, int) or isinstance(per_shard, bool) or per_shard < 1
    ):
        raise ApiError(422, "Data source parameter 'chunks_per_shard' must be an integer >= 1")
    return ParsedSource(
        structure=structure.to_json(),
        mimetype=ZARR,
        parameters=parameters,
        properties=ds.get("properties") or {},
        detail=structure,
    )


async def _create_storage(state: AppState, source: ParsedSource) -> DataSource:
    return await directory_source(
        state,
        "array",
        source,
        ".zarr",
        lambda path: ZarrArray.create(
            path, source.detail, source.parameters.get("chunks_per_shard")
        ),
    )


register("array", FamilyWriter(parse=_parse_source, create=_create_storage))


def _writable_structure(node: Node) -> ArrayStructure:
    if registered.is_external(node):
        raise ApiError(405, registered.READ_ONLY)
    return _structure(node)


def _structure(node: Node) -> ArrayStructure:
    if node.structure_family != "array":
        raise ApiError(404, f"{'/'.join(node.path)!r} is a {node.structure_family}, not an array")
    return ArrayStructure.from_json(node.data_sources[0].structure or {}, stored=True)


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


def _served_by_edge() -> ApiError:
    return ApiError(
        421,
        "Dense array writes are served by the server's public port (the edge), "
        "not by the control plane's socket",
    )


async def put_full(request: Request) -> Response:
    """Sparse arrays only: the edge serves dense ones (and forwards the rest here)."""
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    if node.structure_family == "sparse":  # Tiled serves sparse arrays on the same routes
        return await sparse.put_full(request, state, node)
    _writable_structure(node)  # 404 / 405 with this app's wording
    raise _served_by_edge()


async def put_block(request: Request) -> Response:
    """Sparse arrays only: the edge serves dense ones (and forwards the rest here)."""
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    if node.structure_family == "sparse":  # Tiled serves sparse arrays on the same routes
        return await sparse.put_block(request, state, node)
    _writable_structure(node)
    raise _served_by_edge()


async def patch_full(request: Request) -> Response:
    """Refusals only: the edge serves PATCH of dense arrays (and forwards the rest here)."""
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    _writable_structure(node)
    raise _served_by_edge()


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
