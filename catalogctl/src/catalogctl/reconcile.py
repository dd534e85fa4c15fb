"""Repair of the read models: re-project exactly what differs from the write model."""

from __future__ import annotations

import contextlib
from typing import Any

import asyncpg
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from rich.console import Console

from catalog_read_models.registry import registry
from catalog_read_models.store import Store, open_store
from catalogctl.bars import Step, step_bar
from catalogctl.compare import Progress, Reconciliation, compare


async def repair(
    reconciliation: Reconciliation,
    db: AsyncDatabase[dict[str, Any]],
    *,
    store: Store | None = None,
    progress: Progress = lambda _: None,
    step: Step = lambda _: None,
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
        step(model.name)
        progress(f"{model.name}: repaired {count} documents")
        repaired += count
    return repaired


async def reconcile(
    database_url: str,
    mongodb_url: str,
    database: str,
    fix: bool,
    console: Console,
    bar_console: Console | None = None,
) -> bool:
    """Compare every read model with the write model, printing what differs; with `fix`,
    repair it. True when the read models are (or were made) consistent. A bar on
    `bar_console` (when it and `console` are terminals) follows the read models compared."""
    conn = await asyncpg.connect(database_url)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    steps = 1 + len(registry())  # the write model, then each read model

    def bar(description: str, total: int = steps) -> contextlib.AbstractContextManager[Step]:
        return step_bar(description, total, console, bar_console)

    try:
        db = client[database]
        with bar("comparing") as step:
            result = await compare(conn, db, progress=console.print, step=step)
        for comparison in result.comparisons:
            for key in comparison.missing[:20]:
                console.print(f"  {comparison.read_model} {key}: missing")
            for key, fields in list(comparison.different.items())[:20]:
                console.print(f"  {comparison.read_model} {key}: {fields}")
            for key in comparison.extra[:20]:
                console.print(f"  {comparison.read_model} {key}: not in the write model")
        if result.consistent:
            console.print("[green]read models are consistent with the write model[/green]")
            return True
        if not fix:
            console.print("run with --repair to re-project what differs")
            return False
        off = sum(not c.consistent for c in result.comparisons)
        with bar("repairing", off) as step:
            await repair(result, db, progress=console.print, step=step)
        with bar("checking again") as step:
            again = await compare(conn, db, step=step)
        console.print(f"after repair: {again.summary()}")
        return again.consistent
    finally:
        await conn.close()
        await client.close()
