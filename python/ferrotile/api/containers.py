"""``/api/v1/container/full/{path}``: a container's whole tree in one document (GET, or POST
with the fields in the body), as the stock client's ``Container.export`` asks for it.

The format is Tiled's JSON export: every node is ``{"contents": {...}, "metadata": {...}}``,
keyed by its key under its parent's ``contents``; arrays (and sparse and awkward arrays) are
leaves, and a table lists its columns as leaves with empty metadata. Only keys and metadata
are exported, no data. ``field`` (repeatable; a JSON list in a POST body) keeps only those
children of the exported container; keys that do not exist are ignored, as Tiled does.

Unlike Tiled, containers without any array or table below them are exported too (Tiled's walk
only reaches containers on the way to a leaf), and sparse and awkward nodes are leaves (Tiled
answers 500). Tiled also offers HDF5, its default; it fails (406) on any nested metadata, as
every Bluesky run has, and is not offered here: ``*/*`` means JSON.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.auth import Access
from ferrotile.api.common import require
from ferrotile.api.errors import ApiError
from ferrotile.api.formats import JSON, negotiate
from ferrotile.api.items import node_path
from ferrotile.api.metadata import children
from ferrotile.catalog.models import Node
from ferrotile.state import AppState
from ferrotile.storage.external.tree import is_file_container

#: What ``GET /api/v1/`` lists under ``formats.container`` (see ``api.formats``).
MEDIA_TYPES = (JSON,)


async def get_full(request: Request) -> Response:
    return await _export(request, request.query_params.getlist("field") or None)


async def post_full(request: Request) -> Response:
    raw = await request.body()
    try:
        fields = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as exc:
        raise ApiError(422, f"Request body is not valid JSON: {exc}") from None
    if fields is not None and not (
        isinstance(fields, list) and all(isinstance(f, str) for f in fields)
    ):
        raise ApiError(422, "The body must be a JSON list of field names (or null)")
    return await _export(request, fields or None)


async def _export(request: Request, fields: list[str] | None) -> Response:
    state = require(request, Access.READ)
    node = await state.node(request.path_params["path"], in_files=True)
    if node.structure_family != "container":
        raise ApiError(
            404,
            f"The node at {node_path(node)} has structure family {node.structure_family} and "
            "this endpoint is compatible with structure families {'container'}",
        )
    media_type = negotiate(request, "container", MEDIA_TYPES)
    tree = {"contents": await _contents(state, node, fields), "metadata": node.metadata}
    body = orjson.dumps(tree)
    limit = state.settings.response_bytesize_limit
    if len(body) > limit:
        raise ApiError(400, f"Response would exceed {limit}. Export a smaller container.")
    headers = {}
    filename = request.query_params.get("filename")
    if filename:
        safe = "".join(ch for ch in filename if ch.isprintable() and ch not in '"\\')
        headers["Content-Disposition"] = f'attachment; filename="{safe}"'
    return Response(body, media_type=media_type, headers=headers)


async def _contents(state: AppState, node: Node, fields: list[str] | None) -> dict[str, Any]:
    if is_file_container(node):  # a registered HDF5 file or zarr group, or a group inside one
        found = await state.file_children(node)
    else:
        found = await children(state, node)
    if fields is not None:
        wanted = set(fields)
        found = [child for child in found if child.key in wanted]
    contents: dict[str, Any] = {}
    for child in found:
        contents[child.key] = {
            "contents": await _child_contents(state, child),
            "metadata": child.metadata,
        }
    return contents


async def _child_contents(state: AppState, child: Node) -> dict[str, Any]:
    if child.structure_family == "container":
        return await _contents(state, child, None)
    if child.structure_family == "table" and child.data_sources:
        structure = child.data_sources[0].structure or {}
        return {column: {"contents": {}, "metadata": {}} for column in structure.get("columns", ())}
    return {}
