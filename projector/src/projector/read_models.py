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
from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

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
    IndexModel([("category", ASCENDING), ("status", ASCENDING)], name="category_status"),
]


class ReadModelUnavailable(Exception):
    """MongoDB failed in a way worth retrying; nothing may be assumed written."""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int
    skipped: int


class ReadModelWriter:
    """Applies batches of events to the `products` and `categories` collections, idempotently."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._db = db
        self._products = db[PRODUCTS_COLLECTION]
        self._categories = db[CATEGORIES_COLLECTION]

    async def ensure_indexes(self) -> None:
        try:
            await self._products.create_indexes(PRODUCT_INDEXES)
        except PyMongoError as exc:
            raise ReadModelUnavailable(f"cannot create indexes: {exc}") from exc

    async def apply(self, events: Sequence[ProductEvent]) -> ApplyResult:
        """Upsert each product's newest state from the batch unless the read model is newer."""
        newest: dict[str, ProductEvent] = {}
        touched_categories: set[str] = set()
        for event in events:
            key = str(event.aggregate_id)
            kept = newest.get(key)
            if kept is None or kept.state.version < event.state.version:
                newest[key] = event
            touched_categories.add(event.state.category)
            previous = getattr(event.data, "previous", None)
            if isinstance(previous, dict) and isinstance(previous.get("category"), str):
                touched_categories.add(previous["category"])
        if not newest:
            return ApplyResult(0, 0)
        try:
            # Categories the stored documents are in now, in case a move is applied here.
            async for doc in self._products.find({"_id": {"$in": list(newest)}}, {"category": 1}):
                touched_categories.add(doc["category"])
            skipped_in_db = await self._upsert([e for e in newest.values()])
            await self.recompute_categories(touched_categories)
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc
        superseded = len(events) - len(newest)
        return ApplyResult(len(newest) - skipped_in_db, superseded + skipped_in_db)

    async def _upsert(self, events: Iterable[ProductEvent]) -> int:
        operations = []
        for event in events:
            document = product_document(event.state)
            # A document at this version or newer fails the filter; the upsert then collides on
            # _id (duplicate key), which means "already applied".
            operations.append(
                ReplaceOne(
                    {"_id": document["_id"], "version": {"$lt": event.state.version}},
                    document,
                    upsert=True,
                )
            )
        try:
            await self._products.bulk_write(operations, ordered=False)
            return 0
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if others or exc.details.get("writeConcernErrors"):
                raise
            return len(errors)

    async def recompute_categories(self, categories: Iterable[str]) -> None:
        """Set each category document to what the active product documents aggregate to."""
        names = sorted(set(categories))
        if not names:
            return
        pipeline: list[dict[str, Any]] = [
            {"$match": {"category": {"$in": names}, "status": "active"}},
            {
                "$group": {
                    "_id": "$category",
                    "product_count": {"$sum": 1},
                    "in_stock_count": {"$sum": {"$cond": [{"$gt": ["$stock", 0]}, 1, 0]}},
                    "total_stock": {"$sum": "$stock"},
                    "min_price_cents": {"$min": "$price_cents"},
                    "max_price_cents": {"$max": "$price_cents"},
                }
            },
        ]
        found: dict[str, dict[str, Any]] = {}
        cursor = await self._products.aggregate(pipeline)
        async for row in cursor:
            found[row["_id"]] = row
        for name in names:
            row = found.get(name)
            if row is None:
                await self._categories.delete_one({"_id": name})
                continue
            document = category_document(name, row)
            await self._categories.replace_one({"_id": name}, document, upsert=True)


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
