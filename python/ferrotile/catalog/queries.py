"""Tiled's search queries and their wire form.

A query arrives as ``filter[<name>][condition][<field>]=<text>`` parameters (the encodings of
``tiled.queries``); :func:`decode_query` turns one set of fields into a query object, and
:func:`parse_sort` reads the ``sort`` parameter. :mod:`ferrotile.catalog.query_sql` compiles
them to SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ferrotile.catalog.models import STRUCTURE_FAMILIES
from ferrotile.errors import FerrotileError

JSONValue = Any


class QueryError(FerrotileError, ValueError):
    """A query that cannot be decoded or compiled (bad JSON, missing field, bad value)."""


# -- query objects --------------------------------------------------------------------------


@dataclass(frozen=True)
class Eq:
    key: str
    value: JSONValue


@dataclass(frozen=True)
class NotEq:
    key: str
    value: JSONValue


@dataclass(frozen=True)
class Comparison:
    operator: str  # lt, le, gt, ge
    key: str
    value: JSONValue


@dataclass(frozen=True)
class Contains:
    key: str
    value: JSONValue


@dataclass(frozen=True)
class In:
    key: str
    value: list[JSONValue]


@dataclass(frozen=True)
class NotIn:
    key: str
    value: list[JSONValue]


@dataclass(frozen=True)
class KeyPresent:
    key: str
    exists: bool = True


@dataclass(frozen=True)
class FullText:
    text: str


@dataclass(frozen=True)
class Regex:
    key: str
    pattern: str
    case_sensitive: bool = True


@dataclass(frozen=True)
class Like:
    key: str
    pattern: str


@dataclass(frozen=True)
class Specs:
    include: list[str]
    exclude: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StructureFamily:
    value: str


@dataclass(frozen=True)
class KeysFilter:
    keys: list[str]


@dataclass(frozen=True)
class AccessTags:
    tags: list[str]


@dataclass(frozen=True)
class KeyLookup:
    key: str


Query = (
    Eq | NotEq | Comparison | Contains | In | NotIn | KeyPresent | FullText | Regex | Like
    | Specs | StructureFamily | KeysFilter | AccessTags | KeyLookup
)  # fmt: skip

# -- decoding (the encodings of tiled.queries.*.encode) -------------------------------------


def _field(fields: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = fields.get(name, default)
    if value is None:
        raise QueryError(f"Missing query parameter {name!r}")
    return value


def _json(fields: Mapping[str, str], name: str) -> JSONValue:
    text = _field(fields, name)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise QueryError(f"Query parameter {name!r} is not valid JSON: {text!r}") from None


def _string_list(fields: Mapping[str, str], name: str, default: str | None = None) -> list[str]:
    value = _json({name: _field(fields, name, default)}, name)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise QueryError(f"Query parameter {name!r} must be a JSON list of strings")
    return value


def _json_list(fields: Mapping[str, str], name: str) -> list[JSONValue]:
    value = _json(fields, name)
    if not isinstance(value, list):
        raise QueryError(f"Query parameter {name!r} must be a JSON list")
    return value


def parse_bool(text: str, name: str) -> bool:
    """Parse a boolean query field the way FastAPI does (``true``/``false``/``1``/``0``...).

    Raises
    ------
    QueryError
        For anything else.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on", "t", "y"):
        return True
    if lowered in ("false", "0", "no", "off", "f", "n"):
        return False
    raise QueryError(f"Query parameter {name!r} must be a boolean, not {text!r}")


_OPERATORS = frozenset({"lt", "le", "gt", "ge"})


def _comparison(fields: Mapping[str, str]) -> Comparison:
    operator = _field(fields, "operator")
    if operator not in _OPERATORS:
        raise QueryError(f"Unknown comparison operator {operator!r}; use lt, le, gt or ge")
    return Comparison(operator, _field(fields, "key"), _json(fields, "value"))


def _regex(fields: Mapping[str, str]) -> Regex:
    pattern = _field(fields, "pattern")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise QueryError(f"Invalid regular expression {pattern!r}: {exc}") from None
    case_sensitive = parse_bool(_field(fields, "case_sensitive", "true"), "case_sensitive")
    return Regex(_field(fields, "key"), pattern, case_sensitive)


def _like(fields: Mapping[str, str]) -> Like:
    pattern = _json(fields, "pattern")
    if not isinstance(pattern, str):
        raise QueryError("Query parameter 'pattern' must be a JSON string")
    return Like(_field(fields, "key"), pattern)


def _structure_family(fields: Mapping[str, str]) -> StructureFamily:
    value = _field(fields, "value")
    if value not in STRUCTURE_FAMILIES:
        raise QueryError(f"Unknown structure family {value!r}")
    return StructureFamily(value)


_DECODERS: dict[str, Callable[[Mapping[str, str]], Query]] = {
    "eq": lambda f: Eq(_field(f, "key"), _json(f, "value")),
    "noteq": lambda f: NotEq(_field(f, "key"), _json(f, "value")),
    "comparison": _comparison,
    "contains": lambda f: Contains(_field(f, "key"), _json(f, "value")),
    "in": lambda f: In(_field(f, "key"), _json_list(f, "value")),
    "notin": lambda f: NotIn(_field(f, "key"), _json_list(f, "value")),
    "keypresent": lambda f: KeyPresent(
        _field(f, "key"), parse_bool(_field(f, "exists", "true"), "exists")
    ),
    "fulltext": lambda f: FullText(_field(f, "text")),
    "regex": _regex,
    "like": _like,
    "specs": lambda f: Specs(_string_list(f, "include"), _string_list(f, "exclude", "[]")),
    "structure_family": _structure_family,
    "keys_filter": lambda f: KeysFilter(_string_list(f, "keys")),
    "access_tags_filter": lambda f: AccessTags(_string_list(f, "tags")),
    "lookup": lambda f: KeyLookup(_field(f, "key")),
}

QUERY_NAMES = frozenset(_DECODERS)
"""The wire names of every query this module implements (About's ``queries``)."""


def decode_query(name: str, fields: Mapping[str, str]) -> Query:
    """Build a query from its wire name and fields.

    Parameters
    ----------
    name : str
        E.g. ``"eq"`` (the ``<name>`` of ``filter[<name>][condition][<field>]``).
    fields : mapping of str to str
        The raw parameter values by field; JSON-encoded fields are decoded here.

    Returns
    -------
    Query

    Raises
    ------
    QueryError
        For an unknown name, a missing field or a malformed value.
    """
    decoder = _DECODERS.get(name)
    if decoder is None:
        raise QueryError(f"Unsupported query {name!r}; supported: {', '.join(sorted(_DECODERS))}")
    return decoder(fields)


def parse_sort(values: Sequence[str]) -> list[tuple[str, int]]:
    """Parse ``sort`` parameters (repeated and/or comma-separated, ``-key`` descending).

    Returns
    -------
    list of (key, direction)
        ``""`` is the default (insertion) order; when present it must be last.

    Raises
    ------
    QueryError
        For a duplicated key or a default order that is not last.
    """
    result: dict[str, int] = {}
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item or item == "_":
                continue
            direction = -1 if item.startswith("-") else 1
            key = item[1:] if item[0] in "+-" else item
            if key in result:
                raise QueryError(f"Duplicate sorting key: {key}")
            result[key] = direction
    if "" in result and list(result)[-1] != "":
        raise QueryError("Default sorting (empty string) must be the last item in the sort list")
    return list(result.items())
