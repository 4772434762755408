"""The route table of Tiled's HTTP API v1 that this server implements."""

from __future__ import annotations

from starlette.convertors import PathConvertor, register_url_convertor
from starlette.routing import BaseRoute, Route, WebSocketRoute

from ferrotile.api import (
    arrays,
    awkward,
    containers,
    live,
    metadata,
    metadata_edit,
    metrics,
    openapi,
    register,
    revisions,
    root,
    search,
    stream,
    tables,
)
from ferrotile.api.graphql.app import GraphQLEndpoint
from ferrotile.api.streamer import rest as streamer_rest


class NodePathConvertor(PathConvertor):
    """Every character of the node path, newlines included.

    Starlette's ``path`` convertor is ``.*``, which stops at a newline, and the route pattern's
    ``$`` then matches just before a trailing one: ``/metadata/T/a%0A`` resolved ``T/a`` and
    ``/metadata/%0A`` the root. Taking every character hands the path as sent to
    :func:`~ferrotile.catalog.paths.split_path`, which refuses control characters (422).
    """

    regex = r"[\s\S]*"


register_url_convertor("nodepath", NodePathConvertor())
P = "{path:nodepath}"
#: Test-only route (``FERROTILE_TEST_HOOKS=1``): close a node's subscribers with 1012.
HOOK = f"/api/v1/_test/interrupt-streams/{P}"


def routes() -> list[BaseRoute]:
    graphql = GraphQLEndpoint()
    return [
        Route("/", root.landing, methods=["GET"]),
        Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
        Route("/docs", openapi.docs, methods=["GET"]),
        Route("/healthz", root.healthz, methods=["GET"]),
        Route("/api/v1/", root.about, methods=["GET"]),
        # The live view (before /live/{path}: a node named 'api' or 'static' yields to these).
        Route("/live/", live.page, methods=["GET"]),
        Route("/live/api/streams", live.streams, methods=["GET"]),
        Route("/live/static/{name:live_asset}", live.asset, methods=["GET"]),
        Route(f"/live/{P}", live.page, methods=["GET"]),
        Route("/api/v1/metrics", metrics.get_metrics, methods=["GET"]),
        Route(f"/api/v1/metadata/{P}", metadata.get_metadata, methods=["GET"]),
        Route(f"/api/v1/metadata/{P}", metadata.post_metadata, methods=["POST"]),
        Route(f"/api/v1/metadata/{P}", metadata.delete_metadata, methods=["DELETE"]),
        Route(f"/api/v1/metadata/{P}", metadata_edit.patch_metadata, methods=["PATCH"]),
        Route(f"/api/v1/metadata/{P}", metadata_edit.put_metadata, methods=["PUT"]),
        Route(f"/api/v1/register/{P}", register.post_register, methods=["POST"]),
        Route(f"/api/v1/data_source/{P}", register.put_data_source, methods=["PUT"]),
        Route(f"/api/v1/revisions/{P}", revisions.get_revisions, methods=["GET"]),
        Route(f"/api/v1/revisions/{P}", revisions.delete_revision, methods=["DELETE"]),
        Route(f"/api/v1/search/{P}", search.search, methods=["GET"]),
        Route(f"/api/v1/array/full/{P}", arrays.get_full, methods=["GET"]),
        Route(f"/api/v1/array/full/{P}", arrays.put_full, methods=["PUT"]),
        Route(f"/api/v1/array/full/{P}", arrays.patch_full, methods=["PATCH"]),
        Route(f"/api/v1/array/block/{P}", arrays.get_block, methods=["GET"]),
        Route(f"/api/v1/array/block/{P}", arrays.put_block, methods=["PUT"]),
        Route(f"/api/v1/awkward/full/{P}", awkward.get_full, methods=["GET"]),
        Route(f"/api/v1/awkward/full/{P}", awkward.put_full, methods=["PUT"]),
        Route(f"/api/v1/awkward/buffers/{P}", awkward.get_buffers, methods=["GET"]),
        Route(f"/api/v1/awkward/buffers/{P}", awkward.post_buffers, methods=["POST"]),
        Route(f"/api/v1/container/full/{P}", containers.get_full, methods=["GET"]),
        Route(f"/api/v1/container/full/{P}", containers.post_full, methods=["POST"]),
        Route(f"/api/v1/table/full/{P}", tables.get_full, methods=["GET", "POST"]),
        Route(f"/api/v1/table/full/{P}", tables.put_full, methods=["PUT"]),
        Route(f"/api/v1/node/full/{P}", tables.get_full, methods=["GET"]),  # legacy alias
        Route(f"/api/v1/node/full/{P}", tables.put_full, methods=["PUT"]),  # legacy alias
        Route(f"/api/v1/table/partition/{P}", tables.get_partition, methods=["GET", "POST"]),
        Route(f"/api/v1/table/partition/{P}", tables.put_partition, methods=["PUT"]),
        Route(f"/api/v1/table/partition/{P}", tables.patch_partition, methods=["PATCH"]),
        Route(f"/api/v1/stream/close/{P}", stream.close_stream, methods=["DELETE"]),
        # The Redis Streamer API (same hub; see api/streamer).
        Route("/data/{sid}", streamer_rest.get_data, methods=["GET"]),
        Route("/data/{sid}", streamer_rest.post_data, methods=["POST"]),
        # Redis Streamer serves its HTTP routes with and without the trailing slash (a 307
        # redirect is not followed by multipart POSTs).
        Route("/data/{sid}/", streamer_rest.get_data, methods=["GET"]),
        Route("/data/{sid}/", streamer_rest.post_data, methods=["POST"]),
        Route("/graphql", graphql),  # GET (GraphiQL, queries), POST
        Route("/graphql/", graphql),  # as Redis Streamer (both slashes)
        WebSocketRoute("/graphql", graphql),  # subscriptions
        *(
            [Route(HOOK, stream.interrupt_streams, methods=["POST"])]
            if stream.test_hooks_enabled()
            else []
        ),
    ]
