"""``GET /`` (a landing page), ``GET /api/v1/`` (About) and ``GET /healthz``: no
authentication needed."""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

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


_LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ferrotile</title>
<style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}}
pre{{background:#f4f4f4;padding:.8rem}}</style></head>
<body><h1>ferrotile {version}</h1>
<p>A data server that speaks Tiled's HTTP and WebSocket API, and Redis Streamer's.</p>
<h2>Explore from Python</h2>
<pre><code>$ pip install "tiled[client]"
$ python
&gt;&gt;&gt; from tiled.client import from_uri
&gt;&gt;&gt; client = from_uri("{base}")</code></pre>
<h2>Explore the API</h2>
<ul>
<li><a href="{base}/api/v1/">{base}/api/v1/</a>: the API's entry point (About)</li>
<li><a href="{base}/docs">{base}/docs</a>: every route, its parameters and answers</li>
<li><a href="{base}/openapi.json">{base}/openapi.json</a>: the same as OpenAPI 3.1</li>
<li><a href="{base}/graphql">{base}/graphql</a>: GraphQL playground (Redis Streamer's schema)</li>
</ul>
<h2>Watch streams</h2>
<p><a href="{base}/live/">{base}/live/</a>: the live view: every node's stream rate, images and
plots as data arrives.</p></body></html>
"""


async def landing(request: Request) -> Response:
    """As Tiled's ``/``: where to go from here (the Python client, the API and its docs)."""
    base = html.escape(base_url(request))
    return HTMLResponse(_LANDING.format(version=html.escape(__version__), base=base))
