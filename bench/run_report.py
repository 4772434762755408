"""The report of ``run.py``: the environment header, the Markdown table grouped by scenario, and
writing it into bench/README.md between the result markers."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
from pathlib import Path
from typing import Any

import protocol

BEGIN = "<!-- bench-results:begin (written by bench/run.py --readme) -->"
END = "<!-- bench-results:end -->"

TITLES = {
    "G1": "small-frame ingest, 1 KiB, stream-only",
    "G2": "large frames, 1 writer -> 1 subscriber",
    "G3": "kHz detector: 512 KiB at 1 kHz, 2 subscribers",
    "G4": "latency, writer call -> decoded at the subscriber",
    "G5": "fan-out 256 KiB to 32 subscribers",
    "G6": "small fan-out: 128 B to 1,000 subscribers",
    "G7": "catch-up with start=0",
    "G8": "one subscriber frozen during G5",
    "G9": "lost history reported to the client",
    "G10": "idle WebSocket subscribers",
    "G11": "HTTP control plane",
    "G12": "efficiency (derived from the rows above)",
    "G13": "persisted appends (PATCH extend=true into zarr)",
    "C1": "client to client flat out: ferrotile.client vs the stock tiled client (client_bench.py)",
    "C2": "client to client: 512 KiB at 1 kHz to 2 subscribers, ferrotile.client",
    "D1": "deployment: HTTP GET through HAProxy (haproxy_bench.py)",
    "D2": "deployment: stream-only PUT through HAProxy",
    "D3": "deployment: fan-out through HAProxy",
    "M1": "100 streams x 1 KiB @100 Hz: one multiplexed socket vs 100 (multi_bench.py)",
    "M2": "2048x2048 uint16, bin=4 view to 32 subscribers vs 1",
    "M3": "2048x2048 uint16, bin=4 + zstd view to 32 subscribers vs 1",
}
TARGET_ORDER = ["ferrotile mem 1w", "ferrotile redis 1w", "ferrotile redis 2w",
                protocol.RUST_RELAY, protocol.GRANIAN_RELAY, protocol.TILED]  # fmt: skip


def target_order(target: str) -> tuple[int, str]:
    return (TARGET_ORDER.index(target) if target in TARGET_ORDER else len(TARGET_ORDER), target)


def _scenario_order(code: str) -> tuple[bool, int, str]:
    """G1..G13 first, then other series (D1.. of haproxy_bench), by number."""
    return (not code.startswith("G"), int(code[1:]) if code[1:].isdigit() else 99, code)


def _num(value: Any) -> str:
    """Three significant figures, thousands separated."""
    if value is None:
        return "-"
    value = float(value)
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _loss(row: dict[str, Any]) -> str:
    counts = [row.get("loss"), row.get("dup"), row.get("gaps")]
    return " / ".join("-" if c is None else str(c) for c in counts)


def markdown(rows: list[dict[str, Any]], status: list[dict[str, Any]]) -> str:
    lines = []
    codes = sorted({r["scenario"] for r in rows}, key=_scenario_order)
    for code in codes:
        lines += [
            f"**{code}: {TITLES.get(code, '')}**", "",
            "| case | target | driver | value | unit | vs Tiled | server CPU s "
            "| per server-CPU-s | server CPU per frame (us) | vs Rust relay "
            "| loss / dup / gaps | detail |",
            "|---|---|---|--:|---|--:|--:|--:|--:|--:|---|---|",
        ]  # fmt: skip
        mine = [r for r in rows if r["scenario"] == code]
        cases = list(dict.fromkeys(r["case"] for r in mine))
        for case in cases:
            for row in sorted((r for r in mine if r["case"] == case),
                              key=lambda r: target_order(r["target"])):  # fmt: skip
                ratio = f"{row['ratio']:.1f}x" if row.get("ratio") else ""
                vs_relay = f"{row['vs_relay']:.2f}x" if row.get("vs_relay") else ""
                per_cpu = (
                    f"{_num(row['per_server_cpu_s'])} {row.get('per_cpu_unit') or ''}".strip()
                    if row.get("per_server_cpu_s") else "-"
                )  # fmt: skip
                detail = "; ".join(x for x in (row.get("detail"), row.get("notes")) if x)
                runs = f" ({row['runs']} runs)" if row.get("runs", 1) > 1 else ""
                lines.append(
                    f"| {case} | {row['target']} | {row['driver']} | {_num(row['value'])} "
                    f"| {row['metric']} | {ratio} | {_num(row.get('server_cpu_s'))} | {per_cpu} "
                    f"| {_num(row.get('cpu_us_per_frame'))} | {vs_relay} "
                    f"| {_loss(row)} | {detail.replace('|', '/')}{runs} |"
                )
        lines.append("")
    problems = [s for s in status if s.get("error") or s.get("skipped") or s.get("interrupted")]
    for s in problems:
        if s.get("interrupted"):
            lines.append("- interrupted: the table holds what finished")
        elif s.get("skipped"):
            lines.append(f"- {s['note']}")
        else:
            lines.append(f"- {s['script']} run {s['run']}: {s['error']}")
    return "\n".join(lines).rstrip()


# ----------------------------------------------------------------------------- environment


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _output(command: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        return done.stdout.strip()
    return "-"


def _crate_versions(names: tuple[str, ...]) -> str:
    """``name version`` of these crates from the workspace's Cargo.lock (the relay's and the
    load generator's)."""
    lock = Path(__file__).resolve().parent.parent / "Cargo.lock"
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for package in lock.read_text().split("[[package]]"):
            fields = dict(
                line.split(" = ", 1) for line in package.strip().splitlines() if " = " in line
            )
            name = fields.get("name", "").strip('"')
            if name in names:
                found[name] = fields.get("version", "").strip('"')
    return ", ".join(f"{name} {found[name]}" for name in names if name in found) or "-"


