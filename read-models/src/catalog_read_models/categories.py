"""The `categories` read model: figures of the active products of each category.

Converges asynchronously: a batch marks the categories it touched (before its offsets are
committed, so a crash never loses a mark) and a refresh sets each marked category to what its
active product documents aggregate to. A steady stream of small batches then costs one
aggregation per category per refresh instead of one per batch. The age of the oldest mark not
refreshed yet is the staleness the projector exports.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from pymongo import IndexModel
from pymongo.errors import DuplicateKeyError

from catalog_contracts.events import PRODUCT_EVENT_TYPES
from catalog_contracts.money import cents_to_price, format_price
from catalog_contracts.read_models import (
    CATEGORIES_COLLECTION,
    PRODUCT_DETAIL_COLLECTION,
    Generation,
)
from catalog_read_models.generations import Db
from catalog_read_models.registry import Batch, Comparison, WriteModel
from catalog_read_models.store import Collection, Store
from service_runtime.retry import Backoff

FIGURES = ("product_count", "in_stock_count", "total_stock", "min_price", "max_price")
# Two appliers marking a new category at once: one upsert inserts, the other collides on _id
# and, tried again, finds the document to update.
MARK_RACE = Backoff("category mark", retry_on=(DuplicateKeyError,), first_wait=0, max_attempts=3)
# When the oldest mark not refreshed yet was written (epoch seconds).
MARKED_AT = "_marked_at"


def category_document(name: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The category read document of one category's figures."""
    min_cents = int(row["min_price_cents"])
    max_cents = int(row["max_price_cents"])
    return {
        "_id": name,
        "product_count": int(row["product_count"]),
        "in_stock_count": int(row["in_stock_count"]),
        "total_stock": int(row["total_stock"]),
        "min_price": format_price(cents_to_price(min_cents)),
        "max_price": format_price(cents_to_price(max_cents)),
        "min_price_cents": min_cents,
        "max_price_cents": max_cents,
    }


def _bump_update(now: float) -> dict[str, Any]:
    # `$min`: the first mark since the last refresh starts the staleness clock (a refresh
    # writes the category back without the stamp), later ones leave it.
    return {"$inc": {"_seq": 1}, "$set": {"_dirty": True}, "$min": {MARKED_AT: now}}


async def _bump(collection: Collection, name: str, now: float) -> None:
    await collection.update_one({"_id": name}, _bump_update(now), upsert=True)


async def mark(db: Db, generation: Generation, categories: Iterable[str]) -> None:
    """Mark categories whose figures may have changed; `refresh` redoes them."""
    await _mark(db[generation.collection(CATEGORIES_COLLECTION)], categories)


async def _mark(collection: Collection, categories: Iterable[str]) -> None:
    """Bump every category named: one update of them all, then an upsert of each one that did
    not exist yet."""
    names = sorted(set(categories))
    if not names:
        return
    now = time.time()
    matched = await collection.update_many({"_id": {"$in": names}}, _bump_update(now))
    if matched.matched_count == len(names):
        return
    found = {doc["_id"] async for doc in collection.find({"_id": {"$in": names}}, {"_id": 1})}
    for name in names:
        if name not in found:
            await MARK_RACE.call(functools.partial(_bump, collection, name, now))


class CategoryMarks:
    """The marks of batches applied side by side, written together (a group commit).

    A batch hands over its categories once its products are written and waits for a round of
    marks that began after that; a round bumps each category once however many batches named
    it. Six partitions' batches each marking the same twenty categories cost twenty updates,
    not a hundred and twenty. A failed round fails each of its batches, which are applied
    again.
    """

    def __init__(self) -> None:
        self._next: dict[str, tuple[Collection, set[str], asyncio.Future[None]]] = {}
        self._writer: asyncio.Task[None] | None = None

    async def mark(self, collection: Collection, categories: Iterable[str]) -> None:
        """Mark `categories` of `collection`; returns once a round including them is written."""
        entry = self._next.get(collection.full_name)
        if entry is None:
            done = asyncio.get_running_loop().create_future()
            # Retrieved even when every waiter of the round was cancelled.
            done.add_done_callback(lambda f: f.cancelled() or f.exception())
            entry = self._next[collection.full_name] = (collection, set(), done)
        entry[1].update(categories)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        # Shielded: a waiter cancelled (its partition stopping) must not cancel the round.
        await asyncio.shield(entry[2])

    async def _write(self) -> None:
        rounds: dict[str, tuple[Collection, set[str], asyncio.Future[None]]] = {}
        try:
            while self._next:
                rounds, self._next = self._next, {}
                for collection, categories, done in rounds.values():
                    try:
                        await _mark(collection, categories)
                    except Exception as exc:
                        done.set_exception(exc)
                    else:
                        done.set_result(None)
        except BaseException:
            # Cancelled (the loop is closing): no batch may wait for a round that never comes.
            for _, _, done in (*rounds.values(), *self._next.values()):
                done.cancel()
            raise


