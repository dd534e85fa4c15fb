"""The local FerretDB's store tuning (deploy/local/ferretdb/store.sql) is in place."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from catalog_read_models.projection import Projection
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.integration


def _store_url(infra: Infra) -> str:
    """FerretDB's own PostgreSQL database, when this stack provisions FerretDB on PostgreSQL."""
    if infra.stack_dir is None:
        pytest.skip("needs the stack's own FerretDB")
    state = json.loads((Path(infra.stack_dir) / "stack.json").read_text())
    if "mongo" in state["external"] or not (Path(infra.stack_dir) / "mongo-store").exists():
        pytest.skip("MongoDB is external or FerretDB runs on SQLite")
    return f"postgresql://catalog:catalog@127.0.0.1:{state['ports']['mongo_store']}/ferretdb"


async def test_every_index_leading_key_gets_a_gin_twin_and_plans_are_custom(
    infra: Infra, mongo_db: AsyncDatabase[dict[str, object]]
) -> None:
    url = _store_url(infra)
    await (await Projection.open(mongo_db)).ensure_indexes()
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexdef LIKE '%USING gin%'",
            mongo_db.name,
        )
        keys = {row["indexdef"].split("_jsonb -> '")[1].split("'")[0] for row in rows}
        assert {"_id", "status", "category"} <= keys
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
    finally:
        await conn.close()
