"""Which generation of the read models a reader or writer works on.

Readers follow the live generation's pointer document; a rebuild or a repair writes to one
named generation whatever the pointer says meanwhile. A rebuild switches the pointer by
compare-and-set on its revision, so two rebuilds at once never undo each other's switch
(rebuilds also take a lock whose acquisition is an insert, see `rebuild.RebuildLock`, so a
store whose conditional update is not atomic cannot undo one either).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from catalog_contracts.read_models import (
    GENERATION_POINTER_ID,
    META_COLLECTION,
    Generation,
    generation_from_pointer,
    pointer_document,
)

Db = AsyncDatabase[dict[str, Any]]
GenerationSource = Callable[[], Awaitable[Generation]]
Pointer = dict[str, Any]
# The pointer's revision: bumped by every switch (absent from pointers written before).
POINTER_REVISION = "rev"


class PointerMoved(Exception):
    """The generation pointer changed since it was read: another rebuild switched first."""


def live_generation(db: Db) -> GenerationSource:
    """Resolve the live generation from its pointer document (read once per batch)."""

    async def resolve() -> Generation:
        return generation_from_pointer(await read_pointer(db))

    return resolve


def fixed_generation(generation: Generation) -> GenerationSource:
    """Always this generation, whichever one the pointer names."""

    async def resolve() -> Generation:
        return generation

    return resolve


async def read_pointer(db: Db) -> Pointer | None:
    """The pointer document as stored (None: the base generation is live)."""
    return await db[META_COLLECTION].find_one({"_id": GENERATION_POINTER_ID})


async def switch_pointer(db: Db, read: Pointer | None, generation: Generation) -> None:
    """Make `generation` the live one if the pointer is still the one `read`; else raise
    PointerMoved and change nothing."""
    meta = db[META_COLLECTION]
    if read is None:
        try:
            await meta.insert_one({**pointer_document(generation), POINTER_REVISION: 1})
        except DuplicateKeyError:
            raise PointerMoved("the generation pointer was written meanwhile") from None
        return
    revision = read.get(POINTER_REVISION)
    guard: dict[str, Any] = {"_id": GENERATION_POINTER_ID}
    if revision is None:
        guard |= {POINTER_REVISION: {"$exists": False}, "name": read["name"]}
    else:
        guard[POINTER_REVISION] = revision
    document = {**pointer_document(generation), POINTER_REVISION: (revision or 0) + 1}
    if not (await meta.replace_one(guard, document)).matched_count:
        raise PointerMoved("the generation pointer changed meanwhile")
