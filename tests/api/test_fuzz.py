"""Fuzzing in the suite (issue 18): schemathesis generates valid and invalid requests for every
operation of ferrotile's own ``/openapi.json`` and every field of ``/graphql``; no answer may be
a 5xx. Bounded and deterministic: a few examples per operation and mode (derandomized, so a
failure reproduces), against a server of its own (the fuzzer deletes and creates nodes).
Regression tests of what it found live in ``test_hostile.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import graphql
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.graphql import nodes

from tests.api.conftest import AUTH
from tests.conftest import RunningServer, start_server, stop_server

OPENAPI_EXAMPLES = 20
"""Per operation and mode: about 45 s for the ~50 operations on a shared 2-core machine."""
GRAPHQL_EXAMPLES = 50

# Bodies of these types are bytes on the wire, as application/octet-stream's are.
schemathesis.serializer.alias(
    ["application/vnd.apache.arrow.file", "application/zip", "application/x-hdf5"],
    "application/octet-stream",
)


def _json_object(fields: dict[str, Any]) -> Any:
    return nodes.Object(
        [
            graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v)
            for k, v in fields.items()
        ]
    )


_JSON_LEAVES = st.one_of(
    st.text(max_size=20).map(nodes.String),
    st.integers().map(nodes.Int),
    st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
    st.booleans().map(nodes.Boolean),
    st.just(nodes.Null),
)
schemathesis.graphql.scalar(
    "JSON",
    st.recursive(
        _JSON_LEAVES,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(nodes.List),
            st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), inner, max_size=3).map(
                _json_object
            ),
        ),
        max_leaves=8,
    ),
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("fuzzed"))
    yield running
    stop_server(running)


def server_errors(schema: Any, base_url: str, examples: int) -> list[str]:
    """Every 5xx answer to the generated requests, as ``operation status detail``."""
    found: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _fuzz(operation, mode, base_url, examples, found)
            try:
                run()
            except Unsatisfiable:  # nothing invalid to generate (e.g. no parameters at all)
                assert mode is GenerationMode.NEGATIVE, operation.label
    return found


def _fuzz(
    operation: Any, mode: GenerationMode, base_url: str, examples: int, found: list[str]
) -> Callable[[], None]:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case: Any) -> None:
        if isinstance(case.query, dict) and str(case.query.get("block")) in ("0", "0.0"):
            case.query["block"] = 1  # a Redis Streamer read that waits forever, by design
        response = case.call(base_url=base_url, headers=AUTH, timeout=30)
        if response.status_code >= 500:
            found.append(
                f"{operation.label} ({mode.value}): {response.status_code} {response.text}"
            )

    return run


@pytest.mark.timeout(240)
def test_openapi_operations_never_answer_5xx(fuzzed: RunningServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [r.ok().label for r in schema.get_all_operations()]
    assert "PUT /api/v1/array/full/{path}" in operations and len(operations) > 40
    errors = server_errors(schema, fuzzed.url, OPENAPI_EXAMPLES)
    assert errors == [], "\n".join(errors[:20])


@pytest.mark.timeout(240)
def test_graphql_fields_never_answer_5xx(fuzzed: RunningServer) -> None:
    schema = schemathesis.graphql.from_url(f"{fuzzed.url}/graphql", headers=AUTH)
    fields = [r.ok().label for r in schema.get_all_operations()]
    assert "Query.streams" in fields and "Mutation.connectDevice" in fields
    errors = server_errors(schema, fuzzed.url, GRAPHQL_EXAMPLES)
    assert errors == [], "\n".join(errors[:20])
