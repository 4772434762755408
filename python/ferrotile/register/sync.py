"""Make the server's tree match a walked directory: register, update, remove, or leave alone.

Each registered data source carries a fingerprint of its files (path, size, mtime) in its
``properties``; a re-run compares fingerprints without opening any file, so unchanged items cost
one ``stat`` each. Changed items are re-described and updated in place with
``PUT /data_source`` (an array grown along its first axis sends ``patch_shape``/``patch_offset``,
so subscribers get an ``array-ref`` for just the new part); items whose files are gone are
deleted. Items are described and sent concurrently; containers are created first, in order.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ferrotile.register import hdf5
from ferrotile.register.http import Api, Refused, RegisterError
from ferrotile.register.walk import Folder, Item, Skip

FINGERPRINT = "ferrotile_fingerprint"
OUTCOMES = ("registered", "unchanged", "updated", "removed", "skipped")


class Described(Protocol):
    """What :func:`ferrotile.storage.external.describe` returns for one item."""

    @property
    def structure_family(self) -> str: ...
    @property
    def structure(self) -> Any: ...
    @property
    def metadata(self) -> dict[str, Any]: ...

    def data_source(self) -> dict[str, Any]: ...


Describer = Callable[[str, Sequence[Path], Mapping[str, Any]], Described]


def default_describer() -> Describer:
    """The client-side file readers of :mod:`ferrotile.storage.external`."""
    try:
        from ferrotile.storage.external import describe
    except ImportError:
        raise RegisterError(
            "this ferrotile installation cannot read files (ferrotile.storage.external.describe "
            "is missing)"
        ) from None

    def run(mimetype: str, paths: Sequence[Path], parameters: Mapping[str, Any]) -> Described:
        result: Described = describe(mimetype, list(paths), parameters)
        return result

    return run


@dataclass
class Summary:
    """Counts per outcome, and every skipped path with its reason."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    skipped: list[Skip] = field(default_factory=list)

    def line(self) -> str:
        return ", ".join(f"{n} {name}" for name, n in self.counts.items())


class Syncer:
    """Register a walked tree under ``root_parts`` through ``api``.

    Parameters
    ----------
    api
        The server connection.
    describe
        Reads structure, metadata and assets of an item (client-side, as Tiled's walker).
    on_outcome
        Called (from worker threads) with each outcome name, for progress display.
    workers
        Items described and sent at once.
    """

    def __init__(
        self,
        api: Api,
        describe: Describer,
        *,
        on_outcome: Callable[[str], None] | None = None,
        workers: int = 8,
    ) -> None:
        self.api = api
        self.describe = describe
        self.summary = Summary()
        self._on_outcome = on_outcome
        self._lock = threading.Lock()
        self._workers = workers

    def ensure_prefix(self, parts: Sequence[str]) -> None:
        """Create the containers of ``--prefix`` that do not exist yet."""
        for depth in range(len(parts)):
            existing = {c["id"]: c for c in self.api.children(parts[:depth])}
            if parts[depth] not in existing:
                self.api.create_container(parts[:depth], parts[depth])

    def run(self, folder: Folder, parts: Sequence[str], skipped: Sequence[Skip] = ()) -> Summary:
        """Sync ``folder`` (the walk's root) to the container at ``parts``."""
        for skip in skipped:
            self._record("skipped", skip)
        with ThreadPoolExecutor(self._workers, thread_name_prefix="register") as pool:
            futures: list[Future[None]] = []
            try:
                self._sync_folder(folder, list(parts), pool, futures, fresh=False)
                for future in futures:
                    future.result()  # re-raises a fatal RegisterError from a worker
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return self.summary

    def _record(self, outcome: str, skip: Skip | None = None) -> None:
        with self._lock:
            self.summary.counts[outcome] += 1
            if skip is not None:
                self.summary.skipped.append(skip)
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    def _sync_folder(
        self,
        folder: Folder,
        parts: list[str],
        pool: ThreadPoolExecutor,
        futures: list[Future[None]],
        *,
        fresh: bool,
    ) -> None:
        items, folders = self._expand(folder)
        # A container created by this run is known to be empty: no listing needed.
        existing: dict[str, dict[str, Any] | None] = (
            {} if fresh else {c["id"]: c for c in self.api.children(parts)}
        )
        wanted = {f.key for f in folders} | {i.key for i in items}
        for key in existing:
            if key not in wanted and key not in folder.skipped_keys:
                futures.append(pool.submit(self._remove, [*parts, key]))
        for item in items:
            futures.append(pool.submit(self._sync_item, item, parts, existing.get(item.key)))
        for sub in folders:
            node = existing.get(sub.key)
            created = False
            try:
                if node is not None and not _is_plain_container(node):
                    # A file became a directory of the same name: replace the node.
                    self.api.delete([*parts, sub.key])
                    node = None
                if node is None:
                    self.api.create_container(parts, sub.key, sub.metadata)
                    created = True
                elif (node["attributes"].get("metadata") or {}) != sub.metadata:
                    self.api.put_metadata([*parts, sub.key], sub.metadata)
            except Refused as exc:
                self._record("skipped", Skip(sub.path, f"cannot create container: {exc}"))
                continue
            self._sync_folder(sub, [*parts, sub.key], pool, futures, fresh=created)

    def _expand(self, folder: Folder) -> tuple[list[Item], list[Folder]]:
        """The folder's items and sub-folders, with HDF5 files opened into trees."""
        items, folders = [], list(folder.folders)
        for item in folder.items:
            if not hdf5.is_hdf5_file(item):
                items.append(item)
                continue
            try:
                folders.append(hdf5.expand(item))
            except Exception as exc:  # corrupt, truncated or vanished file
                self._record("skipped", Skip(item.paths[0], f"cannot read: {_reason(exc)}"))
                folder.skipped_keys.add(item.key)
        return items, folders

    def _remove(self, parts: list[str]) -> None:
        try:
            self.api.delete(parts)
        except Refused as exc:
            # 409: it holds data written by clients (not registered files); leave it.
            where = Path("/".join(parts))
            self._record("skipped", Skip(where, f"not removed: {exc.detail}"))
            return
        self._record("removed")

    def _sync_item(self, item: Item, parts: list[str], node: dict[str, Any] | None) -> None:
        try:
            fingerprint = fingerprint_of(item)
        except OSError as exc:
            self._record("skipped", Skip(item.paths[0], f"vanished or unreadable: {exc}"))
            return
        source = _source_of(node)
        if source is not None and (source.get("properties") or {}).get(FINGERPRINT) == fingerprint:
            self._record("unchanged")
            return
        if node is not None and source is None and not _is_plain_container(node):
            self._record("skipped", Skip(item.paths[0], "key is taken by data written by a client"))
            return
        try:
            described = self.describe(item.mimetype, item.paths, item.parameters)
        except Exception as exc:  # any reader failure: corrupt, truncated, vanished file
            self._record("skipped", Skip(item.paths[0], f"cannot read: {_reason(exc)}"))
            return
        new_source = described.data_source()
        new_source["properties"] = {
            **(new_source.get("properties") or {}),
            FINGERPRINT: fingerprint,
        }
        metadata = dict(described.metadata or {})
        node_parts = [*parts, item.key]
        try:
            if node is None:
                self.api.register(parts, item.key, described.structure_family, metadata, new_source)
                self._record("registered")
                return
            if source is not None and node["attributes"]["structure_family"] == (
                described.structure_family
            ):
                if item.parameters.get("dataset") and _same(source, new_source, node, metadata):
                    # One fingerprint covers every dataset of the file; this one is as it was.
                    self._record("unchanged")
                    return
                new_source["id"] = source.get("id")
                patch = growth_patch(source.get("structure"), described.structure)
                self.api.put_data_source(node_parts, new_source, patch)
                if metadata != (node["attributes"].get("metadata") or {}):
                    self.api.put_metadata(node_parts, metadata)
            else:
                # Another family (or a container where a file now is): replace the node.
                self.api.delete(node_parts)
                self.api.register(parts, item.key, described.structure_family, metadata, new_source)
        except Refused as exc:
            if exc.status == 403:
                # Not under the server's readable directories (-r), or no permission to
                # register: every other file would be refused the same way.
                raise RegisterError(
                    f"{item.paths[0]}: the server refused it: {exc.detail}"
                ) from None
            self._record("skipped", Skip(item.paths[0], str(exc)))
            return
        self._record("updated")


