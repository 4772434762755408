"""Lean load generators of ``stream_bench.py``.

Writer: a minimal HTTP/1.1 client on one keep-alive asyncio connection, one request in flight,
sending ``PUT /api/v1/array/full/KEY?persist=false`` (what ``x.write(frame, persist=False)`` of
the stock client sends). Every frame is a 1-D little-endian uint64 array; element 0 is the frame
id, element 1 the CLOCK_MONOTONIC time (ns) taken just before the request is written, element 2
is 1 on the last frame of a run.

Subscribers: ``websockets`` asyncio clients (``compression=None, max_size=None``), several per
process, in forked processes so that they do not share the writer's interpreter. Each decodes
msgpack and the payload (``np.frombuffer``) and counts frames, duplicates, frame-id gaps and
envelope sequence gaps; latency = decode time - the stamped time.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import re
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import httpx
import msgpack
import numpy as np

from stream_procs import API_KEY

CTX = mp.get_context("fork")


def create_array(http_url: str, key: str, nbytes: int, *, rows: int | None = None) -> None:
    """Create a writable 1-D uint64 array node ``key`` of ``nbytes`` bytes (one chunk); with
    ``rows``, a 2-D ``(rows, nbytes // 8)`` array chunked by row (for persisted appends)."""
    n = nbytes // 8
    shape, chunks = ([n], [[n]]) if rows is None else ([rows, n], [[1] * rows, [n]])
    create_node(http_url, key, shape, chunks, 8)


def create_node(http_url: str, key: str, shape: list[int], chunks: list[list[int]],
                itemsize: int) -> None:  # fmt: skip
    """Create a writable array node ``key`` of unsigned integers of ``itemsize`` bytes."""
    body = {
        "id": key, "structure_family": "array", "metadata": {}, "specs": [],
        "data_sources": [{
            "structure_family": "array",
            "structure": {
                "data_type": {"endianness": "little", "kind": "u", "itemsize": itemsize,
                              "dt_units": None},
                "chunks": chunks, "shape": shape, "dims": None, "resizable": False,
            },
            "id": None, "mimetype": None, "parameters": {}, "properties": {}, "assets": [],
            "management": "writable",
        }],
    }  # fmt: skip
    headers = {"Authorization": f"Apikey {API_KEY}"}
    response = httpx.post(f"{http_url}/api/v1/metadata/", json=body, headers=headers, timeout=30)
    response.raise_for_status()


# --------------------------------------------------------------------------------- writer


class RawPut:
    """One keep-alive HTTP/1.1 connection sending PUT /array/full/KEY?persist=false, or with
    ``extend``, the persisted append ``x.patch(frame, offset=(i,), extend=True)`` sends:
    PATCH /array/full/KEY?offset=i&shape=1,n&extend=true."""

    def __init__(self, port: int, key: str, *, extend: bool = False) -> None:
        self.port, self.key, self.extend = port, key, extend
        self.appended = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawPut:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()

    async def put(self, body: memoryview) -> int:
        assert self.reader is not None and self.writer is not None
        if self.extend:
            n = len(body) // 8
            query = f"offset={self.appended}&shape=1,{n}&extend=true"
            line = f"PATCH /api/v1/array/full/{self.key}?{query}"
            self.appended += 1
        else:
            line = f"PUT /api/v1/array/full/{self.key}?persist=false"
        head = (
            f"{line} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\nAuthorization: Apikey {API_KEY}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head)
        self.writer.write(body)
        await self.writer.drain()
        status_and_headers = await self.reader.readuntil(b"\r\n\r\n")
        lines = status_and_headers.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        if status >= 300:
            raise RuntimeError(f"PUT answered {status}")
        return status


@dataclass
class WriterResult:
    frames: int = 0
    seconds: float = 0.0
    call_ns: list[int] = field(default_factory=list)


async def write_frames(
    port: int,
    key: str,
    nbytes: int,
    count: int,
    seconds: float,
    rate: float | None,
    *,
    extend: bool = False,
) -> WriterResult:
    """Send up to ``count`` frames for at most ``seconds`` (then one last frame, flagged), at
    ``rate`` frames/s (None: flat out, one request in flight)."""
    frame = np.random.default_rng(0).integers(0, 2**63, nbytes // 8, dtype="<u8")
    body = memoryview(frame).cast("B")
    result = WriterResult()
    async with RawPut(port, key, extend=extend) as client:
        t0 = time.monotonic()
        deadline = t0 + seconds
        for i in range(count):
            last = i == count - 1 or time.monotonic() >= deadline
            if rate is not None:
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            frame[0], frame[2] = i, int(last)
            start = time.monotonic_ns()
            frame[1] = start
            await client.put(body)
            result.call_ns.append(time.monotonic_ns() - start)
            result.frames = i + 1
            if last:
                break
        result.seconds = time.monotonic() - t0
    return result


# ----------------------------------------------------------------------------- subscribers

DROPPED = re.compile(r"dropped (\d+)")


@dataclass
class SubSpec:
    url: str  # full ws:// URL with query string
    count: int  # subscribers in this process
    seconds: float  # hard limit for the whole receive phase
    expect: int | None = None  # stop after this many data frames (catch-up)
    frozen: bool = False  # connect, read the schema, then stop reading until told to resume
    latency: bool = True
    raw: bool = False  # Redis Streamer pull with header=0: no schema, each frame is a payload


async def _subscriber(spec: SubSpec, ready: asyncio.Event, go: asyncio.Event) -> dict[str, Any]:
    import websockets
    from websockets.asyncio.client import connect

    stats: dict[str, Any] = {
        "frames": 0, "bytes": 0, "dups": 0, "id_gaps": 0, "seq_gaps": 0, "last_flag": False,
        "close_code": None, "close_reason": "", "dropped": None, "error": None,
        "first_ns": None, "last_ns": None, "connect_ns": None,
    }  # fmt: skip
    latencies: list[int] = []
    seen: set[int] = set()
    last_id, last_seq = -1, None
    max_queue = 1 if spec.frozen else 16
    deadline = time.monotonic() + spec.seconds
    headers = {"Authorization": f"Apikey {API_KEY}"}
    try:
        stats["connect_ns"] = time.monotonic_ns()
        async with connect(
            spec.url, additional_headers=headers, compression=None, max_size=None,
            max_queue=max_queue, open_timeout=20, ping_interval=None, proxy=None,
        ) as ws:  # fmt: skip
            if not spec.raw:
                with contextlib.suppress(TimeoutError):  # the schema frame
                    await asyncio.wait_for(ws.recv(), timeout=10)
            ready.set()
            if spec.frozen:
                ws.transport.pause_reading()
                await asyncio.wait_for(go.wait(), timeout=max(0.1, deadline - time.monotonic()))
                ws.transport.resume_reading()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    stats["error"] = "deadline"
                    break
                data = await asyncio.wait_for(ws.recv(), timeout=remaining)
                now = time.monotonic_ns()
                if spec.raw:
                    if not data:  # the idle heartbeat
                        continue
                    message = {"type": "array-data", "payload": data}
                else:
                    message = msgpack.unpackb(data)
                if message.get("type") != "array-data":
                    continue
                payload = np.frombuffer(message["payload"], dtype="<u8")
                frame_id, stamp, flag = int(payload[0]), int(payload[1]), int(payload[2])
                if spec.latency:
                    latencies.append(now - stamp)
                seq = message.get("sequence")
                if last_seq is not None and seq is not None and seq > last_seq + 1:
                    stats["seq_gaps"] += 1
                last_seq = seq
                if frame_id in seen:
                    stats["dups"] += 1
                else:
                    seen.add(frame_id)
                    if frame_id > last_id + 1 and last_id >= 0:
                        stats["id_gaps"] += 1
                last_id = max(last_id, frame_id)
                stats["frames"] += 1
                stats["bytes"] += len(message["payload"])
                stats["first_ns"] = stats["first_ns"] or now
                stats["last_ns"] = now
                if flag or (spec.expect is not None and stats["frames"] >= spec.expect):
                    stats["last_flag"] = True
                    break
    except websockets.ConnectionClosed as closed:
        if closed.rcvd is not None:
            stats["close_code"], stats["close_reason"] = closed.rcvd.code, closed.rcvd.reason
            found = DROPPED.search(closed.rcvd.reason)
            stats["dropped"] = int(found.group(1)) if found else None
        else:  # TCP closed with no close frame from the server (1006, abnormal closure)
            stats["close_code"], stats["close_reason"] = 1006, f"no close frame: {closed}"
    except TimeoutError:
        stats["error"] = "deadline"
    except Exception as error:
        stats["error"] = f"{type(error).__name__}: {error}"
    finally:
        ready.set()
    stats["unique"] = len(seen)
    stats["max_id"] = last_id
    stats["latencies"] = np.asarray(latencies, dtype=np.int64)
    return stats


async def _run_subscribers(spec: SubSpec, conn: Connection) -> list[dict[str, Any]]:
    readies = [asyncio.Event() for _ in range(spec.count)]
    go = asyncio.Event()
    tasks = [asyncio.create_task(_subscriber(spec, readies[i], go)) for i in range(spec.count)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readies)), timeout=60)
    conn.send("ready")
    if spec.frozen:  # wait (bounded) for the parent's "go", then let the frozen one read
        deadline = time.monotonic() + spec.seconds
        while not conn.poll() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        go.set()
    return list(await asyncio.gather(*tasks))


def _subscriber_process(spec: SubSpec, conn: Connection) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        results = asyncio.run(_run_subscribers(spec, conn))
    except BaseException as error:
        conn.send(("error", f"{type(error).__name__}: {error}"))
        return
    conn.send(("result", results))


class Subscribers:
    """Subscriber processes; each runs ``per_process`` subscribers of the same URL."""

    def __init__(self, spec: SubSpec, total: int, processes: int) -> None:
        self.spec, self.procs, self.conns = spec, [], []
        base, extra = divmod(total, processes)
        for index in range(processes):
            n = base + (1 if index < extra else 0)
            if n == 0:
                continue
            parent, child = CTX.Pipe()
            sub = SubSpec(**{**spec.__dict__, "count": n})
            process = CTX.Process(target=_subscriber_process, args=(sub, child), daemon=True)
            process.start()
            self.procs.append(process)
            self.conns.append(parent)

    def wait_ready(self, timeout: float = 60) -> None:
        for conn in self.conns:
            if not conn.poll(timeout):
                raise RuntimeError("subscribers did not connect")
            message = conn.recv()
            if message != "ready":
                raise RuntimeError(f"subscriber process failed: {message}")

    def resume(self) -> None:
        for conn in self.conns:
            conn.send("go")

    def results(self, timeout: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        for conn in self.conns:
            if not conn.poll(max(0.1, deadline - time.monotonic())):
                raise RuntimeError("subscribers did not report in time")
            kind, value = conn.recv()
            if kind != "result":
                raise RuntimeError(f"subscriber process failed: {value}")
            out.extend(value)
        return out

    def close(self) -> None:
        for process in self.procs:
            if process.is_alive():
                process.kill()
            process.join(timeout=5)
