"""A subscription read on a thread, for tests that write while it reads."""

from __future__ import annotations

import threading
from typing import Any

from ferrotile.client import Client, Event, Frame, Gap, Message


class Collected:
    """Every message of a subscription, read on a thread until its stream ends."""

    def __init__(self, client: Client, path: str, **options: Any) -> None:
        self.messages: list[Message] = []
        self.subscription = client.subscribe(path, **options)
        self.error: BaseException | None = None
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for message in self.subscription:
                with self.changed:
                    self.messages.append(message)  # a frame's view keeps its message alive
                    self.changed.notify_all()
        except BaseException as error:
            self.error = error
        with self.changed:
            self.changed.notify_all()

    def start(self) -> Collected:
        self.thread.start()
        return self

    def wait_frames(self, count: int) -> None:
        """Wait (at most a minute) until ``count`` frames arrived."""
        with self.changed:
            arrived = self.changed.wait_for(
                lambda: len(self.frames) >= count or not self.thread.is_alive(), timeout=60
            )
        assert arrived and len(self.frames) >= count, (self.messages, self.error)

    def wait_event(self, kind: str, timeout: float) -> bool:
        """Whether an event of ``kind`` arrived within ``timeout`` seconds."""
        with self.changed:
            return self.changed.wait_for(
                lambda: any(e.type == kind for e in self.events), timeout=timeout
            )

    def join(self) -> list[Message]:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the subscription did not end"
        if self.error is not None:
            raise self.error
        return self.messages

    @property
    def frames(self) -> list[Frame]:
        return [m for m in self.messages if isinstance(m, Frame)]

    @property
    def gaps(self) -> list[Gap]:
        return [m for m in self.messages if isinstance(m, Gap)]

    @property
    def events(self) -> list[Event]:
        return [m for m in self.messages if isinstance(m, Event)]
