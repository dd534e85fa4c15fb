"""Queries over the read models; the only place the query side touches MongoDB."""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from catalog_contracts.money import MAX_PRICE, price_to_cents
from catalog_contracts.read_models import (
    CATEGORIES_COLLECTION,
    GENERATION_POINTER_ID,
    META_COLLECTION,
    PRODUCT_DETAIL_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    REVIEWS_COLLECTION,
    Generation,
    generation_from_pointer,
    list_index,
)
from query_service.ports import (
    InvalidCursor,
    Page,
    ReadModelUnavailable,
    ReviewSortKey,
    SortKey,
)
from query_service.ports import ProductFilter as ProductFilter  # callers still name it here
from query_service.windows import AXES, Window, Windows

Collection = AsyncCollection[dict[str, Any]]

MAX_PRICE_CENTS = price_to_cents(MAX_PRICE)
# An average of 5.00 in hundredths; -1 marks a product without reviews.
MAX_RATING_SORT = 500


@dataclass(frozen=True, slots=True)
class Order:
    """A total order of documents: `field` in `direction`, then `_id` ascending.

    `low`/`high` bound an integer field; a field without them holds text. A cursor carrying
    anything else was not issued by this API.
    """

    field: str
    direction: int
    low: int | None = None
    high: int | None = None


# list sort key -> order of product_list documents
SORTS: dict[str, Order] = {
    "name": Order("name", ASCENDING),
    "-name": Order("name", DESCENDING),
    "price": Order("price_cents", ASCENDING, 0, MAX_PRICE_CENTS),
    "-price": Order("price_cents", DESCENDING, 0, MAX_PRICE_CENTS),
    "-updated_at": Order("updated_at", DESCENDING),
    "-rating": Order("rating_sort", DESCENDING, -1, MAX_RATING_SORT),
}

# review sort key -> order of one product's review documents
REVIEW_SORTS: dict[str, Order] = {
    "-created_at": Order("created_at", DESCENDING),
    "-rating": Order("rating", DESCENDING, 1, 5),
    "rating": Order("rating", ASCENDING, 1, 5),
}

LIST_PROJECTION = {
    "_id": 1,
    "name": 1,
    "price": 1,
    "in_stock": 1,
    "category": 1,
    "rating_average": 1,
    "rating_count": 1,
    "price_cents": 1,
    "updated_at": 1,
    "rating_sort": 1,
}

REVIEW_PROJECTION = {
    "_id": 1,
    "rating": 1,
    "title": 1,
    "body": 1,
    "author": 1,
    "created_at": 1,
}


def review_cursor_tag(sort: str) -> str:
    """What a reviews cursor names its order by: review and list sorts share the key `-rating`."""
    return f"reviews:{sort}"


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


