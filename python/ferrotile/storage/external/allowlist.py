"""Which files may be registered and read: only those inside the server's readable directories.

Every asset URI is resolved (symlinks followed, ``..`` removed) before the check, so a link or a
relative component cannot leave the allowed directories.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from ferrotile.storage.external.errors import ExternalDataError, NotReadable


def local_path(uri: str) -> Path:
    """The path of a ``file://localhost/abs`` or ``file:///abs`` URI (other schemes refused with
    :class:`NotReadable`, a NUL character with :class:`ExternalDataError`)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise NotReadable(f"Only file:// data URIs can be registered, not {uri!r}")
    if parsed.netloc not in ("", "localhost"):
        raise NotReadable(f"Only local files (file://localhost/...) can be registered: {uri!r}")
    path = unquote(parsed.path)
    if "\x00" in path:  # no file can be named so; the OS would refuse it later, less clearly
        raise ExternalDataError(f"Data URIs must not contain NUL characters (%00): {uri!r}")
    return Path(path)


def check_readable(uri: str, readable: Sequence[Path]) -> Path:
    """Resolve ``uri`` and check that it lies inside one of ``readable``.

    Parameters
    ----------
    uri : str
        An asset's ``data_uri``.
    readable : sequence of Path
        The server's readable directories (``-r DIR``).

    Returns
    -------
    Path
        The resolved path (which need not exist yet: a series may be registered before all
        its files are written).

    Raises
    ------
    NotReadable
        Not a local ``file://`` URI, not absolute, or outside every readable directory.
    """
    path = local_path(uri)
    if not path.is_absolute():
        raise NotReadable(f"Data URIs must hold an absolute path: {uri!r}")
    resolved = path.resolve(strict=False)
    for root in readable:
        try:
            resolved.relative_to(root.resolve(strict=False))
        except ValueError:
            continue
        return resolved
    raise NotReadable(
        f"The path {str(path)!r} (resolved to {str(resolved)!r}) is not inside a readable "
        "directory of this server (start it with -r DIR to allow registering files there)"
    )
