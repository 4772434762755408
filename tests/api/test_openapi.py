"""``/openapi.json``, ``/docs`` and ``/``: the document describes exactly the app's routes (a
route added without a declaration fails here), it is valid OpenAPI 3.1, and real answers
(successes and errors) validate against the schemas it gives for their status."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route, WebSocketRoute

from ferrotile.api.openapi import document
from ferrotile.api.openapi_routes import ENDPOINTS, WEBSOCKET
from ferrotile.api.routes import HOOK, routes
from tests.api.conftest import AUTH, array_body
from tests.conftest import RunningServer, start_server, stop_server

_CONVERTER = re.compile(r"\{(\w+):\w+\}")
JSON = "application/json"


def served_by_starlette() -> dict[tuple[str, str], set[str] | None]:
    """``(kind, path) -> methods`` of the Starlette routes (None: any method)."""
    found: dict[tuple[str, str], set[str] | None] = {}
    for route in routes():
        path = _CONVERTER.sub(r"{\1}", getattr(route, "path", ""))
        if path == _CONVERTER.sub(r"{\1}", HOOK):
            continue  # test-only, exists with FERROTILE_TEST_HOOKS=1
        if isinstance(route, WebSocketRoute):
            found[(WEBSOCKET, path)] = {WEBSOCKET}
        else:
            assert isinstance(route, Route), route
            methods = None if route.methods is None else set(route.methods) - {"HEAD"}
            known = found.get(("HTTP", path), set())
            found[("HTTP", path)] = None if methods is None else (known or set()) | methods
    return found


def test_every_route_is_declared_and_every_declaration_served() -> None:
    declared: dict[tuple[str, str], set[str]] = {}
    edge: set[tuple[str, str]] = set()
    for e in ENDPOINTS:
        for path in (e.path, *e.aliases):
            kind = WEBSOCKET if e.method == WEBSOCKET else "HTTP"
            declared.setdefault((kind, path), set()).add(e.method)
            if e.served_by == "edge":
                edge.add((e.method, path))
    starlette = served_by_starlette()
    assert set(starlette) <= set(declared), "routes without a declaration in openapi_routes"
    for where, methods in declared.items():
        served = starlette.get(where)
        if served is None and where in starlette:  # an ASGI app taking any method (GraphQL)
            continue
        missing = {m for m in methods if (m, where[1]) not in edge} - (served or set())
        assert not missing, f"declared but not served: {where[1]} {missing}"
        extra = (served or set()) - methods
        assert not extra, f"served but not declared: {where[1]} {extra}"


def test_document_is_valid_openapi_3_1_with_every_declaration() -> None:
    doc = document()
    validate(copy.deepcopy(doc))
    assert doc["openapi"] == "3.1.0"
    operations = [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops]
    operations += [(WEBSOCKET, p) for p in doc["x-websockets"]]
    expected = [(e.method, p) for e in ENDPOINTS for p in (e.path, *e.aliases)]
    assert sorted(operations) == sorted(expected)
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for path, ops in doc["paths"].items():
        for op in ops.values():
            in_path = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert in_path == set(re.findall(r"\{(\w+)\}", path)), path
            errors = [s for s in op["responses"] if s >= "400"]
            for status in errors:
                assert "application/json" in op["responses"][status]["content"], (path, status)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(Path(tmp_path_factory.mktemp("openapi")))
    yield running
    stop_server(running)


def _resolved(schema: Any, components: dict[str, Any]) -> Any:
    """``schema`` with every ``$ref`` to ``components/schemas`` replaced by its target."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _resolved(components[schema["$ref"].rsplit("/", 1)[-1]], components)
        return {k: _resolved(v, components) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolved(v, components) for v in schema]
    return schema


