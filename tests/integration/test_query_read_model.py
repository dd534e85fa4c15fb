"""The query side's read-model queries against a real MongoDB wire-protocol server."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from catalog_contracts.read_models import product_document
from catalog_read_models.writer import ReadModelWriter
from query_service.read_models import ProductFilter, ProductReadModel
from tests.fixtures.events import ProductHistory

pytestmark = pytest.mark.integration


async def seed(db: AsyncDatabase[dict[str, Any]]) -> list[ProductHistory]:
    histories = [
        ProductHistory(
            name=f"Item {i:02d}",
            category="even" if i % 2 == 0 else "odd",
            price=f"{i}.50",
            stock=i % 3,
        )
        for i in range(25)
    ]
    await ReadModelWriter(db).ensure_indexes()
    await db["products"].insert_many([product_document(h.state) for h in histories])
    return histories


async def test_filters_are_literal_and_combine(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    await seed(mongo_db)
    model = ProductReadModel(mongo_db)
    page = await model.list_products(
        ProductFilter(category="even", in_stock=True, min_price_cents=450, max_price_cents=2050),
        sort="price",
        limit=50,
        cursor=None,
    )
    names = [d["name"] for d in page.items]
    assert names == [
        f"Item {i:02d}"
        for i in range(25)
        if i % 2 == 0 and i % 3 != 0 and 450 <= i * 100 + 50 <= 2050
    ]
    nothing = await model.list_products(
        ProductFilter(category='{"$ne": null}'), sort="name", limit=50, cursor=None
    )
    assert nothing.items == []


async def test_cursor_pages_neither_repeat_nor_skip(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    await seed(mongo_db)
    model = ProductReadModel(mongo_db)
    for sort in ("name", "-name", "price", "-price", "-updated_at"):
        seen: list[str] = []
        cursor = None
        while True:
            page = await model.list_products(ProductFilter(), sort=sort, limit=7, cursor=cursor)
            seen.extend(d["_id"] for d in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == 25 == len(set(seen)), sort


async def test_q_matches_name_case_insensitively(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    await seed(mongo_db)
    page = await ProductReadModel(mongo_db).list_products(
        ProductFilter(q="item 1"), sort="name", limit=50, cursor=None
    )
    assert [d["name"] for d in page.items] == [f"Item {i}" for i in range(10, 20)]
