"""Command handlers: load the aggregate, apply the change, record its event in the outbox.

Handlers depend on the ports (`command_service.ports`), never on a driver, and never commit:
the unit of work commits the row change, its outbox row and the idempotency record together.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from opentelemetry import trace
from uuid6 import uuid7

from catalog_contracts.events import CURRENT_SCHEMA_VERSION, EVENT_MODELS, CatalogEvent
from command_service.domain.errors import (
    DuplicateReview,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    ProductDiscontinued,
    ProductNotFound,
    ReviewNotFound,
    VersionMismatch,
)
from command_service.domain.model import DetailField, PendingEvent, Product
from command_service.domain.review import Review
from command_service.metrics import CommandMetrics
from command_service.ports import (
    CommandName,
    IdempotencyRecord,
    Outcome,
    UnitOfWork,
    UnitOfWorkFactory,
)
from service_runtime.telemetry import traceparent_of, tracing_enabled

TRACER = trace.get_tracer("command_service")


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a command carries besides its payload."""

    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    expected_version: int | None = None
    # A retried request with the same key (from the same caller) replays the first outcome.
    idempotency_key: str | None = None
    # Who asks; idempotency keys are scoped to it ("" until requests are authenticated).
    caller: str = ""
    # Who causes the change, as events record it (None until requests are authenticated).
    actor: str | None = None


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
class SubmitReview:
    product_id: UUID
    rating: int
    title: str
    body: str | None
    # Until requests are authenticated, the route takes it from a header.
    author: str


