"""One adapter per MongoDB wire-protocol server, chosen once at start.

MongoDB and FerretDB v1 speak the same protocol differently: FerretDB's bulk writes stop at
the first error whatever `ordered` says and report the wrong index, its `$group` computes only
the first accumulator and lacks `$min`/`$max`, it fails a multi-index request when some
indexes exist, and it updates a document by reading it and writing it back (two concurrent
updates of one document can lose one). The read models call this adapter and never branch on
the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pymongo import IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from catalog_read_models.generations import Db
from service_runtime.retry import Backoff

DUPLICATE_KEY = 11000
Collection = AsyncCollection[dict[str, Any]]
StoreKind = Literal["auto", "mongodb", "ferretdb"]


class ReadModelUnavailable(Exception):
    """MongoDB failed in a way worth retrying; nothing may be assumed written."""


class WriteRaced(Exception):
    """Another writer changed the document between this writer's read and its write."""


# A raced guarded write is tried again at once: the other writer has finished by then.
WRITE_RACE = Backoff("guarded write", retry_on=(WriteRaced,), first_wait=0, max_attempts=5)


@dataclass(frozen=True, slots=True)
class GuardedWrite:
    """Set `fields` on document `id` unless it is at `version` or newer (`or_same`: newer)."""

    id: str
    version: int
    fields: Mapping[str, Any]
    # Written only when the document is new (e.g. rating figures that other writes own).
    on_insert: Mapping[str, Any] = field(default_factory=dict)
    # A repair rewrites a document of the same version whose fields were corrupted.
    or_same: bool = False

    @property
    def guard(self) -> dict[str, Any]:
        """The filter that matches only a document this write may change."""
        return {"_id": self.id, "version": {"$lte" if self.or_same else "$lt": self.version}}

    @property
    def document(self) -> dict[str, Any]:
        """The whole document, when there is none yet."""
        return {"_id": self.id, **self.on_insert, **self.fields, "version": self.version}


