"""``GET /openapi.json`` (OpenAPI 3.1) and ``GET /docs`` (the same as a web page).

The document is built from the route declarations of :mod:`ferrotile.api.openapi_routes` and
the schemas of :mod:`ferrotile.api.openapi_schemas`, once per process. HTTP routes are its
``paths``; WebSocket routes, which OpenAPI cannot describe, are listed under ``x-websockets``
with the same fields. ``/docs`` is rendered here from the document (no JavaScript, nothing
fetched from elsewhere, so it works on a network without Internet access).
"""

from __future__ import annotations

import functools
import html
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ferrotile import __version__
from ferrotile.api.openapi_routes import ENDPOINTS, WEBSOCKET, Endpoint, Param
from ferrotile.api.openapi_schemas import SCHEMAS

ERRORS = {
    304: "Not modified (the If-None-Match ETag still matches)",
    400: "Bad request: a malformed parameter, header or body",
    401: "No valid API key (or a write without one in --public mode)",
    403: "The files are outside every directory served with -r",
    404: "No such node or stream (or streaming is off: --cache none)",
    405: "Not possible on this node (read-only, wrong family, the root)",
    406: "None of the requested media types (Accept / ?format=) is served",
    409: "Conflicts with the node's current state",
    413: "The body is over the size limit",
    415: "Unsupported Content-Type or media type",
    422: "A parameter or body that does not validate",
    503: "The catalog database or the streaming cache is unreachable; retry (Retry-After)",
}
SECURITY_SCHEMES = {
    "ApiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "'Apikey <key>'",
    },
    "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
    "ApiKeyCookie": {"type": "apiKey", "in": "cookie", "name": "tiled_api_key"},
}
_KEYED: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
DESCRIPTION = (
    "Tiled's HTTP API v1 (the stock tiled client works unchanged) and Redis Streamer's data "
    "and GraphQL API. Authenticate with the API key (header 'Authorization: Apikey <key>', "
    "query parameter api_key or cookie tiled_api_key); in --public mode reads need none. "
    'Every error is a status code and {"detail": ...}. WebSocket routes are listed under '
    "x-websockets."
)


def _parameter(param: Param) -> dict[str, Any]:
    schema = {"type": "array", "items": param.schema} if param.repeated else param.schema
    out: dict[str, Any] = {
        "name": param.name,
        "in": param.where,
        "required": param.required,
        "description": param.description,
        "schema": schema,
    }
    if param.schema.get("type") == "object":
        out["style"] = "deepObject"
        out["explode"] = True
    return out


def _error_statuses(endpoint: Endpoint) -> list[int]:
    statuses = set(endpoint.errors)
    if endpoint.access != "none":
        # Any authenticated route: a bad Authorization scheme (400), no key (401), and a lost
        # catalog database or streaming cache (503).
        statuses |= {400, 401, 503}
    return sorted(statuses)


def _responses(endpoint: Endpoint) -> dict[str, Any]:
    reply = endpoint.reply
    responses: dict[str, Any] = {}
    if endpoint.method == WEBSOCKET:
        responses["101"] = {"description": "Switching to the WebSocket protocol"}
    else:
        ok: dict[str, Any] = {
            "description": reply.description,
            "content": {media: {"schema": reply.schema} for media in reply.media_types},
        }
        if reply.headers:
            ok["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in reply.headers
            }
        responses[str(reply.status)] = ok
    if endpoint.etag:
        responses["304"] = {"description": ERRORS[304]}
    for status in _error_statuses(endpoint):
        responses[str(status)] = {
            "description": ERRORS[status],
            "content": {media: {"schema": s} for media, s in endpoint.error_content.items()},
        }
    return responses


def operation_id(endpoint: Endpoint, path: str) -> str:
    words = path.replace("{", "").replace("}", "").replace("[", "").strip("/")
    name = "_".join(part for part in words.replace("/", "_").split("_") if part) or "root"
    suffix = "_slash" if path.endswith("/") and path != "/" and path != endpoint.path else ""
    return f"{endpoint.method.lower()}_{name}{suffix}".replace(".", "_").replace("-", "_")


