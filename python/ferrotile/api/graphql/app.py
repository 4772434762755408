"""The ASGI app behind ``/graphql`` (HTTP GET/POST, GraphiQL on GET from a browser, and the
``graphql-transport-ws`` / legacy ``graphql-ws`` WebSocket subprotocols).

Every request needs read access, checked here before strawberry sees it (401 with a
``detail``, or the WebSocket handshake refused with 401), exactly as the other routes check it:
the API key (header, ``api_key`` query parameter or cookie), and none in public mode. Write
access for mutations is decided per field (:class:`~ferrotile.api.graphql.context.CanWrite`).
"""

from __future__ import annotations

import json

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from ferrotile.api.auth import Access, Credentials, credentials
from ferrotile.api.errors import ApiError, error_response
from ferrotile.api.graphql.context import Context
from ferrotile.api.graphql.schema import schema
from ferrotile.api.streamer.common import authorized


class _View(GraphQL[Context, None]):
    def decode_json(self, data: str | bytes) -> object:
        try:
            return json.loads(data)
        except UnicodeDecodeError as exc:
            # Strawberry answers 400 to JSONDecodeError only; bytes that are not UTF-8 were a 500.
            raise json.JSONDecodeError(f"the body is not UTF-8 ({exc.reason})", "", 0) from None

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        state = request.app.state.ferrotile
        found = credentials(
            request.headers, request.query_params, request.cookies, state.settings.api_key
        )
        return Context(state=state, can_write=found is Credentials.VALID, response=response)


class GraphQLEndpoint:
    """``/graphql`` for both HTTP and WebSocket routes (one ASGI app)."""

    def __init__(self) -> None:
        self._view = _View(schema, graphql_ide="graphiql")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            authorized(HTTPConnection(scope), Access.READ)
        except ApiError as exc:
            refusal = error_response(exc.status, exc.detail, exc.headers)
            if scope["type"] == "websocket":
                await WebSocket(scope, receive, send).send_denial_response(refusal)
            else:
                await refusal(scope, receive, send)
            return
        await self._view(scope, receive, send)
