"""``Query``: devices and streams (``devices``, ``device``, ``streamIds``, ``streams``,
``stream``) and the ``Device`` type whose fields resolve against the catalog."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from ferrotile.api.graphql import devices, listing
from ferrotile.api.graphql.context import Context, state_of
from ferrotile.api.graphql.types import NO_SUCH_KEY, Stream
from ferrotile.streamer import streams
from ferrotile.streamer.params import StreamerInputError

Ctx = Info[Context, Any]


async def _stream_ids(info: Ctx, match: str | None, search_meta: bool, prefix: str) -> list[str]:
    state = state_of(info)
    found = await listing.select(
        state, await listing.all_streams(state), match, search_meta, prefix
    )
    return [name for name, _ in found]


@strawberry.type(description="A device: the streams named {device}:...")
class Device:
    id: str

    @strawberry.field(description="The metadata of the last connectDevice/updateDeviceMeta")
    async def meta(self, info: Ctx) -> JSON:
        return JSON(await devices.meta(state_of(info), self.id))

    @strawberry.field(description="The device's streams that have entries (without the device)")
    async def stream_ids(self, info: Ctx) -> list[str]:
        state = state_of(info)
        found = await listing.select(
            state, await listing.device_streams(state, self.id), None, False, ""
        )
        return [name for name, _ in found]

    @strawberry.field(description="Every stream of the device, metadata-only ones included")
    async def streams(self, info: Ctx) -> list[Stream]:
        state = state_of(info)
        found = await listing.select(
            state, await listing.device_streams(state, self.id), None, True, ""
        )
        return [await listing.describe(state, n, node) for n, node in found]

    @strawberry.field(description="One stream of the device, shown as {device}:{streamId}")
    async def stream(self, info: Ctx, stream_id: str) -> Stream:
        state = state_of(info)
        try:
            name = streams.stream_name(state, stream_id, self.id)
        except StreamerInputError:
            return Stream(id=f"{self.id}:{stream_id}", error=NO_SUCH_KEY)
        return await listing.describe(state, name.full, await streams.lookup(state, name))


@strawberry.type
class Query:
    @strawberry.field(description="Connected devices (includeAll: every device ever connected)")
    async def devices(
        self, info: Ctx, ids: list[str] | None = None, include_all: bool = False
    ) -> list[Device]:
        return [Device(id=d) for d in await devices.device_ids(state_of(info), ids, include_all)]

    @strawberry.field
    def device(self, id: str = streams.DEFAULT_DEVICE) -> Device:
        return Device(id=id)

    @strawberry.field(
        description="Full stream names ({device}:{prefix}{sid}) under prefix (stripped), "
        "matching the Redis glob match; searchMeta: also streams that only have metadata"
    )
    async def stream_ids(
        self, info: Ctx, match: str | None = None, search_meta: bool = False, prefix: str = ""
    ) -> list[str]:
        return await _stream_ids(info, match, search_meta, prefix)

    @strawberry.field(description="The streams {prefix}{id} for ids, else as streamIds")
    async def streams(
        self,
        info: Ctx,
        ids: list[str] | None = None,
        match: str | None = None,
        prefix: str = "",
    ) -> list[Stream]:
        state = state_of(info)
        if ids:
            found = [(i, await listing.find(state, f"{prefix}{i}")) for i in ids]
        else:
            every = await listing.all_streams(state)
            found = list(await listing.select(state, every, match, True, prefix))
        return [await listing.describe(state, n, node) for n, node in found]

    @strawberry.field(description="One stream by full name ({device}:{prefix}{sid})")
    async def stream(self, info: Ctx, id: str) -> Stream:
        state = state_of(info)
        return await listing.describe(state, id, await listing.find(state, id))
