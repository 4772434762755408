"""Immutable records of catalog nodes, their data sources and assets.

Nodes are shared between requests through the lookup cache, so they are frozen. Their dict and
list fields (``metadata``, ``specs``, ...) are plain containers for cheap JSON encoding: callers
must treat them as read-only and copy before modifying.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ferrotile.storage.structure import tiled_structure

STRUCTURE_FAMILIES = frozenset(
    {"container", "array", "table", "sparse", "awkward", "ragged", "bytes"}
)
"""The structure families Tiled 0.2.20 knows."""


@dataclass(frozen=True, slots=True)
class Asset:
    """A file or directory holding (part of) a data source's data.

    ``parameter`` and ``num`` describe how the adapter receives it (e.g. ``"data_uris"`` and the
    position in a file series); they belong to the link between data source and asset, since one
    asset may back several data sources.
    """

    id: int | None
    data_uri: str
    is_directory: bool
    parameter: str | None
    num: int | None
    size: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the asset in Tiled's wire shape.

        Returns
        -------
        dict
            ``{"id", "data_uri", "is_directory", "parameter", "num", "size"}``.
        """
        return {
            "id": self.id,
            "data_uri": self.data_uri,
            "is_directory": self.is_directory,
            "parameter": self.parameter,
            "num": self.num,
            "size": self.size,
        }


@dataclass(frozen=True, slots=True)
class DataSource:
    """How a node's data is stored: format (``mimetype``), adapter arguments and assets."""

    id: int | None
    structure_family: str
    structure: dict[str, Any] | None
    mimetype: str
    parameters: dict[str, Any]
    properties: dict[str, Any]
    management: str
    assets: tuple[Asset, ...]

    def to_json(self, include_assets: bool = True) -> dict[str, Any]:
        """Return the data source in Tiled's wire shape.

        Parameters
        ----------
        include_assets : bool
            When false, ``"assets"`` is an empty list: servers that hide raw asset locations
            still send the key, which Tiled's client model expects.

        Returns
        -------
        dict
            ``{"id", "structure_family", "structure", "mimetype", "parameters", "properties",
            "assets", "management"}``.
        """
        return {
            "id": self.id,
            "structure_family": self.structure_family,
            "structure": None if self.structure is None else tiled_structure(self.structure),
            "mimetype": self.mimetype,
            "parameters": self.parameters,
            "properties": self.properties,
            "assets": [asset.to_json() for asset in self.assets] if include_assets else [],
            "management": self.management,
        }


@dataclass(frozen=True, slots=True)
class Node:
    """One entry of the catalog tree. The root has ``id == 0`` and ``path == ()``."""

    id: int
    path: tuple[str, ...]
    structure_family: str
    metadata: dict[str, Any]
    specs: list[dict[str, Any]]
    access_tags: list[str]
    data_sources: tuple[DataSource, ...]
    time_created: datetime
    time_updated: datetime

    @property
    def key(self) -> str:
        """The last path segment; ``""`` for the root (Tiled's root item ``id``)."""
        return self.path[-1] if self.path else ""

    @property
    def ancestors(self) -> list[str]:
        """The keys of the enclosing containers, as Tiled's ``attributes.ancestors``."""
        return list(self.path[:-1])
