"""Response compression by ``Accept-Encoding`` (zstd, gzip), as a pure ASGI middleware.

Behaviour follows Tiled 0.2.20 (``tiled/server/compression.py``), which the stock client is
built against (it advertises ``gzip, deflate, br, zstd, blosc2``, whichever it has):

- zstd is preferred over gzip when both are accepted (Tiled prefers the later-registered
  zstd). ``q=0`` excludes an encoding.
- Only media types that compress (JSON, msgpack, raw bytes, Arrow, CSV, text, HTML, npy, TIFF);
  never PNG or Parquet (already compressed), never a response that already has an encoding.
- Bodies under :data:`MINIMUM_SIZE` go out as they are, and so do bodies that shrink by less
  than 10 % (decoding would cost the client more than the bytes saved).
- A whole body gets ``Content-Encoding``, ``Content-Length`` of the compressed bytes and
  ``Vary: Accept-Encoding``; a strong ``ETag`` becomes weak, since the bytes differ from the
  identity representation's. Large bodies are compressed in a worker thread (zlib and zstd
  release the GIL) so the event loop keeps serving.
- A streaming body (more chunks to come) is compressed chunk by chunk, each chunk flushed so the
  client receives it at once, without ``Content-Length``.
- Requests whose client accepts none of our encodings, and WebSocket and lifespan scopes, pass
  straight through: no wrapper, no buffering.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import Protocol

import zstandard
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Bodies smaller than this are not worth compressing (headers and CPU cost dominate).
MINIMUM_SIZE = 1024
#: Bodies at least this large are compressed off the event loop.
THREAD_SIZE = 256 * 1024
#: Send the compressed body only when it is at most this fraction of the original (as Tiled).
MAX_RATIO = 0.9

#: Media types worth compressing; values: whether the content is binary data (fast levels).
COMPRESSIBLE: dict[str, bool] = {
    "application/json": False,
    "application/json-seq": False,
    "application/x-msgpack": False,
    "text/csv": False,
    "text/x-comma-separated-values": False,
    "text/plain": False,
    "text/html": False,
    "application/vnd.ms-excel": False,  # CSV under an Excel media type
    "application/octet-stream": True,
    "application/vnd.apache.arrow.file": True,
    "application/vnd.apache.arrow.stream": True,
    "application/x-npy": True,
    "image/tiff": True,  # written uncompressed
}

#: Encodings in order of preference.
ENCODINGS = ("zstd", "gzip")


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def finish(self) -> bytes: ...


class _Zstd:
    """One zstd frame across all chunks (httpx's decoder stops after the first frame)."""

    def __init__(self, binary: bool) -> None:
        # Level 1 for bulk binary data keeps throughput high; 3 (zstd's default) for text.
        self._obj = zstandard.ZstdCompressor(level=1 if binary else 3).compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._obj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


class _Gzip:
    def __init__(self, binary: bool) -> None:
        # Tiled uses level 1 for data (level 9 takes ~a minute on large arrays), 9 for JSON;
        # 6 (zlib's default) is nearly as small as 9 at a fraction of the time.
        level = 1 if binary else 6
        self._obj = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip wrapper

    def compress(self, data: bytes) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._obj.flush(zlib.Z_FINISH)


_FACTORIES: dict[str, Callable[[bool], Compressor]] = {"zstd": _Zstd, "gzip": _Gzip}


def choose_encoding(accept_encoding: str) -> str | None:
    """The preferred encoding of ours that ``accept_encoding`` allows, or ``None``."""
    accepted: set[str] = set()
    wildcard = False
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        q = params.strip()
        if q.startswith("q="):
            try:
                if float(q[2:]) <= 0:
                    continue
            except ValueError:
                pass
        if name == "*":
            wildcard = True
        elif name:
            accepted.add(name)
    for encoding in ENCODINGS:
        if encoding in accepted:
            return encoding
    return ENCODINGS[-1] if wildcard else None  # "*": gzip is what every client decodes


def _compress_whole(encoding: str, binary: bool, body: bytes) -> bytes:
    compressor = _FACTORIES[encoding](binary)
    return compressor.compress(body) + compressor.finish()


class CompressionMiddleware:
    """Compress HTTP response bodies the client accepts compressed (see module notes)."""

    def __init__(self, app: ASGIApp, minimum_size: int = MINIMUM_SIZE) -> None:
        self.app = app
        self.minimum_size = minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        encoding = choose_encoding(Headers(scope=scope).get("accept-encoding", ""))
        if encoding is None:
            await self.app(scope, receive, send)
            return
        await _Responder(encoding, self.minimum_size, send).run(self.app, scope, receive)


class _Responder:
    """Per-request state: holds ``http.response.start`` until the first body chunk."""

    def __init__(self, encoding: str, minimum_size: int, send: Send) -> None:
        self.encoding = encoding
        self.minimum_size = minimum_size
        self.send = send
        self.start: Message | None = None
        self.binary = False
        self.streaming: Compressor | None = None
        self.passthrough = False

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive) -> None:
        await app(scope, receive, self.on_send)

    def _eligible(self, message: Message) -> bool:
        status = message["status"]
        if status < 200 or status in (204, 206, 304):
            return False
        headers = Headers(raw=message.get("headers", []))
        if "content-encoding" in headers:
            return False
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type not in COMPRESSIBLE:
            return False
        self.binary = COMPRESSIBLE[media_type]
        return True

    async def on_send(self, message: Message) -> None:
        kind = message["type"]
        if self.passthrough:
            await self.send(message)
        elif kind == "http.response.start":
            if self._eligible(message):
                self.start = message
            else:
                self.passthrough = True
                await self.send(message)
        elif kind == "http.response.body" and self.streaming is not None:
            await self._stream_chunk(message)
        elif kind == "http.response.body":
            await self._first_body(message)
        else:  # e.g. http.response.pathsend: cannot compress; release the held headers
            self.passthrough = True
            if self.start is not None:
                await self.send(self.start)
            await self.send(message)

    def _headers(self) -> MutableHeaders:
        assert self.start is not None
        headers = MutableHeaders(scope=self.start)
        headers["Content-Encoding"] = self.encoding
        headers.add_vary_header("Accept-Encoding")
        etag = headers.get("etag")
        if etag is not None and not etag.startswith("W/"):
            headers["ETag"] = f"W/{etag}"
        return headers

    async def _first_body(self, message: Message) -> None:
        assert self.start is not None
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            self.streaming = _FACTORIES[self.encoding](self.binary)
            del self._headers()["Content-Length"]
            await self.send(self.start)
            await self._stream_chunk(message)
            return
        self.passthrough = True  # one-shot body: whatever happens below, later messages pass
        if len(body) < self.minimum_size:
            await self.send(self.start)
            await self.send(message)
            return
        if len(body) >= THREAD_SIZE:
            compressed = await asyncio.to_thread(_compress_whole, self.encoding, self.binary, body)
        else:
            compressed = _compress_whole(self.encoding, self.binary, body)
        if len(compressed) > MAX_RATIO * len(body):
            await self.send(self.start)
            await self.send(message)
            return
        self._headers()["Content-Length"] = str(len(compressed))
        await self.send(self.start)
        await self.send({"type": "http.response.body", "body": compressed, "more_body": False})

    async def _stream_chunk(self, message: Message) -> None:
        assert self.streaming is not None
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        out = self.streaming.compress(body)
        out += self.streaming.flush() if more else self.streaming.finish()
        await self.send({"type": "http.response.body", "body": out, "more_body": more})
