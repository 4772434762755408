"""The live view in a real headless Chromium against a real server: known frames are written
through the API and read back from the page (the frame counter, the canvas's pixels), pause,
a wrong key, the listing picking up a new node, and the msgpack decoder against Python's
encoder."""

from __future__ import annotations

import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import msgpack
import numpy as np
import pyarrow as pa
import pytest
from playwright.sync_api import expect
from websockets.sync.client import connect

from tests.api.conftest import array_body
from tests.api.test_table_stream import create_table, ipc
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


def test_canvas_shows_a_gradient_then_a_checkerboard(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    container(http, key)
    assert http.post(f"/metadata/{key}", json=array_body("g", GRADIENT)).status_code == 200
    put(http, f"{key}/g", np.zeros_like(GRADIENT))  # sequence 1
    open_image(page, live_server, f"{key}/g", 1)  # the newest frame, replayed
    fixed_contrast(page, 0, 255)
    put(http, f"{key}/g", GRADIENT)
    assert_shows(page, 2, GRADIENT)  # the gray map with 0..255: pixel = value
    fixed_contrast(page, 20, 220)  # redraws the frame shown
    assert_shows(page, 2, gray(GRADIENT, 20, 220))

    board = CHECKERBOARD.astype(">u2")  # big-endian: byte order is the page's job too
    assert http.post(f"/metadata/{key}", json=array_body("c", board)).status_code == 200
    put(http, f"{key}/c", board)
    page.goto(f"{live_server.url}/live/{key}/c")  # the key is kept for the tab
    expect(page.locator("#frame")).to_have_text("1", timeout=WAIT_MS)
    fixed_contrast(page, 0, 4000)
    put(http, f"{key}/c", board[::-1].copy())
    assert_shows(page, 2, gray(CHECKERBOARD[::-1], 0, 4000))  # 1000 -> 64, 3000 -> 191
    page.locator("#colormap").select_option("viridis")
    fixed_contrast(page, 1000, 3000)
    pixels = canvas_pixels(page)
    low, high = pixels[CHECKERBOARD[::-1] == 1000], pixels[CHECKERBOARD[::-1] == 3000]
    assert (low[:, :3] == [68, 1, 84]).all() and (high[:, :3] == [253, 231, 37]).all()


def test_auto_contrast_histogram_and_figures(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    container(http, key)
    frame = (GRADIENT.astype(np.float32) - 100) / 7
    assert http.post(f"/metadata/{key}", json=array_body("f", frame)).status_code == 200
    put(http, f"{key}/f", frame)
    open_image(page, live_server, f"{key}/f", 1)
    # Auto contrast: the frame's range, lowest value black, highest white.
    assert math.isclose(float(page.locator("#vmin").input_value()), frame.min(), rel_tol=1e-4)
    assert math.isclose(float(page.locator("#vmax").input_value()), frame.max(), rel_tol=1e-4)
    assert_shows(page, 1, gray(frame, float(frame.min()), float(frame.max())))
    assert page.locator("#shape").inner_text() == "32 \N{MULTIPLICATION SIGN} 48"
    assert page.locator("#lag").inner_text().endswith(" ms")
    drawn = page.evaluate(
        """() => {
            const c = document.getElementById("histogram");
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
            return n;
        }"""
    )
    assert drawn > 500  # bars, limits and labels were drawn


def test_pause_stops_updates(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    container(http, key)
    assert http.post(f"/metadata/{key}", json=array_body("p", GRADIENT)).status_code == 200
    put(http, f"{key}/p", GRADIENT)
    open_image(page, live_server, f"{key}/p", 1)
    fixed_contrast(page, 0, 255)
    page.locator("#pause").click()
    expect(page.locator("#status")).to_have_text("paused")
    put(http, f"{key}/p", 255 - GRADIENT)
    put(http, f"{key}/p", GRADIENT // 2)
    expect(page.locator("#newest")).to_have_text("3", timeout=WAIT_MS)  # received, not shown
    assert_shows(page, 1, GRADIENT)
    page.locator("#pause").click()  # resume: the newest frame
    assert_shows(page, 3, GRADIENT // 2)


def test_frame_counter_advances_with_pushed_frames(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    """Frames appended along the first axis (the push route's way): the newest one is shown."""
    container(http, key)
    stack = np.stack([GRADIENT, 255 - GRADIENT, GRADIENT // 3])
    assert http.post(f"/metadata/{key}", json=array_body("s", stack)).status_code == 200
    put(http, f"{key}/s", stack)
    open_image(page, live_server, f"{key}/s", 1)
    fixed_contrast(page, 0, 255)
    assert_shows(page, 1, GRADIENT // 3)
    for n, frame in enumerate([GRADIENT, 255 - GRADIENT], start=2):
        response = http.patch(
            f"/array/full/{key}/s", params={"offset": f"{n + 1},0,0", "shape": "1,32,48",
                                            "extend": "true"},
            content=frame.tobytes(), headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        assert_shows(page, n, frame)


def drawn(page: Any, received: int) -> None:
    """Waits until the page has received its ``received``-th frame and drawn it: the page draws
    the newest frame in its next animation frame, before a callback queued after it runs."""
    expect(page.locator("#received")).to_have_text(str(received), timeout=WAIT_MS)
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => done()))")


def test_n_dimensional_array_shows_the_chosen_plane(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    """A 4-D array: the last 2-D plane by default; a slice typed in the page (the API's syntax,
    applied by the server) picks another plane, for the frame shown and the frames after."""
    container(http, key)
    plane = np.add.outer(np.arange(24), 2 * np.arange(32))  # 0..85
    planes = np.arange(6).reshape(2, 3)[..., None, None]
    volume = (plane + 100 * planes).astype("<u2")  # plane [i, j] holds 100 * (3i + j) + plane
    assert volume.shape == (2, 3, 24, 32)
    assert http.post(f"/metadata/{key}", json=array_body("v", volume)).status_code == 200
    put(http, f"{key}/v", volume)
    open_image(page, live_server, f"{key}/v", 1)
    fixed_contrast(page, 0, 600)
    assert_shows(page, 1, gray(volume[1, 2], 0, 600))
    assert page.locator("#shape").inner_text() == "24 \N{MULTIPLICATION SIGN} 32"

    page.locator("#slice").fill("0,1")
    page.locator("#slice").dispatch_event("change")
    drawn(page, 2)  # the newest frame again, through the slice
    assert_shows(page, 1, gray(volume[0, 1], 0, 600))
    put(http, f"{key}/v", volume[::-1, ::-1].copy())  # [0, 1] now holds the old [1, 1]
    assert_shows(page, 2, gray(volume[1, 1], 0, 600))

    page.locator("#slice").fill("1,:,::2,::2")  # any selection that leaves a 3-D array
    page.locator("#slice").dispatch_event("change")
    drawn(page, 4)
    assert_shows(page, 2, gray(volume[0, 0, ::2, ::2], 0, 600))  # [1, 2] of the reversed
    assert page.locator("#shape").inner_text() == "12 \N{MULTIPLICATION SIGN} 16"
    assert page.locator("#error").is_hidden()

    page.locator("#slice").fill("2,0")  # out of range: the server's answer, the frame stays
    page.locator("#slice").dispatch_event("change")
    expect(page.locator("#error")).to_contain_text("Invalid slice", timeout=WAIT_MS)
    assert_shows(page, 2, gray(volume[0, 0, ::2, ::2], 0, 600))


def test_max_fps_bounds_what_arrives_and_frames_per_second_counts_draws(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    """The page's max fps (5 here) is the server's max_fps: frames written 20 a second arrive
    at most 5 a second, the rest counted as skipped, and the newest arrives; frames/s (draws in
    the last second) is not 0 while frames come, within max fps, and 0 once they stop."""
    container(http, key)
    assert http.post(f"/metadata/{key}", json=array_body("r", GRADIENT)).status_code == 200
    put(http, f"{key}/r", GRADIENT)
    open_image(page, live_server, f"{key}/r", 1)
    fixed_contrast(page, 0, 255)
    page.locator("#max-fps").fill("5")
    page.locator("#max-fps").dispatch_event("change")
    drawn(page, 2)  # the frame shown, again, through the new subscription
    expect(page.locator("#fps")).to_have_text(re.compile(r"^\d+$"), timeout=WAIT_MS)
    frames = [np.roll(GRADIENT, n, axis=1) for n in range(1, 41)]

    def write() -> None:
        with httpx.Client(base_url=http.base_url, headers=http.headers, timeout=10) as writer:
            for frame in frames:
                put(writer, f"{key}/r", frame)
                time.sleep(0.05)

    rates: list[int] = []
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        writing = pool.submit(write)
        while not writing.done():
            rates.append(int(page.locator("#fps").inner_text()))
            page.wait_for_timeout(100)
        writing.result()
    elapsed = time.monotonic() - started
    assert_shows(page, len(frames) + 1, frames[-1])
    received = int(page.locator("#received").inner_text()) - 2  # since the writes began
    skipped = int(page.locator("#skipped").inner_text())
    assert received + skipped == len(frames)
    # One every 200 ms from before the writes began to after the held newest went (+ 3).
    assert received <= 5 * elapsed + 3 and skipped > 0, (received, elapsed)
    # At most 6 draws fit in a second at 5 a second; one more for frames delayed unevenly.
    assert 1 <= max(rates) <= 7, rates
    expect(page.locator("#fps")).to_have_text("0", timeout=WAIT_MS)


def colour_count(page: Any, canvas: str, rgb: tuple[int, int, int]) -> int:
    """How many pixels of ``canvas`` are within 30 of ``rgb`` in each channel (a plotted line's
    colour; its edges are blended with the background)."""
    count: int = page.evaluate(
        """([id, rgb]) => {
            const c = document.getElementById(id);
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            const near = (i) => [0, 1, 2].every((k) => Math.abs(d[i + k] - rgb[k]) <= 30);
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3] === 255 && near(i)) n++;
            return n;
        }""",
        [canvas, list(rgb)],
    )
    return count


BLUE, RED = (31, 119, 180), (214, 39, 40)  # the plot's first two line colours


def test_one_dimensional_array_plots_the_newest_rows(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    container(http, key)
    first = np.array([0.0])
    assert http.post(f"/metadata/{key}", json=array_body("trace", first)).status_code == 200
    put(http, f"{key}/trace", first)
    login(page, f"{live_server.url}/live/{key}/trace", live_server.api_key)
    expect(page.locator("#frame")).to_have_text("1", timeout=WAIT_MS)
    expect(page.locator("#shape")).to_have_text("rows 0-0, 1 column")
    for n, start in enumerate(range(1, 40, 10), start=2):
        rows = np.sin(np.arange(start, start + 10) / 5)
        response = http.patch(
            f"/array/full/{key}/trace", params={"offset": str(start), "shape": "10",
                                                "extend": "true"},
            content=rows.tobytes(), headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        expect(page.locator("#frame")).to_have_text(str(n), timeout=WAIT_MS)
    expect(page.locator("#shape")).to_have_text("rows 0-40, 1 column")
    assert colour_count(page, "plot", BLUE) > 100  # the line
    assert page.locator("#image").is_hidden()


def test_table_plots_each_numeric_column(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    schema = pa.schema([("label", pa.string()), ("x", pa.float64()), ("y", pa.int64())])
    create_table(http, key, schema)
    arrow = {"Content-Type": "application/vnd.apache.arrow.file"}
    login(page, f"{live_server.url}/live/{key}", live_server.api_key)
    expect(page.locator("#status")).to_have_text("live", timeout=WAIT_MS)
    rows = pa.table({"label": ["a", "b", "c"], "x": [1.0, 4.0, 2.0], "y": [9, 3, 5]}, schema=schema)
    assert http.put(f"/table/full/{key}", content=ipc(rows), headers=arrow).status_code == 200
    expect(page.locator("#frame")).to_have_text("1", timeout=WAIT_MS)
    expect(page.locator("#shape")).to_have_text("rows 0-2, 2 columns")  # not the labels
    assert colour_count(page, "plot", BLUE) > 50 and colour_count(page, "plot", RED) > 50


def test_blocks_and_regions_land_in_the_whole_frame(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    container(http, key)
    body = array_body("b", GRADIENT, chunks=[[16, 16], [24, 24]])
    assert http.post(f"/metadata/{key}", json=body).status_code == 200
    put(http, f"{key}/b", GRADIENT)
    open_image(page, live_server, f"{key}/b", 1)
    fixed_contrast(page, 0, 255)
    expected = GRADIENT.copy()
    block = np.full((16, 24), 7, dtype=np.uint8)
    response = http.put(f"/array/block/{key}/b", params={"block": "1,1"}, content=block.tobytes(),
                        headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert response.status_code == 200, response.text
    expected[16:, 24:] = 7
    assert_shows(page, 2, expected)
    region = np.full((3, 5), 99, dtype=np.uint8)
    response = http.patch(f"/array/full/{key}/b", params={"offset": "2,30", "shape": "3,5"},
                          content=region.tobytes(),
                          headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert response.status_code == 200, response.text
    expected[2:5, 30:35] = 99
    assert_shows(page, 3, expected)


def test_big_frames_arrive_binned_and_throttled(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    """A 1024 x 1024 frame is more than the page draws: it subscribes with bin=2,mean (as
    float32) and max_fps=30; a burst of frames arrives as fewer frames plus a skipped count,
    and the newest is shown."""
    container(http, key)
    frame = (np.add.outer(np.arange(1024), 3 * np.arange(1024)) % 4000).astype("<u2")
    assert http.post(f"/metadata/{key}", json=array_body("big", frame)).status_code == 200
    put(http, f"{key}/big", frame)
    sent: list[Any] = []
    page.on("websocket", lambda socket: socket.on("framesent", lambda p: sent.append(p)))
    open_image(page, live_server, f"{key}/big", 1)
    (subscribe,) = [json.loads(s) for s in sent if isinstance(s, str) and "subscribe" in s]
    assert (subscribe["bin"], subscribe["dtype"], subscribe["max_fps"]) == ("2,mean", "<f4", 30)
    fixed_contrast(page, 0, 4000)
    binned = frame.reshape(512, 2, 512, 2).mean(axis=(1, 3))
    assert_shows(page, 1, gray(binned, 0, 4000))
    burst = [frame // (i % 7 + 1) for i in range(200)]
    api = str(http.base_url).rstrip("/").replace("http://", "ws://", 1)
    url = f"{api}/stream/push/{key}/big?mode=full"
    headers = {"Authorization": f"Apikey {live_server.api_key}"}
    with connect(url, additional_headers=headers, max_size=None) as pusher:
        for one in burst:
            pusher.send(one.tobytes())
        acks: list[dict[str, Any]] = []
        while not acks or acks[-1]["frames"] < len(burst):
            acks.append(json.loads(pusher.recv(timeout=30)))
    assert acks[-1]["sequence"] == 201
    newest = burst[-1].reshape(512, 2, 512, 2).mean(axis=(1, 3))
    assert_shows(page, 201, gray(newest, 0, 4000))  # the newest frame always arrives
    received = int(page.locator("#received").inner_text())
    skipped = int(page.locator("#skipped").inner_text())
    assert received + skipped == 201  # every frame published since the subscription


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


def listing_to_image(page: Any, base_url: str, key: str, writer: httpx.Client) -> None:
    """From the listing of container ``key`` to its image ``g`` (a GRADIENT written once): the
    first frame shown, then the next one written drawn."""
    page.goto(f"{base_url}/live/{key}")
    expect(page.locator('tr[data-key="g"]')).to_be_visible(timeout=WAIT_MS)
    page.locator('tr[data-key="g"] a').click()
    expect(page.locator("#frame")).to_have_text("1", timeout=WAIT_MS)
    fixed_contrast(page, 0, 255)
    put(writer, f"{key}/g", 255 - GRADIENT)
    assert_shows(page, 2, 255 - GRADIENT)


def test_public_server_needs_no_key(page: Any, public_live_server: RunningServer, key: str) -> None:
    """Anonymous reads: no form, the listing and a stream (auth message without a key)."""
    headers = {"Authorization": f"Apikey {public_live_server.api_key}"}
    with httpx.Client(base_url=f"{public_live_server.url}/api/v1", headers=headers) as writer:
        container(writer, key)
        assert writer.post(f"/metadata/{key}", json=array_body("g", GRADIENT)).status_code == 200
        put(writer, f"{key}/g", GRADIENT)
        listing_to_image(page, public_live_server.url, key, writer)
    assert page.locator("#login").is_hidden()


def test_the_cookie_of_an_api_key_link_needs_no_form(
    page: Any, live_server: RunningServer, http: httpx.Client, key: str
) -> None:
    """A browser that followed a link with ``?api_key=`` holds the ``tiled_api_key`` cookie:
    the page asks for no key, the listing is read with the cookie and the stream's WebSocket
    handshake carries it (the auth message holds no key)."""
    container(http, key)
    assert http.post(f"/metadata/{key}", json=array_body("g", GRADIENT)).status_code == 200
    put(http, f"{key}/g", GRADIENT)
    visited = page.goto(f"{live_server.url}/api/v1/?api_key={live_server.api_key}")
    assert visited is not None and visited.status == 200
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["value"]) == ("tiled_api_key", live_server.api_key)
    sent: list[Any] = []
    page.on("websocket", lambda socket: socket.on("framesent", lambda p: sent.append(p)))
    listing_to_image(page, live_server.url, key, http)
    assert page.locator("#login").is_hidden() and page.locator("#error").is_hidden()
    assert {"type": "auth"} in [json.loads(s) for s in sent if isinstance(s, str)]


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
    expect(row.locator("td").nth(5)).to_have_text(re.compile(r"^\d+\.\d$"))  # messages/s
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
