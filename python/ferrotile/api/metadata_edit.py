"""``PATCH`` and ``PUT /api/v1/metadata/{path}``: edit a node's metadata, specs and access tags.

Every edit is checked completely before anything is stored (a failing patch, too many specs or a
bad value changes nothing), stored in one transaction that keeps the previous metadata and specs
as a revision (unless ``?drop_revision=true``), then announced on the parent's stream as
``container-child-metadata-updated``.

Access tags: this server has no access policy (single-user, API-key mode), so, as Tiled then
does, requested tags are not stored; the response carries ``access_tags`` (the stored, sorted
tags) whenever the request asked for different ones, which tells the client what it got.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer
from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.auth import Access
from ferrotile.api.bodies import _specs as validate_specs
from ferrotile.api.common import (
    changed,
    ensure_streamable,
    json_response,
    publish,
    query_bool,
    read_json_object,
    require,
)
from ferrotile.api.errors import ApiError
from ferrotile.catalog.models import Node
from ferrotile.state import AppState
from ferrotile.streaming import messages
from ferrotile.validation import MAX_JSON_DEPTH, TooDeep, check_depth, json_depth

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch, returning a new document (``target`` is untouched).

    Parameters
    ----------
    target : Any
        The current document.
    patch : Any
        A dict merges key by key (``null`` deletes a key); anything else replaces the target.

    Returns
    -------
    Any
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _json_patch(document: Any, patch: Any, what: str) -> Any:
    if not isinstance(patch, list):
        raise ApiError(422, f"{what} must be a list of JSON Patch operations")
    try:
        # in_place=False: the document is shared with the node cache.
        return jsonpatch.apply_patch(document, patch, in_place=False)
    except jsonpatch.InvalidJsonPatch as exc:
        raise ApiError(422, f"Invalid JSON Patch for {what}: {exc}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        # A well-formed patch that does not apply (missing path, failed "test" op).
        raise ApiError(409, f"JSON Patch for {what} cannot be applied: {exc}") from None
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise ApiError(422, f"Invalid JSON Patch for {what}: {exc}") from None


def _check_tags(tags: Any, message: str) -> list[str]:
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ApiError(422, message)
    return sorted(set(tags))


def _legacy_blob_requested(body: dict[str, Any]) -> bool:
    # tiled < 0.2.19 sends `access_blob` (ops or a dict) instead of `access_tags`.
    return bool(body.get("access_blob"))


async def patch_metadata(request: Request) -> Response:
    """Apply a JSON Patch (RFC 6902) or a merge patch (RFC 7386) to metadata/specs/tags."""
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    body = await read_json_object(request)
    drop_revision = query_bool(request, "drop_revision", False)
    if "specs" not in body:
        raise ApiError(422, "Field 'specs' is required (null for no change)")
    content_type = body.get("content-type")
    current_tags = sorted(node.access_tags)
    # The patch itself first, since applying it recurses; the result is checked when stored.
    # A JSON Patch value sits three levels below the body: {"metadata": [{"value": ...}]}.
    if json_depth(body, MAX_JSON_DEPTH + 3) > MAX_JSON_DEPTH + 3:
        raise TooDeep(f"The patch is nested too deep: metadata may nest {MAX_JSON_DEPTH} levels")
    if content_type == JSON_PATCH:
        metadata = _json_patch(node.metadata, body.get("metadata") or [], "metadata")
        raw_specs = _json_patch(node.specs, body.get("specs") or [], "specs")
        # Tiled applies the ops to the sorted list, the order it serves.
        tags = _json_patch(current_tags, body.get("access_tags") or [], "access_tags")
    elif content_type == MERGE_PATCH:
        metadata = merge_patch(node.metadata, body.get("metadata") or {})
        # null means "no change" here (a merge patch of [] would clear the list).
        raw_specs = node.specs if body["specs"] is None else merge_patch(node.specs, body["specs"])
        raw_tags = body.get("access_tags")
        tags = current_tags if raw_tags is None else merge_patch(current_tags, raw_tags)
    else:
        raise ApiError(406, f"valid content types: {JSON_PATCH}, {MERGE_PATCH}")
    if not isinstance(metadata, dict):
        raise ApiError(422, "The patched metadata must be a JSON object")
    specs = validate_specs(raw_specs)
    requested = _check_tags(tags, "access_tags patch must produce a list of strings")
    tags_changed = requested != current_tags or _legacy_blob_requested(body)
    return await _store(state, node, metadata, specs, tags_changed, drop_revision)


async def put_metadata(request: Request) -> Response:
    """Replace metadata, specs and/or access tags (``null`` keeps the current value)."""
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    body = await read_json_object(request)
    drop_revision = query_bool(request, "drop_revision", False)
    metadata = body.get("metadata")
    if metadata is None:
        metadata = node.metadata
    elif not isinstance(metadata, dict):
        raise ApiError(422, "metadata must be a JSON object or null")
    specs = node.specs if body.get("specs") is None else validate_specs(body["specs"])
    tags_changed = _legacy_blob_requested(body)
    if body.get("access_tags") is not None:
        requested = _check_tags(
            body["access_tags"], "access_tags must be null or a list of strings"
        )
        tags_changed = tags_changed or requested != sorted(node.access_tags)
    return await _store(state, node, metadata, specs, tags_changed, drop_revision)


async def store_metadata(
    state: AppState,
    node: Node,
    metadata: dict[str, Any],
    specs: list[dict[str, Any]] | None = None,
    *,
    drop_revision: bool = False,
) -> Node:
    """Replace ``node``'s metadata (and specs; None keeps them), tell the other workers and
    announce it on the parent's stream (``container-child-metadata-updated``); return the node
    as now stored. Refused with 503 before storing anything while the streaming cache is down,
    and with 422 (:class:`~ferrotile.validation.TooDeep`) when the metadata nests too deep:
    every metadata edit (PATCH, PUT, GraphQL, devices) passes through here.
    """
    check_depth(metadata)
    ensure_streamable(state)
    updated, number = await state.catalog.replace_metadata(
        node,
        metadata=metadata,
        specs=node.specs if specs is None else specs,
        access_tags=list(node.access_tags),  # no access policy: tags cannot change
        drop_revision=drop_revision,
    )
    await changed(state, updated, stored=True)
    if state.hub is not None and updated.path:
        parent = await state.catalog.lookup(updated.path[:-1])
        if parent is not None:
            header = messages.child_metadata_updated(updated, number)
            await publish(state, parent.id, header, stored=True)
    return updated


async def _store(
    state: AppState,
    node: Node,
    metadata: dict[str, Any],
    specs: list[dict[str, Any]],
    tags_changed: bool,
    drop_revision: bool,
) -> Response:
    """Store the edit, announce it on the parent's stream and answer as Tiled does."""
    updated = await store_metadata(state, node, metadata, specs, drop_revision=drop_revision)
    body: dict[str, Any] = {"id": updated.key}
    if tags_changed:
        tags = sorted(updated.access_tags)
        body["access_tags"] = tags
        body["access_blob"] = {"tags": tags}  # for tiled < 0.2.19 clients
    return json_response(body)
