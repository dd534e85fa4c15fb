"""The `categories` read model: figures of the active products of each category.

Kept up incrementally, so that bringing a category up to date costs what changed in it, not
what it holds. A ledger, `category_members`, keeps one document per product:

- `c`, what the product adds to its category's figures now (its category, stock and price;
  nothing when it is not active), written by each batch beside the product documents and
  guarded by the product's version;
- `f`, what the category's figures hold of it (its contribution as last folded in);
- `d`, set while `c` and `f` may differ: when the oldest change not folded in was written.

A refresh (`fold`) moves each changed member's difference `c - f` into the figures of the
categories it leaves and joins, and sets `f = c`, in one transaction per chunk of members.
Counts and stock add up; a minimum or maximum that leaves is looked up again among the folded
prices of its category, through the `(f.category, f.price_cents)` index, in windows that
start at the old extreme, so the lookup reads a few documents, not the category.

The transaction first writes each category it changes (a row lock held until it commits), so
folds of one category, by any projector replica, take turns. A member changed by a batch since
the fold read it fails the fold's version guard, and the chunk is tried again: a change is
folded exactly once. A crash at any point leaves `d` set and the figures as they were.
The age of the oldest `d` is the staleness the projector exports.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError, OperationFailure

from catalog_contracts.events import PRODUCT_EVENT_TYPES, ProductState
from catalog_contracts.money import cents_to_price, format_price, price_to_cents
from catalog_contracts.read_models import (
    CATEGORIES_COLLECTION,
    CATEGORY_MEMBERS_COLLECTION,
    PRODUCT_DETAIL_COLLECTION,
    Generation,
)
from catalog_read_models.generations import Db
from catalog_read_models.registry import Batch, Comparison, WriteModel
from catalog_read_models.store import Collection, ReadModelUnavailable, Store, guarded_upserts
from service_runtime.retry import Backoff

T = TypeVar("T")
PRICE_FIELDS = ("min_price", "max_price", "min_price_cents", "max_price_cents")
# How many changed members one fold transaction moves into the figures.
FOLD_CHUNK = 1000
# At most this many chunks per refresh: a backlog larger than that waits for the next one.
FOLD_CHUNKS_PER_REFRESH = 20
FOLDED_PRICE_INDEX = "members_folded_price"
DIRTY_INDEX = "members_dirty"
MEMBER_INDEXES = [
    IndexModel([("f.category", ASCENDING), ("f.price_cents", ASCENDING)], name=FOLDED_PRICE_INDEX),
    IndexModel([("d", ASCENDING)], name=DIRTY_INDEX),
]
DIRTY: Final = {"d": {"$gt": 0}}
# A write conflict: another fold holds a category's lock (DocumentDB's gateway gives up on a
# lock after 20 ms: code 112); or the server ended the transaction under it (251).
WRITE_CONFLICT = 112
NO_SUCH_TRANSACTION = 251
BOUNDED_WINDOWS = 3  # bounded windows of a lookup before the last, unbounded one
WINDOW_GROWTH = 8


class FoldRaced(ReadModelUnavailable):
    """Another fold held a category, or a member changed between the fold's read and its
    write; nothing of the transaction was committed."""


FOLD_RACE = Backoff(
    "category fold",
    retry_on=(FoldRaced, DuplicateKeyError),
    first_wait=0.01,
    max_wait=0.5,
    max_attempts=20,
)


async def _in_turn(fn: Callable[[], Awaitable[T]]) -> T:
    """`fn()`, tried again while it conflicts with another fold or a batch."""

    async def attempt() -> T:
        try:
            return await fn()
        except OperationFailure as exc:
            if exc.code in (WRITE_CONFLICT, NO_SUCH_TRANSACTION) or exc.has_error_label(
                "TransientTransactionError"
            ):
                raise FoldRaced(str(exc)) from exc
            raise

    return await FOLD_RACE.call(attempt)


def contribution(product: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a product (a product_detail document) adds to its category's figures: nothing
    unless it is active."""
    if product.get("status") != "active":
        return None
    return {
        "category": product["category"],
        "stock": int(product["stock"]),
        "price_cents": int(product["price_cents"]),
    }


def _figure_fields(state: ProductState) -> dict[str, Any]:
    """The fields of a product state that its contribution reads, as its documents hold them."""
    return {
        "status": state.status,
        "category": state.category,
        "stock": state.stock,
        "price_cents": price_to_cents(state.price),
    }


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