def conforms(response: httpx.Response, path: str, method: str | None = None) -> None:
    """The response's status is documented for ``method path``, and a JSON body validates
    against the schema documented for that status."""
    doc = document()
    op = doc["paths"][path][(method or response.request.method).lower()]
    status = str(response.status_code)
    assert status in op["responses"], f"{status} not documented for {method} {path}"
    content = op["responses"][status].get("content", {})
    media = response.headers.get("content-type", "").split(";")[0]
    assert any(m.split(";")[0] == media for m in content), (media, list(content))
    if media == "application/json":
        schema = next(c["schema"] for m, c in content.items() if m == media)
        jsonschema.validate(response.json(), _resolved(schema, doc["components"]["schemas"]))


def test_served_document_docs_page_and_landing_page(live: RunningServer) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as anonymous:  # none of them needs a key
        served = anonymous.get("/openapi.json")
        assert served.status_code == 200
        assert served.headers["content-type"] == "application/json"
        assert served.json() == document()
        validate(served.json())
        page = anonymous.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for path in (*document()["paths"], *document()["x-websockets"]):
            assert f"{path} &mdash;" in page.text, path
        landing = anonymous.get("/")
        assert landing.status_code == 200
        assert landing.headers["content-type"].startswith("text/html")
        for link in ("/api/v1/", "/docs", "/openapi.json", "/graphql"):
            assert f'href="{live.url}{link}"' in landing.text
        conforms(landing, "/")
        conforms(anonymous.get("/api/v1/"), "/api/v1/")
        conforms(anonymous.get("/healthz"), "/healthz")
        conforms(anonymous.get("/api/v1/metadata/"), "/api/v1/metadata/{path}")  # 401


def test_answers_conform_to_the_document(live: RunningServer, key: str) -> None:
    meta, search = "/api/v1/metadata/{path}", "/api/v1/search/{path}"
    with httpx.Client(base_url=live.url, headers=AUTH, timeout=10) as http:
        conforms(http.post("/api/v1/metadata/", json=array_body(key, np.arange(3))), meta)
        conforms(http.post("/api/v1/metadata/", json=array_body(key, np.arange(3))), meta)  # 409
        conforms(http.post("/api/v1/metadata/", json={"structure_family": "x"}), meta)  # 422
        conforms(http.get(f"/api/v1/metadata/{key}", params={"include_data_sources": 1}), meta)
        conforms(http.get("/api/v1/metadata/nothing/here"), meta)  # 404
        conforms(http.get("/api/v1/search/", params={"page[limit]": 2}), search)
        conforms(http.get("/api/v1/search/", params={"page[limit]": "x"}), search)  # 422
        octet = {"Content-Type": "application/octet-stream"}
        put = http.put(f"/api/v1/array/full/{key}", content=np.arange(3).tobytes(), headers=octet)
        conforms(put, "/api/v1/array/full/{path}")
        patched = http.patch(
            f"/api/v1/array/full/{key}",
            params={"offset": "3", "shape": "1", "extend": "true"},
            content=np.array([5]).tobytes(),
            headers=octet,
        )
        conforms(patched, "/api/v1/array/full/{path}")
        read = http.get(f"/api/v1/array/full/{key}", headers={"Accept": "application/json"})
        conforms(read, "/api/v1/array/full/{path}")
        assert read.json() == [0, 1, 2, 5]
        conforms(http.get(f"/api/v1/array/full/{key}", params={"format": "nope"}),
                 "/api/v1/array/full/{path}")  # fmt: skip
        conforms(http.get(f"/api/v1/revisions/{key}"), "/api/v1/revisions/{path}")
        conforms(http.get("/api/v1/metrics"), "/api/v1/metrics")
        files = [("entries", ("e", b"x", "application/octet-stream"))]
        conforms(http.post(f"/data/{key}/", files=files), "/data/{sid}/")
        conforms(http.get(f"/data/{key}", params={"last_entry_id": "0"}), "/data/{sid}")
        conforms(http.get(f"/data/{key}", params={"count": "0"}), "/data/{sid}")  # 400
        conforms(http.post("/graphql", json={"query": "{ streamIds }"}), "/graphql")
        unparsable = http.post("/graphql", content=b"{", headers={"Content-Type": JSON})
        assert unparsable.status_code == 400
        conforms(unparsable, "/graphql")
        conforms(http.get("/api/v1/metadata/", headers={"Authorization": "Bearer x"}), meta)