def encode_cursor(tag: str, value: Any, last_id: str) -> str:
    """The opaque cursor of the page after the document (`value` of the sort field, `last_id`)."""
    raw = orjson.dumps({"s": tag, "v": value, "i": last_id})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, tag: str, order: Order) -> tuple[Any, str]:
    """The sort-field value and id a cursor resumes after; `InvalidCursor` if not ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidCursor("cursor is not one this API issued") from None
    if not isinstance(data, dict) or data.get("s") != tag:
        raise InvalidCursor("cursor belongs to another sort order")
    value, last_id = data.get("v"), data.get("i")
    if not isinstance(last_id, str) or not _is_uuid(last_id) or not _fits(order, value):
        raise InvalidCursor("cursor is not one this API issued")
    if order.field in AXES:
        try:
            AXES[order.field].key(value)  # a position its windows start from
        except (ValueError, OverflowError):
            raise InvalidCursor("cursor is not one this API issued") from None
    return value, last_id


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _fits(order: Order, value: object) -> bool:
    if order.low is None or order.high is None:
        # A text sort key never holds a NUL (PostgreSQL text cannot): a cursor with one is forged.
        return isinstance(value, str) and "\x00" not in value
    # Out of range would be a forgery, and past BSON's int64 the driver could not encode it.
    return type(value) is int and order.low <= value <= order.high


async def _find(
    collection: Collection,
    query: dict[str, Any],
    projection: dict[str, int],
    order: Order,
    limit: int,
    hint: list[tuple[str, int]] | None,
) -> list[dict[str, Any]]:
    """One sorted read, through `hint`'s index; without it where the index does not exist (a
    generation whose indexes were never made answers slowly rather than not at all)."""
    found = (
        collection.find(query, projection)
        .sort([(order.field, order.direction), ("_id", ASCENDING)])
        .limit(limit)
    )
    if hint is None:
        return [doc async for doc in found]
    try:
        return [doc async for doc in found.hint(hint)]
    except OperationFailure as exc:
        if "hint" not in str(exc).lower():
            raise
        return await _find(collection, query, projection, order, limit, None)


@dataclass(frozen=True, slots=True)
class Windowed:
    """Read a page in windows of its sort key (query_service.windows), learned per `shape`."""

    windows: Windows
    shape: Hashable


async def _page(
    collection: Collection,
    query: dict[str, Any],
    projection: dict[str, int],
    order: Order,
    *,
    tag: str,
    limit: int,
    after: tuple[Any, str] | None,
    windowed: Windowed | None = None,
) -> Page:
    if after is not None:
        value, last_id = after
        beyond = "$gt" if order.direction == ASCENDING else "$lt"
        resume = {
            "$or": [{order.field: {beyond: value}}, {order.field: value, "_id": {"$gt": last_id}}]
        }
        query = {**query, "$and": [resume]}
    axis = AXES.get(order.field) if windowed is not None else None
    ascending = order.direction == ASCENDING
    start = None if axis is None or after is None else axis.key(after[0])
    plan: Iterable[Window] = [Window(None, None)]
    hint = None
    if windowed is not None and axis is not None:
        plan = windowed.windows.plan(windowed.shape, start, ascending)
        # Through the sort key's index, the window's or not: a planner that estimates another
        # filter (a price range, say) as narrower would read all it matches, not the window;
        # and no index holds the status every list filters on.
        hint = list_index(axis.field, by_category="category" in query)
    documents: list[dict[str, Any]] = []
    try:
        for window in plan:
            condition = window.condition(axis, ascending) if axis is not None else {}
            bounded = {**query, "$and": [*query.get("$and", []), condition]} if condition else query
            wanted = limit + 1 - len(documents)
            documents += await _find(collection, bounded, projection, order, wanted, hint)
            if len(documents) > limit:
                break
    except PyMongoError as exc:
        raise ReadModelUnavailable(str(exc)) from exc
    next_cursor = None
    if len(documents) > limit:
        if windowed is not None and axis is not None:
            first, last = (axis.key(d[order.field]) for d in (documents[0], documents[limit]))
            windowed.windows.learn(windowed.shape, start, first, last)
        documents = documents[:limit]
        last_document = documents[-1]
        next_cursor = encode_cursor(tag, last_document[order.field], last_document["_id"])
    return Page(documents, next_cursor)


class ProductReadModel:
    """Reads of the live generation of the product, review and category read models."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], *, refresh_seconds: float = 1.0) -> None:
        self._db = db
        self._refresh = refresh_seconds
        # How far pages of each list shape reached: where the next one's windows end.
        self._windows = Windows()
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

    async def _collection(self, logical: str) -> Collection:
        generation = await self.generation()
        return self._db[generation.collection(logical)]

    async def get(self, product_id: str) -> dict[str, Any] | None:
        """The product's detail document, or None."""
        details = await self._collection(PRODUCT_DETAIL_COLLECTION)
        try:
            document: dict[str, Any] | None = await details.find_one({"_id": product_id})
            return document
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc

    async def get_many(self, product_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The detail documents of those products that have one, by id, in one query."""
        ids = sorted(set(product_ids))
        if not ids:
            return {}
        details = await self._collection(PRODUCT_DETAIL_COLLECTION)
        try:
            found = details.find({"_id": {"$in": ids}})
            return {doc["_id"]: doc async for doc in found}
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc

    async def list_products(
        self, where: ProductFilter, *, sort: SortKey, limit: int, cursor: str | None
    ) -> Page:
        """One page of list documents in a total order (sort field, then id), after `cursor`."""
        order = SORTS[sort]
        after = None if cursor is None else decode_cursor(cursor, sort, order)
        products = await self._collection(PRODUCT_LIST_COLLECTION)
        return await _page(
            products,
            mongo_filter(where),
            LIST_PROJECTION,
            order,
            tag=sort,
            limit=limit,
            after=after,
            windowed=Windowed(self._windows, (sort, where)),
        )

    async def reviews(
        self, product_id: str, *, sort: ReviewSortKey, limit: int, cursor: str | None
    ) -> Page | None:
        """One page of the product's published reviews, or None without its detail document."""
        order, tag = REVIEW_SORTS[sort], review_cursor_tag(sort)
        after = None if cursor is None else decode_cursor(cursor, tag, order)
        details = await self._collection(PRODUCT_DETAIL_COLLECTION)
        try:
            known = await details.find_one({"_id": product_id}, {"_id": 1})
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc
        if known is None:
            return None
        reviews = await self._collection(REVIEWS_COLLECTION)
        # Equalities only, so an index on (product_id, status, ...) serves the filter.
        published = {"product_id": product_id, "status": "published"}
        return await _page(
            reviews, published, REVIEW_PROJECTION, order, tag=tag, limit=limit, after=after
        )

    async def categories(self) -> list[dict[str, Any]]:
        """The category documents with at least one active product, by category name."""
        categories = await self._collection(CATEGORIES_COLLECTION)
        try:
            found = categories.find({"product_count": {"$gt": 0}}).sort("_id", ASCENDING)
            return [doc async for doc in found]
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc

    async def ping(self) -> None:
        """Return once MongoDB answers a ping."""
        await self._db.command("ping")
