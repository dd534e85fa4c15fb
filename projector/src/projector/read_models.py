"""MongoDB read-model writers: version-guarded product upserts and category recomputation."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from catalog_contracts.events import ProductEvent
from catalog_contracts.money import cents_to_price, format_price
from catalog_contracts.read_models import (
    CATEGORIES_COLLECTION,
    PRODUCTS_COLLECTION,
    product_document,
)
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

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


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int
    skipped: int


class ReadModelWriter:
    """Applies batches of events to the `products` and `categories` collections, idempotently.

    Written for MongoDB and for FerretDB v1, which lacks `$min`/`$max` in `$group` and stops an
    unordered bulk write at its first error; both behaviours are handled here, not assumed away.
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._db = db
        self._products = db[PRODUCTS_COLLECTION]
        self._categories = db[CATEGORIES_COLLECTION]

    async def ensure_indexes(self) -> None:
        try:
            # One at a time: FerretDB v1 fails a multi-index request when some already exist.
            for index in PRODUCT_INDEXES:
                await self._products.create_indexes([index])
        except PyMongoError as exc:
            raise ReadModelUnavailable(f"cannot create indexes: {exc}") from exc

    async def apply(self, events: Sequence[ProductEvent]) -> ApplyResult:
        """Upsert each product's newest state from the batch unless the read model is newer."""
        newest: dict[str, ProductEvent] = {}
        touched: set[str] = set()
        for event in events:
            key = str(event.aggregate_id)
            kept = newest.get(key)
            if kept is None or kept.state.version < event.state.version:
                newest[key] = event
            touched.add(event.state.category)
            previous = getattr(event.data, "previous", None)
            if isinstance(previous, dict) and isinstance(previous.get("category"), str):
                touched.add(previous["category"])
        if not newest:
            return ApplyResult(0, 0)
        try:
            stored: dict[str, int] = {}
            async for doc in self._products.find(
                {"_id": {"$in": list(newest)}}, {"version": 1, "category": 1}
            ):
                stored[doc["_id"]] = doc["version"]
                # The category a document is in now, in case this batch moves it elsewhere.
                touched.add(doc["category"])
            pending = [e for k, e in newest.items() if stored.get(k, 0) < e.state.version]
            raced = await self._upsert(pending)
            await self.recompute_categories(touched)
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc
        applied = len(pending) - raced
        return ApplyResult(applied, len(events) - applied)

    async def _upsert(self, events: Sequence[ProductEvent]) -> int:
        """Version-guarded upserts in one unordered write; returns how many were already newer."""
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
        duplicates = 0
        start = 0
        while start < len(updates):
            reply = await self._db.command(
                {"update": PRODUCTS_COLLECTION, "updates": updates[start:], "ordered": False}
            )
            if reply.get("writeConcernError"):
                raise ReadModelUnavailable(f"write concern failed: {reply['writeConcernError']}")
            errors = reply.get("writeErrors") or []
            others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if others:
                raise ReadModelUnavailable(f"write errors: {others[:3]}")
            duplicates += len(errors)
            if len(errors) != 1:
                break
            # One error may mean the server stopped there (FerretDB v1 does, even unordered):
            # resubmitting the rest is harmless, as every write is version-guarded.
            start += int(errors[0]["index"]) + 1
        return duplicates

    async def _sum_by_category(self, match: dict[str, Any], value: Any) -> dict[str, int]:
        cursor = await self._products.aggregate(
            [{"$match": match}, {"$group": {"_id": "$category", "v": {"$sum": value}}}]
        )
        return {row["_id"]: int(row["v"]) async for row in cursor}

    async def recompute_categories(self, categories: Iterable[str]) -> None:
        """Set each category document to what the active product documents aggregate to."""
        names = sorted(set(categories))
        if not names:
            return
        active = {"category": {"$in": names}, "status": "active"}
        # One accumulator per pipeline: FerretDB v1 computes only the first of several.
        product_count = await self._sum_by_category(active, 1)
        total_stock = await self._sum_by_category(active, "$stock")
        in_stock = await self._sum_by_category({**active, "in_stock": True}, 1)
        totals = {
            name: {"product_count": count, "total_stock": total_stock.get(name, 0)}
            for name, count in product_count.items()
        }
        for name in names:
            row = totals.get(name)
            if row is None:
                await self._categories.delete_one({"_id": name})
                continue
            where = {"category": name, "status": "active"}
            cheapest = await self._products.find_one(
                where, {"price_cents": 1}, sort=[("price_cents", ASCENDING)]
            )
            dearest = await self._products.find_one(
                where, {"price_cents": 1}, sort=[("price_cents", DESCENDING)]
            )
            if cheapest is None or dearest is None:
                continue  # changed underneath; the next batch touching it recomputes it
            row = {
                **row,
                "in_stock_count": in_stock.get(name, 0),
                "min_price_cents": cheapest["price_cents"],
                "max_price_cents": dearest["price_cents"],
            }
            await self._categories.replace_one(
                {"_id": name}, category_document(name, row), upsert=True
            )


def category_document(name: str, row: dict[str, Any]) -> dict[str, Any]:
    """The category read document of one aggregation row."""
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
