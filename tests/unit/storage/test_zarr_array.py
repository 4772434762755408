"""ZarrArray against real zarr v3 directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ferrotile.errors import PatchOutOfBounds, StorageError
from ferrotile.storage.dtypes import numpy_to_data_type
from ferrotile.storage.slicing import parse_slice
from ferrotile.storage.structure import ArrayStructure
from ferrotile.storage.zarr_array import ZarrArray, array_from_body


def _structure(
    dtype: Any, shape: tuple[int, ...], chunks: tuple[tuple[int, ...], ...] | None = None
) -> ArrayStructure:
    if chunks is None:
        chunks = tuple((n,) for n in shape)
    return ArrayStructure(data_type=numpy_to_data_type(np.dtype(dtype)), chunks=chunks, shape=shape)


def _sample(dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    kind = dtype.kind
    if kind == "b":
        flat: np.ndarray = np.arange(n) % 3 == 0
    elif kind in "mM":
        flat = np.arange(1, n + 1).astype(f"m8[{np.datetime_data(dtype)[0]}]") * 7
        if kind == "M":
            flat = flat + np.datetime64(0, np.datetime_data(dtype)[0])
    elif kind == "S":
        # Embedded NULs must survive (only trailing NULs are padding in numpy).
        flat = np.array([f"a\x00{i}".encode()[: dtype.itemsize] for i in range(n)])
    elif kind == "U":
        flat = np.array([f"é{i}"[: dtype.itemsize // 4] for i in range(n)])
    elif kind == "V":
        flat = np.frombuffer(bytes(range(n * dtype.itemsize)), dtype=dtype)
    elif kind == "c":
        flat = np.arange(n) + 1j * np.arange(n, 0, -1)
    else:
        flat = np.arange(n) + (0.5 if kind == "f" else 1)
    return flat.astype(dtype).reshape(shape)


DTYPES = [
    "?",
    "i1",
    "<i2",
    ">i4",
    "<i8",
    "u1",
    ">u2",
    "<u4",
    ">u8",
    "<f2",
    ">f2",
    "<f4",
    ">f8",
    "<c8",
    ">c16",
    "<M8[ns]",
    ">M8[s]",
    "<m8[10ms]",
    "S5",
    "<U3",
    ">U4",
    "V3",
]


@pytest.mark.parametrize("spelling", DTYPES)
def test_dtype_round_trip_bytes_identical(tmp_path: Path, spelling: str) -> None:
    dtype = np.dtype(spelling)
    structure = _structure(dtype, (5, 3), ((2, 2, 1), (3,)))
    data = _sample(dtype, (5, 3))
    ZarrArray.create(tmp_path / "a", structure).write_full(data)
    # A fresh open must give back the exact bytes, in the structure's dtype.
    arr = ZarrArray.open(tmp_path / "a")
    assert arr.structure == structure
    out = arr.read()
    assert out.dtype.str == dtype.str
    assert out.tobytes() == data.tobytes()
    np.testing.assert_array_equal(arr.read((slice(1, 4), 2)), data[1:4, 2])
    np.testing.assert_array_equal(arr.read_block((2, 0)), data[4:5])


def test_unwritten_array_reads_fill_value(tmp_path: Path) -> None:
    for spelling, fill in [("<i4", 0), ("?", False), ("<f8", 0.0), ("S3", b""), ("<U2", "")]:
        arr = ZarrArray.create(tmp_path / spelling, _structure(spelling, (2,)))
        np.testing.assert_array_equal(arr.read(), np.array([fill, fill], dtype=spelling))
    arr = ZarrArray.create(tmp_path / "dt", _structure("<M8[ns]", (2,)))
    assert np.isnat(arr.read()).all()


@pytest.mark.parametrize(
    ("shape", "chunks", "params"),
    [
        ((7,), ((3, 3, 1),), ["", "0:2:1", ":2:1", "6:-8:-1", "::3", "-1", "...", "5:100"]),
        ((4, 5), ((2, 2), (5,)), ["1,:", "...,4", "3:-5:-1,::2", "0:4:1,0:5:1", "2,3"]),
        ((3, 4, 5), ((1, 2), (4,), (2, 3)), ["1,...", ":,2:-5:-1,1:4", "...,0", "-1,-1,-1"]),
        ((2, 3, 4, 5), ((1, 1), (3,), (2, 2), (5,)), ["1,2,...", ":,::-1,1:3,4", "..."]),
    ],
)
def test_write_full_and_read_slices(
    tmp_path: Path, shape: tuple[int, ...], chunks: tuple[tuple[int, ...], ...], params: list[str]
) -> None:
    data = np.arange(int(np.prod(shape)), dtype="<i4").reshape(shape) * 3
    arr = ZarrArray.create(tmp_path / "a", _structure("<i4", shape, chunks))
    arr.write_full(data)
    np.testing.assert_array_equal(arr.read(), data)
    for param in params:
        sel = parse_slice(param, shape)
        out = arr.read(sel)
        np.testing.assert_array_equal(out, data[sel])
        assert out.flags.c_contiguous


def test_scalar_array(tmp_path: Path) -> None:
    arr = ZarrArray.create(tmp_path / "s", _structure("<f8", ()))
    arr.write_full(np.array(2.5))
    out = ZarrArray.open(tmp_path / "s").read()
    assert out.shape == ()
    assert out == 2.5
    np.testing.assert_array_equal(arr.read_block(()), np.array(2.5))


def test_zero_length_dimension(tmp_path: Path) -> None:
    arr = ZarrArray.create(tmp_path / "e", _structure("<f8", (0, 3), ((0,), (3,))))
    assert arr.read().shape == (0, 3)


def test_block_writes_and_read_block(tmp_path: Path) -> None:
    shape, chunks = (5, 4), ((2, 3), (3, 1))  # irregular blocks, not zarr-aligned
    data = np.arange(20, dtype=">f8").reshape(shape)
    arr = ZarrArray.create(tmp_path / "b", _structure(">f8", shape, chunks))
    s = arr.structure
    for block in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        arr.write_block(block, np.ascontiguousarray(data[s.block_slices(block)]))
    arr = ZarrArray.open(tmp_path / "b")
    np.testing.assert_array_equal(arr.read(), data)
    np.testing.assert_array_equal(arr.read_block((1, 0)), data[2:5, 0:3])
    np.testing.assert_array_equal(
        arr.read_block((1, 0), (slice(None, None, -1), 1)), data[4:1:-1, 1]
    )
    np.testing.assert_array_equal(arr.read_block((1, 1), (Ellipsis, 0)), data[2:5, 3])
    assert arr.read_block((0, 1), (1, 0)) == data[1, 3]
    with pytest.raises(ValueError, match="Block index out of range"):
        arr.read_block((2, 0))
    with pytest.raises(ValueError, match="Block index out of range"):
        arr.write_block((0, 2), data[:2, :1])
    with pytest.raises(ValueError, match=r"Expected data of shape \(2, 3\)"):
        arr.write_block((0, 0), data[:2, :2])
    with pytest.raises(ValueError, match="out of bounds"):
        arr.read_block((0, 0), (2,))


def test_write_full_shape_mismatch(tmp_path: Path) -> None:
    arr = ZarrArray.create(tmp_path / "a", _structure("<i2", (3,)))
    with pytest.raises(ValueError, match=r"Expected data of shape \(3,\)"):
        arr.write_full(np.zeros(4, dtype="<i2"))
    with pytest.raises(ValueError, match="Cannot store"):
        arr.write_full(np.zeros(3, dtype="<f8"))


def test_patch_within_bounds(tmp_path: Path) -> None:
    structure = _structure("<i8", (4, 5), ((2, 2), (5,)))
    arr = ZarrArray.create(tmp_path / "p", structure)
    arr.write_full(np.zeros((4, 5), dtype="<i8"))
    new = arr.patch(np.full((2, 2), 7, dtype="<i8"), (1, 3), False, structure)
    assert new == structure
    expected = np.zeros((4, 5), dtype="<i8")
    expected[1:3, 3:5] = 7
    np.testing.assert_array_equal(arr.read(), expected)
    # Short offset is padded with zeros at the end.
    arr.patch(np.ones((1, 5), dtype="<i8"), (3,), False, structure)
    expected[3] = 1
    np.testing.assert_array_equal(ZarrArray.open(tmp_path / "p").read(), expected)


def test_patch_out_of_bounds_without_extend(tmp_path: Path) -> None:
    structure = _structure("<f4", (3,))
    arr = ZarrArray.create(tmp_path / "p", structure)
    arr.write_full(np.arange(3, dtype="<f4"))
    with pytest.raises(PatchOutOfBounds, match=r"Use \?extend=true") as info:
        arr.patch(np.ones(2, dtype="<f4"), (2,), False, structure)
    assert isinstance(info.value, ValueError)
    assert "does not fit within current array shape (3,)" in str(info.value)
    np.testing.assert_array_equal(arr.read(), [0, 1, 2])  # untouched
    assert arr.structure == structure


def test_patch_extend_fills_gap_and_regrows_chunks(tmp_path: Path) -> None:
    structure = _structure("<u2", (3, 2), ((3,), (2,)))
    arr = ZarrArray.create(tmp_path / "p", structure)
    base = np.arange(6, dtype="<u2").reshape(3, 2) + 1
    arr.write_full(base)
    new = arr.patch(np.full((1, 2), 9, dtype="<u2"), (5, 1), True, structure)
    assert new.shape == (6, 3)
    assert new.to_json()["chunks"] == [[3, 3], [2, 1]]
    expected = np.zeros((6, 3), dtype="<u2")
    expected[:3, :2] = base
    expected[5, 1:3] = 9
    np.testing.assert_array_equal(arr.read(), expected)
    # The new structure is persisted with the data.
    reopened = ZarrArray.open(tmp_path / "p")
    assert reopened.structure == new
    np.testing.assert_array_equal(reopened.read(), expected)
    np.testing.assert_array_equal(reopened.read_block((1, 1)), expected[3:6, 2:3])
    # And the next extend grows from there, with the original chunk size.
    newer = reopened.patch(np.ones((2, 3), dtype="<u2"), (6,), True, new)
    assert newer.to_json()["chunks"] == [[3, 3, 2], [2, 1]]
    np.testing.assert_array_equal(reopened.read()[6:], np.ones((2, 3)))


def test_patch_extend_string_dtype(tmp_path: Path) -> None:
    structure = _structure("<U2", (2,))
    arr = ZarrArray.create(tmp_path / "p", structure)
    arr.write_full(np.array(["ab", "c"]))
    new = arr.patch(np.array(["zz"]), (3,), True, structure)
    assert new.shape == (4,)
    np.testing.assert_array_equal(arr.read(), np.array(["ab", "c", "", "zz"]))


def test_patch_bad_input(tmp_path: Path) -> None:
    structure = _structure("<f8", (3, 3))
    arr = ZarrArray.create(tmp_path / "p", structure)
    with pytest.raises(ValueError, match="Invalid offset"):
        arr.patch(np.ones((1, 1)), (-1, 0), True, structure)
    with pytest.raises(ValueError, match="Invalid offset"):
        arr.patch(np.ones((1, 1)), (0, 0, 0), True, structure)
    with pytest.raises(ValueError, match="Expected 2-dimensional data"):
        arr.patch(np.ones(3), (0,), True, structure)


def test_on_disk_format_is_zarr_v3(tmp_path: Path) -> None:
    structure = ArrayStructure.from_json(
        {
            "data_type": numpy_to_data_type(np.dtype("<f8")),
            "chunks": [[4, 4, 2], [3]],
            "shape": [10, 3],
            "dims": ["t", "x"],
        }
    )
    ZarrArray.create(tmp_path / "z", structure, per_shard=1)
    meta = json.loads((tmp_path / "z" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    assert meta["shape"] == [10, 3]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [4, 3]
    assert meta["dimension_names"] == ["t", "x"]


def test_small_chunks_are_sharded_along_the_first_axis(tmp_path: Path) -> None:
    # One 1 KiB frame per chunk: 4096 frames per shard file, index at the start, no checksum.
    structure = _structure("<u2", (1, 16, 32), ((1,), (16,), (32,)))
    arr = ZarrArray.create(tmp_path / "s", structure)
    meta = json.loads((tmp_path / "s" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [4096, 16, 32]
    (codec,) = meta["codecs"]
    assert codec["name"] == "sharding_indexed"
    assert codec["configuration"]["chunk_shape"] == [1, 16, 32]
    assert codec["configuration"]["index_location"] == "start"
    assert [c["name"] for c in codec["configuration"]["index_codecs"]] == ["bytes"]
    frame = np.arange(512, dtype="<u2").reshape(1, 16, 32)
    grown = arr.patch(frame, (1,), True, structure)
    assert grown.shape == (2, 16, 32)
    np.testing.assert_array_equal(arr.read()[1], frame[0])
    assert sorted(p.name for p in (tmp_path / "s").rglob("*") if p.is_file()) == ["0", "zarr.json"]


@pytest.mark.parametrize(
    ("chunk", "itemsize", "asked", "expected"),
    [
        ((1, 16, 32), 2, None, 4096),  # 1 KiB frames: capped by the index size
        ((1, 256, 256), 4, None, 64),  # 256 KiB frames: 16 MiB shards
        ((1, 2048, 1024), 4, None, 1),  # 8 MiB frames: a file each
        ((1, 256, 256), 4, 10, 10),  # the node's own choice
        ((), 8, None, 1),  # a scalar has one chunk
    ],
)
def test_chunks_per_shard(
    chunk: tuple[int, ...], itemsize: int, asked: int | None, expected: int
) -> None:
    from ferrotile.storage.layout import chunks_per_shard

    assert chunks_per_shard(chunk, itemsize, asked) == expected


def test_create_twice_and_open_missing(tmp_path: Path) -> None:
    structure = _structure("<f8", (3,))
    ZarrArray.create(tmp_path / "a", structure)
    with pytest.raises(StorageError, match="already holds"):
        ZarrArray.create(tmp_path / "a", structure)
    with pytest.raises(StorageError, match="No ferrotile zarr array"):
        ZarrArray.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError, match="No ferrotile zarr array"):
        ZarrArray.open(tmp_path / "empty")


def test_array_from_body(tmp_path: Path) -> None:
    data = np.arange(6, dtype=">i4").reshape(2, 3)
    structure = _structure(">i4", (2, 3))
    out = array_from_body(data.tobytes(), structure, (2, 3))
    np.testing.assert_array_equal(out, data)
    assert out.dtype.str == ">i4"
    body = bytearray(data.tobytes())
    assert np.shares_memory(array_from_body(body, ">i4", (6,)), np.frombuffer(body, "u1"))
    assert array_from_body(b"", "<f8", (0, 4)).shape == (0, 4)
    with pytest.raises(ValueError, match=r"Expected 24 bytes for shape \(2, 3\) and dtype >i4"):
        array_from_body(data.tobytes()[:-1], structure, (2, 3))
    with pytest.raises(ValueError, match="got 24"):
        array_from_body(data.tobytes(), "<i4", (7,))


def test_concurrent_block_writes_from_threads(tmp_path: Path) -> None:
    # Blocks written from worker threads through one shared ZarrArray (plain chunks: a shard is
    # rewritten whole by zarr-python, so its writers are serialised by the node's lock).
    from concurrent.futures import ThreadPoolExecutor

    shape, chunks = (16, 6), ((2,) * 8, (3, 3))
    data = np.arange(96, dtype="<f8").reshape(shape)
    arr = ZarrArray.create(tmp_path / "c", _structure("<f8", shape, chunks), per_shard=1)
    blocks = [(i, j) for i in range(8) for j in range(2)]

    def write(block: tuple[int, int]) -> None:
        arr.write_block(block, np.ascontiguousarray(data[arr.structure.block_slices(block)]))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, blocks))
    np.testing.assert_array_equal(arr.read(), data)


@pytest.mark.parametrize("per_shard", [None, 1], ids=["sharded", "plain"])
@pytest.mark.parametrize("dtype", ["<u2", ">i4", "<c16"])
def test_the_engine_reads_its_layouts_as_zarr_python_does(
    tmp_path: Path, per_shard: int | None, dtype: str
) -> None:
    """Reads of arrays in the engine's layouts go through its reader (``read_zarr_box``): the
    same elements as zarr-python for boxes across chunks and shards, never-written chunks as
    the fill value; another layout is left to zarr-python."""
    import zarr

    from ferrotile._core import read_zarr_box

    shape = (37, 5)
    structure = _structure(dtype, shape, ((4,) * 9 + (1,), (5,)))
    array = ZarrArray.create(tmp_path / "a", structure, per_shard=per_shard)
    expected = _sample(np.dtype(dtype), shape)
    expected[32:] = 0  # blocks 8 and 9 (rows 32-36) stay unwritten: the fill value
    for block in range(8):
        array.write_block((block, 0), expected[block * 4 : block * 4 + 4])
    reference = zarr.open_array(store=str(tmp_path / "a"), mode="r")
    for start, size in [((0, 0), (37, 5)), ((3, 1), (30, 3)), ((35, 4), (2, 1)), ((9, 0), (0, 5))]:
        found = read_zarr_box(str(tmp_path / "a"), start, size)
        assert found is not None
        data, big_endian = found
        assert not big_endian  # ferrotile stores native (little-endian) order
        box = np.frombuffer(data, np.dtype(dtype).newbyteorder("<")).reshape(size)
        window = tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))
        np.testing.assert_array_equal(box, reference[window])
        np.testing.assert_array_equal(box, expected[window])
    for selection in ["::3,1", "36,::-2", "5:30:7", "-1"]:
        sel = parse_slice(selection, shape)
        np.testing.assert_array_equal(array.read(sel), expected[sel])
    # Written big-endian by zarr-python: read in that order, and said so.
    big = zarr.create_array(
        store=str(tmp_path / "c"),
        shape=(6,),
        chunks=(2,),
        dtype="i4",
        serializer=zarr.codecs.BytesCodec(endian="big"),
    )
    big[:] = np.arange(6, dtype="i4") * 1000
    found = read_zarr_box(str(tmp_path / "c"), [1], [4])
    assert found is not None and found[1] is True
    assert np.frombuffer(found[0], ">i4").tolist() == [1000, 2000, 3000, 4000]
    # zarr-python's default layout for a large array (a crc32c-checked shard index) is not ours.
    other = zarr.create_array(
        store=str(tmp_path / "b"), shape=(8,), chunks=(2,), shards=(8,), dtype="u1"
    )
    other[:] = np.arange(8, dtype="u1")
    assert read_zarr_box(str(tmp_path / "b"), [0], [8]) is None
    with pytest.raises(StorageError):
        read_zarr_box(str(tmp_path / "a"), [0], [1])  # another rank
