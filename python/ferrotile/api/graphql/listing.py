"""The streams of the catalog's ``streams`` subtree, named as Redis Streamer names its keys:
``{device}:{prefix}{sid}`` (device prefixing on: node ``streams/{device}/{prefix}{sid}``) or
``{prefix}{sid}`` (off: node ``streams/{prefix}{sid}``).

``match`` is a Redis glob (``*``, ``?``, ``[...]``), applied as :func:`fnmatch.fnmatchcase`.
Without ``search_meta`` only streams that have had entries are listed (Redis ``SCAN TYPE
stream``); with it, also those that so far only have metadata.
"""

from __future__ import annotations

import asyncio
from fnmatch import fnmatchcase

from ferrotile.api.graphql.types import NO_SUCH_KEY, Stream
from ferrotile.api.metadata import children
from ferrotile.catalog.models import Node
from ferrotile.state import AppState
from ferrotile.streamer import streams
from ferrotile.streamer.params import StreamerInputError


async def children_at(state: AppState, path: tuple[str, ...]) -> list[Node]:
    node = await state.catalog.lookup(path)
    return [] if node is None else await children(state, node)


async def all_streams(state: AppState) -> list[tuple[str, Node]]:
    """``(full name, node)`` of every stream."""
    top = await children_at(state, (streams.ROOT,))
    if not state.settings.streamer_device_prefixing:
        return [(n.key, n) for n in top if n.structure_family != "container"]
    found = []
    for device in top:
        if device.structure_family == "container":
            for node in await children(state, device):
                if node.structure_family != "container":
                    found.append((f"{device.key}:{node.key}", node))
    return found


async def device_streams(state: AppState, device: str) -> list[tuple[str, Node]]:
    """``(key, node)`` of every stream of ``device`` (the key is ``{prefix}{sid}``)."""
    try:
        streams.stream_name(state, "-", device)  # checks the device's key
    except StreamerInputError:
        return []
    nodes = await children_at(state, (streams.ROOT, device))
    return [(n.key, n) for n in nodes if n.structure_family != "container"]


async def has_entries(state: AppState, node: Node) -> bool:
    assert state.hub is not None
    return await state.hub.stream_info(node.id) is not None


async def select(
    state: AppState,
    found: list[tuple[str, Node]],
    match: str | None,
    search_meta: bool,
    prefix: str,
) -> list[tuple[str, Node]]:
    """The streams named ``{prefix}...`` matching ``{prefix}{match}``, prefix stripped, sorted."""
    # Sorting and glob-matching every stream is the CPU-heavy part: off the event loop.
    named = await asyncio.to_thread(_matching, found, f"{prefix}{match or '*'}", prefix)
    selected = []
    for name, node in named:
        if search_meta or await has_entries(state, node):
            selected.append((name[len(prefix) :], node))
    return selected


def _matching(found: list[tuple[str, Node]], pattern: str, prefix: str) -> list[tuple[str, Node]]:
    return [
        (name, node)
        for name, node in sorted(found, key=lambda pair: pair[0])
        if name.startswith(prefix) and fnmatchcase(name, pattern)
    ]


async def find(state: AppState, full: str) -> Node | None:
    """The node of the stream with this full name, None if there is none.

    Device ids may contain ``:`` (and start with it, as the ``:event`` device does), so every
    split into device and key is tried, the shortest device first.
    """
    candidates: list[tuple[str, str | None]]
    if not state.settings.streamer_device_prefixing:
        candidates = [(full, None)]
    else:
        candidates = [
            (full[i + 1 :], full[:i]) for i, char in enumerate(full) if char == ":" and i > 0
        ]
    for key, device in candidates:
        try:
            name = streams.stream_name(state, key, device)
        except StreamerInputError:
            continue
        if name.device is not None and name.device != device:
            continue  # an empty device stands for "default": not this name
        node = await streams.lookup(state, name)
        if node is not None:
            return node
    return None


async def describe(state: AppState, label: str, node: Node | None) -> Stream:
    """The ``Stream`` of ``node`` shown as ``label`` (no node: ``error`` "no such key" and
    ``meta`` ``{}``, as Redis Streamer shows a key that does not exist)."""
    if node is None:
        return Stream(id=label, error=NO_SUCH_KEY)
    assert state.hub is not None
    return Stream.from_info(label, node.metadata, await state.hub.stream_info(node.id))
