"""The stream message headers of Tiled's WebSocket protocol (spec §6.3-§6.4), built once per event.

Python builds the header fields of an event once per HTTP request; the Rust hub adds the
sequence number and the payload and encodes the envelope once for all subscribers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ferrotile.catalog.models import DataSource, Node
from ferrotile.storage.structure import ArrayStructure

SCHEMA_VERSION = 1


def timestamp() -> str:
    """Naive local ISO-8601 time, as Tiled's ``datetime.now().isoformat()``."""
    return datetime.now().isoformat()


def schema(node: Node) -> dict[str, Any]:
    """The first frame of a subscription to ``node``: its schema message (spec 6.3)."""
    structure = (node.data_sources[0].structure if node.data_sources else None) or {}
    if node.structure_family == "array":
        return array_schema(ArrayStructure.from_json(structure, stored=True).data_type)
    if node.structure_family == "table":
        # Tiled's table-schema carries the structure's arrow_schema data URI as is.
        return {"type": "table-schema", "version": 1, "arrow_schema": structure.get("arrow_schema")}
    if node.structure_family == "sparse":
        return array_schema(structure.get("data_type") or {})
    return container_schema()


def array_schema(data_type: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array-schema", "version": SCHEMA_VERSION, "data_type": data_type}


def container_schema() -> dict[str, Any]:
    return {"type": "container-schema", "version": SCHEMA_VERSION}


def array_data(
    *,
    mimetype: str,
    shape: Sequence[int],
    offset: Sequence[int] | None = None,
    block: Sequence[int] | None = None,
) -> dict[str, Any]:
    # `offset` and `block` must be present even when null: the stock client requires the keys.
    return {
        "type": "array-data",
        "timestamp": timestamp(),
        "mimetype": mimetype,
        "shape": list(shape),
        "offset": None if offset is None else list(offset),
        "block": None if block is None else list(block),
    }


def table_data(*, partition: int | None, append: bool) -> dict[str, Any]:
    """``table-data``: the payload is the request's Arrow IPC file, as uploaded."""
    return {
        "type": "table-data",
        "timestamp": timestamp(),
        "mimetype": "application/vnd.apache.arrow.file",
        "partition": partition,
        "append": append,
    }


def table_json(table: Any) -> bytes:
    """The JSON envelope's payload of a table: ``{column: [values]}``, as Tiled's Arrow -> pandas
    transcoding gives it. Built once per message, at publish time."""
    import orjson

    frame = table.to_pandas()
    columns = {str(name): frame[name].tolist() for name in frame.columns}
    return orjson.dumps(columns, default=str, option=orjson.OPT_NON_STR_KEYS)


def child_created(node: Node) -> dict[str, Any]:
    """``container-child-created`` for the parent's stream.

    Both spellings of access control are sent (``access_tags`` for tiled >= 0.2.19,
    ``access_blob`` for older clients); each client model ignores the key it does not know.
    """
    tags = sorted(node.access_tags)
    return {
        "type": "container-child-created",
        "timestamp": timestamp(),
        "key": node.key,
        "structure_family": node.structure_family,
        "specs": node.specs,
        "metadata": node.metadata,
        "data_sources": [ds.to_json(include_assets=False) for ds in node.data_sources],
        "access_tags": tags,
        "access_blob": {"tags": tags},
    }


def child_metadata_updated(node: Node, revision_number: int | None) -> dict[str, Any]:
    """``container-child-metadata-updated`` for the parent's stream after a metadata edit.

    Parameters
    ----------
    node : Node
        The edited node, as now stored (its full new metadata and specs are sent).
    revision_number : int or None
        The revision that kept the previous version; the key is omitted when None (the edit
        dropped the revision), as Tiled does.

    Returns
    -------
    dict
        The message header.
    """
    message: dict[str, Any] = {
        "type": "container-child-metadata-updated",
        "timestamp": timestamp(),
        "key": node.key,
        "specs": node.specs,
        "metadata": node.metadata,
    }
    if revision_number is not None:
        message["revision_number"] = revision_number
    return message


def array_ref(
    data_source: DataSource,
    base: str,
    path: str,
    *,
    patch: tuple[Sequence[int], Sequence[int]] | None = None,
) -> dict[str, Any]:
    """``array-ref`` after ``PUT /data_source`` on a registered array (spec §6.4).

    Parameters
    ----------
    data_source : DataSource
        The updated data source (an array structure).
    base : str
        ``scheme://host:port`` of the server, for the absolute ``uri``.
    path : str
        The node's path, segments joined by ``/`` (no empty segments).
    patch : (offset, shape), optional
        The updated region; the ``uri`` then selects only it, so subscribers fetch just that.

    Returns
    -------
    dict
        The message header: no payload, subscribers GET ``uri`` (``update.data()``).
    """
    shape = list((data_source.structure or {}).get("shape", []))
    if patch is None:
        slices = [f"0:{n}" for n in shape]
        patch_json = None
    else:
        offset, patch_shape = patch
        padded = list(offset) + [0] * (len(patch_shape) - len(offset))
        slices = [f"{o}:{o + n}" for o, n in zip(padded, patch_shape, strict=True)]
        patch_json = {"offset": padded, "shape": list(patch_shape)}
    source = data_source.to_json()
    # The stock client's message model requires an int `num` and a str `parameter` on every
    # asset (its REST models allow null): a single-file asset has neither, so send 0 / data_uri.
    for asset in source["assets"]:
        asset["num"] = 0 if asset["num"] is None else asset["num"]
        asset["parameter"] = asset["parameter"] or "data_uri"
    return {
        "type": "array-ref",
        "timestamp": timestamp(),
        "data_source": source,
        "patch": patch_json,
        "shape": shape,
        "uri": f"{base}/api/v1/array/full/{path}?slice={','.join(slices)}",
    }
