"""``--cache-max-total-bytes``: one memory budget for the stream data a server process retains,
over all nodes; what it evicts is reported to subscribers that asked (``notify_gaps``)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.api.conftest import AUTH, create_array
from tests.api.test_metrics import samples
from tests.api.test_websocket import put, recv, ws
from tests.conftest import RunningServer, start_server, stop_server

BUDGET = 400_000


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("budget"), "--cache-max-total-bytes", str(BUDGET)
    )
    yield running
    stop_server(running)


def test_retained_stream_bytes_stay_within_the_budget(budgeted: RunningServer) -> None:
    keys = [f"b{time.monotonic_ns()}x{i}" for i in range(16)]
    frame = np.arange(2048, dtype="<f8")  # 16 KiB per write
    with httpx.Client(base_url=f"{budgeted.url}/api/v1", headers=AUTH, timeout=10) as http:
        for key in keys:
            create_array(http, key, frame)
        for _ in range(10):
            for key in keys:
                assert put(http, key, frame).status_code == 200
    # 16 nodes x 11 writes x 16 KiB = 2.9 MB went through; the process kept at most the budget.
    figures = samples(budgeted)
    retained = figures["ferrotile_stream_retained_bytes"]
    assert 0 < retained <= BUDGET
    assert figures["ferrotile_stream_max_total_bytes"] == BUDGET
    assert figures["ferrotile_stream_evicted_messages_total"] > 0
    assert figures["ferrotile_stream_evicted_bytes_total"] >= retained
    # The first node lost its oldest writes to the budget: a replay from 1 is told why.
    with ws(budgeted, keys[0], "envelope_format=json&start=1&notify_gaps=true") as conn:
        assert recv(conn)["type"] == "array-schema"
        notice = recv(conn)
        assert (notice["type"], notice["reason"], notice["missed_from"]) == (
            "stream-gap",
            "evicted",
            1,
        )
        assert recv(conn)["sequence"] == notice["missed_to"] + 1
