"""Every route of the server, declared once: what ``/openapi.json`` and ``/docs`` describe.

One :class:`Endpoint` per method and path (and one per WebSocket route), independent of who
serves it: ``served_by="edge"`` marks the data-plane routes that the Rust front end serves (or
will serve) instead of a Starlette handler. ``tests/api/test_openapi.py`` checks that this table
and the Starlette route table (plus the edge entries) name the same routes, so a route added
without a declaration fails the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ferrotile.api.formats import (
    ARRAY_SERIALIZERS,
    ARROW,
    AWKWARD_MEDIA_TYPES,
    OCTET,
    SPARSE_SERIALIZERS,
    TABLE_SERIALIZERS,
)
from ferrotile.api.items import FIELDS
from ferrotile.api.openapi_schemas import ANY, OBJECT, STRING, STRINGS, Schema, nullable, ref

JSON = "application/json"
HTML = "text/html"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
WEBSOCKET = "WEBSOCKET"


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    schema: Schema
    description: str
    required: bool = False
    #: May be given several times (``?column=a&column=b``).
    repeated: bool = False


@dataclass(frozen=True)
class Body:
    media_types: tuple[str, ...]
    schema: Schema
    description: str
    required: bool = True


@dataclass(frozen=True)
class Reply:
    description: str
    media_types: tuple[str, ...] = (JSON,)
    schema: Schema = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    status: int = 200


@dataclass(frozen=True)
class Endpoint:
    method: str  # GET, POST, ... or WEBSOCKET
    path: str  # the OpenAPI template: /api/v1/metadata/{path}
    tag: str
    summary: str
    description: str = ""
    params: tuple[Param, ...] = ()
    body: Body | None = None
    reply: Reply = Reply("Done", schema={"type": "null"})
    #: Error statuses besides the ones every route of its access level can answer.
    errors: tuple[int, ...] = ()
    access: Literal["none", "read", "write"] = "read"
    served_by: Literal["starlette", "edge"] = "starlette"
    #: Further paths served the same way (``/data/{sid}/`` beside ``/data/{sid}``).
    aliases: tuple[str, ...] = ()
    #: Answers 304 to a matching ``If-None-Match`` (it sends an ``ETag``).
    etag: bool = False
    #: The bodies of its error answers, by media type.
    error_content: dict[str, Schema] = field(default_factory=lambda: {JSON: ref("Error")})


def query(name: str, schema: Schema, description: str, **kw: Any) -> Param:
    return Param(name, "query", schema, description, **kw)


BOOL: Schema = {"type": "boolean"}
INT0: Schema = {"type": "integer", "minimum": 0}
INTS: Schema = {"type": "string", "pattern": r"^\d+(,\d+)*$", "examples": ["0,0"]}
PATH = Param("path", "path", STRING, "The node's path, keys separated by '/'", required=True)
#: A node key: no '/', no control character (the catalog's rule).
KEY_TEXT: Schema = {"type": "string", "pattern": "^[^/\\u0000-\\u001f\\u007f]+$"}
SID = Param("sid", "path", KEY_TEXT, "Stream id; 'a+b' names several streams", required=True)
FORMAT = query("format", STRING, "Media type or alias (e.g. json, csv); overrides Accept")
PERSIST = query("persist", BOOL, "Store the write (false: only stream it). Default true")
SLICE = query("slice", STRING, "NumPy-style slice, e.g. '0:10,::2' or '-1'")
EXPECTED_SHAPE = query(
    "expected_shape", STRING, "The shape the slice must have ('2,3' or 'scalar'), else 422"
)
BLOCK = query("block", INTS, "Block index along each dimension, e.g. '0,0'", required=True)
PARTITION = query("partition", INT0, "Partition index", required=True)
COLUMNS = query("column", STRING, "A column to read (default: all)", repeated=True)
FIELD_NAMES = query(
    "fields",
    {"type": "string", "enum": sorted(FIELDS)},
    "Attributes to fill (others are null); '' for keys only",
    repeated=True,
)
DATA_SOURCES = query("include_data_sources", BOOL, "Include data sources and assets")
PAGE = (
    query("page[offset]", INT0, "Index of the first item (default 0)"),
    query("page[cursor]", INT0, "As page[offset] (what next links carry)"),
    query("page[limit]", INT0, "Page size (default 100; at most 300 are returned)"),
)
DEVICE = query("device_id", KEY_TEXT, "The device: streams are '{device}:{prefix}{sid}'")
PREFIX = query("prefix", {**KEY_TEXT, "pattern": "^[^/\\u0000-\\u001f\\u007f]*$"}, "Prefix")
KEEP_DEVICE = query(
    "keep_device_id_in_stream_id", BOOL, "Name streams '{device}:{prefix}{sid}' in headers"
)
_CURSOR = r"(\$|-|0|\d{1,16}(-\d{1,16})?)"
LAST_ID = query(
    "last_entry_id",
    {"type": "string", "pattern": f"^{_CURSOR}(\\+{_CURSOR})*$"},
    "Where to start: '$' (new entries, default), '0'/'-' (oldest kept), '<ms>-<n>' or '<ms>' "
    "(after it); 'c1+c2' gives one per stream",
)
COUNT = query("count", {"type": "integer", "minimum": 1}, "Entries per stream per read (1)")
LATEST = query("latest", BOOL, "Only the newest entries (skipping older ones)")
MAX_QUEUE = query(
    "max_queue_bytes", {"type": "integer", "minimum": 1}, "How far (bytes) a reader may fall behind"
)

OCTET_BODY = Body((OCTET,), {"type": "string", "format": "binary"}, "Raw C-order array bytes")
ARROW_BODY = Body((ARROW,), {"type": "string", "format": "binary"}, "An Arrow IPC file")
COLUMNS_BODY = Body(
    (JSON,), nullable(STRINGS), "Column names (a list too long for a URL)", required=False
)
ARRAY_FORMATS = tuple(dict.fromkeys([*ARRAY_SERIALIZERS, *SPARSE_SERIALIZERS]))
ARRAY_DATA = Reply("The data (sparse arrays: as a COO table)", ARRAY_FORMATS, schema=ANY)
TABLE_DATA = Reply("The table", tuple(TABLE_SERIALIZERS), schema=ANY)
ZIP_DATA = Reply("The buffers zipped, one member per buffer key", AWKWARD_MEDIA_TYPES, schema=ANY)
HTML_PAGE = Reply("An HTML page", (HTML,), schema=STRING)
NODE = "Tiled: nodes"
DATA = "Tiled: data"
STREAMS = "Tiled: streams"
STREAMER = "Redis Streamer"
SERVER = "Server"


def _array_routes() -> list[Endpoint]:
    array = "/api/v1/array"
    return [
        Endpoint(
            "GET",
            f"{array}/full/{{path}}",
            DATA,
            "Read an array (or a slice of it)",
            params=(PATH, SLICE, EXPECTED_SHAPE, FORMAT),
            reply=ARRAY_DATA,
            errors=(400, 404, 406, 422),
        ),
        Endpoint(
            "PUT",
            f"{array}/full/{{path}}",
            DATA,
            "Write a whole array",
            "The body is validated before it is stored and then streamed to subscribers. "
            "Sparse arrays take an Arrow IPC file of COO coordinates and data.",
            params=(PATH, PERSIST),
            body=Body((OCTET, ARROW), {"type": "string", "format": "binary"}, "Raw array bytes"),
            errors=(400, 404, 405, 415, 422),
            access="write",
            served_by="edge",
        ),
        Endpoint(
            "PATCH",
            f"{array}/full/{{path}}",
            DATA,
            "Write part of an array, or extend it",
            "Writes data of `shape` at `offset`; with extend=true the array grows to fit.",
            params=(
                PATH,
                query("offset", INTS, "Where the data goes", required=True),
                query("shape", INTS, "The shape of the data sent", required=True),
                query("extend", BOOL, "Grow the array to fit (default false)"),
                PERSIST,
            ),
            body=OCTET_BODY,
            reply=Reply("The array's structure now", schema=ref("ArrayStructure")),
            errors=(400, 404, 405, 409, 415, 422),
            access="write",
            served_by="edge",
        ),
        Endpoint(
            "GET",
            f"{array}/block/{{path}}",
            DATA,
            "Read one block (chunk) of an array",
            params=(PATH, BLOCK, SLICE, EXPECTED_SHAPE, FORMAT),
            reply=ARRAY_DATA,
            errors=(400, 404, 406, 422),
        ),
        Endpoint(
            "PUT",
            f"{array}/block/{{path}}",
            DATA,
            "Write one block (chunk) of an array",
            params=(PATH, BLOCK, PERSIST),
            body=Body((OCTET, ARROW), {"type": "string", "format": "binary"}, "Raw block bytes"),
            errors=(400, 404, 405, 415, 422),
            access="write",
            served_by="edge",
        ),
    ]


def _table_routes() -> list[Endpoint]:
    full, part = "/api/v1/table/full/{path}", "/api/v1/table/partition/{path}"
    legacy = "/api/v1/node/full/{path}"
    read = "Read a table (?column= selects columns)"
    write = "Replace a one-partition uploaded table"
    errors = (400, 404, 406, 422)
    werrors = (400, 404, 405, 415, 422)
    return [
        Endpoint("GET", full, DATA, read, params=(PATH, COLUMNS, FORMAT), reply=TABLE_DATA,
                 errors=errors),
        Endpoint("POST", full, DATA, "Read a table, columns listed in the body",
                 params=(PATH, FORMAT), body=COLUMNS_BODY, reply=TABLE_DATA, errors=errors),
        Endpoint("PUT", full, DATA, write, params=(PATH,), body=ARROW_BODY, errors=werrors,
                 access="write"),
        Endpoint("GET", legacy, DATA, f"{read} (legacy alias of table/full)",
                 params=(PATH, COLUMNS, FORMAT), reply=TABLE_DATA, errors=errors),
        Endpoint("PUT", legacy, DATA, f"{write} (legacy alias of table/full)", params=(PATH,),
                 body=ARROW_BODY, errors=werrors, access="write"),
        Endpoint("GET", part, DATA, "Read one partition of a table",
                 params=(PATH, PARTITION, COLUMNS, FORMAT), reply=TABLE_DATA, errors=errors),
        Endpoint("POST", part, DATA, "Read one partition, columns listed in the body",
                 params=(PATH, PARTITION, FORMAT), body=COLUMNS_BODY, reply=TABLE_DATA,
                 errors=errors),
        Endpoint("PUT", part, DATA, "Replace one partition of an uploaded table",
                 params=(PATH, PARTITION), body=ARROW_BODY, errors=werrors, access="write"),
        Endpoint("PATCH", part, DATA, "Append rows to a partition of an appendable table",
                 params=(PATH, PARTITION), body=ARROW_BODY, errors=werrors, access="write"),
    ]  # fmt: skip


def _awkward_routes() -> list[Endpoint]:
    full, buffers = "/api/v1/awkward/full/{path}", "/api/v1/awkward/buffers/{path}"
    return [
        Endpoint("GET", full, DATA, "Read an awkward array (every buffer)",
                 params=(PATH, FORMAT), reply=ZIP_DATA, errors=(400, 404, 406)),
        Endpoint("PUT", full, DATA, "Write an awkward array's buffers", params=(PATH,),
                 body=Body(AWKWARD_MEDIA_TYPES, {"type": "string", "format": "binary"},
                           "A zip with one member per buffer key ('{form_key}-{role}')"),
                 errors=(400, 404, 415, 422), access="write"),
        Endpoint("GET", buffers, DATA, "Read the buffers of some form keys",
                 params=(PATH, query("form_key", STRING, "A form key (default: all)",
                                     repeated=True), FORMAT),
                 reply=ZIP_DATA, errors=(400, 404, 406)),
        Endpoint("POST", buffers, DATA, "Read the buffers of the form keys in the body",
                 params=(PATH, FORMAT), body=Body((JSON,), STRINGS, "Form keys"),
                 reply=ZIP_DATA, errors=(400, 404, 406, 422)),
    ]  # fmt: skip


def _node_routes() -> list[Endpoint]:
    meta = "/api/v1/metadata/{path}"
    drop = query("drop_revision", BOOL, "Do not keep the previous version as a revision")
    edited = Reply("The edited node's key (and its access tags)", schema=ref("MetadataEdited"))
    created = Reply("The new node", schema=ref("NodeCreated"))
    export = "/api/v1/container/full/{path}"
    exported = Reply(
        "Tiled's JSON export: {contents: {key: ...}, metadata: {...}} per node", (JSON,), ANY
    )
    export_params = (
        PATH,
        query("field", STRING, "Keep only this child (repeatable)", repeated=True),
        query("filename", STRING, "Answer as an attachment with this name"),
        FORMAT,
    )
    return [
        Endpoint("GET", export, NODE, "Export a container's tree (keys and metadata)",
                 params=export_params, reply=exported, errors=(404, 406)),
        Endpoint("POST", export, NODE, "Export a container's tree; the fields in the body",
                 params=export_params,
                 body=Body((JSON,), {"type": "array", "items": STRING}, "Children to keep"),
                 reply=exported, errors=(404, 406, 422)),
        Endpoint("GET", meta, NODE, "Describe a node",
                 params=(PATH, FIELD_NAMES, DATA_SOURCES),
                 reply=Reply("The node", schema=ref("NodeResponse")), errors=(404, 422),
                 etag=True),
        Endpoint("POST", meta, NODE, "Create a child node",
                 "A container, or a node with one writable data source (its storage is "
                 "created here). Announced on the parent's stream.",
                 params=(PATH,), body=Body((JSON,), ref("CreateNode"), "The new node"),
                 reply=created, errors=(400, 404, 405, 409, 415, 422), access="write"),
        Endpoint("DELETE", meta, NODE, "Delete a node (and its data)",
                 params=(PATH, query("recursive", BOOL, "Delete a container's contents too"),
                         query("external_only", BOOL,
                               "Refuse (409) when writable data would be deleted (default "
                               "true)")),
                 errors=(404, 405, 409, 422), access="write"),
        Endpoint("PATCH", meta, NODE, "Edit metadata, specs or access tags with a patch",
                 params=(PATH, drop), body=Body((JSON,), ref("PatchMetadata"), "The patch"),
                 reply=edited, errors=(404, 406, 409, 422), access="write"),
        Endpoint("PUT", meta, NODE, "Replace metadata, specs or access tags",
                 params=(PATH, drop), body=Body((JSON,), ref("PutMetadata"), "New values"),
                 reply=edited, errors=(404, 422), access="write"),
        Endpoint("POST", "/api/v1/register/{path}", NODE,
                 "Register files that stay in place (external data sources)",
                 "The data sources' assets must be under a directory served with -r.",
                 params=(PATH,), body=Body((JSON,), ref("CreateNode"), "The new node"),
                 reply=created, errors=(403, 404, 405, 409, 415, 422), access="write"),
        Endpoint("PUT", "/api/v1/data_source/{path}", NODE,
                 "Replace a registered node's data source (files changed or grew)",
                 params=(PATH, query("patch_shape", INTS, "Shape of the part that changed"),
                         query("patch_offset", INTS, "Offset of the part that changed")),
                 body=Body((JSON,), ref("PutDataSource"), "The new data source"),
                 errors=(400, 403, 404, 405, 415, 422), access="write"),
        Endpoint("GET", "/api/v1/revisions/{path}", NODE, "A node's earlier metadata versions",
                 params=(PATH, *PAGE), reply=Reply("One page of revisions", schema=ref("Page")),
                 errors=(400, 404, 422)),
        Endpoint("DELETE", "/api/v1/revisions/{path}", NODE, "Delete one revision",
                 params=(PATH, query("number", {"type": "integer"}, "The revision",
                                     required=True)),
                 errors=(404, 422), access="write"),
        Endpoint("GET", "/api/v1/search/{path}", NODE, "List, filter and sort a container",
                 "Filters are Tiled queries: filter[<query>][condition][<field>]=<value> "
                 "(About lists the query names); sort=key,-key2.",
                 params=(PATH, *PAGE, FIELD_NAMES, DATA_SOURCES,
                         query("sort", STRING, "Comma-separated keys, '-' for descending",
                               repeated=True),
                         Param("filter", "query", {"type": "object"},
                               "filter[<query>][condition][<field>]=<value>")),
                 reply=Reply("One page of children", schema=ref("Page")),
                 errors=(400, 404, 422), etag=True),
    ]  # fmt: skip


ENVELOPE_FORMAT = query(
    "envelope_format", {"type": "string", "enum": ["json", "msgpack"]}, "Default json"
)
STREAM_PARAMS = (
    PATH,
    ENVELOPE_FORMAT,
    query("start", INT0, "Replay from this sequence number (0: the oldest retained)"),
    query("notify_gaps", BOOL, "Tell the subscriber about messages it missed"),
    MAX_QUEUE,
    query("on_overflow", {"type": "string", "enum": ["close", "latest"]}, "Slow subscriber"),
)
PULL_PARAMS = (
    SID, LAST_ID, COUNT,
    query("block", INT0, "Idle wait in ms (5000; 0: forever)"), LATEST,
    query("max_fps", {"type": "number", "minimum": 0}, "Most reads per second (0: no limit)"),
    query("ack", BOOL, "Wait for a text frame after each send"),
    query("header", BOOL, "Send a JSON header before each binary frame (default true)"),
    DEVICE, PREFIX, KEEP_DEVICE, MAX_QUEUE,
)  # fmt: skip


PUSH_MODE = {"type": "string", "enum": ["append", "full"]}


def _stream_routes() -> list[Endpoint]:
    data = "/data/{sid}"
    return [
        Endpoint("DELETE", "/api/v1/stream/close/{path}", STREAMS, "End a node's stream",
                 "Subscribers are closed (1000) once they caught up.", params=(PATH,),
                 errors=(404,), access="write"),
        Endpoint(WEBSOCKET, "/api/v1/stream/single/{path}", STREAMS, "Subscribe to a node",
                 "A schema message, then one message per write (JSON or msgpack envelopes), "
                 "replayed from `start` when given.",
                 params=STREAM_PARAMS, errors=(400, 404), served_by="edge"),
        Endpoint(WEBSOCKET, "/api/v1/stream/multi", STREAMS, "Subscribe to many nodes",
                 "First message {\"type\": \"auth\", \"api_key\": ...} -> connection_ack "
                 "(or close 1008); then subscribe {id, path, start, notify_gaps, "
                 "max_queue_bytes, on_overflow} / unsubscribe {id} / ping; the server sends "
                 "data {id, message} (message: what the single route sends), complete {id, "
                 "code, reason}, error {id, status, detail}, pong. See docs/api.md.",
                 params=(ENVELOPE_FORMAT,), errors=(400, 401, 404), served_by="edge"),
        Endpoint(WEBSOCKET, "/api/v1/stream/push/{path}", STREAMS, "Push frames of an array",
                 "One binary message per frame (mode=append, the default) or per whole array "
                 "(mode=full); a JSON text message {\"block\": [...]} or {\"offset\": [...], "
                 "\"shape\": [...]} targets the next one. Each is acknowledged with "
                 "{\"frames\": k, \"sequence\": n}; a bad one is answered with {\"error\", "
                 "\"status\", \"frame\"} and the socket closes.",
                 params=(PATH, PERSIST, query("mode", PUSH_MODE, "append (default) or full")),
                 errors=(400, 401, 404, 405, 422), access="write", served_by="edge"),
        Endpoint("GET", data, STREAMER, "Read entries once",
                 "The body is the entries concatenated; x-offsets is "
                 "[[sid, entry_id, end_offset], ...], x-last-entry-id the next cursor.",
                 params=(SID, LAST_ID, COUNT, query("block", INT0, "Wait in ms (500, at most "
                                                    "60000; 0: the most)"),
                         LATEST, DEVICE, PREFIX, KEEP_DEVICE),
                 reply=Reply("The entries", (OCTET,), {"type": "string", "format": "binary"},
                             headers=(("x-offsets", "JSON [[sid, entry_id, end_offset], ...]"),
                                      ("x-last-entry-id", "The cursor for the next read"))),
                 errors=(400, 404), aliases=(f"{data}/",)),
        Endpoint("POST", data, STREAMER, "Add entries",
                 "Each multipart part named 'entries' is one entry; with sid '*' each part's "
                 "filename names its stream.",
                 params=(SID, DEVICE, PREFIX),
                 body=Body(("multipart/form-data",), {
                     "type": "object",
                     "properties": {"entries": {
                         "type": "array", "minItems": 1,
                         "items": {"type": "string", "format": "binary"}}},
                     "required": ["entries"],
                     "additionalProperties": False,
                 }, "The entries"),
                 reply=Reply("The new entry ids", schema=STRINGS),
                 errors=(400, 404, 413, 422), access="write", aliases=(f"{data}/",)),
        Endpoint(WEBSOCKET, f"{data}/push", STREAMER, "Push entries",
                 "With header=true a JSON header (offsets) then a binary frame per batch; "
                 "header=false: each binary frame is one entry.",
                 params=(SID, query("header", BOOL, "Batches with a JSON header (true)"),
                         query("ack", BOOL, "Answer each batch with the new ids"),
                         DEVICE, PREFIX),
                 errors=(400, 404), access="write", served_by="edge"),
        Endpoint(WEBSOCKET, f"{data}/pull", STREAMER, "Pull entries as they come",
                 params=PULL_PARAMS, errors=(400, 404), served_by="edge"),
    ]  # fmt: skip


GRAPHQL_HELP = "Redis Streamer's GraphQL schema (streams, devices); GraphiQL for browsers."


def _server_routes() -> list[Endpoint]:
    gql_errors = (400,)
    # A refused mutation (public mode) is a 401 with GraphQL's body, other refusals {"detail"};
    # strawberry answers a request it cannot parse with text.
    gql_error = {JSON: {"anyOf": [ref("Error"), ref("GraphQLResponse")]}, "text/plain": STRING}
    answer = Reply("GraphQL's answer (a browser GET: GraphiQL)", (JSON, HTML), ANY)
    return [
        Endpoint("GET", "/", SERVER, "Landing page (links to the API and its docs)",
                 reply=HTML_PAGE, access="none"),
        Endpoint("GET", "/openapi.json", SERVER, "This document (OpenAPI 3.1)",
                 reply=Reply("The OpenAPI document", schema=OBJECT), access="none"),
        Endpoint("GET", "/docs", SERVER, "This document as a web page", reply=HTML_PAGE,
                 access="none"),
        Endpoint("GET", "/healthz", SERVER, "Liveness",
                 reply=Reply("Ready", schema={"type": "object",
                                              "properties": {"status": STRING}}),
                 access="none"),
        Endpoint("GET", "/api/v1/", SERVER, "About: API version, formats, queries, auth",
                 reply=Reply("About", schema=ref("About")), access="none", etag=True),
        Endpoint("GET", "/api/v1/metrics", SERVER, "Prometheus metrics",
                 reply=Reply("Prometheus text exposition", (PROMETHEUS,), STRING)),
        Endpoint("GET", "/graphql", STREAMER, "GraphQL query (or GraphiQL)", GRAPHQL_HELP,
                 params=(query("query", STRING, "The GraphQL document"),
                         query("variables", STRING, "JSON object of variables"),
                         query("operationName", STRING, "The operation to run")),
                 reply=answer, errors=gql_errors, aliases=("/graphql/",),
                 error_content=gql_error),
        Endpoint("POST", "/graphql", STREAMER, "GraphQL query or mutation", GRAPHQL_HELP,
                 body=Body((JSON,), ref("GraphQLRequest"), "The request"),
                 reply=Reply("GraphQL's answer", schema=ref("GraphQLResponse")),
                 errors=gql_errors, aliases=("/graphql/",), error_content=gql_error),
        Endpoint(WEBSOCKET, "/graphql", STREAMER, "GraphQL subscriptions",
                 "Subprotocols graphql-transport-ws and graphql-ws."),
    ]  # fmt: skip


def _live_routes() -> list[Endpoint]:
    live = "Live view"
    page = "The live view's page (the script reads the node; no key needed to load it)"
    asset = Param("name", "path", STRING, "A file of the page (live.js, ...)", required=True)
    return [
        Endpoint("GET", "/live/", live, "A container's streaming nodes and their rates", page,
                 reply=HTML_PAGE, access="none"),
        Endpoint("GET", "/live/{path}", live, "One node as it streams (or a container's list)",
                 page, params=(PATH,), reply=HTML_PAGE, access="none"),
        Endpoint("GET", "/live/static/{name}", live, "The page's scripts and style",
                 params=(asset,), reply=Reply("The file", ("text/javascript", "text/css"),
                                              STRING), access="none"),
        Endpoint("GET", "/live/api/streams", live,
                 "A node and its newest 100 children with their current sequence numbers",
                 "What the listing polls: rates are sequence differences between two answers; "
                 "`time` and `utc_offset` give the server's clock (message timestamps are "
                 "naive local time).",
                 params=(query("path", STRING, "The node (default: the root)"),),
                 reply=Reply("The node and its children", schema=ref("LiveStreams")),
                 errors=(404, 422)),
    ]  # fmt: skip


ENDPOINTS: tuple[Endpoint, ...] = (
    *_server_routes(),
    *_live_routes(),
    *_node_routes(),
    *_array_routes(),
    *_table_routes(),
    *_awkward_routes(),
    *_stream_routes(),
)