def _operation(endpoint: Endpoint, path: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "tags": [endpoint.tag],
        "summary": endpoint.summary,
        "operationId": operation_id(endpoint, path),
        "parameters": [_parameter(p) for p in endpoint.params],
        "responses": _responses(endpoint),
    }
    if endpoint.description:
        op["description"] = endpoint.description
    if endpoint.access == "none":
        op["security"] = []
    elif endpoint.access == "read":
        op["security"] = [*_KEYED, {}]  # {}: anonymous reads in --public mode
    if endpoint.body is not None:
        body = endpoint.body
        op["requestBody"] = {
            "required": body.required,
            "description": body.description,
            "content": {media: {"schema": body.schema} for media in body.media_types},
        }
    return op


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route (built once)."""
    paths: dict[str, dict[str, Any]] = {}
    sockets: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        for path in (endpoint.path, *endpoint.aliases):
            if endpoint.method == WEBSOCKET:
                sockets[path] = _operation(endpoint, path)
            else:
                paths.setdefault(path, {})[endpoint.method.lower()] = _operation(endpoint, path)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ferrotile", "version": __version__, "description": DESCRIPTION},
        "paths": paths,
        "x-websockets": sockets,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
        "security": _KEYED,
        "tags": [{"name": name} for name in dict.fromkeys(e.tag for e in ENDPOINTS)],
    }


@functools.cache
def _document_bytes() -> bytes:
    return orjson.dumps(document())


async def openapi_json(request: Request) -> Response:
    return Response(_document_bytes(), media_type="application/json")


async def docs(request: Request) -> Response:
    return HTMLResponse(_docs_page())


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-bottom:1px solid #ccc;margin-top:2.5rem} details{margin:.4rem 0}
summary{cursor:pointer;font-family:monospace;font-size:1rem}
.m{display:inline-block;width:6.5rem;font-weight:bold}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
code{background:#f4f4f4;padding:0 .2rem}
"""


def _schema_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    return orjson.dumps(schema).decode() if schema else "any"


def _op_html(method: str, path: str, op: dict[str, Any]) -> str:
    e = html.escape
    parts = [f"<details><summary><span class=m>{e(method.upper())}</span>{e(path)} &mdash; "
             f"{e(op['summary'])}</summary>"]  # fmt: skip
    if "description" in op:
        parts.append(f"<p>{e(op['description'])}</p>")
    if op["parameters"]:
        rows = "".join(
            f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p['in'])}"
            f"{' (required)' if p['required'] else ''}</td>"
            f"<td>{e(_schema_text(p['schema']))}</td><td>{e(p['description'])}</td></tr>"
            for p in op["parameters"]
        )
        parts.append(f"<table><tr><th>parameter</th><th>in</th><th>schema</th><th></th></tr>"
                     f"{rows}</table>")  # fmt: skip
    if "requestBody" in op:
        body = op["requestBody"]
        kinds = ", ".join(f"{m} ({_schema_text(c['schema'])})" for m, c in body["content"].items())
        parts.append(f"<p>Body: {e(body['description'])}: {e(kinds)}</p>")
    rows = "".join(
        f"<tr><td>{e(status)}</td><td>{e(r['description'])}</td>"
        f"<td>{e(', '.join(r.get('content', {})))}</td></tr>"
        for status, r in op["responses"].items()
    )
    parts.append(f"<table><tr><th>status</th><th>meaning</th><th>media types</th></tr>{rows}"
                 "</table></details>")  # fmt: skip
    return "".join(parts)


@functools.cache
def _docs_page() -> str:
    doc = document()
    sections: dict[str, list[str]] = {tag["name"]: [] for tag in doc["tags"]}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            sections[op["tags"][0]].append(_op_html(method, path, op))
    for path, op in doc["x-websockets"].items():
        sections[op["tags"][0]].append(_op_html("WebSocket", path, op))
    error = _schema_text(SCHEMAS["Error"])
    body = "".join(
        f"<h2>{html.escape(tag)}</h2>{''.join(ops)}" for tag, ops in sections.items() if ops
    )
    return (
        "<!DOCTYPE html><html><head><meta charset=utf-8><title>ferrotile API</title>"
        f"<style>{_STYLE}</style></head><body><h1>ferrotile {html.escape(__version__)} API</h1>"
        f"<p>{html.escape(DESCRIPTION)}</p><p>Machine-readable: <a href=/openapi.json>"
        f"/openapi.json</a> (OpenAPI 3.1). Error body: <code>{html.escape(error)}</code></p>"
        f"{body}</body></html>"
    )
