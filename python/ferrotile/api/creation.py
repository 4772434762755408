"""Per-structure-family node creation: each family registers how it validates its data source
and how it makes the storage for a new node (arrays in ``arrays.py``, tables in ``tables.py``...).

``POST /metadata`` stays family-agnostic: it checks the common fields, then hands the one data
source to the family's :class:`FamilyWriter`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferrotile.api.errors import ApiError
from ferrotile.catalog.models import Asset, DataSource
from ferrotile.state import AppState


@dataclass(frozen=True)
class ParsedSource:
    """A validated writable data source, ready for :attr:`FamilyWriter.create`."""

    structure: dict[str, Any]
    mimetype: str
    parameters: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    #: Anything the family's ``create`` needs beyond the JSON (e.g. a parsed structure).
    detail: Any = None


@dataclass(frozen=True)
class FamilyWriter:
    """How one structure family creates writable nodes.

    ``parse`` validates the request's data source (a JSON object whose common fields were
    already checked) and raises :class:`~ferrotile.api.errors.ApiError` naming the problem;
    ``create`` makes the storage and returns the data source to record. Nothing may be left
    behind when ``create`` raises. ``delete`` removes the data of a deleted node (and of a node
    whose creation failed after ``create``).
    """

    parse: Callable[[dict[str, Any]], ParsedSource]
    create: Callable[[AppState, ParsedSource], Awaitable[DataSource]]
    #: Removes a deleted node's writable data; default: delete the ``file://`` assets.
    delete: Callable[[AppState, DataSource], Awaitable[None]] | None = None


WRITERS: dict[str, FamilyWriter] = {}


def register(family: str, writer: FamilyWriter) -> None:
    WRITERS[family] = writer


def make_directory(path: Path) -> None:
    path.mkdir(parents=True)


async def directory_source(
    state: AppState,
    family: str,
    source: ParsedSource,
    suffix: str,
    make: Callable[[Path], object],
) -> DataSource:
    """Make a new directory under the writable root with ``make`` and describe it as the one
    (writable, directory) asset of the node's data source; the default delete removes it."""
    root = state.writable_root
    if root is None:
        raise ApiError(405, "This server has no writable storage; start it with -w DIR or --temp")
    directory = root / f"{uuid.uuid4().hex}{suffix}"
    await asyncio.to_thread(make, directory)
    asset = Asset(
        id=None,
        data_uri=f"file://localhost{directory}",
        is_directory=True,
        parameter="data_uri",
        num=None,
    )
    return DataSource(
        id=None,
        structure_family=family,
        structure=source.structure,
        mimetype=source.mimetype,
        parameters=source.parameters,
        properties=source.properties,
        management="writable",
        assets=(asset,),
    )
