"""``--watch``: keep the server in sync with a directory as files appear, change and vanish.

Each batch of file-system events re-syncs only the smallest directory holding all the changes
(climbing out of directory stores such as ``x.zarr``, which are one item). The pass is the same
as a first registration, so its fingerprint check leaves untouched items alone, and a series
or array grown along axis 0 is updated with a patch, so subscribers get an ``array-ref``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from ferrotile.register.http import Api, Refused
from ferrotile.register.run import Target, register_pass
from ferrotile.register.sync import Describer
from ferrotile.register.walk import media_type


def watch(
    api: Api,
    target: Target,
    *,
    stop: threading.Event | None = None,
    describe: Describer | None = None,
    stream: TextIO | None = None,
    debounce_ms: int = 400,
) -> None:
    """Register ``target`` once, then follow changes until ``stop`` is set (or Ctrl-C).

    Events that arrive during the first pass are not lost: the watcher starts before it.
    """
    import watchfiles

    stream = stream if stream is not None else sys.stderr
    stop = stop or threading.Event()
    ready = threading.Event()
    batches: list[set[tuple[watchfiles.Change, str]]] = []
    lock = threading.Condition()

    def listen() -> None:
        for batch in watchfiles.watch(
            target.directory,
            stop_event=stop,
            debounce=debounce_ms,
            step=50,
            rust_timeout=500,
            yield_on_timeout=True,
            watch_filter=lambda _change, path: not Path(path).name.startswith("."),
            raise_interrupt=False,
        ):
            ready.set()
            if batch:
                with lock:
                    batches.append(batch)
                    lock.notify()

    listener = threading.Thread(target=listen, name="register-watch", daemon=True)
    listener.start()
    ready.wait(timeout=5)  # the watcher yields once (on timeout) when it is running
    first = register_pass(api, target, describe=describe, stream=stream)
    known_skips = {(str(s.path), s.reason) for s in first.skipped}
    stream.write(f"register: watching {target.directory} for changes (Ctrl-C to stop)\n")
    stream.flush()
    while not stop.is_set():
        with lock:
            lock.wait_for(lambda: bool(batches) or stop.is_set(), timeout=0.5)
            pending = [change for batch in batches for change in batch]
            batches.clear()
        if not pending:
            continue
        subtree = affected_directory((Path(p) for _, p in pending), target.directory)
        try:
            register_pass(api, target, subtree=subtree, describe=describe, stream=stream,
                          known_skips=known_skips)  # fmt: skip
        except Refused:
            # The subtree's container is not there yet (a new directory): sync everything.
            register_pass(api, target, describe=describe, stream=stream, known_skips=known_skips)
    listener.join(timeout=2)


def affected_directory(paths: Iterable[Path], root: Path) -> Path | None:
    """The deepest existing directory under ``root`` holding every changed path.

    ``None`` means ``root`` itself. A directory recognised as one item (``x.zarr``) is never
    returned: its parent is, so the store is re-registered as a whole.
    """
    root = root.absolute()
    dirs = [Path(os.path.abspath(p)).parent for p in paths]
    if not dirs or not all(_inside(d, root) for d in dirs):
        return None
    candidate = Path(os.path.commonpath(dirs))
    while candidate != root and (not candidate.is_dir() or _in_store(candidate, root)):
        candidate = candidate.parent
    return None if candidate == root else candidate


def _in_store(path: Path, root: Path) -> bool:
    """Whether ``path`` is, or lies inside, a directory registered as one item."""
    return any(media_type(a) is not None for a in [path, *path.parents] if a != root
               and _inside(a, root))  # fmt: skip


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
