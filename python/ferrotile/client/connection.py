"""``connect(url, api_key)``: the client of one server, which makes writers and subscriptions."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import numpy as np

from ferrotile.client.closing import Closing
from ferrotile.client.cursor import Cursor
from ferrotile.client.errors import ClientError
from ferrotile.client.rest import Http, array_node, numpy_dtype
from ferrotile.client.subscription import Subscription
from ferrotile.client.transport import PatchTransport, PushTransport, Transport
from ferrotile.client.writer import Writer


def connect(url: str, api_key: str | None = None, *, timeout: float = 30.0) -> Client:
    """The client of the server at ``url`` (``http://host:port``), authenticated with
    ``api_key``. Works with ferrotile (frames over its push WebSocket) and with a stock Tiled
    server (one HTTP write per frame)."""
    return Client(url, api_key, timeout)


class Client(Closing):
    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise ClientError(f"the URL must start with http:// or https://, not {url!r}")
        self.ws_url = "ws" + self.url.removeprefix("http")
        self.http = Http(self.url, api_key, timeout)
        about = self.http.request("GET", "/", "about").json()
        # ferrotile's About names it; other servers (Tiled) have no push route.
        self.ferrotile = (about.get("meta") or {}).get("server") == "ferrotile"

    def array_info(self, path: str) -> tuple[np.dtype[Any], tuple[int, ...]] | None:
        """The dtype and shape of the array node at ``path``; None if there is no node."""
        response = self.http.request("GET", f"/metadata/{quote(path)}", "read", ok=(200, 404))
        if response.status_code == 404:
            return None
        attributes = response.json()["data"]["attributes"]
        if attributes["structure_family"] != "array":
            raise ClientError(f"{path} is a {attributes['structure_family']}, not an array")
        structure = attributes["structure"]
        return numpy_dtype(structure["data_type"]), tuple(structure["shape"])

    def writer(
        self,
        path: str,
        *,
        dtype: Any,
        frame_shape: tuple[int, ...],
        persist: bool = True,
        extend: bool = False,
        window: int = 64,
        metadata: dict[str, Any] | None = None,
    ) -> Writer:
        """A writer of frames (arrays of ``frame_shape`` and ``dtype``) into the array node at
        ``path``, created with no frames; with ``extend=True`` an existing node of that dtype and
        frame shape is appended to (and a missing one created). ``persist=False``: frames are
        streamed, not stored. At most ``window`` messages are unacknowledged at once."""
        path = path.strip("/")
        dtype = np.dtype(dtype)
        frame_shape = tuple(int(n) for n in frame_shape)
        info = self.array_info(path)
        if info is None:
            parent, _, key = path.rpartition("/")
            body = array_node(key, dtype, (0, *frame_shape), metadata or {})
            self.http.request("POST", f"/metadata/{quote(parent)}", f"create {path}", json=body)
            length = 0
        elif not extend:
            raise ClientError(f"{path} exists: pass extend=True to append to it")
        else:
            node_dtype, shape = info
            if node_dtype != dtype or tuple(shape[1:]) != frame_shape:
                raise ClientError(
                    f"{path} holds frames of {tuple(shape[1:])} {node_dtype}, "
                    f"not {frame_shape} {dtype}"
                )
            length = shape[0] if shape else 0
        transport: Transport
        if self.ferrotile:
            transport = PushTransport(self.ws_url, quote(path), self.http.headers, persist)
        else:
            transport = PatchTransport(self.http, quote(path), frame_shape, length, persist)
        return Writer(transport, path, dtype, frame_shape, window, self.close_stream)

    def subscribe(
        self,
        path: str,
        *,
        start: int | None = None,
        latest: bool = False,
        max_queue_bytes: int | None = None,
        gaps: str = "yield",
        reconnect_timeout: float = 30.0,
        max_message_bytes: int = 2**30,
        **view: Any,
    ) -> Subscription:
        """Follow the stream of the node at ``path``: ``for message in ...`` or ``async for``.

        ``start``: replay retained messages from that sequence (0: the oldest), else live
        only. ``latest``: when the subscriber falls ``max_queue_bytes`` behind, skip to the newest
        message (a :class:`Gap` says what was skipped) instead of being disconnected. ``gaps``:
        ``"yield"`` gaps as messages or ``"raise"`` :class:`GapError`. Other keyword options
        (views such as ``slice``, ``max_fps``) are passed to the server as query parameters.
        """
        path = path.strip("/")
        options: dict[str, Any] = dict(view)
        if self.ferrotile:
            options["notify_gaps"] = True
            options["max_queue_bytes"] = max_queue_bytes
            options["on_overflow"] = "latest" if latest else None
        cursor = Cursor(self.ws_url, path, start, options, gaps, infer_gaps=not self.ferrotile)
        return Subscription(cursor, path, self.http.headers, reconnect_timeout, max_message_bytes)

    def close_stream(self, path: str) -> None:
        """End the node's stream (Tiled's ``close_stream``)."""
        path = path.strip("/")
        self.http.request("DELETE", f"/stream/close/{quote(path)}", f"close the stream of {path}")

    def close(self) -> None:
        self.http.close()
