"""The `reviews` read model (one document per review) and the per-product review tally.

A review event is applied in two steps: a version-guarded upsert of its review document, then
a compare-and-set of its product's tally (`rev` guards the write, so concurrent appliers of one
product's reviews never lose each other's entries). The product documents copy their figures
from the tally afterwards (see `product_documents`).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from catalog_contracts.events import REVIEW_EVENT_TYPES, ReviewState
from catalog_contracts.read_models import (
    RATINGS_COLLECTION,
    REVIEWS_COLLECTION,
    Generation,
    review_document,
)
from catalog_read_models.generations import Db
from catalog_read_models.ratings import (
    NO_FIGURES,
    Entry,
    Figures,
    figures,
    merge_entries,
    tally_entry,
)
from catalog_read_models.registry import Batch, Comparison, WriteModel
from catalog_read_models.store import (
    Collection,
    GuardedWrite,
    ReadModelUnavailable,
    Store,
    WriteRaced,
)
from service_runtime.retry import Backoff

# Two appliers of one product's reviews race on its tally; the loser re-reads and tries again
# at once (each lost round means the other applier's write went through).
TALLY_RACE = Backoff("review tally update", retry_on=(WriteRaced,), first_wait=0, max_attempts=20)

# The review pages' orders: (created_at desc | rating desc | rating asc), ties by id ascending.
REVIEW_INDEXES = [
    IndexModel(
        [(f, ASCENDING) for f in ("product_id", "status")]
        + [("created_at", DESCENDING), ("_id", ASCENDING)],
        name="product_status_created_at",
    ),
    IndexModel(
        [(f, ASCENDING) for f in ("product_id", "status")]
        + [("rating", DESCENDING), ("_id", ASCENDING)],
        name="product_status_rating_desc",
    ),
    IndexModel(
        [(f, ASCENDING) for f in ("product_id", "status", "rating", "_id")],
        name="product_status_rating",
    ),
]


def _fields(state: ReviewState) -> dict[str, Any]:
    document = review_document(state)
    del document["_id"]
    return document


async def read_tallies(
    store: Store, tallies: Collection, product_ids: Iterable[str]
) -> dict[str, tuple[int, Figures]]:
    """The revision and figures of each of these products' tallies (absent: no review yet)."""
    return {
        doc["_id"]: (doc["rev"], figures(doc["reviews"]))
        for doc in await store.find_by_ids(tallies, product_ids)
    }


async def update_tally(
    tallies: Collection,
    product_id: str,
    incoming: Mapping[str, Entry],
    *,
    replace: bool = False,
) -> None:
    """Merge entries into a product's tally (`replace`: the entries are the whole truth, but a
    stored entry newer than its incoming one stays), bumping `rev` only when it changes."""

    async def attempt() -> None:
        doc = await tallies.find_one({"_id": product_id})
        stored: dict[str, Entry] = dict(doc["reviews"]) if doc else {}
        if replace:
            kept = {
                k: e
                for k, e in stored.items()
                if k in incoming and e["version"] > incoming[k]["version"]
            }
            merged: dict[str, Entry] | None = {**incoming, **kept}
            if merged == stored and doc is not None:
                merged = None
        else:
            merged = merge_entries(stored, incoming)
        if merged is None:
            return
        if doc is None:
            try:
                await tallies.insert_one({"_id": product_id, "rev": 1, "reviews": merged})
            except DuplicateKeyError:
                raise WriteRaced(product_id) from None
            return
        guard = {"_id": product_id, "rev": doc["rev"]}
        update = {"$set": {"rev": doc["rev"] + 1, "reviews": merged}}
        if not (await tallies.update_one(guard, update)).matched_count:
            raise WriteRaced(product_id)

    try:
        await TALLY_RACE.call(attempt)
    except WriteRaced as exc:
        raise ReadModelUnavailable(f"the review tally of {exc} kept changing") from exc


