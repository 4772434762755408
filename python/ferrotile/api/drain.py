"""ASGI middleware: a request body the application did not read is read (and dropped) before
the response starts.

The edge forwards every request over a pool of keep-alive connections to Granian. A response
sent while part of its request body is still unread (a 404 or 401 answered from the path and
headers alone) makes the server close that connection: the edge, still writing the body or
about to reuse the connection for the next request, then answered 502 to a client that did
nothing wrong. Reading the rest first keeps the connection usable; the edge bounds every body
(``--max-request-bytes``), so this is bounded too. Requests without a body cost one header scan.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class DrainBodyMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        finished = False

        async def tracked_receive() -> Message:
            nonlocal finished
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                finished = True
            return message

        async def draining_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                while not finished:
                    await tracked_receive()
            await send(message)

        await self.app(scope, tracked_receive, draining_send)
