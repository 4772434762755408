"""WebSocket push and pull of the Redis Streamer API against the real server, on the in-process
hub and on Redis with two workers (every socket may land on either worker)."""

from __future__ import annotations

import time

import orjson
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import RunningServer
from tests.streamer.conftest import http, split, ws


def push_raw(server: RunningServer, sid: str, payloads: list[bytes]) -> None:
    with ws(server, f"/data/{sid}/push", "header=0") as conn:
        for payload in payloads:
            conn.send(payload)


def pull_all(server: RunningServer, sid: str, n: int, query: str = "") -> list[tuple[str, bytes]]:
    """Read ``n`` entries (header mode) from the start of the stream."""
    got: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + 20
    with ws(server, f"/data/{sid}/pull", f"last_entry_id=0&count=100&block=200{query}") as conn:
        while len(got) < n:
            assert time.monotonic() < deadline, f"only {len(got)} of {n} entries: {got}"
            header, data = conn.recv(timeout=10), conn.recv(timeout=10)
            got += [(entry_id, payload) for _, entry_id, payload in split(header, data)]
    return got


def test_push_without_header_then_pull_with_header(rs_server: RunningServer, sid: str) -> None:
    payloads = [b"frame-%d" % i for i in range(20)]
    push_raw(rs_server, sid, payloads)
    got = pull_all(rs_server, sid, 20)
    assert [p for _, p in got] == payloads
    ids = [tuple(map(int, i.split("-"))) for i, _ in got]
    assert ids == sorted(ids) and len(set(ids)) == 20


def test_batched_header_with_ack_and_explicit_ids(rs_server: RunningServer, sid: str) -> None:
    with ws(rs_server, f"/data/{sid}/push", "ack=1") as conn:
        conn.send("[3, 5, 9]")
        conn.send(b"abcdefghi")
        first = orjson.loads(conn.recv(timeout=10))
        assert len(first) == 3
        conn.send(orjson.dumps([[sid, "9999999999999-1", 2], [sid, "9999999999999-*", 4]]).decode())
        conn.send(b"wxyz")
        assert orjson.loads(conn.recv(timeout=10)) == ["9999999999999-1", "9999999999999-2"]
        # An id that goes backwards: the batch is refused whole, the socket closed with a reason.
        conn.send(orjson.dumps([[sid, "5-0", 1], [sid, None, 2]]).decode())
        conn.send(b"QR")
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "not greater" in closed.value.rcvd.reason or "5-0" in closed.value.rcvd.reason
    got = pull_all(rs_server, sid, 5)
    assert [p for _, p in got] == [b"abc", b"de", b"fghi", b"wx", b"yz"]
    assert [i for i, _ in got][3:] == ["9999999999999-1", "9999999999999-2"]
    with http(rs_server) as client:  # nothing of the refused batch was written
        response = client.get(f"/data/{sid}", params={"last_entry_id": "9999999999999-2",
                                                       "block": 200})  # fmt: skip
        assert response.content == b"" and response.headers["x-offsets"] == "[]"


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        (["not json", b"x"], "not JSON"),
        (["[5]", b"abc"], "cover 5 bytes"),
        ([b"binary first", b"x"], "text frame"),
    ],
)
def test_bad_batches_close_with_a_reason(
    rs_server: RunningServer, sid: str, frames: list[str | bytes], reason: str
) -> None:
    with ws(rs_server, f"/data/{sid}/push") as conn:
        conn.send("[1]")
        conn.send(b"k")  # a good batch first: it stays
        for frame in frames:
            conn.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert reason in closed.value.rcvd.reason
    assert [p for _, p in pull_all(rs_server, sid, 1)] == [b"k"]


def test_multi_stream_push_and_pull(rs_server: RunningServer, sid: str) -> None:
    a, b = f"{sid}a", f"{sid}b"
    with ws(rs_server, f"/data/{a}+{b}/push", "ack=1") as conn:
        conn.send("[1, 3]")  # one entry per URL stream
        conn.send(b"ABB")
        assert len(orjson.loads(conn.recv(timeout=10))) == 2
        conn.send(orjson.dumps([[b, 1], [a, 2]]).decode())
        conn.send(b"ba")
        conn.recv(timeout=10)
    with ws(rs_server, f"/data/{a}+{b}/pull", "last_entry_id=0&count=10") as conn:
        entries = split(conn.recv(timeout=10), conn.recv(timeout=10))
    assert sorted((name, payload) for name, _, payload in entries) == [
        (a, b"A"), (a, b"a"), (b, b"BB"), (b, b"b"),
    ]  # fmt: skip


