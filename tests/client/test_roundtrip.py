"""Writer -> subscriber through ferrotile: every dtype and frame sizes from 1 B to 64 MiB come
back with their exact bytes and consecutive sequences; the frames are stored, and the stock
tiled client reads them back."""

from __future__ import annotations

import numpy as np
import pytest
from tiled.client import from_uri

from ferrotile.client import Event, Frame, Gap, connect
from tests.client.collect import Collected
from tests.conftest import RunningServer

DTYPES = ["|u1", "|i1", "<u2", "<i2", ">u2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8",
          ">f8", "<c8", "<c16", "|b1", "<M8[ns]", "<m8[us]"]  # fmt: skip


def frames_of(dtype: str, shape: tuple[int, ...], count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 256, size=(count, int(np.prod(shape)) * np.dtype(dtype).itemsize))
    return [row.astype("u1").view(dtype).reshape(shape) for row in raw]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_round_trips(hub_server: RunningServer, key: str, dtype: str) -> None:
    frames = frames_of(dtype, (3, 5), 4)
    with connect(hub_server.url, api_key=hub_server.api_key) as client:
        with client.writer(key, dtype=dtype, frame_shape=(3, 5)) as writer:
            # Subscribed from the start of the stream: sees every frame, then the end (1000).
            received = Collected(client, key, start=0).start()
            for frame in frames:
                writer.send(frame)
        messages = received.join()
    schema = [m for m in messages if isinstance(m, Event)]
    assert [e.type for e in schema] == ["array-schema"]
    got = [m for m in messages if isinstance(m, Frame)]
    assert not [m for m in messages if isinstance(m, Gap)]
    assert [f.sequence for f in got] == [1, 2, 3, 4]  # the node's stream starts with them
    for sent, frame in zip(frames, got, strict=True):
        assert frame.array.dtype == np.dtype(dtype)
        assert frame.array.shape == (1, 3, 5)
        assert frame.array.tobytes() == sent.tobytes()
    assert writer.last_sequence == got[-1].sequence
    stored = from_uri(hub_server.url, api_key=hub_server.api_key)[key].read()
    assert stored.dtype == np.dtype(dtype)
    assert stored.tobytes() == b"".join(f.tobytes() for f in frames)  # (np.stack: native order)


@pytest.mark.parametrize(
    "size", [1, 1024, 2**20, 2**24, 2**26], ids=["1B", "1KiB", "1MiB", "16MiB", "64MiB"]
)
def test_frame_sizes_round_trip(hub_server: RunningServer, key: str, size: int) -> None:
    # Through Redis, frames over 1 MiB are announced on the live channel without their bytes
    # (a 64 MiB message would pass Redis's 32 MiB pub/sub output buffer limit and cut the
    # server's reader off) and read from the node's stream by the processes that follow it.
    count = 3 if size < 2**26 else 1
    frames = frames_of("|u1", (size,), count)
    with connect(hub_server.url, api_key=hub_server.api_key) as client:
        with client.writer(key, dtype="u1", frame_shape=(size,), window=2) as writer:
            # A 64 MiB frame and the stream's end are over the default 64 MiB queue while the
            # subscriber still reads the frame: the server would close it as too slow.
            received = Collected(client, key, start=0, max_queue_bytes=4 * size + 2**20).start()
            for frame in frames:
                writer.send(frame)
        got = received.join()
    data = [m for m in got if isinstance(m, Frame)]
    assert len(data) == count
    for sent, frame in zip(frames, data, strict=True):
        assert frame.array.nbytes == size
        assert frame.array.tobytes() == sent.tobytes()
