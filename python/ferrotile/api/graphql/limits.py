"""What one GraphQL document may cost, and how GraphQL errors are logged.

Limits (each refusal is an ordinary GraphQL error, ``{"errors": [{"message": ...}]}``, before
any resolver runs):

- :data:`MAX_TOKENS` lexical tokens: the parser stops there, so a huge document (20,000
  aliases) costs a few milliseconds instead of seconds of validation and execution on the
  event loop. Variables are not tokens: large ``meta`` objects belong in variables.
- :data:`MAX_ALIASES` aliases and :data:`MAX_DEPTH` levels of selection (introspection, as
  GraphiQL sends it, is exempt from the depth limit).
- :data:`MAX_FRAGMENT_SPREADS` fragment spreads once fragments are inlined: fragments that
  spread each other several times (``A { ...B ...B } B { ...C ...C } ...``) expand
  exponentially, and the alias and depth counters (and graphql-core's own validation) walk every
  expansion, so the expansion is counted first (linearly) and bounded.

Logging: errors caused by the request (syntax, validation, limits, bad arguments, refused
permissions, 4xx) are logged at INFO without a traceback; anything else is a server fault and
keeps strawberry's ERROR with the traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from graphql import GraphQLError
from graphql.language import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    Node,
    OperationDefinitionNode,
)
from strawberry import Schema
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.types import ExecutionContext

from ferrotile.api.errors import ApiError
from ferrotile.errors import EntryIdError, InvalidKey, KeyConflict, NotEmpty, StreamUnavailable
from ferrotile.streamer.params import StreamerInputError
from ferrotile.validation import InputRejected

MAX_TOKENS = 2_000
MAX_ALIASES = 100
MAX_DEPTH = 10
MAX_FRAGMENT_SPREADS = 50

log = logging.getLogger("ferrotile.graphql")

_CLIENT_ERRORS = (
    StreamerInputError,
    InvalidKey,
    InputRejected,
    EntryIdError,
    KeyConflict,
    NotEmpty,
    GraphQLError,  # strawberry's permission refusals
)
"""Exceptions a resolver raises because of what the request asked. A lost streaming cache
(:class:`StreamUnavailable`, 503) is not the client's doing: a warning without traceback."""


def _spreads(node: Node) -> list[str]:
    """Names of the fragments spread directly in ``node`` (inline fragments looked into)."""
    found: list[str] = []
    pending = [node]
    while pending:
        selection_set = getattr(pending.pop(), "selection_set", None)
        for selection in selection_set.selections if selection_set is not None else ():
            if isinstance(selection, FragmentSpreadNode):
                found.append(selection.name.value)
            else:
                pending.append(selection)
    return found


def expanded_spreads(document: DocumentNode) -> int | None:
    """How many fragment spreads the operations expand to once every fragment is inlined
    (memoised per fragment, so linear in the document); None if fragments spread in a cycle."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    done: dict[str, int] = {}

    def count(names: list[str], visiting: frozenset[str]) -> int | None:
        total = 0
        for name in names:
            if name in visiting:
                return None
            if name not in done:
                if name not in fragments:
                    continue  # graphql-core's KnownFragmentNames reports it
                inner = count(_spreads(fragments[name]), visiting | {name})
                if inner is None:
                    return None
                done[name] = inner
            total += 1 + done[name]
            if total > MAX_FRAGMENT_SPREADS:  # stop early: only the verdict matters
                return total
        return total

    total = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            found = count(_spreads(definition), frozenset())
            if found is None:
                return None
            total += found
    return total


class _SpreadsFirst(SchemaExtension):
    """Refuses documents whose fragments expand to more than :data:`MAX_FRAGMENT_SPREADS`
    spreads (or spread in a cycle), before any validation rule runs.

    graphql-core builds every rule before visiting, and the alias and depth rules walk every
    expansion of every fragment in their constructors: exponential in nested fragments. So this
    linear count must refuse such documents before they are built.
    """

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None:
            spreads = expanded_spreads(document)
            if spreads is None or spreads > MAX_FRAGMENT_SPREADS:
                why = (
                    "Fragments must not spread themselves"
                    if spreads is None
                    else f"The fragments expand to more than {MAX_FRAGMENT_SPREADS} spreads"
                )
                # strawberry skips its own validation when errors are already set.
                context.pre_execution_errors = [GraphQLError(why)]
        yield


#: Factories: strawberry builds the extensions anew for every request.
EXTENSIONS: list[Callable[[], SchemaExtension]] = [
    partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
    _SpreadsFirst,
    partial(MaxAliasesLimiter, max_alias_count=MAX_ALIASES),
    partial(QueryDepthLimiter, max_depth=MAX_DEPTH),
]


def _is_client_error(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None:  # syntax, validation, limits: the document itself
        return True
    if error.path is None and isinstance(original, ValueError | TypeError):
        return True  # a variable's value that its type's parser refused
    if isinstance(original, ApiError):
        return original.status < 500
    return isinstance(original, _CLIENT_ERRORS)


class LimitedSchema(Schema):
    """strawberry's ``Schema`` with :data:`EXTENSIONS` and client errors logged quietly."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs, extensions=EXTENSIONS)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if _is_client_error(error):
                log.info("GraphQL request refused: %s", error.message)
            elif isinstance(error.original_error, StreamUnavailable | ApiError):
                log.warning("GraphQL request failed: %s", error.message)
            else:
                super().process_errors([error], execution_context)
