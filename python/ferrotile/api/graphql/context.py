"""What every resolver gets (the worker's state, whether the caller may write) and the
permission that guards mutations.

Reading needs the same credentials as the rest of the server (checked by :mod:`.app` before
strawberry sees the request); mutations need write access, which in public mode an anonymous
caller lacks: the mutation is refused and the HTTP answer is 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from ferrotile.state import AppState

NOT_ALLOWED = (
    "Not enough permissions. Provide an API key "
    "(header 'Authorization: Apikey <key>' or query parameter ?api_key=<key>)."
)


@dataclass
class Context:
    state: AppState
    can_write: bool
    #: strawberry's sub-response (HTTP: its status code is the answer's) or the WebSocket.
    response: Any


def state_of(info: Info[Context, Any]) -> AppState:
    return info.context.state


class CanWrite(BasePermission):
    """Mutations: only with the API key (an anonymous caller of a public server may read)."""

    message = NOT_ALLOWED

    def has_permission(self, source: Any, info: Info[Context, Any], **kwargs: Any) -> bool:
        if info.context.can_write:
            return True
        if hasattr(info.context.response, "status_code"):
            info.context.response.status_code = 401
        return False
