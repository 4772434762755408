"""Array storage: Tiled structures, dtypes, query-parameter parsing and zarr v3 persistence.

The zarr-backed store lives in `ferrotile.storage.zarr_array` and is not imported here, so that
code needing only structures or slice parsing does not pay for importing zarr.
"""

from .dtypes import data_type_to_numpy, numpy_to_data_type
from .slicing import (
    ExpectedShapeMismatch,
    check_expected_shape,
    normalize_selection,
    parse_int_tuple,
    parse_slice,
)
from .structure import ArrayStructure

__all__ = [
    "ArrayStructure",
    "ExpectedShapeMismatch",
    "check_expected_shape",
    "data_type_to_numpy",
    "normalize_selection",
    "numpy_to_data_type",
    "parse_int_tuple",
    "parse_slice",
]
