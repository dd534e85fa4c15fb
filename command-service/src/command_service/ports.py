"""The write side's ports: what the command handlers need from storage, and nothing of asyncpg.

The composition root (`bootstrap.py`) picks the PostgreSQL adapters; tests pick the in-memory
fakes of `tests/fixtures/fakes.py`, which behave like the adapters where the handlers rely on
it: a row read for update is locked until the unit of work ends, a key is claimed by one unit
of work at a time, and nothing a unit of work wrote is visible to others before it commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal, Protocol, Self
from uuid import UUID

from catalog_contracts.events import CatalogEvent
from command_service.domain.model import Product
from command_service.domain.review import Review


class StorageUnavailable(Exception):
    """The write model's store could not be reached or failed; nothing was committed."""


CommandName = Literal[
    "create_product",
    "update_details",
    "change_price",
    "adjust_stock",
    "discontinue",
    "submit_review",
    "remove_review",
]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an accepted command produced: everything its response needs, nothing of HTTP.

    An idempotent request's outcome is stored with its key and replayed as it was.
    """

    command: CommandName
    # The product's id, or the review's for a review command.
    aggregate_id: UUID
    version: int
    created: bool = False
    # A product's stock after the change (what a stock adjustment answers).
    stock: int | None = None
    # A review's product.
    product_id: UUID | None = None

    def to_document(self) -> dict[str, Any]:
        """The outcome as JSON, as the idempotency store keeps it."""
        return {
            "command": self.command,
            "aggregate_id": str(self.aggregate_id),
            "version": self.version,
            "created": self.created,
            "stock": self.stock,
            "product_id": None if self.product_id is None else str(self.product_id),
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Outcome:
        """The outcome `to_document` wrote."""
        product_id = document.get("product_id")
        return cls(
            command=document["command"],
            aggregate_id=UUID(document["aggregate_id"]),
            version=int(document["version"]),
            created=bool(document["created"]),
            stock=document.get("stock"),
            product_id=None if product_id is None else UUID(product_id),
        )


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A key's first request (by its fingerprint) and what that request produced."""

    request_hash: str
    outcome: Outcome


class ProductRepository(Protocol):
    """Products of the write model, read and written inside a unit of work."""

    async def get_for_update(self, product_id: UUID) -> Product | None:
        """The product, locked until the unit of work ends, so its changes serialize."""
        ...

    async def add(self, product: Product) -> None:
        """Insert a new product."""
        ...

    async def update(self, product: Product) -> None:
        """Write back a product read with `get_for_update` (its version is one higher)."""
        ...


class ReviewRepository(Protocol):
    """Reviews of the write model, read and written inside a unit of work."""

    async def get_for_update(self, review_id: UUID) -> Review | None:
        """The review, locked until the unit of work ends."""
        ...

    async def published_by(self, product_id: UUID, author: str) -> Review | None:
        """The author's published review of the product, if any."""
        ...

    async def add(self, review: Review) -> None:
        """Insert a new review."""
        ...

    async def update(self, review: Review) -> None:
        """Write back a review read with `get_for_update` (its version is one higher)."""
        ...


class Outbox(Protocol):
    """The transactional outbox: events committed with the change that produced them."""

    async def append(self, event: CatalogEvent, *, traceparent: str | None = None) -> None:
        """Record an event in the unit of work's transaction."""
        ...


class IdempotencyStore(Protocol):
    """First outcomes of requests that carried an Idempotency-Key, per caller."""

    async def try_lock(self, caller: str, key: str) -> bool:
        """Claim the key until the unit of work ends; False when another one holds it."""
        ...

    async def find(self, caller: str, key: str) -> IdempotencyRecord | None:
        """The unexpired record of the key, if any."""
        ...

    async def save(
        self, caller: str, key: str, record: IdempotencyRecord, *, ttl: timedelta
    ) -> None:
        """Keep the record for `ttl`, replacing an expired one."""
        ...


class UnitOfWork(Protocol):
    """One transaction: commits when the block ends normally, rolls back on any exception."""

    @property
    def products(self) -> ProductRepository: ...

    @property
    def reviews(self) -> ReviewRepository: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def idempotency(self) -> IdempotencyStore: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class UnitOfWorkFactory(Protocol):
    """Opens units of work on one store."""

    def __call__(self) -> UnitOfWork:
        """A new unit of work (its transaction starts when it is entered)."""
        ...

    async def ping(self) -> None:
        """Return when the store answers; raise `StorageUnavailable` otherwise."""
        ...
