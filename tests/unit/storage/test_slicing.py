"""Parsing of Tiled's slice/block/shape query parameters, checked against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from ferrotile.storage.slicing import (
    ExpectedShapeMismatch,
    check_expected_shape,
    normalize_selection,
    parse_int_tuple,
    parse_slice,
)

A1 = np.arange(5)
A3 = np.arange(4 * 5 * 6).reshape(4, 5, 6)


def _apply(a: np.ndarray, param: str | None) -> np.ndarray:
    """Index through the normalised (forward-only + flips) form, as the zarr store does."""
    sel = normalize_selection(parse_slice(param, a.shape), a.shape)
    out = a[sel.forward]
    if sel.flip_axes:
        out = np.flip(out, axis=sel.flip_axes)
    assert out.shape == sel.shape
    return out


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (None, ()),
        ("", ()),
        (":", (slice(None),)),
        ("::", (slice(None, None, None),)),
        ("0:2:1", (slice(0, 2, 1),)),
        (":2:1", (slice(None, 2, 1),)),
        ("::2", (slice(None, None, 2),)),
        ("1:", (slice(1, None),)),
        ("1::", (slice(1, None, None),)),
        (":3", (slice(None, 3),)),
        ("-2", (-2,)),
        ("3", (3,)),
        ("...", (Ellipsis,)),
        ("4:-6:-1", (slice(4, -6, -1),)),
        ("(1:3)", (slice(1, 3),)),
    ],
)
def test_parse_1d(param: str | None, expected: tuple[object, ...]) -> None:
    assert parse_slice(param, (5,)) == expected


@pytest.mark.parametrize(
    "param",
    [
        "",
        ":",
        "0:2:1",
        ":2:1",
        "::2",
        "1:",
        "-2",
        "4:-6:-1",
        "3:-6:-1",
        "4:1:-2",
        "::-1",
        "-1:-6:-1",
        "3:1",
        "10:20",
        "-100:100",
        "2:2",
    ],
)
def test_1d_matches_numpy(param: str) -> None:
    expected = A1[parse_slice(param, A1.shape)] if param else A1
    np.testing.assert_array_equal(_apply(A1, param), expected)


def test_reversed_canonical_forms() -> None:
    # What the stock client sends for a[::-1] and a[3::-1] on length 5.
    np.testing.assert_array_equal(_apply(A1, "4:-6:-1"), [4, 3, 2, 1, 0])
    np.testing.assert_array_equal(_apply(A1, "3:-6:-1"), [3, 2, 1, 0])


@pytest.mark.parametrize(
    "param",
    [
        "0:2:1,1,::2",
        "...,1",
        "1,...",
        "1,...,2",
        "...",
        ":,4:-6:-1,5:0:-2",
        "-1,-1,-1",
        "0:4:1,0:5:1,0:6:1",
        "3,:2,...",
        "1:3",
        "2,4:-6:-1",
    ],
)
def test_nd_matches_numpy(param: str) -> None:
    np.testing.assert_array_equal(_apply(A3, param), A3[parse_slice(param, A3.shape)])


def test_integer_index_gives_0d() -> None:
    out = _apply(A3, "1,2,3")
    assert out.shape == ()
    assert out == A3[1, 2, 3]


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("5", "out of bounds for axis 0 with size 5"),
        ("-6", "out of bounds"),
        ("1,2", "Too many indices"),
        ("...,...", "single ellipsis"),
        ("::0", "step cannot be zero"),
        ("a:b", "cannot parse 'a:b'"),
        ("1,,2", "cannot parse ''"),
        ("1:2:3:4", "cannot parse"),
        ("1.5", "cannot parse"),
        ("..", "cannot parse"),
    ],
)
def test_bad_slices(param: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_slice(param, (5,))


def test_scalar_array_slices() -> None:
    assert parse_slice("", ()) == ()
    assert parse_slice("...", ()) == (Ellipsis,)
    with pytest.raises(ValueError, match="Too many indices"):
        parse_slice("0", ())


@pytest.mark.parametrize(
    ("param", "expected"),
    [("1,2", (1, 2)), ("3", (3,)), ("0", (0,)), ("scalar", ()), ("", ()), ("10, 20", (10, 20))],
)
def test_parse_int_tuple(param: str, expected: tuple[int, ...]) -> None:
    assert parse_int_tuple(param, "shape") == expected


@pytest.mark.parametrize("param", ["1,", ",1", "-1", "a", "1.0", "1;2", "1,,2"])
def test_parse_int_tuple_rejects(param: str) -> None:
    with pytest.raises(ValueError, match="Invalid block parameter"):
        parse_int_tuple(param, "block")


def test_check_expected_shape() -> None:
    check_expected_shape(None, (3, 4))
    check_expected_shape((3, 4), (3, 4))
    check_expected_shape((), ())
    with pytest.raises(ExpectedShapeMismatch, match=r"expected shape \(3, 4\).*actual shape"):
        check_expected_shape((3, 4), (4, 3))
    assert issubclass(ExpectedShapeMismatch, ValueError)
