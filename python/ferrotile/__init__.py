"""ferrotile: a fast data server that speaks Tiled's HTTP and WebSocket API.

The public API is :class:`SimpleServer` (an embedded server on a background thread) and the
``ferrotile`` command line. Names are imported lazily so that ``import ferrotile`` stays cheap.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("ferrotile")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from ferrotile.server import SimpleServer

__all__ = ["SimpleServer", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "SimpleServer":
        from ferrotile.server import SimpleServer

        return SimpleServer
    raise AttributeError(f"module 'ferrotile' has no attribute {name!r}")