async def refresh(db: Db, store: Store, generation: Generation) -> int:
    """Set each marked category to what its active product documents aggregate to.

    Several projector replicas may mark and refresh one category at once. A mark bumps the
    category's `_seq` after its products were written; a refresh reads `_seq`, aggregates, and
    writes (unmarked) only if `_seq` is still what it read. A refresh that loses was overtaken
    by a later mark, which leaves the category marked for the next refresh, whose aggregation
    begins after every product change so far: `_seq` never decreases, so no stale figure
    survives. Returns how many categories were refreshed.
    """
    collection = db[generation.collection(CATEGORIES_COLLECTION)]
    seqs = {doc["_id"]: doc["_seq"] async for doc in collection.find({"_dirty": True}, {"_seq": 1})}
    if not seqs:
        return 0
    products = db[generation.collection(PRODUCT_DETAIL_COLLECTION)]
    figures = await store.category_figures(products, seqs)
    for name, seq in seqs.items():
        row = figures.get(name)
        document = category_document(name, row) if row else {"_id": name, "product_count": 0}
        await collection.replace_one({"_id": name, "_seq": seq}, {**document, "_seq": seq})
    return len(seqs)


async def staleness_seconds(db: Db, generation: Generation) -> float:
    """Seconds since the oldest mark that no refresh has answered yet (0 when none waits)."""
    collection = db[generation.collection(CATEGORIES_COLLECTION)]
    oldest = [doc.get(MARKED_AT) async for doc in collection.find({"_dirty": True}, {MARKED_AT: 1})]
    stamps = [stamp for stamp in oldest if isinstance(stamp, int | float)]
    return max(0.0, time.time() - min(stamps)) if stamps else 0.0


async def recompute(
    db: Db, store: Store, generation: Generation, categories: Iterable[str]
) -> None:
    """Mark these categories and refresh every marked one now (rebuild, reconcile)."""
    await mark(db, generation, categories)
    await refresh(db, store, generation)


class Categories:
    """Category figures, refreshed beside the batches."""

    name: Final = "categories"
    collections: Final = (CATEGORIES_COLLECTION,)
    indexes: Final[Mapping[str, Sequence[IndexModel]]] = {}
    event_types: Final = frozenset(PRODUCT_EVENT_TYPES)

    async def apply(self, batch: Batch) -> None:
        """Mark every category a product of the batch was in or moved to."""
        if not batch.mark_categories or not batch.product_events:
            return
        touched: set[str] = set()
        for event in batch.product_events:
            touched.add(event.state.category)
            # The category a product leaves is named by the event that moves it.
            previous = getattr(event.data, "previous", None)
            if isinstance(previous, dict) and isinstance(previous.get("category"), str):
                touched.add(previous["category"])
        await batch.marks.mark(batch.collection(CATEGORIES_COLLECTION), touched)

    async def compare(self, write: WriteModel, db: Db, generation: Generation) -> Comparison:
        """Every category's figures against PostgreSQL's aggregation."""
        result = Comparison(self.name)
        collection = db[generation.collection(CATEGORIES_COLLECTION)]
        stored = {doc["_id"]: doc async for doc in collection.find({"product_count": {"$gt": 0}})}
        for name in sorted({*write.categories, *stored}):
            result.checked += 1
            want = write.categories.get(name)
            have = stored.get(name)
            if want is None:
                result.extra.append(name)
            elif have is None:
                result.missing.append(name)
            else:
                expected = category_document(name, want)
                off = [f for f, v in expected.items() if have.get(f) != v]
                if off:
                    result.different[name] = off
        return result

    async def repair(
        self,
        comparison: Comparison,
        write: WriteModel,
        db: Db,
        generation: Generation,
        store: Store,
    ) -> int:
        """Recompute the categories that are off from the (repaired) product documents."""
        names = [*comparison.off, *comparison.extra]
        await recompute(db, store, generation, names)
        return len(names)


READ_MODEL = Categories()