def figures_update(name: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The update that sets a category document to these figures (none: no active product)."""
    if not row.get("product_count"):
        return {
            "$set": {"product_count": 0, "in_stock_count": 0, "total_stock": 0},
            "$unset": dict.fromkeys(PRICE_FIELDS, ""),
        }
    document = category_document(name, row)
    del document["_id"]
    return {"$set": document}


@dataclass
class Change:
    """What a fold changes in one category: the figures read under its lock, and the
    contributions that leave and join it."""

    before: Mapping[str, Any]
    left: list[Mapping[str, Any]] = field(default_factory=list)
    joined: list[Mapping[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """product_count, in_stock_count and total_stock after the change."""
        count = int(self.before.get("product_count") or 0)
        in_stock = int(self.before.get("in_stock_count") or 0)
        stock = int(self.before.get("total_stock") or 0)
        for sign, members in ((-1, self.left), (1, self.joined)):
            for member in members:
                count += sign
                in_stock += sign * (member["stock"] > 0)
                stock += sign * member["stock"]
        return {"product_count": count, "in_stock_count": in_stock, "total_stock": stock}

    def extreme(self, key: str, pick: Any) -> tuple[int | None, bool]:
        """The new extreme if it follows from the old one and what joined; and whether a
        lookup is needed (a price that left was the old extreme, or there was none)."""
        old = self.before.get(key) if self.before.get("product_count") else None
        joined = [m["price_cents"] for m in self.joined]
        left = [m["price_cents"] for m in self.left]
        if left and (old is None or pick(*left, old) in left):
            return (pick(joined) if joined else None), True
        candidates = [*joined, *([old] if old is not None else [])]
        return (pick(candidates) if candidates else None), False


@contextlib.asynccontextmanager
async def _transaction(collection: Collection) -> AsyncIterator[AsyncClientSession]:
    """A session in a transaction, committed when the block ends, aborted when it raises."""
    async with collection.database.client.start_session() as session:  # noqa: SIM117 -- the transaction needs the session
        async with await session.start_transaction():
            yield session


async def _first(
    collection: Collection,
    query: Mapping[str, Any],
    fields: Mapping[str, Any],
    sort: tuple[str, int],
    index: str,
) -> dict[str, Any] | None:
    """The first document `query` finds in `sort` order, read through `index` (without the
    hint when a generation was made without its indexes, e.g. by a tool that does not create
    them)."""
    for hinted in (True, False):
        cursor = collection.find(query, fields).sort(*sort).limit(1)
        try:
            found = await (cursor.hint(index) if hinted else cursor).to_list()
        except OperationFailure as exc:
            if hinted and "hint" in str(exc):
                continue
            raise
        return found[0] if found else None
    return None


async def _lookup(
    members: Collection,
    session: AsyncClientSession,
    name: str,
    before: Mapping[str, Any],
    lowest: bool,
) -> int | None:
    """The lowest (highest) folded price of the category, looked up from the old extreme in
    windows that grow eightfold: each reads the index range of the window, then an unbounded
    last one."""
    count = int(before.get("product_count") or 0)
    low, high = before.get("min_price_cents"), before.get("max_price_cents")
    start = (low if lowest else high) if count else None
    span = (high - low) if count and low is not None and high is not None else 0
    step = max(1, math.ceil(WINDOW_GROWTH * span / max(1, count)))
    windows: list[dict[str, Any]] = []
    if start is not None:
        for n in range(BOUNDED_WINDOWS):
            width = step * WINDOW_GROWTH**n
            bound = (
                {"$gte": start, "$lt": start + width}
                if lowest
                else {"$lte": start, "$gt": start - width}
            )
            windows.append(bound)
    windows.append({})
    for bound in windows:
        query: dict[str, Any] = {"f.category": name}
        if bound:
            query["f.price_cents"] = bound
        # No hint: inside a transaction a failed statement (a hint of an index a generation
        # was made without) ends the transaction; the planner picks the index for this shape
        # (tests/integration/test_store.py explains it).
        found = (
            await members.find(query, {"f.price_cents": 1}, session=session)
            .sort("f.price_cents", ASCENDING if lowest else DESCENDING)
            .limit(1)
            .to_list()
        )
        if found:
            return int(found[0]["f"]["price_cents"])
    return None


async def _fold_chunk(members: Collection, categories: Collection, ids: Sequence[str]) -> int:
    """Fold these members' changes into their categories' figures, in one transaction."""
    async with _transaction(members) as session:
        docs = await members.find(
            {"_id": {"$in": list(ids)}, **DIRTY}, {"v": 1, "c": 1, "f": 1}, session=session
        ).to_list()
        if not docs:
            return 0
        names = sorted(
            {part["category"] for doc in docs for part in (doc.get("c"), doc.get("f")) if part}
        )
        # The lock: held by this transaction until it commits or aborts.
        for name in names:
            await categories.update_one(
                {"_id": name}, {"$inc": {"_folds": 1}}, upsert=True, session=session
            )
        current = {
            doc["_id"]: doc
            async for doc in categories.find({"_id": {"$in": names}}, session=session)
        }
        changes = {name: Change(current.get(name, {})) for name in names}
        writes = []
        for doc in docs:
            before, after = doc.get("f"), doc.get("c")
            if before:
                changes[before["category"]].left.append(before)
            if after:
                changes[after["category"]].joined.append(after)
            writes.append(
                UpdateOne(
                    {"_id": doc["_id"], "v": doc["v"], **DIRTY},
                    {"$set": {"f": after}, "$unset": {"d": ""}},
                )
            )
        result = await members.bulk_write(writes, ordered=False, session=session)
        if result.matched_count != len(writes):
            raise FoldRaced(f"{len(writes) - result.matched_count} members changed meanwhile")
        for name, change in changes.items():
            figures: dict[str, Any] = change.counts()
            for key, lowest in (("min_price_cents", True), ("max_price_cents", False)):
                if figures["product_count"] <= 0:
                    break
                pick = min if lowest else max
                value, look = change.extreme(key, pick)
                if look:
                    found = await _lookup(members, session, name, change.before, lowest)
                    value = pick((v for v in (value, found) if v is not None), default=None)
                figures[key] = value
            await categories.update_one(
                {"_id": name}, figures_update(name, figures), session=session
            )
        return len(docs)


async def fold(db: Db, generation: Generation) -> int:
    """Fold every changed member into the figures, a chunk per transaction; how many were."""
    members = db[generation.collection(CATEGORY_MEMBERS_COLLECTION)]
    categories = db[generation.collection(CATEGORIES_COLLECTION)]
    folded = 0
    for _ in range(FOLD_CHUNKS_PER_REFRESH):
        # No order: a fold takes any changed members (each member waits at most until the
        # backlog is folded, which is what staleness measures).
        ids = [doc["_id"] async for doc in members.find(DIRTY, {"_id": 1}).limit(FOLD_CHUNK)]
        if not ids:
            break
        folded += await _in_turn(functools.partial(_fold_chunk, members, categories, ids))
        if len(ids) < FOLD_CHUNK:
            break
    return folded


async def write_members(
    members: Collection,
    contributions: Mapping[str, tuple[int, dict[str, Any] | None]],
    *,
    folded: bool = False,
    or_same: bool = False,
) -> None:
    """Set each member's contribution at its version unless the member is newer (`or_same`:
    unless newer or as new). `folded`: the figures already hold it (adopting a generation)."""
    if not contributions:
        return
    now = time.time()
    operations = []
    for product_id, (version, part) in contributions.items():
        guard = {"_id": product_id, "v": {"$lte" if or_same else "$lt": version}}
        if folded:
            update = {"$set": {"v": version, "c": part, "f": part}, "$unset": {"d": ""}}
        else:
            # `$min`: the oldest change not folded in yet starts the staleness clock.
            update = {"$set": {"v": version, "c": part}, "$min": {"d": now}}
        operations.append(UpdateOne(guard, update, upsert=True))
    await guarded_upserts(members, operations)


async def staleness_seconds(db: Db, generation: Generation) -> float:
    """Seconds since the oldest change not folded into the figures yet (0 when none waits)."""
    members = db[generation.collection(CATEGORY_MEMBERS_COLLECTION)]
    oldest = await _first(members, DIRTY, {"d": 1}, ("d", ASCENDING), DIRTY_INDEX)
    return max(0.0, time.time() - float(oldest["d"])) if oldest else 0.0


async def _recount(members: Collection, categories: Collection, name: str) -> None:
    """Set one category's figures to what its members' folded contributions add up to."""
    async with _transaction(members) as session:
        await categories.update_one(
            {"_id": name}, {"$inc": {"_folds": 1}}, upsert=True, session=session
        )
        cursor = await members.aggregate(
            [
                {"$match": {"f.category": name}},
                {
                    "$group": {
                        "_id": None,
                        "product_count": {"$sum": 1},
                        "in_stock_count": {"$sum": {"$cond": [{"$gt": ["$f.stock", 0]}, 1, 0]}},
                        "total_stock": {"$sum": "$f.stock"},
                        "min_price_cents": {"$min": "$f.price_cents"},
                        "max_price_cents": {"$max": "$f.price_cents"},
                    }
                },
            ],
            session=session,
        )
        rows = await cursor.to_list()
        update = figures_update(name, rows[0] if rows else {})
        await categories.update_one({"_id": name}, update, session=session)


async def _seed(
    db: Db, generation: Generation, query: Mapping[str, Any], *, folded: bool
) -> set[str]:
    """Write the members of the product documents `query` finds, from those documents;
    the categories they are in."""
    details = db[generation.collection(PRODUCT_DETAIL_COLLECTION)]
    members = db[generation.collection(CATEGORY_MEMBERS_COLLECTION)]
    names: set[str] = set()
    chunk: dict[str, tuple[int, dict[str, Any] | None]] = {}
    fields = {"category": 1, "status": 1, "stock": 1, "price_cents": 1, "version": 1}
    async for doc in details.find(query, fields):
        names.add(doc["category"])
        chunk[doc["_id"]] = (int(doc["version"]), contribution(doc))
        if len(chunk) >= FOLD_CHUNK:
            await write_members(members, chunk, folded=folded, or_same=True)
            chunk = {}
    await write_members(members, chunk, folded=folded, or_same=True)
    return names


async def recompute(
    db: Db, store: Store, generation: Generation, categories: Iterable[str]
) -> None:
    """Bring these categories back to what their product documents add up to (rebuild,
    reconcile): their members are written again from the product documents, the figures
    recounted from what the members hold, and the differences folded in. (`store` is not
    needed: the server counts the members the same way in either store.)"""
    names = sorted(set(categories))
    if not names:
        return
    members = db[generation.collection(CATEGORY_MEMBERS_COLLECTION)]
    figures = db[generation.collection(CATEGORIES_COLLECTION)]
    # Products in these categories now, and those whose figures still count them there.
    leaving = [doc["_id"] async for doc in members.find({"f.category": {"$in": names}}, {"_id": 1})]
    await _seed(db, generation, {"category": {"$in": names}}, folded=False)
    await _seed(db, generation, {"_id": {"$in": leaving}}, folded=False)
    for name in names:
        await _in_turn(functools.partial(_recount, members, figures, name))
    while await fold(db, generation):
        pass


async def adopt(db: Db, generation: Generation) -> None:
    """A generation whose figures were written before the ledger existed gets its members,
    as folded as the figures are, then the figures recounted from them."""
    members = db[generation.collection(CATEGORY_MEMBERS_COLLECTION)]
    categories = db[generation.collection(CATEGORIES_COLLECTION)]
    if await members.find_one({}, {"_id": 1}) is not None:
        return
    if await categories.find_one({"product_count": {"$gt": 0}}, {"_id": 1}) is None:
        return
    names = await _seed(db, generation, {}, folded=True)
    names |= {doc["_id"] async for doc in categories.find({}, {"_id": 1})}
    for name in sorted(names):
        await _in_turn(functools.partial(_recount, members, categories, name))


class Categories:
    """Category figures, folded in from the ledger beside the batches."""

    name: Final = "categories"
    collections: Final = (CATEGORIES_COLLECTION, CATEGORY_MEMBERS_COLLECTION)
    indexes: Final[Mapping[str, Sequence[IndexModel]]] = {
        CATEGORY_MEMBERS_COLLECTION: MEMBER_INDEXES
    }
    event_types: Final = frozenset(PRODUCT_EVENT_TYPES)

    async def apply(self, batch: Batch) -> None:
        """Write each product's contribution to the ledger; a refresh folds it in."""
        await write_members(
            batch.collection(CATEGORY_MEMBERS_COLLECTION),
            {
                key: (event.state.version, contribution(_figure_fields(event.state)))
                for key, event in batch.products.items()
            },
        )

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
