"""Two ferrotile processes (``ferrotile serve config``) behind Debian's HAProxy, sharing a private
Redis, a private PostgreSQL (catalog and table storage in separate databases) and one data
directory: they behave as one server, and the loss of one is survived by stock tiled clients.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from tiled.client import from_uri
from websockets.sync.client import connect

from tests.api.conftest import array_body
from tests.conftest import API_KEY, needs_redis_hub
from tests.integration.haproxy_cluster import Cluster, haproxy_binary, start_cluster

pytestmark = [
    pytest.mark.haproxy,
    needs_redis_hub,
    pytest.mark.skipif(haproxy_binary() is None, reason="haproxy not installed (make system-deps)"),
]

AUTH = {"Authorization": f"Apikey {API_KEY}"}
OCTET = {"Content-Type": "application/octet-stream"}
SUBSCRIBERS = 6
BEFORE_KILL, AFTER_KILL = 20, 40
WS_OPENED = 'ferrotile_websocket_connections_total{route="stream"}'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[Cluster]:
    from tests import redis as rd

    redis = rd.start()  # its own: members of other tests' deployments must not meet ours
    running = None
    try:
        running = start_cluster(
            tmp_path_factory.mktemp("haproxy"),
            redis_url=redis.url,
            catalog=postgres.new_database(),
            tables=postgres.new_database(),
        )
        yield running
    finally:
        if running is not None:
            running.stop()
        redis.close()


def http(url: str) -> httpx.Client:
    return httpx.Client(base_url=f"{url}/api/v1", headers=AUTH, timeout=10)


def metric(url: str, name: str) -> float:
    """The value of a sample (``name{labels}``) on one process's /api/v1/metrics."""
    with http(url) as client:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics of {url}")


def replay(url: str, key: str, start: int = 1) -> list[tuple[int, int]]:
    """``(sequence, first value)`` of every message of a closed stream, read until its close."""
    ws_url = url.replace("http://", "ws://") + f"/api/v1/stream/single/{key}"
    got = []
    with connect(
        f"{ws_url}?envelope_format=msgpack&start={start}", additional_headers=AUTH
    ) as conn:
        assert msgpack.unpackb(conn.recv(timeout=10))["type"] == "array-schema"
        for raw in conn:
            message = msgpack.unpackb(raw)
            got.append((message["sequence"], int(np.frombuffer(message["payload"], "<i8")[0])))
    return got


def test_processes_behave_as_one_server(cluster: Cluster, key: str) -> None:
    p1, p2 = (node.url for node in cluster.nodes)
    with http(p1) as one, http(p2) as two:
        assert one.post("/metadata/", json=array_body(key, np.zeros(4, "<i8"))).status_code == 200
        # Visible through the other process; its structure is cached there now.
        assert two.get(f"/metadata/{key}").json()["data"]["attributes"]["structure"]["shape"] == [4]
        ws = connect(
            f"{p2.replace('http', 'ws')}/api/v1/stream/single/{key}?envelope_format=msgpack",
            additional_headers=AUTH,
        )
        with ws:
            assert msgpack.unpackb(ws.recv(timeout=10))["type"] == "array-schema"
            for i in (1, 2, 3):
                body = np.full(4, i, "<i8").tobytes()
                assert one.put(f"/array/full/{key}", content=body, headers=OCTET).status_code == 200
            live = [msgpack.unpackb(ws.recv(timeout=10)) for _ in range(3)]
        assert [(m["sequence"], m["payload"][0]) for m in live] == [(1, 1), (2, 2), (3, 3)]
        # A structure change through p1 is seen through p2 as soon as p2 has read p1's
        # invalidation from Redis (docs/api.md: p1 answers once its own copy came back; p2
        # evicts when its reader gets there, a moment later under load).
        patch = np.full(2, 9, "<i8").tobytes()
        grow = {"offset": "4", "shape": "2", "extend": "true"}
        response = one.patch(f"/array/full/{key}", params=grow, content=patch, headers=OCTET)
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 2
        while (
            shape := two.get(f"/metadata/{key}").json()["data"]["attributes"]["structure"]["shape"]
        ) != [6]:
            assert shape == [4] and time.monotonic() < deadline, shape
            time.sleep(0.02)
        got = two.get(f"/array/full/{key}", headers={"Accept": "application/octet-stream"})
        assert np.frombuffer(got.content, "<i8").tolist() == [3, 3, 3, 3, 9, 9]
        assert one.delete(f"/stream/close/{key}").status_code == 200
    # Replay of the whole stream works through either process and through HAProxy.
    expected = [(1, 1), (2, 2), (3, 3), (4, 9)]
    for url in (p1, p2, cluster.url):
        assert replay(url, key) == expected
    with http(p1) as one, http(p2) as two:
        assert one.delete(f"/metadata/{key}", params={"external_only": "false"}).status_code == 200
        assert two.get(f"/metadata/{key}").status_code == 404


