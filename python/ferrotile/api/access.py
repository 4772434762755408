"""ASGI middleware: request metrics for every request, and the opt-in JSON access log.

Per HTTP request it takes two clock readings, notes the response status and updates one
counter and one histogram (:meth:`ferrotile.api.metrics.Metrics.observe_request`); with
``--access-log`` it also writes one JSON line to stderr. Per WebSocket connection it counts the
connection, lets the hub record the connection's subscriptions (so the metrics can read their
queue and drop counters while it lasts, see :data:`ferrotile.streaming.hub.
connection_subscriptions`) and, with the log on, writes one line when it ends. WebSocket
``send`` is never wrapped (that would run Python per frame per subscriber), so a WebSocket line
has no status or byte count; it has the last stream sequence handed to the connection.

Log lines never contain the query string (it may carry ``api_key``). Fields: ``ts`` (Unix
seconds), ``pid``, ``client``, ``method`` (``WS`` for WebSockets), ``path``, ``status``,
``seconds``, ``bytes`` (response body bytes), and for WebSockets ``last_sequence``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferrotile.api.metrics import ROUTES, Metrics, metrics
from ferrotile.streaming.hub import connection_subscriptions

API_PREFIX = "/api/v1/"
STDERR = 2


def route_of(path: str) -> str:
    """The bounded ``route`` label of a request path."""
    if path.startswith(API_PREFIX):
        segment = path[len(API_PREFIX) :].partition("/")[0]
        if not segment:
            return "about"
        return segment if segment in ROUTES else "other"
    return "healthz" if path == "/healthz" else "other"


def client_address(scope: Scope) -> str | None:
    """The client's address: the first hop of ``X-Forwarded-For`` (the edge appends the peer it
    forwards for; a proxy in front of it, e.g. HAProxy, adds the original client first)."""
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            first = value.decode("latin-1").split(",")[0].strip()
            return first or None
    client = scope.get("client")
    return client[0] if client else None


def _log(
    scope: Scope, method: str, status: int | None, seconds: float, sent: int | None, **extra: Any
) -> None:
    line = orjson.dumps(
        {
            **extra,
            "ts": round(time.time(), 6),
            "pid": os.getpid(),
            "client": client_address(scope),
            "method": method,
            "path": scope.get("path", ""),
            "status": status,
            "seconds": round(seconds, 6),
            "bytes": sent,
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )
    os.write(STDERR, line)


class AccessMiddleware:
    def __init__(self, app: ASGIApp, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log
        self.metrics: Metrics = metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        response: list[int] = [500, 0]  # status, body bytes
        log = self.access_log

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                response[0] = message["status"]
            elif log and message["type"] == "http.response.body":
                response[1] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"]
            self.metrics.observe_request(method, route_of(scope["path"]), response[0], seconds)
            if log:
                _log(scope, method, response[0], seconds, response[1])

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        self.metrics.websockets.labels(route_of(scope["path"])).inc()
        tracked: list[Any] = []
        key = id(tracked)
        self.metrics.open_subscriptions[key] = tracked
        token = connection_subscriptions.set(tracked)
        try:
            # ``send`` is not wrapped: that would run Python per frame per subscriber.
            await self.app(scope, receive, send)
        finally:
            connection_subscriptions.reset(token)
            if self.access_log:
                last = max((getattr(s, "last_sequence", 0) for s in tracked), default=None)
                seconds = time.perf_counter() - started
                _log(scope, "WS", None, seconds, None, last_sequence=last)
            self.metrics.connection_closed(key)
