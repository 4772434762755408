"""The async Catalog façade: opening, caching, writes, on real SQLite files and PostgreSQL
databases (tests taking ``uri`` or ``backend`` run on both)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

import ferrotile.catalog.postgres as postgres_module
import ferrotile.catalog.schema as schema
import ferrotile.catalog.sqlite as sqlite_module
from ferrotile.catalog import Catalog, Node
from ferrotile.catalog.uri import parse_catalog_uri
from ferrotile.errors import CatalogError, InvalidKey, KeyConflict, NotEmpty
from tests.conftest import free_port
from tests.postgres import PostgresServer

from .conftest import Backend, array_source, tiff_series

T = TypeVar("T")


def run_with(uri: str, body: Callable[[Catalog], Awaitable[T]], **options: bool) -> T:
    """Open a catalog, run ``body`` with it, close it, all in one event loop."""

    async def main() -> T:
        catalog = await Catalog.open(uri, **options)
        try:
            return await body(catalog)
        finally:
            await catalog.close()

    return asyncio.run(main())


def open_error(uri: str, **options: bool) -> str:
    with pytest.raises(CatalogError) as info:
        asyncio.run(Catalog.open(uri, **options))
    return str(info.value)


@pytest.fixture
def uri(backend: Backend) -> str:
    return backend.uri  # SQLite: tmp_path is absolute, so this is sqlite:////...


# -- opening ------------------------------------------------------------------------------------


def test_init_creates_root_and_reopen_finds_data(backend: Backend, uri: str) -> None:
    async def create(catalog: Catalog) -> None:
        root = await catalog.lookup(())
        assert root is not None and root.id == 0 and root.path == ()
        await catalog.create_node(root, "kept", structure_family="container", metadata={"n": 1})

    run_with(uri, create, init=True)
    if backend.name == "sqlite":
        assert Path(backend.display).exists()

    async def reopen(catalog: Catalog) -> None:
        kept = await catalog.lookup(("kept",))
        assert kept is not None and kept.metadata == {"n": 1}

    run_with(uri, reopen)  # no init needed any more
    run_with(uri, reopen, init=True)  # and init is idempotent


def test_missing_file_without_init(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    message = open_error(f"sqlite:///{path}")
    assert message == f"Database {path} does not exist. Use --init to create it."
    assert not path.exists()


def test_create_makes_a_missing_file(tmp_path: Path) -> None:
    async def body(catalog: Catalog) -> int:
        return await catalog.count_children(await _root(catalog))

    assert run_with(str(tmp_path / "new.sqlite"), body, create=True) == 0


def test_foreign_database_needs_init(backend: Backend) -> None:
    backend.execute("CREATE TABLE unrelated (x INTEGER)")
    assert open_error(backend.uri) == (
        f"Database {backend.display} has no ferrotile catalog schema. Use --init to initialize it."
    )
    # create never touches a database that has tables
    assert "Use --init" in open_error(backend.uri, create=True)
    run_with(backend.uri, _root, init=True)
    run_with(backend.uri, _root)
    assert backend.execute("SELECT COUNT(*) FROM unrelated") == [(0,)]


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "text.db"
    path.write_text("hello, this is not sqlite " * 100)
    message = open_error(str(path), init=True)
    assert message.startswith(f"Cannot open catalog database {path}:")
    assert "\n" not in message


def test_unwritable_locations(tmp_path: Path) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir" / "c.db"
    message = open_error(f"sqlite:///{missing_dir}", init=True)
    assert message == (
        f"Cannot create catalog database {missing_dir}: "
        f"directory {missing_dir.parent} does not exist"
    )
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert "does not exist" in open_error(str(a_file / "c.db"), init=True)


def test_read_only_directory_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same check where the tests run as root (who may write anywhere).
    monkeypatch.setattr(sqlite_module.os, "access", lambda path, mode: False)
    message = open_error(str(tmp_path / "c.db"), init=True)
    assert message.endswith(f"directory {tmp_path} is not writable")
    assert not (tmp_path / "c.db").exists()


def test_directory_as_database(tmp_path: Path) -> None:
    (tmp_path / "d.db").mkdir()
    assert open_error(str(tmp_path / "d.db"), init=True).endswith("is a directory")


def test_unsupported_schemes() -> None:
    message = open_error("mysql://user:secret@host/db")
    assert "'mysql'" in message and "sqlite:///" in message
    assert "secret" not in message
    assert "sqlite:///" in open_error("catalog.txt")
    assert "postgresql://" in open_error("catalog.txt")


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("sqlite:///rel/c.db", "rel/c.db"),
        ("sqlite:////abs/c.db", "/abs/c.db"),
        ("sqlite+aiosqlite:////abs/c.db", "/abs/c.db"),
        ("SQLite+pysqlite:///c.db", "c.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite://", ":memory:"),
        ("/abs/c.db", "/abs/c.db"),
        ("c.sqlite", "c.sqlite"),
    ],
)
def test_parse_catalog_uri(uri: str, path: str) -> None:
    location = parse_catalog_uri(uri)
    assert (location.backend, location.path) == ("sqlite", path)


def test_relative_uri_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run_with("sqlite+aiosqlite:///rel.db", _root, init=True)
    assert (tmp_path / "rel.db").exists()


def test_memory_catalog_is_initialised() -> None:
    async def body(catalog: Catalog) -> tuple[str, ...]:
        root = await _root(catalog)
        await catalog.create_node(root, "m", structure_family="container")
        node = await catalog.lookup(("m",), fresh=True)
        assert node is not None
        return node.path

    assert run_with("sqlite:///:memory:", body) == ("m",)


def test_older_schema_is_migrated_only_with_init(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = backend.uri
    run_with(uri, _root, init=True)
    newer = (*schema.MIGRATIONS, ("CREATE TABLE extra (x INTEGER)",))
    monkeypatch.setattr(schema, "MIGRATIONS", newer)
    monkeypatch.setattr(schema, "LATEST_VERSION", len(newer))
    monkeypatch.setattr(sqlite_module, "LATEST_VERSION", len(newer))
    monkeypatch.setattr(postgres_module, "LATEST_VERSION", len(newer))
    message = open_error(uri)
    assert message == (
        f"Database {backend.display} has catalog schema version {len(newer) - 1}, older than "
        f"{len(newer)}. Use --init to migrate it."
    )
    assert "Use --init to migrate it" in open_error(uri, create=True)
    run_with(uri, _root, init=True)
    run_with(uri, _root)
    versions = backend.execute("SELECT version FROM ferrotile_schema_version ORDER BY version")
    assert [v for (v,) in versions] == list(range(1, len(newer) + 1))
    assert backend.execute("SELECT COUNT(*) FROM extra") == [(0,)]


def test_newer_schema_is_refused(backend: Backend) -> None:
    run_with(backend.uri, _root, init=True)
    backend.execute("INSERT INTO ferrotile_schema_version VALUES (99, 'later')")
    message = open_error(backend.uri, init=True)
    assert message == (
        f"Database {backend.display} has catalog schema version 99, newer than this ferrotile "
        f"supports ({schema.LATEST_VERSION}). Upgrade ferrotile."
    )


def test_calls_run_on_the_catalog_thread(uri: str) -> None:
    async def body(catalog: Catalog) -> list[str]:
        await _root(catalog)
        return [thread.name for thread in threading.enumerate()]

    names = run_with(uri, body, init=True)
    assert any(name.startswith("ferrotile-catalog") for name in names)


def test_closed_catalog_refuses_calls(uri: str) -> None:
    async def main() -> None:
        catalog = await Catalog.open(uri, init=True)
        root = await _root(catalog)
        await catalog.close()
        await catalog.close()  # idempotent
        with pytest.raises(CatalogError, match="closed"):
            await catalog.count_children(root)

    asyncio.run(main())


# -- nodes --------------------------------------------------------------------------------------


async def _root(catalog: Catalog) -> Node:
    root = await catalog.lookup(())
    assert root is not None
    return root


def test_create_lookup_round_trip_and_nested_paths(uri: str) -> None:
    async def body(catalog: Catalog) -> None:
        root = await catalog.lookup(())
        assert root is not None
        a = await catalog.create_node(root, "a", structure_family="container")
        b = await catalog.create_node(a, "b b", structure_family="container", specs=[])
        metadata = {"nested": {"deep": [1, {"ü": "ñ"}]}, "title": "日本語"}
        leaf = await catalog.create_node(
            b,
            "leaf",
            structure_family="array",
            metadata=metadata,
            specs=[{"name": "xdi", "version": None}],
            access_tags=["zeta", "alpha"],
            data_sources=[tiff_series("0.tif", "1.tif", "2.tif")],
        )
        assert leaf.path == ("a", "b b", "leaf")
        assert leaf.access_tags == ["alpha", "zeta"]  # stored sorted, as Tiled serves them
        assert await catalog.lookup(("a", "b b", "leaf")) is leaf  # cached by create
        fresh = await catalog.lookup(("a", "b b", "leaf"), fresh=True)
        assert fresh == leaf and fresh is not leaf
        assert fresh is not None and fresh.metadata == metadata
        assert [asset.num for asset in fresh.data_sources[0].assets] == [0, 1, 2]
        assert await catalog.lookup(("a", "leaf")) is None
        with pytest.raises(KeyConflict):
            await catalog.create_node(b, "leaf", structure_family="container")

    run_with(uri, body, init=True)


def test_create_validates_before_touching_the_database(uri: str) -> None:
    async def body(catalog: Catalog) -> None:
        root = await catalog.lookup(())
        assert root is not None
        with pytest.raises(InvalidKey, match="'/'"):
            await catalog.create_node(root, "a/b", structure_family="container")
        with pytest.raises(InvalidKey):
            await catalog.create_node(root, "..", structure_family="container")
        with pytest.raises(ValueError, match="Unknown structure family 'blob'"):
            await catalog.create_node(root, "x", structure_family="blob")
        arr = await catalog.create_node(
            root, "arr", structure_family="array", data_sources=[array_source([1])]
        )
        with pytest.raises(CatalogError, match="not a container"):
            await catalog.create_node(arr, "child", structure_family="container")
        assert await catalog.count_children(root) == 1

    run_with(uri, body, init=True)


def test_lookup_is_cached_and_misses_are_not(backend: Backend, uri: str) -> None:
    async def body(catalog: Catalog) -> None:
        root = await catalog.lookup(())
        assert root is not None
        await catalog.create_node(root, "c", structure_family="container", metadata={"v": 1})
        assert await catalog.lookup(("later",)) is None
        # Another process changes the database behind the cache's back.
        backend.execute("UPDATE nodes SET metadata = '{\"v\": 2}' WHERE key = 'c'")
        backend.execute(
            "INSERT INTO nodes (parent_id, key, path, structure_family, metadata, specs,"
            " access_tags, time_created, time_updated) VALUES (0, 'later', 'later',"
            " 'container', '{}', '[]', '[]', '2025-01-01T00:00:00.000000+00:00',"
            " '2025-01-01T00:00:00.000000+00:00')"
        )
        cached = await catalog.lookup(("c",))
        assert cached is not None and cached.metadata == {"v": 1}  # served from the cache
        refreshed = await catalog.lookup(("c",), fresh=True)
        assert refreshed is not None and refreshed.metadata == {"v": 2}
        again = await catalog.lookup(("c",))
        assert again is refreshed
        later = await catalog.lookup(("later",))  # the earlier miss was not cached
        assert later is not None and later.key == "later"

    run_with(uri, body, init=True)


def test_list_and_count_children(uri: str) -> None:
    async def body(catalog: Catalog) -> None:
        root = await catalog.lookup(())
        assert root is not None
        for i in range(5):
            await catalog.create_node(
                root, f"n{4 - i}", structure_family="array", data_sources=[array_source([i + 1])]
            )
        assert await catalog.count_children(root) == 5
        first = await catalog.list_children(root, limit=2)
        assert [node.key for node in first] == ["n4", "n3"]
        rest = await catalog.list_children(root, offset=2)
        assert [node.key for node in rest] == ["n2", "n1", "n0"]
        shape = rest[-1].data_sources[0].structure
        assert shape is not None and shape["shape"] == [5]
        assert await catalog.list_children(root, offset=5) == []

    run_with(uri, body, init=True)


def test_update_structure_refreshes_the_cache(uri: str) -> None:
    async def body(catalog: Catalog) -> None:
        root = await catalog.lookup(())
        assert root is not None
        node = await catalog.create_node(
            root, "grow", structure_family="array", data_sources=[array_source([2, 3])]
        )
        source_id = node.data_sources[0].id
        assert source_id is not None
        bigger = array_source([4, 3]).structure
        assert bigger is not None
        updated = await catalog.update_structure(node, source_id, bigger)
        assert updated.data_sources[0].structure == bigger
        assert updated.time_updated > node.time_updated
        looked_up = await catalog.lookup(("grow",))
        assert looked_up is updated
        with pytest.raises(CatalogError, match="has no data source 12345"):
            await catalog.update_structure(node, 12345, bigger)

    run_with(uri, body, init=True)


def test_delete_evicts_subtree(uri: str) -> None:
    async def body(catalog: Catalog) -> None:
        root = await catalog.lookup(())
        assert root is not None
        top = await catalog.create_node(root, "top", structure_family="container")
        mid = await catalog.create_node(top, "mid", structure_family="container")
        await catalog.create_node(
            mid, "leaf", structure_family="array", data_sources=[array_source([1])]
        )
        paths = [("top",), ("top", "mid"), ("top", "mid", "leaf")]
        for path in paths:
            assert await catalog.lookup(path) is not None
        with pytest.raises(NotEmpty):
            await catalog.delete_node(top)
        assert await catalog.lookup(("top", "mid", "leaf"), fresh=True) is not None
        deleted = await catalog.delete_node(top, recursive=True)
        assert [node.path for node in deleted] == paths[::-1]
        for path in paths:
            assert await catalog.lookup(path) is None
        with pytest.raises(CatalogError, match="root"):
            await catalog.delete_node(root, recursive=True)
        assert await catalog.count_children(root) == 0

    run_with(uri, body, init=True)


def test_concurrent_lookup_and_delete_leave_no_stale_entry(uri: str) -> None:
    async def body(catalog: Catalog) -> None:
        root = await catalog.lookup(())
        assert root is not None
        node = await catalog.create_node(root, "racy", structure_family="container")
        for _ in range(20):
            found, deleted = await asyncio.gather(
                catalog.lookup(("racy",), fresh=True), catalog.delete_node(node)
            )
            assert found == node and deleted == [node]
            assert await catalog.lookup(("racy",)) is None
            node = await catalog.create_node(root, "racy", structure_family="container")

    run_with(uri, body, init=True)


# -- PostgreSQL specifics -----------------------------------------------------------------------


def test_parse_postgresql_uri() -> None:
    location = parse_catalog_uri("postgresql+asyncpg://tiled:p%40ss:w@db.example:5433/catalog")
    assert location.backend == "postgresql"
    assert location.path == "postgresql://tiled:p%40ss:w@db.example:5433/catalog"
    assert location.display == "postgresql://tiled@db.example:5433/catalog"
    assert "p%40ss:w" in location.secrets and "p@ss:w" in location.secrets
    assert "p%40ss" not in repr(location)
    plain = parse_catalog_uri("postgres://db.example/catalog?sslmode=require")
    assert plain.path == "postgresql://db.example/catalog?sslmode=require"
    assert plain.display == "postgresql://db.example/catalog"
    assert plain.secrets == ()
    query = parse_catalog_uri("postgresql://u@h/db?password=hunter2")
    assert query.display == "postgresql://u@h/db" and "hunter2" in query.secrets


def test_postgresql_connection_failure_is_one_line_without_password() -> None:
    port = free_port()  # nothing listens there
    message = open_error(f"postgresql://ferro:hunter2pw@127.0.0.1:{port}/catalog", init=True)
    assert message.startswith(
        f"Cannot connect to catalog database postgresql://ferro@127.0.0.1:{port}/catalog: "
    )
    assert "Connection refused" in message
    assert "\n" not in message and "hunter2pw" not in message


def test_postgresql_uri_errors_never_show_the_password(postgres: PostgresServer) -> None:
    # libpq echoes the whole connection string in some parse errors.
    port = postgres.port
    bad_query = open_error(f"postgresql://ferro:hunter2pw@127.0.0.1:{port}/db?nosuch=1")
    assert "hunter2pw" not in bad_query and "\n" not in bad_query
    assert bad_query.startswith("Cannot connect to catalog database postgresql://ferro@")
    assert "nosuch" in bad_query
    bad_host = open_error("postgresql://ferro:hunter2pw@[::1/db")
    assert "hunter2pw" not in bad_host and "\n" not in bad_host


def test_postgresql_missing_database_and_wrong_user(postgres: PostgresServer) -> None:
    uri = postgres.uri
    missing = open_error(uri("no_such_db"), init=True)
    assert missing.startswith("Cannot connect to catalog database postgresql://postgres@")
    assert 'database "no_such_db" does not exist' in missing
    wrong_user = open_error(uri("postgres").replace("postgres@", "nobody:pw1234@"), init=True)
    assert 'role "nobody" does not exist' in wrong_user and "pw1234" not in wrong_user


def test_postgresql_create_initialises_only_an_empty_database(postgres: PostgresServer) -> None:
    # (A database with other tables is refused: test_foreign_database_needs_init.)
    async def body(catalog: Catalog) -> int:
        return await catalog.count_children(await _root(catalog))

    uri = postgres.new_database()
    assert run_with(uri, body, create=True) == 0
    assert run_with(uri, body) == 0


def test_tiled_spelling_of_postgresql_uris(pg_backend: Backend) -> None:
    backend = pg_backend
    uri = backend.uri.replace("postgresql://", "postgresql+asyncpg://", 1)
    root = run_with(uri, _root, init=True)
    assert root.id == 0
    assert run_with(backend.uri, _root) == root


def test_postgresql_reconnects_after_losing_its_connection(postgres: PostgresServer) -> None:
    uri = postgres.new_database()  # its own database, so that only our connection is killed
    backend = Backend("postgresql", uri, uri)

    async def body(catalog: Catalog) -> None:
        root = await _root(catalog)
        await catalog.create_node(root, "kept", structure_family="container")
        # The server drops the connection (restart, failover, idle timeout in a proxy).
        killed = backend.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'ferrotile' AND datname = current_database()"
        )
        assert killed == [(True,)]
        with pytest.raises(CatalogError, match="Catalog database error"):
            await catalog.lookup(("kept",), fresh=True)
        kept = await catalog.lookup(("kept",), fresh=True)  # the next call reconnects
        assert kept is not None and kept.key == "kept"

    run_with(backend.uri, body, init=True)
