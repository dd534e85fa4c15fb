"""Repair of the read models: re-project exactly what differs from the write model."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from catalog_read_models.registry import registry
from catalog_read_models.store import Store, open_store
from catalogctl.compare import Progress, Reconciliation


async def repair(
    reconciliation: Reconciliation,
    db: AsyncDatabase[dict[str, Any]],
    *,
    store: Store | None = None,
    progress: Progress = lambda _: None,
) -> int:
    """Re-project what each read model has off, in apply order; return how many documents."""
    store = store or await open_store(db)
    repaired = 0
    # Apply order: the tallies before the product documents that copy them, the product
    # documents before the categories aggregated from them.
    for model in registry():
        comparison = reconciliation.of(model.name)
        if comparison.consistent:
            continue
        count = await model.repair(
            comparison, reconciliation.write, db, reconciliation.generation, store
        )
        progress(f"{model.name}: repaired {count} documents")
        repaired += count
    return repaired
