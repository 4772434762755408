"""Search queries and metadata revisions at the catalog level, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from ferrotile.catalog import Catalog, Node
from ferrotile.catalog import queries as q
from ferrotile.catalog.dialect import POSTGRESQL, SQLITE
from ferrotile.catalog.query_sql import compile_filters, compile_sort

from .conftest import Backend, array_source

T = TypeVar("T")

ENTRIES: dict[str, dict[str, Any]] = {
    "a": {"s": "apple pie", "n": 1, "l": [1, "two", {"k": 3}], "o": {"x": 1, "y": [2]}},
    "b": {"s": "Banana", "n": 2.0, "l": [], "b": True, "deep": {"er": {"est": "yes"}}},
    "c": {"s": "cherry 100%", "n": "2", "b": False, "z": None},
    "d": {"s": "apple_tart", "n": 1e3, "weird key": "spaces ok"},
    "e": {},
}


def run(backend: Backend, body: Callable[[Catalog, Node], Awaitable[T]]) -> T:
    """Open the backend's catalog, fill a container with ENTRIES (+ an array), run ``body``."""

    async def main() -> T:
        catalog = await Catalog.open(backend.uri, init=True)
        try:
            root = await catalog.lookup(())
            assert root is not None
            parent = await catalog.create_node(root, "p", structure_family="container")
            for key, metadata in ENTRIES.items():
                specs = [{"name": "sp", "version": None}] if key in "ac" else []
                await catalog.create_node(
                    parent, key, structure_family="container", metadata=metadata, specs=specs
                )
            await catalog.create_node(
                parent, "arr", structure_family="array", data_sources=[array_source([2])]
            )
            return await body(catalog, parent)
        finally:
            await catalog.close()

    return asyncio.run(main())


CASES: list[tuple[q.Query, list[str]]] = [
    (q.Eq("n", 1), ["a"]),
    (q.Eq("n", 2), ["b"]),  # 2 == 2.0 as JSON numbers; "2" is a string
    (q.Eq("n", "2"), ["c"]),
    (q.Eq("n", 1000), ["d"]),
    (q.Eq("b", False), ["c"]),
    (q.Eq("z", None), ["c"]),
    (q.Eq("o", {"x": 1, "y": [2]}), ["a"]),
    (q.Eq("l", []), ["b"]),
    (q.Eq("deep.er.est", "yes"), ["b"]),
    (q.Eq("weird key", "spaces ok"), ["d"]),
    (q.NotEq("n", 1), ["b", "c", "d"]),
    (q.Comparison("ge", "n", 2), ["b", "d"]),
    (q.Comparison("lt", "s", "b"), ["a", "b", "d"]),  # byte order: "Banana" < "apple" < "b"
    (q.Contains("l", "two"), ["a"]),
    (q.Contains("l", {"k": 3}), ["a"]),
    (q.Contains("s", "apple"), []),  # membership in arrays, not substrings
    (q.In("n", [1, "2"]), ["a", "c"]),
    (q.NotIn("n", [1, "2"]), ["b", "d"]),
    (q.NotIn("n", []), ["a", "b", "c", "d", "e", "arr"]),
    (q.KeyPresent("z"), ["c"]),
    (q.KeyPresent("o.y"), ["a"]),
    (q.KeyPresent("b", exists=False), ["a", "d", "e", "arr"]),
    (q.FullText("APPLE"), ["a", "d"]),  # whole words, "_" separates them
    (q.FullText("app"), []),
    (q.FullText("pie apple"), ["a"]),
    (q.FullText("two"), ["a"]),  # strings inside arrays count
    (q.FullText("   "), []),
    (q.Regex("s", "^[ab]"), ["a", "d"]),
    (q.Regex("s", "^[ab]", case_sensitive=False), ["a", "b", "d"]),
    (q.Regex("s", r"\d+%"), ["c"]),
    (q.Like("s", "apple%"), ["a", "d"]),
    (q.Like("s", "apple\\_%"), ["d"]),  # backslash escapes _
    (q.Like("s", "%100\\%"), ["c"]),
    (q.Like("s", "BANANA"), ["b"]),
    (q.Specs(["sp"]), ["a", "c"]),
    (q.Specs([], ["sp"]), ["b", "d", "e", "arr"]),
    (q.StructureFamily("array"), ["arr"]),
    (q.KeysFilter(["e", "a"]), ["a", "e"]),
    (q.KeysFilter([]), []),
    (q.AccessTags(["t"]), []),
    (q.KeyLookup("c"), ["c"]),
]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=repr)
def test_each_query(backend: Backend, query: q.Query, expected: list[str]) -> None:
    async def body(catalog: Catalog, parent: Node) -> tuple[list[str], int]:
        found = await catalog.search(parent, [query])
        return [node.key for node in found], await catalog.count(parent, [query])

    keys, count = run(backend, body)
    assert keys == expected
    assert count == len(expected)


