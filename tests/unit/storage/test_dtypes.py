"""Tiled data_type JSON <-> numpy dtype (expected JSON taken from tiled 0.2.20's BuiltinDtype)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ferrotile.storage.dtypes import data_type_to_numpy, numpy_to_data_type


def _dt(endianness: str, kind: str, itemsize: int, dt_units: str | None = None) -> dict[str, Any]:
    return {"endianness": endianness, "kind": kind, "itemsize": itemsize, "dt_units": dt_units}


# (numpy spelling, JSON tiled 0.2.20 produces for it)
CASES = [
    ("?", _dt("not_applicable", "b", 1)),
    ("i1", _dt("not_applicable", "i", 1)),
    ("<i2", _dt("little", "i", 2)),
    (">i2", _dt("big", "i", 2)),
    ("<i4", _dt("little", "i", 4)),
    (">i8", _dt("big", "i", 8)),
    ("u1", _dt("not_applicable", "u", 1)),
    ("<u2", _dt("little", "u", 2)),
    (">u4", _dt("big", "u", 4)),
    ("<u8", _dt("little", "u", 8)),
    ("<f2", _dt("little", "f", 2)),
    (">f2", _dt("big", "f", 2)),
    ("<f4", _dt("little", "f", 4)),
    (">f8", _dt("big", "f", 8)),
    ("<c8", _dt("little", "c", 8)),
    (">c16", _dt("big", "c", 16)),
    ("<M8[ns]", _dt("little", "M", 8, "[ns]")),
    (">M8[us]", _dt("big", "M", 8, "[us]")),
    ("<M8[D]", _dt("little", "M", 8, "[D]")),
    ("<m8[10s]", _dt("little", "m", 8, "[10s]")),
    ("<m8[ms]", _dt("little", "m", 8, "[ms]")),
    ("S7", _dt("not_applicable", "S", 7)),
    ("<U3", _dt("little", "U", 12)),
    (">U2", _dt("big", "U", 8)),
    ("V5", _dt("not_applicable", "V", 5)),
]


@pytest.mark.parametrize(("spelling", "json"), CASES, ids=[c[0] for c in CASES])
def test_round_trip_matches_tiled(spelling: str, json: dict[str, Any]) -> None:
    dtype = np.dtype(spelling)
    assert numpy_to_data_type(dtype) == json
    back = data_type_to_numpy(json)
    assert back == dtype
    assert back.str == dtype.str  # byte order preserved, not just equality


def test_native_order_reported_as_machine_order() -> None:
    import sys

    assert numpy_to_data_type(np.dtype("=i4"))["endianness"] == sys.byteorder
    assert numpy_to_data_type(np.int64)["endianness"] == sys.byteorder


def test_dt_units_without_count_and_missing_key() -> None:
    assert data_type_to_numpy(_dt("little", "M", 8, "[1s]")) == np.dtype("<M8[s]")
    # dt_units may be omitted entirely for non-datetime kinds.
    assert data_type_to_numpy({"endianness": "little", "kind": "f", "itemsize": 8}) == np.float64


@pytest.mark.parametrize(
    "bad",
    [
        _dt("little", "q", 4),  # unknown kind
        _dt("little", "O", 8),  # object arrays
        _dt("little", "i", 3),  # bad size
        _dt("little", "f", 16),  # long double
        _dt("little", "f", 0),
        _dt("little", "U", 6),  # not a multiple of 4
        _dt("middle", "i", 4),
        _dt("little", "M", 8),  # datetime without units
        _dt("little", "M", 8, "[fortnight]"),
        _dt("little", "i", 4, "[ns]"),  # units on a non-datetime
        {"endianness": "little", "kind": "i", "itemsize": True},
        {"endianness": "little", "kind": "i"},
        {"itemsize": 8, "fields": [{"name": "a", "dtype": _dt("little", "i", 8), "shape": None}]},
        "int32",
        None,
    ],
)
def test_rejects_unsupported(bad: Any) -> None:
    with pytest.raises(ValueError, match="Unsupported data type"):
        data_type_to_numpy(bad)


@pytest.mark.parametrize("bad", [np.dtype([("a", "i4")]), np.dtype("O"), np.dtype("f16"), "M8"])
def test_numpy_to_data_type_rejects(bad: Any) -> None:
    with pytest.raises(ValueError, match="Unsupported data type"):
        numpy_to_data_type(bad)
