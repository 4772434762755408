"""``POST /api/v1/register/{path}`` (create a node over existing files) and
``PUT /api/v1/data_source/{path}`` (point a registered node at updated files).

Registered data is never written or deleted by the server. Every asset must be a ``file://``
URI that resolves (symlinks followed, ``..`` removed) inside a readable directory (``-r DIR``);
that is checked before anything is recorded, so a refused registration leaves no trace. The
files themselves are only opened when read: like Tiled, the structure is the client's (it
inferred it), and mismatches are answered at read time (503/422, see ``storage.external.serve``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.auth import Access
from ferrotile.api.bodies import DS_FIELDS, parse_node_fields
from ferrotile.api.common import (
    base_url,
    changed,
    ensure_streamable,
    json_response,
    publish,
    read_json_object,
    require,
)
from ferrotile.api.errors import ApiError
from ferrotile.api.items import links, node_path
from ferrotile.catalog.models import Asset, DataSource, Node
from ferrotile.errors import KeyConflict
from ferrotile.state import AppState
from ferrotile.storage.external import ExternalDataError, check_readable
from ferrotile.storage.external import mimetypes as mt
from ferrotile.storage.external.serve import asset_paths, open_array, read_array
from ferrotile.storage.external.tables import check_csv_parameters, read_table
from ferrotile.storage.slicing import Selection, normalize_selection, parse_int_tuple
from ferrotile.storage.structure import ArrayStructure
from ferrotile.storage.tables.arrow_io import InvalidTable, TableStructure
from ferrotile.streaming import messages
from ferrotile.validation import check_data_source_depth


def _fail(exc: ExternalDataError) -> ApiError:
    return ApiError(exc.status, exc.detail, exc.headers)


def _assets(raw: Any, readable: Sequence[Path], *, allow_none: bool) -> tuple[Asset, ...]:
    if allow_none and raw in (None, []):
        return ()
    if not isinstance(raw, list) or not raw:
        raise ApiError(422, "A registered data source needs a non-empty list of assets")
    assets = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("data_uri"), str):
            raise ApiError(422, f"Each asset needs a data_uri string: {item!r}")
        try:
            check_readable(item["data_uri"], readable)
        except ExternalDataError as exc:
            raise _fail(exc) from None
        num, size = item.get("num"), item.get("size")
        if num is not None and (isinstance(num, bool) or not isinstance(num, int)):
            raise ApiError(422, f"Asset num must be an integer or null: {num!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise ApiError(422, f"Asset size must be an integer or null: {size!r}")
        parameter = item.get("parameter")
        if parameter is not None and not isinstance(parameter, str):
            raise ApiError(422, f"Asset parameter must be a string: {parameter!r}")
        assets.append(
            Asset(
                id=None,
                data_uri=item["data_uri"],
                is_directory=bool(item.get("is_directory", False)),
                parameter=parameter,
                num=num,
                size=size,
            )
        )
    return tuple(assets)


def _structure(family: str, raw: Any, properties: dict[str, Any]) -> dict[str, Any] | None:
    if family == "array":
        try:
            structure = ArrayStructure.from_json(raw or {})
        except (ValueError, TypeError, KeyError) as exc:
            raise ApiError(422, f"Invalid array structure: {exc}") from None
        chunks = properties.get("chunks")
        if chunks is not None:
            # The file's own chunking when the advertised structure reshapes it (same elements).
            ok = isinstance(chunks, list) and all(
                isinstance(c, list) and all(isinstance(n, int) and n >= 0 for n in c)
                for c in chunks
            )
            count = 1
            for c in chunks if ok else ():
                count *= sum(c)
            shape_count = 1
            for n in structure.shape:
                shape_count *= n
            if not ok or count != shape_count:
                raise ApiError(
                    422,
                    f"properties.chunks {chunks!r} must be lists of ints describing as many "
                    f"elements as the advertised shape {structure.shape}",
                )
        return structure.to_json()
    if family == "table":
        try:
            return TableStructure.from_json(raw).to_json()
        except InvalidTable as exc:
            raise ApiError(422, f"Invalid table structure: {exc}") from None
    if family == "container":
        return raw if isinstance(raw, dict) else None
    raise ApiError(422, f"Registering {family!r} data is not supported by this server")


def parse_source(
    ds: Any, family: str, readable: Sequence[Path], *, allow_no_assets: bool = False
) -> DataSource:
    """Validate one external data source of a register / data_source request (no effects).

    ``allow_no_assets``: an external data source created with ``POST /metadata`` before its
    files exist (Bluesky's TiledWriter does this for file series); its assets come later with
    ``PUT /data_source``, which checks them against the readable directories then.
    """
    if not isinstance(ds, dict):
        raise ApiError(422, "A data source must be a JSON object")
    extra = set(ds) - DS_FIELDS
    if extra:
        raise ApiError(422, f"Unknown data source fields: {sorted(extra)}")
    if ds.get("management", "external") != "external":
        raise ApiError(
            422, "Only 'external' data sources can be registered; upload with POST /metadata"
        )
    ds_family = ds.get("structure_family") or family
    if ds_family != family:
        raise ApiError(422, f"Data source family {ds_family!r} differs from the node's {family!r}")
    mimetype = ds.get("mimetype")
    if not isinstance(mimetype, str) or mt.normalize(mimetype) not in mt.READABLE:
        raise ApiError(
            415,
            f"Unsupported mimetype for registered data: {mimetype!r}. "
            f"Readable: {sorted(mt.READABLE)}",
        )
    mimetype = mt.normalize(mimetype)
    parameters, properties = ds.get("parameters") or {}, ds.get("properties") or {}
    if not isinstance(parameters, dict) or not isinstance(properties, dict):
        raise ApiError(422, "Data source parameters and properties must be JSON objects")
    if mimetype.startswith("text/csv") or mimetype == mt.CSV_SEQ:
        try:
            check_csv_parameters(parameters)
        except ExternalDataError as exc:
            raise _fail(exc) from None
    if family == "array" and mimetype == mt.HDF5 and not parameters.get("dataset"):
        raise ApiError(422, "An HDF5 array needs parameters.dataset naming the dataset")
    expected = mt.family_of(mimetype)
    if family != expected and not (mimetype in (mt.HDF5, mt.ZARR) and family == "array"):
        raise ApiError(415, f"Media type {mimetype!r} cannot serve a {family!r} node")
    return DataSource(
        id=ds.get("id") if isinstance(ds.get("id"), int) else None,
        structure_family=family,
        structure=_structure(family, ds.get("structure"), properties),
        mimetype=mimetype,
        parameters=parameters,
        properties=properties,
        management="external",
        assets=_assets(ds.get("assets"), readable, allow_none=allow_no_assets),
    )


async def post_register(request: Request) -> Response:
    state = require(request, Access.WRITE)
    parent = await state.node(request.path_params["path"])
    if parent.structure_family != "container":
        raise ApiError(405, f"Cannot create a child of a {parent.structure_family!r} node")
    body = await read_json_object(request)
    node = await create_external(state, parent, body, allow_no_assets=False)
    return created_response(request, node)


def is_external_request(body: dict[str, Any]) -> bool:
    """Whether a ``POST /metadata`` body declares an external (registered) data source."""
    sources = body.get("data_sources")
    return (
        isinstance(sources, list)
        and len(sources) == 1
        and isinstance(sources[0], dict)
        and sources[0].get("management") == "external"
    )


async def create_external(
    state: AppState, parent: Node, body: dict[str, Any], *, allow_no_assets: bool
) -> Node:
    """Record a node over external files (``POST /register``, or ``POST /metadata`` with an
    external data source whose assets may come later) and announce it on the parent's stream.

    Every check (fields, media type, structure, each asset inside a readable directory) is
    made before anything is recorded, so a refused request leaves no trace.
    """
    fields = parse_node_fields(body)
    family = fields.structure_family
    raw_sources = body.get("data_sources") or []
    if not isinstance(raw_sources, list) or len(raw_sources) > 1:
        raise ApiError(422, "A registered node takes exactly one data source")
    if not raw_sources and family != "container":
        raise ApiError(422, f"A registered {family} node needs one data source")
    readable = state.settings.readable
    sources = [
        parse_source(ds, family, readable, allow_no_assets=allow_no_assets) for ds in raw_sources
    ]
    key = fields.key
    if await state.catalog.lookup((*parent.path, key)) is not None:
        raise ApiError(409, f"An entry named {key!r} already exists")
    ensure_streamable(state)
    try:
        node = await state.catalog.create_node(
            parent,
            key,
            structure_family=family,
            metadata=fields.metadata,
            specs=fields.specs,
            access_tags=[],
            data_sources=sources,
        )
    except KeyConflict:
        raise ApiError(409, f"An entry named {key!r} already exists") from None
    await publish(state, parent.id, child_created(node), stored=True)
    return node


def child_created(node: Node) -> dict[str, Any]:
    """``container-child-created`` for a registered node: its data sources with their assets
    (the files it reads), as Tiled sends them.

    Except where the stock client would drop the whole event: tiled 0.2.20's stream model
    requires every asset's ``num`` and ``parameter``, so an event listing a single-file asset
    (``num`` null: one TIFF, one ``.npy``, an HDF5 file) fails to parse there ("A websocket
    message will be ignored") and the subscriber never hears of the node, as with Tiled. Such
    a data source is sent without its assets (``include_data_sources=true`` on the node lists
    them); file series (``num`` 0, 1, ...), e.g. Bluesky's, are sent with all of them.
    """
    message = messages.child_created(node)
    message["data_sources"] = [
        ds.to_json(include_assets=all(a.num is not None and a.parameter for a in ds.assets))
        for ds in node.data_sources
    ]
    return message


def created_response(request: Request, node: Node) -> Response:
    """The body Tiled answers a node creation with (``POST /metadata`` and ``/register``)."""
    tags_out = sorted(node.access_tags)
    return json_response(
        {
            "id": node.key,
            "links": links(node, base_url(request)),
            "data_sources": [ds.to_json() for ds in node.data_sources],
            "access_tags": tags_out,
            "access_blob": {"tags": tags_out},
        }
    )


def _patch_param(request: Request, name: str) -> tuple[int, ...] | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return parse_int_tuple(raw, name)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


async def put_data_source(request: Request) -> Response:
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    patch_shape = _patch_param(request, "patch_shape")
    patch_offset = _patch_param(request, "patch_offset")
    if (patch_shape is None) != (patch_offset is None):
        raise ApiError(400, "patch_shape and patch_offset must be given together (or neither)")
    if (
        patch_shape is not None
        and patch_offset is not None
        and len(patch_shape) != len(patch_offset)
    ):
        raise ApiError(400, "patch_shape and patch_offset must have the same length")
    body = await read_json_object(request)
    raw = body.get("data_source")
    if not isinstance(raw, dict):
        raise ApiError(422, "The body must be {'data_source': {...}}")
    check_data_source_depth(raw)  # it is streamed in the array-ref message
    ds_id = raw.get("id")
    current = next((ds for ds in node.data_sources if ds.id == ds_id), None)
    if current is None:
        if len(node.data_sources) == 1 and ds_id is None:
            current = node.data_sources[0]
        else:
            raise ApiError(404, f"{node_path(node)!r} has no data source {ds_id!r}")
    if current.management != "external":
        raise ApiError(405, "Only registered (external) data sources can be replaced")
    parsed = parse_source(raw, node.structure_family, state.settings.readable)
    replacement = DataSource(
        id=current.id,
        structure_family=parsed.structure_family,
        structure=parsed.structure,
        mimetype=parsed.mimetype,
        parameters=parsed.parameters,
        properties=parsed.properties,
        management="external",
        assets=parsed.assets,
    )
    node = await state.catalog.replace_data_source(node, replacement)
    await changed(state, node, stored=True)  # other workers drop their cached structure
    if node.structure_family == "array":
        stored = next(ds for ds in node.data_sources if ds.id == current.id)
        patch = None if patch_shape is None else (patch_offset or (), patch_shape)
        header = messages.array_ref(stored, base_url(request), node_path(node), patch=patch)
        await publish(state, node.id, header, stored=True)
    return json_response(None)


# --- Reading registered data through the ordinary array/table routes -----------------------


def is_external(node: Node) -> bool:
    """True for nodes whose data is registered files (read-only, served in place)."""
    return bool(node.data_sources) and node.data_sources[0].management == "external"


def _read_array(
    state: AppState, node: Node, structure: ArrayStructure, selection: Selection
) -> np.ndarray:
    ds = node.data_sources[0]
    array = open_array(ds, state.settings.readable)
    try:
        return read_array(array, structure, selection, ds.properties.get("chunks"))
    finally:
        close = getattr(array, "close", None)
        if close is not None:
            close()


async def read_registered_array(
    state: AppState,
    node: Node,
    structure: ArrayStructure,
    selection: Selection,
    block: tuple[int, ...] | None = None,
) -> np.ndarray:
    """``selection`` of a registered array (of one ``block`` of it when given), or the
    503/4xx that the files' state calls for."""
    try:
        if block is None:
            return await asyncio.to_thread(_read_array, state, node, structure, selection)
        region = structure.block_slices(block)
        data = await asyncio.to_thread(_read_array, state, node, structure, region)
        norm = normalize_selection(selection, data.shape)
        out = data[norm.forward]
        return np.flip(out, norm.flip_axes) if norm.flip_axes else out
    except ExternalDataError as exc:
        raise _fail(exc) from None


async def read_registered_table(
    state: AppState,
    node: Node,
    schema: pa.Schema,
    partition: int | None,
    columns: Sequence[str] | None,
) -> pa.Table:
    """One partition (one file) of a registered table, or all of them."""
    ds = node.data_sources[0]
    try:
        paths = asset_paths(ds, state.settings.readable)
        return await asyncio.to_thread(
            read_table, ds.mimetype, paths, ds.parameters, schema, partition, columns
        )
    except (ExternalDataError, IndexError) as exc:
        detail = exc.detail if isinstance(exc, ExternalDataError) else str(exc)
        status = exc.status if isinstance(exc, ExternalDataError) else 422
        raise ApiError(status, detail) from None


READ_ONLY = "Registered (external) data is read-only; update it with PUT /api/v1/data_source"
