"""The embedded server: the stock client connects with ``server.uri`` and streaming works."""

from __future__ import annotations

import numpy as np
from tiled.client import from_uri

from ferrotile import SimpleServer
from tests.compat.conftest import Collector


def test_simple_server_with_a_subscription() -> None:
    with SimpleServer() as server:
        assert server.uri.startswith(f"http://127.0.0.1:{server.port}/api/v1?api_key=")
        client = from_uri(server.uri)
        x = client.write_array(np.arange(3), key="x")
        updates = Collector()
        sub = x.subscribe()
        sub.new_data.add_callback(updates)
        sub.start_in_thread(0)
        try:
            x.patch(np.array([3, 4]), offset=3, extend=True)
            first, second = updates.take(2)
            np.testing.assert_array_equal(first.data(), [0, 1, 2])
            np.testing.assert_array_equal(second.data(), [3, 4])
            np.testing.assert_array_equal(client["x"].read(), [0, 1, 2, 3, 4])
        finally:
            sub.disconnect()
        directory = server.directory
    assert not directory.exists()


def test_simple_server_keeps_a_given_directory(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path)) / "store"
    with SimpleServer(directory=root, api_key="k123") as server:
        from_uri(server.uri).write_array(np.arange(4), key="kept")
    with SimpleServer(directory=root, api_key="k123") as server:
        np.testing.assert_array_equal(from_uri(server.uri)["kept"].read(), np.arange(4))
    assert (root / "catalog.db").exists()
