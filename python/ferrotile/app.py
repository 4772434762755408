"""``build_app(settings)``: the ASGI application and its lifespan (catalog, hub, shutdown)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from ferrotile.api.auth import ApiKeyCookieMiddleware
from ferrotile.api.compression import CompressionMiddleware
from ferrotile.api.errors import EXCEPTION_HANDLERS
from ferrotile.api.routes import routes
from ferrotile.catalog.catalog import Catalog
from ferrotile.config import Settings
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
            try:
                await hub.start(state.invalidate)
            except BaseException:
                hub.shutdown()
                await catalog.close()
                raise
        try:
            yield
        finally:
            if hub is not None:
                hub.shutdown()
            await catalog.close()

    return Starlette(
        routes=routes(),
        middleware=[
            Middleware(CompressionMiddleware),
            Middleware(ApiKeyCookieMiddleware, api_key=settings.api_key),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )


def app_from_env() -> Starlette:
    """Granian's app factory for worker processes (settings in ``FERROTILE_SETTINGS``)."""
    return build_app(Settings.from_env())
