"""``import ferrotile.client`` loads no server module, and the ``ferrotile-client`` distribution
(``python/ferrotile/client/pyproject.toml``) installs and works in a fresh virtualenv that has
none of the server's dependencies."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import RunningServer

CLIENT = Path(__file__).resolve().parents[2] / "python" / "ferrotile" / "client"
SERVER_DEPENDENCIES = ["starlette", "granian", "zarr", "pyarrow", "pandas", "redis", "h5py"]


def test_import_loads_no_server_module() -> None:
    code = "import sys, json, ferrotile.client; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout)
    ours = {m for m in modules if m.startswith("ferrotile")}
    assert ours == {"ferrotile"} | {m for m in ours if m.startswith("ferrotile.client")}
    assert "ferrotile.client.writer" in ours
    assert not [m for m in modules if m.split(".")[0] in SERVER_DEPENDENCIES]


@pytest.mark.timeout(300)
def test_the_client_distribution_in_a_fresh_virtualenv(
    tmp_path: Path, short_memory: RunningServer, key: str
) -> None:
    server = short_memory  # one server is enough (3 frames: within its 5 retained)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(CLIENT)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    script = textwrap.dedent(f"""
        import importlib.util, sys
        import numpy as np
        from ferrotile.client import Frame, connect
        missing = [m for m in {[*SERVER_DEPENDENCIES, "ferrotile.server"]!r}
                   if importlib.util.find_spec(m) is not None]
        assert not missing, missing
        c = connect({server.url!r}, api_key={server.api_key!r})
        with c.writer({key!r}, dtype="<u2", frame_shape=(2, 2)) as w:
            for i in range(3):
                w.send(np.full((2, 2), i, dtype="<u2"))
        frames = [m for m in c.subscribe({key!r}, start=0) if isinstance(m, Frame)]
        print([(f.sequence, int(f.array.sum())) for f in frames])
    """)
    done = subprocess.run([python, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[(1, 0), (2, 4), (3, 8)]"
