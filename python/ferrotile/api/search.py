"""``GET /api/v1/search/{path}``: a container's children, filtered, sorted and paged.

Filters are Tiled queries, ``filter[<name>][condition][<field>]=<value>``. A query name may
repeat: the client then sends each field once per query, and the i-th values of the fields
make the i-th query (as the reference server groups them). All queries combine with AND.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.auth import Access
from ferrotile.api.common import base_url, json_response, query_bool, query_int, require
from ferrotile.api.errors import ApiError
from ferrotile.api.etag import with_etag
from ferrotile.api.items import FIELDS, render
from ferrotile.catalog.models import Node
from ferrotile.catalog.queries import (
    QUERY_NAMES,
    KeyLookup,
    Query,
    QueryError,
    decode_query,
    parse_sort,
)
from ferrotile.state import AppState
from ferrotile.storage.external.tree import is_file_container
from ferrotile.validation import check_no_nul

DEFAULT_LIMIT = 100
MAX_LIMIT = 300
SUPPORTED_QUERIES = QUERY_NAMES
"""Query names listed in About's ``queries``: exactly those :func:`parse_queries` decodes."""
_FILTER = re.compile(r"^filter\[(?P<name>[^\]]+)\]\[condition\]\[(?P<field>[^\]]+)\]$")


def parse_queries(request: Request) -> list[Query]:
    """Decode every ``filter[...]`` parameter of the request into queries.

    Raises
    ------
    ApiError
        400 for an unknown query name (the reference ignores it, which would silently return
        unfiltered results), a missing field or a malformed value; 422 for a boolean field
        (``exists``, ``case_sensitive``) that is not a boolean, as FastAPI validation answers.
    """
    grouped: dict[str, dict[str, list[str]]] = {}
    for name, value in request.query_params.multi_items():
        match = _FILTER.match(name)
        if match is not None:
            grouped.setdefault(match["name"], {}).setdefault(match["field"], []).append(value)
    queries: list[Query] = []
    for name, fields in grouped.items():
        if name not in QUERY_NAMES:
            raise ApiError(400, f"Unsupported query {name!r}; supported: {sorted(QUERY_NAMES)}")
        for i in range(min(len(values) for values in fields.values())):
            try:
                queries.append(decode_query(name, {f: values[i] for f, values in fields.items()}))
            except QueryError as exc:
                status = 422 if "must be a boolean" in str(exc) else 400
                raise ApiError(status, str(exc)) from None
    return queries


def check_query_text(request: Request) -> None:
    """422 for a NUL character in any query parameter (name or value): neither catalog can look
    it up (SQLite's JSON paths and PostgreSQL's text refuse it), so it could only fail later."""
    for name, value in request.query_params.multi_items():
        check_no_nul(name, "Query parameter names")
        check_no_nul(value, f"Query parameter {name!r}")


def page_params(request: Request) -> tuple[int, int]:
    # page[cursor] is what the reference puts in its `next` links; here a cursor is an offset.
    offset = request.query_params.get("page[offset]")
    cursor = request.query_params.get("page[cursor]")
    if offset is not None and cursor is not None:
        raise ApiError(400, "Cannot specify both page[cursor] and page[offset]")
    name = "page[cursor]" if cursor is not None else "page[offset]"
    start = query_int(request, name, 0)
    return start, min(query_int(request, "page[limit]", DEFAULT_LIMIT), MAX_LIMIT)


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
            count = await state.count_children(child)
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
    check_query_text(request)
    node = await state.node(request.path_params["path"], in_files=True)
    if node.structure_family != "container":
        raise ApiError(404, f"{'/'.join(node.path)!r} is not a container; it cannot be searched")
    offset, limit = page_params(request)
    fields = parse_fields(request)
    include_ds = query_bool(request, "include_data_sources", False)
    try:
        sorting = parse_sort(request.query_params.getlist("sort"))
    except QueryError as exc:
        raise ApiError(400, str(exc)) from None
    queries = parse_queries(request)
    count, page = await _matches(state, node, queries, sorting, offset, limit, fields)

    base = base_url(request)
    data: list[dict[str, Any]] = []
    if fields != ["count"]:
        data = await render_children(state, page, base, fields, include_ds)
    response = json_response(
        {
            "data": data,
            "error": None,
            "links": page_links(request, base, offset, limit, count),
            "meta": {"count": count},
        }
    )
    return with_etag(request, response)


async def _matches(
    state: AppState,
    node: Node,
    queries: Sequence[Query],
    sorting: Sequence[tuple[str, int]],
    offset: int,
    limit: int,
    fields: list[str] | None,
) -> tuple[int, list[Node]]:
    """The number of matching children and the requested page of them."""
    if is_file_container(node):
        return await _file_matches(state, node, queries, sorting, offset, limit)
    if len(queries) == 1 and isinstance(queries[0], KeyLookup):
        # `client[key]` inside a search: served from the node cache, no query.
        key = queries[0].key
        child = await state.catalog.lookup((*node.path, key)) if key else None
        matches = [child] if child is not None else []
        return len(matches), matches[offset : offset + limit]
    try:
        count = await state.catalog.count(node, queries)
        page: list[Node] = []
        if fields != ["count"] and limit:
            page = await state.catalog.search(node, queries, sorting, offset=offset, limit=limit)
    except QueryError as exc:
        raise ApiError(400, str(exc)) from None
    return count, page


async def _file_matches(
    state: AppState,
    node: Node,
    queries: Sequence[Query],
    sorting: Sequence[tuple[str, int]],
    offset: int,
    limit: int,
) -> tuple[int, list[Node]]:
    """Children of an HDF5 file or zarr group, in file order (as Tiled's adapters list them:
    only the default order, reversible, and key lookups; other queries are refused)."""
    children = await state.file_children(node)
    for query in queries:
        if not isinstance(query, KeyLookup):
            raise ApiError(
                400, "Only key lookups can filter the contents of a registered file, not queries"
            )
        children = [child for child in children if child.key == query.key]
    if dict(sorting).get("", 1) == -1:
        children.reverse()
    return len(children), children[offset : offset + limit]


def page_links(
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
