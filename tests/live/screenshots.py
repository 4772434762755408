"""Make the live view's screenshots in ``docs/images/`` (rerun after changing the page):

    .venv/bin/python -m tests.live.screenshots

Starts a server on a free port, writes a few streams (a detector-like image stack, a 1-D trace
and a table) from a thread while Chromium shows the listing and the image view, and stops
everything."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from playwright.sync_api import expect, sync_playwright

from tests.api.conftest import array_body
from tests.conftest import start_server, stop_server
from tests.live.conftest import CHROMIUM

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
SHAPE = (256, 320)


def frame(t: float) -> np.ndarray:
    """A ring of scattering that breathes, on a noisy background (uint16)."""
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    r = np.hypot(y - SHAPE[0] / 2, x - SHAPE[1] / 2)
    ring = 3000 * np.exp(-(((r - 70 - 10 * np.sin(t)) / 6) ** 2))
    spots = 1500 * np.exp(-((r - 30) ** 2) / 40) * (1 + np.cos(6 * np.arctan2(y - 128, x - 160)))
    noise = np.random.default_rng(int(t * 1000)).poisson(80, SHAPE)
    return (ring + spots + noise).astype("<u2")


def write_forever(http: httpx.Client, stop: threading.Event) -> None:
    octet = {"Content-Type": "application/octet-stream"}
    n = 1
    while not stop.is_set():
        t = time.monotonic()
        http.put("/array/full/beamline/detector", content=frame(t).tobytes(), headers=octet)
        trace = np.array([np.sin(t + n / 5)], dtype="<f8")
        http.patch("/array/full/beamline/trace", content=trace.tobytes(), headers=octet,
                   params={"offset": str(n), "shape": "1", "extend": "true"})  # fmt: skip
        n += 1
        stop.wait(0.05)


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        stop = threading.Event()
        try:
            headers = {"Authorization": f"Apikey {server.api_key}"}
            http = httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=10)
            empty = {"structure_family": "container", "metadata": {}, "specs": [],
                     "data_sources": []}  # fmt: skip
            http.post("/metadata/", json={"id": "beamline", **empty}).raise_for_status()
            body = array_body("detector", frame(0))
            http.post("/metadata/beamline", json=body).raise_for_status()
            body = array_body("trace", np.zeros(1))
            http.post("/metadata/beamline", json=body).raise_for_status()
            http.post("/metadata/beamline", json={"id": "run-0042", **empty}).raise_for_status()
            writer = threading.Thread(target=write_forever, args=(http, stop), daemon=True)
            writer.start()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1000, "height": 430})
                page.goto(f"{server.url}/live/beamline")
                page.locator("#api-key").fill(server.api_key)
                page.locator("#login button").click()
                rate = page.locator('tr[data-key="detector"] td').nth(5)
                expect(rate).not_to_have_text("", timeout=10_000)
                page.screenshot(path=IMAGES / "live-listing.png")
                page.set_viewport_size({"width": 1000, "height": 640})
                page.goto(f"{server.url}/live/beamline/detector")
                page.locator("#colormap").select_option("viridis")
                expect(page.locator("#fps")).not_to_have_text("0", timeout=10_000)
                page.wait_for_timeout(1500)  # a full second of frames/s
                page.screenshot(path=IMAGES / "live-image.png")
                browser.close()
        finally:
            stop.set()
            stop_server(server)
    print(f"wrote {IMAGES}/live-listing.png and live-image.png")


if __name__ == "__main__":
    main()
