"""Awkward arrays as their raw buffers: form checks, buffer validation and zip storage.

The server never needs the ``awkward`` library: an awkward array is a JSON *form* (a tree of
layout nodes, each with a ``form_key``), a length, and named little-endian buffers
``"{form_key}-{role}"`` (``node1-offsets``, ``node2-data``...) as ``awkward.to_buffers`` makes
them. This module walks the form with numpy to check that a set of buffers really describes an
array of that form and length (so a bad upload is refused, not stored), and stores the buffers
of a node in one uncompressed zip, replaced atomically (temp file + rename) on every write.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "AwkwardBuffers",
    "check_buffers",
    "check_form",
    "expected_buffers",
    "read_zip",
    "write_zip",
]

#: Integer types awkward uses for index-like buffers (offsets, starts, index, tags, mask).
_INDEX_TYPES = {"i8": "<i1", "u8": "<u1", "i32": "<i4", "u32": "<u4", "i64": "<i8"}
#: Buffers each layout class owns, with the form attribute that names their index type.
_ROLES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "NumpyArray": (("data", None),),
    "EmptyArray": (),
    "RegularArray": (),
    "ListOffsetArray": (("offsets", "offsets"),),
    "ListArray": (("starts", "starts"), ("stops", "stops")),
    "RecordArray": (),
    "IndexedArray": (("index", "index"),),
    "IndexedOptionArray": (("index", "index"),),
    "ByteMaskedArray": (("mask", "mask"),),
    "BitMaskedArray": (("mask", "mask"),),
    "UnmaskedArray": (),
    "UnionArray": (("tags", "tags"), ("index", "index")),
}
_FILE = "buffers.zip"


def _children(form: Mapping[str, Any]) -> list[Any]:
    if "contents" in form:
        contents = form["contents"]
        if not isinstance(contents, list):
            raise ValueError(f"{form['class']} contents must be a list")
        return contents
    if "content" in form:
        return [form["content"]]
    return []


def _primitive(form: Mapping[str, Any]) -> np.dtype[Any]:
    try:
        dtype = np.dtype(form["primitive"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"NumpyArray needs a valid 'primitive': {exc}") from None
    if dtype.kind not in "biufcmM":
        raise ValueError(f"Unsupported primitive {form['primitive']!r}")
    return dtype.newbyteorder("<")


def _index_dtype(form: Mapping[str, Any], attribute: str) -> np.dtype[Any]:
    name = form.get(attribute)
    if name not in _INDEX_TYPES:
        raise ValueError(f"{form['class']} has invalid {attribute!r} type {name!r}")
    return np.dtype(_INDEX_TYPES[name])


def _walk(form: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(form, dict):
        raise ValueError(f"Each form node must be a JSON object with a 'class', got {form!r}")
    cls = form.get("class")
    if cls not in _ROLES:
        raise ValueError(f"Unsupported awkward form class {cls!r}")
    if cls in ("RecordArray", "UnionArray"):
        if not isinstance(form.get("contents"), list):
            raise ValueError(f"{cls} needs a list of 'contents'")
    elif cls not in ("NumpyArray", "EmptyArray") and "content" not in form:
        raise ValueError(f"{cls} needs a 'content'")
    yield form
    for child in _children(form):
        yield from _walk(child)


def expected_buffers(form: Any) -> dict[str, np.dtype[Any]]:
    """Buffer keys of ``form`` and their element dtypes.

    Raises
    ------
    ValueError
        An unknown layout class, a missing or duplicate ``form_key``, or a bad type name.
    """
    result: dict[str, np.dtype[Any]] = {}
    seen: set[str] = set()
    for node in _walk(form):
        roles = _ROLES[node["class"]]
        key = node.get("form_key")
        if roles and not isinstance(key, str):
            raise ValueError(f"{node['class']} has no form_key; buffers cannot be named")
        if isinstance(key, str):
            if key in seen:
                raise ValueError(f"Duplicate form_key {key!r}")
            seen.add(key)
        for role, attribute in roles:
            dtype = _primitive(node) if attribute is None else _index_dtype(node, attribute)
            result[f"{key}-{role}"] = dtype
    return result


def check_form(form: Any, length: Any) -> None:
    """Validate an awkward structure's ``form`` and ``length`` (raise ``ValueError``)."""
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise ValueError(f"length must be a non-negative integer, not {length!r}")
    expected_buffers(form)


def _array(buffers: Mapping[str, bytes], key: str, dtype: np.dtype[Any], n: int) -> np.ndarray:
    raw = buffers[key]
    if len(raw) % dtype.itemsize:
        raise ValueError(f"Buffer {key!r} has {len(raw)} bytes, not a multiple of {dtype.itemsize}")
    values = np.frombuffer(raw, dtype=dtype)
    if len(values) < n:
        raise ValueError(f"Buffer {key!r} has {len(values)} elements, {n} needed")
    return values[:n]


