"""Field-by-field comparison of the write model (PostgreSQL) with every read model (MongoDB).

PostgreSQL computes what each read model should hold (rating figures and category figures by
its own aggregations, in one repeatable-read snapshot); each read model of the registry then
compares its documents with that.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
from pymongo.asynchronous.database import AsyncDatabase

from catalog_contracts.events import ProductState, ReviewState, format_timestamp
from catalog_contracts.money import price_to_cents
from catalog_contracts.read_models import LATEST_REVIEWS, Generation
from catalog_read_models.generations import live_generation
from catalog_read_models.ratings import STARS, Figures
from catalog_read_models.registry import Comparison, WriteModel, registry

Progress = Callable[[str], None]
# Told the name of each step done: "write model", then each read model compared.
Steps = Callable[[str], None]

PRODUCTS = """
SELECT id, name, description, category, price, stock, status, version, created_at, updated_at
  FROM products
"""
REVIEWS = """
SELECT id, product_id, rating, title, body, author, status, version, created_at, updated_at
  FROM reviews
"""
# round() of a numeric rounds half away from zero: half-up for positive averages.
RATINGS = """
SELECT product_id, count(*) AS count, round(avg(rating), 2) AS average,
       count(*) FILTER (WHERE rating = 1) AS "1", count(*) FILTER (WHERE rating = 2) AS "2",
       count(*) FILTER (WHERE rating = 3) AS "3", count(*) FILTER (WHERE rating = 4) AS "4",
       count(*) FILTER (WHERE rating = 5) AS "5"
  FROM reviews WHERE status = 'published' GROUP BY product_id
"""
LATEST = """
SELECT product_id, id, rating, title, author, created_at FROM (
    SELECT *, row_number() OVER (PARTITION BY product_id ORDER BY created_at DESC, id DESC) AS n
      FROM reviews WHERE status = 'published'
) newest WHERE n <= $1 ORDER BY product_id, n
"""
CATEGORIES = """
SELECT category, count(*) AS product_count, count(*) FILTER (WHERE stock > 0) AS in_stock_count,
       sum(stock) AS total_stock, min(price) AS min_price, max(price) AS max_price
  FROM products WHERE status = 'active' GROUP BY category
"""


@dataclass
class Reconciliation:
    """Where each read model disagrees with the write model, and the snapshot compared."""

    generation: Generation
    write: WriteModel
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        """Whether every read model agrees with the write model."""
        return all(c.consistent for c in self.comparisons)

    def of(self, read_model: str) -> Comparison:
        """The comparison of one read model."""
        return next(c for c in self.comparisons if c.read_model == read_model)

    def summary(self) -> str:
        """One line per read model."""
        return "; ".join(c.summary() for c in self.comparisons)


async def read_write_model(conn: asyncpg.Connection) -> WriteModel:
    """The write model and PostgreSQL's own figures, from one consistent snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        products = {str(r["id"]): ProductState(**dict(r)) for r in await conn.fetch(PRODUCTS)}
        reviews = {str(r["id"]): ReviewState(**dict(r)) for r in await conn.fetch(REVIEWS)}
        rating_rows = await conn.fetch(RATINGS)
        latest: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in await conn.fetch(LATEST, LATEST_REVIEWS):
            latest[str(row["product_id"])].append(
                {
                    "id": str(row["id"]),
                    "rating": row["rating"],
                    "title": row["title"],
                    "author": row["author"],
                    "created_at": format_timestamp(row["created_at"]),
                }
            )
        category_rows = await conn.fetch(CATEGORIES)
    ratings = {}
    for row in rating_rows:
        key = str(row["product_id"])
        average: Decimal = row["average"]
        ratings[key] = Figures(
            count=row["count"],
            average=f"{average:.2f}",
            distribution={stars: row[stars] for stars in STARS},
            sort=int(average * 100),
            latest=latest[key],
        )
    categories = {
        r["category"]: {
            "product_count": r["product_count"],
            "in_stock_count": r["in_stock_count"],
            "total_stock": int(r["total_stock"]),
            "min_price_cents": price_to_cents(r["min_price"]),
            "max_price_cents": price_to_cents(r["max_price"]),
        }
        for r in category_rows
    }
    return WriteModel(products, reviews, ratings, categories)


async def compare(
    conn: asyncpg.Connection,
    db: AsyncDatabase[dict[str, Any]],
    *,
    progress: Progress = lambda _: None,
    step: Steps = lambda _: None,
) -> Reconciliation:
    """Compare every read model of the registry with the write model."""
    generation = await live_generation(db)()
    write = await read_write_model(conn)
    step("write model")
    progress(
        f"write model: {len(write.products):,} products, {len(write.reviews):,} reviews;"
        f" comparing generation {generation.label}"
    )
    result = Reconciliation(generation, write)
    for model in registry():
        comparison = await model.compare(write, db, generation)
        result.comparisons.append(comparison)
        step(model.name)
        progress(comparison.summary())
    return result
