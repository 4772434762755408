"""Redis Streamer API tests: the real server, raw HTTP/WebSocket clients."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningServer

AUTH = {"Authorization": "Apikey secret"}


@pytest.fixture
def root(server: RunningServer) -> Iterator[httpx.Client]:
    """An authenticated client at the server's root (``/data``, ``/graphql``)."""
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as client:
        yield client
