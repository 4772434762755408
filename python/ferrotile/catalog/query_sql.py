"""Compiling search queries (:mod:`ferrotile.catalog.queries`) to SQL on the ``nodes`` table.

:func:`compile_filters` turns a list of queries into one SQL condition (they combine with AND)
over ``nodes`` aliased ``n``; :func:`compile_sort` builds the ORDER BY terms.

Metadata is stored as JSON TEXT. SQLite reads it with ``json_extract``/``json_type``/
``json_each``; PostgreSQL casts it to ``jsonb``. Both spellings give the same answers: equality
is typed (``1`` does not match ``"1"`` or ``true``; ``1`` matches ``1.0``), comparisons and
LIKE/regex only see values of the matching JSON type, and a missing key never matches (except
``NotIn([])`` and ``KeyPresent(exists=False)``). SQLite has no ``REGEXP`` or word-matching
function of its own: :func:`register_sqlite_functions` adds them to each connection.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ferrotile.catalog.dialect import Dialect
from ferrotile.catalog.queries import (
    AccessTags,
    Comparison,
    Contains,
    Eq,
    FullText,
    In,
    JSONValue,
    KeyLookup,
    KeyPresent,
    KeysFilter,
    Like,
    NotEq,
    NotIn,
    Query,
    QueryError,
    Regex,
    Specs,
    StructureFamily,
)

# -- SQL ------------------------------------------------------------------------------------

_COMPARISONS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}
# Scalar JSON type names of SQLite's json_type/json_each, for typed equality.
_SQLITE_TYPES = {str: ("text",), float: ("integer", "real"), int: ("integer", "real")}


@dataclass
class Compiled:
    """A SQL fragment (``?`` placeholders, not yet passed through ``Dialect.sql``) and its
    parameters in textual order."""

    sql: str
    params: list[Any] = field(default_factory=list)


def _segments(key: str) -> list[str]:
    # "sample.name" addresses metadata["sample"]["name"], as in Tiled.
    return key.split(".")


def _sqlite_path(key: str) -> str:
    parts = _segments(key)
    if any('"' in part for part in parts):
        raise QueryError(f"Metadata keys containing '\"' cannot be queried: {key!r}")
    return "$" + "".join(f'."{part}"' for part in parts)


def _pg_path(key: str) -> str:
    # A PostgreSQL text[] literal, passed as one parameter, so keys need no SQL quoting.
    items = ('"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"' for part in _segments(key))
    return "{" + ",".join(items) + "}"


class _Sql:
    """The JSON spelling of one dialect. Expressions are (sql, params) pairs."""

    def __init__(self, dialect: Dialect) -> None:
        self.pg = dialect.name == "postgresql"

    # value access ---------------------------------------------------------------------------

    def value(self, key: str) -> Compiled:
        """The value at ``key`` (SQLite: SQL-typed; PostgreSQL: jsonb), NULL when missing."""
        if self.pg:
            return Compiled("(CAST(n.metadata AS jsonb) #> CAST(? AS text[]))", [_pg_path(key)])
        return Compiled("json_extract(n.metadata, ?)", [_sqlite_path(key)])

    def present(self, key: str) -> Compiled:
        if self.pg:
            v = self.value(key)
            return Compiled(f"({v.sql} IS NOT NULL)", v.params)
        return Compiled("(json_type(n.metadata, ?) IS NOT NULL)", [_sqlite_path(key)])

    def equals(self, key: str, value: JSONValue) -> Compiled:
        if self.pg:
            v = self.value(key)
            return Compiled(f"({v.sql} = CAST(? AS jsonb))", [*v.params, _encode(value)])
        path = _sqlite_path(key)
        return _sqlite_equals(
            "json_type(n.metadata, ?)", "json_extract(n.metadata, ?)", path, value
        )

    def element_equals(self, key: str, value: JSONValue) -> Compiled:
        """The value at ``key`` is an array with an element equal to ``value``."""
        if self.pg:
            v = self.value(key)
            return Compiled(
                f"(jsonb_typeof({v.sql}) = 'array' AND EXISTS (SELECT 1 FROM"
                f" jsonb_array_elements({v.sql}) AS e (v) WHERE e.v = CAST(? AS jsonb)))",
                [*v.params, *v.params, _encode(value)],
            )
        path = _sqlite_path(key)
        test = _sqlite_equals("e.type", "e.value", None, value)
        return Compiled(
            "(json_type(n.metadata, ?) = 'array' AND EXISTS (SELECT 1 FROM"
            f" json_each(n.metadata, ?) AS e WHERE {test.sql}))",
            [path, path, *test.params],
        )

    def compare(self, key: str, operator: str, value: JSONValue) -> Compiled:
        op = _COMPARISONS[operator]
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise QueryError("Comparison needs a number or a string value")
        if self.pg:
            v = self.value(key)
            kind = "string" if isinstance(value, str) else "number"
            return Compiled(
                f"(jsonb_typeof({v.sql}) = '{kind}' AND {v.sql} {op} CAST(? AS jsonb))",
                [*v.params, *v.params, _encode(value)],
            )
        path = _sqlite_path(key)
        types = ", ".join(f"'{t}'" for t in _SQLITE_TYPES[type(value)])
        return Compiled(
            f"(json_type(n.metadata, ?) IN ({types}) AND json_extract(n.metadata, ?) {op} ?)",
            [path, path, value],
        )

    def text(self, key: str) -> tuple[Compiled, Compiled]:
        """(the value is a JSON string, its text) for LIKE and regex matching."""
        if self.pg:
            v = self.value(key)
            return (
                Compiled(f"(jsonb_typeof({v.sql}) = 'string')", v.params),
                Compiled(f"({v.sql} #>> '{{}}')", v.params),
            )
        path = _sqlite_path(key)
        return (
            Compiled("(json_type(n.metadata, ?) = 'text')", [path]),
            Compiled("json_extract(n.metadata, ?)", [path]),
        )

    def like(self, key: str, pattern: str) -> Compiled:
        is_text, text = self.text(key)
        # SQLite's LIKE ignores ASCII case; ILIKE gives PostgreSQL the same answers. Backslash
        # escapes on both (PostgreSQL's default, SQLite has none without ESCAPE).
        op = "ILIKE" if self.pg else "LIKE"
        return Compiled(
            f"({is_text.sql} AND {text.sql} {op} ? ESCAPE '\\')",
            [*is_text.params, *text.params, pattern],
        )

    def regex(self, key: str, pattern: str, case_sensitive: bool) -> Compiled:
        is_text, text = self.text(key)
        if self.pg:
            op = "~" if case_sensitive else "~*"
        else:
            op = "REGEXP"  # calls the regexp(pattern, value) registered on the connection
            pattern = pattern if case_sensitive else f"(?i){pattern}"
        return Compiled(
            f"({is_text.sql} AND {text.sql} {op} ?)", [*is_text.params, *text.params, pattern]
        )

    def full_text(self, text: str) -> Compiled:
        words = _words(text)
        if not words:
            return Compiled("(1 = 0)")
        if self.pg:
            # String values only (not keys); 'simple' lowercases and does no stemming.
            return Compiled(
                "(jsonb_to_tsvector('simple', CAST(n.metadata AS jsonb), '[\"string\"]')"
                " @@ plainto_tsquery('simple', ?))",
                [" ".join(words)],
            )
        return Compiled("(ferrotile_fulltext(n.metadata, ?) = 1)", [_encode(words)])

    def spec_named(self, name: str) -> Compiled:
        if self.pg:
            return Compiled(
                "EXISTS (SELECT 1 FROM jsonb_array_elements(CAST(n.specs AS jsonb)) AS s (v)"
                " WHERE s.v ->> 'name' = ?)",
                [name],
            )
        return Compiled(
            "EXISTS (SELECT 1 FROM json_each(n.specs) AS s"
            " WHERE json_extract(s.value, '$.name') = ?)",
            [name],
        )

    def has_tag(self, tags: Sequence[str]) -> Compiled:
        marks = ", ".join("?" * len(tags))
        if self.pg:
            return Compiled(
                "EXISTS (SELECT 1 FROM jsonb_array_elements_text(CAST(n.access_tags AS jsonb))"
                f" AS t (v) WHERE t.v IN ({marks}))",
                list(tags),
            )
        return Compiled(
            f"EXISTS (SELECT 1 FROM json_each(n.access_tags) AS t WHERE t.value IN ({marks}))",
            list(tags),
        )

    # sorting --------------------------------------------------------------------------------

    def sort_terms(self, key: str) -> list[Compiled]:
        """Expressions ordering by a metadata value: JSON type first (numbers, strings,
        booleans, arrays, objects, null), then the value; NULL (missing) for absent keys."""
        if self.pg:
            v = self.value(key)
            return [
                Compiled(
                    f"CASE jsonb_typeof({v.sql}) WHEN 'number' THEN 1 WHEN 'string' THEN 2"
                    " WHEN 'boolean' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 5"
                    " WHEN 'null' THEN 6 END",
                    v.params,
                ),
                Compiled(
                    f"CASE WHEN jsonb_typeof({v.sql}) = 'number'"
                    f" THEN CAST({v.sql} #>> '{{}}' AS numeric) END",
                    [*v.params, *v.params],
                ),
                # COLLATE "C": byte order, as SQLite compares text.
                Compiled(f"(({v.sql} #>> '{{}}') COLLATE \"C\")", v.params),
            ]
        path = _sqlite_path(key)
        return [
            Compiled(
                "CASE json_type(n.metadata, ?) WHEN 'integer' THEN 1 WHEN 'real' THEN 1"
                " WHEN 'text' THEN 2 WHEN 'false' THEN 3 WHEN 'true' THEN 3"
                " WHEN 'array' THEN 4 WHEN 'object' THEN 5 WHEN 'null' THEN 6 END",
                [path],
            ),
            Compiled("json_extract(n.metadata, ?)", [path]),
        ]


def _encode(value: JSONValue) -> str:
    return orjson.dumps(value).decode()


def _words(text: str) -> list[str]:
    # Runs of letters and digits: "_" and punctuation separate words, as in PostgreSQL's
    # text-search parser and SQLite FTS5's unicode61 tokenizer.
    return re.findall(r"[^\W_]+", text.lower())


def _sqlite_equals(type_sql: str, value_sql: str, path: str | None, value: JSONValue) -> Compiled:
    # `path` fills the `?` in type_sql/value_sql (None when they take no parameter).
    p = [] if path is None else [path]
    if value is None:
        return Compiled(f"({type_sql} = 'null')", p)
    if isinstance(value, bool):
        return Compiled(f"({type_sql} = '{'true' if value else 'false'}')", p)
    if isinstance(value, int | float | str):
        types = ", ".join(f"'{t}'" for t in _SQLITE_TYPES[type(value)])
        return Compiled(f"({type_sql} IN ({types}) AND {value_sql} = ?)", [*p, *p, value])
    kind = "object" if isinstance(value, dict) else "array"
    # Both sides minified by SQLite; object key order must match (PostgreSQL ignores it).
    return Compiled(f"({type_sql} = '{kind}' AND {value_sql} = json(?))", [*p, *p, _encode(value)])


def _all(parts: Sequence[Compiled], joiner: str = " AND ") -> Compiled:
    return Compiled(
        "(" + joiner.join(p.sql for p in parts) + ")", [x for p in parts for x in p.params]
    )


def _negate(part: Compiled) -> Compiled:
    return Compiled(f"(NOT {part.sql})", part.params)


def compile_query(query: Query, dialect: Dialect) -> Compiled:
    """Compile one query to a SQL condition on ``nodes n``.

    Parameters
    ----------
    query : Query
    dialect : Dialect

    Returns
    -------
    Compiled

    Raises
    ------
    QueryError
        For values the query cannot take (e.g. comparing with a list).
    """
    s = _Sql(dialect)
    match query:
        case Eq(key, value):
            return s.equals(key, value)
        case NotEq(key, value):
            return _all([s.present(key), _negate(s.equals(key, value))])
        case Comparison(operator, key, value):
            return s.compare(key, operator, value)
        case Contains(key, value):
            return s.element_equals(key, value)
        case In(key, values):
            if not values:
                return Compiled("(1 = 0)")
            return _all([s.equals(key, v) for v in values], " OR ")
        case NotIn(key, values):
            if not values:
                return Compiled("(1 = 1)")
            return _all([s.present(key), _negate(_all([s.equals(key, v) for v in values], " OR "))])
        case KeyPresent(key, exists):
            present = s.present(key)
            return present if exists else _negate(present)
        case FullText(text):
            return s.full_text(text)
        case Regex(key, pattern, case_sensitive):
            return s.regex(key, pattern, case_sensitive)
        case Like(key, pattern):
            return s.like(key, pattern)
        case Specs(include, exclude):
            parts = [s.spec_named(name) for name in include]
            parts += [_negate(s.spec_named(name)) for name in exclude]
            return _all(parts) if parts else Compiled("(1 = 1)")
        case StructureFamily(value):
            return Compiled("(n.structure_family = ?)", [value])
        case KeysFilter(keys):
            if not keys:
                return Compiled("(1 = 0)")
            return Compiled(f"(n.key IN ({', '.join('?' * len(keys))}))", list(keys))
        case AccessTags(tags):
            return s.has_tag(tags) if tags else Compiled("(1 = 0)")
        case KeyLookup(key):
            return Compiled("(n.key = ?)", [key])
    raise QueryError(f"Unsupported query {query!r}")


def compile_filters(queries: Sequence[Query], dialect: Dialect) -> Compiled:
    """AND of every query's condition (``(1 = 1)`` for none)."""
    if not queries:
        return Compiled("(1 = 1)")
    return _all([compile_query(q, dialect) for q in queries])


