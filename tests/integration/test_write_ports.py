"""The write side's ports: the PostgreSQL adapters and the in-memory fakes held to the same
behaviour where the handlers rely on it (each test runs against both): row locks serialize
concurrent changes, If-Match conflicts, idempotency keys in the command's own transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import pytest

from command_service.adapters.postgres import UnitOfWorkFactory
from command_service.domain.errors import (
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InsufficientStock,
    VersionMismatch,
)
from command_service.handlers import (
    AdjustStock,
    ChangePrice,
    CommandHandlers,
    CreateProduct,
    RequestContext,
)
from command_service.ports import UnitOfWorkFactory as UnitOfWorkPort
from tests.fixtures.fakes import FakeUnitOfWorkFactory

pytestmark = pytest.mark.integration

BODY = CreateProduct(name="Kettle", description=None, category="kitchen", price="30.00", stock=3)
OTHER = CreateProduct(name="Kettle", description=None, category="kitchen", price="31.00", stock=3)

# (units of work, count of products, count of outbox rows)
Backend = tuple[UnitOfWorkPort, Callable[[], Awaitable[int]], Callable[[], Awaitable[int]]]


@pytest.fixture(params=["postgres", "fake"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "fake":
        fake = FakeUnitOfWorkFactory()

        async def fake_products() -> int:
            return len(fake.store.products)

        async def fake_outbox() -> int:
            return len(fake.store.outbox)

        return fake, fake_products, fake_outbox
    pool: asyncpg.Pool = request.getfixturevalue("pg_pool")

    async def products() -> int:
        async with pool.acquire() as conn:
            count: int = await conn.fetchval("SELECT count(*) FROM products")
            return count

    async def outbox() -> int:
        async with pool.acquire() as conn:
            count: int = await conn.fetchval("SELECT count(*) FROM outbox")
            return count

    return UnitOfWorkFactory(pool), products, outbox


def keyed(key: str, caller: str = "") -> RequestContext:
    return RequestContext(idempotency_key=key, caller=caller)


async def test_same_key_same_body_replays_and_creates_once(backend: Backend) -> None:
    units, products, outbox = backend
    handlers = CommandHandlers(units)
    first = await handlers.create_product(BODY, keyed("k1"))
    again = await handlers.create_product(BODY, keyed("k1"))
    assert not first.replayed
    assert again.replayed
    assert again.outcome == first.outcome
    assert again.events == []
    with pytest.raises(IdempotencyKeyReused):
        await handlers.create_product(OTHER, keyed("k1"))
    assert await products() == 1
    assert await outbox() == 1


async def test_a_retried_stock_adjustment_is_applied_once(backend: Backend) -> None:
    units, _, outbox = backend
    handlers = CommandHandlers(units)
    product_id = (await handlers.create_product(BODY, RequestContext())).outcome.aggregate_id
    first = await handlers.adjust_stock(AdjustStock(product_id, -1), keyed("take-1"))
    again = await handlers.adjust_stock(AdjustStock(product_id, -1), keyed("take-1"))
    assert (first.outcome.stock, first.outcome.version) == (2, 2)
    assert again.replayed
    assert again.outcome == first.outcome
    with pytest.raises(IdempotencyKeyReused):
        await handlers.adjust_stock(AdjustStock(product_id, -2), keyed("take-1"))
    assert await outbox() == 2


async def test_keys_belong_to_their_caller(backend: Backend) -> None:
    units, products, _ = backend
    handlers = CommandHandlers(units)
    alice = await handlers.create_product(BODY, keyed("k", caller="alice"))
    bob = await handlers.create_product(OTHER, keyed("k", caller="bob"))
    assert not bob.replayed
    assert alice.outcome.aggregate_id != bob.outcome.aggregate_id
    assert await products() == 2


async def test_a_concurrent_duplicate_in_flight_is_refused(backend: Backend) -> None:
    units, products, _ = backend
    handlers = CommandHandlers(units)
    outcomes = await asyncio.gather(
        *(handlers.create_product(BODY, keyed("k2")) for _ in range(10)),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, IdempotencyKeyInFlight)]
    results = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(refused) + len(results) == 10
    assert len([r for r in results if not r.replayed]) == 1
    assert await products() == 1


async def test_a_refused_command_stores_no_key(backend: Backend) -> None:
    units, _, outbox = backend
    handlers = CommandHandlers(units)
    product_id = (await handlers.create_product(BODY, RequestContext())).outcome.aggregate_id
    with pytest.raises(Exception, match="in stock"):
        await handlers.adjust_stock(AdjustStock(product_id, -5), keyed("too-many"))
    # Nothing was kept of the refusal: the same key with a smaller change is a first request.
    taken = await handlers.adjust_stock(AdjustStock(product_id, -1), keyed("too-many"))
    assert not taken.replayed
    assert await outbox() == 2


async def test_keys_expire(backend: Backend) -> None:
    units, products, _ = backend
    handlers = CommandHandlers(units, idempotency_ttl=timedelta(seconds=1))
    await handlers.create_product(BODY, keyed("k3"))
    await asyncio.sleep(1.2)
    later = await handlers.create_product(OTHER, keyed("k3"))
    assert not later.replayed
    assert await products() == 2


async def test_concurrent_adjustments_serialize_and_never_oversell(backend: Backend) -> None:
    units, _, outbox = backend
    handlers = CommandHandlers(units)
    product_id = (await handlers.create_product(BODY, RequestContext())).outcome.aggregate_id

    async def take_one() -> int | None:
        try:
            result = await handlers.adjust_stock(AdjustStock(product_id, -1), RequestContext())
        except InsufficientStock:
            return None
        return result.outcome.version

    versions = await asyncio.gather(*(take_one() for _ in range(12)))
    assert sorted(v for v in versions if v is not None) == [2, 3, 4]
    assert versions.count(None) == 9
    assert await outbox() == 4


async def test_if_match_conflicts_leave_nothing(backend: Backend) -> None:
    units, _, outbox = backend
    handlers = CommandHandlers(units)
    product_id = (await handlers.create_product(BODY, RequestContext())).outcome.aggregate_id
    with pytest.raises(VersionMismatch):
        await handlers.change_price(
            ChangePrice(product_id, "5.00"), RequestContext(expected_version=2)
        )
    changed = await handlers.change_price(
        ChangePrice(product_id, "5.00"), RequestContext(expected_version=1)
    )
    assert changed.outcome.version == 2
    assert await outbox() == 2
