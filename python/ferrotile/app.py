"""``build_app(settings)``: the ASGI application and its lifespan (catalog, hub, shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from ferrotile.api import growth_journal
from ferrotile.api.access import AccessMiddleware
from ferrotile.api.auth import ApiKeyCookieMiddleware
from ferrotile.api.compression import CompressionMiddleware
from ferrotile.api.drain import DrainBodyMiddleware
from ferrotile.api.errors import EXCEPTION_HANDLERS
from ferrotile.api.metrics import metrics, multiprocess_mode, refresh_forever
from ferrotile.api.outage import catalog_error_handler
from ferrotile.api.routes import routes
from ferrotile.catalog.catalog import Catalog
from ferrotile.config import Settings
from ferrotile.errors import CatalogError
from ferrotile.state import AppState


def build_app(settings: Settings) -> Starlette:
    """Build the application for one worker process.

    The catalog must already exist (the CLI and :class:`~ferrotile.SimpleServer` create it
    before starting workers), so that a bad database fails once, with one clear message.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        catalog = await Catalog.open(settings.catalog_uri)
        hub = None
        if settings.streaming:
            from ferrotile.streaming.hub import StreamHub

            hub = StreamHub(settings)
        state = AppState(settings=settings, catalog=catalog, hub=hub)
        app.state.ferrotile = state
        if hub is not None:
            hub.observer = metrics().observe_publish
            try:
                await hub.start(state.invalidate)
            except BaseException:
                hub.shutdown()
                await catalog.close()
                raise
        await growth_journal.reconcile(state)
        refresher = None
        if multiprocess_mode():
            refresher = asyncio.create_task(refresh_forever(state), name="ferrotile-metrics")
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
            if hub is not None:
                hub.shutdown()
            await catalog.close()

    return Starlette(
        routes=routes(),
        middleware=[
            Middleware(DrainBodyMiddleware),
            Middleware(AccessMiddleware, access_log=settings.access_log),
            Middleware(CompressionMiddleware),
            Middleware(ApiKeyCookieMiddleware, api_key=settings.api_key),
        ],
        exception_handlers={**EXCEPTION_HANDLERS, CatalogError: catalog_error_handler},
        lifespan=lifespan,
    )
