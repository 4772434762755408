"""Servers with several Granian workers sharing a private Redis (``--cache redis://``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import CATALOGS, RunningServer, _catalog_uri, start_server, stop_server

AUTH = {"Authorization": "Apikey secret"}
WORKERS = 2


@pytest.fixture(scope="session", params=CATALOGS)
def redis_workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[RunningServer]:
    """``--cache redis://... --workers 2`` on one port (SQLite file or PostgreSQL catalog).

    Each catalog gets its own Redis database: stream keys are node ids, which two catalogs share.
    """
    db = CATALOGS.index(request.param)
    running = start_server(
        tmp_path_factory.mktemp("redis-workers"),
        "--cache", f"{redis_url}/{db}", "--workers", str(WORKERS),
        catalog=_catalog_uri(request),
    )  # fmt: skip
    yield running
    stop_server(running)


def fresh(server: RunningServer) -> httpx.Client:
    """A client that opens a new connection per request, so requests spread over the workers."""
    return httpx.Client(
        base_url=f"{server.url}/api/v1",
        headers={**AUTH, "Connection": "close"},
        limits=httpx.Limits(max_keepalive_connections=0),
        timeout=10,
    )


@pytest.fixture
def http(redis_workers: RunningServer) -> Iterator[httpx.Client]:
    with fresh(redis_workers) as client:
        yield client


@pytest.fixture
def client(redis_workers: RunningServer) -> Any:
    """The stock tiled client, for the tutorial tests run against the Redis backend."""
    from tiled.client import from_uri

    return from_uri(redis_workers.url, api_key=redis_workers.api_key)