def test_combined_sorted_and_paged(backend: Backend) -> None:
    async def body(catalog: Catalog, parent: Node) -> dict[str, Any]:
        async def keys(*queries: q.Query, sort: Any = (), offset: int = 0, limit: int = 100) -> Any:
            found = await catalog.search(parent, queries, sort, offset=offset, limit=limit)
            return [n.key for n in found]

        return {
            "and": await keys(q.KeyPresent("n"), q.Regex("s", "apple")),
            "asc": await keys(sort=[("n", 1)]),
            "desc": await keys(sort=[("n", -1)]),
            "two": await keys(sort=[("b", -1), ("s", 1)]),
            "default_desc": await keys(sort=[("", -1)]),
            "page": await keys(q.KeyPresent("s"), sort=[("s", 1)], offset=1, limit=2),
            "meta_prefix": await keys(sort=[("metadata.s", -1)], limit=2),
            "node": (await catalog.search(parent, [q.Eq("n", 1000)]))[0],
            "arr": (await catalog.search(parent, [q.StructureFamily("array")], [("n", 1)]))[0],
        }

    result = run(backend, body)
    assert result["and"] == ["a", "d"]
    # Numbers (1, 2.0, 1e3), then strings ("2"), then nodes without the key.
    assert result["asc"] == ["a", "b", "d", "c", "e", "arr"]
    assert result["desc"] == ["e", "arr", "c", "d", "b", "a"]
    assert result["two"] == ["a", "d", "e", "arr", "b", "c"]  # missing first, true > false
    assert result["default_desc"] == ["arr", "e", "d", "c", "b", "a"]
    assert result["page"] == ["a", "d"]  # "Banana" < "apple pie" < "apple_tart" < "cherry"
    assert result["meta_prefix"] == ["e", "arr"]
    assert result["node"].metadata == ENTRIES["d"]
    assert result["arr"].data_sources[0].structure["shape"] == [2]  # joined data sources


def test_decode_wire_form() -> None:
    assert q.decode_query("eq", {"key": "a.b", "value": '{"x": [1]}'}) == q.Eq("a.b", {"x": [1]})
    assert q.decode_query("comparison", {"operator": "le", "key": "k", "value": "3"}) == (
        q.Comparison("le", "k", 3)
    )
    assert q.decode_query("keypresent", {"key": "k", "exists": "false"}) == q.KeyPresent("k", False)
    assert q.decode_query("regex", {"key": "k", "pattern": "^a"}) == q.Regex("k", "^a", True)
    assert q.decode_query("regex", {"key": "k", "pattern": "a", "case_sensitive": "false"}) == (
        q.Regex("k", "a", False)
    )
    assert q.decode_query("like", {"key": "k", "pattern": '"a%"'}) == q.Like("k", "a%")
    assert q.decode_query("specs", {"include": '["a"]', "exclude": "[]"}) == q.Specs(["a"], [])
    assert q.decode_query("access_tags_filter", {"tags": '["t"]'}) == q.AccessTags(["t"])
    for name, fields in [
        ("nosuch", {}),
        ("eq", {"key": "k"}),
        ("eq", {"key": "k", "value": "nope"}),
        ("comparison", {"operator": "ne", "key": "k", "value": "1"}),
        ("in", {"key": "k", "value": '"x"'}),
        ("keypresent", {"key": "k", "exists": "perhaps"}),
        ("regex", {"key": "k", "pattern": "["}),
        ("like", {"key": "k", "pattern": "1"}),
        ("structure_family", {"value": "nope"}),
        ("keys_filter", {"keys": "[1]"}),
    ]:
        with pytest.raises(q.QueryError):
            q.decode_query(name, fields)
    assert {"eq", "fulltext", "regex", "specs", "access_tags_filter", "lookup"} <= q.QUERY_NAMES


