"""The few Tiled HTTP calls registration makes, on one pooled ``httpx`` client (thread-safe)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import orjson

from ferrotile.errors import FerrotileError


class RegisterError(FerrotileError):
    """Registration cannot go on at all (server unreachable, API key refused)."""


class Refused(FerrotileError):
    """The server refused one request (4xx/5xx other than 401); the item is skipped."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"server answered {status}: {detail}")
        self.status = status
        self.detail = detail


def split_url(url: str) -> tuple[str, list[str], str | None]:
    """``(server base, node path parts, api key in the URL)`` of a Tiled URL.

    Accepts ``http://host:port``, ``.../api/v1`` and ``.../api/v1/metadata/a/b`` (register
    under ``a/b``), with an optional ``?api_key=...``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RegisterError(f"{url!r} is not an http(s) URL of a server")
    path = parts.path
    node: list[str] = []
    head, api, rest = path.partition("/api/v1")
    if api:
        path = head
        rest = rest.strip("/")
        if rest.startswith("metadata"):
            node = [p for p in rest[len("metadata") :].split("/") if p]
    key = parse_qs(parts.query).get("api_key", [None])[0]
    return f"{parts.scheme}://{parts.netloc}{path.rstrip('/')}", node, key


def node_url(parts: Sequence[str]) -> str:
    return "/".join(quote(p, safe="") for p in parts)


class Api:
    """Blocking calls to ``/api/v1``; fatal conditions raise :class:`RegisterError`."""

    def __init__(self, base: str, api_key: str | None, *, connections: int = 16) -> None:
        api_key = api_key or os.environ.get("TILED_API_KEY")
        headers = {"Accept": "application/json", "User-Agent": "ferrotile-register"}
        if api_key:
            headers["Authorization"] = f"Apikey {api_key}"
        self.base = base
        self._client = httpx.Client(
            base_url=f"{base}/api/v1",
            headers=headers,
            timeout=httpx.Timeout(60.0, connect=10.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            trust_env=False,  # loopback servers behind a proxy configuration are common in tests
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Any = None,
        absolute: bool = False,
    ) -> Any:
        """Send one request; return the decoded JSON body (``None`` when empty)."""
        content = orjson.dumps(json) if json is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = self._client.request(
                method,
                url if absolute else f"/{url.lstrip('/')}",
                content=content,
                params=params,
                headers=headers,
            )
        except httpx.TransportError as exc:
            raise RegisterError(f"cannot reach the server at {self.base}: {exc}") from None
        if response.status_code == 401:
            raise RegisterError(
                f"the server at {self.base} refused the API key (401); pass --api-key "
                "or set TILED_API_KEY"
            )
        if response.status_code >= 400:
            raise Refused(response.status_code, _detail(response))
        if not response.content:
            return None
        return orjson.loads(response.content)

    def check(self, parts: Sequence[str]) -> None:
        """Fail early, with one clear line, if the server is unreachable or refuses us."""
        about = self.request("GET", "/")
        if not isinstance(about, dict) or "api_version" not in about:
            raise RegisterError(f"{self.base} does not look like a Tiled server")
        self.request("GET", f"/metadata/{node_url(parts)}")

    def children(self, parts: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Every child of a container, with its data sources, following ``links.next``."""
        url: str | None = f"/search/{node_url(parts)}"
        params: Any = {"include_data_sources": "true", "page[limit]": "300"}
        absolute = False
        while url:
            page = self.request("GET", url, params=params, absolute=absolute)
            yield from page.get("data") or []
            url = (page.get("links") or {}).get("next")
            params, absolute = None, True

    def create_container(
        self, parts: Sequence[str], key: str, metadata: dict[str, Any] | None = None
    ) -> None:
        body = _create_body(key, "container", metadata or {}, [])
        self.request("POST", f"/metadata/{node_url(parts)}", json=body)

    def register(
        self,
        parts: Sequence[str],
        key: str,
        family: str,
        metadata: dict[str, Any],
        source: dict[str, Any],
    ) -> None:
        body = _create_body(key, family, metadata, [source])
        self.request("POST", f"/register/{node_url(parts)}", json=body)

    def put_data_source(
        self,
        parts: Sequence[str],
        source: dict[str, Any],
        patch: tuple[list[int], list[int]] | None = None,
    ) -> None:
        params = None
        if patch is not None:
            shape, offset = patch
            params = {
                "patch_shape": ",".join(map(str, shape)),
                "patch_offset": ",".join(map(str, offset)),
            }
        self.request(
            "PUT", f"/data_source/{node_url(parts)}", json={"data_source": source}, params=params
        )

    def put_metadata(self, parts: Sequence[str], metadata: dict[str, Any]) -> None:
        body = {"metadata": metadata, "specs": None, "access_tags": None}
        self.request("PUT", f"/metadata/{node_url(parts)}", json=body)

    def delete(self, parts: Sequence[str]) -> None:
        params = {"recursive": "true", "external_only": "true"}
        self.request("DELETE", f"/metadata/{node_url(parts)}", params=params)


def _create_body(
    key: str, family: str, metadata: dict[str, Any], sources: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": key,
        "structure_family": family,
        "metadata": metadata,
        "specs": [],
        "data_sources": sources,
        "access_tags": None,
    }


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if detail is None:
        return response.text[:200] or response.reason_phrase
    return detail if isinstance(detail, str) else orjson.dumps(detail).decode()[:300]
