"""ferrotile.client: stream numpy frames into an array node and receive them, at detector
rates (see docs/client.md). Imports no server module: it installs on its own as the
``ferrotile-client`` distribution.

    from ferrotile.client import connect
    c = connect("http://host:8000", api_key="secret")
    with c.writer("run42/det1", dtype="uint16", frame_shape=(2048, 2048)) as w:
        w.send(frame)
    for message in c.subscribe("run42/det1", start=0): ...
"""

from ferrotile.client.connection import Client, connect
from ferrotile.client.errors import (
    ClientError,
    FrameRejected,
    GapError,
    ServerError,
    StreamClosed,
    WriterDisconnected,
)
from ferrotile.client.messages import Event, Frame, Gap, Message
from ferrotile.client.subscription import Subscription
from ferrotile.client.writer import Writer

__all__ = [
    "Client",
    "ClientError",
    "Event",
    "Frame",
    "FrameRejected",
    "Gap",
    "GapError",
    "Message",
    "ServerError",
    "StreamClosed",
    "Subscription",
    "Writer",
    "WriterDisconnected",
    "connect",
]
