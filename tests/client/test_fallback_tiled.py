"""Against the reference Tiled 0.2.20 (no push route) the same API works: frames written with one
HTTP PATCH each, received over Tiled's WebSocket subscription."""

from __future__ import annotations

import numpy as np
import pytest
from tiled.client import from_uri

from ferrotile.client import ClientError, FrameRejected, connect
from tests.client.collect import Collected
from tests.conftest import RunningServer


def test_writer_and_subscriber_over_tiled(tiled_server: RunningServer, key: str) -> None:
    frames = [np.arange(6, dtype="<u2").reshape(2, 3) + 10 * i for i in range(5)]
    with connect(tiled_server.url, api_key=tiled_server.api_key) as client:
        assert not client.ferrotile
        with client.writer(key, dtype="<u2", frame_shape=(2, 3), window=4) as writer:
            writer.send(frames[0])  # creates the node (Tiled cannot grow an empty array)
            received = Collected(client, key, start=0).start()
            for frame in frames[1:]:
                writer.send(frame)
        assert (writer.sent, writer.acknowledged) == (5, 5)
        received.join()
    assert [e.type for e in received.events] == ["array-schema"]
    assert received.gaps == []
    got = received.frames
    # The first frame is the node's first content (PUT: no offset), the others PATCHes.
    assert [f.offset for f in got] == [None] + [[i] for i in range(1, 5)]
    assert [f.array.tobytes() for f in got] == [f.tobytes() for f in frames]
    sequences = [f.sequence for f in got]
    assert sequences == list(range(sequences[0], sequences[0] + 5))
    stored = from_uri(tiled_server.url, api_key=tiled_server.api_key)[key].read()
    assert stored.tobytes() == b"".join(f.tobytes() for f in frames)


def test_errors_over_tiled(tiled_server: RunningServer, key: str) -> None:
    with connect(tiled_server.url, api_key=tiled_server.api_key) as client:
        writer = client.writer(key, dtype="u1", frame_shape=(4,))
        writer.send(np.zeros(4, dtype="u1"))
        with pytest.raises(FrameRejected) as refused:
            writer.send(b"\x01" * 6)  # not a whole frame: Tiled refuses the PATCH
            writer.flush()
        assert refused.value.frame == 2 and refused.value.status >= 400
        writer.close()
        with pytest.raises(ClientError, match="exists: pass extend=True"):
            client.writer(key, dtype="u1", frame_shape=(4,))
    assert from_uri(tiled_server.url, api_key=tiled_server.api_key)[key].read().shape == (1, 4)


def test_stream_only_frames_over_tiled(tiled_server: RunningServer, key: str) -> None:
    with connect(tiled_server.url, api_key=tiled_server.api_key) as client:
        with client.writer(key, dtype="<i8", frame_shape=(2,), persist=False) as writer:
            writer.send(np.array([0, 0], dtype="<i8"))  # creates the node: stored
            received = Collected(client, key, start=0).start()
            for i in range(1, 4):
                writer.send(np.array([i, i], dtype="<i8"))
        received.join()
    assert [f.array.ravel().tolist() for f in received.frames] == [[i, i] for i in range(4)]
    assert from_uri(tiled_server.url, api_key=tiled_server.api_key)[key].read().shape == (1, 2)