def test_parse_sort() -> None:
    assert q.parse_sort(["a,-b", "+c"]) == [("a", 1), ("b", -1), ("c", 1)]
    assert q.parse_sort(["", "_"]) == []
    with pytest.raises(q.QueryError, match="Duplicate"):
        q.parse_sort(["a", "-a"])
    with pytest.raises(q.QueryError, match="last"):
        q.parse_sort(["-", "a"])


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRESQL], ids=lambda d: d.name)
def test_compile_rejects_bad_values_and_keeps_params_in_order(dialect: Any) -> None:
    with pytest.raises(q.QueryError):
        compile_filters([q.Comparison("lt", "k", [1])], dialect)
    with pytest.raises(q.QueryError):
        compile_filters([q.Comparison("lt", "k", True)], dialect)
    where = compile_filters([q.Eq("a", 1), q.Like("b", "x%")], dialect)
    assert where.sql.count("?") == len(where.params)
    order = compile_sort([("a", 1), ("id", -1), ("", -1)], dialect)
    assert order.sql.count("?") == len(order.params)
    assert order.sql.endswith("n.id DESC")


def test_revisions(backend: Backend) -> None:
    async def body(catalog: Catalog, parent: Node) -> dict[str, Any]:
        a = await catalog.lookup(("p", "a"))
        assert a is not None
        spec = [{"name": "s", "version": "1"}]
        one, n1 = await catalog.replace_metadata(a, metadata={"v": 1}, specs=spec, access_tags=[])
        two, n2 = await catalog.replace_metadata(one, metadata={"v": 2}, specs=[], access_tags=[])
        three, n3 = await catalog.replace_metadata(
            two, metadata={"v": 3}, specs=[], access_tags=[], drop_revision=True
        )
        cached = await catalog.lookup(("p", "a"))
        page, total = await catalog.revisions(three, offset=1, limit=5)
        deleted = await catalog.delete_revision(three, 2)
        again = await catalog.delete_revision(three, 2)
        _, n4 = await catalog.replace_metadata(three, metadata={"v": 4}, specs=[], access_tags=[])
        after, count = await catalog.revisions(three)
        empty, zero_total = await catalog.revisions(three, offset=0, limit=0)
        await catalog.delete_node(three)
        return {
            "numbers": (n1, n2, n3, n4),
            "cached": cached,
            "page": page,
            "total": total,
            "deleted": (deleted, again),
            "after": [(r.revision_number, r.metadata) for r in after],
            "count": count,
            "limit0": (empty, zero_total),
            "gone": backend.count_rows("revisions"),
        }

    result = run(backend, body)
    assert result["numbers"] == (1, 2, None, 2)  # numbers continue from the highest left
    assert result["cached"].metadata == {"v": 3}  # the cache follows the update
    assert result["total"] == 2
    (second,) = result["page"]
    assert second.revision_number == 2
    assert second.metadata == {"v": 1}
    assert second.specs == [{"name": "s", "version": "1"}]
    assert second.to_json()["attributes"]["time_updated"]
    assert result["deleted"] == (True, False)
    assert result["after"] == [(1, ENTRIES["a"]), (2, {"v": 3})]
    assert result["count"] == 2
    assert result["limit0"] == ([], 2)
    assert result["gone"] == 0  # revisions go with their node
