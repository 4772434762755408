"""Path and key rules for catalog nodes.

A node's path is the tuple of its keys from the root; the root is ``()``. Tiled clients build
URLs such as ``/metadata//KEY`` and ``/stream/single/a//b`` (the root's ``path_parts`` is
``[""]``), so empty segments are dropped rather than rejected.
"""

from __future__ import annotations

from ferrotile.errors import InvalidKey

MAX_KEY_LENGTH = 255
"""Longest accepted key, in characters (Tiled's limit for spec names; a common file-name cap)."""

_DOT_SEGMENTS = frozenset({".", ".."})


def _has_control_character(text: str) -> bool:
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


def split_path(path: str) -> tuple[str, ...]:
    """Split a URL path into node keys, dropping empty segments.

    Parameters
    ----------
    path : str
        The part of the URL after the route prefix, e.g. ``"//a/b/"``.

    Returns
    -------
    tuple of str
        The keys from the root, ``()`` for the root itself.

    Raises
    ------
    InvalidKey
        If a segment is ``.`` or ``..`` or contains a control character. These are refused
        here so that no route can be tricked into resolving a different node than it names.
    """
    segments = tuple(segment for segment in path.split("/") if segment)
    for segment in segments:
        if segment in _DOT_SEGMENTS:
            raise InvalidKey(f"Path segment {segment!r} is not allowed")
        if _has_control_character(segment):
            raise InvalidKey(f"Path segment {segment!r} contains a control character")
    return segments


def join_path(path: tuple[str, ...]) -> str:
    """Return the catalog's stored form of ``path``: keys joined by ``/``, ``""`` for the root.

    Parameters
    ----------
    path : tuple of str
        Keys from the root.

    Returns
    -------
    str
        The value of the ``nodes.path`` column.
    """
    return "/".join(path)


def validate_key(key: str) -> None:
    """Check that ``key`` can name a new node.

    Parameters
    ----------
    key : str
        The proposed key.

    Raises
    ------
    InvalidKey
        If the key is empty, longer than :data:`MAX_KEY_LENGTH`, contains ``/``, is ``.`` or
        ``..``, or contains a control character. The message names the problem.
    """
    if not key:
        raise InvalidKey("Key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"Key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}")
    if "/" in key:
        raise InvalidKey(f"Key {key!r} must not contain '/'")
    if key in _DOT_SEGMENTS:
        raise InvalidKey(f"Key {key!r} is not allowed")
    if _has_control_character(key):
        raise InvalidKey(f"Key {key!r} contains a control character")