def environment(argv: list[str]) -> dict[str, Any]:
    cpu = "-"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "-"
    with contextlib.suppress(OSError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kib / 2**20:.0f} GiB"
    redis = _output(["redis-server", "--version"]).split(" v=")[-1].split()[0:1]
    tiled_python = protocol.TILED_VENV / "bin" / "python"
    tiled_env = os.environ.get("FERROTILE_BENCH_TILED")
    tiled = _output(
        [
            str(Path(tiled_env).with_name("python") if tiled_env else tiled_python),
            "-c",
            "import tiled, uvicorn; print(tiled.__version__, uvicorn.__version__)",
        ]
    )
    root = Path(__file__).resolve().parent.parent
    commit = _output(["git", "-C", str(root), "describe", "--always", "--dirty"])
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python " + shlex.join(["bench/run.py", *argv[1:]]),
        "cpu": cpu, "nproc": os.cpu_count(), "memory": memory, "kernel": platform.release(),
        "python": platform.python_version(), "granian": _version("granian"),
        "starlette": _version("starlette"), "websockets": _version("websockets"),
        "numpy": _version("numpy"), "redis": redis[0] if redis else "-",
        "tiled": tiled, "ferrotile": commit, "load_before": os.getloadavg(),
        "crates": _crate_versions(("hyper", "tokio", "tokio-tungstenite")),
    }  # fmt: skip


def header(env: dict[str, Any]) -> str:
    load = "/".join(f"{x:.1f}" for x in env["load_before"])
    load_after = "/".join(f"{x:.1f}" for x in env.get("load_after", ()))
    tiled = env["tiled"].split()
    return "\n".join([
        f"Command: `{env['command']}` ({env['mode']}, {env['repeat']} run(s) per script, "
        f"{env['wall_s']:.0f} s wall time), {env['date']}.",
        f"Machine: {env['nproc']} vCPU ({env['cpu']}), {env['memory']} RAM, Linux "
        f"{env['kernel']}; load average (1/5/15 min) {load} before, {load_after} after; "
        "servers, Redis and load generators share the cores.",
        f"Versions: ferrotile {env['ferrotile']} (release build), Python {env['python']}, "
        f"Granian {env['granian']}, Starlette {env['starlette']}, websockets "
        f"{env['websockets']}, numpy {env['numpy']}, redis-server {env['redis']}; Tiled "
        f"{tiled[0] if tiled else '-'} (uvicorn {tiled[1] if len(tiled) > 1 else '-'}, "
        "one process, from PyPI in its own virtualenv); Rust relay and load generator: "
        f"{env.get('crates', '-')} (release build).",
        "Workers: `mem 1w` = ferrotile, 1 Granian worker, in-process hub; `redis 1w` / "
        "`redis 2w` = `--cache redis://...` (private redis-server, no persistence) with 1 / 2 "
        "workers; Tiled = `tiled serve catalog --temp --api-key secret` (in-memory streaming "
        "cache; with `--cache redis://...` in G9); Rust relay = `bench/relay` (hyper 1 + "
        "tokio-tungstenite, one tokio thread); Granian ASGI relay = `bench/granian_relay.py` "
        "(Granian, ASGI, 1 worker): the floor, PUT body or push message -> every subscriber as "
        "is (no envelope, no schema, no auth). Other flags default.",
        "Columns: value = median over the runs; vs Tiled = how many times better than Tiled's "
        "row of the same case in the same run (higher rate, or lower latency/time); server CPU "
        "= utime+stime of the server processes and their Redis over the measured window, from "
        "/proc (median); per server-CPU-s = the work done (frames, messages, requests or MB) "
        "per server-CPU-second; server CPU per frame = server CPU s / frames delivered (summed "
        "over subscribers), or per request or write where nothing is delivered; vs Rust relay = "
        "that figure / the Rust relay's for the same case and driver in the same run (1.00x = "
        "the floor); loss / dup / gaps summed over the runs.",
    ])  # fmt: skip


def write_readme(readme: Path, text: str) -> None:
    """Replace what lies between the markers (appending them at the end if absent)."""
    content = readme.read_text()
    block = f"{BEGIN}\n\n{text}\n\n{END}"
    if BEGIN in content and END in content:
        before = content.split(BEGIN, 1)[0]
        after = content.split(END, 1)[1]
        content = before + block + after
    else:
        content = content.rstrip() + "\n\n" + block + "\n"
    readme.write_text(content)
