"""MongoDB read-model writers: version-guarded product upserts and exact category figures.

Written for MongoDB and for FerretDB v1 alike. FerretDB v1 lacks `$min`/`$max` in `$group`,
computes only the first of several accumulators, and stops an unordered bulk write at its first
error; each of these is handled here rather than assumed away.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from catalog_contracts.events import ProductEvent
from catalog_contracts.money import cents_to_price, format_price
from catalog_contracts.read_models import (
    GENERATION_POINTER_ID,
    META_COLLECTION,
    Generation,
    generation_from_pointer,
    product_document,
)

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

Db = AsyncDatabase[dict[str, Any]]
GenerationSource = Callable[[], Awaitable[Generation]]


class ReadModelUnavailable(Exception):
    """MongoDB failed in a way worth retrying; nothing may be assumed written."""


@dataclass
class ApplyResult:
    """Per event type: how many events changed the read model and how many it already had."""

    applied: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)


def live_generation(db: Db) -> GenerationSource:
    """Resolve the live generation from its pointer document (read once per batch)."""

    async def resolve() -> Generation:
        return generation_from_pointer(
            await db[META_COLLECTION].find_one({"_id": GENERATION_POINTER_ID})
        )

    return resolve


def fixed_generation(generation: Generation) -> GenerationSource:
    async def resolve() -> Generation:
        return generation

    return resolve


class ReadModelWriter:
    """Applies batches of events to one generation of read models, idempotently."""

    def __init__(self, db: Db, generation: GenerationSource | None = None) -> None:
        self._db = db
        self._generation = generation or live_generation(db)

    async def ensure_indexes(self) -> None:
        try:
            products = self._db[(await self._generation()).products]
            # One at a time: FerretDB v1 fails a multi-index request when some already exist.
            for index in PRODUCT_INDEXES:
                await products.create_indexes([index])
        except PyMongoError as exc:
            raise ReadModelUnavailable(f"cannot create indexes: {exc}") from exc

    async def apply(
        self, events: Sequence[ProductEvent], *, recompute_categories: bool = True
    ) -> ApplyResult:
        """Upsert each product's newest state from the batch unless the read model is newer."""
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
            products = self._db[generation.products]
            stored: dict[str, int] = {}
            async for doc in products.find(
                {"_id": {"$in": list(newest)}}, {"version": 1, "category": 1}
            ):
                stored[doc["_id"]] = doc["version"]
                # The category a document is in now, in case this batch moves it elsewhere.
                touched.add(doc["category"])
            pending = []
            for key, event in newest.items():
                if stored.get(key, 0) < event.state.version:
                    pending.append(event)
                else:
                    result.skipped[event.event_type] += 1
            for event, applied in zip(
                pending, await self._upsert(generation, pending), strict=True
            ):
                (result.applied if applied else result.skipped)[event.event_type] += 1
            if recompute_categories:
                await self.recompute_categories(touched, generation)
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc
        return result

    async def _upsert(self, generation: Generation, events: Sequence[ProductEvent]) -> list[bool]:
        """Version-guarded upserts in unordered writes; False where the stored one was newer."""
        updates = []
        for event in events:
            document = product_document(event.state)
            # A stored document at this version or newer fails the filter; the upsert then
            # collides on _id (duplicate key), which means "already applied".
            updates.append(
                {
                    "q": {"_id": document["_id"], "version": {"$lt": event.state.version}},
                    "u": document,
                    "upsert": True,
                }
            )
        applied = [True] * len(updates)
        start = 0
        while start < len(updates):
            reply = await self._db.command(
                {"update": generation.products, "updates": updates[start:], "ordered": False}
            )
            if reply.get("writeConcernError"):
                raise ReadModelUnavailable(f"write concern failed: {reply['writeConcernError']}")
            errors = reply.get("writeErrors") or []
            others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if others:
                raise ReadModelUnavailable(f"write errors: {others[:3]}")
            for error in errors:
                applied[start + int(error["index"])] = False
            if len(errors) != 1:
                break
            # One error may mean the server stopped there (FerretDB v1 does, even unordered):
            # resubmitting the rest is harmless, as every write is version-guarded.
            start += int(errors[0]["index"]) + 1
        return applied

    async def recompute_categories(
        self, categories: Iterable[str], generation: Generation | None = None
    ) -> None:
        """Set each category document to what its active product documents aggregate to.

        Several projector replicas may recompute one category at once. Each bumps the
        category's `_seq` after writing its products, reads it, aggregates, and writes only if
        `_seq` is still what it read. A writer that loses was overtaken by a later bump, whose
        author writes figures from an aggregation that began after every product change so far;
        `_seq` never decreases, so the last bumper always wins and no stale figure survives.
        """
        generation = generation or await self._generation()
        names = sorted(set(categories))
        if not names:
            return
        collection = self._db[generation.categories]
        for name in names:
            await collection.update_one({"_id": name}, {"$inc": {"_seq": 1}}, upsert=True)
        seqs = {
            doc["_id"]: doc["_seq"]
            async for doc in collection.find({"_id": {"$in": names}}, {"_seq": 1})
        }
        figures = await self._aggregate(generation, names)
        for name in names:
            document = figures.get(name) or {"_id": name, "product_count": 0}
            # No match: someone bumped `_seq` after we read it and will write fresher figures.
            await collection.replace_one(
                {"_id": name, "_seq": seqs[name]}, {**document, "_seq": seqs[name]}
            )

    async def _aggregate(self, generation: Generation, names: list[str]) -> dict[str, Any]:
        products = self._db[generation.products]
        active = {"category": {"$in": names}, "status": "active"}
        # One accumulator per pipeline: FerretDB v1 computes only the first of several.
        counts = await self._sum_by_category(products, active, 1)
        stock = await self._sum_by_category(products, active, "$stock")
        in_stock = await self._sum_by_category(products, {**active, "in_stock": True}, 1)
        figures = {}
        for name, count in counts.items():
            where = {"category": name, "status": "active"}
            cheapest = await products.find_one(
                where, {"price_cents": 1}, sort=[("price_cents", ASCENDING)]
            )
            dearest = await products.find_one(
                where, {"price_cents": 1}, sort=[("price_cents", DESCENDING)]
            )
            if cheapest is None or dearest is None:
                continue  # emptied meanwhile; the change that emptied it recomputes it
            figures[name] = category_document(
                name,
                {
                    "product_count": count,
                    "total_stock": stock.get(name, 0),
                    "in_stock_count": in_stock.get(name, 0),
                    "min_price_cents": cheapest["price_cents"],
                    "max_price_cents": dearest["price_cents"],
                },
            )
        return figures

    @staticmethod
    async def _sum_by_category(products: Any, match: dict[str, Any], value: Any) -> dict[str, int]:
        cursor = await products.aggregate(
            [{"$match": match}, {"$group": {"_id": "$category", "v": {"$sum": value}}}]
        )
        return {row["_id"]: int(row["v"]) async for row in cursor}


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
