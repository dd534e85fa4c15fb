"""`projector rebuild`: the read models' blue/green rebuild (`catalog_read_models.rebuild`)
with the projector's settings, telling its progress in plain lines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import AsyncMongoClient

from catalog_read_models.generations import Db
from catalog_read_models.rebuild import LineProgress, RebuildReport
from catalog_read_models.rebuild import rebuild as rebuild_read_models
from projector.settings import ProjectorSettings

__all__ = ["RebuildReport", "rebuild"]


async def rebuild(
    settings: ProjectorSettings,
    *,
    progress: Callable[[str], None] = print,
    grace_seconds: float = 3.0,
    db: Db | None = None,
    read_model: str | None = None,
) -> RebuildReport:
    """Rebuild every read model (or `read_model` alone) and make the new collections live."""
    client: AsyncMongoClient[dict[str, Any]] | None = None
    if db is None:
        client = AsyncMongoClient(settings.mongodb_url, appname="catalog-rebuild", tz_aware=True)
        db = client[settings.mongodb_database]
    try:
        return await rebuild_read_models(
            db,
            settings.kafka_bootstrap_servers,
            settings.topics,
            read_model=read_model,
            progress=LineProgress(progress),
            grace_seconds=grace_seconds,
        )
    finally:
        if client is not None:
            await client.close()
