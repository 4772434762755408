"""The processes of ``client_bench.py``: one writer and N subscribers, each a forked process
running one Python client (``ferrotile.client`` or the stock tiled 0.2.20 client), reporting
its own CPU (``resource.getrusage``, all its threads) over the measured window.

Frames are 1-D uint8 arrays of ``nbytes``; their first 24 bytes are three little-endian uint64:
the writer's CLOCK_MONOTONIC time (ns) just before ``send``, the frame id, and 1 on the last
frame. Id 0 is the warm-up frame the writer repeats until every subscriber has seen one; the
measured frames are ids 1..N.

Talk with the parent over a pipe: the writer sends ``"created"`` once the node exists, then
repeats warm-up frames until the parent sends ``"go"``; each subscriber sends ``"ready"`` on
its first warm-up frame; both send a result dict at the end.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from stream_procs import API_KEY

CTX = mp.get_context("fork")
FERROTILE_CLIENT = "ferrotile.client"
STOCK_CLIENT = "stock tiled 0.2.20 client"


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Case:
    """What one run streams: through which client, how big, stored or not, for how long, and
    at which rate (None: as fast as the writer goes)."""

    url: str
    client: str
    key: str
    nbytes: int
    persist: bool
    seconds: float
    rate: float | None = None
    block: int = 1  # frames per send (ferrotile.client: one message of (block, nbytes))


# --------------------------------------------------------------------------------- writer


def _ferrotile_sender(case: Case) -> tuple[Callable[[np.ndarray], None], Callable[[], None]]:
    from ferrotile.client import connect

    client = connect(case.url, api_key=API_KEY)
    writer = client.writer(
        case.key, dtype="uint8", frame_shape=(case.nbytes,), persist=case.persist
    )

    def finish() -> None:
        writer.close()
        client.close()

    return writer.send, finish


def _stock_sender(case: Case) -> tuple[Callable[[np.ndarray], None], Callable[[], None]]:
    from tiled.client import from_uri

    client = from_uri(case.url, api_key=API_KEY)
    if not case.persist:  # what put_loop.py's stock loop does: PUT ?persist=false
        array = client.write_array(np.zeros(case.nbytes, np.uint8), key=case.key)
        return lambda frame: array.write(frame, persist=False), client.context.close
    # persisted appends, as the stock client grows an array: PATCH ?offset=i&extend=true
    array = client.write_array(np.zeros((1, case.nbytes), np.uint8), key=case.key)
    rows = [1]

    def append(frame: np.ndarray) -> None:
        array.patch(frame[None], offset=(rows[0],), extend=True)
        rows[0] += 1

    return append, client.context.close


def writer_process(conn: Connection, case: Case) -> None:
    """Create the node, repeat the warm-up frame until "go", then send frames 1..N for
    ``case.seconds`` (flat out, or paced at ``case.rate`` on an absolute schedule), mark the
    last one, close (the stream ends) and report."""
    try:
        make = _ferrotile_sender if case.client == FERROTILE_CLIENT else _stock_sender
        send, finish = make(case)
        shape = (case.block, case.nbytes) if case.block > 1 else (case.nbytes,)
        frame = np.zeros(shape, np.uint8)
        heads = frame.reshape(-1, case.nbytes)[:, :24].view("<u8")  # (block, 3)
        numbers = np.arange(case.block, dtype=np.uint64)
        head = heads[0]

        def stamp_and_send(block_id: int, last: bool) -> None:
            """Send frames ``(block_id - 1) * block + 1 ..``; 0: the warm-up frames."""
            if case.block == 1:  # the common case without numpy's per-call overhead
                head[1], head[2] = block_id, last
            else:
                heads[:, 1] = numbers + ((block_id - 1) * case.block + 1) if block_id else 0
                heads[:, 2] = 0
                heads[-1, 2] = last
            if case.block == 1:
                head[0] = time.monotonic_ns()
            else:
                heads[:, 0] = time.monotonic_ns()
            send(frame)

        stamp_and_send(0, False)
        conn.send("created")
        while not conn.poll(0.1):
            stamp_and_send(0, False)
        conn.recv()
        cpu0, t0 = cpu_now(), time.monotonic_ns()
        deadline = t0 + int(case.seconds * 1e9)
        period = int(1e9 / case.rate) if case.rate else 0
        block_id, last = 0, False
        while not last:
            block_id += 1
            if period:
                due = t0 + (block_id - 1) * period
                wait = due - time.monotonic_ns()
                if wait > 0:
                    time.sleep(wait / 1e9)
            last = (t0 + block_id * period if period else time.monotonic_ns()) >= deadline
            stamp_and_send(block_id, last)
        t_sent = time.monotonic_ns()
        finish()
        conn.send({
            "frames": block_id * case.block, "t0_ns": t0, "seconds": (t_sent - t0) / 1e9,
            "closed_s": (time.monotonic_ns() - t_sent) / 1e9, "cpu_s": cpu_now() - cpu0,
        })  # fmt: skip
    except Exception as error:
        conn.send({"error": f"{type(error).__name__}: {error}"})


# ---------------------------------------------------------------------------- subscribers


class Tally:
    """What one subscriber received: unique measured ids, duplicates, latencies."""

    def __init__(self, conn: Connection, nbytes: int) -> None:
        self.conn, self.nbytes = conn, nbytes
        self.seen: set[int] = set()
        self.dups = 0
        self.latencies: list[int] = []
        self.cpu0: float | None = None
        self.last_ns: int | None = None
        self.done = False

    def frames(self, array: np.ndarray) -> None:
        """One received message (one or more frames); sets ``done`` on the last frame."""
        now = time.monotonic_ns()
        heads = np.ascontiguousarray(array.reshape(-1, self.nbytes)[:, :24]).view("<u8")
        for stamp, frame_id, last in heads.tolist():
            if frame_id == 0:
                if self.cpu0 is None:
                    self.cpu0 = cpu_now()
                    self.conn.send("ready")
                continue
            if frame_id in self.seen:
                self.dups += 1
                continue
            self.seen.add(frame_id)
            self.latencies.append(now - stamp)
            self.last_ns = now
            self.done = self.done or bool(last)

    def report(self, gaps: int, error: str | None) -> None:
        self.conn.send({
            "unique": len(self.seen), "dups": self.dups, "gaps": gaps, "error": error,
            "latencies": np.array(self.latencies, np.int64), "last_ns": self.last_ns,
            "cpu_s": cpu_now() - self.cpu0 if self.cpu0 is not None else None,
        })  # fmt: skip


def _ferrotile_subscriber(case: Case, tally: Tally) -> int:
    from ferrotile.client import Frame, Gap, connect

    gaps = 0
    client = connect(case.url, api_key=API_KEY)
    # A flat-out writer outruns one Python subscriber: let it fall 1 GiB behind (within the
    # server's retention budget; evicted messages come as Gaps) instead of the 64 MiB default.
    subscription = client.subscribe(
        case.key, max_queue_bytes=2**30, max_message_bytes=4 * case.nbytes + 2**20
    )
    try:
        for message in subscription:
            if isinstance(message, Frame):
                tally.frames(message.array)
                if tally.done:
                    break
            elif isinstance(message, Gap):
                gaps += message.count
    finally:
        subscription.close()
        client.close()
    return gaps


def _stock_subscriber(case: Case, tally: Tally) -> int:
    from tiled.client import from_uri

    client = from_uri(case.url, api_key=API_KEY)
    ended = threading.Event()
    failures: list[str] = []

    def on_data(update: Any) -> None:
        try:
            tally.frames(update.data())
        except Exception as error:  # the executor would swallow it
            failures.append(f"{type(error).__name__}: {error}")
        if tally.done or failures:
            ended.set()

    def on_closed(_: Any) -> None:
        ended.set()

    subscription = client[case.key].subscribe()
    subscription.new_data.add_callback(on_data)  # the registry holds weak references
    subscription.stream_closed.add_callback(on_closed)
    subscription.start_in_thread(max_size=4 * case.nbytes + 2**20)
    try:
        ended.wait(case.seconds + 120)
    finally:
        # The stock client's receiving thread may still hand the stream's end to the executor
        # that disconnect() shut down; that RuntimeError of its thread is expected here.
        threading.excepthook = lambda hook: None
        subscription.disconnect(wait=False)
        client.context.close()
    if failures:
        raise RuntimeError(failures[0])
    return 0


def subscriber_process(conn: Connection, case: Case) -> None:
    tally = Tally(conn, case.nbytes)
    gaps, error = 0, None
    try:
        follow = _ferrotile_subscriber if case.client == FERROTILE_CLIENT else _stock_subscriber
        gaps = follow(case, tally)
    except Exception as error_:
        error = f"{type(error_).__name__}: {error_}"
    tally.report(gaps, error)


def start(role: Callable[[Connection, Case], None], case: Case) -> tuple[Any, Connection]:
    """Fork one role; returns the process and the parent's end of its pipe."""
    parent, child = CTX.Pipe()
    process = CTX.Process(target=role, args=(child, case), daemon=True)
    process.start()
    child.close()
    return process, parent
