"""catalogctl reconcile finds exactly the read documents that differ, and repairs exactly those."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from catalogctl.compare import compare
from catalogctl.reconcile import repair
from command_service.adapters.postgres import UnitOfWorkFactory
from command_service.handlers import (
    AdjustStock,
    CommandHandlers,
    CreateProduct,
    Discontinue,
    RequestContext,
)

pytestmark = pytest.mark.integration

Db = AsyncDatabase[dict[str, Any]]


async def test_reconcile_finds_and_repairs_exactly_the_corrupted_documents(
    pg_pool: asyncpg.Pool, mongo_db: Db
) -> None:
    handlers = CommandHandlers(UnitOfWorkFactory(pg_pool))
    ids = []
    for i in range(12):
        created = await handlers.create_product(
            CreateProduct(
                name=f"p{i}", description=None, category=f"c{i % 3}", price=f"{i + 1}.00", stock=i
            ),
            RequestContext(),
        )
        ids.append(created.outcome.aggregate_id)
    await handlers.adjust_stock(AdjustStock(ids[0], 5), RequestContext())
    await handlers.discontinue(Discontinue(ids[1]), RequestContext())

    async with pg_pool.acquire() as conn:
        empty = await compare(conn, mongo_db)
        assert len(empty.missing) == 12
        await repair(empty, mongo_db)
        clean = await compare(conn, mongo_db)
        assert clean.consistent, clean.summary()

        products = mongo_db["products"]
        await products.update_one({"_id": str(ids[2])}, {"$set": {"price": "0.01"}})
        await products.update_one({"_id": str(ids[3])}, {"$set": {"version": 0}})
        await products.delete_one({"_id": str(ids[4])})
        await mongo_db["categories"].update_one({"_id": "c0"}, {"$set": {"total_stock": -1}})

        found = await compare(conn, mongo_db)
        assert found.different == {str(ids[2]): ["price"]}
        assert found.behind == [str(ids[3])]
        assert found.missing == [str(ids[4])]
        assert found.categories == {"c0": ["total_stock"]}
        repaired = await repair(found, mongo_db)
        assert repaired == 3
        after = await compare(conn, mongo_db)
    assert after.consistent, after.summary()
