"""Redis Streamer stream names and the catalog nodes behind them.

A stream ``{device}:{prefix}{sid}`` is the node ``streams/{device}/{prefix}{sid}`` (with device
prefixing off, ``{prefix}{sid}`` is ``streams/{prefix}{sid}``): a 1-D ``uint8`` array of shape
``[0]`` whose Tiled stream carries every pushed entry as an ``array-data`` message. Entries are
streamed and retained by the hub (``--streamer-maxlen`` etc.), not written to the array's file,
as Redis Streamer keeps them only in Redis. Nodes are created on first push; a device is the
container ``streams/{device}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferrotile.api.bodies import parse_create
from ferrotile.api.metadata import create_child
from ferrotile.catalog.models import Node
from ferrotile.catalog.paths import validate_key
from ferrotile.errors import InvalidKey, KeyConflict
from ferrotile.state import AppState
from ferrotile.streamer.params import StreamerInputError
from ferrotile.streaming import messages

ROOT = "streams"
DEFAULT_DEVICE = "default"
#: The structure of a stream's node: bytes, no stored data (see the module docstring).
_STREAM_STRUCTURE: dict[str, Any] = {
    "data_type": {"endianness": "not_applicable", "kind": "u", "itemsize": 1, "dt_units": None},
    "chunks": [[]],
    "shape": [0],
    "dims": None,
    "resizable": False,
}


@dataclass(frozen=True)
class StreamName:
    """A stream as a client names it (``sid``) and where it lives (device and prefix)."""

    sid: str
    device: str | None  # None: device prefixing is off
    prefix: str = ""

    @property
    def key(self) -> str:
        return f"{self.prefix}{self.sid}"

    @property
    def full(self) -> str:
        """The Redis Streamer key: ``{device}:{prefix}{sid}`` or ``{prefix}{sid}``."""
        return self.key if self.device is None else f"{self.device}:{self.key}"

    @property
    def path(self) -> tuple[str, ...]:
        if self.device is None:
            return (ROOT, self.key)
        return (ROOT, self.device, self.key)


def stream_name(state: AppState, sid: str, device: str | None, prefix: str = "") -> StreamName:
    """Check and name a stream (``device`` None or empty: ``default``)."""
    named = StreamName(
        sid,
        (device or DEFAULT_DEVICE) if state.settings.streamer_device_prefixing else None,
        prefix,
    )
    for part in named.path[1:]:
        try:
            validate_key(part)
        except InvalidKey as exc:
            raise StreamerInputError(f"{part!r} cannot name a stream or device: {exc}") from None
    return named


def entry_header() -> dict[str, Any]:
    """The Tiled envelope of one batch of entries (the hub adds ``sequence`` and ``shape``)."""
    header = messages.array_data(mimetype="application/octet-stream", shape=())
    del header["shape"]
    return header


async def lookup(state: AppState, name: StreamName) -> Node | None:
    node = await state.catalog.lookup(name.path)
    if node is not None:
        await _apply_retention(state, node)
    return node


async def ensure(state: AppState, name: StreamName, meta: dict[str, Any] | None = None) -> Node:
    """The stream's node, created (with its device and the ``streams`` root) if missing."""
    node = await lookup(state, name)
    if node is not None:
        return node
    parent = await _container(state, name.path[:-1])
    node = await _create(state, parent, name.path[-1], _stream_body(name.path[-1], meta or {}))
    await _apply_retention(state, node)
    return node


async def ensure_container(state: AppState, path: tuple[str, ...]) -> Node:
    """A container (the ``streams`` root or a device), created with its parents if missing."""
    return await _container(state, path)


async def _container(state: AppState, path: tuple[str, ...]) -> Node:
    node = await state.catalog.lookup(path)
    if node is not None:
        return node
    parent = await _container(state, path[:-1]) if path else None
    if parent is None:  # the root always exists
        raise RuntimeError("the catalog has no root")
    body = {"id": path[-1], "structure_family": "container", "metadata": {}, "specs": []}
    return await _create(state, parent, path[-1], body)


async def _create(state: AppState, parent: Node, key: str, body: dict[str, Any]) -> Node:
    try:
        return await create_child(state, parent, parse_create(body))
    except KeyConflict:  # another worker or connection made it first
        node = await state.catalog.lookup((*parent.path, key), fresh=True)
        if node is None:
            raise
        return node


def _stream_body(key: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": key,
        "structure_family": "array",
        "metadata": meta,
        "specs": [],
        "data_sources": [
            {
                "structure_family": "array",
                "structure": _STREAM_STRUCTURE,
                "id": None,
                "mimetype": None,
                "parameters": {},
                "properties": {},
                "assets": [],
                "management": "writable",
            }
        ],
    }


async def _apply_retention(state: AppState, node: Node) -> None:
    """Once per process and stream: the streamer's retention, not the Tiled nodes' one."""
    if state.hub is None or node.id in state.streamer_retention_set:
        return
    settings = state.settings
    await state.hub.set_retention(
        node.id,
        max_count=settings.streamer_maxlen,
        max_bytes=settings.streamer_max_bytes,
        max_age=settings.streamer_max_age,
    )
    state.streamer_retention_set.add(node.id)
