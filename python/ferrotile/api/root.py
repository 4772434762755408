"""``GET /api/v1/`` (About) and ``GET /healthz``: no authentication needed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ferrotile import __version__
from ferrotile.api.common import base_url, json_response, state_of
from ferrotile.api.etag import with_etag
from ferrotile.api.formats import aliases, formats
from ferrotile.api.search import SUPPORTED_QUERIES

#: The Tiled API release this server implements. The stock client gates features on
#: ``library_version`` (e.g. it drops data-source ``properties`` below 0.2.4), so About reports
#: the Tiled version whose wire protocol we speak; ferrotile's own version is in ``meta``.
TILED_API_VERSION = "0.2.20"


async def about(request: Request) -> Response:
    state = state_of(request)
    base = base_url(request)
    response = json_response(
        {
            "api_version": 0,
            "library_version": TILED_API_VERSION,
            "formats": formats(),
            "aliases": aliases(),
            "queries": sorted(SUPPORTED_QUERIES),
            "authentication": {
                "required": not state.settings.public,
                "providers": [],
                "links": None,
            },
            "links": {"self": f"{base}/api/v1", "documentation": f"{base}/docs"},
            "meta": {"root_path": "/api", "server": "ferrotile", "ferrotile_version": __version__},
        }
    )
    return with_etag(request, response)


async def healthz(request: Request) -> Response:
    return json_response({"status": "ready"})
