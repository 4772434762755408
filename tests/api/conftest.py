"""Raw HTTP / WebSocket helpers for protocol-level tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.conftest import RunningServer

AUTH = {"Authorization": "Apikey secret"}


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=10) as client:
        yield client


def array_body(key: str, array: np.ndarray, chunks: list[list[int]] | None = None) -> dict:
    """A POST /metadata body for a writable array, as the stock client sends it."""
    import dataclasses
    import json

    from tiled.structures.array import BuiltinDtype

    dtype = BuiltinDtype.from_numpy_dtype(array.dtype)
    data_type = json.loads(json.dumps(dataclasses.asdict(dtype)))
    return {
        "id": key,
        "structure_family": "array",
        "metadata": {},
        "specs": [],
        "access_tags": None,
        "data_sources": [
            {
                "structure_family": "array",
                "structure": {
                    "data_type": data_type,
                    "chunks": chunks or [[n] for n in array.shape],
                    "shape": list(array.shape),
                    "dims": None,
                    "resizable": False,
                },
                "id": None,
                "mimetype": None,
                "parameters": {},
                "properties": {},
                "assets": [],
                "management": "writable",
            }
        ],
    }


def create_array(http: httpx.Client, key: str, array: np.ndarray, parent: str = "") -> None:
    response = http.post(f"/metadata/{parent}", json=array_body(key, array))
    assert response.status_code == 200, response.text
    response = http.put(
        f"/array/full/{parent}/{key}",
        content=array.tobytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
