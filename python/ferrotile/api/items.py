"""Render catalog nodes as Tiled "resource" items (``{"id", "attributes", "links", "meta"}``)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ferrotile.catalog.models import Node
from ferrotile.storage.structure import tiled_structure

API = "/api/v1"

#: Values accepted by the ``fields`` query parameter (``""`` = keys only).
FIELDS = frozenset(
    {
        "",
        "metadata",
        "structure_family",
        "structure",
        "count",
        "sorting",
        "specs",
        "data_sources",
        "access_tags",
    }
)


def node_path(node: Node) -> str:
    return "/".join(node.path)


def links(node: Node, base: str) -> dict[str, str]:
    path = node_path(node)
    result = {"self": f"{base}{API}/metadata/{path}"}
    family = node.structure_family
    if family == "container":
        result["search"] = f"{base}{API}/search/{path}"
        result["full"] = f"{base}{API}/container/full/{path}"
    elif family in ("array", "sparse"):
        result["full"] = f"{base}{API}/array/full/{path}"
        ndim = len(structure_of(node, None).get("shape", []))
        template = ",".join(f"{{{i}}}" for i in range(ndim))
        result["block"] = f"{base}{API}/array/block/{path}?block={template}"
    elif family == "awkward":
        result["buffers"] = f"{base}{API}/awkward/buffers/{path}"
        result["full"] = f"{base}{API}/awkward/full/{path}"
    elif family == "table":
        result["full"] = f"{base}{API}/table/full/{path}"
        result["partition"] = f"{base}{API}/table/partition/{path}?partition={{index}}"
    return result


def structure_of(node: Node, count: int | None) -> dict[str, Any]:
    if node.structure_family == "container":
        return {"contents": None, "count": count}
    if node.data_sources and node.data_sources[0].structure is not None:
        return tiled_structure(node.data_sources[0].structure)
    return {}


def render(
    node: Node,
    base: str,
    *,
    count: int | None = None,
    fields: Collection[str] | None = None,
    include_data_sources: bool = False,
) -> dict[str, Any]:
    """One item. ``fields`` (when given) selects which attributes carry values; others are null.

    ``access_tags`` is always a sorted list for tiled >= 0.2.19 clients, and ``access_blob`` is
    sent alongside for older ones (clients ignore attributes they do not know).
    """

    def wanted(name: str) -> bool:
        return fields is None or name in fields

    tags = sorted(node.access_tags)
    attributes: dict[str, Any] = {
        "ancestors": list(node.ancestors),
        "structure_family": node.structure_family if wanted("structure_family") else None,
        "specs": node.specs if wanted("specs") else None,
        "metadata": node.metadata if wanted("metadata") else None,
        "structure": structure_of(node, count) if wanted("structure") else None,
        "access_tags": tags if wanted("access_tags") else None,
        "access_blob": {"tags": tags},
        "sorting": [{"key": "", "direction": 1}] if node.structure_family == "container" else None,
        "data_sources": None,
    }
    if include_data_sources and wanted("data_sources"):
        attributes["data_sources"] = [ds.to_json() for ds in node.data_sources]
    keys_only = fields is not None and not (set(fields) - {""})
    return {
        "id": node.key,
        "attributes": attributes,
        "links": {"self": links(node, base)["self"]} if keys_only else links(node, base),
        "meta": None,
    }
