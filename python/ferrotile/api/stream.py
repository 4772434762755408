"""Tiled's stream control: ``DELETE /api/v1/stream/close/{path}`` and the test hook that interrupts
a node's subscribers.

The subscriptions themselves (``WS /api/v1/stream/single/{path}``) are served by the edge
(``rust/src/edge/subscribe.rs``) with no Python per frame; it asks :mod:`ferrotile.api.control`
about the node once per cache miss.
"""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.auth import Access
from ferrotile.api.common import json_response, require, unavailable
from ferrotile.errors import StreamUnavailable

#: Set to 1 to expose ``POST /api/v1/_test/interrupt-streams/{path}`` (tests only).
TEST_HOOKS_ENV = "FERROTILE_TEST_HOOKS"


async def close_stream(request: Request) -> Response:
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    if state.hub is not None:
        try:
            await state.hub.close_stream(node.id)
        except StreamUnavailable as exc:
            raise unavailable(f"{exc}. The stream was not closed.") from None
    return json_response(None)


def test_hooks_enabled() -> bool:
    return os.environ.get(TEST_HOOKS_ENV) == "1"


async def interrupt_streams(request: Request) -> Response:
    """Test hook: close the node's subscribers with 1012, as a lost backing store would."""
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    if state.hub is not None:
        state.hub.interrupt(node.id)
    return json_response(None)
