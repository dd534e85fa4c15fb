"""The read models, in apply order, and what they share: the batch, the write model's snapshot.

Each read model is one module declaring its collections and indexes, the event types that
change it, how it applies a batch and how it compares with the write model; the projector
(through `projection.Projection`), `rebuild` and `catalogctl reconcile` find them here. Order
matters: `reviews` writes the tally the product documents copy their figures from, and
`categories` keeps each product's contribution to its category, folded into the figures by a
refresh beside the batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pymongo import IndexModel

from catalog_contracts.events import (
    ProductEvent,
    ProductState,
    ReviewEvent,
    ReviewState,
)
from catalog_contracts.read_models import Generation
from catalog_read_models.generations import Db
from catalog_read_models.ratings import Figures
from catalog_read_models.store import Collection, Store


@dataclass
class ApplyResult:
    """Per event type: how many events changed the read models and how many they already had."""

    applied: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass
class Batch:
    """One batch as the read models see it: the newest event per aggregate, and its context."""

    db: Db
    store: Store
    generation: Generation
    result: ApplyResult
    products: dict[str, ProductEvent]
    reviews: dict[str, ReviewEvent]

    def collection(self, logical: str) -> Collection:
        """This batch's generation's collection of a read model."""
        return self.db[self.generation.collection(logical)]

    @property
    def rated_products(self) -> set[str]:
        """Products whose review tally this batch may have changed."""
        return {str(e.state.product_id) for e in self.reviews.values()}


@dataclass(frozen=True, slots=True)
class WriteModel:
    """The write model as reconcile reads it (one consistent snapshot of PostgreSQL)."""

    products: Mapping[str, ProductState]
    reviews: Mapping[str, ReviewState]
    # Rating figures per product with at least one review, computed by PostgreSQL.
    ratings: Mapping[str, Figures]
    # Figures of each category with active products, computed by PostgreSQL.
    categories: Mapping[str, Mapping[str, Any]]


@dataclass
class Comparison:
    """Where one read model disagrees with the write model."""

    read_model: str
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    different: dict[str, list[str]] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    # What the read model's collection stores per key, for a repair that must know it.
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def off(self) -> list[str]:
        """Keys that are missing or different."""
        return sorted({*self.missing, *self.different})

    @property
    def consistent(self) -> bool:
        """Whether nothing differs."""
        return not (self.missing or self.different or self.extra)

    def summary(self) -> str:
        """One line of counts."""
        return (
            f"{self.read_model}: {self.checked:,} checked, {len(self.missing)} missing,"
            f" {len(self.different)} different, {len(self.extra)} extra"
        )


class ReadModel(Protocol):
    """One read model of the registry."""

    @property
    def name(self) -> str:
        """The read model's name (its main collection's logical name)."""

    @property
    def collections(self) -> tuple[str, ...]:
        """Logical collection names; a generation maps them to physical ones."""

    @property
    def indexes(self) -> Mapping[str, Sequence[IndexModel]]:
        """Indexes per logical collection."""

    @property
    def event_types(self) -> frozenset[str]:
        """The event types that change this read model."""

    async def apply(self, batch: Batch) -> None:
        """Apply the batch's events that change this read model."""

    async def compare(self, write: WriteModel, db: Db, generation: Generation) -> Comparison:
        """Compare this read model with the write model, field by field."""

    async def repair(
        self,
        comparison: Comparison,
        write: WriteModel,
        db: Db,
        generation: Generation,
        store: Store,
    ) -> int:
        """Re-project exactly what `comparison` found off; return how many documents."""


def registry() -> tuple[ReadModel, ...]:
    """Every read model, in apply order."""
    from catalog_read_models import categories, product_detail, product_list, reviews

    return (
        reviews.READ_MODEL,
        product_list.READ_MODEL,
        product_detail.READ_MODEL,
        categories.READ_MODEL,
    )
