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

from catalog_contracts.events import ProductEvent
from command_service.domain.model import Product


class StorageUnavailable(Exception):
    """The write model's store could not be reached or failed; nothing was committed."""


CommandName = Literal[
    "create_product", "update_details", "change_price", "adjust_stock", "discontinue"
]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an accepted command produced: everything its response needs, nothing of HTTP.

    An idempotent request's outcome is stored with its key and replayed as it was.
    """

    command: CommandName
    product_id: UUID
    version: int
    stock: int
    created: bool = False

    def to_document(self) -> dict[str, Any]:
        """The outcome as JSON, as the idempotency store keeps it."""
        return {
            "command": self.command,
            "product_id": str(self.product_id),
            "version": self.version,
            "stock": self.stock,
            "created": self.created,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Outcome:
        """The outcome `to_document` wrote."""
        return cls(
            command=document["command"],
            product_id=UUID(document["product_id"]),
            version=int(document["version"]),
            stock=int(document["stock"]),
            created=bool(document["created"]),
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


class Outbox(Protocol):
    """The transactional outbox: events committed with the change that produced them."""

    async def append(self, event: ProductEvent, *, traceparent: str | None = None) -> None:
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
