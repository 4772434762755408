"""``/api/v1/awkward/full|buffers/{path}``: write (PUT) and read awkward arrays as buffers.

The stock client writes ``awkward.to_buffers(awkward.to_packed(array))`` as one zip
(``PUT /awkward/full``) and reads with ``POST /awkward/buffers`` (a JSON list of the form keys
its slice touches), slicing locally. ``GET /awkward/buffers?form_key=..`` and ``GET
/awkward/full`` serve the same zip. The upload is checked against the node's form and length
(see :mod:`ferrotile.storage.awkward_store`) before anything is stored.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.auth import Access
from ferrotile.api.common import json_response, require
from ferrotile.api.creation import (
    FamilyWriter,
    ParsedSource,
    directory_source,
    make_directory,
    register,
)
from ferrotile.api.errors import ApiError
from ferrotile.api.formats import AWKWARD_MEDIA_TYPES, negotiate
from ferrotile.catalog.models import DataSource, Node
from ferrotile.state import AppState, path_from_file_uri
from ferrotile.storage.awkward_store import (
    AwkwardBuffers,
    check_buffers,
    check_form,
    expected_buffers,
    read_zip,
    write_zip,
)

AWKWARD_BUFFERS = "application/x-awkward-buffers"
ZIP = "application/zip"


def _parse_source(ds: dict[str, Any]) -> ParsedSource:
    mimetype = ds.get("mimetype") or AWKWARD_BUFFERS
    if mimetype != AWKWARD_BUFFERS:
        raise ApiError(
            415,
            f"Unsupported mimetype for writable awkward arrays: {mimetype!r}; "
            f"use {AWKWARD_BUFFERS}",
        )
    structure = ds.get("structure")
    if not isinstance(structure, dict):
        raise ApiError(422, "Invalid awkward structure: expected {'length': int, 'form': {...}}")
    try:
        check_form(structure.get("form"), structure.get("length"))
    except ValueError as exc:
        raise ApiError(422, f"Invalid awkward structure: {exc}") from None
    return ParsedSource(
        structure={"length": structure["length"], "form": structure["form"]},
        mimetype=AWKWARD_BUFFERS,
        parameters=ds.get("parameters") or {},
        properties=ds.get("properties") or {},
    )


async def _create_storage(state: AppState, source: ParsedSource) -> DataSource:
    return await directory_source(state, "awkward", source, ".awkward", make_directory)


register("awkward", FamilyWriter(parse=_parse_source, create=_create_storage))


async def _node(request: Request, access: Access) -> tuple[AppState, Node, dict[str, Any]]:
    state = require(request, access)
    node = await state.node(request.path_params["path"])
    if node.structure_family != "awkward":
        raise ApiError(404, f"{'/'.join(node.path)!r} is a {node.structure_family}, not awkward")
    return state, node, node.data_sources[0].structure or {}


def _store(node: Node) -> AwkwardBuffers:
    assets = node.data_sources[0].assets
    if not assets:
        raise ApiError(500, f"Awkward node {node.key!r} has no storage")
    return AwkwardBuffers(path_from_file_uri(assets[0].data_uri))


async def put_full(request: Request) -> Response:
    """Store a zip of buffers (the node's whole array); 4xx and nothing stored if invalid."""
    state, node, structure = await _node(request, Access.WRITE)
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != ZIP:
        raise ApiError(415, f"Unsupported Content-Type {content_type!r}; send {ZIP}")
    body = await request.body()
    try:
        buffers = await asyncio.to_thread(read_zip, body)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    try:
        check_buffers(structure["form"], structure["length"], buffers)
    except ValueError as exc:
        raise ApiError(422, f"Buffers do not match the node's form and length: {exc}") from None
    store = _store(node)
    async with state.arrays.lock(node.id):
        await asyncio.to_thread(store.write, buffers)
    return json_response(None)


async def _serve(
    request: Request, state: AppState, node: Node, form_keys: list[str] | None
) -> Response:
    structure = node.data_sources[0].structure or {}
    negotiate(request, "awkward", dict.fromkeys(AWKWARD_MEDIA_TYPES))  # 406 before any read
    keys = list(expected_buffers(structure["form"]))
    if form_keys is not None:
        wanted = set(form_keys)
        # Buffer keys are "{form_key}-{role}"; match the form key exactly, so that asking for
        # node1 does not also return node10's buffers.
        keys = [k for k in keys if k.rsplit("-", 1)[0] in wanted]
    store = _store(node)
    if not store.written:
        raise ApiError(404, f"No data has been written to the awkward node {node.key!r} yet")
    buffers = await asyncio.to_thread(store.read, keys)
    limit = state.settings.response_bytesize_limit
    nbytes = sum(len(b) for b in buffers.values())
    if nbytes > limit:
        raise ApiError(400, f"Response would be {nbytes} bytes (limit {limit}).")
    out = io.BytesIO()
    write_zip(buffers, out)
    return Response(out.getvalue(), media_type=ZIP)


async def get_full(request: Request) -> Response:
    """The whole array as a zip of buffers."""
    state, node, _ = await _node(request, Access.READ)
    return await _serve(request, state, node, None)


async def get_buffers(request: Request) -> Response:
    """``?form_key=A&form_key=B``: the buffers of those form keys (all when absent)."""
    state, node, _ = await _node(request, Access.READ)
    form_keys = request.query_params.getlist("form_key") or None
    return await _serve(request, state, node, form_keys)


async def post_buffers(request: Request) -> Response:
    """Body ``["node1", "node2", ...]``: like GET, for lists too long for a URL."""
    state, node, _ = await _node(request, Access.READ)
    try:
        form_keys = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ApiError(422, f"Request body is not valid JSON: {exc}") from None
    if not isinstance(form_keys, list) or not all(isinstance(k, str) for k in form_keys):
        raise ApiError(422, "Request body must be a JSON list of form keys")
    return await _serve(request, state, node, form_keys)
