"""The query side's port: what the routes ask of a read model, whichever store serves it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

SortKey = Literal["name", "-name", "price", "-price", "-updated_at", "-rating"]
ReviewSortKey = Literal["-created_at", "-rating", "rating"]


class ReadModelUnavailable(Exception):
    """The read-model store could not answer."""


class InvalidCursor(ValueError):
    """A cursor this API did not issue for this sort."""


@dataclass(frozen=True, slots=True)
class ProductFilter:
    """Which product documents a list shows; every field narrows it further."""

    status: Literal["active", "discontinued"] = "active"
    category: str | None = None
    in_stock: bool | None = None
    min_price_cents: int | None = None
    max_price_cents: int | None = None
    # Case-insensitive substring of the name or the description.
    q: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of read documents and the cursor of the next (None on the last)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


class ReadModel(Protocol):
    """Reads of the product, review and category read models.

    Shapes in catalog_contracts.read_models; the reads raise `ReadModelUnavailable` when the
    store cannot answer (the API's 503).
    """

    async def get(self, product_id: str) -> dict[str, Any] | None:
        """The product's `ProductDetailDocument`, or None."""
        ...

    async def get_many(self, product_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The `ProductDetailDocument`s of those products that have one, by id, in one read."""
        ...

    async def list_products(
        self, where: ProductFilter, *, sort: SortKey, limit: int, cursor: str | None
    ) -> Page:
        """One page of `ProductListDocument`s in a total order (sort field, then id ascending).

        Resumes after `cursor`; items carry at least `_id, name, price, in_stock, category,
        rating_average, rating_count`; a cursor this API did not issue for `sort` raises
        `InvalidCursor`.
        """
        ...

    async def reviews(
        self, product_id: str, *, sort: ReviewSortKey, limit: int, cursor: str | None
    ) -> Page | None:
        """One page of the product's published `ReviewDocument`s (sort field, then id ascending).

        None when the product has no detail document; a cursor this API did not issue for
        `sort` raises `InvalidCursor` (before the store is asked anything).
        """
        ...

    async def categories(self) -> list[dict[str, Any]]:
        """The category documents with at least one active product, by category name."""
        ...

    async def ping(self) -> None:
        """Return once the store answers; raise otherwise."""
        ...
