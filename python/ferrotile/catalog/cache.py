"""A bounded LRU cache of nodes by path."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from ferrotile.catalog.models import Node


class NodeCache:
    """Least-recently-used map from node path to node. Not thread-safe.

    Parameters
    ----------
    capacity : int
        Maximum number of entries; the least recently used is dropped beyond it.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, ...], Node] = OrderedDict()
        #: Told ``(path, subtree)`` (``(None, True)``: everything) when entries are dropped
        #: because the node changed: the edge keeps its own cache of the same nodes.
        self.on_evict: Callable[[tuple[str, ...] | None, bool], None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def get(self, path: tuple[str, ...]) -> Node | None:
        """Return the cached node at ``path`` (marking it recently used), or None."""
        node = self._entries.get(path)
        if node is not None:
            self._entries.move_to_end(path)
        return node

    def put(self, node: Node) -> None:
        """Cache ``node`` under its path, replacing any previous entry."""
        self._entries[node.path] = node
        self._entries.move_to_end(node.path)
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def evict(self, path: tuple[str, ...]) -> None:
        """Drop the entry at ``path`` (if any)."""
        self._entries.pop(path, None)
        if self.on_evict is not None:
            self.on_evict(path, False)

    def evict_subtree(self, path: tuple[str, ...]) -> None:
        """Drop the entry at ``path`` and every entry below it.

        A linear scan: deletes are rare, and it also drops descendants the database no longer
        lists (e.g. removed by another process).
        """
        depth = len(path)
        stale = [key for key in self._entries if key[:depth] == path]
        for key in stale:
            del self._entries[key]
        if self.on_evict is not None:
            self.on_evict(path, True)

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        if self.on_evict is not None:
            self.on_evict(None, True)
