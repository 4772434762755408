"""Seed 004's persistent deployment: ``serve catalog --init ./catalog.db -w duckdb://./storage.db
-w ./data``, i.e. appendable tables (Bluesky's event tables) in DuckDB, with the stock client."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bluesky.plans as bp
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from ophyd.sim import hw
from tiled.client import from_uri

from tests.bluesky_flows.conftest import Recorded
from tests.conftest import API_KEY, free_port

SEED = ["--init", "./catalog.db", "-w", "duckdb://./storage.db", "-w", "./data"]


def serve(directory: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """``ferrotile serve catalog ARGS`` run from ``directory`` (the seed uses relative paths)."""
    port = free_port()
    command = [sys.executable, "-m", "ferrotile", "serve", "catalog", *args,
               "--api-key", API_KEY, "--port", str(port)]  # fmt: skip
    log = (directory / f"server-{port}.log").open("wb")
    process = subprocess.Popen(command, cwd=directory, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {(directory / log.name).read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=15)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    directory = tmp_path_factory.mktemp("deployment")
    process, url = serve(directory, *SEED)
    yield directory, url
    stop(process)


SCHEMA = pa.schema(
    [
        ("i", pa.int64()),
        ("f", pa.float64()),
        ("s", pa.string()),
        ("b", pa.bool_()),
        ("u8", pa.uint8()),
        ("t", pa.timestamp("us")),
    ]
)


def rows(start: int, n: int) -> pa.Table:
    i = np.arange(start, start + n)
    return pa.table(
        {
            "i": i,
            "f": np.where(i % 3 == 0, np.nan, i * 0.5),
            "s": [None if k % 4 == 0 else f"s{k}" for k in i],
            "b": i % 2 == 0,
            "u8": pa.array(i % 256, pa.uint8()),
            "t": pa.array(i * 1_000_000, pa.timestamp("us")),
        },
        schema=SCHEMA,
    )


def test_appendable_tables_on_duckdb(deployment: tuple[Path, str], key: str) -> None:
    directory, url = deployment
    client = from_uri(url, api_key=API_KEY)
    table = client.create_appendable_table(SCHEMA, key=key, npartitions=2)
    table.append_partition(0, rows(0, 3))
    table.append_partition(1, rows(100, 2))
    table.append_partition(0, rows(3, 4))
    expected = pa.concat_tables([rows(0, 3), rows(3, 4), rows(100, 2)]).to_pandas()
    got = client[key].read().reset_index(drop=True)  # partitions keep their own index
    # Same values; pandas' string dtype flavour (NA vs NaN) depends on how the client built it.
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert [str(t) for t in got.dtypes] == [
        "int64",
        "float64",
        "string",
        "bool",
        "uint8",
        "datetime64[us]",
    ]
    assert np.isnan(got["f"][0])  # DuckDB keeps NaN (SQLite would store null)
    partition = client[key].read_partition(1)
    pd.testing.assert_frame_equal(partition, rows(100, 2).to_pandas(), check_dtype=False)
    (source,) = client[key].data_sources()
    assert source.assets[0].data_uri == f"duckdb:///{directory / 'storage.db'}"
    assert (directory / "storage.db").is_file()  # relative to the server's directory
    client.delete_contents(key, external_only=False)
    assert key not in client


def test_bluesky_runs_on_duckdb_survive_a_restart(tmp_path: Path) -> None:
    process, url = serve(tmp_path, *SEED)
    engine, recorded = RunEngine({}), Recorded()
    try:
        devices = hw(save_path=str(tmp_path))
        engine.subscribe(recorded)
        engine.subscribe(TiledWriter(from_uri(url, api_key=API_KEY)))
        (uid,) = engine(bp.scan([devices.det], devices.motor, -1, 1, 4))
    finally:
        engine.loop.call_soon_threadsafe(engine.loop.stop)
        stop(process)  # the DuckDB file is unlocked when the server stops
    process, url = serve(tmp_path, *SEED[1:])  # same files, without --init
    try:
        table = from_uri(url, api_key=API_KEY)[uid]["primary"].base["internal"].read()
        for key in ("det", "motor", "motor_setpoint"):
            np.testing.assert_array_equal(table[key], recorded.column(key))
        assert list(table["seq_num"]) == [1, 2, 3, 4]
    finally:
        stop(process)


def _serve_error(*args: str, cwd: Path, prelude: str = "") -> str:
    code = f"{prelude}import sys; from ferrotile.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", code, "serve", "catalog", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_duckdb_refusals_are_one_line(tmp_path: Path) -> None:
    line = _serve_error("--temp", "-w", "duckdb://./t.db", "--workers", "2",
                        "--cache", "redis://127.0.0.1:1", cwd=tmp_path)  # fmt: skip
    assert "DuckDB table storage serves one process" in line
    line = _serve_error("--temp", "-w", "duckdb://elsewhere/t.db", cwd=tmp_path)
    assert "duckdb:////absolute.db" in line
    line = _serve_error("--temp", "-w", "duckdb:///:memory:", cwd=tmp_path)
    assert "in-memory" in line
    # Without the duckdb package (its ADBC driver made unimportable): the extra is named.
    line = _serve_error(
        "--temp", "-w", "duckdb://./t.db", cwd=tmp_path,
        prelude="import sys; sys.modules['adbc_driver_duckdb'] = None; ",
    )  # fmt: skip
    assert "pip install 'ferrotile[duckdb]'" in line
    assert not (tmp_path / "t.db").exists()
