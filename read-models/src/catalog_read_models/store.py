"""One adapter per MongoDB wire-protocol server, chosen once at start.

Production runs MongoDB; the local stack runs DocumentDB (PostgreSQL extensions behind a
MongoDB wire-protocol gateway). Where the two differ in something the read models meet, the
difference is handled here, and the read models never branch on the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pymongo import IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from catalog_read_models.generations import Db

DUPLICATE_KEY = 11000
Collection = AsyncCollection[dict[str, Any]]
StoreKind = Literal["auto", "mongodb", "documentdb"]


class ReadModelUnavailable(Exception):
    """MongoDB failed in a way worth retrying; nothing may be assumed written."""


class WriteRaced(Exception):
    """Another writer changed the document between this writer's read and its write."""


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

    async def find_by_ids(
        self,
        collection: Collection,
        ids: Iterable[str],
        projection: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The documents of these ids that exist."""


class MongoStore:
    """MongoDB: unordered bulk writes of version-guarded upserts."""

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
        return await guarded_upserts(collection, operations)


async def guarded_upserts(collection: Collection, operations: Sequence[UpdateOne]) -> list[bool]:
    """One unordered bulk write of upserts whose filters guard a version; False where the
    stored document was as new (the upsert then collided on `_id`: already applied)."""
    applied = [True] * len(operations)
    try:
        await collection.bulk_write(list(operations), ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
        if others or exc.details.get("writeConcernErrors"):
            raise ReadModelUnavailable(f"write errors: {(others or errors)[:3]}") from exc
        for error in errors:
            applied[int(error["index"])] = False
    return applied


class DocumentDBStore(MongoStore):
    """DocumentDB: MongoDB's semantics for everything the read models write.

    Measured differences that the read models do not meet, so nothing here overrides them
    (tests/integration/test_store.py pins each one, so a change of either server shows):
    `$avg` over Decimal128 gives a double (the read models keep money as integer cents and
    average ratings themselves), and a sort that an index cannot serve in order is done over
    every matching document (the query side bounds such reads, see query_service.read_models).
    """


async def server_kind(db: Db) -> Literal["mongodb", "documentdb"]:
    """Which server answers: DocumentDB's gateway reports no `gitVersion` in `buildInfo`."""
    try:
        info = await db.client.admin.command("buildInfo")
    except PyMongoError as exc:
        raise ReadModelUnavailable(f"cannot tell the server: {exc}") from exc
    return "mongodb" if "gitVersion" in info else "documentdb"


async def open_store(db: Db, kind: StoreKind = "auto") -> Store:
    """The adapter for the server behind `db`."""
    if kind == "auto":
        kind = await server_kind(db)
    return DocumentDBStore() if kind == "documentdb" else MongoStore()