def compile_sort(sorting: Sequence[tuple[str, int]], dialect: Dialect) -> Compiled:
    """ORDER BY terms (without the keywords) for a parsed ``sort``; ties by insertion order.

    ``id`` sorts by node key; any other key is a (dotted) metadata key, optionally prefixed
    ``metadata.``. Nodes without the key come last ascending and first descending, as in Tiled
    (a missing value sorts as the largest).
    """
    s = _Sql(dialect)
    terms: list[Compiled] = []
    default = 1
    for key, direction in sorting:
        order = "ASC NULLS LAST" if direction > 0 else "DESC NULLS FIRST"
        if key == "":
            default = direction
            continue
        if key == "id":
            # Byte order on both databases (PostgreSQL would use the database's collation).
            column = 'n.key COLLATE "C"' if dialect.name == "postgresql" else "n.key"
            terms.append(Compiled(f"{column} {'ASC' if direction > 0 else 'DESC'}"))
            continue
        key = key.removeprefix("metadata.")
        terms.extend(Compiled(f"{t.sql} {order}", t.params) for t in s.sort_terms(key))
    terms.append(Compiled(f"n.id {'ASC' if default > 0 else 'DESC'}"))
    return Compiled(", ".join(t.sql for t in terms), [x for t in terms for x in t.params])


