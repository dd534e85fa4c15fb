"""The command side's PostgreSQL adapters against a real server."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg
import pytest

from command_service.adapters.migrate import migrate
from command_service.adapters.postgres import UnitOfWorkFactory
from command_service.domain.errors import InsufficientStock, InvalidValue
from command_service.handlers import (
    AdjustStock,
    CommandHandlers,
    CreateProduct,
    RequestContext,
)

pytestmark = pytest.mark.integration


def laptop(stock: int = 5) -> CreateProduct:
    return CreateProduct(
        name="Laptop", description=None, category="computers", price="999.99", stock=stock
    )


async def test_create_writes_row_and_outbox_event_in_one_transaction(pg_pool: asyncpg.Pool) -> None:
    handlers = CommandHandlers(UnitOfWorkFactory(pg_pool))
    result = await handlers.create_product(laptop(), RequestContext(correlation_id="c-1"))
    product_id = result.outcome.aggregate_id
    async with pg_pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM products WHERE id = $1", product_id)
        outbox = await conn.fetch("SELECT * FROM outbox WHERE aggregate_id = $1", product_id)
    assert row["price"] == Decimal("999.99")
    assert row["version"] == 1
    assert len(outbox) == 1
    payload = outbox[0]["payload"]
    assert payload["event_type"] == "ProductCreated"
    assert payload["aggregate_version"] == 1
    assert payload["correlation_id"] == "c-1"
    assert payload["state"]["price"] == "999.99"
    assert outbox[0]["headers"]["event_type"] == "ProductCreated"
    assert outbox[0]["published_at"] is None


async def test_rejected_command_leaves_no_row_and_no_event(pg_pool: asyncpg.Pool) -> None:
    handlers = CommandHandlers(UnitOfWorkFactory(pg_pool))
    created = await handlers.create_product(laptop(stock=1), RequestContext())
    product_id = created.outcome.aggregate_id
    with pytest.raises(InsufficientStock):
        await handlers.adjust_stock(AdjustStock(product_id, -2), RequestContext())
    with pytest.raises(InvalidValue):
        await handlers.create_product(
            CreateProduct(name="", description=None, category="x", price="1", stock=1),
            RequestContext(),
        )
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM products") == 1
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1
        assert await conn.fetchval("SELECT stock FROM products") == 1


async def test_concurrent_adjustments_never_oversell(pg_pool: asyncpg.Pool) -> None:
    handlers = CommandHandlers(UnitOfWorkFactory(pg_pool))
    created = await handlers.create_product(laptop(stock=20), RequestContext())
    product_id = created.outcome.aggregate_id

    async def take_one() -> bool:
        try:
            await handlers.adjust_stock(AdjustStock(product_id, -1), RequestContext())
            return True
        except InsufficientStock:
            return False

    outcomes = await asyncio.gather(*(take_one() for _ in range(50)))
    assert outcomes.count(True) == 20
    async with pg_pool.acquire() as conn:
        row = await conn.fetchrow("SELECT stock, version FROM products WHERE id = $1", product_id)
        versions = await conn.fetch(
            "SELECT aggregate_version FROM outbox WHERE aggregate_id = $1 ORDER BY id", product_id
        )
    assert (row["stock"], row["version"]) == (0, 21)
    assert [r["aggregate_version"] for r in versions] == list(range(1, 22))


async def test_migrations_are_idempotent_and_safe_concurrently(database_url: str) -> None:
    results = await asyncio.gather(*(migrate(database_url) for _ in range(4)))
    assert all(applied == [] for applied in results)  # the fixture already migrated
