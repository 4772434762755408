"""``pip install`` of the wheel gives every API: the wheel is built once (``maturin build
--release``, one abi3 wheel), installed with its dependencies only (no extras, binary wheels
only: nothing is compiled) into a fresh virtualenv, and served from there; then one request of
every API family, each checked for its content. Clients run from the test venv (the stock tiled
client, websockets, httpx), the server only sees what the wheel's dependencies bring.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import httpx
import numpy as np
import pandas as pd
import pytest
import sparse
from tiled.client import from_uri
from websockets.sync.client import connect

from tests.conftest import start_server, stop_server

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
KEY = "wheelkey"  # the stock client only recognizes \w+ keys
AUTH = {"Authorization": f"Apikey {KEY}"}


@dataclass
class Installed:
    wheel: Path
    venv: Path
    url: str
    readable: Path

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _run(*command: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _build(out: Path) -> Path:
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "ferrotile" / "target"))
    maturin = str(Path(sys.executable).parent / "maturin")
    # The interpreter `make build` (maturin develop) used: the same PyO3 configuration, so
    # Cargo reuses its build instead of rebuilding (and the next develop rebuilding again).
    _run(maturin, "build", "--release", "--quiet", "-i", sys.executable, "--out", str(out), env=env)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = _build(tmp / "dist")
    venv = tmp / "venv"
    # The base interpreter, not the test venv's packages: a fresh environment.
    _run(sys.executable, "-m", "venv", str(venv))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run(*pip, "--only-binary=:all:", str(wheel))
    readable = tmp / "files"
    readable.mkdir()
    program = [str(venv / "bin" / "ferrotile")]
    server = start_server(tmp, "-r", str(readable), api_key=KEY, program=program)
    yield Installed(wheel, venv, server.url, readable)
    stop_server(server)


def test_one_abi3_wheel_with_version(installed: Installed) -> None:
    name = installed.wheel.name
    size = installed.wheel.stat().st_size
    print(f"\nwheel {name}: {size} bytes ({size / 2**20:.1f} MiB)")
    assert "-cp311-abi3-" in name, name
    version = name.split("-")[1]
    assert _run(installed.bin("ferrotile"), "--version").strip() == f"ferrotile {version}"
    out = _run(installed.bin("python"), "-m", "ferrotile", "--version")
    assert out.strip() == f"ferrotile {version}"
    # The wheel brings no test or bench extras: the tiled server is not there.
    no_tiled = subprocess.run([installed.bin("python"), "-c", "import tiled"], capture_output=True)
    assert no_tiled.returncode != 0


def test_tiled_api_families(installed: Installed) -> None:
    client = from_uri(installed.url, api_key=KEY)
    array = client.write_array(np.arange(12, dtype="f8").reshape(3, 4), key="a")
    array.patch(np.array([[100.0, 101.0, 102.0, 103.0]]), offset=(3, 0), extend=True)
    np.testing.assert_array_equal(
        client["a"].read(), np.vstack([np.arange(12).reshape(3, 4), [[100, 101, 102, 103]]])
    )
    client.write_dataframe(pd.DataFrame({"x": [1, 2, 3], "name": ["p", "q", "r"]}), key="t")
    assert client["t"].read().to_dict("list") == {"x": [1, 2, 3], "name": ["p", "q", "r"]}
    coo = sparse.COO(coords=np.array([[0, 2], [1, 3]]), data=np.array([1.5, 2.5]), shape=(3, 4))
    client.write_sparse(coords=coo.coords, data=coo.data, shape=coo.shape, key="s")
    np.testing.assert_array_equal(client["s"].read().todense(), coo.todense())
    jagged = ak.Array([[1, 2], [], [3]])
    client.write_awkward(jagged, key="k")
    assert client["k"].read().tolist() == [[1, 2], [], [3]]
    with httpx.Client(base_url=installed.url, headers=AUTH, timeout=10) as http:
        metrics = http.get("/api/v1/metrics")
        assert metrics.status_code == 200 and "ferrotile_" in metrics.text
        pages = (
            ("/", "/openapi.json"),
            ("/docs", "/api/v1/metadata/{path}"),
            ("/live/", "/live/static/live.js"),  # the live view's files are in the wheel
            ("/live/static/viewer.js", "stream/multi"),
        )
        for page, marker in pages:
            response = http.get(page)
            assert response.status_code == 200 and marker in response.text
        assert http.get("/openapi.json").json()["openapi"] == "3.1.0"


def test_registration(installed: Installed) -> None:
    np.save(installed.readable / "frame.npy", np.arange(6, dtype="i4").reshape(2, 3))
    (installed.readable / "rows.csv").write_text("a,b\n1,x\n2,y\n")
    _run(
        installed.bin("ferrotile"), "register", installed.url, str(installed.readable),
        "--prefix", "/files", "--api-key", KEY,
    )  # fmt: skip
    client = from_uri(installed.url, api_key=KEY)
    np.testing.assert_array_equal(client["files/frame"].read(), np.arange(6).reshape(2, 3))
    assert client["files/rows"].read().to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}


def test_stream_subscription(installed: Installed) -> None:
    client = from_uri(installed.url, api_key=KEY)
    node = client.write_array(np.zeros(3, dtype="i8"), key="live")
    url = f"{installed.ws}/api/v1/stream/single/live?envelope_format=json"
    with connect(url, additional_headers=AUTH, open_timeout=10) as ws:
        schema = json.loads(ws.recv(timeout=10))
        assert schema["type"] == "array-schema" and schema["data_type"]["kind"] == "i"
        node.write(np.array([7, 8, 9]))
        message = json.loads(ws.recv(timeout=10))
    assert message["type"] == "array-data" and message["sequence"] == 2
    assert message["payload"] == [7, 8, 9]


def test_redis_streamer_and_graphql(installed: Installed) -> None:
    base = f"{installed.ws}/data"
    with connect(f"{base}/cam/push?ack=true", additional_headers=AUTH, open_timeout=10) as push:
        push.send(json.dumps([2, 7]))
        push.send(b"abhello")
        pushed = json.loads(push.recv(timeout=10))
    assert len(pushed) == 2
    pull_url = f"{base}/cam/pull?last_entry_id=0&count=10"
    with connect(pull_url, additional_headers=AUTH, open_timeout=10) as pull:
        header = json.loads(pull.recv(timeout=10))
        body = pull.recv(timeout=10)
    assert header == [["cam", pushed[0], 2], ["cam", pushed[1], 7]] and body == b"abhello"
    with httpx.Client(base_url=installed.url, headers=AUTH, timeout=10) as http:
        files = [("entries", ("e", b"third", "application/octet-stream"))]
        posted = http.post("/data/cam", files=files)
        assert posted.status_code == 200 and len(posted.json()) == 1
        read = http.get("/data/cam", params={"last_entry_id": pushed[1]})
        assert read.status_code == 200 and read.content == b"third"
        assert json.loads(read.headers["x-offsets"]) == [["cam", posted.json()[0], 5]]
        answer = http.post("/graphql", json={"query": '{ stream(id: "default:cam") { length } }'})
        assert answer.status_code == 200 and answer.json() == {"data": {"stream": {"length": 3}}}
