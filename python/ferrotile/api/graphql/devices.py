"""Devices: their state lives in the metadata of the device's container ``streams/{device}``,
``{"meta": {...}, "connected": bool, "seen": true}``, so every worker (and every process sharing
the catalog) sees the same devices. Connection state is bookkeeping by the clients, as in Redis
Streamer: nothing times it out.

Every change is also pushed as a JSON entry to a reserved stream of the device ``:event``:
``:event:device.connected`` (``{"device_id", "connected", "meta"?}``) and ``:event:device.meta``
(``{"device_id", "meta"}``), the names Redis Streamer uses for these keys. They are ordinary
streams (nodes ``streams/:event/device.connected`` and ``streams/:event/device.meta``), so
``WS /data/device.connected/pull?device_id=:event`` follows them. Device ids starting with ``:``
are reserved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ferrotile.api.graphql.listing import children_at
from ferrotile.api.metadata_edit import store_metadata
from ferrotile.catalog.models import Node
from ferrotile.state import AppState
from ferrotile.streamer import streams
from ferrotile.streamer.params import StreamerInputError
from ferrotile.validation import check_depth

EVENT_DEVICE = ":event"
CONNECTED_EVENTS = "device.connected"
META_EVENTS = "device.meta"


def device_path(state: AppState, device_id: str) -> tuple[str, ...]:
    """The device's container, once the id is acceptable."""
    if not state.settings.streamer_device_prefixing:
        raise StreamerInputError("Devices need device prefixing, which this server has disabled")
    if not device_id or device_id.startswith(":"):
        raise StreamerInputError(f"{device_id!r} is not a device id (':...' ids are reserved)")
    return streams.stream_name(state, "-", device_id).path[:-1]


def json_object(meta: Any) -> dict[str, Any]:
    """A ``meta`` argument: a JSON object (null: empty)."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise StreamerInputError(f"meta must be a JSON object, not {meta!r}")
    return meta


def device_meta(meta: Any) -> dict[str, Any]:
    """A device's ``meta`` argument, refused before anything is stored when it could not be
    stored: it is kept one level down, in the device's ``metadata["meta"]``."""
    meta = json_object(meta)
    check_depth({"meta": meta})
    return meta


async def _container(state: AppState, device_id: str) -> Node:
    """The device's container as stored now (created if missing)."""
    path = device_path(state, device_id)
    node = await state.catalog.lookup(path, fresh=True)  # read-modify-write: not a stale copy
    return node if node is not None else await streams.ensure_container(state, path)


async def _save(state: AppState, node: Node, **changes: Any) -> None:
    # Bookkeeping, not user metadata: no revision per connection.
    await store_metadata(state, node, {**node.metadata, **changes}, drop_revision=True)


async def _fire(state: AppState, stream: str, event: dict[str, Any]) -> bool:
    assert state.hub is not None
    node = await streams.ensure(state, streams.stream_name(state, stream, EVENT_DEVICE))
    await state.hub.publish_entries(node.id, [orjson.dumps(event)], header=streams.entry_header())
    return True


async def connect(state: AppState, device_id: str, meta: Any) -> dict[str, bool]:
    meta = device_meta(meta)
    node = await _container(state, device_id)
    was_connected = node.metadata.get("connected") is True
    was_seen = node.metadata.get("seen") is True
    await _save(state, node, meta=meta, connected=True, seen=True)
    event = {"device_id": device_id, "connected": True, "meta": meta}
    return {
        "connection_status_changed": not was_connected,
        "connected": True,
        "is_new_device": not was_seen,
        "meta_set": True,
        f"fired:{CONNECTED_EVENTS}": await _fire(state, CONNECTED_EVENTS, event),
        f"fired:{META_EVENTS}": await _fire(
            state, META_EVENTS, {"device_id": device_id, "meta": meta}
        ),
    }


async def update_meta(state: AppState, device_id: str, meta: Any) -> dict[str, bool]:
    meta = device_meta(meta)
    await _save(state, await _container(state, device_id), meta=meta)
    event = {"device_id": device_id, "meta": meta}
    return {"meta_set": True, f"fired:{META_EVENTS}": await _fire(state, META_EVENTS, event)}


async def disconnect(state: AppState, device_id: str) -> dict[str, bool]:
    path = device_path(state, device_id)
    node = await state.catalog.lookup(path, fresh=True)
    was_connected = node is not None and node.metadata.get("connected") is True
    if node is not None and was_connected:
        await _save(state, node, connected=False)
    event = {"device_id": device_id, "connected": False}
    return {
        "connection_status_changed": was_connected,
        "connected": False,
        f"fired:{CONNECTED_EVENTS}": await _fire(state, CONNECTED_EVENTS, event),
    }


async def device_ids(state: AppState, ids: Sequence[str] | None, include_all: bool) -> list[str]:
    """``ids`` as given, else the connected devices (``include_all``: every device seen)."""
    if ids:
        return list(ids)
    if not state.settings.streamer_device_prefixing:
        return []
    flag = "seen" if include_all else "connected"
    top = await children_at(state, (streams.ROOT,))
    return sorted(
        n.key for n in top if n.structure_family == "container" and n.metadata.get(flag) is True
    )


async def meta(state: AppState, device_id: str) -> dict[str, Any]:
    try:
        path = device_path(state, device_id)
    except StreamerInputError:
        return {}
    node = await state.catalog.lookup(path)
    found = None if node is None else node.metadata.get("meta")
    return found if isinstance(found, dict) else {}