class Reviews:
    """Review documents as the review pages list them, and the tally behind the ratings."""

    name: Final = "reviews"
    collections: Final = (REVIEWS_COLLECTION, RATINGS_COLLECTION)
    indexes: Final[Mapping[str, Sequence[IndexModel]]] = {REVIEWS_COLLECTION: REVIEW_INDEXES}
    event_types: Final = frozenset(REVIEW_EVENT_TYPES)

    async def apply(self, batch: Batch) -> None:
        """Write the newest review documents, then merge them into their products' tallies."""
        if not batch.reviews:
            return
        events = list(batch.reviews.values())
        writes = [GuardedWrite(str(e.state.id), e.state.version, _fields(e.state)) for e in events]
        applied = await batch.store.guarded_writes(batch.collection(REVIEWS_COLLECTION), writes)
        for event, done in zip(events, applied, strict=True):
            (batch.result.applied if done else batch.result.skipped)[event.event_type] += 1
        # Every event goes to the tally, applied above or not: a crash between the two writes
        # leaves the review document written and its entry missing until the redelivery.
        per_product: dict[str, dict[str, Entry]] = defaultdict(dict)
        for event in events:
            per_product[str(event.state.product_id)][str(event.state.id)] = tally_entry(event.state)
        tallies = batch.collection(RATINGS_COLLECTION)
        limit = asyncio.Semaphore(16)

        async def one(product_id: str, entries: dict[str, Entry]) -> None:
            async with limit:
                await update_tally(tallies, product_id, entries)

        await asyncio.gather(*(one(p, e) for p, e in per_product.items()))

    async def compare(self, write: WriteModel, db: Db, generation: Generation) -> Comparison:
        """Every review document, and each product's tally figures against PostgreSQL's."""
        result = Comparison(self.name)
        stored = {d["_id"]: d async for d in db[generation.collection(REVIEWS_COLLECTION)].find({})}
        for key, state in write.reviews.items():
            result.checked += 1
            expected = review_document(state)
            actual = stored.pop(key, None)
            if actual is None:
                result.missing.append(key)
                continue
            off = [f for f, v in expected.items() if actual.get(f) != v]
            off += [f for f in actual if f not in expected]
            if off:
                result.different[key] = sorted(off)
        result.extra = sorted(stored)
        tallies = db[generation.collection(RATINGS_COLLECTION)]
        have = {d["_id"]: figures(d["reviews"]) async for d in tallies.find({})}
        for product_id in sorted({*write.ratings, *have}):
            want = write.ratings.get(product_id, NO_FIGURES)
            got = have.get(product_id, NO_FIGURES)
            off = [f for f in Figures.__slots__ if getattr(want, f) != getattr(got, f)]
            if off:
                result.different[f"{RATINGS_COLLECTION}/{product_id}"] = off
        return result

    async def repair(
        self,
        comparison: Comparison,
        write: WriteModel,
        db: Db,
        generation: Generation,
        store: Store,
    ) -> int:
        """Rewrite the review documents that are off and reset the tallies that are off."""
        reviews = db[generation.collection(REVIEWS_COLLECTION)]
        tallies = db[generation.collection(RATINGS_COLLECTION)]
        prefix = f"{RATINGS_COLLECTION}/"
        off_reviews = [k for k in comparison.off if not k.startswith(prefix)]
        states = [write.reviews[k] for k in off_reviews]
        # Never older than what the projector may have written since the comparison.
        writes = [GuardedWrite(str(s.id), s.version, _fields(s), or_same=True) for s in states]
        await store.guarded_writes(reviews, writes)
        for key in comparison.extra:
            await reviews.delete_one({"_id": key})
        products = {str(s.product_id) for s in states}
        products |= {k.removeprefix(prefix) for k in comparison.off if k.startswith(prefix)}
        by_product: dict[str, dict[str, Entry]] = defaultdict(dict)
        for state in write.reviews.values():
            by_product[str(state.product_id)][str(state.id)] = tally_entry(state)
        for product_id in sorted(products):
            await update_tally(tallies, product_id, by_product[product_id], replace=True)
        return len(off_reviews) + len(comparison.extra) + len(products)


READ_MODEL = Reviews()
