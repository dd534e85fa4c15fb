"""Composition root of the query-service process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from starlette.responses import Response

from catalog_contracts.problems import problem
from query_service.api.routes import router
from query_service.ports import ReadModel, ReadModelUnavailable
from query_service.read_models import ProductReadModel
from query_service.settings import QuerySettings
from query_service.waiters import VersionWaiters
from service_runtime.health import health_router
from service_runtime.middleware import HttpMetrics, MetricsMiddleware
from service_runtime.problems import install_problem_handlers, problem_response


def create_app(
    settings: QuerySettings | None = None, *, read_model: ReadModel | None = None
) -> FastAPI:
    """The query API over `read_model`, or over MongoDB (opened on startup, closed on shutdown),
    with the process's one reader of read-your-writes waits."""
    settings = settings or QuerySettings()
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        async with contextlib.AsyncExitStack() as resources:
            model = read_model
            if model is None:
                client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
                    settings.mongodb_url,
                    appname="catalog-query",
                    maxPoolSize=settings.max_pool_size,
                    serverSelectionTimeoutMS=2000,
                    timeoutMS=settings.mongodb_timeout_ms,
                    tz_aware=True,
                )
                resources.push_async_callback(client.close)
                # `model` is typed as the port, so the type checker holds the adapter to it.
                model = ProductReadModel(
                    client[settings.mongodb_database],
                    refresh_seconds=settings.generation_refresh_seconds,
                )
            app.state.read_model = model
            # Closed before the client: no round may read through a closed client.
            app.state.version_waiters = await resources.enter_async_context(
                VersionWaiters(model, poll_seconds=settings.min_version_poll_seconds)
            )
            yield

    app = FastAPI(
        title="Catalog query API",
        version="1.0.0",
        description="Reads of the product catalog (the read side of Catalog CQRS).",
        lifespan=lifespan,
        # The swagger page lives at the gateway's path (/api/v1/docs/query) and loads the
        # document the gateway serves beside it; /openapi.json stays where direct callers use it.
        docs_url="/api/v1/docs/query",
        swagger_ui_parameters={"url": "/api/v1/docs/query/openapi.json"},
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
