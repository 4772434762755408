"""A writer of an array node's frames: checked locally, sent without a copy, pipelined with a
bounded window of unacknowledged messages."""

from __future__ import annotations

from types import TracebackType
from typing import Any, NoReturn

import numpy as np

from ferrotile.client.closing import Closing
from ferrotile.client.errors import ClientError, FrameRejected, WriterDisconnected
from ferrotile.client.transport import Ack, Lost, Transport


class Writer(Closing):
    """Streams frames into one array node; made by :meth:`Client.writer`.

    ``send`` returns once the frame is handed to the socket (its buffer may be reused then);
    at most ``window`` messages are unacknowledged at any time, so a writer faster than the
    server waits instead of buffering without bound.
    """

    def __init__(
        self,
        transport: Transport,
        path: str,
        dtype: np.dtype[Any],
        frame_shape: tuple[int, ...],
        window: int,
        on_close: Any,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.path = path
        self.dtype = dtype
        self.frame_shape = frame_shape
        self.window = window
        self.transport = transport
        self._on_close = on_close
        self.sent = 0  # messages handed to the socket
        self.frames = 0  # frames in them (a message may hold several)
        self.acknowledged = 0  # messages the server acknowledged
        self.last_sequence: int | None = None  # stream sequence of the last acknowledged
        self.max_in_flight = 0  # the most messages ever unacknowledged at once
        self._failure: ClientError | None = None
        self._closed = False

    @property
    def in_flight(self) -> int:
        return self.sent - self.acknowledged

    def send(self, frame: Any) -> None:
        """Send one frame (shape ``frame_shape``) or a block of frames (``(n, *frame_shape)``)
        of the writer's dtype; any other buffer is sent as its bytes, checked by the server."""
        self._check_open()
        data, count = self._view(frame)
        while self.in_flight >= self.window:
            self._receive(block=True)
        try:
            self.transport.send(data, count)
        except Lost as lost:
            self._fail(WriterDisconnected(self.acknowledged, self.sent + 1, str(lost)))
        self.sent += 1
        self.frames += count
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        while self._receive(block=False):
            pass

    def flush(self) -> None:
        """Wait until every message sent is acknowledged."""
        self._check_open()
        while self.in_flight:
            self._receive(block=True)

    def close(self, close_stream: bool = True) -> None:
        """Flush, close the socket and (``close_stream``) end the node's stream, as Tiled's
        ``close_stream``: subscribers are closed with 1000 once they have read everything."""
        if self._closed:
            return
        try:
            if self._failure is None:
                self.flush()
        finally:
            self._closed = True
            self.transport.close()
        if close_stream:
            self._on_close(self.path)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # After an error the stream stays open: a retry may append to it.
        self.close(close_stream=kind is None)

    def _view(self, frame: Any) -> tuple[memoryview, int]:
        if isinstance(frame, np.ndarray):
            if frame.dtype != self.dtype:
                raise ClientError(
                    f"frame {self.sent + 1}: dtype {frame.dtype} does not match "
                    f"the node's {self.dtype}"
                )
            if frame.shape == self.frame_shape:
                count = 1
            elif frame.ndim == len(self.frame_shape) + 1 and frame.shape[1:] == self.frame_shape:
                count = frame.shape[0]
            else:
                raise ClientError(
                    f"frame {self.sent + 1}: shape {frame.shape} is neither the frame shape "
                    f"{self.frame_shape} nor a block of frames (n, *{self.frame_shape})"
                )
            if count == 0:
                raise ClientError(f"frame {self.sent + 1}: a block of no frames")
            # A C-contiguous array is sent from its own memory (viewed as bytes: datetime arrays
            # have no buffer of their own); any other is copied once.
            flat: Any = np.ascontiguousarray(frame).reshape(-1).view(np.uint8)
            return memoryview(flat), count
        view = memoryview(frame).cast("B")
        size = self.dtype.itemsize * int(np.prod(self.frame_shape))
        return view, max(1, len(view) // size) if size else 1

    def _receive(self, block: bool) -> bool:
        """Read one answer from the server; False if none was due (``block`` False)."""
        try:
            answer = self.transport.receive(block)
        except Lost as lost:
            self._fail(WriterDisconnected(self.acknowledged, self.sent, str(lost)))
        if answer is None:
            return False
        if isinstance(answer, Ack):
            self.acknowledged = answer.frames
            if answer.sequence is not None:
                self.last_sequence = answer.sequence
            return True
        self._fail(FrameRejected(answer.frame, answer.status, answer.detail, self.last_sequence))

    def _fail(self, failure: ClientError) -> NoReturn:
        self._failure = failure
        raise failure

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise ClientError(f"the writer of {self.path} is closed")
