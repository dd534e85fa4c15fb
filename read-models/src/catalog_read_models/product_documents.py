"""What `product_list` and `product_detail` share: product fields from product events, rating
figures from the review tally.

A product event sets the product fields guarded by `version`; a document it creates starts
with the figures of the tally as read just before. Rating figures are then copied from the
tally guarded by `rating_rev < rev`, for every product of the batch: re-reading the tally
after the product write closes the race "tally updated between that read and the insert"
without a stub document, and a review that came before its product shows up the moment the
product's document exists.

The read before the insert costs a round trip per new product and model, and was once
dropped (documents created without figures, the copy after the write filling them in): then
every new product whose reviews came first needs one more update, and on a store whose updates
read the document and write it back, two appliers of one product (a rebalance's overlap) lost
a figure update that way (`test_two_concurrent_appliers_of_one_products_events`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import IndexModel

from catalog_contracts.events import EVENT_TYPES, ProductState
from catalog_contracts.read_models import RATINGS_COLLECTION, Generation
from catalog_read_models.generations import Db
from catalog_read_models.ratings import NO_FIGURES, Figures
from catalog_read_models.registry import Batch, Comparison, WriteModel
from catalog_read_models.reviews import read_tallies
from catalog_read_models.store import Collection, GuardedWrite, Store

RATING_REV = "rating_rev"


@dataclass(frozen=True, slots=True)
class ProductDocuments:
    """A read model with one document per product: product fields plus rating figures."""

    name: str
    product_fields: Callable[[ProductState], dict[str, Any]]
    rating_fields: Callable[[Figures], dict[str, Any]]
    index_models: Sequence[IndexModel]
    # Which of the two counts product events in the batch result (each event once).
    counts_events: bool = False

    @property
    def collections(self) -> tuple[str, ...]:
        """The one collection, named after the read model."""
        return (self.name,)

    @property
    def indexes(self) -> Mapping[str, Sequence[IndexModel]]:
        """The list's and the page's queries' indexes."""
        return {self.name: self.index_models}

    @property
    def event_types(self) -> frozenset[str]:
        """Product events write the product fields, review events the figures."""
        return frozenset(EVENT_TYPES)

    def document(self, state: ProductState, figures: Figures, rev: int) -> dict[str, Any]:
        """The whole document of a product with these figures."""
        return {
            "_id": str(state.id),
            **self.product_fields(state),
            "version": state.version,
            **self.rating_fields(figures),
            RATING_REV: rev,
        }

    async def apply(self, batch: Batch) -> None:
        """Write the batch's product states, then copy fresh figures to its products."""
        collection = batch.collection(self.name)
        tallies = batch.collection(RATINGS_COLLECTION)
        events = list(batch.products.values())
        if events:
            before = await read_tallies(batch.store, tallies, batch.products)
            writes = []
            for event in events:
                rev, figures = before.get(str(event.state.id), (0, NO_FIGURES))
                writes.append(
                    GuardedWrite(
                        str(event.state.id),
                        event.state.version,
                        self.product_fields(event.state),
                        on_insert={**self.rating_fields(figures), RATING_REV: rev},
                    )
                )
            applied = await batch.store.guarded_writes(collection, writes)
            if self.counts_events:
                for event, done in zip(events, applied, strict=True):
                    (batch.result.applied if done else batch.result.skipped)[event.event_type] += 1
        await copy_figures(
            self, batch.store, collection, tallies, {*batch.products, *batch.rated_products}
        )

    async def compare(self, write: WriteModel, db: Db, generation: Generation) -> Comparison:
        """Every product's document against the write model's row and its review figures."""
        result = Comparison(self.name)
        collection = db[generation.collection(self.name)]
        stored = {d["_id"]: d async for d in collection.find({})}
        for key, state in write.products.items():
            result.checked += 1
            expected = self.document(state, write.ratings.get(key, NO_FIGURES), 0)
            del expected[RATING_REV]  # the tally's revision is the projector's own
            actual = stored.pop(key, None)
            if actual is None:
                result.missing.append(key)
                continue
            result.stored[key] = actual
            off = [f for f, v in expected.items() if actual.get(f) != v]
            off += [f for f in actual if f not in expected and f != RATING_REV]
            if off:
                result.different[key] = sorted(off)
        result.extra = sorted(stored)
        return result

    async def repair(
        self,
        comparison: Comparison,
        write: WriteModel,
        db: Db,
        generation: Generation,
        store: Store,
    ) -> int:
        """Rewrite the product fields of what is off, then its figures from the (repaired) tally."""
        collection = db[generation.collection(self.name)]
        tallies = db[generation.collection(RATINGS_COLLECTION)]
        off = comparison.off
        current = await read_tallies(store, tallies, off)
        writes = []
        for key in off:
            rev, figures = current.get(key, (0, NO_FIGURES))
            state = write.products[key]
            fields = self.product_fields(state)
            # Extra fields of a corrupted document go; a replace would also drop the figures.
            known = {"_id", "version", RATING_REV, *fields, *self.rating_fields(figures)}
            unset = [f for f in comparison.stored.get(key, {}) if f not in known]
            if unset:
                await collection.update_one({"_id": key}, {"$unset": dict.fromkeys(unset, "")})
            # Never older than what the projector may have written since the comparison.
            writes.append(
                GuardedWrite(
                    key,
                    state.version,
                    fields,
                    on_insert={**self.rating_fields(figures), RATING_REV: rev},
                    or_same=True,
                )
            )
        await store.guarded_writes(collection, writes)
        # Figures that are off although the tally's revision was copied: force them.
        for key in off:
            rev, figures = current.get(key, (0, NO_FIGURES))
            await collection.update_one(
                {"_id": key, RATING_REV: {"$lte": rev}},
                {"$set": {**self.rating_fields(figures), RATING_REV: rev}},
            )
        for key in comparison.extra:
            await collection.delete_one({"_id": key})
        return len(off) + len(comparison.extra)


async def copy_figures(
    model: ProductDocuments,
    store: Store,
    collection: Collection,
    tallies: Collection,
    product_ids: Iterable[str],
) -> None:
    """Set each product document's figures to its tally's, where the tally is newer."""
    current = await read_tallies(store, tallies, product_ids)
    if not current:
        return
    stored = {
        d["_id"]: d.get(RATING_REV, 0)
        for d in await store.find_by_ids(collection, current, {RATING_REV: 1})
    }
    limit = asyncio.Semaphore(16)

    async def copy(product_id: str, rev: int, figures: Figures) -> None:
        async with limit:
            # No upsert: a product document that does not exist yet is written, with the
            # tally's figures, by its product event.
            await collection.update_one(
                {"_id": product_id, RATING_REV: {"$lt": rev}},
                {"$set": {**model.rating_fields(figures), RATING_REV: rev}},
            )

    await asyncio.gather(
        *(
            copy(product_id, rev, figures)
            for product_id, (rev, figures) in current.items()
            if product_id in stored and stored[product_id] < rev
        )
    )
