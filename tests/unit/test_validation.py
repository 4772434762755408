"""The input limits of :mod:`ferrotile.validation` and their settings (pure functions)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ferrotile.cli import _parser, _settings, _subparser
from ferrotile.config import DEFAULT_MAX_ARRAY_BYTES
from ferrotile.config_file import from_file, layered, options
from ferrotile.storage.structure import ArrayStructure
from ferrotile.streamer.params import StreamerInputError, pull_options
from ferrotile.validation import (
    MAX_BLOCKS_PER_AXIS,
    MAX_INT64,
    MAX_JSON_DEPTH,
    ArrayTooLarge,
    InvalidParameter,
    NulCharacter,
    TooDeep,
    check_array_extension,
    check_depth,
    check_no_nul,
    json_depth,
    parse_int,
)

INT64 = {"kind": "i", "itemsize": 8, "endianness": "little"}


def structure(shape: tuple[int, ...], chunks: tuple[tuple[int, ...], ...]) -> ArrayStructure:
    return ArrayStructure(data_type=INT64, chunks=chunks, shape=shape)


def test_json_depth() -> None:
    assert json_depth(1) == 0 and json_depth("x") == 0 and json_depth(None) == 0
    assert json_depth({}) == 1 and json_depth([]) == 1
    assert json_depth({"a": [1, {"b": {}}]}) == 4
    deep: Any = {}
    for _ in range(100_000):  # far beyond any recursion limit: counted without recursing
        deep = [deep]
    assert json_depth(deep, limit=10) == 11  # stops once past the limit
    assert json_depth(deep, limit=10**6) == 100_001


def test_check_depth() -> None:
    at_limit: Any = {}
    for _ in range(MAX_JSON_DEPTH - 1):
        at_limit = {"a": at_limit}
    check_depth(at_limit)
    with pytest.raises(TooDeep, match=f"Metadata is nested more than {MAX_JSON_DEPTH} levels"):
        check_depth({"a": at_limit})
    assert TooDeep.status == 422


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", 0), ("42", 42), (" 7 ", 7), ("+3", 3), (str(MAX_INT64), MAX_INT64)],
)
def test_parse_int_accepts(raw: str, expected: int) -> None:
    assert parse_int(raw, "n") == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (str(MAX_INT64 + 1), "<= 9223372036854775807"),
        ("9" * 5000, "must be an integer"),  # int() would raise its own ValueError
        ("-1", ">= 0"),
        ("1_000", "must be an integer"),
        ("1e3", "must be an integer"),
        ("١٢", "must be an integer"),  # Arabic-Indic digits: int() accepts them
        ("", "must be an integer"),
    ],
)
def test_parse_int_refuses(raw: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse_int(raw, "page[offset]")


def test_check_no_nul() -> None:
    check_no_nul("a\tb", "sort")
    with pytest.raises(NulCharacter, match="sort must not contain NUL"):
        check_no_nul("a\x00", "sort")


def test_extension_within_the_limits() -> None:
    s = structure((3,), ((3,),))
    assert check_array_extension(s, (0,), (3,), 24) == (3,)  # fits: no growth
    assert check_array_extension(s, (3,), (2,), 40) == (5,)
    assert check_array_extension(s, (), (5,), 40) == (5,)  # offset defaults to 0
    big = structure((100,), ((100,),))  # already over the limit: may still be written inside
    assert check_array_extension(big, (10,), (5,), 8) == (100,)
    grid = structure((2, 3), ((2,), (3,)))
    assert check_array_extension(grid, (1, 2), (4, 4), 10**6) == (5, 6)


def test_extension_over_the_byte_limit() -> None:
    s = structure((3,), ((3,),))
    with pytest.raises(ArrayTooLarge, match="48 bytes; the server's limit is 40 bytes"):
        check_array_extension(s, (5,), (1,), 40)
    # Costs nothing however large the request claims to be.
    with pytest.raises(ArrayTooLarge, match="limit is 1099511627776 bytes"):
        check_array_extension(s, (2**62,), (1,), DEFAULT_MAX_ARRAY_BYTES)


def test_extension_over_the_block_limit() -> None:
    s = structure((3,), ((1, 1, 1),))  # blocks of one element
    assert check_array_extension(s, (MAX_BLOCKS_PER_AXIS - 1,), (1,), 2**40) == (
        MAX_BLOCKS_PER_AXIS,
    )
    with pytest.raises(ArrayTooLarge, match=f"{MAX_BLOCKS_PER_AXIS + 1} blocks of 1"):
        check_array_extension(s, (MAX_BLOCKS_PER_AXIS,), (1,), 2**40)
    empty = structure((0,), ((0,),))  # an empty axis regrows as one block
    assert check_array_extension(empty, (10**6,), (1,), 2**40) == (10**6 + 1,)


def test_extension_rank_and_sign() -> None:
    s = structure((3,), ((3,),))
    with pytest.raises(ValueError, match="rank"):
        check_array_extension(s, (0,), (1, 1), 100)
    with pytest.raises(ValueError, match="negative"):
        check_array_extension(s, (-1,), (1,), 100)


def test_pull_options_are_one_rule_for_both_read_routes() -> None:
    options = pull_options({"count": "3", "latest": "yes"}, 1, 500)
    assert (options.count, options.block, options.latest, options.header) == (3, 500, True, True)
    assert options.after == ["$"] and options.max_queue_bytes is None
    for query, message in [
        ({"max_fps": "-1"}, "max_fps"),
        ({"ack": "2"}, "ack"),
        ({"header": "maybe"}, "header"),
        ({"max_queue_bytes": "-5"}, "max_queue_bytes"),
        ({"max_queue_bytes": str(2**64)}, "at most"),
        ({"count": "99999999999999999999"}, "at most"),
        ({"block": "1e20"}, "must be an integer"),
        ({"header": "false", "count": "2"}, "ambiguous"),
    ]:
        with pytest.raises(StreamerInputError, match=message):
            pull_options(query, 2, 500)


@pytest.fixture
def catalog() -> argparse.ArgumentParser:
    return _subparser(_parser(), "serve", "catalog")


def test_max_array_bytes_flag_key_and_variable(
    catalog: argparse.ArgumentParser, tmp_path: Path
) -> None:
    defaults = layered(catalog, ["--temp"], environ={})
    assert _settings(defaults)[0].max_array_bytes == DEFAULT_MAX_ARRAY_BYTES
    args = layered(catalog, ["--temp", "--max-array-bytes", "1000"], environ={})
    assert _settings(args)[0].max_array_bytes == 1000
    env = {"FERROTILE_MAX_ARRAY_BYTES": "2000"}
    assert layered(catalog, ["--temp"], environ=env).max_array_bytes == 2000
    config = tmp_path / "c.yml"
    config.write_text("max-array-bytes: 3000\n")
    file_values = from_file(config, options(catalog))
    assert layered(catalog, [], file_values=file_values, environ={}).max_array_bytes == 3000


def test_max_array_bytes_must_be_positive() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ferrotile", "serve", "catalog", "--temp", "--max-array-bytes", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "ferrotile: error: --max-array-bytes must be positive"
    assert json.dumps(result.stdout) == '""'
