"""The projection: applies batches of events through every read model of the registry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pymongo.errors import PyMongoError

from catalog_contracts.events import PRODUCT_EVENT_CLASSES, CatalogEvent, ProductEvent, ReviewEvent
from catalog_contracts.read_models import Generation
from catalog_read_models import categories
from catalog_read_models.generations import Db, GenerationSource, live_generation
from catalog_read_models.registry import ApplyResult, Batch, ReadModel, registry
from catalog_read_models.store import ReadModelUnavailable, Store, open_store


class Projection:
    """Applies batches of events to one generation of every read model, idempotently."""

    def __init__(
        self,
        db: Db,
        store: Store,
        generation: GenerationSource | None = None,
        *,
        read_models: Sequence[ReadModel] | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self._generation = generation or live_generation(db)
        self.read_models = tuple(read_models or registry())

    @classmethod
    async def open(cls, db: Db, generation: GenerationSource | None = None) -> Projection:
        """A projection with the store adapter the server behind `db` needs."""
        return cls(db, await open_store(db), generation)

    async def generation(self) -> Generation:
        """The generation written to (the live one is re-read per batch)."""
        return await self._generation()

    async def ensure_indexes(self) -> None:
        """Create every read model's indexes in the generation written to (and give a
        generation written before the category ledger its members)."""
        try:
            generation = await self._generation()
            for model in self.read_models:
                for logical, indexes in model.indexes.items():
                    await self.store.create_indexes(
                        self.db[generation.collection(logical)], indexes
                    )
            if categories.READ_MODEL in self.read_models:
                await categories.adopt(self.db, generation)
        except PyMongoError as exc:
            raise ReadModelUnavailable(f"cannot create indexes: {exc}") from exc

    async def apply(self, events: Iterable[CatalogEvent]) -> ApplyResult:
        """Apply a batch: the newest event per aggregate, through each read model in order."""
        result = ApplyResult()
        newest: dict[tuple[str, str], CatalogEvent] = {}
        for event in events:
            key = (event.aggregate_type, str(event.aggregate_id))
            kept = newest.get(key)
            if kept is None or kept.state.version < event.state.version:
                if kept is not None:
                    result.skipped[kept.event_type] += 1
                newest[key] = event
            else:
                result.skipped[event.event_type] += 1
        if not newest:
            return result
        products: dict[str, ProductEvent] = {}
        reviews: dict[str, ReviewEvent] = {}
        for (_, aggregate_id), kept in newest.items():
            if isinstance(kept, PRODUCT_EVENT_CLASSES):
                products[aggregate_id] = kept
            else:
                reviews[aggregate_id] = kept
        try:
            batch = Batch(
                db=self.db,
                store=self.store,
                generation=await self._generation(),
                result=result,
                products=products,
                reviews=reviews,
            )
            types = {event.event_type for event in newest.values()}
            for model in self.read_models:
                if not model.event_types & types:
                    continue
                await model.apply(batch)
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc
        return result

    async def refresh_categories(self) -> int:
        """Fold the changed products of the generation written to into their categories'
        figures; how many were."""
        try:
            return await categories.fold(self.db, await self._generation())
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc

    async def categories_staleness(self) -> float:
        """Seconds since the oldest product change not folded into its category yet."""
        try:
            return await categories.staleness_seconds(self.db, await self._generation())
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc

    async def recompute_categories(self, names: Iterable[str]) -> None:
        """Bring these categories back to what their product documents add up to now
        (rebuild, reconcile)."""
        try:
            await categories.recompute(self.db, self.store, await self._generation(), names)
        except PyMongoError as exc:
            raise ReadModelUnavailable(str(exc)) from exc
