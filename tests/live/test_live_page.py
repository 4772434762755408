"""The live view in a real headless Chromium against a real server: known frames are written
through the API and read back from the page (the frame counter, the canvas's pixels), pause,
a wrong key, the listing picking up a new node, and the msgpack decoder against Python's
encoder."""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from playwright.sync_api import expect

from tests.api.conftest import array_body
from tests.conftest import RunningServer

#: The longest any wait for the page may take (a bound, not a timing assertion).
WAIT_MS = 10_000


def login(page: Any, url: str, api_key: str) -> None:
    page.goto(url)
    page.locator("#api-key").fill(api_key)
    page.locator("#login button").click()


def container(http: httpx.Client, key: str) -> None:
    body = {"id": key, "structure_family": "container", "metadata": {}, "specs": [],
            "data_sources": []}  # fmt: skip
    assert http.post("/metadata/", json=body).status_code == 200


def put(http: httpx.Client, path: str, array: np.ndarray) -> None:
    response = http.put(f"/array/full/{path}", content=array.tobytes(),
                        headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert response.status_code == 200, response.text


def canvas_pixels(page: Any) -> np.ndarray:
    """The image canvas as (height, width, 4) RGBA bytes."""
    width, height, data = page.evaluate(
        """() => {
            const canvas = document.getElementById("image");
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
            return [canvas.width, canvas.height, Array.from(pixels.data)];
        }"""
    )
    return np.array(data, dtype=np.uint8).reshape(height, width, 4)


def gray(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """What the page's gray map draws: round((v - lo) * 255 / (hi - lo)), clipped (JavaScript's
    Math.round: halves up)."""
    scaled = np.floor((values.astype(np.float64) - lo) * (255 / (hi - lo)) + 0.5)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def fixed_contrast(page: Any, lo: float, hi: float) -> None:
    page.locator("#auto").uncheck()
    page.locator("#vmin").fill(str(lo))
    page.locator("#vmin").dispatch_event("change")
    page.locator("#vmax").fill(str(hi))
    page.locator("#vmax").dispatch_event("change")


def assert_shows(page: Any, sequence: int, expected: np.ndarray) -> None:
    expect(page.locator("#frame")).to_have_text(str(sequence), timeout=WAIT_MS)
    pixels = canvas_pixels(page)
    assert pixels.shape[:2] == expected.shape
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], expected)
    assert (pixels[..., 3] == 255).all()


def open_image(page: Any, live_server: RunningServer, path: str, sequence: int) -> None:
    login(page, f"{live_server.url}/live/{path}", live_server.api_key)
    expect(page.locator("#status")).to_have_text("live", timeout=WAIT_MS)
    expect(page.locator("#frame")).to_have_text(str(sequence), timeout=WAIT_MS)


GRADIENT = np.add.outer(2 * np.arange(32), 4 * np.arange(48)).astype(np.uint8)  # 0..250
CHECKERBOARD = np.where(np.add.outer(np.arange(40) // 8, np.arange(24) // 8) % 2, 3000, 1000)


def test_wrong_key_shows_an_error_and_keys_stay_out_of_urls(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("websocket", lambda socket: urls.append(socket.url))
    login(page, f"{live_server.url}/live/", "not-the-key")
    expect(page.locator("#error")).to_have_text("Invalid API key", timeout=WAIT_MS)
    expect(page.locator("#login")).to_be_visible()
    page.locator("#api-key").fill(live_server.api_key)
    page.locator("#login button").click()
    expect(page.locator("#error")).to_be_hidden(timeout=WAIT_MS)
    expect(page.locator("#listing")).to_be_visible(timeout=WAIT_MS)
    assert urls and not [u for u in urls if "not-the-key" in u or live_server.api_key in u]


def test_listing_shows_a_new_node_within_a_second(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    container(http, key)
    login(page, f"{live_server.url}/live/{key}", live_server.api_key)
    expect(page.locator("#listing-note")).to_contain_text("No entries yet", timeout=WAIT_MS)
    assert http.post(f"/metadata/{key}", json=array_body("new", GRADIENT)).status_code == 200
    row = page.locator('tr[data-key="new"]')
    # The listing polls once a second: the bound leaves room for a loaded machine.
    expect(row).to_be_visible(timeout=WAIT_MS)
    expect(row.locator("td").nth(2)).to_have_text("(32, 48)")
    expect(row.locator("td").nth(3)).to_have_text("|u1")
    for _ in range(4):
        put(http, f"{key}/new", GRADIENT)
    expect(row.locator("td").nth(4)).to_have_text("4", timeout=WAIT_MS)
    assert row.locator("a").get_attribute("href") == f"/live/{key}/new"


ENVELOPE = {"type": "array-data", "sequence": 7, "shape": [2, 3], "offset": None, "block": None,
            "payload": bytes(range(6)), "timestamp": "2026-12-07T02:00:00.123456"}  # fmt: skip
INTEGERS = [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1, -1, -32, -33,
            -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**53) + 1]  # fmt: skip
SCALARS = [1.5, -0.25, 1e300, True, False, None, "", "x" * 31, "y" * 32, "z" * 300, "é" * 40000]
LONG = {"k" * 20: list(range(20)), "bin": b"\x00" * 70000, "nested": [{"a": [[]]}] * 17}


@pytest.mark.parametrize("value", [ENVELOPE, INTEGERS, SCALARS, LONG])
def test_msgpack_decoder_reads_what_python_encodes(
    page: Any, live_server: RunningServer, value: Any
) -> None:
    page.goto(f"{live_server.url}/live/")
    encoded = list(msgpack.packb(value, use_bin_type=True))
    decoded = page.evaluate(
        """async (bytes) => {
            const { decode } = await import("/live/static/msgpack.js");
            const replacer = (k, v) => v instanceof Uint8Array ? {bin: Array.from(v)} : v;
            return JSON.stringify(decode(new Uint8Array(bytes)), replacer);
        }""",
        encoded,
    )

    def binary(v: Any) -> Any:
        if isinstance(v, bytes):
            return {"bin": list(v)}
        if isinstance(v, dict):
            return {k: binary(x) for k, x in v.items()}
        if isinstance(v, list):
            return [binary(x) for x in v]
        return v

    assert json.loads(decoded) == binary(value)
