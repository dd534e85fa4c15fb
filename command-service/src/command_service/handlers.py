"""Command handlers: load the aggregate, apply the change, record its event in the outbox.

Handlers never commit: the unit of work commits the row change and its outbox row together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import orjson
from uuid6 import uuid7

from catalog_contracts.events import CURRENT_SCHEMA_VERSION, EVENT_MODELS, ProductEvent
from command_service.adapters.postgres import UnitOfWork
from command_service.domain.errors import (
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    ProductNotFound,
    VersionMismatch,
)
from command_service.domain.model import DetailField, PendingEvent, Product
from command_service.metrics import CommandMetrics


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a command carries besides its payload."""

    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class CreateProduct:
    name: str
    description: str | None
    category: str
    price: Any
    stock: int


@dataclass(frozen=True, slots=True)
class UpdateDetails:
    product_id: UUID
    changes: dict[DetailField, str | None]


@dataclass(frozen=True, slots=True)
class ChangePrice:
    product_id: UUID
    price: Any


@dataclass(frozen=True, slots=True)
class AdjustStock:
    product_id: UUID
    quantity_change: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Discontinue:
    product_id: UUID
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Outcome of an accepted command."""

    product: Product
    events: list[ProductEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A first response replayed for a repeated Idempotency-Key."""

    status: int
    body: Any
    headers: dict[str, str]


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


def request_fingerprint(payload: Any) -> str:
    """A stable hash of a request body, to tell a replay from a reused key."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


class CommandHandlers:
    """The write side's use cases."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        idempotency_ttl: timedelta = timedelta(hours=24),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], UUID] = uuid7,
        metrics: CommandMetrics | None = None,
    ) -> None:
        self._metrics = metrics or CommandMetrics()
        self._uow = uow_factory
        self._ttl = idempotency_ttl
        self._clock = clock
        self._new_id = new_id

    async def create_product(
        self,
        command: CreateProduct,
        context: RequestContext,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        respond: Callable[[CommandResult], StoredResponse] | None = None,
    ) -> CommandResult | StoredResponse:
        """Create a product; with an idempotency key, a repeat replays the stored response."""
        async with self._metrics.observe("create_product") as outcome, self._uow() as uow:
            if idempotency_key is not None:
                if not await uow.idempotency.try_lock(idempotency_key):
                    raise IdempotencyKeyInFlight(idempotency_key)
                stored = await uow.idempotency.find(idempotency_key)
                if stored is not None:
                    if stored["request_hash"] != request_hash:
                        raise IdempotencyKeyReused(idempotency_key)
                    outcome["outcome"] = "replayed"
                    return StoredResponse(
                        stored["response_status"],
                        stored["response_body"],
                        dict(stored["response_headers"]),
                    )
            product, pending = Product.create(
                product_id=self._new_id(),
                name=command.name,
                description=command.description,
                category=command.category,
                price=command.price,
                stock=command.stock,
                now=self._clock(),
            )
            await uow.products.add(product)
            event = self._envelope(product, pending, context)
            await uow.outbox.append(event, traceparent=context.traceparent)
            result = CommandResult(product, [event])
            if idempotency_key is not None and respond is not None:
                response = respond(result)
                await uow.idempotency.save(
                    idempotency_key,
                    request_hash=request_hash or "",
                    status=response.status,
                    body=response.body,
                    headers=response.headers,
                    ttl=self._ttl,
                )
            return result

    async def update_details(
        self, command: UpdateDetails, context: RequestContext
    ) -> CommandResult:
        return await self._change(
            "update_details",
            command.product_id,
            context,
            lambda p, now: p.update_details(command.changes, now=now),
        )

    async def change_price(self, command: ChangePrice, context: RequestContext) -> CommandResult:
        return await self._change(
            "change_price",
            command.product_id,
            context,
            lambda p, now: p.change_price(command.price, now=now),
        )

    async def adjust_stock(self, command: AdjustStock, context: RequestContext) -> CommandResult:
        return await self._change(
            "adjust_stock",
            command.product_id,
            context,
            lambda p, now: p.adjust_stock(command.quantity_change, reason=command.reason, now=now),
        )

    async def discontinue(self, command: Discontinue, context: RequestContext) -> CommandResult:
        return await self._change(
            "discontinue",
            command.product_id,
            context,
            lambda p, now: p.discontinue(reason=command.reason, now=now),
        )

    async def _change(
        self,
        name: str,
        product_id: UUID,
        context: RequestContext,
        apply: Callable[[Product, datetime], tuple[Product, PendingEvent | None]],
    ) -> CommandResult:
        async with self._metrics.observe(name) as outcome, self._uow() as uow:
            current = await uow.products.get_for_update(product_id)
            if current is None:
                raise ProductNotFound(product_id)
            if context.expected_version is not None and context.expected_version != current.version:
                raise VersionMismatch(
                    product_id, expected=context.expected_version, actual=current.version
                )
            product, pending = apply(current, self._clock())
            if pending is None:
                outcome["outcome"] = "unchanged"
                return CommandResult(current, [])
            await uow.products.update(product)
            event = self._envelope(product, pending, context)
            await uow.outbox.append(event, traceparent=context.traceparent)
            return CommandResult(product, [event])

    def _envelope(
        self, product: Product, pending: PendingEvent, context: RequestContext
    ) -> ProductEvent:
        model: Any = EVENT_MODELS[pending.event_type]
        event: ProductEvent = model(
            event_id=self._new_id(),
            schema_version=CURRENT_SCHEMA_VERSION[pending.event_type],
            aggregate_id=product.id,
            aggregate_version=product.version,
            occurred_at=product.updated_at,
            correlation_id=context.correlation_id,
            causation_id=context.causation_id,
            data=pending.data,
            state=product.to_state(),
        )
        return event
