"""A real server (SQLite catalog, in-process hub) and Debian's Chromium driven by Playwright
(``executable_path``: no browser download; ``make system-deps`` installs the package)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="package")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("live"))
    yield running
    stop_server(running)


@pytest.fixture(scope="package")
def public_live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("live-public"), "--public")
    yield running
    stop_server(running)


@pytest.fixture
def http(live_server: RunningServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Apikey {live_server.api_key}"}
    with httpx.Client(base_url=f"{live_server.url}/api/v1", headers=headers, timeout=10) as c:
        yield c


# Package scope, not session: Playwright's sync API runs an event loop in the main thread
# until it stops, and later tests' asyncio.run() would refuse to start under it.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root (containers), where Chromium's sandbox refuses.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab in a fresh context (empty sessionStorage and cookies)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    yield tab
    context.close()
