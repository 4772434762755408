"""GraphQL documents that cost too much are refused quickly, without stalling other requests,
and client errors are logged without a traceback (issue 18, items 4 and 11)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
import pytest
from graphql import GraphQLError, get_introspection_query

from ferrotile.api.graphql.limits import MAX_ALIASES, MAX_FRAGMENT_SPREADS, LimitedSchema
from ferrotile.api.graphql.schema import schema
from ferrotile.streamer.params import StreamerInputError
from tests.api.conftest import AUTH
from tests.conftest import RunningServer


def post(server: RunningServer, query: str, **extra: Any) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    response = httpx.post(
        f"{server.url}/graphql", json={"query": query, **extra}, headers=AUTH, timeout=120
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result, time.monotonic() - started


def aliases(n: int, field: str = "__typename") -> str:
    return "{" + " ".join(f"a{i}: {field}" for i in range(n)) + "}"


def doubling_fragments(levels: int) -> str:
    """Fragments spreading the next one twice: ``2**levels`` expansions in 2 * levels spreads."""
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels))
    return f"query {{ ...F0 }} {chain} fragment F{levels} on Query {{ streamIds }}"


def test_20000_aliases_are_refused_quickly_and_other_requests_go_on(
    server: RunningServer,
) -> None:
    """It took 37 s and held GET /api/v1/ up to 5.6 s; the parser now stops at the limit."""
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                started = time.monotonic()
                assert client.get(f"{server.url}/api/v1/").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for field in ("__typename", "streamIds"):
            result, elapsed = post(server, aliases(20_000, field))
            assert result["data"] is None
            assert "tokens" in result["errors"][0]["message"]
            assert elapsed < 2.0, f"{elapsed:.1f} s to refuse"
    finally:
        done.set()
        prober.join()
    assert latencies and max(latencies) < 1.5, f"GET /api/v1/ took up to {max(latencies):.1f} s"


def test_exponential_fragments_are_refused_quickly(server: RunningServer) -> None:
    # 40 spreads in the text, 2**20 once expanded: the validators took 13 s.
    result, elapsed = post(server, doubling_fragments(20))
    assert result["data"] is None
    assert f"more than {MAX_FRAGMENT_SPREADS} spreads" in result["errors"][0]["message"]
    assert elapsed < 2.0
    cycle = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }"
    result, _ = post(server, cycle)
    assert result["data"] is None and "spread themselves" in result["errors"][0]["message"]


def test_alias_limit_and_ordinary_documents(server: RunningServer) -> None:
    result, _ = post(server, aliases(MAX_ALIASES + 1))
    assert result["errors"][0]["message"] == f"{MAX_ALIASES + 1} aliases found. Allowed: 100"
    result, _ = post(server, aliases(MAX_ALIASES, "streamIds"))
    assert "errors" not in result and len(result["data"]) == MAX_ALIASES
    result, _ = post(server, get_introspection_query(descriptions=True))  # what GraphiQL sends
    assert "errors" not in result and result["data"]["__schema"]["queryType"]["name"] == "Query"
    result, _ = post(server, doubling_fragments(4))  # 2 + 4 + 8 + 16 = 30 spreads
    assert "errors" not in result and isinstance(result["data"]["streamIds"], list)


def test_client_errors_leave_no_traceback(server: RunningServer) -> None:
    logged = len(server.logs())
    bad = [
        "{ nope }",  # validation
        "{ streamIds(",  # syntax
        'mutation { connectDevice(deviceId: ":reserved", meta: {}) }',  # a resolver's refusal
        "{ stream(id: 5) { id } }",  # an argument of the wrong type
    ]
    for query in bad:
        result, _ = post(server, query)
        assert result["errors"], query
    wrong_variable = "query($b: Boolean!) { devices(includeAll: $b) { id } }"
    result, _ = post(server, wrong_variable, variables={"b": "yes"})
    assert "Boolean" in result["errors"][0]["message"]
    time.sleep(0.2)
    new_log = server.logs()[logged:]
    assert "Traceback" not in new_log and "ERROR" not in new_log, new_log


def _resolver_error(original: Exception) -> GraphQLError:
    return GraphQLError(str(original), path=["field"], original_error=original)


def test_server_errors_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(schema, LimitedSchema)
    caplog.set_level(logging.INFO)
    try:
        raise RuntimeError("a bug")
    except RuntimeError as exc:
        bug = exc
    schema.process_errors(
        [_resolver_error(bug), _resolver_error(StreamerInputError("bad id")), GraphQLError("x")]
    )
    by_level = {record.levelno: record for record in caplog.records}
    assert by_level[logging.ERROR].exc_info is not None  # the bug: ERROR with its traceback
    assert "a bug" in by_level[logging.ERROR].getMessage()
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert [r.exc_info for r in infos] == [None, None]
    assert "bad id" in infos[0].getMessage()
