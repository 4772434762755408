"""Response compression (gzip, zstd) by ``Accept-Encoding``, and ``ETag`` / 304 revalidation."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import numpy as np
import orjson
import pytest
import zstandard
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferrotile.api.compression import CompressionMiddleware, choose_encoding
from ferrotile.api.etag import matches
from tests.api.conftest import AUTH, create_array
from tests.conftest import RunningServer

TEXT = b'{"key": "value", "numbers": [1, 2, 3, 4, 5, 6, 7, 8, 9]}' * 200  # ~11 kB, compressible


def _decode(encoding: str | None, body: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    assert encoding is None
    return body


def _text(request: Request) -> Response:
    size = int(request.query_params.get("size", len(TEXT)))
    return Response(TEXT[:size], media_type=request.query_params.get("type", "application/json"))


def _random(request: Request) -> Response:
    return Response(os.urandom(10_000), media_type="application/octet-stream")


def _tagged(request: Request) -> Response:
    return Response(TEXT, media_type="application/json", headers={"ETag": '"abc"'})


def _stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            yield b"\x1e" + orjson.dumps({"row": i, "pad": "x" * 500}) + b"\n"

    return StreamingResponse(chunks(), media_type="application/json-seq")


ROUTES = {"/text": _text, "/random": _random, "/tagged": _tagged, "/stream": _stream}


async def _inner(scope: Scope, receive: Receive, send: Send) -> None:
    """A tiny app answering ``ROUTES`` (what the middleware wraps)."""
    response = ROUTES[scope["path"]](Request(scope, receive))
    await response(scope, receive, send)


@dataclass
class Sent:
    """What the middleware sent for one request: status, headers, body chunks."""

    start: Message
    chunks: list[bytes] = field(default_factory=list)

    @property
    def headers(self) -> Headers:
        return Headers(raw=self.start["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def _get(url: str, encoding: str, method: str = "GET", app: ASGIApp = _inner) -> Sent:
    path, _, query = url.partition("?")
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(b"accept-encoding", encoding.encode())],
    }
    messages: list[Message] = []

    received = False

    async def receive() -> Message:
        nonlocal received
        if received:  # later calls wait for a disconnect that never comes
            await asyncio.Event().wait()
        received = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    asyncio.run(CompressionMiddleware(app)(scope, receive, send))
    assert messages[0]["type"] == "http.response.start"
    sent = Sent(messages[0], [m.get("body", b"") for m in messages[1:]])
    assert not messages[-1].get("more_body", False)
    return sent


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("gzip, deflate, br, zstd, blosc2", "zstd"),  # the stock client's header
        ("gzip, deflate", "gzip"),
        ("zstd;q=0, gzip", "gzip"),
        ("*", "gzip"),
        ("identity", None),
        ("", None),
        ("br, deflate", None),
    ],
)
def test_choose_encoding(accept: str, expected: str | None) -> None:
    assert choose_encoding(accept) == expected


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
@pytest.mark.parametrize("media_type", ["application/json", "text/csv", "application/x-npy"])
def test_round_trip(encoding: str, media_type: str) -> None:
    sent = _get(f"/text?type={media_type}", encoding)
    assert sent.headers["content-encoding"] == encoding
    assert sent.headers["vary"] == "Accept-Encoding"
    assert int(sent.headers["content-length"]) == len(sent.body) < len(TEXT) / 5
    assert _decode(encoding, sent.body) == TEXT


@pytest.mark.parametrize(
    ("url", "encoding"),
    [
        ("/text", "identity"),  # no encoding of ours accepted
        ("/text", "br"),
        ("/text?size=1000", "gzip"),  # under the threshold
        ("/text?type=image/png", "gzip"),  # already compressed media
        ("/text?type=application/x-parquet", "zstd"),
        ("/random", "zstd"),  # incompressible: not worth the client's decoding time
    ],
)
def test_sent_as_is(url: str, encoding: str) -> None:
    sent = _get(url, encoding)
    assert "content-encoding" not in sent.headers and "vary" not in sent.headers
    assert int(sent.headers["content-length"]) == len(sent.body)
    if url.startswith("/text"):
        assert TEXT.startswith(sent.body)


def test_etag_becomes_weak_when_compressed() -> None:
    assert _get("/tagged", "gzip").headers["etag"] == 'W/"abc"'
    assert _get("/tagged", "identity").headers["etag"] == '"abc"'


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_streaming_response_is_compressed_per_chunk(encoding: str) -> None:
    sent = _get("/stream", encoding)
    assert sent.headers["content-encoding"] == encoding
    assert "content-length" not in sent.headers
    # Each chunk is flushed: decodable on its own, in order, without waiting for the end.
    decoder = zstandard.ZstdDecompressor().decompressobj() if encoding == "zstd" else None
    if decoder is not None:
        for i, chunk in enumerate(sent.chunks[:5]):
            assert orjson.loads(decoder.decompress(chunk)[1:])["row"] == i
    rows = _decode(encoding, sent.body).split(b"\n")[:-1]
    assert [orjson.loads(r[1:])["row"] for r in rows] == list(range(5))


def test_head_like_get_and_websocket_untouched() -> None:
    # HEAD answers the headers GET would get (the server drops the body).
    assert _get("/text", "gzip", method="HEAD").headers == _get("/text", "gzip").headers
    seen: list[tuple[Scope, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, send))

    async def send(message: Message) -> None:
        pass

    scope = {"type": "websocket", "path": "/ws", "headers": [(b"accept-encoding", b"gzip")]}
    asyncio.run(CompressionMiddleware(app)(scope, _never, send))
    assert seen == [(scope, send)]  # passed straight through, send not wrapped


async def _never() -> Message:
    raise AssertionError("not called")


def test_if_none_match_comparison() -> None:
    assert matches('"abc"', '"abc"')
    assert matches('W/"abc"', '"abc"')
    assert matches('"x", "abc"', '"abc"')
    assert matches("abc", '"abc"')  # unquoted, as Tiled sends it
    assert matches("*", '"abc"')
    assert not matches('"abd"', '"abc"')


# --- through the server ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_large_array_compressed_by_server(server: RunningServer, key: str, encoding: str) -> None:
    data = np.arange(200_000, dtype="i8")  # 1.6 MB, compresses well: compressed off-loop
    base = f"{server.url}/api/v1"
    with httpx.Client(base_url=base, headers=AUTH, timeout=10) as http:
        create_array(http, key, data)
        with http.stream(
            "GET", f"/array/full/{key}", headers={"Accept-Encoding": encoding}
        ) as response:
            raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert response.headers["content-encoding"] == encoding
    assert int(response.headers["content-length"]) == len(raw) < data.nbytes / 4
    np.testing.assert_array_equal(np.frombuffer(_decode(encoding, raw), "i8"), data)


def test_not_compressed_when_not_accepted(server: RunningServer, key: str) -> None:
    data = np.arange(10_000, dtype="i8")
    with httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=10) as http:
        create_array(http, key, data)
        response = http.get(f"/array/full/{key}", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == data.nbytes
    assert response.content == data.tobytes()


@pytest.mark.parametrize("url", ["/", "/metadata/", "/search/"])
def test_etag_and_304(server: RunningServer, url: str) -> None:
    with httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=10) as http:
        first = http.get(url, headers={"Accept-Encoding": "identity"})
        etag = first.headers["etag"]
        assert first.status_code == 200 and etag.startswith('"') and etag.endswith('"')
        assert etag == f'"{hashlib.md5(first.content).hexdigest()}"'
        again = http.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        changed = http.get(url, headers={"If-None-Match": '"0000"'})
        assert changed.status_code == 200 and changed.content == first.content
