"""Where a subscription stands in its stream: the URL to (re)connect with, the decoding of each
message, duplicates dropped and gaps found, and what a close means. The sync and async loops of
:mod:`ferrotile.client.subscription` share it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import msgpack
import numpy as np

from ferrotile.client.envelope import decode
from ferrotile.client.errors import GapError, StreamClosed
from ferrotile.client.messages import Event, Frame, Gap, Message
from ferrotile.client.rest import numpy_dtype

# Close codes after which a reconnect resumes the stream: going away (restart, deletion: a
# reconnect then finds out), abnormal closure (no close frame), internal error, service restart
# (the server lost its live feed), try again later.
RESUMABLE = {1001, 1006, 1011, 1012, 1013}
# Messages from this size on are decoded without copying their payload (the frame is a view of
# the message). Below it msgpack's copy costs less than locating the payload (~6-7 us).
VIEW_BYTES = 128 * 1024


class Cursor:
    def __init__(
        self,
        ws_url: str,
        path: str,
        start: int | None,
        options: dict[str, Any],
        gaps: str,
        infer_gaps: bool,
    ) -> None:
        if gaps not in ("yield", "raise"):
            raise ValueError("gaps must be 'yield' or 'raise'")
        self.base = f"{ws_url}/api/v1/stream/single/{quote(path)}"
        self.start = start
        self.options = {k: v for k, v in options.items() if v is not None}
        self.gaps = gaps
        # Without the server's notices (stock Tiled), a jump in sequence numbers is the gap.
        self.infer_gaps = infer_gaps
        # The last sequence delivered; a requested start N means N-1 was "seen", so that a
        # first message after N is reported as a gap.
        self.last: int | None = start - 1 if start else None
        self.dtype: np.dtype[Any] | None = None
        self.schema_seen = False
        self.reconnects = 0
        self.missed = 0  # sequences reported lost

    def url(self) -> str:
        query: dict[str, Any] = {"envelope_format": "msgpack"}
        if self.last is not None:
            query["start"] = self.last + 1
        elif self.start is not None:
            query["start"] = self.start
        for key, value in self.options.items():
            query[key] = str(value).lower() if isinstance(value, bool) else value
        return f"{self.base}?{urlencode(query)}"

    def handle(self, raw: bytes | str) -> list[Message]:
        """The messages one received WebSocket message makes (none for a duplicate)."""
        if isinstance(raw, str):  # servers send msgpack; a text message is passed on as is
            fields: dict[str, Any] = json.loads(raw)
            payload = None
        elif len(raw) < VIEW_BYTES:
            fields = msgpack.unpackb(raw)
            payload = fields.pop("payload", None)
        else:
            fields, payload = decode(raw)
        kind = str(fields.get("type"))
        if kind == "stream-gap":
            return self._gap(fields["missed_from"], fields["missed_to"], fields.get("reason", ""))
        if kind == "stream-epoch":
            self.last = None  # the numbering restarted: whatever comes next is new
            return [Event(kind, None, fields)]
        if kind.endswith("-schema"):
            if "data_type" in fields:
                self.dtype = numpy_dtype(fields["data_type"])
            if self.schema_seen:  # sent again on every reconnect
                return []
            self.schema_seen = True
            return [Event(kind, None, fields)]
        out: list[Message] = []
        sequence = fields.get("sequence")
        if isinstance(sequence, int):
            if self.last is not None:
                if sequence <= self.last:
                    return []  # seen before a reconnect
                if sequence > self.last + 1 and self.infer_gaps:
                    out += self._gap(self.last + 1, sequence - 1, "unreported")
            self.last = sequence
        if kind == "array-data" and payload is not None and isinstance(sequence, int):
            if self.dtype is None:
                raise StreamClosed(1002, "array-data before the array's schema")
            array = np.frombuffer(payload, dtype=self.dtype).reshape(fields["shape"])
            out.append(Frame(sequence, array, fields.get("offset"), fields.get("block"),
                             fields.get("timestamp"), fields))  # fmt: skip
        else:
            if payload is not None:
                fields["payload"] = payload
            out.append(Event(kind, sequence if isinstance(sequence, int) else None, fields))
        return out

    def _gap(self, missed_from: int, missed_to: int, reason: str) -> list[Message]:
        if missed_to < 1:
            # Sequences start at 1: nothing was lost. (ferrotile with Redis notices "0..0" for
            # a replay from 0 of a stream that has no message yet.)
            return []
        if self.last is not None and missed_to <= self.last:
            return []  # already reported, or already delivered before a reconnect
        if self.last is not None:
            missed_from = max(missed_from, self.last + 1)
        self.last = missed_to
        self.missed += missed_to - missed_from + 1
        if self.gaps == "raise":
            raise GapError(missed_from, missed_to, reason)
        return [Gap(missed_from, missed_to, reason)]

    def resumable(self, code: int, reason: str) -> bool:
        """True to reconnect, False at the stream's end (1000); raises for anything else."""
        if code == 1000:
            return False
        if code in RESUMABLE:
            return True
        raise StreamClosed(code, reason)

    def reconnected(self) -> Event:
        self.reconnects += 1
        start = self.last + 1 if self.last is not None else None
        return Event("reconnected", None, {"start": start, "reconnects": self.reconnects})
