"""Per-structure-family node creation: each family registers how it validates its data source
and how it makes the storage for a new node (arrays in ``arrays.py``, tables in ``tables.py``...).

``POST /metadata`` stays family-agnostic: it checks the common fields, then hands the one data
source to the family's :class:`FamilyWriter`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ferrotile.catalog.models import DataSource
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
