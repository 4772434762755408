"""G13, persisted appends into zarr: ferrotile side by side with Tiled 0.2.20, from the writers
a detector runs, and the files an append leaves on disk.

Usage (from the repository root, after ``make build``)::

    .venv/bin/python bench/persist_bench.py [--quick] [--json OUT] \
        [--targets ferrotile-memory,tiled] [--base DIR --rounds N] \
        [--cases patch256k,patch8m,lpatch256k,lpatch8m,push1k,push256k,push8m,files]

``--base DIR`` runs ferrotile twice per round, alternating: the build in ``DIR`` (a copy of
``python/`` holding another build of the extension, e.g. main's, put first on ``PYTHONPATH``;
its rows say ``(base)``) and this checkout's; ``--rounds`` repeats that (side by side on a
shared machine).

Cases (each on a fresh array; frames are incompressible noise, so zstd cannot shrink them):

- ``PATCH extend``, the stock tiled 0.2.20 client: ``x.patch(frame, offset=(i,), extend=True)``
  in a loop (one request in flight), 256 KiB and 8 MiB ``uint16`` frames of a ``(n, h, w)``
  array created with ``write_array`` (one frame per chunk, as the stock client makes it).
- ``PATCH extend`` with the stock client's request pattern from the Rust load generator
  (``ferrotile-loadgen patch``: one request in flight, ``?offset=i,0&shape=1,n&extend=true``
  into a ``(rows, n)`` ``uint8`` array), 256 KiB and 8 MiB noise frames: the server's rate
  without the stock client's own cost (~2 ms of client CPU per 256 KiB ``x.patch`` here).
- WS push with ``persist=true&mode=append`` (ferrotile only: Tiled has no push route), from the
  Rust load generator (``ferrotile-loadgen push --noise``, up to 64 frames awaiting their ack),
  1 KiB, 256 KiB and 8 MiB frames of a 1-D ``uint8`` array whose chunk is one frame.
- Files per 10,000 appended 1 KiB frames: files under the array's zarr directory after the
  appends, scaled to 10,000 frames. ferrotile: 10,000 frames over the push WebSocket. Tiled:
  ``x.patch`` of 1 KiB frames from the stock client (fewer frames: Tiled writes a few dozen per
  second; its files grow by one per frame).

Server CPU is utime+stime of the server's process tree over each timed loop (from /proc).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

import protocol
from loadgen_driver import Loadgen
from stream_procs import API_KEY, Target, script_parser, stop_all

KiB, MiB = 1024, 1024 * 1024
STOCK = "stock tiled 0.2.20 client"
LOADGEN = "ferrotile-loadgen (Rust, tokio)"
#: Seconds per timed case; frames per file count (ferrotile, Tiled).
SIZES = {"quick": {"seconds": 1.5, "files_n": 10_000, "tiled_files_n": 100},
         "full": {"seconds": 8.0, "files_n": 10_000, "tiled_files_n": 500}}  # fmt: skip


def noise_frame(nbytes: int) -> np.ndarray:
    """A ``(1, h, w)`` uint16 frame of ``nbytes`` of noise."""
    w = 256 if nbytes >= 256 * KiB else 32
    h = nbytes // 2 // w
    return np.random.default_rng(nbytes).integers(0, 2**16, (1, h, w), dtype="<u2")


def zarr_files(target: Target, key: str) -> int:
    """Files under ``key``'s zarr directory (from its data source's asset)."""
    headers = {"Authorization": f"Apikey {API_KEY}"}
    meta = httpx.get(
        f"{target.http}/api/v1/metadata/{key}",
        params={"include_data_sources": "true"},
        headers=headers,
        timeout=30,
    ).json()
    uri = meta["data"]["attributes"]["data_sources"][0]["assets"][0]["data_uri"]
    root = Path(unquote(urlparse(uri).path))
    return sum(1 for p in root.rglob("*") if p.is_file())


def stock_patch(
    target: Target, key: str, nbytes: int, seconds: float, limit: int
) -> dict[str, Any]:
    """``x.patch(frame, offset=(i,), extend=True)`` in a loop; frames/s and server CPU."""
    from tiled.client import from_uri

    client = from_uri(target.http, api_key=API_KEY)
    try:
        frame = noise_frame(nbytes)
        x = client.write_array(frame, key=key)
        for i in range(1, 4):  # warm-up
            x.patch(frame, offset=(i,), extend=True)
        done, cpu0, own0, t0 = 0, target.cpu(), time.process_time(), time.monotonic()
        while done < limit and time.monotonic() - t0 < seconds:
            x.patch(frame, offset=(4 + done,), extend=True)
            done += 1
        elapsed, cpu = time.monotonic() - t0, target.cpu() - cpu0
        client_cpu = time.process_time() - own0
        shape = client[key].structure().shape
        return {
            "frames": done,
            "seconds": elapsed,
            "server_cpu_s": cpu,
            "shape0": shape[0],
            "client_cpu_s": client_cpu,
        }
    finally:
        client.context.close()


def loadgen_push(
    gen: Loadgen, target: Target, key: str, nbytes: int, seconds: float, frames: int = 0
) -> dict[str, Any]:
    url = f"{target.ws}/api/v1/stream/push/{key}?persist=true&mode=append"
    gen.run("put", "--url", target.http, "--key", key, "--size", str(nbytes), "--create",
            "--rate", "1", "--duration", "0", "--api-key", API_KEY)  # fmt: skip
    cpu0 = target.cpu()
    result = gen.run("push", "--url", url, "--size", str(nbytes), "--api-key", API_KEY, "--max",
                     "--window", "64", "--noise", "--duration", str(seconds),
                     "--requests", str(frames), timeout=seconds + 120)  # fmt: skip
    result["server_cpu_s"] = target.cpu() - cpu0
    return result


def loadgen_patch(
    gen: Loadgen, target: Target, key: str, nbytes: int, seconds: float
) -> dict[str, Any]:
    cpu0 = target.cpu()
    result = gen.run("patch", "--url", target.http, "--key", key, "--size", str(nbytes), "--create",
                     "--max", "--duration", str(seconds), "--api-key", API_KEY,
                     timeout=seconds + 120)  # fmt: skip
    result["server_cpu_s"] = target.cpu() - cpu0
    return result


def rate_row(case: str, target: str, driver: str, frames: int, seconds: float, cpu: float,
             detail: str, notes: str = "") -> dict[str, Any]:  # fmt: skip
    value = frames / seconds if seconds else None
    return protocol.row("G13", case, target, driver, "frames/s", value, server_cpu_s=cpu,
                        work=frames, per_cpu_unit="frames", detail=detail, notes=notes)  # fmt: skip


ALL_CASES = "patch256k,patch8m,lpatch256k,lpatch8m,push1k,push256k,push8m,files"


def run_target(
    name: str, sizes: dict[str, Any], gen: Loadgen, logdir: Path, cases: set[str],
    base: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    rows: list[dict[str, Any]] = []
    target = Target(name, logdir)
    label = f"{name} (base)" if base else name
    ferrotile = target.kind == "ferrotile"
    seconds = sizes["seconds"]

    def attempt(case: str, driver: str, run: Any) -> None:
        t0 = time.monotonic()
        try:
            rows.append(run())
        except Exception as error:
            rows.append(protocol.row("G13", case, label, driver, "error", None,
                                     notes=f"{type(error).__name__}: {error}"))  # fmt: skip
        print(f"  {label} {case}: {time.monotonic() - t0:.1f} s", file=sys.stderr)

    def patch_case(nbytes: int, size: str) -> dict[str, Any]:
        limit = 5_000 if nbytes < MiB else 500
        r = stock_patch(target, f"p{nbytes}", nbytes, seconds, limit)
        per = r["server_cpu_s"] / max(r["frames"], 1) * 1e6
        client = r["client_cpu_s"] / max(r["frames"], 1) * 1e6
        return rate_row(f"PATCH extend {size}, one in flight", label, STOCK, r["frames"],
                        r["seconds"], r["server_cpu_s"],
                        f"{r['frames']:,} frames; shape[0] after: {r['shape0']:,}; "
                        f"server CPU {per:,.0f} us/frame, "
                        f"client CPU {client:,.0f} us/frame")  # fmt: skip

    def lean_patch_case(nbytes: int, size: str) -> dict[str, Any]:
        r = loadgen_patch(gen, target, f"l{nbytes}", nbytes, seconds)
        per = r["server_cpu_s"] / max(int(r["ok"]), 1) * 1e6
        notes = f"non-2xx: {r['non_2xx']} (first {r.get('first_status')})" if r["non_2xx"] else ""
        return rate_row(f"PATCH extend {size}, one in flight (lean)", label, LOADGEN,
                        int(r["ok"]), r["seconds"], r["server_cpu_s"],
                        f"p50 {r.get('p50_ms', 0) or 0:.2f} ms, p99 {r.get('p99_ms', 0) or 0:.1f} "
                        f"ms; server CPU {per:,.0f} us/frame", notes)  # fmt: skip

    def push_case(nbytes: int, size: str) -> dict[str, Any]:
        r = loadgen_push(gen, target, f"w{nbytes}", nbytes, seconds)
        notes = f"problem: {r['first_problem']}" if r.get("first_problem") else ""
        per = r["server_cpu_s"] / max(int(r["ok"]), 1) * 1e6
        return rate_row(f"WS push persist {size}", label, LOADGEN, int(r["ok"]), r["seconds"],
                        r["server_cpu_s"],
                        f"{int(r['ok']):,} acked, ack p50 {r.get('p50_ms', 0) or 0:.1f} ms "
                        f"p99 {r.get('p99_ms', 0) or 0:.1f} ms; server CPU {per:,.0f} us/frame",
                        notes)  # fmt: skip

    def files_case() -> dict[str, Any]:
        if ferrotile:
            n = sizes["files_n"]
            r = loadgen_push(gen, target, "files", KiB, 600.0, frames=n)
            n, driver = int(r["ok"]), LOADGEN
            key = "files"
        else:
            n = sizes["tiled_files_n"]
            stock_patch(target, "files", KiB, 600.0, n - 4)
            driver, key = STOCK, "files"
        files = zarr_files(target, key)
        per_10k = files * 10_000 / max(n, 1)
        return protocol.row("G13", "files per 10,000 appended 1 KiB frames", label, driver,
                            "files", per_10k, higher_is_better=False,
                            detail=f"{files:,} files after {n:,} frames (incl. zarr.json)"
                            + ("" if n >= 10_000 else "; scaled to 10,000"))  # fmt: skip

    saved = os.environ.get("PYTHONPATH")
    try:
        if base:
            os.environ["PYTHONPATH"] = base
        target.start()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        if "patch256k" in cases:
            attempt("PATCH extend 256 KiB", STOCK, lambda: patch_case(256 * KiB, "256 KiB"))
        if "patch8m" in cases:
            attempt("PATCH extend 8 MiB", STOCK, lambda: patch_case(8 * MiB, "8 MiB"))
        if "lpatch256k" in cases:
            attempt("PATCH extend 256 KiB (lean)", LOADGEN,
                    lambda: lean_patch_case(256 * KiB, "256 KiB"))  # fmt: skip
        if "lpatch8m" in cases:
            attempt("PATCH extend 8 MiB (lean)", LOADGEN, lambda: lean_patch_case(8 * MiB, "8 MiB"))
        if ferrotile:
            for nbytes, size in ((KiB, "1 KiB"), (256 * KiB, "256 KiB"), (8 * MiB, "8 MiB")):
                if "push" + size.replace(" ", "").lower().replace("ib", "") in cases:
                    attempt(f"push {size}", LOADGEN, lambda n=nbytes, z=size: push_case(n, z))
        if "files" in cases:
            attempt("files", STOCK, files_case)
    finally:
        target.close()
    return rows


def main() -> None:
    parser = script_parser(__doc__, "ferrotile-memory,tiled")
    parser.add_argument("--cases", default=ALL_CASES, help=f"comma-separated, from: {ALL_CASES}")
    parser.add_argument("--base", help="a copy of python/ with another build, run alternately")
    parser.add_argument("--rounds", type=int, default=1, help="rounds (with --base)")
    args = parser.parse_args()
    cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    protocol.interrupt_on_signals()
    sizes = SIZES["quick" if args.quick else "full"]
    logdir = Path(tempfile.mkdtemp(prefix="persist-bench-"))
    gen = Loadgen()
    rows: list[dict[str, Any]] = []
    try:
        for _ in range(args.rounds):
            for name in [n.strip() for n in args.targets.split(",") if n.strip()]:
                if args.base and name.startswith("ferrotile"):
                    rows += run_target(name, sizes, gen, logdir, cases, base=args.base)
                rows += run_target(name, sizes, gen, logdir, cases)
    finally:
        gen.kill_all()
        stop_all()
    protocol.write(args.json, rows)
    for row in rows:
        value = row["value"] if row["value"] is not None else float("nan")
        print(f"{row['target']:25s} {row['case']:42s} {value:10,.1f} {row['metric']:9s} "
              f"{row['detail'] or row['notes']}")  # fmt: skip


if __name__ == "__main__":
    main()
