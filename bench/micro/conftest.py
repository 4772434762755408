"""Fixtures of the Python-visible micro-benchmarks: one event loop for the module, and the real
ASGI application (SQLite catalog in a temporary directory, in-process hub) with its lifespan
entered, called directly with ASGI messages (no server, no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferrotile.app import build_app
from ferrotile.config import Settings
from ferrotile.server import prepare_catalog

API_KEY = "secret"


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture(scope="module")
def app(loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    directory: Path = tmp_path_factory.mktemp("micro")
    settings = Settings(
        catalog_uri=f"sqlite:///{directory / 'catalog.db'}",
        api_key=API_KEY,
        writable=(directory / "data",),
    )
    (directory / "data").mkdir()
    prepare_catalog(settings, init=True)
    application = build_app(settings)
    lifespan = application.router.lifespan_context(application)
    loop.run_until_complete(lifespan.__aenter__())
    try:
        yield application
    finally:
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
