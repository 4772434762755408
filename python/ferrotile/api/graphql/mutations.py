"""``Mutation``: stream metadata and deletion, device bookkeeping and ``flush``. Each answers a
JSON object of booleans (Redis Streamer's keys); each needs write access (see
:class:`~ferrotile.api.graphql.context.CanWrite`)."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from ferrotile.api.graphql import devices
from ferrotile.api.graphql.context import CanWrite, Context, state_of
from ferrotile.api.metadata import delete_node
from ferrotile.api.metadata_edit import store_metadata
from ferrotile.streamer import streams
from ferrotile.validation import check_depth

Ctx = Info[Context, Any]


@strawberry.type
class Mutation:
    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Set a stream's metadata (update: merge into it); creates the stream",
    )
    async def update_stream_meta(
        self,
        info: Ctx,
        stream_id: str,
        meta: JSON,
        device_id: str = streams.DEFAULT_DEVICE,
        update: bool = False,
    ) -> JSON:
        state = state_of(info)
        wanted = devices.json_object(meta)
        check_depth(wanted)  # before ensure() creates the stream's device and node
        name = streams.stream_name(state, stream_id, device_id)
        node = await state.catalog.lookup(name.path, fresh=True)
        if node is None:
            node = await streams.ensure(state, name, wanted)
            if node.metadata == wanted:
                return JSON({"meta_set": True})
        merged = {**node.metadata, **wanted} if update else wanted
        await store_metadata(state, node, merged)
        return JSON({"meta_set": True})

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Delete a stream: its entries, its metadata and its node. Answers, as "
        "Redis Streamer's XTRIM, DEL meta, DEL stream do: data_deleted (it held entries), "
        "meta_deleted (it had metadata), stream_deleted (it ever had an entry)",
    )
    async def delete_stream(
        self, info: Ctx, stream_id: str, device_id: str = streams.DEFAULT_DEVICE
    ) -> JSON:
        state = state_of(info)
        name = streams.stream_name(state, stream_id, device_id)
        node = await state.catalog.lookup(name.path, fresh=True)
        if node is None:
            return JSON(dict.fromkeys(("data_deleted", "meta_deleted", "stream_deleted"), False))
        assert state.hub is not None
        described = await state.hub.stream_info(node.id)
        await delete_node(state, node, recursive=False)
        return JSON(
            {
                "data_deleted": bool(described and described["length"]),
                "meta_deleted": bool(node.metadata),
                "stream_deleted": described is not None,
            }
        )

    @strawberry.mutation(permission_classes=[CanWrite])
    async def connect_device(self, info: Ctx, device_id: str, meta: JSON) -> JSON:
        return JSON(await devices.connect(state_of(info), device_id, meta))

    @strawberry.mutation(permission_classes=[CanWrite])
    async def update_device_meta(self, info: Ctx, device_id: str, meta: JSON) -> JSON:
        return JSON(await devices.update_meta(state_of(info), device_id, meta))

    @strawberry.mutation(permission_classes=[CanWrite])
    async def disconnect_device(self, info: Ctx, device_id: str) -> JSON:
        return JSON(await devices.disconnect(state_of(info), device_id))

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Delete every stream and device (the whole streams/ subtree, nothing else)",
    )
    async def flush(self, info: Ctx) -> JSON:
        state = state_of(info)
        root = await state.catalog.lookup((streams.ROOT,), fresh=True)
        if root is not None:
            await delete_node(state, root, recursive=True)
        return JSON({"flushed": True})
