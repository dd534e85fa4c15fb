"""The invariant checker: after the load stops, the read models converge to the write model."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from pymongo import AsyncMongoClient

from catalog_read_models.registry import Comparison
from catalogctl.compare import Reconciliation, compare
from tests.faults.load import LoadLog
from tests.fixtures.infra import Infra


@dataclass
class Verdict:
    comparison: Reconciliation
    converged_after: float | None
    missing_acknowledged: list[str]

    @property
    def behind(self) -> int:
        """Documents of the per-event read models (products, reviews) still missing."""
        return sum(len(c.missing) for c in self._documents())

    @property
    def different(self) -> int:
        """Documents that differ from the write model (ratings included) or should not exist."""
        return sum(len(c.different) + len(c.extra) for c in self._documents())

    @property
    def category_mismatches(self) -> int:
        categories = self.comparison.of("categories")
        return len(categories.missing) + len(categories.different) + len(categories.extra)

    def _documents(self) -> list[Comparison]:
        return [c for c in self.comparison.comparisons if c.read_model != "categories"]


async def converge(infra: Infra, log: LoadLog, *, seconds: float) -> Verdict:
    """Wait until the read models equal the write model (or time runs out), then judge."""
    started = time.monotonic()
    conn = await asyncpg.connect(infra.database_url)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_url, tz_aware=True)
    try:
        db = client["catalog"]
        while True:
            try:
                comparison = await compare(conn, db)
            except Exception:  # a server still restarting
                comparison = None
            if comparison is not None and comparison.consistent:
                converged: float | None = time.monotonic() - started
                break
            if time.monotonic() - started > seconds:
                converged = None
                comparison = comparison or await compare(conn, db)
                break
            await asyncio.sleep(1.0)
        rows = await conn.fetch(
            "SELECT id::text AS id, version FROM products WHERE id = ANY($1::uuid[])",
            list(log.acked_versions),
        )
        stored = {r["id"]: r["version"] for r in rows}
        missing = [
            pid for pid, version in log.acked_versions.items() if stored.get(pid, 0) < version
        ]
        rows = await conn.fetch(
            "SELECT id::text AS id, version FROM reviews WHERE id = ANY($1::uuid[])",
            list(log.acked_review_versions),
        )
        stored = {r["id"]: r["version"] for r in rows}
        missing += [
            f"review {rid}"
            for rid, version in log.acked_review_versions.items()
            if stored.get(rid, 0) < version
        ]
        return Verdict(comparison, converged, missing)
    finally:
        await conn.close()
        await client.close()
