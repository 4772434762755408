"""Round trips of every dtype Tiled supports, 1-D to 4-D, written by block and read by slice."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
    "datetime64[ns]", "timedelta64[s]", "S5", "U3", ">i4", ">f8",
]  # fmt: skip
SHAPES = [(4,), (4, 3), (4, 3, 2), (4, 3, 2, 2)]


def sample(dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(7)
    n = int(np.prod(shape))
    if dtype.kind == "b":
        flat = rng.integers(0, 2, n).astype(bool)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        flat = rng.integers(info.min, info.max, n, dtype=dtype.newbyteorder("="), endpoint=True)
    elif dtype.kind == "f":
        flat = rng.standard_normal(n).astype(dtype)
    elif dtype.kind == "c":
        flat = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dtype)
    elif dtype.kind in "mM":
        flat = rng.integers(-(10**12), 10**12, n).astype(dtype)
    elif dtype.kind == "S":
        flat = np.array([f"b{i}".encode() for i in range(n)], dtype=dtype)
    else:
        flat = np.array([f"ü{i % 100}" for i in range(n)], dtype=dtype)
    return flat.reshape(shape).astype(dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_block_writes_and_sliced_reads_round_trip(
    client: Any, key: str, dtype_name: str, shape: tuple[int, ...]
) -> None:
    from tiled.structures.array import ArrayStructure, BuiltinDtype
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource

    dtype = np.dtype(dtype_name)
    expected = sample(dtype, shape)
    chunks = ((2, 2), *tuple((n,) for n in shape[1:]))
    structure = ArrayStructure(
        data_type=BuiltinDtype.from_numpy_dtype(dtype), shape=shape, chunks=chunks
    )
    node = client.new(
        StructureFamily.array,
        [DataSource(structure=structure, structure_family=StructureFamily.array)],
        key=key,
    )
    for block in itertools.product(*(range(len(c)) for c in chunks)):
        index = tuple(slice(b * c[0], b * c[0] + c[0]) for b, c in zip(block, chunks, strict=True))
        node.write_block(expected[index], block=block)

    fresh = client[key]
    assert fresh.dtype == dtype
    np.testing.assert_array_equal(fresh.read(), expected)
    np.testing.assert_array_equal(fresh[1:3], expected[1:3])
    np.testing.assert_array_equal(fresh[::-1], expected[::-1])
    np.testing.assert_array_equal(fresh[-1], expected[-1])
    np.testing.assert_array_equal(fresh.read_block((1,) + (0,) * (len(shape) - 1)), expected[2:4])
    if len(shape) > 1:
        np.testing.assert_array_equal(fresh[:, 1], expected[:, 1])
        np.testing.assert_array_equal(fresh[..., 0], expected[..., 0])


@pytest.mark.parametrize("dtype_name", ["int64", "float32", "U3", "datetime64[ns]"])
def test_write_array_then_patch_extend_keeps_values(client: Any, key: str, dtype_name: str) -> None:
    dtype = np.dtype(dtype_name)
    first = sample(dtype, (3, 2))
    more = sample(dtype, (5, 2))[3:]
    node = client.write_array(first, key=key)
    node.patch(more, offset=(3,), extend=True)
    assert node.shape == (5, 2)
    np.testing.assert_array_equal(client[key].read(), np.concatenate([first, more]))
