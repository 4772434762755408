"""Array serializers: ``numpy.ndarray`` in, response body out, one function per media type.

The layouts follow Tiled 0.2.20 (``tiled/serialization/array.py``) so exports look the same:

- CSV is ``numpy.savetxt(fmt="%s", delimiter=",")``: one line per row (1-D: one value per line);
  more than two dimensions cannot be written (:class:`UnsupportedShape`, answered 406).
- PNG of data PNG cannot hold (signed ints, floats, ...) is Tiled's preview: auto-scaled between
  the 1st and 99th percentile to 8 bits. Unlike Tiled, data PNG *can* hold (2-D ``uint8``,
  ``uint16``, ``bool``; ``uint8`` with 3 or 4 colour channels last) is written losslessly, so a
  PNG export of an image reads back as the same array.
- TIFF is lossless for every dtype tifffile can write, up to four dimensions.
- HTML embeds the PNG, or the CSV when the data cannot be an image.
- ``.npy`` (not served by Tiled) is ``numpy.save``'s format, dtype and shape included.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from ferrotile.errors import FerrotileError

ArraySerializer = Callable[[np.ndarray], bytes]


class SerializationError(FerrotileError):
    """The media type is served, but not for this particular data (answered 406)."""


class UnsupportedShape(SerializationError):
    """The data has a shape the media type cannot represent; ``args[0]`` is the shape."""


def as_octet_stream(data: np.ndarray) -> bytes:
    """Raw bytes in C order and native byte order (what the stock client decodes)."""
    return np.ascontiguousarray(data).tobytes()


def _json_default(value: Any) -> Any:
    # orjson serializes C-contiguous arrays of plain numeric dtypes itself; everything else
    # (0-d arrays, strings, non-contiguous views, numpy scalars) arrives here.
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def as_json(data: np.ndarray) -> bytes:
    """Nested JSON lists (a bare value for 0-d data); NaN becomes ``null``."""
    try:
        return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY, default=_json_default)
    except TypeError as exc:
        raise SerializationError(f"dtype {data.dtype} cannot be written as JSON: {exc}") from None


def as_csv(data: np.ndarray) -> bytes:
    """Comma-separated values; each value formatted with ``str`` as numpy does."""
    if data.ndim > 2:
        raise UnsupportedShape(data.shape)
    file = io.StringIO()
    # savetxt refuses 0-d data (Tiled answers 500); a scalar is one line with one value.
    np.savetxt(file, np.atleast_1d(data), fmt="%s", delimiter=",")
    return file.getvalue().encode()


def _png_native(data: np.ndarray) -> bool:
    """Whether PNG holds this data exactly (grey 8/16-bit or 1-bit, RGB/RGBA 8-bit)."""
    if data.ndim == 2:
        return data.dtype in (np.uint8, np.uint16, np.bool_)
    return data.ndim == 3 and data.dtype == np.uint8 and data.shape[-1] in (3, 4)


def _autoscale_to_uint8(data: np.ndarray) -> np.ndarray:
    """Tiled's preview scaling: clip to the 1st..99th percentile, stretch to 0..255."""
    try:
        values = data.astype(np.float32)
    except (TypeError, ValueError):  # strings, structured or object data: no pixel values
        raise SerializationError(
            f"Failed to serialize this array as png. Shape is {data.shape}, dtype is {data.dtype}."
        ) from None
    if values.size == 0:
        raise SerializationError(f"Cannot make an image of empty data of shape {data.shape}.")
    low, high = np.percentile(values.ravel(), [1, 99])
    if not np.isfinite(low) or not np.isfinite(high):
        raise SerializationError("Cannot make an image of data with non-finite values.")
    if high == low:  # constant data: Tiled divides by zero here; a black image is the intent
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = np.clip((values - low) / (high - low), 0, 1)
    return np.rint(scaled * 255).astype(np.uint8)


def as_png(data: np.ndarray) -> bytes:
    """A PNG image of 2-D data (or 3-D with colour channels last); see the module notes."""
    from PIL import Image

    if data.ndim > 3:
        raise UnsupportedShape(data.shape)
    data = np.atleast_2d(data)
    pixels = data if _png_native(data) else _autoscale_to_uint8(data)
    file = io.BytesIO()
    try:
        # Pillow decides which 3-D shapes are images (RGB, RGBA, LA); it raises for the rest.
        Image.fromarray(np.ascontiguousarray(pixels)).save(file, format="png")
    except (TypeError, ValueError, OSError, KeyError):
        raise SerializationError(
            f"Failed to serialize this array as png. Shape is {data.shape}, dtype is {data.dtype}."
        ) from None
    return file.getvalue()


def as_tiff(data: np.ndarray) -> bytes:
    """A lossless TIFF of up to 4-D data (0-D and 1-D are written as one row)."""
    import tifffile

    data = np.atleast_2d(data)
    if data.ndim > 4:
        raise UnsupportedShape(data.shape)
    file = io.BytesIO()
    try:
        tifffile.imwrite(file, data)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"Failed to serialize this array as tiff. Shape is {data.shape}, "
            f"dtype is {data.dtype}: {exc}"
        ) from None
    return file.getvalue()


def as_html(data: np.ndarray) -> bytes:
    """An HTML page showing the data as an inline PNG, or as CSV text when it is no image."""
    try:
        image = base64.b64encode(as_png(data)).decode()
    except SerializationError:
        return b"<html><body>" + as_csv(data) + b"</body></html>"
    return f'<html><body><img src="data:image/png;base64,{image}"/></body></html>'.encode()


def as_npy(data: np.ndarray) -> bytes:
    """NumPy's ``.npy`` format (dtype, shape and order travel with the data)."""
    file = io.BytesIO()
    try:
        np.save(file, data, allow_pickle=False)
    except ValueError as exc:  # object arrays would need pickle, which clients must not load
        raise SerializationError(str(exc)) from None
    return file.getvalue()
