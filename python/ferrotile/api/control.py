"""The control plane's answers to the edge (``ferrotile._core.Edge``), which calls these
coroutines once per node-cache miss or persisted write, never per frame.

Each returns ``(status, body, headers)``: 200 with the answer as JSON, or the refusal the client
gets as is (the same status and ``{"detail": ...}`` a route of this app would give).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from ferrotile.api import array_store
from ferrotile.api import register as registered
from ferrotile.api.errors import ApiError
from ferrotile.api.outage import lost_connection
from ferrotile.catalog.models import Node
from ferrotile.errors import CatalogError
from ferrotile.state import AppState
from ferrotile.storage.structure import ArrayStructure
from ferrotile.streamer import streams
from ferrotile.streamer.params import StreamerInputError
from ferrotile.streaming import messages
from ferrotile.validation import InputRejected

Answer = tuple[int, bytes, list[tuple[str, str]]]

#: Structure families that have a stream.
STREAMABLE = frozenset({"array", "container", "ragged", "sparse", "table"})


def _refusal(status: int, detail: str, headers: dict[str, str] | None = None) -> Answer:
    return status, orjson.dumps({"detail": detail}), list((headers or {}).items())


async def _answer(make: Callable[[], Awaitable[Any]]) -> Answer:
    try:
        return 200, orjson.dumps(await make()), []
    except ApiError as exc:
        return _refusal(exc.status, exc.detail, exc.headers)
    except StreamerInputError as exc:
        return _refusal(400, str(exc))
    except InputRejected as exc:
        return _refusal(exc.status, str(exc))
    except CatalogError as exc:
        if lost_connection(exc):
            detail = "The catalog database is unavailable; nothing was changed. Retry shortly."
            return _refusal(503, detail, {"Retry-After": "1"})
        return _refusal(500, f"Catalog error: {exc}")


def array_info(state: AppState, node: Node, structure: ArrayStructure) -> dict[str, Any]:
    """A dense array's structure as the edge validates writes against it, the most it may
    grow to, and the zarr directory the edge's writer stores it in. Regular axes stay compact
    (``{"regular": step}``): the edge lists their blocks only when it serves the structure."""
    stored = structure.to_stored_json()
    return {
        "dtype": structure.dtype.str,
        "itemsize": structure.dtype.itemsize,
        "shape": list(structure.shape),
        "structure": stored,
        "chunks": stored["chunks"],
        "max_bytes": state.settings.max_array_bytes,
        "zarr": array_store.zarr_directory(node),
    }


def node_info(state: AppState, node: Node) -> dict[str, Any]:
    """What the edge needs to know about ``node``."""
    external = registered.is_external(node)
    info: dict[str, Any] = {
        "id": node.id,
        "family": node.structure_family,
        "external": external,
        "schema": messages.schema(node) if node.structure_family in STREAMABLE else None,
    }
    if node.structure_family == "array" and not external and node.data_sources:
        structure = ArrayStructure.from_json(node.data_sources[0].structure or {}, stored=True)
        info["array"] = array_info(state, node, structure)
    return info


class EdgeControl:
    """The coroutines the edge awaits (see the module docs)."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def resolve(self, path: str) -> Answer:
        """The node at ``path``, or the refusal the routes give for it (404, 405, 503)."""

        async def make() -> dict[str, Any]:
            return node_info(self.state, await self.state.node(path))

        return await _answer(make)

    async def store_array(
        self,
        node_id: int,
        path: str,
        kind: str,
        block: Sequence[int] | None,
        offset: Sequence[int] | None,
        shape: Sequence[int] | None,
        extend: bool,
        body: memoryview,
    ) -> Answer:
        """Store a validated write of array data; answer the array's structure after it."""

        async def make() -> dict[str, Any]:
            node, structure, stored_at = await array_store.store(
                self.state, node_id, path, kind, block, offset, shape, extend, body
            )
            return {"array": array_info(self.state, node, structure), "offset": stored_at}

        return await _answer(make)

    async def grow_array(
        self, node_id: int, path: str, old_shape: Sequence[int], new_shape: Sequence[int]
    ) -> Answer:
        """Record that the edge grew a dense array (data and zarr shape already stored); answer
        the array after it."""

        async def make() -> dict[str, Any]:
            node, structure = await array_store.grow(
                self.state, node_id, path, tuple(old_shape), tuple(new_shape)
            )
            return array_info(self.state, node, structure)

        return await _answer(make)

    async def stream(self, sid: str, device: str | None, prefix: str, create: bool) -> Answer:
        """A Redis Streamer stream's node (``id`` None while nothing was pushed to it); with
        ``create``, made (with its device) if missing. A name that cannot be a key: 400."""

        async def make() -> dict[str, Any]:
            name = streams.stream_name(self.state, sid, device, prefix)
            if create:
                node: Node | None = await streams.ensure(self.state, name)
            else:
                node = await streams.lookup(self.state, name)
            return {"id": None if node is None else node.id, "full": name.full}

        return await _answer(make)
