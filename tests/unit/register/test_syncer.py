"""The sync decisions against an in-memory stand-in for the server (no HTTP)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ferrotile.register.http import Refused
from ferrotile.register.progress import Progress
from ferrotile.register.sync import Summary, Syncer
from ferrotile.register.walk import walk


@dataclass
class FakeDescribed:
    structure_family: str
    structure: Any
    metadata: dict[str, Any]
    mimetype: str
    paths: Sequence[Path]

    def data_source(self) -> dict[str, Any]:
        return {
            "id": None,
            "structure_family": self.structure_family,
            "structure": self.structure,
            "mimetype": self.mimetype,
            "parameters": {},
            "properties": {},
            "assets": [
                {"data_uri": f"file://localhost{p}", "num": i} for i, p in enumerate(self.paths)
            ],
            "management": "external",
        }


def describe(mimetype: str, paths: Sequence[Path], parameters: Mapping[str, Any]) -> Any:
    shapes = [np.load(p).shape for p in paths]  # raises on a corrupt or vanished file
    shape = [len(paths), *shapes[0]] if mimetype.startswith("multipart") else list(shapes[0])
    return FakeDescribed("array", {"shape": shape}, {}, mimetype, paths)


@dataclass
class FakeApi:
    nodes: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    protected: set[tuple[str, ...]] = field(default_factory=set)

    def children(self, parts: Sequence[str]) -> Iterator[dict[str, Any]]:
        for path, node in list(self.nodes.items()):
            if path[:-1] == tuple(parts):
                yield {"id": path[-1], "attributes": node}

    def create_container(self, parts: Sequence[str], key: str, metadata: Any = None) -> None:
        self.calls.append(("container", (*parts, key)))
        self.nodes[(*parts, key)] = {"structure_family": "container", "data_sources": [],
                                     "metadata": metadata or {}}  # fmt: skip

    def register(self, parts: Sequence[str], key: str, family: str, metadata: Any, source: Any):
        self.calls.append(("register", (*parts, key)))
        source = {**source, "id": len(self.calls)}
        self.nodes[(*parts, key)] = {"structure_family": family, "data_sources": [source],
                                     "metadata": metadata}  # fmt: skip

    def put_data_source(self, parts: Sequence[str], source: Any, patch: Any = None) -> None:
        self.calls.append(("put", (tuple(parts), patch)))
        self.nodes[tuple(parts)]["data_sources"] = [source]

    def put_metadata(self, parts: Sequence[str], metadata: Any) -> None:
        self.nodes[tuple(parts)]["metadata"] = metadata

    def delete(self, parts: Sequence[str]) -> None:
        if tuple(parts) in self.protected:
            raise Refused(409, "holds data written by clients")
        self.calls.append(("delete", tuple(parts)))
        for path in [p for p in self.nodes if p[: len(parts)] == tuple(parts)]:
            del self.nodes[path]


def sync(api: FakeApi, root: Path) -> Summary:
    folder, skipped = walk(root)
    syncer = Syncer(api, describe, workers=4)  # type: ignore[arg-type]
    return syncer.run(folder, [], skipped)


def test_register_rerun_grow_and_remove(tmp_path: Path) -> None:
    for i in range(2):
        np.save(tmp_path / f"f{i}.npy", np.zeros((2, 3)))
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "one.npy", np.zeros(4))
    api = FakeApi()
    first = sync(api, tmp_path)
    assert first.counts["registered"] == 2 and set(api.nodes) == {("f",), ("sub",), ("sub", "one")}

    api.calls.clear()
    assert sync(api, tmp_path).counts["unchanged"] == 2 and api.calls == []

    np.save(tmp_path / "f2.npy", np.zeros((2, 3)))
    (tmp_path / "sub" / "one.npy").unlink()
    summary = sync(api, tmp_path)
    assert summary.counts["updated"] == 1 and summary.counts["removed"] == 1
    assert (("f",), ([1, 2, 3], [2, 0, 0])) in [c[1] for c in api.calls if c[0] == "put"]


def test_corrupt_files_are_skipped_and_existing_nodes_kept(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(2))
    api = FakeApi()
    sync(api, tmp_path)
    (tmp_path / "a.npy").write_bytes(b"half-written")
    (tmp_path / "new.npy").write_bytes(b"corrupt")
    summary = sync(api, tmp_path)
    assert summary.counts["skipped"] == 2
    assert {s.path.name for s in summary.skipped} == {"a.npy", "new.npy"}
    assert ("new",) not in api.nodes  # nothing half-registered
    # a.npy was registered before: it is still served (its key is not removed).
    assert ("a",) in api.nodes


def test_nodes_holding_written_data_are_not_removed(tmp_path: Path) -> None:
    api = FakeApi()
    api.nodes[("written",)] = {"structure_family": "array", "data_sources": [], "metadata": {}}
    api.protected.add(("written",))
    summary = sync(api, tmp_path)
    assert summary.counts["removed"] == 0 and "not removed" in summary.skipped[0].reason


def test_progress_bar_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    progress = Progress(2, out, interval=0.0001)
    progress("registered")
    progress("unchanged")
    progress.finish(Summary())
    assert "\r[" in out.getvalue() and "2/2" in out.getvalue()


def test_files_vanishing_after_the_walk_are_skipped(tmp_path: Path) -> None:
    np.save(tmp_path / "gone.npy", np.zeros(2))
    np.save(tmp_path / "stays.npy", np.zeros(2))
    folder, skipped = walk(tmp_path)
    (tmp_path / "gone.npy").unlink()
    api = FakeApi()
    summary = Syncer(api, describe, workers=2).run(folder, [], skipped)  # type: ignore[arg-type]
    assert summary.counts["registered"] == 1 and set(api.nodes) == {("stays",)}
    assert summary.skipped[0].path.name == "gone.npy" and "vanished" in summary.skipped[0].reason
