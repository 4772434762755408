"""``/api/v1/table/full|partition/{path}`` (and the legacy ``/node/full``): table data.

Two kinds of writable tables (spec §4):

* uploaded tables (``application/x-parquet``, the default): ``PUT`` replaces the whole table or
  one partition; stored as one Parquet file per partition under the writable directory;
* appendable tables (``application/x-tiled-sql-table``): ``PATCH /table/partition`` appends
  rows; stored in the SQL table storage (SQLite or PostgreSQL) and read back in append order.

Every write is decoded and checked against the declared schema before anything is stored, and
is stored atomically (file rename, SQL transaction): a refused write changes nothing.
Accepted writes are streamed, after they are stored, as ``table-data`` whose payload is the
request body (spec §5); JSON subscribers get ``{column: [values]}``, transcoded once here.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pyarrow as pa
from starlette.requests import Request
from starlette.responses import Response

from ferrotile.api import register as registered
from ferrotile.api.auth import Access
from ferrotile.api.common import json_response, publish, query_int, require
from ferrotile.api.creation import FamilyWriter, ParsedSource, register
from ferrotile.api.errors import ApiError
from ferrotile.api.formats import TABLE_SERIALIZERS, negotiate, table_response
from ferrotile.catalog.models import Asset, DataSource, Node
from ferrotile.state import AppState, path_from_file_uri
from ferrotile.storage.tables.arrow_io import (
    ARROW_FILE,
    InvalidTable,
    SchemaMismatch,
    TableStructure,
    conform,
    read_ipc_file,
)
from ferrotile.storage.tables.parquet_store import ParquetTable
from ferrotile.storage.tables.sql_store import (
    SQLStorage,
    TableNameConflict,
    layout_of,
    sanitize_uri,
    storage_for,
)
from ferrotile.streaming import messages
from ferrotile.validation import MAX_INT64

PARQUET = "application/x-parquet"
SQL_TABLE = "application/x-tiled-sql-table"
OUT_OF_RANGE = "Partition out of range"


def _parse_source(ds: dict[str, Any]) -> ParsedSource:
    mimetype = ds.get("mimetype") or PARQUET
    if mimetype not in (PARQUET, SQL_TABLE):
        raise ApiError(
            415,
            f"Unsupported mimetype for writable tables: {mimetype!r}; use {PARQUET} or {SQL_TABLE}",
        )
    try:
        structure = TableStructure.from_json(ds.get("structure"))
    except InvalidTable as exc:
        raise ApiError(422, f"Invalid table structure: {exc}") from None
    parameters = dict(ds.get("parameters") or {})
    if mimetype == SQL_TABLE:
        unknown = set(parameters) - {"table_name"}
        if unknown:
            raise ApiError(422, f"Unsupported parameters for {SQL_TABLE}: {sorted(unknown)}")
        if parameters.get("table_name") is None:
            parameters.pop("table_name", None)
        elif not isinstance(parameters["table_name"], str):
            raise ApiError(422, "table_name must be a string")
        try:
            layout_of(structure.schema)  # refuse unsupported column types before any effect
        except InvalidTable as exc:
            raise ApiError(422, str(exc)) from None
    return ParsedSource(
        structure=structure.to_json(),
        mimetype=mimetype,
        parameters=parameters,
        properties=ds.get("properties") or {},
        detail=structure,
    )


def _configured_storage(state: AppState) -> str:
    uri = state.settings.sql_storage
    if uri is None:
        raise ApiError(
            405,
            "This server has no table storage; start it with -w DIR, -w sqlite:///FILE or --temp",
        )
    return uri


async def _create(state: AppState, source: ParsedSource) -> DataSource:
    structure: TableStructure = source.detail
    if source.mimetype == SQL_TABLE:
        uri = _configured_storage(state)
        try:
            table_name, dataset_id = await asyncio.to_thread(
                storage_for(uri).create_dataset,
                structure.schema,
                source.parameters.get("table_name"),
            )
        except TableNameConflict as exc:
            raise ApiError(409, str(exc)) from None
        except InvalidTable as exc:
            raise ApiError(422, str(exc)) from None
        parameters = {**source.parameters, "table_name": table_name, "dataset_id": dataset_id}
        # The URI is recorded without a password; _sql_storage maps it back to the setting.
        asset = Asset(None, sanitize_uri(uri), is_directory=False, parameter="data_uri", num=None)
    else:
        root = state.writable_root
        if root is None:
            raise ApiError(
                405, "This server has no writable storage; start it with -w DIR or --temp"
            )
        directory = root / f"{uuid.uuid4().hex}.parquet"
        await asyncio.to_thread(ParquetTable.create, directory)
        parameters = source.parameters
        asset = Asset(
            None, f"file://localhost{directory}", is_directory=True, parameter="data_uri", num=None
        )
    return DataSource(
        id=None,
        structure_family="table",
        structure=source.structure,
        mimetype=source.mimetype,
        parameters=parameters,
        properties=source.properties,
        management="writable",
        assets=(asset,),
    )


def _sql_storage(state: AppState, ds: DataSource) -> SQLStorage:
    recorded = ds.assets[0].data_uri if ds.assets else ""
    configured = state.settings.sql_storage
    if configured is not None and sanitize_uri(configured) == recorded:
        return storage_for(configured)
    if recorded.startswith("sqlite:"):
        return storage_for(recorded)
    raise ApiError(500, f"The table storage {recorded!r} of this table is not configured")


async def _delete(state: AppState, ds: DataSource) -> None:
    if ds.mimetype == SQL_TABLE:
        storage = _sql_storage(state, ds)
        table_name, dataset_id = ds.parameters["table_name"], int(ds.parameters["dataset_id"])
        await asyncio.to_thread(storage.delete_dataset, table_name, dataset_id)
        return
    for asset in ds.assets:
        if asset.data_uri.startswith("file:"):
            await asyncio.to_thread(ParquetTable.remove, path_from_file_uri(asset.data_uri))


register("table", FamilyWriter(parse=_parse_source, create=_create, delete=_delete))


def _table(node: Node) -> tuple[DataSource, TableStructure]:
    if node.structure_family != "table" or not node.data_sources:
        raise ApiError(404, f"{'/'.join(node.path)!r} is a {node.structure_family}, not a table")
    ds = node.data_sources[0]
    try:
        return ds, TableStructure.from_json(ds.structure)
    except InvalidTable as exc:
        raise ApiError(500, f"Stored table structure is invalid: {exc}") from None


def _parquet(ds: DataSource, structure: TableStructure) -> ParquetTable:
    if not ds.assets:
        raise ApiError(500, "This table has no storage")
    directory = path_from_file_uri(ds.assets[0].data_uri)
    return ParquetTable(directory, structure.schema, structure.npartitions)


def _partition(request: Request, structure: TableStructure) -> int:
    if "partition" not in request.query_params:
        raise ApiError(422, "Query parameter 'partition' is required")
    # Negative or huge: answered by check_partition (400 out of range), as Tiled's range check.
    partition = query_int(request, "partition", 0, minimum=-MAX_INT64)
    try:
        structure.check_partition(partition)
    except IndexError:
        raise ApiError(400, OUT_OF_RANGE) from None
    return partition


async def _columns(request: Request, structure: TableStructure) -> list[str] | None:
    """``?column=A&column=B`` (GET) or a JSON list in the body (POST, for long lists)."""
    if request.method == "POST":
        body = await request.body()
        try:
            columns = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError as exc:
            raise ApiError(422, f"Request body is not valid JSON: {exc}") from None
        if columns is not None and not (
            isinstance(columns, list) and all(isinstance(c, str) for c in columns)
        ):
            raise ApiError(422, "The body must be a JSON list of column names (or null)")
    else:
        columns = request.query_params.getlist("column") or None
    for name in columns or ():
        if name not in structure.schema.names:
            raise ApiError(400, f"No such field {name}.")
    return columns or None


def _respond(request: Request, state: AppState, table: pa.Table) -> Response:
    limit = state.settings.response_bytesize_limit
    if table.nbytes > limit:
        raise ApiError(
            400,
            f"Response would exceed {limit}. Select a subset of the columns ('?column=...') "
            "to request a smaller chunks.",
        )
    return table_response(request, table)


async def get_partition(request: Request) -> Response:
    """``GET`` (``?column=``) or ``POST`` (JSON list of columns) one partition."""
    state = require(request, Access.READ)
    node = await state.node(request.path_params["path"])
    ds, structure = _table(node)
    partition = _partition(request, structure)
    columns = await _columns(request, structure)
    negotiate(request, "table", TABLE_SERIALIZERS)  # 406 before any read
    if registered.is_external(node):  # files registered in place: read through their adapter
        table = await registered.read_registered_table(
            state, node, structure.schema, partition, columns
        )
    elif ds.mimetype == SQL_TABLE:
        p = ds.parameters
        table = await asyncio.to_thread(
            _sql_storage(state, ds).read,
            p["table_name"],
            int(p["dataset_id"]),
            structure.schema,
            partition,
            columns,
        )
    else:
        table = await asyncio.to_thread(_parquet(ds, structure).read_partition, partition, columns)
    return _respond(request, state, table)


async def get_full(request: Request) -> Response:
    """``GET`` (``?column=``) or ``POST`` (JSON list of columns) the whole table."""
    state = require(request, Access.READ)
    node = await state.node(request.path_params["path"])
    ds, structure = _table(node)
    columns = await _columns(request, structure)
    negotiate(request, "table", TABLE_SERIALIZERS)
    if registered.is_external(node):  # files registered in place: read through their adapter
        table = await registered.read_registered_table(state, node, structure.schema, None, columns)
    elif ds.mimetype == SQL_TABLE:
        p = ds.parameters
        table = await asyncio.to_thread(
            _sql_storage(state, ds).read,
            p["table_name"],
            int(p["dataset_id"]),
            structure.schema,
            None,
            columns,
        )
    else:
        table = await asyncio.to_thread(_parquet(ds, structure).read, columns)
    return _respond(request, state, table)


async def _body_table(request: Request) -> tuple[bytes, pa.Table]:
    """The raw body (what is streamed) and the table it decodes to."""
    content_type = request.headers.get("content-type", ARROW_FILE).split(";")[0].strip()
    if content_type != ARROW_FILE:
        raise ApiError(415, f"Unsupported Content-Type {content_type!r}; send {ARROW_FILE}")
    body = await request.body()
    try:
        return body, read_ipc_file(body)
    except InvalidTable as exc:
        raise ApiError(400, str(exc)) from None


async def _publish(
    state: AppState, node: Node, body: bytes, table: pa.Table, partition: int | None, append: bool
) -> None:
    """Stream an accepted (already stored) write to the node's subscribers."""
    if state.hub is None:
        return
    header = messages.table_data(partition=partition, append=append)
    payload_json = await asyncio.to_thread(messages.table_json, table)
    await publish(state, node.id, header, body, stored=True, payload_json=payload_json)


