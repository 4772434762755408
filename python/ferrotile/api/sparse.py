"""Sparse (COO) nodes, served on Tiled's array routes ``/api/v1/array/full|block/{path}``.

Tiled uses the same URLs for dense and sparse arrays, so ``api/arrays.py`` hands sparse nodes
to the handlers here once it has looked the node up. Bodies are tables with columns
``dim0..dimN, data``: writes arrive as Arrow IPC files (what the stock client sends), reads are
negotiated from :data:`~ferrotile.api.formats.SPARSE_SERIALIZERS` (Arrow by default).

Writes are validated completely (columns, dtypes, coordinate bounds) before anything is
stored, then stored (unless ``persist=false``), then published as ``array-data`` with the
request body as payload, as Tiled does for sparse writes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.common import ensure_streamable, json_response, publish, query_bool
from ferrotile.api.creation import (
    FamilyWriter,
    ParsedSource,
    directory_source,
    make_directory,
    register,
)
from ferrotile.api.errors import ApiError
from ferrotile.api.formats import ARROW, SPARSE_SERIALIZERS, negotiate
from ferrotile.catalog.models import DataSource, Node
from ferrotile.state import AppState, path_from_file_uri
from ferrotile.storage.slicing import check_expected_shape, parse_int_tuple, parse_slice
from ferrotile.storage.sparse_store import (
    SparseBlocks,
    SparseStructure,
    coo_from_table,
    coo_table,
    slice_coo,
)
from ferrotile.streaming import messages

SPARSE_PARQUET = "application/x-parquet;structure=sparse"


def _normalize_mimetype(mimetype: str) -> str:
    return ";".join(part.strip() for part in mimetype.split(";"))


def _parse_source(ds: dict[str, Any]) -> ParsedSource:
    mimetype = ds.get("mimetype") or SPARSE_PARQUET
    if _normalize_mimetype(mimetype) != SPARSE_PARQUET:
        raise ApiError(
            415,
            f"Unsupported mimetype for writable sparse arrays: {mimetype!r}; use {SPARSE_PARQUET}",
        )
    try:
        structure = SparseStructure.from_json(ds.get("structure"))
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    except (TypeError, KeyError) as exc:
        raise ApiError(422, f"Invalid sparse structure: {exc!r}") from None
    return ParsedSource(
        structure=structure.to_json(),
        mimetype=SPARSE_PARQUET,
        parameters=ds.get("parameters") or {},
        properties=ds.get("properties") or {},
        detail=structure,
    )


async def _create_storage(state: AppState, source: ParsedSource) -> DataSource:
    return await directory_source(state, "sparse", source, ".sparse", make_directory)


register("sparse", FamilyWriter(parse=_parse_source, create=_create_storage))


def _blocks(node: Node) -> SparseBlocks:
    ds = node.data_sources[0] if node.data_sources else None
    if ds is None or not ds.assets:
        raise ApiError(500, f"Sparse node {node.key!r} has no storage")
    structure = SparseStructure.from_json(ds.structure or {})
    return SparseBlocks(path_from_file_uri(ds.assets[0].data_uri), structure)


def _block(request: Request, blocks: SparseBlocks) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ``block`` query parameter and that block's shape (422 when absent or out of range)."""
    raw = request.query_params.get("block")
    if raw is None:
        raise ApiError(422, "Query parameter 'block' is required, e.g. ?block=0,0")
    try:
        block = parse_int_tuple(raw, "block")
        return block, blocks.structure.array.block_shape(block)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


async def _body_coo(request: Request, blocks: SparseBlocks, shape: tuple[int, ...]) -> Any:
    """Read and validate an Arrow-file body: ``(raw body, coords, data)``."""
    import pyarrow as pa

    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != ARROW:
        raise ApiError(415, f"Unsupported Content-Type {content_type!r}; send {ARROW}")
    body = await request.body()
    try:
        table = pa.ipc.open_file(pa.BufferReader(body)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ApiError(400, f"Request body is not an Arrow IPC file: {exc}") from None
    try:
        coords, data = coo_from_table(table, shape, blocks.structure)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    return body, coords, data


async def _publish(
    state: AppState,
    node: Node,
    body: bytes,
    shape: tuple[int, ...],
    *,
    stored: bool,
    **where: Any,
) -> None:
    header = messages.array_data(mimetype=ARROW, shape=shape, **where)
    await publish(state, node.id, header, body, stored=stored)


async def put_full(request: Request, state: AppState, node: Node) -> Response:
    """``PUT /array/full`` for a sparse node (replaces every block)."""
    blocks = _blocks(node)
    persist = query_bool(request, "persist", True)
    body, coords, data = await _body_coo(request, blocks, blocks.structure.shape)
    ensure_streamable(state)
    if persist:
        async with state.arrays.lock(node.id):
            await asyncio.to_thread(blocks.write_full, coords, data)
    await _publish(state, node, body, blocks.structure.shape, stored=persist)
    return json_response(None)


async def put_block(request: Request, state: AppState, node: Node) -> Response:
    """``PUT /array/block?block=i,j`` for a sparse node (coordinates relative to the block)."""
    blocks = _blocks(node)
    block, shape = _block(request, blocks)
    persist = query_bool(request, "persist", True)
    body, coords, data = await _body_coo(request, blocks, shape)
    ensure_streamable(state)
    if persist:
        async with state.arrays.lock(node.id):
            await asyncio.to_thread(blocks.write_block, block, coords, data)
    await _publish(state, node, body, shape, stored=persist, block=block)
    return json_response(None)


def _selection(request: Request, shape: tuple[int, ...]) -> Any:
    try:
        return parse_slice(request.query_params.get("slice"), shape)
    except (ValueError, IndexError) as exc:
        raise ApiError(400, f"Invalid slice: {exc}") from None


def _respond(
    request: Request, state: AppState, coo: tuple[Any, Any], selection: Any, shape: Any
) -> Response:
    coords, data, result_shape = slice_coo(coo[0], coo[1], selection, shape)
    expected = request.query_params.get("expected_shape")
    if expected is not None:
        try:
            check_expected_shape(parse_int_tuple(expected, "expected_shape"), result_shape)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
    limit = state.settings.response_bytesize_limit
    nbytes = coords.nbytes + data.nbytes
    if nbytes > limit:
        raise ApiError(400, f"Response would be {nbytes} bytes (limit {limit}). Use slicing.")
    media_type = negotiate(request, "sparse", SPARSE_SERIALIZERS)
    return Response(SPARSE_SERIALIZERS[media_type](coo_table(coords, data)), media_type=media_type)


async def get_full(request: Request, state: AppState, node: Node) -> Response:
    """``GET /array/full[?slice=]`` for a sparse node: the (sliced) entries as a table."""
    blocks = _blocks(node)
    negotiate(request, "sparse", SPARSE_SERIALIZERS)  # 406 before any read
    selection = _selection(request, blocks.structure.shape)
    coo = await asyncio.to_thread(blocks.read_full)
    return _respond(request, state, coo, selection, blocks.structure.shape)


async def get_block(request: Request, state: AppState, node: Node) -> Response:
    """``GET /array/block?block=i,j[&slice=]``: one block's entries, block-relative."""
    blocks = _blocks(node)
    block, shape = _block(request, blocks)
    negotiate(request, "sparse", SPARSE_SERIALIZERS)  # 406 before any read
    selection = _selection(request, shape)
    coo = await asyncio.to_thread(blocks.read_block, block)
    return _respond(request, state, coo, selection, shape)
