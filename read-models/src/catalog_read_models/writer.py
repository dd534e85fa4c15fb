"""MongoDB read-model writers: version-guarded product upserts and exact category figures.

Written for MongoDB and for FerretDB v1 alike. FerretDB v1 lacks `$min`/`$max` in `$group`,
computes only the first of several accumulators, and stops an unordered bulk write at its first
error; each of these is handled here rather than assumed away.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from catalog_contracts.events import ProductEvent
from catalog_contracts.money import cents_to_price, format_price
from catalog_contracts.read_models import Generation, product_document
from catalog_read_models.generations import Db, GenerationSource, live_generation
from service_runtime.retry import Backoff

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000

PRODUCT_INDEXES = [
    IndexModel(
        [("status", ASCENDING), ("category", ASCENDING), ("name", ASCENDING), ("_id", ASCENDING)],
        name="status_category_name",
    ),
    IndexModel(
        [("status", ASCENDING), ("name", ASCENDING), ("_id", ASCENDING)], name="status_name"
    ),
    IndexModel(
        [("status", ASCENDING), ("price_cents", ASCENDING), ("_id", ASCENDING)], name="status_price"
    ),
    IndexModel(
        [("status", ASCENDING), ("updated_at", DESCENDING), ("_id", ASCENDING)],
        name="status_updated_at",
    ),
    IndexModel(
        [("category", ASCENDING), ("status", ASCENDING), ("price_cents", ASCENDING)],
        name="category_status_price",
    ),
]


class ReadModelUnavailable(Exception):
    """MongoDB failed in a way worth retrying; nothing may be assumed written."""


class WriteRaced(Exception):
    """Another writer changed the document between this writer's replace and its insert."""


# A raced guarded write is tried again at once: the other writer has finished by then.
WRITE_RACE = Backoff("guarded write", retry_on=(WriteRaced,), first_wait=0, max_attempts=5)


@dataclass
class ApplyResult:
    """Per event type: how many events changed the read model and how many it already had."""

    applied: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)


