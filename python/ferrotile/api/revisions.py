"""``/api/v1/revisions/{path}``: a node's previous metadata versions (GET, paged) and DELETE."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.auth import Access
from ferrotile.api.common import base_url, json_response, query_int, require
from ferrotile.api.errors import ApiError
from ferrotile.api.search import page_links, page_params


async def get_revisions(request: Request) -> Response:
    """List revisions oldest first, paged like search (``page[offset]``, ``page[limit]``)."""
    state = require(request, Access.READ)
    node = await state.node(request.path_params["path"])
    offset, limit = page_params(request)
    revisions, count = await state.catalog.revisions(node, offset=offset, limit=limit)
    return json_response(
        {
            "data": [revision.to_json() for revision in revisions],
            "error": None,
            "links": page_links(request, base_url(request), offset, limit, count),
            "meta": {"count": count},
        }
    )


async def delete_revision(request: Request) -> Response:
    """Delete revision ``?number=N``; 404 if the node has no such revision."""
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    if "number" not in request.query_params:
        raise ApiError(422, "Query parameter 'number' is required")
    number = query_int(request, "number", 0, minimum=1)
    if not await state.catalog.delete_revision(node, number):
        raise ApiError(404, f"No revision {number} for node {node.id}")
    return json_response(None)
