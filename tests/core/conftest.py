"""Fixtures of the native hub's tests: every test that takes ``hubs`` runs once per backend
(ids ``[memory]`` and ``[redis]``), on a pair of hubs that act as two worker processes: the
same hub twice in process, two hubs on the session's private Redis (under a fresh key prefix)
otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ferrotile import _core
from tests.core.helpers import MakeHubs, connected, prefix

BACKENDS = ["memory", "redis"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def hubs(backend: str, request: pytest.FixtureRequest) -> Iterator[MakeHubs]:
    url: str = request.getfixturevalue("redis_url") if backend == "redis" else "memory"
    made: list[_core.Hub] = []

    async def make(**options: Any) -> tuple[_core.Hub, _core.Hub]:
        if backend == "memory":
            hub = _core.Hub(**options)
            made.append(hub)
            return hub, hub
        options.setdefault("key_prefix", prefix())
        pair = (await connected(url, **options), await connected(url, **options))
        made.extend(pair)
        return pair

    yield make
    for hub in made:
        hub.shutdown()
