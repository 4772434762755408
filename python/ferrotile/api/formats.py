"""Content negotiation and serialization of data responses (arrays, tables).

``negotiate`` picks a media type from ``?format=`` (a media type or an alias) or ``Accept``;
the ``*_response`` functions serialize. About's ``formats`` and ``aliases`` are built from the
tables below, so what is listed is exactly what is served.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.errors import ApiError

OCTET = "application/octet-stream"
JSON = "application/json"
ARROW = "application/vnd.apache.arrow.file"

ArraySerializer = Callable[[np.ndarray], bytes]

#: Array media types, in order of preference when the client accepts anything.
ARRAY_SERIALIZERS: dict[str, ArraySerializer] = {
    OCTET: lambda data: np.ascontiguousarray(data).tobytes(),
    JSON: lambda data: orjson.dumps(data.tolist()),
}
#: ``?format=`` aliases per family: alias -> media type.
ALIASES: dict[str, dict[str, str]] = {
    "array": {"octet-stream": OCTET, "bin": OCTET, "json": JSON},
    "container": {"json": JSON},
    "table": {"arrow": ARROW, "feather": ARROW},
}


def formats() -> dict[str, list[str]]:
    """About's ``formats``: the media types each family is served in."""
    return {
        "array": list(ARRAY_SERIALIZERS),
        "container": [JSON],
        "table": list(TABLE_SERIALIZERS),
    }


def aliases() -> dict[str, dict[str, list[str]]]:
    """About's ``aliases``: media type -> extensions, per family."""
    result: dict[str, dict[str, list[str]]] = {}
    for family, table in ALIASES.items():
        by_type: dict[str, list[str]] = {}
        for alias, media_type in table.items():
            by_type.setdefault(media_type, []).append(alias)
        result[family] = by_type
    return result


def negotiate(request: Request, family: str, offered: Mapping[str, Any]) -> str:
    """The media type to answer with; 406 naming what is supported when nothing matches."""
    supported = ", ".join(offered)
    fmt = request.query_params.get("format")
    if fmt is not None:
        media_type = ALIASES.get(family, {}).get(fmt, fmt)
        if media_type in offered:
            return media_type
        raise ApiError(406, f"Unsupported format {fmt!r}. Supported: {supported}.")
    accept = request.headers.get("accept", "")
    requested = [part.split(";")[0].strip() for part in accept.split(",") if part.strip()]
    if not requested or "*/*" in requested:
        return next(iter(offered))
    for media_type in requested:
        if media_type in offered:
            return media_type
    raise ApiError(
        406,
        "None of the media types requested by the client are supported. "
        f"Supported: {supported}. Requested: {accept}.",
    )


def table_response(request: Request, table: Any) -> Response:
    """Serve a ``pyarrow.Table`` (Arrow IPC file format; more formats are listed in
    ``TABLE_SERIALIZERS``)."""
    media_type = negotiate(request, "table", TABLE_SERIALIZERS)
    return Response(TABLE_SERIALIZERS[media_type](table), media_type=media_type)


def _arrow_file(table: Any) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


TableSerializer = Callable[[Any], bytes]
#: Table media types (``pyarrow.Table`` in, bytes out), in order of preference.
TABLE_SERIALIZERS: dict[str, TableSerializer] = {ARROW: _arrow_file}


def array_response(request: Request, data: np.ndarray, limit: int) -> Response:
    media_type = negotiate(request, "array", ARRAY_SERIALIZERS)
    if data.nbytes > limit:
        raise ApiError(400, f"Response would be {data.nbytes} bytes (limit {limit}). Use slicing.")
    return Response(ARRAY_SERIALIZERS[media_type](data), media_type=media_type)
