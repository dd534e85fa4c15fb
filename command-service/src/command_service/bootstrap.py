"""Composition root of the command-service process: settings, pool, handlers, app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from command_service.adapters.postgres import UnitOfWorkFactory, connection, create_pool
from command_service.api.errors import install_error_handlers
from command_service.api.routes import router
from command_service.handlers import CommandHandlers
from command_service.metrics import CommandMetrics
from command_service.settings import CommandSettings
from service_runtime.health import health_router
from service_runtime.middleware import BodyLimitMiddleware, HttpMetrics, MetricsMiddleware


def create_app(settings: CommandSettings | None = None) -> FastAPI:
    """The command API; its pool opens on startup and closes on shutdown."""
    settings = settings or CommandSettings()
    registry = CollectorRegistry()
    command_metrics = CommandMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size
        )
        app.state.pool = pool
        app.state.handlers = CommandHandlers(
            UnitOfWorkFactory(pool),
            idempotency_ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
            metrics=command_metrics,
        )
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="Catalog command API",
        version="1.0.0",
        description="Commands that change the product catalog (the write side of Catalog CQRS).",
        lifespan=lifespan,
    )

    async def database_answers() -> None:
        async with connection(app.state.pool) as conn:
            await conn.fetchval("SELECT 1")

    install_error_handlers(app)
    app.include_router(router)
    app.include_router(health_router(registry, {"postgres": database_answers}))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(registry, "command"))
    return app
