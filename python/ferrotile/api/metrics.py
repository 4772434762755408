"""``GET /api/v1/metrics``: Prometheus metrics of this server process (``prometheus_client``).

What costs what:

* per HTTP request: one counter and one histogram update (:mod:`ferrotile.api.access`);
* per WebSocket connection: one counter update when it opens, one fold of its subscriptions'
  ``dropped``/``missed`` counters when it closes;
* per publish call (one per write request, or per pushed batch): one counter and one histogram
  update (:meth:`Metrics.observe_publish`, the hub's ``observer``); never anything per frame
  or per subscriber;
* at scrape time: the hub's own counters (``StreamHub.stats()``) and the live subscriptions'
  backlog are read and copied into gauges/counters.

Several Granian workers of one process (``--workers N``) use ``prometheus_client``'s
multiprocess mode: ``ferrotile serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory before the workers start, counters and histograms are summed over the workers, and
each worker copies its hub figures into ``livesum`` gauges every :data:`REFRESH_INTERVAL`
seconds. Several processes (containers) are scraped one by one, as usual with Prometheus.

The endpoint needs read access, like every other route (the API key, or nothing with
``--public``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api.auth import Access
from ferrotile.api.common import require
from ferrotile.config import MULTIPROC_ENV
from ferrotile.streaming.hub import CONTROL_TOPIC, StreamHub

#: Seconds between a worker's copies of its hub figures into the shared gauges (multiprocess).
REFRESH_INTERVAL = 2.0
#: Streams counted under their own ``node`` label; publishes to further streams are counted
#: under ``node="other"`` so that the number of series stays bounded.
MAX_STREAM_LABELS = 1000
#: Latency buckets (seconds): the server answers small requests in tens of microseconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
#: ``route`` label values: the first path segment after ``/api/v1/`` (anything else: "other").
ROUTES = frozenset(
    {
        "metadata", "register", "data_source", "revisions", "search", "array", "awkward",
        "table", "node", "stream", "metrics", "data", "container", "auth",
    }
)  # fmt: skip
#: Hub counters (``StreamHub.stats()``) exposed as Prometheus counters, and their help.
HUB_COUNTERS = {
    "received": "Stream messages this process's Redis reader received",
    "reconnects": "Times this process's Redis reader reconnected",
    "epoch_changes": "Stream history resets seen (e.g. Redis flushed)",
    "gap_fills": "Gaps in the Redis stream the reader filled by reading back",
    "bad_messages": "Malformed stream messages skipped by the Redis reader",
}
#: Hub figures exposed as gauges.
HUB_GAUGES = {
    "topics": "Streams this process holds (retained or subscribed)",
    "retained_messages": "Stream messages retained in this process for replay",
    "retained_bytes": "Bytes of stream messages retained in this process for replay",
    "subscribers": "Current stream subscribers of this process",
    "connected": "1 while the Redis reader is connected (Redis cache only)",
}


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """The metric objects of this process (one instance per process, see :func:`metrics`)."""

    def __init__(self) -> None:
        self.requests = Counter(
            "ferrotile_http_requests", "HTTP requests answered", ["method", "route", "status"]
        )
        self.latency = Histogram(
            "ferrotile_http_request_duration_seconds",
            "Time from request to the end of the response",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
        )
        self.websockets = Counter(
            "ferrotile_websocket_connections", "WebSocket connections opened", ["route"]
        )
        self.publishes = Counter(
            "ferrotile_stream_published_messages",
            "Messages published to streams (per node id; 'other' past the label cap)",
            ["node"],
        )
        self.publish_seconds = Histogram(
            "ferrotile_stream_publish_seconds",
            "Time of one publish call (with Redis: the round trip of its pipelined write)",
            buckets=LATENCY_BUCKETS,
        )
        self.dropped = Counter(
            "ferrotile_subscriber_dropped_messages",
            "Messages dropped by subscribers' overflow policies (max_queue_bytes, latest)",
        )
        self.missed = Counter(
            "ferrotile_subscriber_missed_messages",
            "Messages subscribers skipped because they were no longer retained",
        )
        self.queue_bytes = Gauge(
            "ferrotile_subscriber_queue_bytes",
            "Envelope bytes waiting for current subscribers (behind the stream head)",
            multiprocess_mode="livesum",
        )
        self.hub_gauges = {
            name: Gauge(f"ferrotile_stream_{name}", text, multiprocess_mode="livesum")
            for name, text in HUB_GAUGES.items()
        }
        self.hub_counters = {
            name: Counter(f"ferrotile_redis_{name}", text) for name, text in HUB_COUNTERS.items()
        }
        self._hub_seen: dict[str, int] = {}
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._streams: dict[int, Any] = {}
        #: Subscription lists of the open WebSocket connections (see ``access``).
        self.connections: set[int] = set()
        self.open_subscriptions: dict[int, list[Any]] = {}
        self._folded = [0, 0]  # dropped, missed of connections that closed
        self._reported = [0, 0]

    # -- hot paths: once per request / publish ------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_publish(self, topic: int, messages: int, seconds: float) -> None:
        child = self._streams.get(topic)
        if child is None:
            label = str(topic) if len(self._streams) < MAX_STREAM_LABELS else "other"
            if topic == CONTROL_TOPIC:
                label = "control"  # cache invalidations between processes
            child = self._streams[topic] = self.publishes.labels(label)
        child.inc(messages)
        self.publish_seconds.observe(seconds)

    # -- per connection -----------------------------------------------------------------------

    def connection_closed(self, key: int) -> None:
        for subscription in self.open_subscriptions.pop(key, ()):
            self._folded[0] += subscription.dropped
            self._folded[1] += subscription.missed

    # -- at scrape time -----------------------------------------------------------------------

    def refresh(self, hub: StreamHub | None) -> None:
        """Copy the hub's figures and the open subscriptions' counters into the metrics."""
        dropped, missed, backlog = self._folded[0], self._folded[1], 0
        for subscriptions in self.open_subscriptions.values():
            for subscription in subscriptions:
                dropped += subscription.dropped
                missed += subscription.missed
                backlog += getattr(subscription, "backlog_bytes", 0)
        for i, (value, counter) in enumerate(((dropped, self.dropped), (missed, self.missed))):
            if value > self._reported[i]:
                counter.inc(value - self._reported[i])
                self._reported[i] = value
        self.queue_bytes.set(backlog)
        stats = hub.stats() if hub is not None else {}
        for name, gauge in self.hub_gauges.items():
            gauge.set(stats.get(name, 0))
        for name, counter in self.hub_counters.items():
            value, seen = stats.get(name, 0), self._hub_seen.get(name, 0)
            if value > seen:
                counter.inc(value - seen)
            self._hub_seen[name] = value


_metrics: Metrics | None = None


def metrics() -> Metrics:
    """This process's metrics (created on first use, after the multiprocess directory is set)."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


async def refresh_forever(hub: StreamHub | None) -> None:
    """Multiprocess mode: keep this worker's share of the gauges current for other scrapers."""
    while True:
        metrics().refresh(hub)
        await asyncio.sleep(REFRESH_INTERVAL)


_LIVE_FILE = re.compile(r"gauge_live\w*_(\d+)\.db$")


def _forget_dead_workers(directory: Path) -> None:
    """Drop the live gauges of workers that exited (Granian respawns without telling us)."""
    for pid in {int(m.group(1)) for p in directory.iterdir() if (m := _LIVE_FILE.match(p.name))}:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(directory))
        except PermissionError:
            pass


def exposition(hub: StreamHub | None) -> bytes:
    metrics().refresh(hub)
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return generate_latest(REGISTRY)
    with contextlib.suppress(OSError):
        _forget_dead_workers(Path(directory))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


async def get_metrics(request: Request) -> Response:
    state = require(request, Access.READ)
    return Response(exposition(state.hub), media_type=CONTENT_TYPE_LATEST)
