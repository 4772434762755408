"""What every request handler shares inside one worker process: settings, catalog, hub, arrays."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from ferrotile import _core
from ferrotile.api.errors import ApiError
from ferrotile.catalog.catalog import Catalog
from ferrotile.catalog.models import Node
from ferrotile.catalog.paths import split_path
from ferrotile.config import Settings
from ferrotile.errors import InvalidKey
from ferrotile.storage.external.errors import ExternalDataError
from ferrotile.storage.external.tree import FileTrees, is_file_container
from ferrotile.storage.structure import ArrayStructure
from ferrotile.storage.zarr_array import ZarrArray
from ferrotile.streaming.hub import StreamHub


def path_from_file_uri(uri: str) -> Path:
    """``file://localhost/abs/path`` (or ``file:///abs/path``) to a local path."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ValueError(f"Not a file URI: {uri}")
    return Path(unquote(parsed.path))


@dataclass
class ArrayHandles:
    """Open zarr arrays by node id, and one lock per node so that writes to a node serialize."""

    _arrays: dict[int, ZarrArray] = field(default_factory=dict)
    _locks: dict[int, asyncio.Lock] = field(default_factory=dict)

    def lock(self, node_id: int) -> asyncio.Lock:
        lock = self._locks.get(node_id)
        if lock is None:
            lock = self._locks[node_id] = asyncio.Lock()
        return lock

    def get(self, node: Node) -> ZarrArray:
        array = self._arrays.get(node.id)
        if array is None:
            assets = node.data_sources[0].assets if node.data_sources else ()
            if not assets:
                raise ApiError(500, f"Array node {node.key!r} has no storage")
            recorded = node.data_sources[0].structure
            structure = ArrayStructure.from_json(recorded, stored=True) if recorded else None
            array = ZarrArray.open(path_from_file_uri(assets[0].data_uri), structure)
            self._arrays[node.id] = array
        return array

    def close(self, node_id: int) -> None:
        """Drop the open handle (its cached shape may be stale); keep the node's lock."""
        self._arrays.pop(node_id, None)

    def clear(self) -> None:
        """Drop every open handle (locks stay: writes in flight keep serializing)."""
        self._arrays.clear()

    def forget(self, node_id: int) -> None:
        self._arrays.pop(node_id, None)
        self._locks.pop(node_id, None)


@dataclass
class AppState:
    settings: Settings
    catalog: Catalog
    hub: StreamHub | None
    arrays: ArrayHandles = field(default_factory=ArrayHandles)
    files: FileTrees = field(default_factory=FileTrees)
    #: Redis Streamer streams whose retention this process has set on the hub.
    streamer_retention_set: set[int] = field(default_factory=set)
    #: The process's public server (the Rust edge), once it listens.
    edge: _core.Edge | None = None

    async def node(self, path: str, *, fresh: bool = False, in_files: bool = False) -> Node:
        """Resolve a URL path to a node or answer 404 (empty segments are ignored; a `.`/`..`
        segment or a control character is a 422).

        ``fresh`` reads the catalog instead of this worker's cache, for writes that change the
        node's structure: with several workers another one may have changed it a moment ago.

        A path below a registered HDF5 file or zarr group (a container node, see
        :mod:`ferrotile.storage.external.tree`) resolves to a synthetic read-only node when
        ``in_files`` (the read routes: metadata, search, array); other routes answer 405.
        """
        try:
            parts = split_path(path)
        except InvalidKey as exc:  # `..`, control characters: no node can have such a path
            raise ApiError(422, f"Invalid path {path!r}: {exc}") from None
        node = await self.catalog.lookup(parts, fresh=fresh)
        if node is None:
            node = await self._inside_file(parts)
            if node is None:
                raise ApiError(404, f"No such entry: {list(parts)}")
            if not in_files:
                raise ApiError(
                    405,
                    f"{'/'.join(parts)!r} is inside a registered file: it is read-only and "
                    "can only be browsed (metadata, search) and read (array)",
                )
        return node

    async def _inside_file(self, parts: tuple[str, ...]) -> Node | None:
        """The node at ``parts`` inside the file of its nearest file-container ancestor."""
        for i in range(1, len(parts)):
            ancestor = await self.catalog.lookup(parts[:i])
            if ancestor is None:
                return None
            if is_file_container(ancestor):
                readable = self.settings.readable
                try:
                    return await asyncio.to_thread(
                        self.files.resolve, ancestor, parts[i:], readable
                    )
                except ExternalDataError as exc:
                    raise ApiError(exc.status, exc.detail, exc.headers) from None
        return None

    async def file_children(self, node: Node) -> list[Node]:
        """The children of a container backed by an HDF5 file or zarr group, in file order."""
        try:
            return await asyncio.to_thread(self.files.children, node, self.settings.readable)
        except ExternalDataError as exc:
            raise ApiError(exc.status, exc.detail, exc.headers) from None

    async def count_children(self, node: Node) -> int | None:
        """How many children a container lists (read from the file when file-backed; None
        when that file cannot be read now, so that listing its parent still works)."""
        if is_file_container(node):
            try:
                return len(await self.file_children(node))
            except ApiError:
                return None
        return await self.catalog.count_children(node)

    def invalidate(self, change: tuple[int, tuple[str, ...], bool] | None) -> None:
        """Apply a catalog change made by another worker: evict the node (subtree), or all."""
        if change is None:
            self.catalog.evict(None)
            self.arrays.clear()
            return
        node_id, path, subtree = change
        self.catalog.evict(path, subtree=subtree)
        if subtree:
            self.arrays.clear()  # ids below the path are unknown here; deletes are rare
        else:
            self.arrays.close(node_id)

    async def changed(
        self, node: Node, *, subtree: bool = False, dropped: Sequence[int] = ()
    ) -> None:
        """Tell the other workers that ``node`` (and its subtree) changed or went away
        (``dropped``: the ids of deleted nodes, whose streams end with 1001 everywhere)."""
        if self.hub is not None:
            await self.hub.invalidate(node.id, node.path, subtree=subtree, dropped=dropped)

    @property
    def shared_catalog(self) -> bool:
        """Whether other worker processes write to the same catalog."""
        return self.settings.workers > 1 or self.settings.redis

    @property
    def writable_root(self) -> Path | None:
        return self.settings.writable[0] if self.settings.writable else None
