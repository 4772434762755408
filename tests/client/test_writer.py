"""The writer: a bounded window of unacknowledged messages, blocks of frames, appending to an
existing node, and errors that name the frame (local checks, server refusals, a wrong key)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from tiled.client import from_uri

from ferrotile.client import ClientError, FrameRejected, ServerError, connect
from tests.conftest import RunningServer


def stored(server: RunningServer, key: str) -> np.ndarray:
    return from_uri(server.url, api_key=server.api_key)[key].read()


def test_the_window_bounds_unacknowledged_frames(hub_server: RunningServer, key: str) -> None:
    frame = np.arange(64 * 1024, dtype="<u4")  # 256 KiB: the server stores slower than we send
    with connect(hub_server.url, api_key=hub_server.api_key) as client:
        writer = client.writer(key, dtype="<u4", frame_shape=frame.shape, window=4)
        for i in range(40):
            writer.send(frame + i)
            assert writer.in_flight <= 4
        writer.flush()
        assert (writer.sent, writer.acknowledged, writer.in_flight) == (40, 40, 0)
        # Pipelined up to the window, never beyond.
        assert writer.max_in_flight == 4
        writer.close()
    data = stored(hub_server, key)
    assert data.shape == (40, 64 * 1024)
    assert [int(row[0]) for row in data] == list(range(40))


def test_blocks_of_frames_and_extend(hub_server: RunningServer, key: str) -> None:
    with connect(hub_server.url, api_key=hub_server.api_key) as client:
        with client.writer(key, dtype="i2", frame_shape=(2, 2)) as writer:
            writer.send(np.arange(12, dtype="i2").reshape(3, 2, 2))  # a block of 3 frames
            writer.send(np.full((2, 2), 99, dtype="i2"))
        assert (writer.sent, writer.frames) == (2, 4)
        with pytest.raises(ClientError, match="exists: pass extend=True"):
            client.writer(key, dtype="i2", frame_shape=(2, 2))
        with pytest.raises(ClientError, match=r"holds frames of \(2, 2\) int16, not \(2, 2\)"):
            client.writer(key, dtype="u2", frame_shape=(2, 2), extend=True)
        with client.writer(key, dtype="i2", frame_shape=(2, 2), extend=True) as writer:
            writer.send(np.full((2, 2), 7, dtype="i2"))
    data = stored(hub_server, key)
    assert data.shape == (5, 2, 2)
    assert data[:3].ravel().tolist() == list(range(12))
    assert data[3].ravel().tolist() == [99] * 4 and data[4].ravel().tolist() == [7] * 4


def test_a_frame_of_another_dtype_or_shape_is_refused_before_sending(
    hub_server: RunningServer, key: str
) -> None:
    with (
        connect(hub_server.url, api_key=hub_server.api_key) as client,
        client.writer(key, dtype="u2", frame_shape=(4,)) as writer,
    ):
        writer.send(np.zeros(4, dtype="u2"))
        with pytest.raises(ClientError, match=r"frame 2: dtype float64 does not match"):
            writer.send(np.zeros(4))
        with pytest.raises(ClientError, match=r"frame 2: shape \(5,\) is neither"):
            writer.send(np.zeros(5, dtype="u2"))
        writer.send(np.ones(4, dtype="u2"))
    assert stored(hub_server, key).tolist() == [[0] * 4, [1] * 4]


def test_a_server_refusal_mid_stream_names_the_frame(hub_server: RunningServer, key: str) -> None:
    with connect(hub_server.url, api_key=hub_server.api_key) as client:
        writer = client.writer(key, dtype="u2", frame_shape=(4,))
        writer.send(np.arange(4, dtype="u2"))
        writer.send(np.arange(4, dtype="u2") + 4)
        writer.flush()
        sequence = writer.last_sequence
        # Raw buffers are not checked locally: the server finds 6 bytes are no frame of 8.
        with pytest.raises(FrameRejected) as refused:
            writer.send(b"\x00" * 6)
            writer.flush()
        error = refused.value
        assert (error.frame, error.status, error.last_sequence) == (3, 400, sequence)
        assert "frame 3 (after sequence" in str(error)
        assert "not a whole number of frames of 8 bytes" in str(error)
        with pytest.raises(FrameRejected):  # the writer stays failed
            writer.send(np.arange(4, dtype="u2"))
        writer.close()
    # Frames before the refused one stay; the refused one was neither stored nor streamed.
    assert stored(hub_server, key).ravel().tolist() == list(range(8))


def test_a_wrong_key_is_refused_with_its_status(hub_server: RunningServer, key: str) -> None:
    with connect(hub_server.url, api_key="wrong") as client, pytest.raises(ServerError) as refused:
        client.writer(key, dtype="u1", frame_shape=(1,))
    assert refused.value.status == 401
    with httpx.Client(base_url=f"{hub_server.url}/api/v1") as http:  # nothing was created
        headers = {"Authorization": f"Apikey {hub_server.api_key}"}
        assert http.get(f"/metadata/{key}", headers=headers).status_code == 404


def test_stream_only_frames_are_not_stored(hub_server: RunningServer, key: str) -> None:
    with connect(hub_server.url, api_key=hub_server.api_key) as client:
        with client.writer(key, dtype="u1", frame_shape=(3,), persist=False) as writer:
            for i in range(3):
                writer.send(np.full(3, i, dtype="u1"))
        assert writer.acknowledged == 3
        frames = [m for m in client.subscribe(key, start=0) if hasattr(m, "array")]
    assert [f.array.ravel().tolist() for f in frames] == [[0] * 3, [1] * 3, [2] * 3]
    assert stored(hub_server, key).shape == (0, 3)


def test_frames_go_out_without_flush_and_in_order(hub_server: RunningServer, key: str) -> None:
    """A lone frame is written at once; a burst written while others await their
    acknowledgement goes out with the next acknowledgement (no flush, no close): a subscriber
    gets every frame, exact bytes, in order."""
    import time

    from tests.client.collect import Collected

    with connect(hub_server.url, api_key=hub_server.api_key) as client:
        writer = client.writer(key, dtype="<u4", frame_shape=(256,), persist=False)
        received = Collected(client, key).start()
        time.sleep(0.5)  # subscribed (live)
        writer.send(np.full(256, 0, dtype="<u4"))
        received.wait_frames(1)
        frames = [np.arange(256, dtype="<u4") + 1000 * i for i in range(1, 2001)]
        for frame in frames:
            writer.send(frame)
        received.wait_frames(2001)  # without flush(): the last batch left with an ack
        assert writer.in_flight <= writer.window
        writer.close()
        received.join()
    got = received.frames
    assert [f.sequence for f in got] == list(range(1, 2002))
    assert all(f.array.tobytes() == s.tobytes() for f, s in zip(got[1:], frames, strict=True))
