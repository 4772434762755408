"""Validate the JSON body of ``POST /api/v1/metadata/{path}`` (node creation) before any effect."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ferrotile.api.creation import WRITERS, ParsedSource
from ferrotile.api.errors import ApiError
from ferrotile.catalog.models import STRUCTURE_FAMILIES
from ferrotile.catalog.paths import validate_key
from ferrotile.errors import InvalidKey
from ferrotile.validation import check_data_source_depth, check_depth

MAX_SPECS = 20
MAX_SPEC_NAME = 255
DS_FIELDS = frozenset(
    {
        "id",
        "structure_family",
        "structure",
        "mimetype",
        "parameters",
        "properties",
        "assets",
        "management",
    }
)


@dataclass(frozen=True)
class CreateRequest:
    key: str
    structure_family: str
    metadata: dict[str, Any]
    specs: list[dict[str, Any]]
    source: ParsedSource | None


def _specs(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ApiError(422, "specs must be a list")
    specs = []
    for spec in raw:
        if isinstance(spec, str):
            spec = {"name": spec, "version": None}
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ApiError(422, f"Each spec must be {{'name': str, 'version': str|null}}: {spec!r}")
        if len(spec["name"]) > MAX_SPEC_NAME:
            raise ApiError(422, f"Spec names must be at most {MAX_SPEC_NAME} characters")
        specs.append({"name": spec["name"], "version": spec.get("version")})
    if len(specs) > MAX_SPECS:
        raise ApiError(422, f"At most {MAX_SPECS} specs are allowed, got {len(specs)}")
    names = [(s["name"], s["version"]) for s in specs]
    if len(set(names)) != len(names):
        raise ApiError(422, "Specs must be unique")
    return specs


def _writable_source(sources: Any, family: str) -> dict[str, Any]:
    """The one data source of a writable non-container node, with its common fields checked."""
    if not isinstance(sources, list) or len(sources) != 1:
        raise ApiError(422, f"A {family} node needs exactly one data source")
    ds = sources[0]
    if not isinstance(ds, dict):
        raise ApiError(422, "A data source must be a JSON object")
    extra = set(ds) - DS_FIELDS
    if extra:
        raise ApiError(422, f"Unknown data source fields: {sorted(extra)}")
    if ds.get("assets"):
        raise ApiError(
            400, "Data sources with assets must be registered with POST /api/v1/register/{path}"
        )
    if ds.get("management", "writable") != "writable":
        raise ApiError(422, "Only 'writable' data sources can be created with POST /metadata")
    for name in ("parameters", "properties"):
        if not isinstance(ds.get(name) or {}, dict):
            raise ApiError(422, f"Data source {name} must be a JSON object")
    return ds


@dataclass(frozen=True)
class NodeFields:
    """The fields every node creation carries (POST /metadata and POST /register)."""

    key: str
    structure_family: str
    metadata: dict[str, Any]
    specs: list[dict[str, Any]]


def parse_node_fields(body: dict[str, Any]) -> NodeFields:
    """Check the common fields of a creation body; raise :class:`ApiError` naming the problem.

    The nesting of the metadata and of every data source's documents is checked here (the one
    place both creation routes, POST /metadata and POST /register, pass through): 422 by
    :class:`~ferrotile.validation.TooDeep`, before anything is stored.
    """
    family = body.get("structure_family")
    if family not in STRUCTURE_FAMILIES:
        raise ApiError(422, f"Unknown structure_family {family!r}")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ApiError(422, "metadata must be a JSON object")
    check_depth(metadata)
    sources = body.get("data_sources")
    for source in sources if isinstance(sources, list) else []:
        check_data_source_depth(source)
    raw_key = body.get("id")
    key = str(uuid.uuid4()) if raw_key is None else raw_key
    if not isinstance(key, str):
        raise ApiError(422, "id must be a string")
    try:
        validate_key(key)
    except InvalidKey as exc:
        raise ApiError(422, str(exc)) from None
    access_tags = body.get("access_tags")
    if access_tags is not None and not (
        isinstance(access_tags, list) and all(isinstance(t, str) for t in access_tags)
    ):
        raise ApiError(422, "access_tags must be null or a list of strings")
    if access_tags is not None and body.get("access_blob") is not None:
        raise ApiError(422, "Cannot specify both access_tags and access_blob")
    return NodeFields(key, family, metadata, _specs(body.get("specs")))


def parse_create(body: dict[str, Any]) -> CreateRequest:
    """Check every field of a creation request; raise :class:`ApiError` naming the problem."""
    fields = parse_node_fields(body)
    family = fields.structure_family
    writer = WRITERS.get(family)
    if family != "container" and writer is None:
        raise ApiError(422, f"Creating {family!r} nodes is not supported by this server yet")
    sources = body.get("data_sources") or []
    source = None
    if writer is None:
        if sources:
            raise ApiError(422, "A container node takes no data sources")
    else:
        source = writer.parse(_writable_source(sources, family))
    return CreateRequest(fields.key, family, fields.metadata, fields.specs, source)
