"""The client's HTTP side: requests as the stock tiled client makes them, errors as
:class:`ServerError`, and the conversions between numpy dtypes and Tiled's ``data_type``."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from ferrotile.client.errors import ServerError

_ENDIANNESS = {"<": "little", ">": "big", "|": "not_applicable", "=": "little"}
_BYTE_ORDER = {"little": "<", "big": ">", "not_applicable": "|"}


def data_type(dtype: np.dtype[Any]) -> dict[str, Any]:
    """Tiled's ``data_type`` of a builtin numpy dtype (as ``BuiltinDtype.from_numpy_dtype``)."""
    if dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"only builtin dtypes can be streamed, not {dtype}")
    order = dtype.byteorder if dtype.itemsize > 1 else "|"
    units = None
    if dtype.kind in "mM":
        unit, count = np.datetime_data(dtype)
        units = f"[{count if count != 1 else ''}{unit}]"
    return {
        "endianness": _ENDIANNESS[order],
        "kind": dtype.kind,
        "itemsize": dtype.itemsize,
        "dt_units": units,
    }


def numpy_dtype(structure_data_type: dict[str, Any]) -> np.dtype[Any]:
    """The numpy dtype of Tiled's ``data_type`` (builtin dtypes only)."""
    spec = structure_data_type
    if "fields" in spec:
        raise ValueError("structured dtypes are not streamed by this client")
    units = spec.get("dt_units") or ""  # e.g. "[ns]"
    order = _BYTE_ORDER[spec["endianness"]]
    return np.dtype(f"{order}{spec['kind']}{spec['itemsize']}{units}")


def detail_of(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    return detail if isinstance(detail, str) else str(detail)


class Http:
    """One keep-alive HTTP connection pool to ``{url}/api/v1`` with the API key."""

    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        self.headers = {"Authorization": f"Apikey {api_key}"} if api_key else {}
        # The WebSocket side's trust (the system's store, SSL_CERT_FILE, SSL_CERT_DIR), not
        # httpx's default (certifi's bundle): one facility CA in the system store serves both.
        self.client = httpx.Client(
            base_url=f"{url}/api/v1",
            headers=self.headers,
            timeout=timeout,
            trust_env=False,
            verify=ssl.create_default_context(),
        )

    def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        ok: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> httpx.Response:
        # A kept-alive connection the server closed (e.g. after a 500) fails on first use: an
        # idempotent request is sent once more, on a new connection.
        attempts = 2 if method in ("GET", "PUT", "DELETE") else 1
        for attempt in range(attempts):
            try:
                response = self.client.request(method, path, **kwargs)
                break
            except (httpx.ReadError, httpx.RemoteProtocolError) as error:
                if attempt + 1 == attempts:
                    raise ServerError(0, f"{type(error).__name__}: {error}", what) from error
            except httpx.HTTPError as error:
                raise ServerError(0, f"{type(error).__name__}: {error}", what) from error
        if response.status_code not in ok:
            raise ServerError(response.status_code, detail_of(response), what)
        return response

    def close(self) -> None:
        self.client.close()


@dataclass
class NewArray:
    """An array node to create: ``body(n)`` is its ``POST /metadata/{parent}`` body (as the
    stock client's ``write_array``) with ``n`` frames."""

    parent: str
    key: str
    dtype: np.dtype[Any]
    frame_shape: tuple[int, ...]
    metadata: dict[str, Any]

    def body(self, frames: int) -> dict[str, Any]:
        shape = (frames, *self.frame_shape)
        return {
            "id": self.key,
            "structure_family": "array",
            "metadata": self.metadata,
            "specs": [],
            "access_tags": None,
            "data_sources": [
                {
                    "structure_family": "array",
                    "structure": {
                        "data_type": data_type(self.dtype),
                        "chunks": [[n] for n in shape],
                        "shape": list(shape),
                        "dims": None,
                        "resizable": False,
                    },
                    "id": None,
                    "mimetype": None,
                    "parameters": {},
                    "properties": {},
                    "assets": [],
                    "management": "writable",
                }
            ],
        }

    def create(self, http: Http, frames: int) -> httpx.Response:
        return http.request(
            "POST", f"/metadata/{quote(self.parent)}", f"create {self.key}", json=self.body(frames)
        )
