"""The GraphQL object types that only carry values: ``Stream`` (an ``XINFO STREAM``-like
description of one stream) and the subscription's ``DataPayload`` / ``DataPayloads``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import strawberry
from strawberry.scalars import JSON, Base64

NO_SUCH_KEY = "no such key"


def entry_time(entry_id: str | None, format: str | None) -> str | None:
    """The time of an entry id ``<ms>-<n>``: ISO 8601 in UTC, or ``strftime(format)``."""
    if not entry_id:
        return None
    moment = datetime.fromtimestamp(int(entry_id.split("-", 1)[0]) / 1000, tz=UTC)
    return moment.strftime(format) if format else moment.isoformat()


def as_text(data: bytes | None, encoding: str = "utf-8") -> str | None:
    """The entry decoded as text; None when it is not valid in ``encoding``."""
    if data is None:
        return None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


def as_json(data: bytes | None) -> Any:
    """The entry parsed as JSON; None when it is not JSON."""
    if data is None:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


@strawberry.type(description="One stream, described as Redis XINFO STREAM would")
class Stream:
    """As Redis Streamer's ``Stream``: no field is null. A stream without entries (metadata
    only, or none at all) has ``error`` "no such key", length 0 and empty entry fields ('' for
    ids, times, data and strings, ``{}`` for JSON), as its ``XINFO`` error leaves them."""

    id: str
    length: int = 0
    entries_added: int = 0
    first_entry_id: str = ""
    last_entry_id: str = ""
    last_generated_id: str = ""
    recorded_first_entry_id: str = ""
    max_deleted_entry_id: str = ""
    # Redis internals and consumer groups: no equivalent here.
    radix_tree_keys: int = 0
    radix_tree_nodes: int = 0
    groups: int = 0
    error: str = strawberry.field(
        default="", description="'no such key' for a stream without entries, else ''"
    )
    meta: JSON = strawberry.field(default_factory=dict)
    first_entry: strawberry.Private[bytes | None] = None
    last_entry: strawberry.Private[bytes | None] = None

    @classmethod
    def from_info(cls, id: str, meta: dict[str, Any], info: dict[str, Any] | None) -> Stream:
        """From :meth:`ferrotile.streaming.hub.StreamHub.stream_info` (None: no entry ever)."""
        if info is None:
            return cls(id=id, meta=JSON(meta), error=NO_SUCH_KEY)
        return cls(
            id=id,
            meta=JSON(meta),
            length=info["length"],
            entries_added=info["entries_added"],
            first_entry_id=info["first_entry_id"] or "",
            last_entry_id=info["last_entry_id"] or "",
            last_generated_id=info["last_entry_id"] or "",
            recorded_first_entry_id=info["first_entry_id"] or "",
            max_deleted_entry_id=info["max_deleted_entry_id"] or "",
            first_entry=info["first_entry"],
            last_entry=info["last_entry"],
        )

    @strawberry.field(description="The oldest retained entry, base64 ('' without entries)")
    def first_entry_data(self) -> Base64:
        return Base64(self.first_entry or b"")

    @strawberry.field(description="The newest entry, base64 ('' without entries)")
    def last_entry_data(self) -> Base64:
        return Base64(self.last_entry or b"")

    @strawberry.field(
        description="The oldest retained entry as UTF-8 text ('' without entries, null if the "
        "entry is not UTF-8)"
    )
    def first_entry_string(self) -> str | None:
        return as_text(self.first_entry or b"")

    @strawberry.field(
        description="The newest entry as UTF-8 text ('' without entries, null if the entry is "
        "not UTF-8)"
    )
    def last_entry_string(self) -> str | None:
        return as_text(self.last_entry or b"")

    @strawberry.field(
        description="The oldest retained entry parsed as JSON ({} without entries, null if the "
        "entry is not JSON)"
    )
    def first_entry_json(self) -> JSON | None:
        return JSON({}) if self.first_entry is None else JSON(as_json(self.first_entry))

    @strawberry.field(
        description="The newest entry parsed as JSON ({} without entries, null if the entry is "
        "not JSON)"
    )
    def last_entry_json(self) -> JSON | None:
        return JSON({}) if self.last_entry is None else JSON(as_json(self.last_entry))

    @strawberry.field(
        description="The oldest retained entry's time: ISO 8601 UTC or strftime(format) ('' "
        "without entries)"
    )
    def first_entry_time(self, format: str | None = None) -> str:
        return entry_time(self.first_entry_id, format) or ""

    @strawberry.field(
        description="The newest entry's time: ISO 8601 UTC or strftime(format) ('' without entries)"
    )
    def last_entry_time(self, format: str | None = None) -> str:
        return entry_time(self.last_entry_id, format) or ""


@strawberry.type(description="One entry of a stream (subscription with count 0)")
class DataPayload:
    stream_id: str
    time: str = strawberry.field(description="The entry id, <ms>-<n>")
    data: Base64

    @strawberry.field(description="The entry as text (null if it is not valid in format)")
    def string(self, format: str = "utf-8") -> str | None:
        return as_text(self.data, format)

    @strawberry.field(description="The entry parsed as JSON (null if it is not)")
    def json(self) -> JSON | None:
        return JSON(as_json(self.data))


@strawberry.type(description="The entries of one stream from one read (subscription, count > 0)")
class DataPayloads:
    stream_id: str
    time: list[str]
    data: list[Base64]

    @strawberry.field
    def string(self, format: str = "utf-8") -> list[str | None]:
        return [as_text(d, format) for d in self.data]

    @strawberry.field
    def json(self) -> list[JSON | None]:
        return [JSON(as_json(d)) for d in self.data]


StreamData = Annotated[DataPayload | DataPayloads, strawberry.union("StreamData")]
