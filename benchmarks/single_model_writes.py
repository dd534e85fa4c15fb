"""The write baseline: the command service's own app, writing the same rows with no outbox.

What a user would compare CQRS's writes with: the same FastAPI stack (token checks, request
models, the domain model, handlers, idempotency keys, error handling, the unit of work's
transaction) writing the same `products` row, but nothing to the outbox and no `pg_notify`.
The handlers still build each change's event (the domain returns it); only storing it goes.
It runs as many processes as `make up` runs command services (`command`, `command-2`), each
with their pool size, on one port (uvicorn's workers); tracing is off, where the stack's
services sample one trace in a hundred.

    python -m benchmarks.single_model_writes --dsn DSN --port PORT --jwks FILE --issuer ISS
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Self

import asyncpg
import uvicorn
from fastapi import FastAPI

from catalog_contracts.events import CatalogEvent
from command_service.adapters import postgres
from command_service.bootstrap import create_app
from command_service.settings import CommandSettings

WORKERS = 2  # `make up`'s command services: command and command-2
POOL_SIZE = 10  # each one's pool (deploy/local/stack_parts.py COMMAND_POOL_PER_INSTANCE)


class NoOutbox:
    """An outbox that stores nothing: the single model has no events to publish."""

    async def append(self, event: CatalogEvent, *, traceparent: str | None = None) -> None:
        """Drop the event."""


class UnitOfWork(postgres.UnitOfWork):
    """The command service's unit of work, with the outbox taken out."""

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.outbox = NoOutbox()  # type: ignore[assignment]
        return self


class UnitOfWorkFactory:
    """Units of work on the pool the app's lifespan opens."""

    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None

    def __call__(self) -> UnitOfWork:
        assert self.pool is not None, "the app has not started"
        return UnitOfWork(self.pool)

    async def ping(self) -> None:
        assert self.pool is not None, "the app has not started"
        await postgres.UnitOfWorkFactory(self.pool).ping()


def app() -> FastAPI:
    """The command API on the no-outbox unit of work, configured like the stack's (COMMAND_*)."""
    settings = CommandSettings()
    units = UnitOfWorkFactory()
    api = create_app(settings, uow_factory=units)
    handlers_lifespan = api.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[None]:
        units.pool = await postgres.create_pool(
            settings.dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size
        )
        try:
            async with handlers_lifespan(application):
                yield
        finally:
            await units.pool.close()

    api.router.lifespan_context = lifespan
    return api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jwks", required=True, help="the JWKS file the command service trusts")
    parser.add_argument("--issuer", required=True, help="the tokens' issuer (JWT_ISSUER)")
    args = parser.parse_args()
    # The workers build the app from the environment, as the command service reads it.
    os.environ.update(
        COMMAND_DATABASE_URL=args.dsn,
        COMMAND_JWKS_FILE=args.jwks,
        COMMAND_JWT_ISSUER=args.issuer,
        COMMAND_POOL_MAX_SIZE=str(POOL_SIZE),
    )
    for variable in [name for name in os.environ if name.startswith("OTEL_")]:
        del os.environ[variable]
    # service_runtime.serving.serve's settings, with workers (which need an import string).
    uvicorn.run(
        "benchmarks.single_model_writes:app",
        factory=True,
        workers=WORKERS,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
