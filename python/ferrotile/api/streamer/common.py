"""What the Redis Streamer REST routes share: authentication (the same API key, query
parameter, cookie and public mode as the rest of ferrotile), stream resolution and error
mapping. (The WebSocket routes, push and pull, are served by the edge:
``rust/src/edge/streamer``.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.requests import HTTPConnection

from ferrotile.api.auth import Access, authorize, credentials
from ferrotile.api.common import state_of
from ferrotile.api.errors import ApiError
from ferrotile.catalog.models import Node
from ferrotile.state import AppState
from ferrotile.streamer import streams
from ferrotile.streamer.params import StreamerInputError, flag, stream_ids
from ferrotile.streamer.streams import StreamName


def authorized(conn: HTTPConnection, access: Access) -> AppState:
    """The worker's state, once ``conn`` may have ``access`` (401 otherwise)."""
    state = state_of(conn)
    found = credentials(conn.headers, conn.query_params, conn.cookies, state.settings.api_key)
    authorize(found, access, public=state.settings.public)
    if state.hub is None:
        raise ApiError(404, "Streaming is not enabled on this server (started with --cache none)")
    return state


def names(state: AppState, conn: HTTPConnection) -> list[StreamName]:
    """The streams of the URL (``a+b``) with the request's ``device_id`` and ``prefix``."""
    query = conn.query_params
    return [
        streams.stream_name(state, sid, query.get("device_id"), query.get("prefix", ""))
        for sid in stream_ids(conn.path_params["sid"])
    ]


async def existing(state: AppState, wanted: Sequence[StreamName]) -> list[Node]:
    """The nodes of streams that must exist already (pull, GET): 404 naming a missing one."""
    nodes = []
    for name in wanted:
        node = await streams.lookup(state, name)
        if node is None:
            raise ApiError(404, f"No such stream: {name.full!r} (nothing was pushed to it yet)")
        nodes.append(node)
    return nodes


def header_names(query: Mapping[str, str], wanted: Sequence[StreamName]) -> list[str]:
    """How streams are named in pull headers: as in the URL, or ``device:prefix+sid`` with
    ``keep_device_id_in_stream_id``."""
    keep = flag(query, "keep_device_id_in_stream_id", False)
    return [name.full if keep else name.sid for name in wanted]


def bad_input(exc: StreamerInputError) -> ApiError:
    return ApiError(400, str(exc))
