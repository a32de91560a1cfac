"""The ASGI application: ``app.main:app``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp
from swagger_ui_bundle import swagger_ui_path

from app import metrics
from app.api import (
    accounts,
    batches,
    health,
    notifications,
    openapi,
    operations,
    pages,
    runs,
    schedules,
    ws,
)
from app.api import catalog as catalog_api
from app.api import metrics as metrics_api
from app.api.entities import entity_router
from app.api.hub import Hub
from app.catalog.registry import Catalog, catalog_with
from app.config import PROJECT_ROOT, Settings, get_settings
from app.db import create_engine, create_sessionmaker
from app.errors import ErrorBoundary, install_handlers
from app.logs import RequestId
from app.redis import create_client
from app.security.auth import principals
from app.security.crypto import SecretBox
from app.security.gate import AuthGate
from app.state import AppState, app_state
from app.unavailable import DatabaseUnavailable
from app.web import router as dashboard


class Aegir(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # Around Starlette's own outermost layer, which re-raises after a 500.
        return ErrorBoundary(super().build_middleware_stack())


def create_app(settings: Settings | None = None, catalog: Catalog | None = None) -> FastAPI:
    settings = settings or get_settings()
    catalog = catalog or catalog_with(tuple(settings.catalog_modules))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app_state(app)
        state.engine = create_engine(settings.database_url, settings)
        state.sessionmaker = create_sessionmaker(state.engine)
        state.redis = create_client(settings.redis_url, settings.redis_timeout.total_seconds())
        state.hub = Hub(settings.redis_url, settings.redis_timeout.total_seconds())
        reporter = asyncio.create_task(metrics_api.open_sockets.report(state))
        try:
            yield
        finally:
            reporter.cancel()
            await metrics.drain()
            await state.hub.aclose()
            await state.redis.aclose()
            await state.engine.dispose()

    app = Aegir(
        title="Aegir",
        version="0.1.0",
        summary="A hosting control plane: servers, platforms and sites, and operations on them.",
        lifespan=lifespan,
        generate_unique_id_function=openapi.operation_id,
        # Served by app.api.pages, to signed-in users only.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(AuthGate)  # inside the session middleware: it reads the session
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie="aegir_session",
        max_age=int(settings.session_max_age.total_seconds()),
        same_site="lax",
        https_only=settings.https,
    )
    app.add_middleware(DatabaseUnavailable)  # the gate reads the database too
    app.add_middleware(RequestId)  # outermost: every line of a request carries its id
    principals.ttl = settings.auth_cache.total_seconds()
    state = AppState()
    state.settings = settings
    state.catalog = catalog
    state.secret_box = SecretBox(settings.secret_key)
    app.state = state
    install_handlers(app)
    app.mount("/static/swagger", StaticFiles(directory=str(swagger_ui_path)), name="swagger")
    app.include_router(health.router)
    app.include_router(metrics_api.router)
    app.include_router(pages.router)
    app.include_router(accounts.router)
    app.include_router(catalog_api.router)
    for kind in catalog.kinds.values():
        app.include_router(entity_router(kind))
    app.include_router(operations.router)
    app.include_router(runs.router)
    app.include_router(notifications.router)
    app.include_router(batches.router)
    app.include_router(schedules.router)
    app.include_router(schedules.preview_router)
    app.include_router(ws.router)
    app.mount("/static", StaticFiles(directory=str(PROJECT_ROOT / "static")), name="static")
    app.include_router(dashboard)  # last: its "/{plural}" pages must not shadow other routes
    openapi.compose(app, catalog)
    return app


app = create_app()