def fingerprint_of(item: Item) -> str:
    """A digest of the item's media type, file paths, sizes and modification times.

    A directory store (zarr) is fingerprinted by every file inside it, so a new chunk counts.
    """
    digest = hashlib.blake2b(item.mimetype.encode(), digest_size=16)
    digest.update(repr(sorted(item.parameters.items())).encode())
    for path in item.paths:
        for file, info in _files_of(path) if item.is_directory else [(path, path.stat())]:
            digest.update(f"\0{file}\0{info.st_size}\0{info.st_mtime_ns}".encode())
    return digest.hexdigest()


def _files_of(directory: Path) -> list[tuple[Path, os.stat_result]]:
    found = []
    for base, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = Path(base) / name
            found.append((path, path.stat()))
    return found


def growth_patch(old: Any, new: Any) -> tuple[list[int], list[int]] | None:
    """``(patch_shape, patch_offset)`` when array ``new`` is ``old`` grown along axis 0.

    Subscribers then get an ``array-ref`` for the appended part only; otherwise ``None``
    (the whole array changed, or it is not an array).
    """
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return None
    old_shape, new_shape = old.get("shape"), new.get("shape")
    if not isinstance(old_shape, list) or not isinstance(new_shape, list):
        return None
    if not old_shape or len(old_shape) != len(new_shape) or old_shape[1:] != new_shape[1:]:
        return None
    if new_shape[0] <= old_shape[0]:
        return None
    return [new_shape[0] - old_shape[0], *new_shape[1:]], [old_shape[0]] + [0] * (
        len(new_shape) - 1
    )


def _source_of(node: dict[str, Any] | None) -> dict[str, Any] | None:
    """The node's one external data source, if it has exactly that."""
    if node is None:
        return None
    sources = node["attributes"].get("data_sources") or []
    if len(sources) == 1 and sources[0].get("management") == "external":
        source: dict[str, Any] = sources[0]
        return source
    return None


def _same(
    source: dict[str, Any], new: dict[str, Any], node: dict[str, Any], metadata: dict[str, Any]
) -> bool:
    return (
        source.get("structure") == new["structure"]
        and (source.get("parameters") or {}) == new["parameters"]
        and (node["attributes"].get("metadata") or {}) == metadata
    )


def _is_plain_container(node: dict[str, Any]) -> bool:
    attributes = node["attributes"]
    return attributes.get("structure_family") == "container" and not attributes.get("data_sources")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"vanished ({exc.filename or exc})"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
