"""Pure parts of the registration client: URL parsing, growth patches, fingerprints, progress."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from ferrotile.register.http import RegisterError, split_url
from ferrotile.register.progress import Progress
from ferrotile.register.sync import Summary, fingerprint_of, growth_patch
from ferrotile.register.walk import Item, Skip


def test_split_url() -> None:
    assert split_url("http://h:8000") == ("http://h:8000", [], None)
    assert split_url("http://h:8000/api/v1?api_key=k") == ("http://h:8000", [], "k")
    assert split_url("https://h/x/api/v1/metadata/a/b/") == ("https://h/x", ["a", "b"], None)
    with pytest.raises(RegisterError, match="not an http"):
        split_url("h:8000")


def test_growth_patch_only_for_growth_along_axis_0() -> None:
    old = {"shape": [3, 4, 5]}
    assert growth_patch(old, {"shape": [5, 4, 5]}) == ([2, 4, 5], [3, 0, 0])
    assert growth_patch(old, {"shape": [3, 4, 5]}) is None
    assert growth_patch(old, {"shape": [2, 4, 5]}) is None
    assert growth_patch(old, {"shape": [4, 4, 6]}) is None
    assert growth_patch(None, {"shape": [4]}) is None
    assert growth_patch({"arrow_schema": "x"}, {"arrow_schema": "y"}) is None


def test_fingerprint_follows_size_mtime_and_parameters(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    path.write_bytes(b"1234")
    item = Item("a", "application/x-npy", (path,))
    first = fingerprint_of(item)
    assert fingerprint_of(item) == first
    os.utime(path, ns=(0, 10**9))
    assert fingerprint_of(item) != first
    with_params = Item("a", "application/x-npy", (path,), parameters={"dataset": "x"})
    assert fingerprint_of(with_params) != fingerprint_of(item)
    store = tmp_path / "s.zarr"
    (store / "c").mkdir(parents=True)
    directory = Item("s", "application/x-zarr", (store,), is_directory=True)
    before = fingerprint_of(directory)
    (store / "c" / "0").write_bytes(b"chunk")
    assert fingerprint_of(directory) != before
    path.unlink()
    with pytest.raises(FileNotFoundError):
        fingerprint_of(item)


def test_progress_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(3, out, interval=0.0001)
    for outcome in ("registered", "unchanged", "skipped"):
        progress(outcome)
    summary = Summary()
    summary.counts.update(registered=1, unchanged=1, skipped=1)
    summary.skipped.append(Skip(Path("/d/x.weird"), "unknown file type"))
    progress.finish(summary)
    text = out.getvalue()
    assert "register: 3/3 items" in text
    assert "skipped /d/x.weird: unknown file type" in text
    assert "1 registered, 1 unchanged, 0 updated, 0 removed, 1 skipped" in text
    assert "\r" not in text
