"""Search with the stock tiled client: every query it ships, combinations, sorting, paging."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import numpy as np
import pytest
from tiled.client import from_uri
from tiled.queries import (
    AccessTagsFilter,
    Comparison,
    Contains,
    Eq,
    FullText,
    In,
    Key,
    KeyPresent,
    KeysFilter,
    Like,
    NotEq,
    NotIn,
    Regex,
    SpecsQuery,
    StructureFamilyQuery,
)

from tests.conftest import RunningServer

# key -> (metadata, specs); created in this order.
ENTRIES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "a": ({"color": "red", "n": 1, "tags": ["x", "y"], "sample": {"name": "Cu-1"}}, ["foo"]),
    "b": ({"color": "blue", "n": 2.5, "tags": ["y"], "flag": True, "text": "The quick dog"}, []),
    "c": ({"color": "Red", "n": "1", "flag": False, "sample": {"name": "Ni-2"}}, ["foo", "bar"]),
    "d": ({"n": 10, "text": "lazy DOG jumps"}, ["bar"]),
    "e": ({"color": "green", "n": -3, "tags": [], "nothing": None}, []),
}


@pytest.fixture(scope="module")
def tree(server: RunningServer) -> str:
    """A container holding ENTRIES (containers) and one array ``arr``; returns its key."""
    client = from_uri(server.url, api_key=server.api_key)
    key = f"search{uuid.uuid4().hex[:8]}"
    parent = client.create_container(key)
    for child, (metadata, specs) in ENTRIES.items():
        parent.create_container(child, metadata=metadata, specs=specs)
    parent.write_array(np.arange(3), key="arr", metadata={"color": "red", "n": 5})
    return key


@pytest.fixture
def c(client: Any, tree: str) -> Any:
    return client[tree]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (Eq("color", "red"), ["a", "arr"]),
        (Key("color") == "blue", ["b"]),
        (Eq("n", 1), ["a"]),  # typed: "1" (c) is a string
        (Eq("n", "1"), ["c"]),
        (Eq("flag", True), ["b"]),
        (Eq("sample.name", "Ni-2"), ["c"]),
        (Eq("tags", ["x", "y"]), ["a"]),
        (Eq("nothing", None), ["e"]),
        (NotEq("color", "red"), ["b", "c", "e"]),  # nodes without the key never match
        (Key("n") > 2, ["b", "d", "arr"]),
        (Key("n") >= 2.5, ["b", "d", "arr"]),
        (Key("n") < 1, ["e"]),
        (Key("n") <= 1, ["a", "e"]),
        (Comparison("gt", "color", "p"), ["a", "arr"]),  # strings compare with strings
        (Contains("tags", "y"), ["a", "b"]),
        (In("color", ["red", "green"]), ["a", "e", "arr"]),
        (In("color", []), []),
        (NotIn("color", ["red", "green"]), ["b", "c"]),
        (KeyPresent("flag"), ["b", "c"]),
        (KeyPresent("flag", exists=False), ["a", "d", "e", "arr"]),
        (KeyPresent("sample.name"), ["a", "c"]),
        (FullText("dog"), ["b", "d"]),
        (FullText("QUICK dog"), ["b"]),
        (FullText("color"), []),  # values, not keys
        (Regex("color", "^r"), ["a", "arr"]),
        (Regex("color", "^r", case_sensitive=False), ["a", "c", "arr"]),
        (Regex("tags", "x"), []),  # only strings are matched
        (Like("color", "r%"), ["a", "c", "arr"]),
        (Like("sample.name", "%-_"), ["a", "c"]),
        (SpecsQuery(["foo"]), ["a", "c"]),
        (SpecsQuery(["foo", "bar"]), ["c"]),
        (SpecsQuery(["bar"], exclude=["foo"]), ["d"]),
        (StructureFamilyQuery("array"), ["arr"]),
        (StructureFamilyQuery("container"), ["a", "b", "c", "d", "e"]),
        (KeysFilter(["a", "e", "zz"]), ["a", "e"]),
        (AccessTagsFilter(["foo"]), []),  # single-user mode: no node carries tags
    ],
    ids=repr,
)
def test_each_query(c: Any, query: Any, expected: list[str]) -> None:
    results = c.search(query)
    assert list(results) == expected
    assert len(results) == len(expected)


def test_combined_queries_and_lookup(c: Any) -> None:
    # Chained searches send every filter; the same query name may repeat.
    assert list(c.search(Key("n") > 0).search(Key("n") < 10)) == ["a", "b", "arr"]
    assert list(c.search(Eq("color", "red")).search(Eq("n", 5))) == ["arr"]
    both = c.search(StructureFamilyQuery("container")).search(Regex("color", "^r", False))
    assert list(both) == ["a", "c"] and len(both) == 2
    assert both["c"].metadata["n"] == "1"
    with pytest.raises(KeyError):
        both["b"]
    assert list(c.search(In("color", ["red"])).search(KeyPresent("tags"))) == ["a"]


def test_sorting(c: Any) -> None:
    assert list(c) == ["a", "b", "c", "d", "e", "arr"]  # default: insertion order
    # Numbers first, then strings; nodes without the key last ascending, first descending.
    assert list(c.sort(("n", 1))) == ["e", "a", "b", "arr", "d", "c"]
    assert list(c.sort(("n", -1))) == ["c", "d", "arr", "b", "a", "e"]
    assert list(c.sort(("color", 1), ("n", -1))) == ["c", "b", "e", "arr", "a", "d"]
    assert list(c.sort(("sample.name", -1))) == ["b", "d", "e", "arr", "c", "a"]
    assert list(c.sort(("id", -1))) == ["e", "d", "c", "b", "arr", "a"]
    assert list(c.search(Eq("color", "red")).sort(("n", -1))) == ["arr", "a"]


def test_pagination_over_several_pages(client: Any, key: str) -> None:
    parent = client.create_container(key)
    for i in range(130):
        parent.create_container(f"n{i:03d}", metadata={"i": i, "odd": i % 2 == 1})
    assert len(parent) == 130
    assert list(parent) == [f"n{i:03d}" for i in range(130)]  # 100 + 30, following links.next
    odd = parent.search(Eq("odd", True))
    assert len(odd) == 65
    assert list(odd) == [f"n{i:03d}" for i in range(1, 130, 2)]
    descending = list(parent.sort(("i", -1)))
    assert descending == [f"n{i:03d}" for i in reversed(range(130))]
    assert list(parent.search(Key("i") >= 120).sort(("i", -1))) == [
        f"n{i:03d}" for i in range(129, 119, -1)
    ]


def _get(server: RunningServer, path: str, params: Any) -> httpx.Response:
    return httpx.get(
        f"{server.url}/api/v1/search/{path}",
        params=params,
        headers={"Authorization": f"Apikey {server.api_key}"},
    )


def test_raw_paging_with_filters(server: RunningServer, tree: str) -> None:
    params = {"filter[keypresent][condition][key]": "color", "page[limit]": 2, "fields": ""}
    seen, body = [], _get(server, tree, params).json()
    while True:
        assert body["meta"]["count"] == 5
        seen += [item["id"] for item in body["data"]]
        if body["links"]["next"] is None:
            break
        body = httpx.get(
            body["links"]["next"], headers={"Authorization": f"Apikey {server.api_key}"}
        ).json()
    assert seen == ["a", "b", "c", "e", "arr"]
    sorted_body = _get(server, tree, {"sort": "color,-n", "fields": ""}).json()
    assert [item["id"] for item in sorted_body["data"]] == ["c", "b", "e", "arr", "a", "d"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"filter[nosuch][condition][key]": "x"}, 400),
        ({"filter[eq][condition][key]": "x", "filter[eq][condition][value]": "{bad"}, 400),
        ({"filter[eq][condition][key]": "x"}, 400),  # value missing
        ({"filter[comparison][condition][operator]": "eq", "filter[comparison][condition][key]":
          "n", "filter[comparison][condition][value]": "1"}, 400),
        ({"filter[comparison][condition][operator]": "lt", "filter[comparison][condition][key]":
          "n", "filter[comparison][condition][value]": "[1]"}, 400),
        ({"filter[in][condition][key]": "x", "filter[in][condition][value]": "1"}, 400),
        ({"filter[keypresent][condition][key]": "x", "filter[keypresent][condition][exists]":
          "maybe"}, 422),
        ({"filter[regex][condition][key]": "x", "filter[regex][condition][pattern]": "("}, 400),
        ({"filter[structure_family][condition][value]": "dataframe"}, 400),
        ({"filter[keys_filter][condition][keys]": "a"}, 400),
        ({"sort": ["n", "-n"]}, 400),
    ],
)  # fmt: skip
def test_bad_filters(server: RunningServer, tree: str, params: Any, status: int) -> None:
    response = _get(server, tree, params)
    assert response.status_code == status, response.text
    assert "detail" in response.json()


def test_about_lists_the_implemented_queries(client: Any) -> None:
    assert set(client.context.server_info.queries) == {
        "fulltext", "lookup", "keys_filter", "regex", "eq", "noteq", "comparison", "contains",
        "in", "notin", "keypresent", "like", "specs", "access_tags_filter", "structure_family",
    }  # fmt: skip
