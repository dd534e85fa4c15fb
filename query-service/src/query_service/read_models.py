"""Queries over the read models; the only place the query side touches MongoDB."""

from __future__ import annotations

import base64
import binascii
import re
import time
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from catalog_contracts.money import MAX_PRICE, price_to_cents
from catalog_contracts.read_models import (
    GENERATION_POINTER_ID,
    META_COLLECTION,
    Generation,
    generation_from_pointer,
)
from query_service.ports import InvalidCursor, Page, ReadModelUnavailable, SortKey
from query_service.ports import ProductFilter as ProductFilter  # callers still name it here

# sort key -> (document field, direction)
SORTS: dict[str, tuple[str, int]] = {
    "name": ("name", ASCENDING),
    "-name": ("name", DESCENDING),
    "price": ("price_cents", ASCENDING),
    "-price": ("price_cents", DESCENDING),
    "-updated_at": ("updated_at", DESCENDING),
}

LIST_PROJECTION = {
    "_id": 1,
    "name": 1,
    "price": 1,
    "in_stock": 1,
    "category": 1,
    "price_cents": 1,
    "updated_at": 1,
}

MAX_PRICE_CENTS = price_to_cents(MAX_PRICE)


def mongo_filter(where: ProductFilter) -> dict[str, Any]:
    """A MongoDB filter in which every user value is a literal, never an operator."""
    query: dict[str, Any] = {"status": where.status}
    if where.category is not None:
        query["category"] = where.category
    if where.in_stock is not None:
        query["in_stock"] = where.in_stock
    price: dict[str, int] = {}
    if where.min_price_cents is not None:
        price["$gte"] = where.min_price_cents
    if where.max_price_cents is not None:
        price["$lte"] = where.max_price_cents
    if price:
        query["price_cents"] = price
    if where.q:
        pattern = re.escape(where.q)
        query["$or"] = [
            {"name": {"$regex": pattern, "$options": "i"}},
            {"description": {"$regex": pattern, "$options": "i"}},
        ]
    return query


def encode_cursor(sort: str, value: Any, last_id: str) -> str:
    """The opaque cursor of the page after the document (`value` of the sort field, `last_id`)."""
    raw = orjson.dumps({"s": sort, "v": value, "i": last_id})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, sort: str) -> tuple[Any, str]:
    """The sort-field value and id a cursor resumes after; `InvalidCursor` if not ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidCursor("cursor is not one this API issued") from None
    if not isinstance(data, dict) or data.get("s") != sort or not isinstance(data.get("i"), str):
        raise InvalidCursor("cursor belongs to another sort order")
    value = data.get("v")
    field, _ = SORTS[sort]
    expected = int if field == "price_cents" else str
    if not isinstance(value, expected) or isinstance(value, bool):
        raise InvalidCursor("cursor is not one this API issued")
    # A forged integer past BSON's int64 would fail to encode in the driver (a 500, not a 422).
    if isinstance(value, int) and not 0 <= value <= MAX_PRICE_CENTS:
        raise InvalidCursor("cursor is not one this API issued")
    return value, data["i"]


class ProductReadModel:
    """Reads of the live generation of the `products` and `categories` collections."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], *, refresh_seconds: float = 1.0) -> None:
        self._db = db
        self._refresh = refresh_seconds
        self._generation: Generation | None = None
        self._resolved_at = 0.0

    async def generation(self) -> Generation:
        """The live generation, re-read from its pointer at most every `refresh_seconds`."""
        now = time.monotonic()
        if self._generation is None or now - self._resolved_at >= self._refresh:
            try:
                pointer = await self._db[META_COLLECTION].find_one({"_id": GENERATION_POINTER_ID})
            except PyMongoError as exc:
                raise ReadModelUnavailable(str(exc)) from exc
            self._generation = generation_from_pointer(pointer)
            self._resolved_at = now
        return self._generation

    async def _collections(self) -> tuple[Any, Any]:
        generation = await self.generation()
        return self._db[generation.products], self._db[generation.categories]

    async def get(self, product_id: str) -> dict[str, Any] | None:
        """The product document with this id, or None."""
        products, _ = await self._collections()
        try:
            document: dict[str, Any] | None = await products.find_one({"_id": product_id})
            return document
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc

    async def list_products(
        self, where: ProductFilter, *, sort: SortKey, limit: int, cursor: str | None
    ) -> Page:
        """One page in a total order (sort field, then id), resuming after `cursor`."""
        field, direction = SORTS[sort]
        query = mongo_filter(where)
        if cursor is not None:
            value, last_id = decode_cursor(cursor, sort)
            beyond = "$gt" if direction == ASCENDING else "$lt"
            after = {"$or": [{field: {beyond: value}}, {field: value, "_id": {"$gt": last_id}}]}
            query = {"$and": [query, after]}
        products, _ = await self._collections()
        try:
            found = (
                products.find(query, LIST_PROJECTION)
                .sort([(field, direction), ("_id", ASCENDING)])
                .limit(limit + 1)
            )
            documents = [doc async for doc in found]
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc
        next_cursor = None
        if len(documents) > limit:
            documents = documents[:limit]
            last = documents[-1]
            next_cursor = encode_cursor(sort, last[field], last["_id"])
        return Page(documents, next_cursor)

    async def categories(self) -> list[dict[str, Any]]:
        """The category documents with at least one active product, by category name."""
        _, categories = await self._collections()
        try:
            found = categories.find({"product_count": {"$gt": 0}}).sort("_id", ASCENDING)
            return [doc async for doc in found]
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc

    async def ping(self) -> None:
        """Return once MongoDB answers a ping."""
        await self._db.command("ping")
