"""Composition root of the query-service process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from starlette.responses import Response

from catalog_contracts.problems import problem
from query_service.api.routes import router
from query_service.read_models import ProductReadModel, ReadModelUnavailable
from query_service.settings import QuerySettings
from service_runtime.health import health_router
from service_runtime.middleware import HttpMetrics, MetricsMiddleware
from service_runtime.problems import install_problem_handlers, problem_response


def create_app(settings: QuerySettings | None = None) -> FastAPI:
    """The query API; its MongoDB client opens on startup and closes on shutdown."""
    settings = settings or QuerySettings()
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongodb_url,
            appname="catalog-query",
            maxPoolSize=settings.max_pool_size,
            serverSelectionTimeoutMS=2000,
            timeoutMS=settings.mongodb_timeout_ms,
            tz_aware=True,
        )
        app.state.settings = settings
        app.state.read_model = ProductReadModel(
            client[settings.mongodb_database], refresh_seconds=settings.generation_refresh_seconds
        )
        try:
            yield
        finally:
            await client.close()

    app = FastAPI(
        title="Catalog query API",
        version="1.0.0",
        description="Reads of the product catalog (the read side of Catalog CQRS).",
        lifespan=lifespan,
    )

    async def mongo_answers() -> None:
        await app.state.read_model.ping()

    install_problem_handlers(app)

    @app.exception_handler(ReadModelUnavailable)
    async def _unavailable(request: Request, exc: ReadModelUnavailable) -> Response:
        return problem_response(
            problem(
                503,
                "read-model-unavailable",
                "the read model is unavailable; retry later",
                instance=request.url.path,
            ),
            {"Retry-After": "1"},
        )

    app.include_router(router)
    app.include_router(health_router(registry, {"mongodb": mongo_answers}))
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(registry, "query"))
    return app