@dataclass(frozen=True, slots=True)
class RemoveReview:
    review_id: UUID
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Outcome of an accepted command, and the events it recorded (none when replayed)."""

    outcome: Outcome
    events: list[CatalogEvent] = field(default_factory=list)
    replayed: bool = False


Command = (
    CreateProduct
    | UpdateDetails
    | ChangePrice
    | AdjustStock
    | Discontinue
    | SubmitReview
    | RemoveReview
)


def request_fingerprint(command: Command) -> str:
    """A stable hash of a command, to tell a retried request from a reused key."""
    payload = {"command": type(command).__name__, **asdict(command)}
    return hashlib.sha256(
        orjson.dumps(payload, default=_plain, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


def _plain(value: object) -> object:
    if isinstance(value, Decimal | UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not part of a command")


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
        self, command: CreateProduct, context: RequestContext
    ) -> CommandResult:
        """Create a product."""

        async def create(uow: UnitOfWork) -> CommandResult:
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
            await uow.outbox.append(event, traceparent=_traceparent(context))
            return CommandResult(_outcome("create_product", product, created=True), [event])

        return await self._execute("create_product", command, context, create)

    async def submit_review(self, command: SubmitReview, context: RequestContext) -> CommandResult:
        """Publish a review of an active product; one published review per author and product."""

        async def submit(uow: UnitOfWork) -> CommandResult:
            # The product's row lock serializes its reviews (and a discontinuation), so two
            # reviews of one author cannot both pass the check below.
            product = await uow.products.get_for_update(command.product_id)
            if product is None:
                raise ProductNotFound(command.product_id)
            if product.status == "discontinued":
                raise ProductDiscontinued(product.id)
            review, pending = Review.submit(
                review_id=self._new_id(),
                product_id=product.id,
                rating=command.rating,
                title=command.title,
                body=command.body,
                author=command.author,
                now=self._clock(),
            )
            existing = await uow.reviews.published_by(product.id, review.author)
            if existing is not None:
                raise DuplicateReview(product.id, review.author, existing.id)
            await uow.reviews.add(review)
            event = self._envelope(review, pending, context)
            await uow.outbox.append(event, traceparent=_traceparent(context))
            return CommandResult(_review_outcome("submit_review", review, created=True), [event])

        return await self._execute("submit_review", command, context, submit)

    async def remove_review(self, command: RemoveReview, context: RequestContext) -> CommandResult:
        """Take a review down (moderation)."""

        async def remove(uow: UnitOfWork) -> CommandResult:
            current = await uow.reviews.get_for_update(command.review_id)
            if current is None:
                raise ReviewNotFound(command.review_id)
            _check_version(context, current.id, current.version, kind="review")
            review, pending = current.remove(reason=command.reason, now=self._clock())
            await uow.reviews.update(review)
            event = self._envelope(review, pending, context)
            await uow.outbox.append(event, traceparent=_traceparent(context))
            return CommandResult(_review_outcome("remove_review", review), [event])

        return await self._execute("remove_review", command, context, remove)

    async def update_details(
        self, command: UpdateDetails, context: RequestContext
    ) -> CommandResult:
        return await self._change(
            "update_details",
            command,
            command.product_id,
            context,
            lambda p, now: p.update_details(command.changes, now=now),
        )

    async def change_price(self, command: ChangePrice, context: RequestContext) -> CommandResult:
        return await self._change(
            "change_price",
            command,
            command.product_id,
            context,
            lambda p, now: p.change_price(command.price, now=now),
        )

    async def adjust_stock(self, command: AdjustStock, context: RequestContext) -> CommandResult:
        return await self._change(
            "adjust_stock",
            command,
            command.product_id,
            context,
            lambda p, now: p.adjust_stock(command.quantity_change, reason=command.reason, now=now),
        )

    async def discontinue(self, command: Discontinue, context: RequestContext) -> CommandResult:
        return await self._change(
            "discontinue",
            command,
            command.product_id,
            context,
            lambda p, now: p.discontinue(reason=command.reason, now=now),
        )

    async def _change(
        self,
        name: CommandName,
        command: Command,
        product_id: UUID,
        context: RequestContext,
        apply: Callable[[Product, datetime], tuple[Product, PendingEvent | None]],
    ) -> CommandResult:
        async def change(uow: UnitOfWork) -> CommandResult:
            current = await uow.products.get_for_update(product_id)
            if current is None:
                raise ProductNotFound(product_id)
            _check_version(context, product_id, current.version, kind="product")
            product, pending = apply(current, self._clock())
            if pending is None:
                return CommandResult(_outcome(name, current))
            await uow.products.update(product)
            event = self._envelope(product, pending, context)
            await uow.outbox.append(event, traceparent=_traceparent(context))
            return CommandResult(_outcome(name, product), [event])

        return await self._execute(name, command, context, change)

    async def _execute(
        self,
        name: CommandName,
        command: Command,
        context: RequestContext,
        work: Callable[[UnitOfWork], Awaitable[CommandResult]],
    ) -> CommandResult:
        """Run `work` in one unit of work; with an idempotency key, a repeat replays."""
        key = context.idempotency_key
        async with self._metrics.observe(name) as observed, self._unit_of_work(name) as uow:
            fingerprint = request_fingerprint(command) if key is not None else ""
            if key is not None:
                if not await uow.idempotency.try_lock(context.caller, key):
                    raise IdempotencyKeyInFlight(key)
                stored = await uow.idempotency.find(context.caller, key)
                if stored is not None:
                    if stored.request_hash != fingerprint:
                        raise IdempotencyKeyReused(key)
                    observed["outcome"] = "replayed"
                    return CommandResult(stored.outcome, replayed=True)
            result = await work(uow)
            if not result.events:
                observed["outcome"] = "unchanged"
            if key is not None:
                record = IdempotencyRecord(fingerprint, result.outcome)
                await uow.idempotency.save(context.caller, key, record, ttl=self._ttl)
            return result

    @contextlib.asynccontextmanager
    async def _unit_of_work(self, name: CommandName) -> AsyncIterator[UnitOfWork]:
        """The command's span and, inside it, the span of its transaction."""
        with (
            TRACER.start_as_current_span(f"command {name}", attributes={"catalog.command": name}),
            TRACER.start_as_current_span("transaction"),
        ):
            async with self._uow() as uow:
                yield uow

    def _envelope(
        self, aggregate: Product | Review, pending: PendingEvent, context: RequestContext
    ) -> CatalogEvent:
        model: Any = EVENT_MODELS[pending.event_type]
        event: CatalogEvent = model(
            event_id=self._new_id(),
            schema_version=CURRENT_SCHEMA_VERSION[pending.event_type],
            aggregate_id=aggregate.id,
            aggregate_version=aggregate.version,
            occurred_at=aggregate.updated_at,
            actor=context.actor,
            correlation_id=context.correlation_id,
            causation_id=context.causation_id,
            data=pending.data,
            state=aggregate.to_state(),
        )
        return event


def _traceparent(context: RequestContext) -> str | None:
    """The trace the outbox row continues: this command's span, else the caller's header."""
    return (traceparent_of() if tracing_enabled() else None) or context.traceparent


def _check_version(context: RequestContext, aggregate_id: UUID, actual: int, *, kind: str) -> None:
    """If-Match: the change applies only to the version the caller names."""
    expected = context.expected_version
    if expected is not None and expected != actual:
        raise VersionMismatch(aggregate_id, expected=expected, actual=actual, kind=kind)


def _outcome(name: CommandName, product: Product, *, created: bool = False) -> Outcome:
    return Outcome(name, product.id, product.version, created=created, stock=product.stock)


def _review_outcome(name: CommandName, review: Review, *, created: bool = False) -> Outcome:
    return Outcome(name, review.id, review.version, created=created, product_id=review.product_id)
