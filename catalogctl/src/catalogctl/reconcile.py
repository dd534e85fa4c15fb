"""Repair of the read models: re-project exactly the products that differ from the write model."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from catalog_read_models.generations import fixed_generation
from catalog_read_models.writer import ReadModelWriter
from catalogctl.compare import Comparison, Progress


async def repair(
    comparison: Comparison,
    db: AsyncDatabase[dict[str, Any]],
    *,
    progress: Progress = lambda _: None,
) -> int:
    """Write the write model's state of every product that is off; return how many."""
    generation = comparison.generation
    products = db[generation.products]
    touched: set[str] = set(comparison.categories)
    repaired = 0
    for key in comparison.products_off:
        document = comparison.expected[key]
        touched.add(document["category"])
        if key in comparison.stored_categories:
            touched.add(comparison.stored_categories[key])
        # Never older than what the projector may have written since the comparison.
        guard = {"_id": key, "version": {"$lte": document["version"]}}
        if not (await products.replace_one(guard, document)).matched_count:
            try:
                await products.insert_one(document)
            except DuplicateKeyError:
                continue  # the projector wrote a newer version meanwhile
        repaired += 1
        if repaired % 1000 == 0:
            progress(f"repaired {repaired:,} products")
    for key in comparison.extra:
        await products.delete_one({"_id": key})
    await ReadModelWriter(db, fixed_generation(generation)).recompute_categories(touched)
    progress(
        f"repaired {repaired} products, removed {len(comparison.extra)}, "
        f"recomputed {len(touched)} categories"
    )
    return repaired