# -- SQLite functions -----------------------------------------------------------------------


def _regexp(pattern: str | None, value: Any) -> bool:
    if pattern is None or not isinstance(value, str):
        return False
    return _compiled_pattern(pattern).search(value) is not None


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled_pattern(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        if len(_PATTERNS) > 256:
            _PATTERNS.clear()
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled


def _string_values(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _string_values(item)]
    if isinstance(value, list):
        return [s for item in value for s in _string_values(item)]
    return []


def _fulltext(metadata: str | None, words_json: str) -> bool:
    # Every query word must be a whole word of some string value (keys are not searched),
    # case-insensitively: what plainto_tsquery('simple', ...) does on PostgreSQL.
    if metadata is None:
        return False
    found = {w for s in _string_values(orjson.loads(metadata)) for w in _words(s)}
    return all(word in found for word in orjson.loads(words_json))


def register_sqlite_functions(connection: sqlite3.Connection) -> None:
    """Add ``regexp`` (for ``REGEXP``) and ``ferrotile_fulltext`` to a SQLite connection.

    Parameters
    ----------
    connection : sqlite3.Connection
        Every connection the catalog queries through (functions are per connection).
    """
    connection.create_function("regexp", 2, _regexp, deterministic=True)
    connection.create_function("ferrotile_fulltext", 2, _fulltext, deterministic=True)
