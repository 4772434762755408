"""Content negotiation and serialization of data responses (arrays, tables).

``negotiate`` picks a media type from ``?format=`` (media types or aliases, comma-separated) or
``Accept``, the way Tiled 0.2.20 does (``construct_data_response``): the first requested type that
is served wins, ``*/*`` means the family's default, ``image/*`` an array's PNG; nothing served is
406 "None of the media types requested by the client are supported. ...". Unlike Tiled, ``q``
weights are honoured (stable order by weight; ``q=0`` means "not this").

The ``*_response`` functions serialize (see :mod:`~ferrotile.api.serialize_array` and
:mod:`~ferrotile.api.serialize_table` for the layouts). About's ``formats`` and ``aliases`` are
built from the tables below, so what is listed is exactly what is served.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api import serialize_array as sa
from ferrotile.api import serialize_table as st
from ferrotile.api.errors import ApiError
from ferrotile.api.serialize_array import SerializationError, UnsupportedShape

OCTET = "application/octet-stream"
JSON = "application/json"
ARROW = "application/vnd.apache.arrow.file"
PARQUET = "application/x-parquet"
CSV = "text/csv"
CSV_X = "text/x-comma-separated-values"
TEXT = "text/plain"
EXCEL = "application/vnd.ms-excel"  # Tiled serves CSV under this type ("open in Excel")
HTML = "text/html"
PNG = "image/png"
TIFF = "image/tiff"
NPY = "application/x-npy"  # not in Tiled; the type NumPy-speaking services commonly use
JSON_SEQ = "application/json-seq"

ArraySerializer = Callable[[np.ndarray], bytes]
TableSerializer = st.TableSerializer

#: Array media types, in Tiled's order; the first is the default for ``*/*``.
ARRAY_SERIALIZERS: dict[str, ArraySerializer] = {
    OCTET: sa.as_octet_stream,
    JSON: sa.as_json,
    CSV: sa.as_csv,
    CSV_X: sa.as_csv,
    TEXT: sa.as_csv,
    EXCEL: sa.as_csv,
    PNG: sa.as_png,
    TIFF: sa.as_tiff,
    HTML: sa.as_html,
    NPY: sa.as_npy,
}

#: Table media types (``pyarrow.Table`` and media-type parameters in, bytes out), in Tiled's
#: order; the first is the default for ``*/*``.
TABLE_SERIALIZERS: dict[str, TableSerializer] = {ARROW: st.as_arrow_file, PARQUET: st.as_parquet}
if st.PANDAS_AVAILABLE:
    TABLE_SERIALIZERS |= {CSV: st.as_csv, CSV_X: st.as_csv, TEXT: st.as_csv, EXCEL: st.as_csv}
    TABLE_SERIALIZERS[HTML] = st.as_html
TABLE_SERIALIZERS |= {JSON: st.as_json, JSON_SEQ: st.as_json_seq}


def _sparse(serialize: TableSerializer) -> Callable[[Any], bytes]:
    return lambda table: serialize(table, {})


#: Sparse (COO) arrays are exported as the table ``dim0..dimN, data``, as Tiled does; in
#: Tiled's order (HDF5 and xlsx are not served), Arrow first (the default for ``*/*``).
SPARSE_SERIALIZERS: dict[str, Callable[[Any], bytes]] = {
    media_type: _sparse(TABLE_SERIALIZERS[media_type])
    for media_type in (ARROW, PARQUET, CSV, TEXT, HTML, JSON)
    if media_type in TABLE_SERIALIZERS
}

#: Awkward arrays are served as their buffers zipped, one member per buffer key (``awkward.py``);
#: Tiled's JSON/Arrow/Parquet exports need the awkward library and are not offered.
ZIP = "application/zip"
AWKWARD_MEDIA_TYPES = (ZIP,)

_EXCEL_EXTENSIONS = ("xls", "xlb", "xlm", "xla", "xlc", "xlt", "xlw")
_HTML_EXTENSIONS = ("html", "htm", "shtml")

#: ``?format=`` aliases per family: alias -> media type (Tiled's, restricted to what is served,
#: plus ``octet-stream``/``bin`` and ``npy``).
#: Aliases shared by the tabular families (sparse arrays are served as COO tables).
_TABULAR_ALIASES: dict[str, str] = {
    "arrow": ARROW,
    "feather": ARROW,
    "parquet": PARQUET,
    "csv": CSV,
    **dict.fromkeys(_HTML_EXTENSIONS, HTML),
    "json": JSON,
    "text": TEXT,
    "txt": TEXT,
}


def _served(aliases: Mapping[str, str], serializers: Mapping[str, object]) -> dict[str, str]:
    """The aliases whose media type this server can actually produce."""
    return {alias: media for alias, media in aliases.items() if media in serializers}


ALIASES: dict[str, dict[str, str]] = {
    "array": {
        "octet-stream": OCTET,
        "bin": OCTET,
        "json": JSON,
        "csv": CSV,
        **dict.fromkeys(_EXCEL_EXTENSIONS, EXCEL),
        "png": PNG,
        "tiff": TIFF,
        "tif": TIFF,
        **dict.fromkeys(_HTML_EXTENSIONS, HTML),
        "text": TEXT,
        "txt": TEXT,
        "npy": NPY,
    },
    "container": {"json": JSON},
    "awkward": {"zip": ZIP},
    "sparse": _served(_TABULAR_ALIASES, SPARSE_SERIALIZERS),
    "table": _served(
        {**_TABULAR_ALIASES, **dict.fromkeys(_EXCEL_EXTENSIONS, EXCEL)}, TABLE_SERIALIZERS
    ),
}

#: What ``*/*`` and ``image/*`` stand for, per family (Tiled's DEFAULT_MEDIA_TYPES).
_WILDCARDS: dict[str, dict[str, str]] = {
    "array": {"*/*": OCTET, "image/*": PNG},
    "table": {"*/*": ARROW},
    "sparse": {"*/*": ARROW},
}


def formats() -> dict[str, list[str]]:
    """About's ``formats``: the media types each family is served in."""
    return {
        "array": list(ARRAY_SERIALIZERS),
        "container": [JSON],
        "sparse": list(SPARSE_SERIALIZERS),
        "table": list(TABLE_SERIALIZERS),
        "awkward": list(AWKWARD_MEDIA_TYPES),
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


def _parse_media_type(text: str) -> tuple[str, dict[str, str]]:
    """``"text/csv; header=absent"`` -> ``("text/csv", {"header": "absent"})``."""
    base, *rest = text.split(";")
    params: dict[str, str] = {}
    for part in rest:
        name, _, value = part.partition("=")
        if name.strip():
            params[name.strip().lower()] = value.strip().strip('"')
    return base.strip().lower(), params


def _weight(params: Mapping[str, str]) -> float:
    try:
        return float(params.get("q", "1"))
    except ValueError:
        return 1.0


def choose(request: Request, family: str, offered: Collection[str]) -> tuple[str, dict[str, str]]:
    """The media type to answer with and the parameters the client gave it.

    Parameters
    ----------
    request
        The request; ``?format=`` takes priority over ``Accept``.
    family
        Structure family (``"array"``, ``"table"``, ...), selecting aliases and wildcards.
    offered
        The served media types, in order of preference.

    Raises
    ------
    ApiError
        406 with Tiled's detail when none of the requested types is served.
    """
    fmt = request.query_params.get("format")
    if fmt is not None:
        family_aliases = ALIASES.get(family, {})
        requested = [family_aliases.get(t.strip(), t.strip()) for t in fmt.split(",")]
    else:
        accept = request.headers.get("accept", "").strip() or "*/*"
        requested = [part.strip() for part in accept.split(",") if part.strip()]
    parsed = [_parse_media_type(text) for text in requested]
    # Stable sort: equal weights keep the client's order, which is all Tiled looks at.
    ranked = sorted((p for p in parsed if _weight(p[1]) > 0), key=lambda p: -_weight(p[1]))
    wildcards = _WILDCARDS.get(family, {})
    for media_type, params in ranked:
        if media_type in wildcards and wildcards[media_type] in offered:
            return wildcards[media_type], {}
        if media_type == "*/*":
            return next(iter(offered)), {}
        if media_type in offered:
            params.pop("q", None)
            return media_type, params
    raise ApiError(
        406,
        "None of the media types requested by the client are supported. "
        f"Supported: {', '.join(offered)}. Requested: {', '.join(requested)}.",
    )


def negotiate(request: Request, family: str, offered: Collection[str]) -> str:
    """The media type to answer with (see :func:`choose`); 406 when nothing matches."""
    return choose(request, family, offered)[0]


def _serialize(media_type: str, serialize: Callable[[], bytes]) -> bytes:
    """Run a serializer, turning "cannot write this data as that" into Tiled's 406."""
    try:
        return serialize()
    except UnsupportedShape as exc:
        raise ApiError(
            406,
            f"The shape of this data {exc.args[0]} is incompatible with the requested format "
            f"({media_type}). Slice it or choose a different format.",
        ) from None
    except SerializationError as exc:
        raise ApiError(
            406,
            "This type is supported in general but there was an error packing this specific "
            f"data: {exc}",
        ) from None


def check_response_size(nbytes: int, limit: int) -> None:
    """Tiled's 400 when an array response would be larger than ``response_bytesize_limit``."""
    if nbytes > limit:
        raise ApiError(
            400,
            f"Response would exceed {limit}. Use slicing ('?slice=...') to request smaller chunks.",
        )


def array_response(request: Request, data: np.ndarray, limit: int) -> Response:
    """Serve ``data`` in the negotiated media type.

    Parameters
    ----------
    request
        The request (``?format=`` / ``Accept`` choose the media type).
    data
        The array, already sliced.
    limit
        ``response_bytesize_limit``: larger data is refused with 400, as Tiled does.
    """
    media_type = negotiate(request, "array", ARRAY_SERIALIZERS)
    check_response_size(data.nbytes, limit)
    body = _serialize(media_type, lambda: ARRAY_SERIALIZERS[media_type](data))
    return Response(body, media_type=media_type)


def table_response(request: Request, table: Any) -> Response:
    """Serve a ``pyarrow.Table`` in the negotiated media type (Arrow IPC file by default).

    Parameters
    ----------
    request
        The request (``?format=`` / ``Accept`` choose the media type; ``text/csv;header=absent``
        drops the CSV header line).
    table
        A ``pyarrow.Table``.
    """
    media_type, params = choose(request, "table", TABLE_SERIALIZERS)
    body = _serialize(media_type, lambda: TABLE_SERIALIZERS[media_type](table, params))
    return Response(body, media_type=media_type)
