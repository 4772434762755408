"""The client's exceptions, under one base class (:class:`ClientError`).

Defined here, not in ``ferrotile.errors``, so that the client imports without the server.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base class of every error the client raises."""


class ServerError(ClientError):
    """The server answered a request with an error status (``detail`` from its body)."""

    def __init__(self, status: int, detail: str, what: str = "") -> None:
        self.status = status
        self.detail = detail
        prefix = f"{what}: " if what else ""
        super().__init__(f"{prefix}{status} {detail}")


class FrameRejected(ClientError):
    """The server refused a frame: it was neither stored nor streamed, nor any frame after it.

    ``frame`` is the 1-based index of the refused frame among the writer's frames;
    ``last_sequence`` the stream sequence of the last frame the server acknowledged (None if
    none was).
    """

    def __init__(self, frame: int, status: int, detail: str, last_sequence: int | None) -> None:
        self.frame = frame
        self.status = status
        self.detail = detail
        self.last_sequence = last_sequence
        after = f" (after sequence {last_sequence})" if last_sequence is not None else ""
        super().__init__(f"frame {frame}{after} rejected by the server ({status}): {detail}")


class WriterDisconnected(ClientError):
    """The writer's connection ended with frames not acknowledged.

    Frames ``1..acknowledged`` are stored or streamed; frames after it may or may not be (the
    writer never resends them, so that no acknowledged frame is ever duplicated).
    """

    def __init__(self, acknowledged: int, sent: int, reason: str) -> None:
        self.acknowledged = acknowledged
        self.sent = sent
        super().__init__(
            f"connection lost ({reason}) with frames {acknowledged + 1}..{sent} not acknowledged"
        )


class StreamClosed(ClientError):
    """The server ended a subscription for a reason that reconnecting would not fix (e.g. the
    subscriber fell too far behind: close 1008 with the reason)."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"stream closed by the server ({code}): {reason}")


class GapError(ClientError):
    """A subscriber asked to raise on gaps (``gaps="raise"``) and messages were lost."""

    def __init__(self, missed_from: int, missed_to: int, reason: str) -> None:
        self.missed_from = missed_from
        self.missed_to = missed_to
        self.reason = reason
        super().__init__(f"sequences {missed_from}..{missed_to} lost ({reason})")
