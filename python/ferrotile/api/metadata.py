"""``/api/v1/metadata/{path}``: read a node (GET), create a child (POST), delete (DELETE)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.auth import Access
from ferrotile.api.bodies import CreateRequest, parse_create
from ferrotile.api.common import (
    base_url,
    changed,
    ensure_streamable,
    json_response,
    publish,
    query_bool,
    read_json_object,
    require,
)
from ferrotile.api.creation import WRITERS
from ferrotile.api.errors import ApiError
from ferrotile.api.etag import with_etag
from ferrotile.api.items import render
from ferrotile.api.register import create_external, created_response, is_external_request
from ferrotile.api.search import parse_fields
from ferrotile.catalog.models import DataSource, Node
from ferrotile.errors import NotEmpty
from ferrotile.state import AppState, path_from_file_uri
from ferrotile.streaming import messages

NOT_EMPTY = (
    "Cannot delete a node that is not empty. Delete its contents first or pass `recursive=True`."
)


async def get_metadata(request: Request) -> Response:
    state = require(request, Access.READ)
    node = await state.node(request.path_params["path"], in_files=True)
    count = await state.count_children(node) if node.structure_family == "container" else None
    item = render(
        node,
        base_url(request),
        count=count,
        fields=parse_fields(request),
        include_data_sources=query_bool(request, "include_data_sources", False),
    )
    body = {"data": item, "error": None, "links": None, "meta": {}}
    return with_etag(request, json_response(body))


async def post_metadata(request: Request) -> Response:
    state = require(request, Access.WRITE)
    parent = await state.node(request.path_params["path"])
    if parent.structure_family != "container":
        raise ApiError(405, f"Cannot create a child of a {parent.structure_family!r} node")
    body = await read_json_object(request)
    if is_external_request(body) and not body["data_sources"][0].get("assets"):
        # An external data source whose files come later with PUT /data_source (Bluesky's
        # TiledWriter creates file-series nodes this way); with assets, POST /register.
        node = await create_external(state, parent, body, allow_no_assets=True)
        return created_response(request, node)
    create = parse_create(body)
    if await state.catalog.lookup((*parent.path, create.key)) is not None:
        raise ApiError(409, f"An entry named {create.key!r} already exists")
    return created_response(request, await create_child(state, parent, create))


async def create_child(state: AppState, parent: Node, create: CreateRequest) -> Node:
    """Store a validated creation request under ``parent`` and announce it on its stream.

    Raises :class:`~ferrotile.errors.KeyConflict` if the key was taken meanwhile; nothing is
    left behind then (nor on any other failure).
    """
    ensure_streamable(state)
    sources: list[DataSource] = []
    if create.source is not None:
        sources.append(await WRITERS[create.structure_family].create(state, create.source))
    try:
        node = await state.catalog.create_node(
            parent,
            create.key,
            structure_family=create.structure_family,
            metadata=create.metadata,
            specs=create.specs,
            access_tags=[],
            data_sources=sources,
        )
    except BaseException:
        # Nothing half-written: the storage made for a node that was not recorded goes away.
        await _remove_storage(state, sources)
        raise
    await publish(state, parent.id, messages.child_created(node), stored=True)
    return node


async def _remove_storage(state: AppState, sources: Sequence[DataSource]) -> None:
    """Delete the data of writable data sources (external data is never touched)."""
    for ds in sources:
        if ds.management != "writable":
            continue
        writer = WRITERS.get(ds.structure_family)
        if writer is not None and writer.delete is not None:
            await writer.delete(state, ds)
            continue
        for asset in ds.assets:
            if asset.data_uri.startswith("file:"):
                directory = path_from_file_uri(asset.data_uri)
                await asyncio.to_thread(shutil.rmtree, directory, True)


async def children(state: AppState, node: Node) -> list[Node]:
    """Every child of a catalog container (read page by page)."""
    found: list[Node] = []
    while page := await state.catalog.list_children(node, offset=len(found), limit=500):
        found.extend(page)
    return found


async def _subtree(state: AppState, node: Node) -> list[Node]:
    found, pending = [node], [node]
    while pending:
        current = pending.pop()
        if current.structure_family == "container":
            page = await children(state, current)
            found.extend(page)
            pending.extend(page)
    return found


def _writable(nodes: list[Node]) -> list[Node]:
    return [n for n in nodes if any(ds.management == "writable" for ds in n.data_sources)]


async def delete_metadata(request: Request) -> Response:
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    if not node.path:
        raise ApiError(405, "The root node cannot be deleted")
    recursive = query_bool(request, "recursive", False)
    external_only = query_bool(request, "external_only", True)
    has_children = node.structure_family == "container" and await state.catalog.count_children(node)
    if has_children and not recursive:
        raise ApiError(409, NOT_EMPTY)
    if external_only and _writable(await _subtree(state, node)):
        raise ApiError(
            409,
            "Some items in this tree are internally managed. Deleting the records will also "
            "delete the underlying data files. If you want to delete them, pass "
            "external_only=False.",
        )
    await delete_node(state, node, recursive=recursive)
    return json_response(None)


async def delete_node(state: AppState, node: Node, *, recursive: bool) -> list[Node]:
    """Delete ``node`` (with its subtree if ``recursive``) and everything it implies: the
    writable data, the hub topics (subscribers end with 1001) and every worker's cached copies.
    Returns the deleted nodes.

    Raises
    ------
    ApiError
        409 if the node has children and not ``recursive`` (one may have been added since a
        caller's check); 503 if the streaming cache is down (then nothing was deleted).
    """
    ensure_streamable(state)
    try:
        deleted = await state.catalog.delete_node(node, recursive=recursive)
    except NotEmpty:  # a child was added since the caller's check
        raise ApiError(409, NOT_EMPTY) from None
    for gone in deleted:
        state.arrays.forget(gone.id)
        if state.hub is not None:
            state.hub.drop_topic(gone.id)
        await _remove_storage(state, gone.data_sources)
    await changed(state, node, subtree=True, dropped=[g.id for g in deleted], stored=True)
    return deleted