def _conformed(body: pa.Table, structure: TableStructure, *, keep_index: bool) -> pa.Table:
    try:
        return conform(body, structure.schema, keep_index=keep_index)
    except SchemaMismatch as exc:
        raise ApiError(422, str(exc)) from None


async def _write(request: Request, *, whole: bool) -> Response:
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    ds, structure = _table(node)
    if registered.is_external(node):  # never write into a user's registered files
        raise ApiError(405, registered.READ_ONLY)
    if ds.mimetype != PARQUET:
        raise ApiError(
            405, "This node does not support writing; append rows with PATCH /table/partition."
        )
    if not whole:
        partition = _partition(request, structure)
    elif structure.npartitions == 1:
        partition = 0
    else:
        raise ApiError(
            400,
            f"This table has {structure.npartitions} partitions; write them one at a time "
            "with PUT /table/partition/{path}?partition=i",
        )
    body, decoded = await _body_table(request)
    table = _conformed(decoded, structure, keep_index=True)
    await asyncio.to_thread(_parquet(ds, structure).write_partition, partition, table)
    await _publish(state, node, body, decoded, None if whole else partition, append=False)
    return json_response(None)


async def put_full(request: Request) -> Response:
    """Replace a one-partition uploaded table (also the legacy ``PUT /node/full``)."""
    return await _write(request, whole=True)


async def put_partition(request: Request) -> Response:
    """Replace one partition of an uploaded table."""
    return await _write(request, whole=False)


async def patch_partition(request: Request) -> Response:
    """Append rows to one partition of an appendable table."""
    state = require(request, Access.WRITE)
    node = await state.node(request.path_params["path"])
    ds, structure = _table(node)
    if ds.mimetype != SQL_TABLE:
        raise ApiError(
            405,
            "This node does not support appending; create it with create_appendable_table "
            f"({SQL_TABLE}).",
        )
    partition = _partition(request, structure)
    body, decoded = await _body_table(request)
    table = _conformed(decoded, structure, keep_index=False)
    storage, p = _sql_storage(state, ds), ds.parameters
    try:
        await asyncio.to_thread(
            storage.append, p["table_name"], int(p["dataset_id"]), partition, table
        )
    except InvalidTable as exc:  # a value that does not fit the storage type (uint64 > 2**63)
        raise ApiError(422, str(exc)) from None
    await _publish(state, node, body, decoded, partition, append=True)
    return json_response(None)
