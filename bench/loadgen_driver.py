"""Driving ``ferrotile-loadgen`` (bench/loadgen) from Python: start its subcommands, wait for their
READY line, collect their JSON result; and the delivery run every throughput scenario of
run_loadgen.py shares (subscribers first, then a writer, server CPU over the run).

Frames carry their id (little-endian u64, bytes 0..8) and the writer's CLOCK_MONOTONIC send
time (bytes 8..16); subscribers count them with ``--frames raw`` (the relays: each message is
the frame) or ``--frames msgpack`` (ferrotile and Tiled: the envelope's ``payload``).
"""

from __future__ import annotations

import json
import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import protocol
from stream_procs import API_KEY, Target

DRIVER = "ferrotile-loadgen (Rust, tokio)"
#: Seconds without a frame (after the first) that end a subscriber run. At 2 s, G2's 8 MiB WS
#: push row counted as lost every frame after a ~2 s pause in delivery early in the run (the
#: subscriber stopped listening); with more room the pause shows as latency, where it belongs.
IDLE_STOP = 5.0


class Loadgen:
    """Runs subcommands of the load generator; kills what is still running on :meth:`kill_all`."""

    def __init__(self, binary: Path | None = None) -> None:
        self.binary = binary or protocol.rust_binary("ferrotile-loadgen")
        self.running: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [str(self.binary), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.running.append(process)
        return process

    def wait_ready(self, process: subprocess.Popen[str], timeout: float) -> str:
        """Reads stderr until the READY line (the sockets are connected)."""
        assert process.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                raise RuntimeError("loadgen ended before READY")
            if line.startswith("READY"):
                return line.strip()
        raise RuntimeError("loadgen not READY in time")

    def finish(self, process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out, err = process.communicate(timeout=timeout)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.running.remove(process)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"loadgen failed ({process.returncode}): {err.strip()[-600:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        result["loadgen_cpu_s"] = (after.ru_utime + after.ru_stime) - (
            before.ru_utime + before.ru_stime
        )
        return result

    def run(self, *args: str, timeout: float = 120) -> dict[str, Any]:
        return self.finish(self.start(*args), timeout)

    def kill_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.running.clear()


def stream_url(target: Target, key: str, query: str = "") -> str:
    """The subscription URL; ``query`` (``&name=value...``) adds subscribe options."""
    return f"{target.ws}/api/v1/stream/single/{key}?envelope_format=msgpack{query}"


def push_url(target: Target, key: str) -> str:
    return f"{target.ws}/api/v1/stream/push/{key}?persist=false&mode=full"


def frames_arg(target: Target) -> list[str]:
    return ["--frames", "raw" if target.relay else "msgpack"]


@dataclass
class Writer:
    """A writer run: ``put`` (HTTP PUT) or ``push`` (WS push) with its pacing options."""

    kind: str  # "put" or "push"
    size: int
    seconds: float
    options: list[str] = field(default_factory=lambda: ["--max"])  # or ["--rate", "100", ...]

    @property
    def label(self) -> str:
        return "HTTP PUT" if self.kind == "put" else "WS push"

    def command(self, target: Target, key: str) -> list[str]:
        if self.kind == "put":
            where = ["--url", target.http, "--key", key]
        else:
            where = ["--url", push_url(target, key)]
        return [self.kind, *where, "--size", str(self.size), "--create", "--api-key", API_KEY,
                "--duration", str(self.seconds), *self.options]  # fmt: skip


@dataclass
class Delivery:
    """What one delivery run measured."""

    writer: dict[str, Any]
    subscribers: dict[str, Any]
    server_cpu_s: float

    @property
    def frames(self) -> int:
        """Frames delivered, summed over the subscribers (distinct ids per socket)."""
        return int(self.subscribers.get("frames_unique") or 0)

    @property
    def expected(self) -> int:
        return int(self.writer["ok"]) * int(self.subscribers["connected"])


def create(gen: Loadgen, target: Target, key: str, size: int) -> None:
    """A writable 1-D uint8 array of ``size`` bytes at ``key`` (subscribers of ferrotile and
    Tiled need the node to exist; an existing one is fine)."""
    gen.run("put", "--url", target.http, "--key", key, "--size", str(size), "--create",
            "--rate", "1", "--duration", "0", "--api-key", API_KEY)  # fmt: skip


def deliver(
    gen: Loadgen, target: Target, key: str, writer: Writer, subscribers: int,
    *, threads: int = 1, connect_timeout: float = 60.0, query: str = "",
) -> Delivery:  # fmt: skip
    """``subscribers`` sockets on ``key`` first (READY), then the writer; server CPU (its process
    tree plus its Redis) from just before the writer starts until the subscribers stop (the
    writer's last frame plus IDLE_STOP seconds, or every socket has all the frames). ``query``
    adds subscribe options to the subscribers' URL."""
    create(gen, target, key, writer.size)
    subs = gen.start(
        "subscribers", "--url", stream_url(target, key, query), "--count", str(subscribers),
        "--api-key", API_KEY, *frames_arg(target), "--idle-stop", str(IDLE_STOP),
        "--duration", str(writer.seconds + 20), "--connect-timeout", str(connect_timeout),
        "--threads", str(threads),
    )  # fmt: skip
    gen.wait_ready(subs, connect_timeout + 30)
    cpu0 = target.cpu()
    written = gen.run(*writer.command(target, key), timeout=writer.seconds + 60)
    delivered = gen.finish(subs, writer.seconds + 60)
    return Delivery(written, delivered, target.cpu() - cpu0)


def has_push(gen: Loadgen, target: Target, cache: dict[str, Any]) -> bool:
    """Whether the target serves ``WS /api/v1/stream/push/{path}`` (one frame pushed to a fresh
    array; the answer is remembered in ``cache``)."""
    if "push" not in cache:
        try:
            probe = Writer("push", 1024, 5.0, ["--max", "--requests", "1"])
            gen.run(*probe.command(target, "probe"))
            cache["push"] = True
        except RuntimeError as error:
            cache["push"] = False
            cache["push_error"] = str(error).rsplit("setup failed: ", 1)[-1]
    return bool(cache["push"])
