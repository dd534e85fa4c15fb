"""Idempotency keys live in PostgreSQL, in the command's own transaction."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from command_service.adapters.postgres import UnitOfWorkFactory
from command_service.domain.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from command_service.handlers import (
    CommandHandlers,
    CommandResult,
    CreateProduct,
    RequestContext,
    StoredResponse,
)

pytestmark = pytest.mark.integration

BODY = CreateProduct(name="Kettle", description=None, category="kitchen", price="30.00", stock=3)


def respond(result: CommandResult) -> StoredResponse:
    return StoredResponse(201, {"id": str(result.product.id)}, {"ETag": '"1"'})


async def test_same_key_same_body_replays_and_creates_once(pg_pool: asyncpg.Pool) -> None:
    handlers = CommandHandlers(UnitOfWorkFactory(pg_pool))
    first = await handlers.create_product(
        BODY, RequestContext(), idempotency_key="k1", request_hash="h1", respond=respond
    )
    again = await handlers.create_product(
        BODY, RequestContext(), idempotency_key="k1", request_hash="h1", respond=respond
    )
    assert isinstance(first, CommandResult)
    assert isinstance(again, StoredResponse)
    assert again.body == {"id": str(first.product.id)}
    with pytest.raises(IdempotencyKeyReused):
        await handlers.create_product(
            BODY, RequestContext(), idempotency_key="k1", request_hash="other", respond=respond
        )
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM products") == 1
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1


async def test_a_concurrent_duplicate_in_flight_is_refused(pg_pool: asyncpg.Pool) -> None:
    handlers = CommandHandlers(UnitOfWorkFactory(pg_pool))
    outcomes = await asyncio.gather(
        *(
            handlers.create_product(
                BODY, RequestContext(), idempotency_key="k2", request_hash="h", respond=respond
            )
            for _ in range(10)
        ),
        return_exceptions=True,
    )
    created = [o for o in outcomes if isinstance(o, CommandResult)]
    replayed = [o for o in outcomes if isinstance(o, StoredResponse)]
    refused = [o for o in outcomes if isinstance(o, IdempotencyKeyInFlight)]
    assert len(created) == 1
    assert len(created) + len(replayed) + len(refused) == 10
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM products") == 1


async def test_keys_expire(pg_pool: asyncpg.Pool) -> None:
    handlers = CommandHandlers(UnitOfWorkFactory(pg_pool), idempotency_ttl=timedelta(seconds=1))
    await handlers.create_product(
        BODY, RequestContext(), idempotency_key="k3", request_hash="h", respond=respond
    )
    await asyncio.sleep(1.2)
    later = await handlers.create_product(
        BODY, RequestContext(), idempotency_key="k3", request_hash="different", respond=respond
    )
    assert isinstance(later, CommandResult)
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM products") == 2
