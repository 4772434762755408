"""``ferrotile.client`` over TLS (``https://`` and ``wss://``), as at a facility where HAProxy
terminates TLS in front of ferrotile: Debian's haproxy with a certificate made here, trusted
through ``SSL_CERT_FILE``. Frames from 1 KiB to 4 MiB (the writer's sockets are TLS sockets,
which take ``sendall`` instead of ``sendmsg``) come back byte for byte, in order."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest

from ferrotile.client import Frame, Gap, ServerError, connect
from tests.client.collect import Collected
from tests.conftest import RunningServer, free_port
from tests.integration.haproxy_cluster import haproxy_binary

CONFIG = """\
global
    maxconn 256
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 60s
frontend tls
    bind 127.0.0.1:{port} ssl crt {pem}
    default_backend ferrotile
backend ferrotile
    server ferrotile 127.0.0.1:{upstream}
"""


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost: (certificate, certificate + key for haproxy)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    pem = directory / "haproxy.pem"
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    return cert, pem


@pytest.fixture(scope="module")
def tls_url(hub_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``https://localhost:PORT``: haproxy terminating TLS in front of ``hub_server``, with its
    certificate trusted by Python's default context (``SSL_CERT_FILE``) while the module runs."""
    binary = haproxy_binary()
    assert binary, "haproxy is missing: `make system-deps` installs it"
    directory = tmp_path_factory.mktemp("tls")
    cert, pem = certificate(directory)
    port = free_port()
    config = directory / "haproxy.cfg"
    config.write_text(CONFIG.format(port=port, pem=pem, upstream=urlparse(hub_server.url).port))
    proxy = subprocess.Popen([binary, "-f", str(config)], stderr=subprocess.PIPE)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    url = f"https://localhost:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{url}/healthz", verify=str(cert)).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proxy.poll() is None, proxy.stderr.read() if proxy.stderr else ""
            assert time.monotonic() < deadline, "haproxy did not answer over TLS"
            time.sleep(0.1)
        yield url
    finally:
        monkeypatch.undo()
        proxy.terminate()
        proxy.wait(timeout=10)


@pytest.mark.parametrize("size", [1024, 256 * 1024, 4 * 2**20], ids=["1KiB", "256KiB", "4MiB"])
def test_frames_round_trip_over_tls(
    tls_url: str, hub_server: RunningServer, key: str, size: int
) -> None:
    rng = np.random.default_rng(size)
    frames = [rng.integers(0, 256, size=size, dtype=np.uint8) for _ in range(5)]
    with connect(tls_url, api_key=hub_server.api_key) as client:
        assert client.ws_url.startswith("wss://localhost:")
        with client.writer(key, dtype="u1", frame_shape=(size,), window=2) as writer:
            received = Collected(client, key, start=0).start()
            for frame in frames:
                writer.send(frame)
        messages = received.join()
    assert not [m for m in messages if isinstance(m, Gap)]
    got = [m for m in messages if isinstance(m, Frame)]
    assert [f.sequence for f in got] == [1, 2, 3, 4, 5]
    for sent, frame in zip(frames, got, strict=True):
        assert frame.array.tobytes() == sent.tobytes()
    assert writer.last_sequence == 5


def test_an_untrusted_certificate_is_refused(tls_url: str, hub_server: RunningServer) -> None:
    """Without the certificate in the trust store the client refuses the server (it never
    sends the key to an unverified peer)."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("SSL_CERT_FILE")
    try:
        with (
            pytest.raises(ServerError, match=r"CERTIFICATE_VERIFY_FAILED"),
            connect(tls_url, api_key=hub_server.api_key) as client,
        ):
            client.writer("untrusted", dtype="u1", frame_shape=(4,)).close()
    finally:
        monkeypatch.undo()
