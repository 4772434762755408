"""The live view in the browser: ``GET /live/`` (a container's streaming nodes and their rates),
``GET /live/{path}`` (one node as it streams), its assets and the listing's data.

The page is one HTML shell and a few JavaScript modules shipped in the package
(``ferrotile/live/``); it reads nodes with the API's own routes and subscribes through
``WS /api/v1/stream/multi``, so no frame passes through Python. The only route of its own that
reads data is :func:`streams`, which the listing polls.
"""

from __future__ import annotations

import asyncio
import html
import time
from importlib import resources
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ferrotile.api.auth import Access
from ferrotile.api.common import json_response, require
from ferrotile.catalog.models import Node
from ferrotile.errors import StreamUnavailable
from ferrotile.state import AppState
from ferrotile.storage.structure import tiled_structure

#: The files under ``ferrotile/live/`` the page loads, by name, with their media types.
ASSETS = {
    "live.css": "text/css; charset=utf-8",
    "live.js": "text/javascript; charset=utf-8",
    "auth.js": "text/javascript; charset=utf-8",
    "listing.js": "text/javascript; charset=utf-8",
    "viewer.js": "text/javascript; charset=utf-8",
    "image.js": "text/javascript; charset=utf-8",
    "plot.js": "text/javascript; charset=utf-8",
    "frames.js": "text/javascript; charset=utf-8",
    "msgpack.js": "text/javascript; charset=utf-8",
}
#: The listing shows a container's newest children, at most this many.
MAX_CHILDREN = 100


class AssetConvertor(Convertor[str]):
    """Only the names in :data:`ASSETS`, so that ``/live/static/x`` for any other ``x`` is the
    page of the node ``static/x`` (a node whose path is ``static/<an asset>`` cannot be shown
    by this URL; the API reads it as usual)."""

    regex = "|".join(name.replace(".", r"\.") for name in ASSETS)

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("live_asset", AssetConvertor())


def _read_asset(name: str) -> bytes:
    return resources.files("ferrotile.live").joinpath(name).read_bytes()


_PAGE = _read_asset("page.html").decode()
_CONTENTS = {name: _read_asset(name) for name in ASSETS}


async def page(request: Request) -> Response:
    """The same shell for every path: the script reads the node and picks the view. No key is
    needed to load it (it holds no data); the page asks for one when the API answers 401."""
    root = html.escape(request.scope.get("root_path", ""))
    return HTMLResponse(_PAGE.replace("{root}", root), headers={"Cache-Control": "no-cache"})


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    return Response(_CONTENTS[name], media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


async def streams(request: Request) -> Response:
    """``GET /live/api/streams?path=P``: the node at ``P`` and its newest children, each with
    its stream's current sequence number, and the server's clock.

    The page derives rates from two answers (sequences per second between them) and the lag of
    a frame from ``time`` and ``utc_offset`` (Tiled's timestamps are naive local time). The
    sequence comes from the hub (with Redis: from Redis, so every worker answers the same).
    """
    state = require(request, Access.READ)
    node = await state.node(request.query_params.get("path", ""))
    children: list[Node] = []
    total = 0
    if node.structure_family == "container":
        total = await state.catalog.count_children(node)
        offset = max(0, total - MAX_CHILDREN)
        children = await state.catalog.list_children(node, offset=offset, limit=MAX_CHILDREN)
    sequences = await asyncio.gather(*(_sequence(state, n) for n in [node, *children]))
    described = [_describe(n, seq) for n, seq in zip([node, *children], sequences, strict=True)]
    return json_response(
        {
            "time": time.time(),
            "utc_offset": time.localtime().tm_gmtoff,
            "node": described[0],
            "children": described[1:],
            "count": total,
        }
    )


async def _sequence(state: AppState, node: Node) -> int | None:
    """The node's last sequence number; None without streaming or while it is unavailable."""
    if state.hub is None:
        return None
    try:
        return await state.hub.current_sequence(node.id)
    except StreamUnavailable:
        return None


def _describe(node: Node, sequence: int | None) -> dict[str, Any]:
    stored = (node.data_sources[0].structure if node.data_sources else None) or {}
    described: dict[str, Any] = {
        "key": node.key,
        "path": list(node.path),
        "structure_family": node.structure_family,
        "sequence": sequence,
    }
    shape: list[int] = stored.get("shape") or []
    if "shape" in stored:
        described["shape"] = shape
    if "chunks" in stored and len(shape) >= 2:
        # Only the image plane's blocks, which the page needs to place a block it receives:
        # the first axis of an array appended frame by frame has millions, and the listing is
        # polled every second.
        plane = {**stored, "shape": shape[-2:], "chunks": stored["chunks"][-2:]}
        described["chunks"] = tiled_structure(plane)["chunks"]
    data_type = stored.get("data_type")
    if isinstance(data_type, dict) and "kind" in data_type:
        described["dtype"] = _dtype_name(data_type)
    if node.structure_family == "table":
        described["columns"] = stored.get("columns")
    return described


def _dtype_name(data_type: dict[str, Any]) -> str:
    """NumPy's spelling, e.g. ``<u2`` (structured dtypes: ``V<itemsize>``)."""
    if "fields" in data_type:
        return f"V{data_type.get('itemsize', '')}"
    order = {"little": "<", "big": ">"}.get(data_type.get("endianness", ""), "|")
    return f"{order}{data_type['kind']}{data_type.get('itemsize', '')}"
