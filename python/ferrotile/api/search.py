"""``GET /api/v1/search/{path}``: list a container's children, paged, with key lookup."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.auth import Access
from ferrotile.api.common import base_url, json_response, query_bool, query_int, require
from ferrotile.api.errors import ApiError
from ferrotile.api.items import FIELDS, render
from ferrotile.catalog.models import Node
from ferrotile.state import AppState

DEFAULT_LIMIT = 100
MAX_LIMIT = 300
SUPPORTED_QUERIES = frozenset({"lookup"})
_FILTER = re.compile(r"^filter\[(?P<name>[^\]]+)\]\[condition\]\[(?P<field>[^\]]+)\]$")


def _filters(request: Request) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for name, value in request.query_params.multi_items():
        match = _FILTER.match(name)
        if match is None:
            continue
        if match["name"] not in SUPPORTED_QUERIES:
            raise ApiError(400, f"Unsupported query {match['name']!r}; supported: lookup")
        found.setdefault(match["name"], {})[match["field"]] = value
    return found


def parse_fields(request: Request) -> list[str] | None:
    values = request.query_params.getlist("fields")
    if not values:
        return None
    unknown = [v for v in values if v not in FIELDS]
    if unknown:
        raise ApiError(422, f"Unknown fields {unknown}; expected some of {sorted(FIELDS)}")
    return values


async def render_children(
    state: AppState,
    children: list[Node],
    base: str,
    fields: list[str] | None,
    include_data_sources: bool,
) -> list[dict[str, Any]]:
    items = []
    for child in children:
        count = None
        if child.structure_family == "container":
            count = await state.catalog.count_children(child)
        items.append(
            render(
                child,
                base,
                count=count,
                fields=fields,
                include_data_sources=include_data_sources,
            )
        )
    return items


async def search(request: Request) -> Response:
    state = require(request, Access.READ)
    node = await state.node(request.path_params["path"])
    if node.structure_family != "container":
        raise ApiError(404, f"{'/'.join(node.path)!r} is not a container; it cannot be searched")
    offset = query_int(request, "page[offset]", 0)
    limit = min(query_int(request, "page[limit]", DEFAULT_LIMIT), MAX_LIMIT)
    fields = parse_fields(request)
    include_ds = query_bool(request, "include_data_sources", False)
    sort = request.query_params.get("sort", "")
    if sort not in ("", "_"):
        raise ApiError(400, f"Sorting by {sort!r} is not supported by this server yet")
    filters = _filters(request)

    if "lookup" in filters:
        key = filters["lookup"].get("key", "")
        child = await state.catalog.lookup((*node.path, key)) if key else None
        matches = [child] if child is not None else []
        count = len(matches)
        page = matches[offset : offset + limit]
    else:
        count = await state.catalog.count_children(node)
        page = await state.catalog.list_children(node, offset=offset, limit=limit)

    base = base_url(request)
    data: list[dict[str, Any]] = []
    if fields != ["count"]:
        data = await render_children(state, page, base, fields, include_ds)
    return json_response(
        {
            "data": data,
            "error": None,
            "links": _page_links(request, base, offset, limit, count),
            "meta": {"count": count},
        }
    )


def _page_links(
    request: Request, base: str, offset: int, limit: int, count: int
) -> dict[str, str | None]:
    path = request.url.path

    def at(page_offset: int) -> str:
        params = [
            (k, v) for k, v in request.query_params.multi_items() if not k.startswith("page[")
        ]
        params += [("page[offset]", str(page_offset)), ("page[limit]", str(limit))]
        return f"{base}{path}?{urlencode(params)}"

    return {
        "self": at(offset),
        "first": at(0),
        "next": at(offset + limit) if limit and offset + limit < count else None,
    }