def test_metrics_count_requests_and_publishes(cluster: Cluster, key: str) -> None:
    url = cluster.nodes[0].url
    with http(url) as client:
        before = client.get("/metrics").text
        assert (
            client.post("/metadata/", json=array_body(key, np.zeros(2, "<i8"))).status_code == 200
        )
        for i in range(5):
            body = np.full(2, i, "<i8").tobytes()
            assert client.put(f"/array/full/{key}", content=body, headers=OCTET).status_code == 200
        after = client.get("/metrics").text
    put_line = 'ferrotile_http_requests_total{method="PUT",route="array",status="200"}'

    def value(text: str, prefix: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].split()[-1]) if lines else 0.0

    assert value(after, put_line) - value(before, put_line) == 5
    published = "ferrotile_stream_publish_seconds_count"
    assert value(after, published) - value(before, published) >= 5
    assert httpx.get(f"{url}/api/v1/metrics").status_code == 401  # read scope, like every route


class Collector:
    """A stock tiled subscriber that records ``(sequence, first value)`` of every update."""

    def __init__(self, node: Any) -> None:
        self.got: list[tuple[int, int]] = []
        self.closed = threading.Event()
        self.subscription = node.subscribe()
        self.subscription.new_data.add_callback(self.on_data)
        self.subscription.stream_closed.add_callback(self.on_closed)

    def on_data(self, update: Any) -> None:
        self.got.append((update.sequence, int(update.data()[0])))

    def on_closed(self, subscription: Any) -> None:
        self.closed.set()


def subscribers_of(url: str) -> int:
    """Stream subscribers of one process, without its cache-invalidation listener."""
    return int(metric(url, "ferrotile_stream_subscribers")) - 1


def test_killed_process_is_survived_by_stock_clients(cluster: Cluster, key: str) -> None:
    victim, survivor = cluster.nodes
    client = from_uri(cluster.url, api_key=API_KEY)
    array = client.write_array(np.zeros(4, "<i8"), key=key)
    collectors = [Collector(client[key]) for _ in range(SUBSCRIBERS)]
    for collector in collectors:
        collector.subscription.start_in_thread(1)
    try:
        # leastconn spreads the sockets over both processes: some subscribers must resume.
        on_victim = subscribers_of(victim.url)
        assert on_victim >= 1 and subscribers_of(survivor.url) >= 1
        opened = metric(survivor.url, WS_OPENED)
        for i in range(1, BEFORE_KILL + 1):
            array.write(np.full(4, i, "<i8"))
        victim.kill()
        for i in range(BEFORE_KILL + 1, BEFORE_KILL + AFTER_KILL + 1):
            array.write(np.full(4, i, "<i8"))  # retried by the client if its socket was cut
        array.close_stream()
        # The victim's subscribers reconnected, through HAProxy, to the survivor.
        assert metric(survivor.url, WS_OPENED) >= opened + on_victim
        deadline = time.monotonic() + 60
        for collector in collectors:
            assert collector.closed.wait(max(0.1, deadline - time.monotonic()))
    finally:
        for collector in collectors:
            collector.subscription.disconnect()
    authoritative = replay(cluster.url, key)
    sequences = [seq for seq, _ in authoritative]
    assert sequences == list(range(1, len(authoritative) + 1))
    values = [value for _, value in authoritative]
    # Every write (0: write_array's own) is there, in order; a write retried after the kill
    # may appear twice in a row.
    assert sorted(set(values)) == list(range(BEFORE_KILL + AFTER_KILL + 1))
    assert values == sorted(values)
    for collector in collectors:
        assert collector.got == authoritative  # no gap, no duplicate, every subscriber

    # The restarted process rejoins: HAProxy puts it back, it serves what was written meanwhile.
    cluster.wait_status(victim.name, "DOWN")
    victim.start()
    cluster.wait_status(victim.name, "UP")
    with http(victim.url) as direct:
        got = direct.get(f"/array/full/{key}", headers={"Accept": "application/octet-stream"})
        assert np.frombuffer(got.content, "<i8").tolist() == [BEFORE_KILL + AFTER_KILL] * 4
    assert replay(victim.url, key) == authoritative


def test_compose_file_validates(tmp_path: Path) -> None:
    import shutil
    import subprocess

    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client")
    if subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker client has no compose plugin")
    compose = Path(__file__).resolve().parents[2] / "deploy" / "compose.yml"
    result = subprocess.run(
        [docker, "compose", "-f", str(compose), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "FERROTILE_API_KEY": "k", "POSTGRES_PASSWORD": "p"},
    )
    assert result.returncode == 0, result.stderr
