"""``ETag`` on JSON resources (About, metadata, search) and ``304 Not Modified`` revalidation.

Tiled sends ``ETag: <md5 hex>`` (unquoted) and answers 304 when ``If-None-Match`` equals it
exactly. We send the RFC 9110 form, the md5 of the body in quotes, and compare the way RFC 9110
says ``If-None-Match`` compares: weakly (``W/`` ignored), against each listed tag, ``*`` matching
anything; an unquoted tag (echoed by a client that stripped the quotes) matches too. The stock
client's HTTP cache echoes the ETag it received, so it revalidates either way.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response


def _opaque(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    return tag.strip('"')


def matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header value matches ``etag`` (weak comparison)."""
    wanted = _opaque(etag)
    return any(
        part.strip() == "*" or _opaque(part) == wanted
        for part in if_none_match.split(",")
        if part.strip()
    )


def with_etag(request: Request, response: Response) -> Response:
    """Add an ``ETag`` (quoted md5 of the body) to ``response``.

    Parameters
    ----------
    request
        The request; its ``If-None-Match`` is checked.
    response
        A complete (non-streaming) 200 response.

    Returns
    -------
    Response
        ``response`` with the ``ETag`` header, or an empty ``304 Not Modified`` carrying the
        same ``ETag`` when the client already has this body.
    """
    etag = f'"{hashlib.md5(response.body, usedforsecurity=False).hexdigest()}"'
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return response
