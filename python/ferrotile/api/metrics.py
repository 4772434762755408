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

from ferrotile import _core
from ferrotile.api.auth import Access
from ferrotile.api.common import require
from ferrotile.config import MULTIPROC_ENV
from ferrotile.state import AppState
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
#: Hub counters of the process-wide memory budget, as Prometheus counters.
BUDGET_COUNTERS = {
    "evicted_messages": "Stream messages evicted to keep within --cache-max-total-bytes",
    "evicted_bytes": "Bytes of stream messages evicted to keep within --cache-max-total-bytes",
}
#: Hub figures exposed as gauges.
HUB_GAUGES = {
    "max_total_bytes": "The memory budget of retained stream data (--cache-max-total-bytes)",
    "topics": "Streams this process holds (retained or subscribed)",
    "retained_messages": "Stream messages retained in this process for replay",
    "retained_bytes": "Bytes of stream messages retained in this process for replay",
    "subscribers": "Current stream subscribers of this process",
    "connected": "1 while the Redis reader is connected (Redis cache only)",
}

#: Totals of the edge's views per (stream, view), as Prometheus counters: Edge.take_stats() key,
#: metric name suffix, help.
VIEW_COUNTERS = {
    "computed": ("frames_computed", "Frames a view computed (once per frame for all viewers)"),
    "bytes_in": ("bytes_in", "Array bytes views read (before slice, bin, dtype and compression)"),
    "bytes_out": ("bytes_out", "Payload bytes views produced (after compression)"),
    "skipped": ("frames_skipped", "Frames max_fps left out (the newest frame wins)"),
}  # fmt: skip


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
        self.multi_connections = Gauge(
            "ferrotile_multi_connections",
            "Open WS /api/v1/stream/multi connections",
            multiprocess_mode="livesum",
        )
        self.multi_subscriptions = Gauge(
            "ferrotile_multi_subscriptions",
            "Subscriptions open on WS /api/v1/stream/multi connections",
            multiprocess_mode="livesum",
        )
        self.hub_gauges = {
            name: Gauge(f"ferrotile_stream_{name}", text, multiprocess_mode="livesum")
            for name, text in HUB_GAUGES.items()
        }
        self.hub_counters = {
            name: Counter(f"ferrotile_redis_{name}", text) for name, text in HUB_COUNTERS.items()
        } | {
            name: Counter(f"ferrotile_stream_{name}", text)
            for name, text in BUDGET_COUNTERS.items()
        }
        self._hub_seen: dict[str, int] = {}
        self.view_subscribers = Gauge(
            "ferrotile_stream_view_subscribers",
            "Subscribers per view of a stream (view '': max_fps without a view)",
            ["node", "view"],
            multiprocess_mode="livesum",
        )
        self.view_counters = {
            key: Counter(f"ferrotile_stream_view_{name}", text, ["node", "view"])
            for key, (name, text) in VIEW_COUNTERS.items()
        }
        self._view_seen: dict[tuple[str, str, str], int] = {}
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._streams: dict[int | None, Any] = {}
        #: Subscription lists of the open WebSocket connections (see ``access``).
        self.connections: set[int] = set()
        self.open_subscriptions: dict[int, list[Any]] = {}
        self._folded = [0, 0]  # dropped, missed of connections that closed
        self._reported = [0, 0]

    # -- hot paths: once per request / publish ------------------------------------------------

    def _request_children(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        return children

    def _stream_child(self, topic: int | None) -> Any:
        child = self._streams.get(topic)
        if child is None:
            label = str(topic) if len(self._streams) < MAX_STREAM_LABELS else "other"
            if topic is None:
                label = "other"  # the edge's streams past its own label cap
            elif topic == CONTROL_TOPIC:
                label = "control"  # cache invalidations between processes
            child = self._streams[topic] = self.publishes.labels(label)
        return child

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        counter, latency = self._request_children(method, route, status)
        counter.inc()
        latency.observe(seconds)

    def observe_publish(self, topic: int, messages: int, seconds: float) -> None:
        self._stream_child(topic).inc(messages)
        self.publish_seconds.observe(seconds)

    def add_edge(self, stats: dict[str, Any]) -> tuple[int, int, int]:
        """Add the edge's counts since the last call (``Edge.take_stats()``) to the same metric
        families; return its ``(dropped, missed, queue_bytes)`` totals and gauge."""
        for (method, route, status), (buckets, total) in stats["requests"].items():
            counter, latency = self._request_children(method, route, status)
            counter.inc(sum(buckets))
            _add_observations(latency, buckets, total)
        for route, count in stats["websockets"].items():
            self.websockets.labels(route).inc(count)
        for topic, count in stats["published"].items():
            self._stream_child(topic).inc(count)
        _add_observations(self.publish_seconds, *stats["publish_latency"])
        self.multi_connections.set(stats["multi_connections"])
        self.multi_subscriptions.set(stats["multi_subscriptions"])
        self._add_views(stats["views"])
        return stats["dropped"], stats["missed"], stats["queue_bytes"]

    def _add_views(self, views: list[dict[str, Any]]) -> None:
        """The edge's per-view totals (since it started) into counters, and its subscribers."""
        for row in views:
            node = "other" if row["node"] is None else str(row["node"])
            self.view_subscribers.labels(node, row["view"]).set(row["subscribers"])
            for key, counter in self.view_counters.items():
                seen_key = (key, node, row["view"])
                value, seen = row[key], self._view_seen.get(seen_key, 0)
                if value > seen:
                    counter.labels(node, row["view"]).inc(value - seen)
                self._view_seen[seen_key] = value

    # -- per connection -----------------------------------------------------------------------

    def connection_closed(self, key: int) -> None:
        for subscription in self.open_subscriptions.pop(key, ()):
            self._folded[0] += subscription.dropped
            self._folded[1] += subscription.missed

    # -- at scrape time -----------------------------------------------------------------------

    def refresh(self, hub: StreamHub | None, edge: _core.Edge | None = None) -> None:
        """Copy the hub's figures, the edge's counts and the open subscriptions' counters into
        the metrics."""
        dropped, missed, backlog = self._folded[0], self._folded[1], 0
        if edge is not None:
            edge_dropped, edge_missed, edge_backlog = self.add_edge(edge.take_stats())
            dropped, missed, backlog = dropped + edge_dropped, missed + edge_missed, edge_backlog
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


def _add_observations(histogram: Any, buckets: list[int], total: float) -> None:
    """Add observations counted elsewhere with the same bounds (:data:`LATENCY_BUCKETS`):
    ``prometheus_client`` keeps one value per bucket (not cumulative) and a sum, so adding the
    counts there is what observing each value would have done."""
    for value, count in zip(histogram._buckets, buckets, strict=False):
        if count:
            value.inc(count)
    if total:
        histogram._sum.inc(total)


_metrics: Metrics | None = None


def metrics() -> Metrics:
    """This process's metrics (created on first use, after the multiprocess directory is set)."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


async def refresh_forever(state: AppState) -> None:
    """Multiprocess mode: keep this worker's share of the gauges current for other scrapers."""
    while True:
        metrics().refresh(state.hub, state.edge)
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


def exposition(state: AppState) -> bytes:
    metrics().refresh(state.hub, state.edge)
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
    return Response(exposition(state), media_type=CONTENT_TYPE_LATEST)
