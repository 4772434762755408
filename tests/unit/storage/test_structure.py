"""ArrayStructure JSON parsing, validation, block geometry and regrowth."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from ferrotile.storage.regular_chunks import RegularChunks
from ferrotile.storage.structure import ArrayStructure, tiled_structure

F8 = {"endianness": "little", "kind": "f", "itemsize": 8, "dt_units": None}


def _json(**overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "data_type": dict(F8),
        "chunks": [[2, 2, 1], [3]],
        "shape": [5, 3],
        "dims": ["x", "y"],
        "resizable": False,
    }
    d.update(overrides)
    return d


def test_json_round_trip() -> None:
    d = _json()
    s = ArrayStructure.from_json(copy.deepcopy(d))
    assert s.shape == (5, 3)
    assert s.chunks == ((2, 2, 1), (3,))
    assert s.dims == ("x", "y")
    assert s.dtype == np.float64
    assert s.ndim == 2
    assert s.to_json() == d


def test_optional_fields_and_scalar() -> None:
    s = ArrayStructure.from_json({"data_type": F8, "chunks": [], "shape": []})
    assert s.to_json() == {
        "data_type": F8,
        "chunks": [],
        "shape": [],
        "dims": None,
        "resizable": False,
    }
    assert s.block_slices(()) == ()
    assert s.expected_nbytes() == 8


def test_empty_dimension_allowed() -> None:
    s = ArrayStructure.from_json(_json(chunks=[[0], [3]], shape=[0, 3]))
    assert s.block_shape((0, 0)) == (0, 3)
    assert s.expected_nbytes() == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"chunks": [[2, 2], [3]]}, "sum to 4, not to the shape 5"),
        ({"chunks": [[5]]}, "chunks has 1 dimensions"),
        ({"chunks": [[5, 0], [3]]}, "must be positive"),
        ({"chunks": [[6, -1], [3]]}, "must be positive"),
        ({"chunks": [[1, -1], [3]], "shape": [0, 3]}, "must be"),
        ({"dims": ["x"]}, "dims names"),
        ({"dims": "xy"}, "dims must be"),
        ({"resizable": True}, "resizable"),
        ({"shape": [5, -3], "chunks": [[5], [-3]]}, "negative size"),
        ({"shape": [5, "3"]}, "shape must be a list of integers"),
        ({"chunks": [[5.0], [3]]}, "chunks must be a list of integers"),
        ({"chunks": "auto"}, "chunks must be a list"),
        ({"data_type": {"kind": "Z", "itemsize": 1, "endianness": "little"}}, "Unsupported"),
        ({"data_type": "float64"}, "data_type must be an object"),
    ],
)
def test_validation_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArrayStructure.from_json(_json(**overrides))


def test_missing_key_and_non_object() -> None:
    d = _json()
    del d["shape"]
    with pytest.raises(ValueError, match="missing 'shape'"):
        ArrayStructure.from_json(d)
    with pytest.raises(ValueError, match="expected a JSON object"):
        ArrayStructure.from_json([1, 2])


def test_all_false_resizable_list_is_false() -> None:
    assert ArrayStructure.from_json(_json(resizable=[False, False])).resizable is False


def test_block_geometry() -> None:
    s = ArrayStructure.from_json(_json())
    assert s.block_slices((0, 0)) == (slice(0, 2), slice(0, 3))
    assert s.block_slices((2, 0)) == (slice(4, 5), slice(0, 3))
    assert s.block_shape((1, 0)) == (2, 3)
    assert s.block_shape((2, 0)) == (1, 3)
    for bad in [(3, 0), (0, 1), (-1, 0), (0,), (0, 0, 0)]:
        with pytest.raises(ValueError, match="Block index out of range"):
            s.block_slices(bad)
        with pytest.raises(ValueError, match="Block index out of range"):
            s.block_shape(bad)


def test_expected_nbytes_uses_itemsize() -> None:
    u4 = {"endianness": "little", "kind": "U", "itemsize": 16, "dt_units": None}
    s = ArrayStructure.from_json({"data_type": u4, "chunks": [[2], [3]], "shape": [2, 3]})
    assert s.expected_nbytes() == 2 * 3 * 16


@pytest.mark.parametrize(
    ("chunks", "shape", "new_shape", "expected"),
    [
        ([[3]], [3], [6], [[3, 3]]),
        ([[2, 2, 1]], [5], [7], [[2, 2, 2, 1]]),
        ([[3]], [3], [3], [[3]]),
        ([[2, 2], [3]], [4, 3], [5, 7], [[2, 2, 1], [3, 3, 1]]),
        ([[0]], [0], [4], [[4]]),
        ([[5]], [5], [0], [[0]]),
    ],
)
def test_with_shape_regrows_regularly(
    chunks: list[list[int]], shape: list[int], new_shape: list[int], expected: list[list[int]]
) -> None:
    s = ArrayStructure.from_json({"data_type": F8, "chunks": chunks, "shape": shape})
    grown = s.with_shape(tuple(new_shape))
    assert grown.to_json()["chunks"] == expected
    assert grown.shape == tuple(new_shape)
    assert grown.data_type == s.data_type
    # Kept compact, listed when served, equal to the listed structure, grown again alike.
    stored = grown.to_stored_json()
    assert all(isinstance(axis, dict) for axis in stored["chunks"]), stored
    assert tiled_structure(stored) == grown.to_json()
    listed = ArrayStructure.from_json(grown.to_json())
    assert ArrayStructure.from_json(stored, stored=True) == grown == listed
    assert [list(c) for c in grown.chunks] == expected
    bigger = [n + 3 for n in new_shape]
    assert grown.with_shape(tuple(bigger)).to_json() == listed.with_shape(tuple(bigger)).to_json()
    blocks = [range(len(axis)) for axis in expected]
    for block in np.ndindex(*(len(b) for b in blocks)):
        assert grown.block_slices(block) == listed.block_slices(block)
        assert grown.block_shape(block) == listed.block_shape(block)


def test_appended_axis_is_two_numbers_however_long() -> None:
    frames = ArrayStructure.from_json({"data_type": F8, "chunks": [[1], [512]], "shape": [1, 512]})
    grown = frames.with_shape((3_600_000, 512))
    assert grown.to_stored_json()["chunks"] == [{"regular": 1}, {"regular": 512}]
    axis = grown.chunks[0]
    assert isinstance(axis, RegularChunks)
    assert (len(axis), axis[0], axis[-1]) == (3_600_000, 1, 1)
    assert grown.block_slices((2_999_999, 0)) == (slice(2_999_999, 3_000_000), slice(0, 512))
    odd = RegularChunks(4, 10)
    assert (tuple(odd), odd[1:], odd[-1], len(RegularChunks(4, 0))) == ((4, 4, 2), (4, 2), 2, 1)
    assert (
        odd == (4, 4, 2) and odd == [4, 4, 2] and odd != (4, 4, 1) and odd != RegularChunks(5, 10)
    )
    assert RegularChunks(10, 7) == RegularChunks(7, 7) == (7,)
    assert hash(odd) == hash((4, 4, 2))
    with pytest.raises(IndexError):
        odd[3]


@pytest.mark.parametrize(
    "chunks",
    [
        [{"regular": 0}, [3]],
        [{"regular": True}, [3]],
        [{"step": 2}, [3]],
        [{"regular": 2, "x": 1}, [3]],
    ],
)
def test_stored_chunks_validated(chunks: list[Any]) -> None:
    with pytest.raises(ValueError, match="stored chunks"):
        ArrayStructure.from_json(_json(chunks=chunks), stored=True)


def test_clients_send_listed_chunks_only() -> None:
    compact = _json(chunks=[{"regular": 2}, [3]])
    assert ArrayStructure.from_json(compact, stored=True).to_json()["chunks"] == [[2, 2, 1], [3]]
    with pytest.raises(ValueError, match="chunks must be a list of integers"):
        ArrayStructure.from_json(compact)
    listed = _json()
    assert tiled_structure(listed) is listed  # nothing compact: served as it is


def test_with_shape_keeps_dims_and_rejects_rank_change() -> None:
    s = ArrayStructure.from_json(_json())
    assert s.with_shape((9, 3)).dims == ("x", "y")
    with pytest.raises(ValueError, match="Cannot reshape"):
        s.with_shape((9,))
