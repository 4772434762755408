"""Registered ("external") data: files that stay where they are and are served in place.

Public API
----------
media_type_for(path, ext_map=None)
    Guess a file's media type from its name (client side, as Tiled's walker).
describe(mimetype, paths, parameters=None) -> Described
    Structure, metadata and assets of one node, for a POST /api/v1/register body.
check_readable(uri, readable)
    The server's allowlist: a ``file://`` URI must resolve inside a ``-r`` directory.
"""

from __future__ import annotations

from ferrotile.storage.external.allowlist import check_readable, local_path
from ferrotile.storage.external.describe import Described, describe, file_uri
from ferrotile.storage.external.errors import (
    ExternalDataError,
    NotReadable,
    NotReady,
    Unreadable,
    UnsupportedMimetype,
)
from ferrotile.storage.external.mimetypes import (
    READABLE,
    SEQUENCE_OF,
    family_of,
    media_type_for,
)

__all__ = [
    "READABLE",
    "SEQUENCE_OF",
    "Described",
    "ExternalDataError",
    "NotReadable",
    "NotReady",
    "Unreadable",
    "UnsupportedMimetype",
    "check_readable",
    "describe",
    "family_of",
    "file_uri",
    "local_path",
    "media_type_for",
]
