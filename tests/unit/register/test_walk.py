"""The walker: keys, numbered series, and everything it skips (with a reason naming the path)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ferrotile.register.walk import Folder, Item, key_from_name, parse_ext, walk
from ferrotile.register.watch import affected_directory


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def items(folder: Folder) -> dict[str, Item]:
    return {i.key: i for i in folder.items}


def test_keys_strip_every_suffix() -> None:
    assert key_from_name("scan.h5") == "scan"
    assert key_from_name("a.tar.gz") == "a"
    assert key_from_name("plain") == "plain"


def test_numbered_images_form_one_series_in_numeric_order(tmp_path: Path) -> None:
    for n in (10, 2, 1):
        touch(tmp_path / f"img_{n}.tif")
    touch(tmp_path / "7.png")
    touch(tmp_path / "8.png")
    np.save(tmp_path / "frame0.npy", np.zeros(2))
    folder, skipped = walk(tmp_path)
    assert skipped == []
    found = items(folder)
    series = found["img_"]
    assert series.mimetype == "multipart/related;type=image/tiff"
    assert [p.name for p in series.paths] == ["img_1.tif", "img_2.tif", "img_10.tif"]
    assert found["_unnamed"].mimetype == "multipart/related;type=image/png"
    assert found["frame"].mimetype == "multipart/related;type=application/x-npy"


def test_files_stores_and_folders(tmp_path: Path) -> None:
    touch(tmp_path / "table.csv", b"a,b\n1,2\n")
    touch(tmp_path / "data.parquet")
    touch(tmp_path / "sub" / "deeper" / "x.h5")
    (tmp_path / "store.zarr").mkdir()
    touch(tmp_path / "store.zarr" / "zarr.json", b"{}")
    touch(tmp_path / ".hidden.csv")
    folder, skipped = walk(tmp_path)
    assert skipped == []
    found = items(folder)
    assert found["table"].mimetype == "text/csv"
    assert found["data"].mimetype == "application/x-parquet"
    assert found["store"].is_directory and found["store"].mimetype == "application/x-zarr"
    assert [f.key for f in folder.folders] == ["sub"]
    assert folder.folders[0].folders[0].items[0].key == "x"
    assert folder.count_items() == 4


def test_unknown_types_are_skipped_unless_mapped(tmp_path: Path) -> None:
    touch(tmp_path / "notes.weird")
    _, skipped = walk(tmp_path)
    assert len(skipped) == 1 and skipped[0].path.name == "notes.weird"
    assert "--ext" in skipped[0].reason
    folder, skipped = walk(tmp_path, {".weird": "text/csv"})
    assert skipped == [] and items(folder)["notes"].mimetype == "text/csv"


def test_parse_ext() -> None:
    assert parse_ext(".TIF=image/tiff") == (".tif", "image/tiff")
    for bad in ("tif=image/tiff", ".tif", ".tif=tiff", "="):
        with pytest.raises(ValueError, match="--ext"):
            parse_ext(bad)


def test_key_collisions_skip_both(tmp_path: Path) -> None:
    touch(tmp_path / "a.csv")
    touch(tmp_path / "a.parquet")
    touch(tmp_path / "b.csv")
    folder, skipped = walk(tmp_path)
    assert set(items(folder)) == {"b"}
    assert sorted(s.path.name for s in skipped) == ["a.csv", "a.parquet"]
    assert folder.skipped_keys == {"a"}


def test_symlinks_leaving_the_tree_are_skipped(tmp_path: Path) -> None:
    outside = touch(tmp_path / "outside" / "secret.csv")
    root = tmp_path / "root"
    inside = touch(root / "real.csv")
    (root / "escape.csv").symlink_to(outside)
    (root / "alias.csv").symlink_to(inside)
    (root / "loop").symlink_to(root)
    (root / "broken.csv").symlink_to(tmp_path / "nowhere.csv")
    folder, skipped = walk(root)
    assert set(items(folder)) == {"real", "alias"}
    reasons = {s.path.name: s.reason for s in skipped}
    assert "outside" in reasons["escape.csv"]
    assert "broken" in reasons["broken.csv"]
    assert "loop" in reasons["loop"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_entries_are_skipped(tmp_path: Path) -> None:
    secret = touch(tmp_path / "secret.csv")
    secret.chmod(0)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        folder, skipped = walk(tmp_path)
    finally:
        locked.chmod(0o755)
    reasons = {s.path.name: s.reason for s in skipped}
    assert "permission" in reasons["secret.csv"]
    assert "cannot list" in reasons["locked"]
    assert "secret" in folder.skipped_keys


def test_a_file_or_store_as_the_root(tmp_path: Path) -> None:
    single = touch(tmp_path / "one.csv")
    folder, skipped = walk(single)
    assert skipped == [] and items(folder)["one"].paths == (single,)


def test_affected_directory_climbs_out_of_stores_and_vanished_dirs(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "b" / "x.csv")
    touch(tmp_path / "a" / "s.zarr" / "zarr.json")
    touch(tmp_path / "a" / "s.zarr" / "c" / "0")
    assert affected_directory([tmp_path / "a" / "b" / "x.csv"], tmp_path) == tmp_path / "a" / "b"
    changed = [tmp_path / "a" / "b" / "x.csv", tmp_path / "a" / "y.csv"]
    assert affected_directory(changed, tmp_path) == tmp_path / "a"
    assert affected_directory([tmp_path / "a" / "s.zarr" / "c" / "0"], tmp_path) == tmp_path / "a"
    assert affected_directory([tmp_path / "gone" / "deep" / "f.csv"], tmp_path) is None
    assert affected_directory([tmp_path / "top.csv"], tmp_path) is None


def test_unreadable_files_are_skipped_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = touch(tmp_path / "secret.csv")
    touch(tmp_path / "open.csv")
    for n in range(2):
        touch(tmp_path / f"s{n}.tif")
    denied = {secret, tmp_path / "s1.tif"}
    real_access = os.access
    monkeypatch.setattr(
        "ferrotile.register.walk.os.access",
        lambda path, mode: Path(path) not in denied and real_access(path, mode),
    )
    folder, skipped = walk(tmp_path)
    assert set(items(folder)) == {"open"}
    assert {s.path.name: "permission denied" in s.reason for s in skipped} == {
        "secret.csv": True,
        "s1.tif": True,
    }
    assert folder.skipped_keys == {"secret", "s"}