class ReadModelWriter:
    """Applies batches of events to one generation of read models, idempotently."""

    def __init__(
        self, db: Db, generation: GenerationSource | None = None, *, concurrency: int = 16
    ) -> None:
        self._db = db
        self._generation = generation or live_generation(db)
        self._concurrency = concurrency
        self._ferretdb: bool | None = None

    async def ensure_indexes(self) -> None:
        """Create the product indexes of the generation written to (existing ones stay)."""
        try:
            products = self._db[(await self._generation()).products]
            # One at a time: FerretDB v1 fails a multi-index request when some already exist.
            for index in PRODUCT_INDEXES:
                await products.create_indexes([index])
        except PyMongoError as exc:
            raise ReadModelUnavailable(f"cannot create indexes: {exc}") from exc

    async def apply(
        self, events: Sequence[ProductEvent], *, mark_categories: bool = True
    ) -> ApplyResult:
        """Upsert each product's newest state from the batch unless the read model is newer,
        then mark the categories it touched for `refresh_categories`."""
        result = ApplyResult()
        newest: dict[str, ProductEvent] = {}
        touched: set[str] = set()
        for event in events:
            key = str(event.aggregate_id)
            kept = newest.get(key)
            if kept is None or kept.state.version < event.state.version:
                if kept is not None:
                    result.skipped[kept.event_type] += 1
                newest[key] = event
            else:
                result.skipped[event.event_type] += 1
            touched.add(event.state.category)
            previous = getattr(event.data, "previous", None)
            if isinstance(previous, dict) and isinstance(previous.get("category"), str):
                touched.add(previous["category"])
        if not newest:
            return result
        try:
            generation = await self._generation()
            # Every category a product leaves is named by the event that moves it
            # (data.previous), so touched categories need no read of the stored documents.
            pending = list(newest.values())
            for event, applied in zip(
                pending, await self._upsert(generation, pending), strict=True
            ):
                (result.applied if applied else result.skipped)[event.event_type] += 1
            if mark_categories:
                await self.mark_categories(touched, generation)
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc
        return result

    async def _server_is_ferretdb(self) -> bool:
        if self._ferretdb is None:
            info = await self._db.client.admin.command("buildInfo")
            self._ferretdb = "ferretdbVersion" in info
        return self._ferretdb

    async def _upsert(self, generation: Generation, events: Sequence[ProductEvent]) -> list[bool]:
        """Write each newest state unless the stored one is as new; False where it was."""
        if not events:
            return []
        if await self._server_is_ferretdb():
            return await self._upsert_one_by_one(generation, events)
        return await self._upsert_bulk(generation, events)

    async def _upsert_bulk(
        self, generation: Generation, events: Sequence[ProductEvent]
    ) -> list[bool]:
        """MongoDB: one unordered bulk write of version-guarded upserts."""
        operations = []
        for event in events:
            document = product_document(event.state)
            # A stored document at this version or newer fails the filter; the upsert then
            # collides on _id (duplicate key), which means "already applied".
            guard = {"_id": document["_id"], "version": {"$lt": event.state.version}}
            operations.append(ReplaceOne(guard, document, upsert=True))
        applied = [True] * len(operations)
        try:
            await self._db[generation.products].bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if others or exc.details.get("writeConcernErrors"):
                raise ReadModelUnavailable(f"write errors: {(others or errors)[:3]}") from exc
            for error in errors:
                applied[int(error["index"])] = False
        return applied

    async def _upsert_one_by_one(
        self, generation: Generation, events: Sequence[ProductEvent]
    ) -> list[bool]:
        """FerretDB v1: its bulk updates stop at the first error whatever `ordered` says, report
        the wrong index, and hang once as many matched updates as its connection pool holds
        are in one command. So: concurrent guarded replaces (no upsert), an insert where
        nothing matched, and a duplicate key on that insert means someone else wrote first."""
        products = self._db[generation.products]
        limit = asyncio.Semaphore(self._concurrency)

        async def write(event: ProductEvent) -> bool:
            document = product_document(event.state)
            guard = {"_id": document["_id"], "version": {"$lt": event.state.version}}
            # A first version is almost always new: try the cheap insert before the replace.
            insert_first = event.state.version == 1

            async def attempt() -> bool:
                nonlocal insert_first
                if not insert_first and (await products.replace_one(guard, document)).matched_count:
                    return True
                insert_first = False
                try:
                    await products.insert_one(document)
                    return True
                except DuplicateKeyError:
                    stored = await products.find_one({"_id": document["_id"]}, {"version": 1})
                    if stored is not None and stored["version"] >= event.state.version:
                        return False  # already applied, or superseded
                    raise WriteRaced(document["_id"]) from None

            async with limit:
                try:
                    return await WRITE_RACE.call(attempt)
                except WriteRaced as exc:
                    raise ReadModelUnavailable(f"product {exc} kept changing") from exc

        return list(await asyncio.gather(*(write(e) for e in events)))

    async def mark_categories(
        self, categories: Iterable[str], generation: Generation | None = None
    ) -> None:
        """Mark categories whose figures a batch may have changed; `refresh_categories` redoes
        them. The mark is written before the batch's offsets are committed, so a crash never
        loses it, and a steady stream of small batches costs one aggregation per category per
        refresh instead of one per batch."""
        generation = generation or await self._generation()
        collection = self._db[generation.categories]
        for name in sorted(set(categories)):
            await collection.update_one(
                {"_id": name}, {"$inc": {"_seq": 1}, "$set": {"_dirty": True}}, upsert=True
            )

    async def refresh_categories(self, generation: Generation | None = None) -> int:
        """Set each marked category to what its active product documents aggregate to.

        Several projector replicas may mark and refresh one category at once. A mark bumps the
        category's `_seq` after its products were written; a refresh reads `_seq`, aggregates,
        and writes (unmarked) only if `_seq` is still what it read. A refresh that loses was
        overtaken by a later mark, which leaves the category marked for the next refresh, whose
        aggregation begins after every product change so far: `_seq` never decreases, so no
        stale figure survives. Returns how many categories were refreshed.
        """
        generation = generation or await self._generation()
        collection = self._db[generation.categories]
        try:
            seqs = {
                doc["_id"]: doc["_seq"]
                async for doc in collection.find({"_dirty": True}, {"_seq": 1})
            }
            if not seqs:
                return 0
            figures = await self._aggregate(generation, sorted(seqs))
            for name, seq in seqs.items():
                document = figures.get(name) or {"_id": name, "product_count": 0}
                await collection.replace_one({"_id": name, "_seq": seq}, {**document, "_seq": seq})
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc
        return len(seqs)

    async def recompute_categories(
        self, categories: Iterable[str], generation: Generation | None = None
    ) -> None:
        """Mark these categories and refresh every marked one now (rebuild, reconcile)."""
        generation = generation or await self._generation()
        await self.mark_categories(categories, generation)
        await self.refresh_categories(generation)

    async def _aggregate(self, generation: Generation, names: list[str]) -> dict[str, Any]:
        """Figures of each category from its active product documents.

        One equality query per category, summed here: FerretDB v1 evaluates only the first
        accumulator of a `$group` and has no `$min`/`$max`, while plain equality filters are
        the ones it can hand down to its storage.
        """
        products = self._db[generation.products]
        figures = {}
        for name in names:
            count = in_stock = total_stock = 0
            low: int | None = None
            high: int | None = None
            async for doc in products.find(
                {"category": name, "status": "active"}, {"_id": 0, "stock": 1, "price_cents": 1}
            ):
                count += 1
                total_stock += doc["stock"]
                in_stock += doc["stock"] > 0
                cents = doc["price_cents"]
                low = cents if low is None or cents < low else low
                high = cents if high is None or cents > high else high
            if count and low is not None and high is not None:
                figures[name] = category_document(
                    name,
                    {
                        "product_count": count,
                        "total_stock": total_stock,
                        "in_stock_count": in_stock,
                        "min_price_cents": low,
                        "max_price_cents": high,
                    },
                )
        return figures


def category_document(name: str, row: dict[str, Any]) -> dict[str, Any]:
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
