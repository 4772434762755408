"""Stock ``tiled`` client (PyPI 0.2.20) fixtures."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

import pytest
from tiled.client import from_uri

from tests.conftest import RunningServer

TIMEOUT = 10.0


@pytest.fixture
def client(server: RunningServer) -> Any:
    return from_uri(server.url, api_key=server.api_key)


class Collector:
    """Collects callback arguments; a bound method survives tiled's weak-reference registries."""

    def __init__(self) -> None:
        self.items: queue.Queue[Any] = queue.Queue()

    def __call__(self, update: Any) -> None:
        self.items.put(update)

    def get(self, timeout: float = TIMEOUT) -> Any:
        return self.items.get(timeout=timeout)

    def take(self, n: int, timeout: float = TIMEOUT) -> list[Any]:
        return [self.get(timeout) for _ in range(n)]

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = TIMEOUT) -> Any:
        while True:
            update = self.get(timeout)
            if predicate(update):
                return update

    def empty_after(self, seconds: float) -> bool:
        try:
            self.items.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


@pytest.fixture
def collector() -> Collector:
    return Collector()
