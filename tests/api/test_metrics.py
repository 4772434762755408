"""``GET /api/v1/metrics``: Prometheus text that changes with requests and publishes."""

from __future__ import annotations

import httpx
import numpy as np

from tests.api.conftest import array_body
from tests.conftest import RunningServer

AUTH = {"Authorization": "Apikey secret"}
OCTET = {"Content-Type": "application/octet-stream"}


def samples(server: RunningServer) -> dict[str, float]:
    response = httpx.get(f"{server.url}/api/v1/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_follow_requests_and_publishes(server: RunningServer, key: str) -> None:
    before = samples(server)
    with httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH) as http:
        assert http.post("/metadata/", json=array_body(key, np.zeros(3, "<i8"))).status_code == 200
        for i in range(4):
            body = np.full(3, i, "<i8").tobytes()
            assert http.put(f"/array/full/{key}", content=body, headers=OCTET).status_code == 200
        assert http.get("/metadata/nope").status_code == 404
    after = samples(server)
    put = 'ferrotile_http_requests_total{method="PUT",route="array",status="200"}'
    missing = 'ferrotile_http_requests_total{method="GET",route="metadata",status="404"}'
    assert after[put] - before.get(put, 0) == 4
    assert after[missing] - before.get(missing, 0) == 1
    latency = 'ferrotile_http_request_duration_seconds_count{method="PUT",route="array"}'
    assert after[latency] - before.get(latency, 0) == 4
    published = "ferrotile_stream_publish_seconds_count"
    # Four writes to the array and one container-child-created to the root's subscribers.
    assert after[published] - before.get(published, 0) == 5
    root = 'ferrotile_stream_published_messages_total{node="0"}'
    assert after[root] - before.get(root, 0) == 1
    assert "ferrotile_stream_subscribers" in after and "ferrotile_subscriber_queue_bytes" in after


def test_metrics_need_read_access(server: RunningServer, public_server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/api/v1/metrics").status_code == 401
    assert httpx.get(f"{public_server.url}/api/v1/metrics").status_code == 200
