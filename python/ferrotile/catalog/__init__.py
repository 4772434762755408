"""The catalog: the tree of nodes with their metadata, data sources and assets.

:class:`Catalog` is the asynchronous façade the HTTP layer uses; :mod:`.store` is the SQL store
behind it and :mod:`.schema` its tables.
"""

from __future__ import annotations

from ferrotile.catalog.catalog import Catalog
from ferrotile.catalog.models import STRUCTURE_FAMILIES, Asset, DataSource, Node
from ferrotile.catalog.paths import join_path, split_path, validate_key

__all__ = [
    "STRUCTURE_FAMILIES",
    "Asset",
    "Catalog",
    "DataSource",
    "Node",
    "join_path",
    "split_path",
    "validate_key",
]
