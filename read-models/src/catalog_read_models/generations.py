"""Which generation of the read models a reader or writer works on.

Readers follow the live generation's pointer document; a rebuild or a repair writes to one
named generation whatever the pointer says meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from catalog_contracts.read_models import (
    GENERATION_POINTER_ID,
    META_COLLECTION,
    Generation,
    generation_from_pointer,
)

Db = AsyncDatabase[dict[str, Any]]
GenerationSource = Callable[[], Awaitable[Generation]]


def live_generation(db: Db) -> GenerationSource:
    """Resolve the live generation from its pointer document (read once per batch)."""

    async def resolve() -> Generation:
        return generation_from_pointer(
            await db[META_COLLECTION].find_one({"_id": GENERATION_POINTER_ID})
        )

    return resolve


def fixed_generation(generation: Generation) -> GenerationSource:
    """Always this generation, whichever one the pointer names."""

    async def resolve() -> Generation:
        return generation

    return resolve
