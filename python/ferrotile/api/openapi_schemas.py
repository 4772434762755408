"""The JSON Schemas of the OpenAPI document's ``components``: request and response bodies.

They describe what the handlers accept and answer, loosely where Tiled's own models are loose
(metadata, structures and parameters are free-form objects), so that a response always validates
against its schema. Referenced from the route declarations as ``ref("Name")``.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STRUCTURE_FAMILIES = ["array", "awkward", "container", "sparse", "table"]


def ref(name: str) -> Schema:
    """A reference to ``components/schemas/{name}`` (the name must be in :data:`SCHEMAS`)."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STRING: Schema = {"type": "string"}
OBJECT: Schema = {"type": "object"}
ANY: Schema = {}
NULL: Schema = {"type": "null"}
STRINGS: Schema = {"type": "array", "items": STRING}

_SPEC: Schema = {
    "type": "object",
    "properties": {"name": STRING, "version": nullable(STRING)},
    "required": ["name"],
}
_LINKS: Schema = {
    "type": "object",
    "description": "Absolute URLs: self, and per family full/block/search/partition/buffers",
    "additionalProperties": STRING,
}

_LIVE_NODE: Schema = {
    "type": "object",
    "properties": {
        "key": STRING,
        "path": STRINGS,
        "structure_family": STRING,
        "sequence": nullable({"type": "integer", "description": "The stream's last sequence"}),
        "shape": {"type": "array", "items": {"type": "integer"}},
        "chunks": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "integer"}},
            "description": "Block sizes of the last two axes (arrays of 2 or more dimensions)",
        },
        "dtype": {"type": "string", "description": "NumPy's spelling, e.g. <u2"},
        "columns": ANY,
    },
    "required": ["key", "path", "structure_family", "sequence"],
}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "description": "Every error answer: a status code and this body",
        "properties": {"detail": {"type": "string", "description": "What went wrong"}},
        "required": ["detail"],
    },
    "Spec": _SPEC,
    "Asset": {
        "type": "object",
        "properties": {
            "data_uri": {"type": "string", "description": "file://localhost/absolute/path"},
            "is_directory": {"type": "boolean"},
            "parameter": nullable(STRING),
            "num": nullable({"type": "integer"}),
            "id": nullable({"type": "integer"}),
        },
        "required": ["data_uri"],
    },
    "DataSource": {
        "type": "object",
        "properties": {
            "id": nullable({"type": "integer"}),
            "structure_family": {"type": "string", "enum": STRUCTURE_FAMILIES},
            "structure": nullable(OBJECT),
            "mimetype": nullable(STRING),
            "parameters": OBJECT,
            "properties": OBJECT,
            "assets": {"type": "array", "items": ref("Asset")},
            "management": {
                "type": "string",
                "enum": ["writable", "external", "immutable_aware", "locked"],
            },
        },
    },
    "Resource": {
        "type": "object",
        "description": "One node, as Tiled renders it",
        "properties": {
            "id": STRING,
            "attributes": {
                "type": "object",
                "properties": {
                    "ancestors": STRINGS,
                    "structure_family": nullable({"type": "string", "enum": STRUCTURE_FAMILIES}),
                    "specs": nullable({"type": "array", "items": _SPEC}),
                    "metadata": nullable(OBJECT),
                    "structure": nullable(OBJECT),
                    "access_tags": nullable(STRINGS),
                    "access_blob": nullable(OBJECT),
                    "sorting": nullable({"type": "array", "items": OBJECT}),
                    "data_sources": nullable({"type": "array", "items": ref("DataSource")}),
                },
                "required": ["ancestors", "structure_family", "metadata", "structure"],
            },
            "links": _LINKS,
            "meta": nullable(OBJECT),
        },
        "required": ["id", "attributes", "links"],
    },
    "NodeResponse": {
        "type": "object",
        "properties": {
            "data": ref("Resource"),
            "error": NULL,
            "links": NULL,
            "meta": OBJECT,
        },
        "required": ["data"],
    },
    "Page": {
        "type": "object",
        "description": "One page of results (search, revisions)",
        "properties": {
            "data": {"type": "array", "items": OBJECT},
            "error": NULL,
            "links": {
                "type": "object",
                "properties": {"self": STRING, "first": STRING, "next": nullable(STRING)},
            },
            "meta": {
                "type": "object",
                "properties": {"count": {"type": "integer", "minimum": 0}},
                "required": ["count"],
            },
        },
        "required": ["data", "links", "meta"],
    },
    "About": {
        "type": "object",
        "properties": {
            "api_version": {"type": "integer"},
            "library_version": {
                "type": "string",
                "description": "The Tiled release whose API this server speaks",
            },
            "formats": {"type": "object", "additionalProperties": STRINGS},
            "aliases": {"type": "object", "additionalProperties": OBJECT},
            "queries": STRINGS,
            "authentication": OBJECT,
            "links": OBJECT,
            "meta": OBJECT,
        },
        "required": ["api_version", "library_version", "formats", "queries", "authentication"],
    },
    "CreateNode": {
        "type": "object",
        "description": "A new child: a container, or a node with one writable data source",
        "properties": {
            "id": nullable({"type": "string", "description": "The key (default: a new UUID)"}),
            "structure_family": {"type": "string", "enum": STRUCTURE_FAMILIES},
            "metadata": nullable(OBJECT),
            "specs": nullable({"type": "array", "items": {"anyOf": [_SPEC, STRING]}}),
            "data_sources": nullable({"type": "array", "items": ref("DataSource")}),
            "access_tags": nullable(STRINGS),
            "access_blob": nullable(OBJECT),
        },
        "required": ["structure_family"],
    },
    "NodeCreated": {
        "type": "object",
        "properties": {
            "id": STRING,
            "links": _LINKS,
            "data_sources": {"type": "array", "items": ref("DataSource")},
            "access_tags": STRINGS,
            "access_blob": OBJECT,
        },
        "required": ["id", "links", "data_sources"],
    },
    "PatchMetadata": {
        "type": "object",
        "description": "A JSON Patch (list of operations) or a JSON merge patch per field",
        "properties": {
            "content-type": {
                "type": "string",
                "enum": ["application/json-patch+json", "application/merge-patch+json"],
            },
            "metadata": nullable({"anyOf": [OBJECT, {"type": "array", "items": OBJECT}]}),
            "specs": {"description": "Required; null for no change"},
            "access_tags": ANY,
            "access_blob": ANY,
        },
        "required": ["content-type", "specs"],
    },
    "PutMetadata": {
        "type": "object",
        "description": "Replacement values; null (or absent) keeps the current one",
        "properties": {
            "metadata": nullable(OBJECT),
            "specs": nullable({"type": "array", "items": {"anyOf": [_SPEC, STRING]}}),
            "access_tags": nullable(STRINGS),
            "access_blob": ANY,
        },
    },
    "MetadataEdited": {
        "type": "object",
        "properties": {"id": STRING, "access_tags": STRINGS, "access_blob": OBJECT},
        "required": ["id"],
    },
    "PutDataSource": {
        "type": "object",
        "properties": {"data_source": ref("DataSource")},
        "required": ["data_source"],
    },
    "ArrayStructure": {
        "type": "object",
        "properties": {
            "data_type": OBJECT,
            "chunks": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "dims": nullable(STRINGS),
            "resizable": ANY,
        },
        "required": ["data_type", "chunks", "shape"],
    },
    "GraphQLRequest": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1},
            "variables": nullable(OBJECT),
            "operationName": nullable(STRING),
        },
        "required": ["query"],
    },
    "GraphQLResponse": {
        "type": "object",
        "description": "GraphQL's answer: data, and errors when a field failed",
        "properties": {
            "data": nullable(OBJECT),
            "errors": {"type": "array", "items": OBJECT},
            "extensions": OBJECT,
        },
    },
    "LiveStreams": {
        "type": "object",
        "description": "A node and its newest children, with the server's clock",
        "properties": {
            "time": {"type": "number", "description": "Seconds since the epoch"},
            "utc_offset": {"type": "integer", "description": "Of the server's local time (s)"},
            "node": _LIVE_NODE,
            "children": {"type": "array", "items": _LIVE_NODE},
            "count": {"type": "integer", "description": "Children in all"},
        },
        "required": ["time", "utc_offset", "node", "children", "count"],
    },
}