def test_latest_drops_frames_for_a_slow_reader(rs_server: RunningServer, sid: str) -> None:
    push_raw(rs_server, sid, [b"first"])
    # A live reader more than max_queue_bytes behind skips to the newest entry too.
    with ws(rs_server, f"/data/{sid}/pull", "max_queue_bytes=3&header=0&ack=1") as conn:
        push_raw(rs_server, sid, [b"a"])
        assert conn.recv(timeout=10) == b"a"
        push_raw(rs_server, sid, [b"%d" % i for i in range(30)])
        time.sleep(0.5)  # every entry has reached the reader's worker
        conn.send("ack")
        assert conn.recv(timeout=10) == b"29"
    push_raw(rs_server, sid, [b"%d" % i for i in range(30)])
    with ws(rs_server, f"/data/{sid}/pull", "last_entry_id=0&latest=1&header=0") as conn:
        assert conn.recv(timeout=10) == b"29"  # only the newest: 29 frames dropped
    got = [p for _, p in pull_all(rs_server, sid, 62)]
    assert got == [b"first", b"a", *(b"%d" % i for i in range(30)), *(b"%d" % i for i in range(30))]


def test_ack_paces_the_reader(rs_server: RunningServer, sid: str) -> None:
    push_raw(rs_server, sid, [b"one", b"two"])
    with ws(rs_server, f"/data/{sid}/pull", "last_entry_id=0&ack=1&header=0") as conn:
        assert conn.recv(timeout=10) == b"one"
        with pytest.raises(TimeoutError):  # nothing more until acknowledged
            conn.recv(timeout=0.5)
        conn.send("ok")
        assert conn.recv(timeout=10) == b"two"


def test_idle_block_sends_the_empty_heartbeat(rs_server: RunningServer, sid: str) -> None:
    push_raw(rs_server, sid, [b"x"])
    with ws(rs_server, f"/data/{sid}/pull", "block=100") as conn:  # "$": nothing new
        assert (conn.recv(timeout=10), conn.recv(timeout=10)) == ("[]", b"")
    with ws(rs_server, f"/data/{sid}/pull", "block=100&header=false") as conn:
        assert conn.recv(timeout=10) == b""


def test_live_pull_gets_entries_pushed_after_connecting(rs_server: RunningServer, sid: str) -> None:
    push_raw(rs_server, sid, [b"before"])
    readers = [ws(rs_server, f"/data/{sid}/pull", "header=0&block=0") for _ in range(4)]
    try:
        time.sleep(0.2)
        push_raw(rs_server, sid, [b"after-%d" % i for i in range(50)])
        for reader in readers:
            assert [reader.recv(timeout=10) for _ in range(50)] == [
                b"after-%d" % i for i in range(50)
            ]
    finally:
        for reader in readers:
            reader.close()


def test_tiled_subscribers_see_the_same_entries(rs_server: RunningServer, sid: str) -> None:
    import msgpack

    push_raw(rs_server, sid, [b"first"])
    with ws(rs_server, f"/api/v1/stream/single/streams/default/{sid}",
            "envelope_format=msgpack&start=1") as conn:  # fmt: skip
        schema = msgpack.unpackb(conn.recv(timeout=10))
        assert schema["type"] == "array-schema" and schema["data_type"]["kind"] == "u"
        push_raw(rs_server, sid, [b"second"])
        messages = [msgpack.unpackb(conn.recv(timeout=10)) for _ in range(2)]
    assert [(m["type"], m["shape"], m["payload"]) for m in messages] == [
        ("array-data", [5], b"first"), ("array-data", [6], b"second"),
    ]  # fmt: skip


def test_refusals_at_the_handshake(rs_server: RunningServer, sid: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        ws(rs_server, f"/data/{sid}/push", headers={})
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        ws(rs_server, f"/data/{sid}/pull", headers={"Authorization": "Apikey wrong"})
    assert refused.value.response.status_code == 401
    push_raw(rs_server, sid, [b"x"])
    with pytest.raises(InvalidStatus) as refused:
        ws(rs_server, f"/data/{sid}/pull", "count=0")
    assert refused.value.response.status_code == 400
    with pytest.raises(InvalidStatus) as refused:
        ws(rs_server, f"/data/{sid}/pull", "max_queue_bytes=0")
    assert refused.value.response.status_code == 400
    with pytest.raises(InvalidStatus) as refused:
        ws(rs_server, f"/data/{sid}+{sid}/pull")
    assert refused.value.response.status_code == 400


def test_pull_waits_for_streams_nobody_pushed_to_yet(rs_server: RunningServer, sid: str) -> None:
    """As Redis Streamer's blocking read of a key that does not exist yet: empty heartbeats, then
    the entries once they are pushed (``$``: from the moment the reader connected)."""
    other = f"{sid}b"
    push_raw(rs_server, other, [b"old"])  # exists, but before this reader connected
    with ws(rs_server, f"/data/{sid}+{other}/pull", "block=200&count=5") as conn:
        assert conn.recv(timeout=10) == "[]" and conn.recv(timeout=10) == b""  # heartbeat
        push_raw(rs_server, sid, [b"first", b"second"])
        push_raw(rs_server, other, [b"third"])
        got: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + 10
        while len(got) < 3:
            assert time.monotonic() < deadline, got
            header, data = conn.recv(timeout=10), conn.recv(timeout=10)
            got.extend((name, payload) for name, _, payload in split(header, data))
    assert sorted(got) == sorted([(sid, b"first"), (sid, b"second"), (other, b"third")])
