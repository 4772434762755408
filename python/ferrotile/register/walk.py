"""Walk a directory tree into what ``ferrotile register`` will create: folders and items.

Only file names and ``stat`` are consulted here (no file is opened), so a re-walk of a large,
unchanged tree is cheap; reading structures is left to :mod:`ferrotile.register.sync`, and only
for new or changed items.

Rules (those of ``tiled register``, so that both register a tree the same way):

- hidden entries (``.name``) are ignored;
- a file (or a directory such as ``x.zarr``) whose extension maps to a media type is one item,
  keyed by its name without suffixes (``scan.h5`` -> ``scan``);
- numbered TIFF/JPEG/PNG/NPY files (``img_001.tif``, ``img_002.tif``) form one series, keyed by
  the text before the number (``img_``; ``_unnamed`` when there is none), registered as a single
  array with media type ``multipart/related;type=<file type>``;
- other directories become containers.

Unlike ``tiled register``, anything that cannot be registered is reported (:class:`Skip`) rather
than logged: unknown types, unreadable entries, symlinks leading out of the tree, entries that
vanish while being walked, and several entries claiming the same key.
"""

from __future__ import annotations

import os
import re
import stat
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Media types when :mod:`ferrotile.storage.external` is not importable (same as Tiled's table).
_FALLBACK_MEDIA_TYPES = {
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".npy": "application/x-npy",
    ".h5": "application/x-hdf5",
    ".hdf5": "application/x-hdf5",
    ".hdf": "application/x-hdf5",
    ".nxs": "application/x-hdf5",
    ".csv": "text/csv",
    ".parquet": "application/x-parquet",
    ".zarr": "application/x-zarr",
}

#: Media types whose numbered files form a series (as Tiled: TIFF, JPEG, NPY; and PNG).
_SERIES_FRAME_TYPES = frozenset({"image/tiff", "image/jpeg", "image/png", "application/x-npy"})
_SERIES_NAME = re.compile(r"^(.*?)(\d+)\.[^.]+$")
UNNAMED_SERIES = "_unnamed"


@dataclass(frozen=True)
class Item:
    """One node to register: a file, a directory store, or a numbered series of files."""

    key: str
    mimetype: str
    paths: tuple[Path, ...]
    is_directory: bool = False
    #: Reader arguments, e.g. ``{"dataset": "g/x"}`` for one dataset of an HDF5 file.
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_series(self) -> bool:
        return self.mimetype.startswith("multipart/related")


@dataclass(frozen=True)
class Skip:
    """Something that was not registered, and why (shown to the user)."""

    path: Path
    reason: str


@dataclass
class Folder:
    """A directory that becomes a container; ``skipped_keys`` are kept if already registered."""

    key: str
    path: Path
    items: list[Item] = field(default_factory=list)
    folders: list[Folder] = field(default_factory=list)
    skipped_keys: set[str] = field(default_factory=set)
    #: Container metadata (HDF5 group attributes; empty for directories).
    metadata: dict[str, Any] = field(default_factory=dict)

    def count_items(self) -> int:
        """Items in this folder and below (the progress bar's total)."""
        return len(self.items) + sum(f.count_items() for f in self.folders)


def key_from_name(name: str) -> str:
    """The node key of a file name: the name without its suffixes (``a.tar.gz`` -> ``a``)."""
    suffixes = Path(name).suffixes
    stem = name[: -sum(len(s) for s in suffixes)] if suffixes else name
    # A name that is all suffix (".h5" would be hidden anyway, but "x..y" is not) keeps its name.
    return stem or name


def parse_ext(spec: str) -> tuple[str, str]:
    """Parse an ``--ext`` value ``.x=media/type`` into ``(".x", "media/type")``.

    Raises
    ------
    ValueError
        When ``spec`` is not spelled ``.ext=type/subtype``.
    """
    ext, sep, mimetype = spec.partition("=")
    ext, mimetype = ext.strip(), mimetype.strip()
    if not sep or not ext.startswith(".") or len(ext) < 2 or "/" not in mimetype:
        raise ValueError(f"--ext {spec!r}: expected .EXT=MEDIA/TYPE, e.g. .tif=image/tiff")
    return ext.lower(), mimetype


def media_type(path: Path, ext_map: Mapping[str, str] | None = None) -> str | None:
    """The media type of ``path`` from its extension (``--ext`` entries first), or ``None``."""
    try:
        from ferrotile.storage.external.mimetypes import media_type_for
    except ImportError:  # a build without the external-file readers
        return _fallback_media_type(path, ext_map)
    return media_type_for(path, dict(ext_map or {}))


def readable(mimetype: str) -> bool:
    """Whether the server has a reader for ``mimetype`` (else registering it gets 415)."""
    try:
        from ferrotile.storage.external.mimetypes import family_of
    except ImportError:
        return mimetype in _FALLBACK_MEDIA_TYPES.values()
    return family_of(mimetype) is not None


def _fallback_media_type(path: Path, ext_map: Mapping[str, str] | None) -> str | None:
    ext = path.suffix.lower()
    if ext_map and ext in ext_map:
        return ext_map[ext]
    return _FALLBACK_MEDIA_TYPES.get(ext)


def walk(
    root: Path, ext_map: Mapping[str, str] | None = None, *, within: Path | None = None
) -> tuple[Folder, list[Skip]]:
    """Walk ``root`` into a :class:`Folder` tree (keys as Tiled assigns them).

    Parameters
    ----------
    root
        The directory to register. A recognised file or directory store (``x.zarr``) gives a
        folder holding just that item.
    ext_map
        Extra ``{".ext": "media/type"}`` mappings (``--ext``), consulted before the defaults.
    within
        The tree symlinks may point into (default ``root``); ``--watch`` re-walks subtrees.

    Returns
    -------
    tuple
        The root folder and the list of everything skipped, with reasons.
    """
    root = Path(os.path.abspath(root))
    skipped: list[Skip] = []
    real_root = (within or root).resolve()
    top = Folder(key="", path=root)
    if not root.is_dir() or media_type(root, ext_map):
        item_or_skip = _single_item(root, ext_map)
        if isinstance(item_or_skip, Item):
            top.items.append(item_or_skip)
        else:
            skipped.append(item_or_skip)
        return top, skipped
    _fill(top, real_root, ext_map, skipped, {root.resolve()})
    return top, skipped


def _single_item(path: Path, ext_map: Mapping[str, str] | None) -> Item | Skip:
    mimetype = media_type(path, ext_map)
    if mimetype is None:
        return Skip(path, _unknown_reason(path))
    if not readable(mimetype):
        return Skip(path, f"no reader for media type {mimetype}")
    return Item(key_from_name(path.name), mimetype, (path,), is_directory=path.is_dir())


def _unknown_reason(path: Path) -> str:
    suffix = path.suffix or "(no extension)"
    return f"unknown file type {suffix} (map it with --ext {path.suffix or '.x'}=media/type)"


def _fill(
    folder: Folder,
    real_root: Path,
    ext_map: Mapping[str, str] | None,
    skipped: list[Skip],
    visited: set[Path],
) -> None:
    try:
        entries = sorted(os.scandir(folder.path), key=lambda e: e.name)
    except OSError as exc:
        skipped.append(Skip(folder.path, f"cannot list directory: {exc.strerror}"))
        return
    candidates: list[Item | Folder] = []
    series: dict[tuple[str, str], list[tuple[int, Path]]] = defaultdict(list)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        checked = _check_entry(path, real_root)
        if isinstance(checked, Skip):
            skipped.append(checked)
            continue
        is_dir, real = checked
        mimetype = media_type(path, ext_map)
        if is_dir and mimetype is None:
            if real in visited:
                skipped.append(Skip(path, "directory already walked (symlink loop)"))
                continue
            visited.add(real)
            candidates.append(Folder(key=key_from_name(entry.name), path=path))
            continue
        numbered = _SERIES_NAME.match(entry.name) if not is_dir else None
        if numbered and mimetype in _SERIES_FRAME_TYPES:
            prefix = numbered.group(1)
            series[(prefix, mimetype)].append((int(numbered.group(2)), path))
            continue
        if mimetype is None:
            skipped.append(Skip(path, _unknown_reason(path)))
            continue
        if not readable(mimetype):
            skipped.append(Skip(path, f"no reader for media type {mimetype}"))
            continue
        if not is_dir and not os.access(path, os.R_OK):
            skipped.append(Skip(path, "permission denied"))
            folder.skipped_keys.add(key_from_name(entry.name))
            continue
        candidates.append(Item(key_from_name(entry.name), mimetype, (path,), is_directory=is_dir))
    for (prefix, mimetype), members in series.items():
        members.sort()
        paths = tuple(p for _, p in members)
        unreadable = [p for p in paths if not os.access(p, os.R_OK)]
        key = key_from_name(prefix) if prefix else UNNAMED_SERIES
        if unreadable:
            skipped.append(Skip(unreadable[0], f"permission denied (series {key!r} skipped)"))
            folder.skipped_keys.add(key)
            continue
        candidates.append(Item(key, f"multipart/related;type={mimetype}", paths))
    for candidate in _drop_collisions(candidates, folder, skipped):
        if isinstance(candidate, Folder):
            folder.folders.append(candidate)
            _fill(candidate, real_root, ext_map, skipped, visited)
        else:
            folder.items.append(candidate)
    for item in folder.items:
        # A skipped key protects an existing node from removal, unless another entry owns it now.
        folder.skipped_keys.discard(item.key)


def _check_entry(path: Path, real_root: Path) -> Skip | tuple[bool, Path]:
    """``(is_directory, real path)`` of an entry, or why it is skipped."""
    try:
        info = path.stat()  # follows symlinks
    except FileNotFoundError:
        if path.is_symlink():
            return Skip(path, "broken symlink")
        return Skip(path, "vanished during the walk")
    except OSError as exc:
        return Skip(path, f"cannot stat: {exc.strerror}")
    real = path.resolve()
    if path.is_symlink() and real != real_root and real_root not in real.parents:
        return Skip(path, f"symlink leads outside the registered directory (to {real})")
    if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
        return Skip(path, "not a regular file or directory")
    return stat.S_ISDIR(info.st_mode), real


def _drop_collisions(
    candidates: Iterable[Item | Folder], folder: Folder, skipped: list[Skip]
) -> list[Item | Folder]:
    # Two entries with one key (a.csv and a.h5): registering either would be arbitrary, so
    # neither is (as Tiled), and the user is told which paths clash.
    by_key: dict[str, list[Item | Folder]] = defaultdict(list)
    for candidate in candidates:
        by_key[candidate.key].append(candidate)
    kept: list[Item | Folder] = []
    for key, group in by_key.items():
        if len(group) == 1:
            kept.append(group[0])
            continue
        names = ", ".join(sorted(_first_path(c).name for c in group))
        for candidate in group:
            skipped.append(Skip(_first_path(candidate), f"key {key!r} also claimed by {names}"))
        folder.skipped_keys.add(key)
    return kept


def _first_path(candidate: Item | Folder) -> Path:
    return candidate.path if isinstance(candidate, Folder) else candidate.paths[0]
