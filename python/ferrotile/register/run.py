"""One registration pass, as ``ferrotile register`` and ``serve directory`` run it."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ferrotile.register.http import Api, RegisterError, split_url
from ferrotile.register.progress import Progress
from ferrotile.register.sync import Describer, Summary, Syncer, default_describer
from ferrotile.register.walk import key_from_name, walk


@dataclass
class Target:
    """Where and how to register: the server, the container, the directory, the options."""

    url: str
    directory: Path
    prefix: str = "/"
    api_key: str | None = None
    ext_map: Mapping[str, str] = field(default_factory=dict)
    workers: int = 8

    def __post_init__(self) -> None:
        self.directory = Path(self.directory).expanduser().absolute()
        self.base, node, url_key = split_url(self.url)
        self.api_key = self.api_key or url_key
        self.parts = [*node, *(p for p in self.prefix.split("/") if p)]


def open_api(target: Target) -> Api:
    """Connect and check the server answers and accepts the key (else :class:`RegisterError`)."""
    if not target.directory.exists():
        raise RegisterError(f"{target.directory} does not exist")
    api = Api(target.base, target.api_key, connections=max(4, target.workers * 2))
    try:
        api.check([])
    except BaseException:
        api.close()
        raise
    return api


def register_pass(
    api: Api,
    target: Target,
    *,
    subtree: Path | None = None,
    describe: Describer | None = None,
    stream: TextIO | None = None,
    known_skips: set[tuple[str, str]] | None = None,
) -> Summary:
    """Walk ``target.directory`` (or just ``subtree`` of it) and sync it to the server.

    Parameters
    ----------
    api
        From :func:`open_api`.
    target
        The registration settings.
    subtree
        A directory inside ``target.directory`` that changed (``--watch``); ``None``: all.
    describe
        Client-side file reader (default: :func:`ferrotile.storage.external.describe`).
    stream
        Where progress and the summary go (default stderr).
    known_skips
        For ``--watch``: no progress, and the summary only when something changed or a new
        skip appeared (skips already reported, as ``(path, reason)``, are not repeated).
    """
    root = target.directory
    start = subtree or root
    parts = [*target.parts, *(key_from_name(p) for p in start.relative_to(root).parts)]
    folder, skipped = walk(start, target.ext_map, within=root)
    progress = Progress(folder.count_items() + len(skipped), stream)
    syncer = Syncer(
        api,
        describe or default_describer(),
        on_outcome=None if known_skips is not None else progress,
        workers=target.workers,
    )
    if subtree is None:
        syncer.ensure_prefix(target.parts)
    summary = syncer.run(folder, parts, skipped)
    if known_skips is None:
        progress.finish(summary)
        return summary
    new = [s for s in summary.skipped if (str(s.path), s.reason) not in known_skips]
    known_skips.update((str(s.path), s.reason) for s in new)
    if new or any(summary.counts[o] for o in ("registered", "updated", "removed")):
        progress.finish(Summary(summary.counts, new))
    return summary


def register_directory(target: Target, *, describe: Describer | None = None) -> Summary:
    """Register ``target`` once (``ferrotile register`` without ``--watch``)."""
    api = open_api(target)
    try:
        return register_pass(api, target, describe=describe, stream=sys.stderr)
    finally:
        api.close()


def parse_ext_options(values: Sequence[str]) -> dict[str, str]:
    """``--ext .x=media/type`` values as a mapping (``ValueError`` on a malformed one)."""
    from ferrotile.register.walk import parse_ext

    return dict(parse_ext(v) for v in values)
