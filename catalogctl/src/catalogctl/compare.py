"""Field-by-field comparison of the write model (PostgreSQL) with the read models (MongoDB)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pymongo.asynchronous.database import AsyncDatabase

from catalog_contracts.events import ProductState
from catalog_contracts.money import format_price, price_to_cents
from catalog_contracts.read_models import Generation, product_document
from catalog_read_models.generations import live_generation

Progress = Callable[[str], None]

CATEGORY_FIELDS = (
    "product_count",
    "in_stock_count",
    "total_stock",
    "min_price",
    "max_price",
)


@dataclass
class Comparison:
    """Where the read models disagree with the write model."""

    generation: Generation
    products: int = 0
    missing: list[str] = field(default_factory=list)  # in PostgreSQL, not in the read model
    behind: list[str] = field(default_factory=list)  # read model at an older version
    different: dict[str, list[str]] = field(default_factory=dict)  # same version, other fields
    extra: list[str] = field(default_factory=list)  # in the read model only
    categories: dict[str, list[str]] = field(default_factory=dict)  # category -> fields off
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)
    stored_categories: dict[str, str] = field(default_factory=dict)

    @property
    def products_off(self) -> list[str]:
        return sorted({*self.missing, *self.behind, *self.different})

    @property
    def consistent(self) -> bool:
        return not (self.products_off or self.extra or self.categories)

    def summary(self) -> str:
        return (
            f"{self.products:,} products: {len(self.missing)} missing, {len(self.behind)} behind,"
            f" {len(self.different)} different, {len(self.extra)} extra;"
            f" {len(self.categories)} categories off"
        )


def _state(row: asyncpg.Record) -> ProductState:
    return ProductState(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        category=row["category"],
        price=row["price"],
        stock=row["stock"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


async def compare(
    conn: asyncpg.Connection,
    db: AsyncDatabase[dict[str, Any]],
    *,
    progress: Progress = lambda _: None,
    chunk: int = 5000,
) -> Comparison:
    """Compare every product and every category; one pass over each store."""
    generation = await live_generation(db)()
    result = Comparison(generation)
    stored: dict[str, dict[str, Any]] = {}
    async for doc in db[generation.products].find({}):
        stored[doc["_id"]] = doc
    progress(f"read {len(stored):,} read documents from {generation.products}")
    seen = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = conn.cursor(
            "SELECT id, name, description, category, price, stock, status, version,"
            " created_at, updated_at FROM products ORDER BY id"
        )
        async for row in cursor:
            expected = product_document(_state(row))
            key = expected["_id"]
            result.expected[key] = expected
            actual = stored.pop(key, None)
            if actual is None:
                result.missing.append(key)
            else:
                result.stored_categories[key] = str(actual.get("category"))
                if actual.get("version", 0) < expected["version"]:
                    result.behind.append(key)
                else:
                    off = [f for f, v in expected.items() if actual.get(f) != v]
                    off += [f for f in actual if f not in expected]
                    if off:
                        result.different[key] = sorted(off)
            seen += 1
            if seen % chunk == 0:
                progress(f"compared {seen:,} products")
        result.products = seen
        figures = await conn.fetch(
            """
            SELECT category, count(*) AS product_count,
                   count(*) FILTER (WHERE stock > 0) AS in_stock_count,
                   sum(stock) AS total_stock, min(price) AS min_price, max(price) AS max_price
              FROM products WHERE status = 'active' GROUP BY category
            """
        )
    result.extra = sorted(stored)
    expected_categories = {
        r["category"]: {
            "product_count": r["product_count"],
            "in_stock_count": r["in_stock_count"],
            "total_stock": int(r["total_stock"]),
            "min_price": format_price(r["min_price"]),
            "max_price": format_price(r["max_price"]),
            "min_price_cents": price_to_cents(r["min_price"]),
            "max_price_cents": price_to_cents(r["max_price"]),
        }
        for r in figures
    }
    actual_categories = {
        doc["_id"]: doc
        async for doc in db[generation.categories].find({"product_count": {"$gt": 0}})
    }
    for name in sorted({*expected_categories, *actual_categories}):
        want = expected_categories.get(name)
        have = actual_categories.get(name)
        if want is None or have is None:
            result.categories[name] = ["missing" if have is None else "extra"]
            continue
        off = [f for f, v in want.items() if have.get(f) != v]
        if off:
            result.categories[name] = off
    progress(result.summary())
    return result
