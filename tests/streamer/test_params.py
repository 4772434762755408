"""The push header and parameter parsing of the Redis Streamer API (pure functions)."""

from __future__ import annotations

import pytest

from ferrotile.streamer.params import (
    Entry,
    StreamerInputError,
    cursors,
    flag,
    integer,
    split_header,
    stream_ids,
)


def test_flat_offsets_are_end_indices_for_the_url_stream() -> None:
    assert split_header("[3, 5, 9]", ["a"], 9) == [
        Entry("a", None, 0, 3), Entry("a", None, 3, 5), Entry("a", None, 5, 9),
    ]  # fmt: skip


def test_flat_offsets_with_several_url_streams_give_one_entry_each() -> None:
    assert split_header("[2, 6]", ["a", "b"], 6) == [Entry("a", None, 0, 2), Entry("b", None, 2, 6)]
    with pytest.raises(StreamerInputError, match="2 offsets for 3 streams"):
        split_header("[2, 6]", ["a", "b", "c"], 6)


def test_first_offset_zero_means_start_indices() -> None:
    assert split_header("[0, 4]", ["a"], 10) == [Entry("a", None, 0, 4), Entry("a", None, 4, 10)]


def test_pairs_and_triples_name_streams_and_ids() -> None:
    assert split_header('[["x", 1], ["y", 3]]', ["ignored"], 3) == [
        Entry("x", None, 0, 1), Entry("y", None, 1, 3),
    ]  # fmt: skip
    assert split_header('[["x", "5-1", 2], ["x", null, 4]]', ["x"], 4) == [
        Entry("x", "5-1", 0, 2), Entry("x", None, 2, 4),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("header", "size", "message"),
    [
        ("not json", 3, "not JSON"),
        ("[]", 3, "non-empty JSON list"),
        ("[3, 2]", 3, "must not decrease"),
        ("[2]", 3, "cover 2 bytes but the binary message has 3"),
        ("[4]", 3, "cover 4 bytes"),
        ("[-1]", 3, "non-negative"),
        ('[["x"]]', 3, r"\[sid, offset\]"),
        ('[["", 3]]', 3, "non-empty strings"),
        ('[["x", 7, 3]]', 3, "strings or null"),
        ('[3, ["x", 3]]', 3, r"\[sid, offset\]"),
    ],
)
def test_bad_headers_are_refused(header: str, size: int, message: str) -> None:
    with pytest.raises(StreamerInputError, match=message):
        split_header(header, ["a"], size)


def test_query_values() -> None:
    assert stream_ids("a+b") == ["a", "b"]
    with pytest.raises(StreamerInputError, match="empty stream id"):
        stream_ids("a++b")
    with pytest.raises(StreamerInputError, match="twice"):
        stream_ids("a+a")
    assert cursors("$", 2) == ["$", "$"]
    assert cursors("0+12-3", 2) == ["0", "12-3"]
    with pytest.raises(StreamerInputError, match="last_entry_id"):
        cursors("yesterday", 1)
    with pytest.raises(StreamerInputError, match="3 cursors given for 2"):
        cursors("0+0+0", 2)
    assert flag({"latest": "1"}, "latest", False) is True
    assert flag({}, "header", True) is True
    with pytest.raises(StreamerInputError, match="true or false"):
        flag({"ack": "maybe"}, "ack", False)
    assert integer({"block": "none"}, "block", 5000, 0) == 5000
    with pytest.raises(StreamerInputError, match="at least 1"):
        integer({"count": "0"}, "count", 1, 1)