def _check(form: Mapping[str, Any], length: int, buffers: Mapping[str, bytes]) -> None:
    """Check that the buffers under ``form`` hold an array of ``length`` entries."""
    cls, key = form["class"], form.get("form_key")

    def index(role: str, attribute: str, n: int) -> np.ndarray:
        return _array(buffers, f"{key}-{role}", _index_dtype(form, attribute), n)

    def content_length(values: np.ndarray) -> int:
        return int(values.max()) + 1 if len(values) else 0

    if cls == "NumpyArray":
        inner = form.get("inner_shape") or []
        if not all(isinstance(d, int) and d >= 0 for d in inner):
            raise ValueError(f"Invalid inner_shape {inner!r}")
        _array(buffers, f"{key}-data", _primitive(form), length * math.prod(inner))
    elif cls == "EmptyArray":
        if length:
            raise ValueError("An EmptyArray must have length 0")
    elif cls == "RegularArray":
        size = form.get("size")
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"RegularArray needs a non-negative size, not {size!r}")
        _check(form["content"], length * size, buffers)
    elif cls == "ListOffsetArray":
        offsets = index("offsets", "offsets", length + 1)
        if offsets[0] < 0 or np.any(np.diff(offsets.astype(np.int64)) < 0):
            raise ValueError(f"Buffer {key}-offsets must be non-negative and non-decreasing")
        _check(form["content"], int(offsets[-1]), buffers)
    elif cls == "ListArray":
        starts, stops = index("starts", "starts", length), index("stops", "stops", length)
        if np.any(starts < 0) or np.any(stops < starts):
            raise ValueError(f"Buffers {key}-starts/stops must satisfy 0 <= start <= stop")
        used = stops[stops > starts]
        _check(form["content"], int(used.max()) if len(used) else 0, buffers)
    elif cls == "RecordArray":
        for content in form["contents"]:
            _check(content, length, buffers)
    elif cls in ("IndexedArray", "IndexedOptionArray"):
        values = index("index", "index", length)
        if cls == "IndexedArray" and np.any(values < 0):
            raise ValueError(f"Buffer {key}-index must be non-negative")
        _check(form["content"], content_length(values[values >= 0]), buffers)
    elif cls == "ByteMaskedArray":
        index("mask", "mask", length)
        _check(form["content"], length, buffers)
    elif cls == "BitMaskedArray":
        index("mask", "mask", -(-length // 8))
        _check(form["content"], length, buffers)
    elif cls == "UnmaskedArray":
        _check(form["content"], length, buffers)
    elif cls == "UnionArray":
        tags, values = index("tags", "tags", length), index("index", "index", length)
        contents = form["contents"]
        if np.any(tags < 0) or np.any(tags >= len(contents)) or np.any(values < 0):
            raise ValueError(f"Buffers {key}-tags/index are out of range")
        for i, content in enumerate(contents):
            _check(content, content_length(values[tags == i]), buffers)


def check_buffers(form: Any, length: int, buffers: Mapping[str, bytes]) -> None:
    """Check that ``buffers`` are exactly the buffers of an array of ``form`` and ``length``.

    Parameters
    ----------
    form : dict
        Awkward form JSON (``Form.to_dict()``), already accepted by :func:`check_form`.
    length : int
    buffers : mapping of str to bytes
        Buffer key (``"{form_key}-{role}"``) to little-endian bytes.

    Raises
    ------
    ValueError
        Missing or unexpected buffers, wrong sizes, or inconsistent offsets/indices.
    """
    expected = expected_buffers(form)
    missing = sorted(set(expected) - set(buffers))
    if missing:
        raise ValueError(f"Missing buffers: {missing}")
    unexpected = sorted(set(buffers) - set(expected))
    if unexpected:
        raise ValueError(f"Unexpected buffers (not in the form): {unexpected}")
    _check(form, length, buffers)


def read_zip(body: bytes) -> dict[str, bytes]:
    """The members of a zip body (raise ``ValueError`` if it is not a valid zip)."""
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise ValueError(f"Request body is not a valid zip file: {exc}") from None


def write_zip(buffers: Mapping[str, bytes], out: Any) -> None:
    """Write ``buffers`` as an uncompressed zip (as Tiled: random access, HTTP compresses)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in buffers.items():
            archive.writestr(name, data)


class AwkwardBuffers:
    """One node's buffers, in ``<directory>/buffers.zip``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / _FILE

    @property
    def written(self) -> bool:
        return self.path.exists()

    def write(self, buffers: Mapping[str, bytes]) -> None:
        """Replace all buffers at once (readers see the old set or the new one)."""
        temp = self.path.with_name(f".tmp-{uuid.uuid4().hex}.zip")
        try:
            with temp.open("wb") as out:
                write_zip(buffers, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def read(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The stored buffers named ``keys`` (``KeyError`` if one is absent)."""
        with zipfile.ZipFile(self.path) as archive:
            return {key: archive.read(key) for key in keys}
