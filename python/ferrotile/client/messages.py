"""What a subscription yields: frames, gaps, and the stream's other events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Frame:
    """An ``array-data`` message: ``array`` is a read-only view of the received message."""

    sequence: int
    array: np.ndarray
    offset: list[int] | None
    block: list[int] | None
    timestamp: Any
    fields: dict[str, Any] = field(repr=False)


@dataclass
class Gap:
    """Sequences ``missed_from..missed_to`` will never arrive. ``reason``: the server's
    (``expired``, ``evicted``, ``overflow``) or ``unreported`` when the client saw sequence
    numbers jump without a notice (servers without ``notify_gaps``)."""

    missed_from: int
    missed_to: int
    reason: str

    @property
    def count(self) -> int:
        return self.missed_to - self.missed_from + 1


@dataclass
class Event:
    """Any other message: the schema (``array-schema``...), ``stream-epoch`` (the stream's
    numbering restarted), ``array-ref``, ``reconnected`` (made by the client)..."""

    type: str
    sequence: int | None
    fields: dict[str, Any] = field(repr=False)


Message = Frame | Gap | Event
