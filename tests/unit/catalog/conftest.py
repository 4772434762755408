"""Shared builders for catalog tests."""

from __future__ import annotations

from typing import Any

from ferrotile.catalog.models import Asset, DataSource


def array_source(shape: list[int], *, assets: tuple[Asset, ...] = ()) -> DataSource:
    """A data source as the HTTP layer would pass for a new array."""
    structure: dict[str, Any] = {
        "data_type": {"endianness": "little", "kind": "f", "itemsize": 8, "dt_units": None},
        "chunks": [[n] for n in shape],
        "shape": shape,
        "dims": None,
        "resizable": False,
    }
    return DataSource(
        id=None,
        structure_family="array",
        structure=structure,
        mimetype="application/x-zarr",
        parameters={},
        properties={},
        management="writable",
        assets=assets,
    )


def tiff_series(*names: str) -> DataSource:
    """A registered (external) image series with one asset per file."""
    assets = tuple(
        Asset(
            id=None,
            data_uri=f"file://localhost/data/{name}",
            is_directory=False,
            parameter="data_uris",
            num=i,
            size=1000 + i,
        )
        for i, name in enumerate(names)
    )
    source = array_source([len(names), 4, 4], assets=assets)
    return DataSource(
        id=None,
        structure_family="array",
        structure=source.structure,
        mimetype="multipart/related;type=image/tiff",
        parameters={"sep": ";"},
        properties={"chunks": [[1] * len(names), [4], [4]]},
        management="external",
        assets=assets,
    )
