"""The asynchronous catalog façade used by the HTTP layer.

Every database call runs on one dedicated thread, which owns the connection (``sqlite3``
connections are bound to their thread) and serialises the calls, so the event loop never blocks
on the database and a SQLite file sees one writer per process.

Lookups are served from an in-process LRU cache once warm, so that the write path (PUT/PATCH of
array data) pays no catalog query per request. The cache is kept right by applying each
operation's cache change in a loop callback queued by the catalog thread the moment the
operation finishes: changes land in the order the thread ran the operations, so a lookup that
read a node before a delete cannot re-insert it after the delete's eviction. The cache is per
process: a node changed by another worker process stays stale here until evicted with
:meth:`Catalog.evict` (workers sharing a Redis cache tell each other, see
:mod:`ferrotile.streaming.hub`), or pass ``fresh=True`` to :meth:`Catalog.lookup` to bypass it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from ferrotile.catalog.cache import NodeCache
from ferrotile.catalog.models import STRUCTURE_FAMILIES, DataSource, Node
from ferrotile.catalog.paths import join_path, validate_key
from ferrotile.catalog.queries import Query
from ferrotile.catalog.query_sql import compile_filters, compile_sort
from ferrotile.catalog.revisions import Revision
from ferrotile.catalog.sqlite import open_sqlite_store
from ferrotile.catalog.store import SqlStore
from ferrotile.catalog.uri import CatalogLocation, parse_catalog_uri
from ferrotile.errors import CatalogError

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_CACHE_SIZE = 10_000


class Catalog:
    """Asynchronous access to the catalog tree. Create it with :meth:`open`.

    Use one instance from one event loop. Returned nodes are shared with the cache: do not
    modify their ``metadata``, ``specs`` or ``access_tags``.
    """

    def __init__(
        self, store: SqlStore, executor: ThreadPoolExecutor, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        self._store = store
        self._executor = executor
        self._cache = NodeCache(cache_size)
        self._closed = False

    @classmethod
    async def open(
        cls,
        uri: str,
        *,
        init: bool = False,
        create: bool = False,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> Catalog:
        """Open the catalog at ``uri``.

        Parameters
        ----------
        uri : str
            ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite+aiosqlite:///...``,
            ``sqlite:///:memory:``, a file path ending in ``.db``/``.sqlite``, or
            ``postgresql://user:password@host:port/database`` (also ``postgresql+asyncpg://``).
        init : bool
            Create the database (SQLite) or its schema (PostgreSQL) if missing and apply
            missing schema migrations (``--init``).
        create : bool
            Create the database if missing, but do not touch an existing one.
        cache_size : int
            Capacity of the lookup cache, in nodes.

        Returns
        -------
        Catalog

        Raises
        ------
        CatalogError
            With a one-line message if the database cannot be used (see
            :func:`ferrotile.catalog.sqlite.open_sqlite_store` and
            :func:`ferrotile.catalog.postgres.open_postgresql_store`) and for unknown schemes.
        """
        location = parse_catalog_uri(uri)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferrotile-catalog")
        opener = functools.partial(_open_store, location, init=init, create=create)
        try:
            store = await asyncio.get_running_loop().run_in_executor(executor, opener)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(store, executor, cache_size)

    async def _run(
        self,
        then: Callable[[T], None] | None,
        function: Callable[P, T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``function`` on the catalog thread; apply ``then`` to its result on the loop.

        ``then`` is queued on the loop from the catalog thread as soon as ``function`` returns,
        before the caller resumes and even if the caller was cancelled meanwhile (see the
        module docstring for why the order matters).
        """
        if self._closed:
            raise CatalogError("The catalog is closed")
        loop = asyncio.get_running_loop()
        future = self._executor.submit(function, *args, **kwargs)
        if then is not None:
            future.add_done_callback(functools.partial(_relay, loop, then))
        try:
            return await asyncio.wrap_future(future)
        except self._store.driver_error as exc:
            # Queued behind the failed call, before any later one: a lost connection (e.g. a
            # PostgreSQL restart) costs this call, not every call from now on.
            self._executor.submit(self._store.recover)
            raise CatalogError(f"Catalog database error: {' '.join(str(exc).split())}") from exc

    async def lookup(self, path: tuple[str, ...], *, fresh: bool = False) -> Node | None:
        """Return the node at ``path`` (``()`` is the root), or None if there is none.

        Parameters
        ----------
        path : tuple of str
            Keys from the root, e.g. from :func:`ferrotile.catalog.paths.split_path`.
        fresh : bool
            Read the database even if the node is cached (and refresh the cache).

        Returns
        -------
        Node or None
            Absent nodes are not cached, so a node created by another process is found.
        """
        if not fresh:
            cached = self._cache.get(path)
            if cached is not None:
                return cached
        return await self._run(self._remember, self._store.get_by_path, join_path(path))

    def evict(self, path: tuple[str, ...] | None, *, subtree: bool = False) -> None:
        """Forget a node changed elsewhere (another worker): ``path`` (and below it if
        ``subtree``), or everything when ``path`` is None.

        The entry goes now, and once more after every catalog call already queued has landed,
        so that a lookup that read the database before the change cannot re-insert it.
        """

        def drop(_: object = None) -> None:
            if path is None:
                self._cache.clear()
            elif subtree:
                self._cache.evict_subtree(path)
            else:
                self._cache.evict(path)

        drop()
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(RuntimeError):  # executor shut down: nothing left to serve
            future = self._executor.submit(lambda: None)
            future.add_done_callback(functools.partial(_relay, loop, drop))

    def watch(self, on_evict: Callable[[tuple[str, ...] | None, bool], None]) -> None:
        """Be told ``(path, subtree)`` whenever cached nodes are dropped because they changed
        (``(None, True)``: everything), e.g. to keep another cache of the same nodes right."""
        self._cache.on_evict = on_evict

    def _remember(self, node: Node | None) -> None:
        if node is not None:
            self._cache.put(node)

    async def create_node(
        self,
        parent: Node,
        key: str,
        *,
        structure_family: str,
        metadata: dict[str, Any] | None = None,
        specs: list[dict[str, Any]] | None = None,
        access_tags: list[str] | None = None,
        data_sources: Sequence[DataSource] = (),
    ) -> Node:
        """Create a child of the container ``parent``.

        Parameters
        ----------
        parent : Node
            A container node.
        key : str
            The new node's key, checked with :func:`ferrotile.catalog.paths.validate_key`.
        structure_family : str
            One of :data:`ferrotile.catalog.models.STRUCTURE_FAMILIES`.
        metadata, specs, access_tags
            The node's attributes (default empty). Access tags are stored sorted, the order
            Tiled serves them in.
        data_sources : sequence of DataSource
            Stored with their assets; ids are assigned by the database.

        Returns
        -------
        Node
            The stored node (also cached, so the first write to it costs no query).

        Raises
        ------
        InvalidKey
            If ``key`` is not a valid key.
        ValueError
            If ``structure_family`` is unknown.
        KeyConflict
            If ``parent`` already has a child ``key``.
        CatalogError
            If ``parent`` is not a container or no longer exists.
        """
        validate_key(key)
        if structure_family not in STRUCTURE_FAMILIES:
            raise ValueError(f"Unknown structure family {structure_family!r}")
        if parent.structure_family != "container":
            raise CatalogError(f"{join_path(parent.path)!r} is not a container")
        return await self._run(
            self._cache.put,
            self._store.create_node,
            parent,
            key,
            structure_family,
            metadata if metadata is not None else {},
            specs if specs is not None else [],
            sorted(access_tags) if access_tags is not None else [],
            tuple(data_sources),
        )

    async def list_children(self, parent: Node, *, offset: int = 0, limit: int = 100) -> list[Node]:
        """Return children ``offset`` to ``offset + limit - 1`` of ``parent``, oldest first."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        return await self._run(None, self._store.list_children, parent.id, offset, limit)

    async def count_children(self, parent: Node) -> int:
        """Return the number of children of ``parent``."""
        return await self._run(None, self._store.count_children, parent.id)

    async def update_structure(
        self, node: Node, data_source_id: int, structure: dict[str, Any]
    ) -> Node:
        """Replace the structure of one of ``node``'s data sources.

        Parameters
        ----------
        node : Node
            The node owning the data source.
        data_source_id : int
            The data source's id.
        structure : dict
            The new structure.

        Returns
        -------
        Node
            The node as now stored (the cache holds it too).

        Raises
        ------
        CatalogError
            If the data source does not belong to ``node`` or the node no longer exists.
        """
        if all(source.id != data_source_id for source in node.data_sources):
            raise CatalogError(f"{join_path(node.path)!r} has no data source {data_source_id}")
        return await self._write_and_reload(
            node, lambda: self._store.update_structure(data_source_id, structure)
        )

    async def replace_data_source(self, node: Node, source: DataSource) -> Node:
        """Overwrite one of ``node``'s data sources (matched by ``source.id``) with its assets.

        Returns
        -------
        Node
            The node as now stored (the cache holds it too).

        Raises
        ------
        CatalogError
            If the data source does not belong to ``node`` or the node no longer exists.
        """
        if source.id is None or all(ds.id != source.id for ds in node.data_sources):
            raise CatalogError(f"{join_path(node.path)!r} has no data source {source.id}")
        return await self._write_and_reload(node, lambda: self._store.replace_data_source(source))

    async def _write_and_reload(self, node: Node, write: Callable[[], object]) -> Node:
        """Run ``write`` on the catalog thread, re-read ``node`` and put it in the cache."""
        path = join_path(node.path)

        def update() -> Node | None:
            write()
            return self._store.get_by_path(path)

        def refresh(updated: Node | None) -> None:
            if updated is None:
                self._cache.evict_subtree(node.path)
            else:
                self._cache.put(updated)

        updated = await self._run(refresh, update)
        if updated is None:
            raise CatalogError(f"{path!r} no longer exists")
        return updated

    async def delete_node(self, node: Node, *, recursive: bool = False) -> list[Node]:
        """Delete ``node`` (with its subtree if ``recursive``) and evict it from the cache.

        Returns
        -------
        list of Node
            The deleted nodes, deepest first, so the caller can remove their data.

        Raises
        ------
        NotEmpty
            If the node has children and ``recursive`` is false.
        CatalogError
            If ``node`` is the root.
        """
        return await self._run(
            lambda _: self._cache.evict_subtree(node.path),
            self._store.delete_node,
            node,
            recursive,
        )

    async def search(
        self,
        parent: Node,
        queries: Sequence[Query] = (),
        sorting: Sequence[tuple[str, int]] = (),
        *,
        offset: int = 0,
        limit: int = 100,
    ) -> list[Node]:
        """Return a page of the children of ``parent`` that match every query, sorted.

        Parameters
        ----------
        parent : Node
            A container.
        queries : sequence of Query
            From :func:`ferrotile.catalog.queries.decode_query`; they combine with AND.
        sorting : sequence of (key, direction)
            From :func:`ferrotile.catalog.queries.parse_sort`; insertion order when empty.
        offset, limit : int
            The page.

        Returns
        -------
        list of Node

        Raises
        ------
        QueryError
            For a query that cannot be compiled (before touching the database).
        """
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        if not queries and all(key == "" and d > 0 for key, d in sorting):
            return await self.list_children(parent, offset=offset, limit=limit)
        dialect = self._store.dialect
        where = compile_filters(queries, dialect)
        order = compile_sort(sorting, dialect)
        return await self._run(
            None, self._store.search_children, parent.id, where, order, offset, limit
        )

    async def count(self, parent: Node, queries: Sequence[Query] = ()) -> int:
        """Return how many children of ``parent`` match every query (see :meth:`search`)."""
        if not queries:
            return await self.count_children(parent)
        where = compile_filters(queries, self._store.dialect)
        return await self._run(None, self._store.count_matching, parent.id, where)

    async def replace_metadata(
        self,
        node: Node,
        *,
        metadata: dict[str, Any],
        specs: list[dict[str, Any]],
        access_tags: list[str],
        drop_revision: bool = False,
    ) -> tuple[Node, int | None]:
        """Replace a node's metadata, specs and access tags, keeping the old as a revision.

        Parameters
        ----------
        node : Node
            The node to update.
        metadata, specs, access_tags
            The complete new values (access tags are stored sorted).
        drop_revision : bool
            Do not record the previous metadata and specs as a revision.

        Returns
        -------
        (Node, int or None)
            The node as now stored (also cached) and the new revision number (None with
            ``drop_revision``).

        Raises
        ------
        CatalogError
            If the node no longer exists.
        """
        path = join_path(node.path)

        def update() -> tuple[Node | None, int | None]:
            number = self._store.replace_metadata(
                node.id, metadata, specs, sorted(access_tags), not drop_revision
            )
            return self._store.get_by_path(path), number

        def refresh(result: tuple[Node | None, int | None]) -> None:
            if result[0] is None:
                self._cache.evict_subtree(node.path)
            else:
                self._cache.put(result[0])

        updated, number = await self._run(refresh, update)
        if updated is None:
            raise CatalogError(f"{path!r} no longer exists")
        return updated, number

    async def revisions(
        self, node: Node, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[Revision], int]:
        """Return a page of ``node``'s revisions (oldest first) and their total number."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        return await self._run(None, self._store.list_revisions, node.id, offset, limit)

    async def delete_revision(self, node: Node, number: int) -> bool:
        """Delete revision ``number`` of ``node``; return whether it existed."""
        return await self._run(None, self._store.delete_revision, node.id, number)

    async def close(self) -> None:
        """Close the database connection and stop the catalog thread. Idempotent."""
        if self._closed:
            return
        try:
            await self._run(None, self._store.close)
        finally:
            self._closed = True
            self._cache.clear()
            self._executor.shutdown(wait=False)


def _open_store(location: CatalogLocation, *, init: bool, create: bool) -> SqlStore:
    if location.backend == "postgresql":
        # Imported here so that SQLite-only use never loads libpq.
        from ferrotile.catalog.postgres import open_postgresql_store

        return open_postgresql_store(location, init=init, create=create)
    return open_sqlite_store(location.path, init=init, create=create)


def _relay(
    loop: asyncio.AbstractEventLoop, then: Callable[[Any], None], future: Future[Any]
) -> None:
    # Runs on the catalog thread when the call finishes; queues the cache change on the loop.
    if future.cancelled() or future.exception() is not None:
        return
    # A closed loop (RuntimeError) has nothing left to serve from the cache.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(then, future.result())
