"""Progress of a registration on stderr: a redrawn bar on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from ferrotile.register.sync import OUTCOMES, Summary


class Progress:
    """Count outcomes as they arrive and show them (thread-safe).

    Parameters
    ----------
    total
        Items expected (from the walk), or 0 when unknown.
    stream
        Where to write; a bar is drawn only if it is a TTY.
    interval
        Seconds between redraws (bar) or lines (not a TTY).
    """

    def __init__(self, total: int, stream: TextIO | None = None, interval: float = 0.0) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        # Lines in a log are only useful now and then; a bar can redraw often.
        self.interval = interval or (0.1 if self.tty else 5.0)
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self._lock = threading.Lock()
        self._last = 0.0
        self._started = time.monotonic()

    def __call__(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
            now = time.monotonic()
            if now - self._last >= self.interval or self._done() == self.total:
                self._last = now
                self._show()

    def _done(self) -> int:
        # Removals and skipped non-items (unknown files) do not advance the item count.
        return sum(self.counts[o] for o in ("registered", "unchanged", "updated", "skipped"))

    def _show(self) -> None:
        done = self._done()
        counts = " ".join(f"{n} {o}" for o, n in self.counts.items() if n)
        if self.tty:
            width = 30
            filled = min(width, width * done // self.total) if self.total else 0
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {done}/{self.total} {counts}\x1b[K")
        else:
            self.stream.write(f"register: {done}/{self.total} items ({counts})\n")
        self.stream.flush()

    def finish(self, summary: Summary) -> None:
        """Clear the bar and print the summary, with every skipped path and why."""
        with self._lock:
            if self.tty:
                self.stream.write("\r\x1b[K")
            elapsed = time.monotonic() - self._started
            for skip in summary.skipped:
                self.stream.write(f"skipped {skip.path}: {skip.reason}\n")
            self.stream.write(f"register: {summary.line()} in {elapsed:.1f} s\n")
            self.stream.flush()
