"""Throughput through HAProxy with 1 and 2 ferrotile processes, against one process directly.

Scenarios (rows, bench protocol of the common brief):

* ``D1`` HTTP ``GET /api/v1/`` requests/s;
* ``D2`` stream-only ``PUT /array/full?persist=false`` requests/s (one message each);
* ``D3`` fan-out: one writer, subscribers spread over the processes (through HAProxy),
  delivered frames/s with loss, duplicate and gap counts.

Targets: ``ferrotile direct 1p`` (no HAProxy), ``ferrotile haproxy 1p``, ``ferrotile haproxy 2p``;
every process streams through a private Redis and shares a SQLite catalog (one host). Drivers
are Python (``httpx`` in ``--clients`` processes, ``websockets`` threads), so on a small
machine they compete with the servers for CPU: compare targets with each other, not with
the Rust load generator's numbers.

    python bench/haproxy_bench.py --quick --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_PROXY", "127.0.0.1")

import httpx  # noqa: E402
import msgpack  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
from tests.integration.haproxy_cluster import Cluster, start_cluster  # noqa: E402
from tests.redis import RedisServer  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

AUTH = {"Authorization": "Apikey secret"}
OCTET = {"Content-Type": "application/octet-stream"}
CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK
    return total


def process_tree(pids: list[int]) -> list[int]:
    out = list(pids)
    for pid in pids:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        out += [int(p) for p in children.stdout.split()]
    return out


def _http_loop(args: tuple[str, str, str, int, float]) -> int:
    method, url, path, count, deadline = args
    body = np.arange(16, dtype="<i8").tobytes()
    done = 0
    with httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        while done < count and time.time() < deadline:
            if method == "GET":
                response = client.get(path)
            else:
                response = client.put(path, content=body, headers=OCTET)
            if response.status_code == 200:
                done += 1
    return done


def http_rate(method: str, url: str, path: str, clients: int, count: int, pids: list[int]) -> Any:
    deadline = time.time() + 20
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        started, cpu0 = time.perf_counter(), cpu_seconds(pids)
        done = sum(pool.map(_http_loop, [(method, url, path, count, deadline)] * clients))
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(pids) - cpu0
    return done / elapsed, cpu, done


def fan_out(url: str, key: str, subscribers: int, messages: int, pids: list[int]) -> Any:
    ws_url = (
        url.replace("http://", "ws://") + f"/api/v1/stream/single/{key}?envelope_format=msgpack"
    )
    received: list[list[int]] = [[] for _ in range(subscribers)]
    ready = threading.Barrier(subscribers + 1)

    def subscribe(i: int) -> None:
        with connect(ws_url, additional_headers=AUTH, max_size=None) as conn:
            conn.recv(timeout=10)  # schema
            ready.wait(timeout=30)
            end = time.monotonic() + 60
            while len(received[i]) < messages and time.monotonic() < end:
                try:
                    message = msgpack.unpackb(conn.recv(timeout=10))
                except TimeoutError:
                    break
                received[i].append(message["sequence"])

    threads = [threading.Thread(target=subscribe, args=(i,)) for i in range(subscribers)]
    for thread in threads:
        thread.start()
    ready.wait(timeout=30)
    started, cpu0 = time.perf_counter(), cpu_seconds(pids)
    with httpx.Client(base_url=f"{url}/api/v1", headers=AUTH, timeout=10) as client:
        body = np.arange(16, dtype="<i8").tobytes()
        for _ in range(messages):
            client.put(
                f"/array/full/{key}", params={"persist": "false"}, content=body, headers=OCTET
            )
    for thread in threads:
        thread.join(timeout=70)
    elapsed, cpu = time.perf_counter() - started, cpu_seconds(pids) - cpu0
    loss = dup = gaps = 0
    for got in received:
        loss += max(0, messages - len(set(got)))
        dup += len(got) - len(set(got))
        gaps += sum(1 for a, b in itertools.pairwise(got) if b != a + 1)
    delivered = sum(len(got) for got in received)
    return delivered / elapsed, cpu, loss, dup, gaps


def row(scenario: str, case: str, target: str, driver: str, metric: str, values: list[float],
        cpus: list[float], **extra: Any) -> dict[str, Any]:  # fmt: skip
    value = statistics.median(values)
    cpu = statistics.median(cpus)
    return {
        "scenario": scenario, "case": case, "target": target, "driver": driver,
        "metric": metric, "value": value, "runs": len(values), "server_cpu_s": cpu,
        "per_server_cpu_s": None, **extra,
    }  # fmt: skip


def measure(target: str, url: str, pids: list[int], args: argparse.Namespace) -> list[dict]:
    with httpx.Client(base_url=f"{url}/api/v1", headers=AUTH) as client:
        key = f"b{os.getpid()}{int(time.time() * 1000) % 100000}"
        body = {
            "id": key, "structure_family": "array", "metadata": {}, "specs": [],
            "data_sources": [{
                "structure_family": "array", "mimetype": "application/x-zarr",
                "parameters": {}, "assets": [], "management": "writable",
                "structure": {
                    "data_type": {"endianness": "little", "kind": "i", "itemsize": 8,
                                  "dt_units": None},
                    "chunks": [[16]], "shape": [16], "dims": None, "resizable": False,
                },
            }],
        }  # fmt: skip
        assert client.post("/metadata/", content=orjson.dumps(body)).status_code == 200
    rows = []
    driver = f"python httpx x{args.clients}"
    for scenario, method, path, case in (
        ("D1", "GET", "/api/v1/", "HTTP GET /api/v1/"),
        ("D2", "PUT", f"/api/v1/array/full/{key}?persist=false", "stream-only PUT 128 B"),
    ):
        rates, cpus = [], []
        for _ in range(args.runs):
            rate, cpu, _ = http_rate(method, url, path, args.clients, args.requests, pids)
            rates.append(rate)
            cpus.append(cpu)
        r = row(scenario, case, target, driver, "requests/s", rates, cpus)
        r["per_server_cpu_s"] = args.requests * args.clients / r["server_cpu_s"] or None
        rows.append(r)
    rates, cpus, losses = [], [], [0, 0, 0]
    for _ in range(args.runs):
        rate, cpu, loss, dup, gaps = fan_out(url, key, args.subscribers, args.messages, pids)
        rates.append(rate)
        cpus.append(cpu)
        losses = [losses[0] + loss, losses[1] + dup, losses[2] + gaps]
    r = row(
        "D3", f"fan-out 128 B to {args.subscribers} subscribers", target,
        f"python websockets x{args.subscribers}", "frames/s", rates, cpus,
        loss=losses[0], dup=losses[1], gaps=losses[2],
    )  # fmt: skip
    r["per_server_cpu_s"] = (
        args.messages * args.subscribers / r["server_cpu_s"] if r["server_cpu_s"] else None
    )
    rows.append(r)
    return rows


def cluster_pids(cluster: Cluster, redis: RedisServer, haproxy: bool) -> list[int]:
    pids = [n.process.pid for n in cluster.nodes if n.process is not None]
    if haproxy and cluster.haproxy is not None:
        pids.append(cluster.haproxy.pid)
    if redis.process is not None:
        pids.append(redis.process.pid)
    return process_tree(pids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (well under a minute)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    args.runs = 1 if args.quick else 3
    args.clients = 2 if args.quick else 4
    args.requests = 300 if args.quick else 3000
    args.subscribers = 4 if args.quick else 16
    args.messages = 200 if args.quick else 2000
    rows: list[dict[str, Any]] = []
    for processes in (1, 2):
        root = Path(tempfile.mkdtemp(prefix="ferrotile-haproxy-bench-"))
        redis = RedisServer()
        cluster = None
        try:
            redis.start()
            cluster = start_cluster(
                root, redis_url=redis.url, catalog=f"sqlite:///{root / 'catalog.db'}",
                tables=f"sqlite:///{root / 'tables.sqlite'}", count=processes,
            )  # fmt: skip
            pids = cluster_pids(cluster, redis, haproxy=True)
            rows += measure(f"ferrotile haproxy {processes}p", cluster.url, pids, args)
            if processes == 1:
                direct = cluster_pids(cluster, redis, haproxy=False)
                rows += measure("ferrotile direct 1p", cluster.nodes[0].url, direct, args)
        finally:
            if cluster is not None:
                cluster.stop()
            redis.close()
            shutil.rmtree(root, ignore_errors=True)
    for r in rows:
        extra = f" loss={r['loss']} dup={r['dup']} gaps={r['gaps']}" if "loss" in r else ""
        print(f"{r['scenario']} {r['target']:<22} {r['case']:<36} {r['value']:>10.0f} "
              f"{r['metric']}{extra}")  # fmt: skip
    if args.json:
        args.json.write_text(orjson.dumps({"rows": rows}, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
