"""Composition root of the command-service process: settings, pool, handlers, app.

The only module that picks the asyncpg adapters; `create_app(uow_factory=...)` takes another
implementation of the ports instead (the in-memory fakes of the in-process API tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from command_service.adapters.postgres import UnitOfWorkFactory as PostgresUnitOfWorkFactory
from command_service.adapters.postgres import create_pool
from command_service.api.auth import KeySet, TokenVerifier
from command_service.api.errors import install_error_handlers
from command_service.api.routes import router
from command_service.handlers import CommandHandlers
from command_service.metrics import CommandMetrics
from command_service.ports import UnitOfWorkFactory
from command_service.settings import CommandSettings
from service_runtime.health import health_router
from service_runtime.middleware import BodyLimitMiddleware, HttpMetrics, MetricsMiddleware


def token_verifier(settings: CommandSettings) -> TokenVerifier:
    """The bearer-token check of the settings' JWKS; no key set, no command API."""
    source: str | Path | None = settings.jwks_file or settings.jwks_url
    if source is None:
        raise ValueError(
            "the command API verifies bearer tokens: set COMMAND_JWKS_URL (the identity "
            "provider's key set) or COMMAND_JWKS_FILE (make up sets one for development)"
        )
    return TokenVerifier(
        KeySet(source),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=settings.jwt_leeway_seconds,
    )


def create_app(
    settings: CommandSettings | None = None, *, uow_factory: UnitOfWorkFactory | None = None
) -> FastAPI:
    """The command API; its pool (unless `uow_factory` is given) opens on startup."""
    settings = settings or CommandSettings()
    verifier = token_verifier(settings)  # refuses to build an API nobody could call safely
    registry = CollectorRegistry()
    command_metrics = CommandMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as resources:
            units = uow_factory
            if units is None:
                pool = await create_pool(
                    settings.dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size
                )
                resources.push_async_callback(pool.close)
                units = PostgresUnitOfWorkFactory(pool)
            app.state.uow_factory = units
            app.state.verifier = verifier
            app.state.handlers = CommandHandlers(
                units,
                idempotency_ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
                metrics=command_metrics,
            )
            yield

    app = FastAPI(
        title="Catalog command API",
        version="1.0.0",
        description="Commands that change the product catalog (the write side of Catalog CQRS).",
        lifespan=lifespan,
        # The swagger page lives at the gateway's path (/api/v1/docs/command) and loads the
        # document the gateway serves beside it; /openapi.json stays where direct callers use it.
        docs_url="/api/v1/docs/command",
        swagger_ui_parameters={"url": "/api/v1/docs/command/openapi.json"},
    )

    async def database_answers() -> None:
        await app.state.uow_factory.ping()

    install_error_handlers(app)
    app.include_router(router)
    app.include_router(health_router(registry, {"postgres": database_answers}))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(registry, "command"))
    return app
