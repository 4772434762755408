"""Path splitting and key validation."""

from __future__ import annotations

import pytest

from ferrotile.catalog.paths import MAX_KEY_LENGTH, join_path, split_path, validate_key
from ferrotile.errors import InvalidKey


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", ()),
        ("/", ()),
        ("//KEY", ("KEY",)),  # what the stock client sends for children of the root
        ("///KEY", ("KEY",)),
        ("a//b", ("a", "b")),
        ("a/b/", ("a", "b")),
        ("/a/b/c", ("a", "b", "c")),
        ("ünï cødé/x.y", ("ünï cødé", "x.y")),
        ("...", ("...",)),
    ],
)
def test_split_path_drops_empty_segments(path: str, expected: tuple[str, ...]) -> None:
    assert split_path(path) == expected


@pytest.mark.parametrize("path", [".", "..", "a/../b", "a/./b", "a\x00b", "x/\x7f", "a\nb/c"])
def test_split_path_rejects_dot_segments_and_control_characters(path: str) -> None:
    with pytest.raises(InvalidKey):
        split_path(path)


def test_join_path_inverts_split_path() -> None:
    assert join_path(()) == ""
    assert join_path(("a", "b")) == "a/b"
    assert split_path(join_path(("a", "b", "c"))) == ("a", "b", "c")


@pytest.mark.parametrize("key", ["a", "x" * MAX_KEY_LENGTH, "ünï cødé", "a.b", "...", "-_~:@"])
def test_validate_key_accepts(key: str) -> None:
    validate_key(key)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "empty"),
        ("x" * (MAX_KEY_LENGTH + 1), "256 characters"),
        ("a/b", "'/'"),
        (".", "not allowed"),
        ("..", "not allowed"),
        ("a\tb", "control character"),
        ("a\x7f", "control character"),
    ],
)
def test_validate_key_rejects_with_message(key: str, message: str) -> None:
    with pytest.raises(InvalidKey, match=message):
        validate_key(key)


def test_invalid_key_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_key("")