class Store(Protocol):
    """What the read models need from the server beyond plain reads and single writes."""

    async def create_indexes(self, collection: Collection, indexes: Sequence[IndexModel]) -> None:
        """Create these indexes (existing ones stay)."""

    async def guarded_writes(
        self, collection: Collection, writes: Sequence[GuardedWrite]
    ) -> list[bool]:
        """Apply each write unless the stored document is as new; False where it was."""

    async def category_figures(
        self, products: Collection, names: Iterable[str]
    ) -> dict[str, dict[str, int]]:
        """Per category with active products: product_count, in_stock_count, total_stock,
        min_price_cents, max_price_cents of its active product documents."""

    async def find_by_ids(
        self,
        collection: Collection,
        ids: Iterable[str],
        projection: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The documents of these ids that exist."""

    def shared_write(self) -> AbstractAsyncContextManager[object]:
        """Held around each conditional write to a document that writers of every partition
        change (a category's), so that none of them is lost."""


class MongoStore:
    """MongoDB: unordered bulk writes and one `$group` for category figures."""

    def shared_write(self) -> AbstractAsyncContextManager[object]:
        """Nothing to hold: MongoDB applies each single-document update atomically."""
        return contextlib.nullcontext()

    async def find_by_ids(
        self,
        collection: Collection,
        ids: Iterable[str],
        projection: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """One `$in` query."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        return [d async for d in collection.find({"_id": {"$in": wanted}}, projection)]

    async def create_indexes(self, collection: Collection, indexes: Sequence[IndexModel]) -> None:
        """Create these indexes in one request."""
        if indexes:
            await collection.create_indexes(list(indexes))

    async def guarded_writes(
        self, collection: Collection, writes: Sequence[GuardedWrite]
    ) -> list[bool]:
        """One unordered bulk write of version-guarded upserts."""
        if not writes:
            return []
        operations = []
        for write in writes:
            update: dict[str, Any] = {"$set": {**write.fields, "version": write.version}}
            if write.on_insert:
                update["$setOnInsert"] = dict(write.on_insert)
            # A stored document at this version or newer fails the filter; the upsert then
            # collides on _id (duplicate key), which means "already applied".
            operations.append(UpdateOne(write.guard, update, upsert=True))
        applied = [True] * len(operations)
        try:
            await collection.bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if others or exc.details.get("writeConcernErrors"):
                raise ReadModelUnavailable(f"write errors: {(others or errors)[:3]}") from exc
            for error in errors:
                applied[int(error["index"])] = False
        return applied

    async def category_figures(
        self, products: Collection, names: Iterable[str]
    ) -> dict[str, dict[str, int]]:
        """One aggregation over the active products of these categories."""
        cursor = await products.aggregate(
            [
                {"$match": {"status": "active", "category": {"$in": sorted(set(names))}}},
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
        )
        return {row.pop("_id"): row async for row in cursor}


class FerretStore:
    """FerretDB v1: one write per document, figures summed here from equality queries."""

    def __init__(self, concurrency: int = 16) -> None:
        self._concurrency = concurrency
        self._shared = asyncio.Lock()

    def shared_write(self) -> AbstractAsyncContextManager[object]:
        """This process's writes to shared documents one at a time: FerretDB v1 updates a
        document by reading it and writing it back, so two updates of one document at once can
        lose one (a category mark overwritten by a refresh that read before it). Writers in
        other processes are not covered: locally one projector runs."""
        return self._shared

    async def find_by_ids(
        self,
        collection: Collection,
        ids: Iterable[str],
        projection: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """One equality query per id, concurrently: FerretDB pushes down only equality
        filters, so an `$in` would read the whole collection."""
        limit = asyncio.Semaphore(self._concurrency)

        async def one(key: str) -> dict[str, Any] | None:
            async with limit:
                return await collection.find_one({"_id": key}, projection)

        found = await asyncio.gather(*(one(key) for key in sorted(set(ids))))
        return [d for d in found if d is not None]

    async def create_indexes(self, collection: Collection, indexes: Sequence[IndexModel]) -> None:
        """One index per request: a request naming an existing index fails as a whole."""
        for index in indexes:
            await collection.create_indexes([index])

    async def guarded_writes(
        self, collection: Collection, writes: Sequence[GuardedWrite]
    ) -> list[bool]:
        """Concurrent guarded updates (no upsert: its bulk and upsert paths misbehave under
        load), an insert where nothing matched, and a duplicate key on that insert means
        someone else wrote first."""
        limit = asyncio.Semaphore(self._concurrency)

        async def write(item: GuardedWrite) -> bool:
            # A first version is almost always new: try the cheap insert before the update.
            insert_first = item.version == 1
            update = {"$set": {**item.fields, "version": item.version}}

            async def attempt() -> bool:
                nonlocal insert_first
                if (
                    not insert_first
                    and (await collection.update_one(item.guard, update)).matched_count
                ):
                    return True
                insert_first = False
                try:
                    await collection.insert_one(item.document)
                    return True
                except DuplicateKeyError:
                    stored = await collection.find_one({"_id": item.id}, {"version": 1})
                    if stored is not None and not (
                        stored["version"] < item.version
                        or (item.or_same and stored["version"] == item.version)
                    ):
                        return False  # already applied, or superseded
                    raise WriteRaced(item.id) from None

            async with limit:
                try:
                    return await WRITE_RACE.call(attempt)
                except WriteRaced as exc:
                    raise ReadModelUnavailable(f"document {exc} kept changing") from exc

        return list(await asyncio.gather(*(write(w) for w in writes)))

    async def category_figures(
        self, products: Collection, names: Iterable[str]
    ) -> dict[str, dict[str, int]]:
        """One equality query per category, summed here: FerretDB v1 evaluates only the first
        accumulator of a `$group` and has no `$min`/`$max`, while plain equality filters are
        the ones it can hand down to its storage."""
        result = {}
        for name in sorted(set(names)):
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
                result[name] = {
                    "product_count": count,
                    "in_stock_count": in_stock,
                    "total_stock": total_stock,
                    "min_price_cents": low,
                    "max_price_cents": high,
                }
        return result


async def open_store(db: Db, kind: StoreKind = "auto") -> Store:
    """The adapter for the server behind `db` (`auto`: FerretDB says so in `buildInfo`)."""
    if kind == "auto":
        try:
            info = await db.client.admin.command("buildInfo")
        except PyMongoError as exc:
            raise ReadModelUnavailable(f"cannot tell the server: {exc}") from exc
        kind = "ferretdb" if "ferretdb" in info or "ferretdbVersion" in info else "mongodb"
    return FerretStore() if kind == "ferretdb" else MongoStore()
