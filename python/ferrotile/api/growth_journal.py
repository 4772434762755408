"""The journal of array growth the edge acknowledged before the catalog recorded it.

A process whose catalog no other process writes lets its edge acknowledge a write that grows an
array once the data and ``zarr.json``'s shape are on disk; the catalog records the growth a
moment later, coalesced (``rust/src/edge/unrecorded.rs``). Before the first such growth of an
array, the edge writes ``<writable root>/.ferrotile-unrecorded/<node id>.json`` naming it. If
the process dies before the catalog caught up, :func:`reconcile` (run when the application
starts, before the edge accepts connections) sets the catalog's shape of each array named there
to the one in its ``zarr.json``, so that every acknowledged append is seen again, then clears
the journal.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from ferrotile.api.array_store import zarr_directory
from ferrotile.api.errors import ApiError
from ferrotile.catalog.uri import parse_catalog_uri
from ferrotile.errors import CatalogError
from ferrotile.state import AppState
from ferrotile.storage.structure import ArrayStructure

__all__ = ["JOURNAL_NAME", "journal_directory", "reconcile"]

log = logging.getLogger("ferrotile.growth")

#: The journal's directory under the first writable directory.
JOURNAL_NAME = ".ferrotile-unrecorded"


def journal_directory(state: AppState) -> Path | None:
    """Where this process's edge journals growth it acknowledges before the catalog records
    it; None when every growth must be recorded first: several processes share the catalog, the
    catalog is a database server (which can be down: a write it cannot record is refused with
    503 then), or nothing is writable."""
    root = state.writable_root
    embedded = parse_catalog_uri(state.settings.catalog_uri).backend == "sqlite"
    if state.shared_catalog or not embedded or root is None:
        return None
    return root / JOURNAL_NAME


def _zarr_shape(directory: str) -> tuple[int, ...] | None:
    try:
        meta = json.loads((Path(directory) / "zarr.json").read_bytes())
        return tuple(int(n) for n in meta["shape"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def _reconcile_one(state: AppState, entry: dict[str, Any]) -> None:
    try:
        node = await state.node(str(entry["path"]), fresh=True)
    except ApiError:
        return  # deleted since
    if node.id != entry.get("node") or zarr_directory(node) != entry.get("zarr"):
        return  # another node now, or other data
    on_disk = _zarr_shape(str(entry["zarr"]))
    source = node.data_sources[0]
    structure = ArrayStructure.from_json(source.structure or {}, stored=True)
    if on_disk is None or len(on_disk) < len(structure.shape):
        return
    # Fixed-width bytes and strings keep one more axis on disk (the bytes of an element).
    grown = on_disk[: len(structure.shape)]
    if grown == structure.shape or any(a < b for a, b in zip(grown, structure.shape, strict=True)):
        return
    assert source.id is not None
    await state.catalog.update_structure(
        node, source.id, structure.with_shape(grown).to_stored_json()
    )
    log.warning(
        "%s: shape %s recorded from zarr.json (was %s in the catalog: the server stopped "
        "before recording appends it had acknowledged)",
        "/".join(node.path),
        grown,
        structure.shape,
    )


async def reconcile(state: AppState) -> int:
    """Record in the catalog the growth the journal names and clear it; the number of entries
    read. A single process's job (the journal exists only when the catalog is unshared)."""
    directory = journal_directory(state)
    if directory is None or not directory.is_dir():
        return 0
    entries = sorted(directory.glob("*.json"))
    for path in entries:
        try:
            entry = json.loads(path.read_bytes())
        except (OSError, ValueError):
            entry = None
        if isinstance(entry, dict):
            try:
                await _reconcile_one(state, entry)
            except CatalogError as exc:  # kept for the next start
                log.warning("growth journal %s not applied: %s", path.name, exc)
                continue
            except ValueError as exc:
                log.warning("growth journal %s not applied: %s", path.name, exc)
        with contextlib.suppress(OSError):
            path.unlink()
    return len(entries)
