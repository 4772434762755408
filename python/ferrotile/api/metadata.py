"""``/api/v1/metadata/{path}``: read a node (GET), create a child (POST), delete (DELETE)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from typing import Any

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
from ferrotile.api.items import links, render
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
    create = parse_create(await read_json_object(request))
    if await state.catalog.lookup((*parent.path, create.key)) is not None:
        raise ApiError(409, f"An entry named {create.key!r} already exists")

    node = await create_child(state, parent, create)
    body: dict[str, Any] = {
        "id": node.key,
        "links": links(node, base_url(request)),
        "data_sources": [ds.to_json() for ds in node.data_sources],
        "access_tags": sorted(node.access_tags),
        "access_blob": {"tags": sorted(node.access_tags)},
    }
    return json_response(body)


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


async def _subtree(state: AppState, node: Node) -> list[Node]:
    found, pending = [node], [node]
    while pending:
        current = pending.pop()
        if current.structure_family != "container":
            continue
        offset = 0
        while page := await state.catalog.list_children(current, offset=offset, limit=500):
            found.extend(page)
            pending.extend(page)
            offset += len(page)
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
    ensure_streamable(state)
    try:
        deleted = await state.catalog.delete_node(node, recursive=recursive)
    except NotEmpty:  # a child was added since the check above
        raise ApiError(409, NOT_EMPTY) from None
    for gone in deleted:
        state.arrays.forget(gone.id)
        if state.hub is not None:
            state.hub.drop_topic(gone.id)
        await _remove_storage(state, gone.data_sources)
    await changed(state, node, subtree=True, dropped=[g.id for g in deleted], stored=True)
    return json_response(None)
