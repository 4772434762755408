"""Single API-key authentication, as Tiled's single-user mode.

The key is accepted from ``Authorization: Apikey KEY``, the ``api_key`` query parameter (which
also sets the ``tiled_api_key`` cookie, see :class:`ApiKeyCookieMiddleware`) or that cookie.
Comparisons are constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from enum import Enum
from urllib.parse import parse_qs

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferrotile.api.errors import ApiError

COOKIE_NAME = "tiled_api_key"


class Access(Enum):
    READ = "read"
    WRITE = "write"


class Credentials(Enum):
    """What a request presented: nothing, the right key, or a wrong one."""

    NONE = "none"
    VALID = "valid"
    INVALID = "invalid"


def key_matches(candidate: str, api_key: str) -> bool:
    return hmac.compare_digest(candidate.encode(), api_key.encode())


#: Tiled 0.2.20's answer (400, this detail, trailing space included) to an ``Authorization``
#: header whose scheme is neither ``Apikey`` nor ``Bearer``.
BAD_SCHEME = (
    "Authorization header must include the authorization type followed by a space and then "
    "the secret, as in 'Bearer SECRET' or 'Apikey SECRET'. "
)


def check_header(authorization: str | None, api_key: str) -> Credentials:
    """Classify an ``Authorization`` header as Tiled 0.2.20 does.

    An unknown scheme is a 400 with Tiled's detail (not a 401: the client sent something that
    is not a credential at all); ``Apikey`` without a key counts as no credentials; ``Bearer``
    tokens do not exist in single-user mode, so they never match.
    """
    if not authorization:
        return Credentials.NONE
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() not in ("apikey", "bearer"):
        raise ApiError(400, BAD_SCHEME)
    if scheme.lower() == "apikey" and not value.strip():
        return Credentials.NONE
    if scheme.lower() == "apikey" and key_matches(value.strip(), api_key):
        return Credentials.VALID
    return Credentials.INVALID


def credentials(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    cookies: Mapping[str, str],
    api_key: str,
) -> Credentials:
    """Classify the credentials of an HTTP request (header, then query, then cookie)."""
    found = check_header(headers.get("authorization"), api_key)
    if found is not Credentials.NONE:
        return found
    for candidate in (query.get("api_key"), cookies.get(COOKIE_NAME)):
        if candidate is not None:
            return Credentials.VALID if key_matches(candidate, api_key) else Credentials.INVALID
    return Credentials.NONE


def authorize(creds: Credentials, access: Access, *, public: bool) -> None:
    """Raise the 401 Tiled gives, unless ``creds`` grant ``access``."""
    if creds is Credentials.VALID:
        return
    if creds is Credentials.INVALID:
        raise ApiError(401, "Invalid API key")
    if public and access is Access.READ:
        return
    raise ApiError(
        401,
        "Not enough permissions. Provide an API key "
        "(header 'Authorization: Apikey <key>' or query parameter ?api_key=<key>).",
    )


class ApiKeyCookieMiddleware:
    """Set the ``tiled_api_key`` cookie on responses to requests that passed ``?api_key=``.

    Only a key that matches is stored, so a browser following a link with a key keeps working
    on later requests without the query parameter.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or b"api_key=" not in scope.get("query_string", b""):
            await self.app(scope, receive, send)
            return
        values = parse_qs(scope["query_string"].decode("latin-1")).get("api_key", [])
        if not values or not key_matches(values[0], self.api_key):
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append(
                    "set-cookie",
                    f"{COOKIE_NAME}={values[0]}; HttpOnly; Path=/; SameSite=Lax",
                )
            await send(message)

        await self.app(scope, receive, send_with_cookie)
